import Foundation
import WhaleCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A repository at one commit, as the Hub's model-info route describes it
/// (`GET /api/models/{repo}/revision/{revision}?blobs=true`).
public struct RepositoryListing: Sendable, Equatable {
    public struct File: Sendable, Equatable {
        public var path: String
        /// Bytes, when the Hub says.
        public var size: Int64?
        /// The SHA-256 of an LFS file's content (its ETag on the Hub); nil for a file kept in git itself.
        public var sha256: String?

        public init(path: String, size: Int64? = nil, sha256: String? = nil) {
            self.path = path
            self.size = size
            self.sha256 = sha256
        }
    }

    /// The commit the revision names.
    public var commit: String
    public var files: [File]

    public init(commit: String, files: [File]) {
        self.commit = commit
        self.files = files
    }

    /// Reads the model-info JSON: `sha` and `siblings` (`rfilename`, `size`, `lfs.sha256`).
    public init(modelInfo data: Data, repo: String) throws {
        struct Info: Decodable {
            struct Sibling: Decodable {
                struct LFS: Decodable {
                    var sha256: String?
                    var size: Int64?
                }
                var rfilename: String
                var size: Int64?
                var lfs: LFS?
            }
            var sha: String?
            var siblings: [Sibling]?
        }
        let info: Info
        do {
            info = try JSONDecoder().decode(Info.self, from: data)
        } catch {
            throw WhaleError(
                .invalidJSON, field: repo, "the Hub's description of the repository is not what huggingface_hub reads",
                hint: "check HF_ENDPOINT points at a Hugging Face Hub")
        }
        guard let commit = info.sha, commit.count == 40, commit.allSatisfy(\.isHexDigit) else {
            throw WhaleError(
                .missingKey, field: repo, "the Hub did not name the repository's commit (sha)",
                hint: "check HF_ENDPOINT points at a Hugging Face Hub")
        }
        self.commit = commit
        files = (info.siblings ?? []).map {
            File(path: $0.rfilename, size: $0.lfs?.size ?? $0.size, sha256: $0.lfs?.sha256?.lowercased())
        }
    }

    public func file(_ path: String) -> File? { files.first { $0.path == path } }
}

/// Which files of a repository `whale pull` fetches: what loading the model needs, nothing else.
public enum PullPlan {
    /// The small files a safetensors model reads besides its weights.
    static let modelFiles = [
        "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
        "special_tokens_map.json", "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja",
    ]
    /// The weight index of a sharded safetensors model; its `weight_map` names the shards.
    public static let safetensorsIndex = "model.safetensors.index.json"

    /// The files to fetch first. A GGUF repository: the model the tag picks (every shard of a split one); a
    /// safetensors repository: config, tokenizer and the index (its shards come from `shards(index:)`) or the
    /// single weight file. `include` (shell globs, `*` crossing `/`, as huggingface-cli's `--include`)
    /// replaces the choice.
    public static func files(_ listing: RepositoryListing, reference: ModelReference, include: [String] = [])
        throws -> [String]
    {
        let paths = listing.files.map(\.path)
        if !include.isEmpty {
            let chosen = paths.filter { path in include.contains { fnmatch($0, path, 0) == 0 } }
            guard !chosen.isEmpty else {
                throw WhaleError(
                    .fileNotFound, field: "--include",
                    "no file of \(reference.repo) matches \(include.joined(separator: ", "))",
                    hint: "its files: \(paths.prefix(20).joined(separator: ", "))")
            }
            return chosen
        }
        let ggufs = paths.filter { $0.lowercased().hasSuffix(".gguf") }
        let isSafetensors = paths.contains("config.json")
        if !ggufs.isEmpty && (reference.tag != nil || !isSafetensors) {
            let first = try GGUFSelection.choose(ggufs, tag: reference.tag, repo: reference.repo)
            return try GGUFSelection.shards(of: first, in: paths, repo: reference.repo)
        }
        guard isSafetensors else {
            throw WhaleError(
                .unsupportedArchitecture, field: reference.repo,
                "the repository has neither GGUF files nor a config.json",
                hint: "whale runs GGUF and safetensors models; pick files with --include")
        }
        if let tag = reference.tag {
            throw GGUFSelection.tagOnSafetensors(reference.repo, tag: tag)
        }
        var chosen = modelFiles.filter(paths.contains)
        if paths.contains(safetensorsIndex) {
            chosen.append(safetensorsIndex)
        } else if paths.contains("model.safetensors") {
            chosen.append("model.safetensors")
        } else {
            throw WhaleError(
                .fileNotFound, field: reference.repo, "the repository has no model.safetensors or \(safetensorsIndex)",
                hint: "pick its weight files with --include")
        }
        return chosen
    }

    /// The shard files a safetensors index names, each once, in order.
    public static func shards(index data: Data, file: String) throws -> [String] {
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let map = object["weight_map"] as? [String: String]
        else {
            throw WhaleError(.invalidJSON, file: file, field: "weight_map", "not an object of tensor → file names")
        }
        var seen = Set<String>()
        return map.keys.sorted().compactMap { map[$0] }.filter { seen.insert($0).inserted }
    }
}

extension GGUFSelection {
    /// Every shard of the split model whose first shard is `first` (just `first` when it is not split), each
    /// checked to be in `paths`.
    public static func shards(of first: String, in paths: [String], repo: String) throws -> [String] {
        guard let (_, count) = shard(first) else { return [first] }
        let prefix = String(first.dropLast("00001-of-00000.gguf".count))
        let suffix = String(first.suffix("-of-00000.gguf".count))
        let all = (1...count).map { prefix + String(format: "%05d", $0) + suffix }
        let present = Set(paths)
        if let missing = all.first(where: { !present.contains($0) }) {
            throw WhaleError(
                .fileNotFound, field: repo, "the split model \(first) lacks its shard \(missing)",
                hint: "the repository is incomplete; ask its owner, or pick another tag")
        }
        return all
    }
}
