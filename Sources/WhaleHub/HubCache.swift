import Foundation
import WhaleCore

/// A model named as on the Hugging Face Hub: `org/name`, optionally `:TAG` (a GGUF quantization, matched in
/// file names as llama.cpp's `-hf` matches it) and `@REVISION` (a branch, tag or commit; default `main`).
public struct ModelReference: Sendable, Equatable, CustomStringConvertible {
    public var repo: String
    public var tag: String?
    public var revision: String

    /// Parses `org/name[:TAG][@REVISION]`; nil for anything else (a path, say).
    public init?(_ text: String) {
        var rest = Substring(text)
        var revision = "main"
        if let at = rest.lastIndex(of: "@") {
            revision = String(rest[rest.index(after: at)...])
            rest = rest[..<at]
        }
        var tag: String?
        if let colon = rest.lastIndex(of: ":") {
            tag = String(rest[rest.index(after: colon)...])
            rest = rest[..<colon]
        }
        let parts = rest.split(separator: "/", omittingEmptySubsequences: false)
        let allowed = { (c: Character) in c.isASCII && (c.isLetter || c.isNumber || "-_.".contains(c)) }
        guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(allowed) && !$0.hasPrefix(".") }),
            tag.map({ !$0.isEmpty }) ?? true, !revision.isEmpty
        else { return nil }
        self.repo = String(rest)
        self.tag = tag
        self.revision = revision
    }

    public init(repo: String, tag: String? = nil, revision: String = "main") {
        self.repo = repo
        self.tag = tag
        self.revision = revision
    }

    public var description: String {
        repo + (tag.map { ":" + $0 } ?? "") + (revision == "main" ? "" : "@" + revision)
    }
}

/// The Hugging Face cache that huggingface_hub, transformers and vLLM share: `models--org--name/` with
/// `refs/<revision>` (the commit a branch or tag points at), `snapshots/<commit>/<path>` (symlinks into
/// `blobs/`) and `blobs/<etag>`. Reading it is enough to run what `huggingface-cli download` fetched.
public struct HubCache: Sendable {
    public let root: URL

    public init(root: URL) { self.root = root }

    /// Where huggingface_hub puts it: `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`
    /// (`XDG_CACHE_HOME` replaces `~/.cache`).
    public init(environment: [String: String]) {
        if let hub = environment["HF_HUB_CACHE"], !hub.isEmpty {
            root = URL(fileURLWithPath: (hub as NSString).expandingTildeInPath)
        } else {
            root = HubSettings.home(environment).appendingPathComponent("hub")
        }
    }

    /// `models--org--name`.
    public func folder(_ repo: String) -> URL {
        root.appendingPathComponent("models--" + repo.replacingOccurrences(of: "/", with: "--"))
    }

    /// The snapshot directory of `revision`: the commit `refs/<revision>` names, or `revision` itself when it
    /// is a commit with a snapshot. nil when the cache has neither.
    public func snapshot(_ repo: String, revision: String = "main") -> URL? {
        let folder = folder(repo)
        let snapshots = folder.appendingPathComponent("snapshots")
        let ref = folder.appendingPathComponent("refs").appendingPathComponent(revision)
        if let commit = try? String(contentsOf: ref, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines),
            !commit.isEmpty, !commit.contains("/")
        {
            let directory = snapshots.appendingPathComponent(commit)
            if FileManager.default.fileExists(atPath: directory.path) { return directory }
        }
        let direct = snapshots.appendingPathComponent(revision)
        if revision.count == 40, revision.allSatisfy(\.isHexDigit), FileManager.default.fileExists(atPath: direct.path)
        {
            return direct
        }
        return nil
    }

    /// The files of a snapshot, as paths relative to it, sorted; only those whose blob is present (a broken
    /// link is a download that did not finish).
    public func files(in snapshot: URL) -> [String] {
        guard let walker = FileManager.default.enumerator(atPath: snapshot.path) else { return [] }
        var files: [String] = []
        while let path = walker.nextObject() as? String {
            let full = snapshot.appendingPathComponent(path).path
            var isDirectory: ObjCBool = false
            // fileExists follows the link: false for a link whose blob is missing.
            if FileManager.default.fileExists(atPath: full, isDirectory: &isDirectory), !isDirectory.boolValue {
                files.append(path)
            }
        }
        return files.sorted()
    }

    /// The cached repositories: `org/name`, sorted.
    public func repositories() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        return names.filter { $0.hasPrefix("models--") }.map {
            String($0.dropFirst("models--".count)).replacingOccurrences(of: "--", with: "/")
        }.sorted()
    }

    /// The path to load for `reference`: a GGUF file (the first shard of a split one) chosen by the tag, or the
    /// snapshot directory of a safetensors model.
    public func resolve(_ reference: ModelReference) throws -> URL {
        guard let snapshot = snapshot(reference.repo, revision: reference.revision) else {
            throw WhaleError(
                .fileNotFound, file: folder(reference.repo).path,
                "\(reference.repo) (\(reference.revision)) is not in the Hugging Face cache at \(root.path)",
                hint: "download it with `whale pull \(reference)` (or huggingface-cli), or set HF_HOME / "
                    + "HF_HUB_CACHE to the cache that has it")
        }
        let files = files(in: snapshot)
        let ggufs = files.filter { $0.lowercased().hasSuffix(".gguf") }
        if ggufs.isEmpty || (reference.tag == nil && files.contains("config.json")) {
            guard files.contains("config.json") else {
                throw WhaleError(
                    .unsupportedArchitecture, file: snapshot.path,
                    "\(reference.repo) has neither GGUF files nor a config.json in the cache",
                    hint: "the download may be incomplete; download it again")
            }
            if let tag = reference.tag {
                throw GGUFSelection.tagOnSafetensors(reference.repo, tag: tag)
            }
            return snapshot
        }
        let choice = try GGUFSelection.choose(ggufs, tag: reference.tag, repo: reference.repo)
        return snapshot.appendingPathComponent(choice)
    }
}

/// Which GGUF of a repository a tag names, as llama.cpp's `-hf REPO:TAG` picks it.
public enum GGUFSelection {
    /// `-00001-of-00003.gguf`: the shard's number and the count.
    static func shard(_ path: String) -> (index: Int, count: Int)? {
        let name = path.lowercased()
        guard name.hasSuffix(".gguf"), let of = name.range(of: "-of-", options: .backwards) else { return nil }
        let count = name[of.upperBound...].dropLast(5)
        guard let dash = name[..<of.lowerBound].lastIndex(of: "-") else { return nil }
        let index = name[name.index(after: dash)..<of.lowerBound]
        guard index.count == 5, count.count == 5, let i = Int(index), let n = Int(count) else { return nil }
        return (i, n)
    }

    /// A tag given for a repository that has no GGUF files, only safetensors.
    static func tagOnSafetensors(_ repo: String, tag: String) -> WhaleError {
        WhaleError(
            .invalidArgument, field: "model", "\(repo) has no GGUF files to match :\(tag)",
            hint: "it is a safetensors model: name it without a tag")
    }

    /// The quantization a file name carries (`Q4_K_M`, `IQ2_XXS`, `F16`, `BF16`), upper-cased; nil if none.
    public static func tag(of path: String) -> String? {
        var name = (path as NSString).lastPathComponent.uppercased()
        if name.hasSuffix(".GGUF") { name.removeLast(5) }
        for token in name.components(separatedBy: CharacterSet(charactersIn: "-. ")).reversed()
        where token.range(of: #"^(I?Q[0-9][A-Z0-9_]*|F16|F32|BF16|TQ[0-9]_[0-9])$"#, options: .regularExpression) != nil
        {
            return token
        }
        return nil
    }

    /// The file to load: for a split model its first shard. Without a tag: Q4_K_M if present, else the only
    /// model; otherwise an error listing the tags there are.
    public static func choose(_ ggufs: [String], tag: String?, repo: String) throws -> String {
        // One entry per model: a split model counts once, by its first shard.
        let models = ggufs.filter { shard($0).map { $0.index == 1 } ?? true }.filter {
            !($0 as NSString).lastPathComponent.lowercased().hasPrefix("mmproj")
        }
        let available = Array(Set(models.compactMap { Self.tag(of: $0) })).sorted()
        func matching(_ wanted: String) -> [String] {
            models.filter { ($0 as NSString).lastPathComponent.lowercased().contains(wanted.lowercased()) }
        }
        if let tag {
            guard let first = matching(tag).first else {
                throw WhaleError(
                    .fileNotFound, field: "model", "\(repo) has no GGUF matching :\(tag)",
                    hint: available.isEmpty
                        ? "its GGUF files: \(models.joined(separator: ", "))"
                        : "tags there: \(available.joined(separator: ", "))")
            }
            return first
        }
        if let preferred = matching("Q4_K_M").first { return preferred }
        if models.count == 1 { return models[0] }
        throw WhaleError(
            .invalidArgument, field: "model", "\(repo) has \(models.count) GGUF models; name one with a tag",
            hint: "e.g. \(repo):\(available.first ?? "Q8_0"); tags there: \(available.joined(separator: ", "))")
    }
}
