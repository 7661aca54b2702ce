import Foundation
import Testing
import WhaleCore
import WhaleHub

/// What `whale pull` decides before and after the network: the hash it checks downloads with, the settings it
/// reads as huggingface_hub reads them, which files it fetches, and how it writes the cache.
@Suite struct PullTests {
    static func hex(_ text: String) -> String {
        var hash = SHA256()
        hash.update(Array(text.utf8))
        return hash.hexDigest()
    }

    /// FIPS 180-4's examples and the lengths around the padding boundary (55, 56, 64 bytes), against digests
    /// from Python's hashlib.
    @Test func sha256MatchesTheStandard() {
        #expect(Self.hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(Self.hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(
            Self.hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(
            Self.hex(String(repeating: "a", count: 55))
                == "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318")
        #expect(
            Self.hex(String(repeating: "a", count: 56))
                == "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a")
        #expect(
            Self.hex(String(repeating: "a", count: 64))
                == "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb")
    }

    /// Fed in uneven pieces (as network buffers arrive), the digest is that of the whole.
    @Test func sha256InPiecesEqualsWhole() {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<10_000).map { _ in UInt8.random(in: 0...255, using: &generator) }
        var whole = SHA256()
        whole.update(bytes)
        var pieces = SHA256()
        var offset = 0
        for size in [1, 63, 64, 65, 0, 127, 3000, 17] + [Int](repeating: 500, count: 20) where offset < bytes.count {
            let end = min(offset + size, bytes.count)
            bytes[offset..<end].withUnsafeBytes { pieces.update($0) }
            offset = end
        }
        bytes[offset...].withUnsafeBytes { pieces.update($0) }
        #expect(pieces.hexDigest() == whole.hexDigest())
        // hexDigest does not end the stream.
        #expect(pieces.hexDigest() == whole.hexDigest())
    }

    @Test func settingsAreHuggingFaceHubs() throws {
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("whale-hf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: home) }
        let defaults = HubSettings(environment: ["HF_HOME": home.path])
        #expect(defaults == HubSettings(endpoint: "https://huggingface.co", token: nil, offline: false))
        try "hf_from_file\n".write(to: home.appendingPathComponent("token"), atomically: true, encoding: .utf8)
        #expect(HubSettings(environment: ["HF_HOME": home.path]).token == "hf_from_file")
        #expect(HubSettings(environment: ["HF_HOME": home.path, "HF_TOKEN": "hf_env"]).token == "hf_env")
        #expect(
            HubSettings(environment: ["HF_ENDPOINT": "http://127.0.0.1:9/", "HF_HOME": home.path]).endpoint
                == "http://127.0.0.1:9")
        for (value, offline) in [("1", true), ("true", true), ("YES", true), ("on", true), ("0", false), ("", false)] {
            #expect(HubSettings(environment: ["HF_HUB_OFFLINE": value, "HF_HOME": home.path]).offline == offline)
        }
    }

    static let commit = String(repeating: "c0ffee12", count: 5)

    static func listing(_ paths: [String]) -> RepositoryListing {
        RepositoryListing(commit: commit, files: paths.map { RepositoryListing.File(path: $0, size: 10) })
    }

    @Test func modelInfoIsRead() throws {
        let json = """
            {"id": "org/m", "sha": "\(Self.commit)", "siblings": [
              {"rfilename": "README.md", "size": 12},
              {"rfilename": "m-Q8_0.gguf", "size": 134, "lfs": {"sha256": "AB\(String(repeating: "0", count: 62))",
               "size": 5000000000, "pointerSize": 134}}]}
            """
        let listing = try RepositoryListing(modelInfo: Data(json.utf8), repo: "org/m")
        #expect(listing.commit == Self.commit)
        #expect(listing.file("README.md") == RepositoryListing.File(path: "README.md", size: 12, sha256: nil))
        // The LFS size is the file's (the sibling's size can be the pointer's); hashes compare lower-case.
        #expect(listing.file("m-Q8_0.gguf")?.size == 5_000_000_000)
        #expect(listing.file("m-Q8_0.gguf")?.sha256 == "ab" + String(repeating: "0", count: 62))
        #expect(throws: WhaleError.self) {
            try RepositoryListing(modelInfo: Data("{\"sha\": \"x\"}".utf8), repo: "o/m")
        }
        #expect(throws: WhaleError.self) { try RepositoryListing(modelInfo: Data("<html>".utf8), repo: "o/m") }
    }

    @Test func ggufPlans() throws {
        let listing = Self.listing([
            "README.md", "m-Q8_0.gguf", "m-Q4_K_M.gguf", "mmproj-m-f16.gguf",
            "Q2_K/m-Q2_K-00001-of-00003.gguf", "Q2_K/m-Q2_K-00002-of-00003.gguf", "Q2_K/m-Q2_K-00003-of-00003.gguf",
        ])
        func plan(_ name: String, include: [String] = []) throws -> [String] {
            try PullPlan.files(listing, reference: ModelReference(name)!, include: include)
        }
        #expect(try plan("org/m-GGUF") == ["m-Q4_K_M.gguf"])
        #expect(try plan("org/m-GGUF:q8_0") == ["m-Q8_0.gguf"])
        #expect(
            try plan("org/m-GGUF:Q2_K") == [
                "Q2_K/m-Q2_K-00001-of-00003.gguf", "Q2_K/m-Q2_K-00002-of-00003.gguf", "Q2_K/m-Q2_K-00003-of-00003.gguf",
            ])
        #expect(try plan("org/m-GGUF", include: ["*.md", "mmproj*"]) == ["README.md", "mmproj-m-f16.gguf"])
        do {
            _ = try plan("org/m-GGUF:IQ1_S")
            Issue.record("a missing tag must throw")
        } catch let error as WhaleError {
            #expect(error.code == .fileNotFound)
            #expect(error.hint == "tags there: Q2_K, Q4_K_M, Q8_0")
        }
        #expect(throws: WhaleError.self) { try plan("org/m-GGUF", include: ["*.safetensors"]) }
        // A split model missing a shard is refused before anything downloads.
        let broken = Self.listing(["m-Q2_K-00001-of-00002.gguf"])
        #expect(throws: WhaleError.self) {
            try PullPlan.files(broken, reference: ModelReference("org/m")!, include: [])
        }
    }

    @Test func safetensorsPlans() throws {
        let sharded = Self.listing([
            "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "README.md",
            "model.safetensors.index.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
            "original/consolidated.00.pth", "figures/benchmark.png",
        ])
        #expect(
            try PullPlan.files(sharded, reference: ModelReference("deepseek-ai/DeepSeek-V2-Lite-Chat")!) == [
                "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                "model.safetensors.index.json",
            ])
        let index = """
            {"metadata": {}, "weight_map": {"b.weight": "model-00002-of-00002.safetensors",
             "a.weight": "model-00001-of-00002.safetensors", "c.weight": "model-00002-of-00002.safetensors"}}
            """
        #expect(
            try PullPlan.shards(index: Data(index.utf8), file: "index")
                == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])
        #expect(throws: WhaleError.self) { try PullPlan.shards(index: Data("{}".utf8), file: "index") }
        let single = Self.listing(["config.json", "tokenizer.json", "model.safetensors"])
        #expect(
            try PullPlan.files(single, reference: ModelReference("o/m")!) == [
                "config.json", "tokenizer.json", "model.safetensors",
            ])
        #expect(throws: WhaleError.self) { try PullPlan.files(single, reference: ModelReference("o/m:Q4_K_M")!) }
        #expect(throws: WhaleError.self) {
            try PullPlan.files(Self.listing(["README.md"]), reference: ModelReference("o/m")!)
        }
    }

    /// Links as huggingface_hub makes them, refs, and removal that keeps blobs another snapshot uses.
    @Test func cacheIsWrittenAsHuggingFaceHubWritesIt() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("whale-hub-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let cache = HubCache(root: root)
        let repo = "org/m-GGUF"
        let blobs = cache.folder(repo).appendingPathComponent("blobs")
        try FileManager.default.createDirectory(at: blobs, withIntermediateDirectories: true)
        for (etag, content) in [("e1", "one"), ("e2", "two"), ("e3", "three")] {
            try content.write(to: cache.blob(repo, etag: etag), atomically: true, encoding: .utf8)
        }
        #expect(cache.incompleteBlob(repo, etag: "e1").lastPathComponent == "e1.incomplete")
        let old = String(repeating: "1", count: 40)
        let new = String(repeating: "2", count: 40)
        try cache.link(repo, commit: old, path: "m-Q8_0.gguf", etag: "e1")
        try cache.link(repo, commit: new, path: "m-Q8_0.gguf", etag: "e1")
        try cache.link(repo, commit: new, path: "sub/m-Q2_K-00001-of-00002.gguf", etag: "e2")
        try cache.link(repo, commit: new, path: "sub/m-Q2_K-00002-of-00002.gguf", etag: "e3")
        let snapshot = cache.folder(repo).appendingPathComponent("snapshots/\(new)")
        #expect(
            try FileManager.default.destinationOfSymbolicLink(
                atPath: snapshot.appendingPathComponent("m-Q8_0.gguf").path)
                == "../../blobs/e1")
        #expect(
            try FileManager.default.destinationOfSymbolicLink(
                atPath: snapshot.appendingPathComponent("sub/m-Q2_K-00001-of-00002.gguf").path) == "../../../blobs/e2")
        try cache.setReference(repo, revision: "main", commit: new)
        try cache.setReference(repo, revision: new, commit: new)  // a commit needs no ref
        #expect(try String(contentsOf: cache.folder(repo).appendingPathComponent("refs/main"), encoding: .utf8) == new)
        #expect(!FileManager.default.fileExists(atPath: cache.folder(repo).appendingPathComponent("refs/\(new)").path))
        #expect(cache.snapshot(repo) == snapshot)
        #expect(try cache.resolve(ModelReference("org/m-GGUF:Q2_K")!).lastPathComponent == "m-Q2_K-00001-of-00002.gguf")

        // Removing Q8_0 from main keeps its blob: the old snapshot still links to it.
        var freed = try cache.remove(repo, files: ["m-Q8_0.gguf"])
        #expect(freed == 0 && FileManager.default.fileExists(atPath: cache.blob(repo, etag: "e1").path))
        freed = try cache.remove(
            repo, files: ["sub/m-Q2_K-00001-of-00002.gguf", "sub/m-Q2_K-00002-of-00002.gguf"])
        #expect(freed == 8)  // "two" + "three"
        #expect(!FileManager.default.fileExists(atPath: cache.blob(repo, etag: "e2").path))
        #expect(cache.files(in: snapshot).isEmpty)
        freed = try cache.remove(repo)
        #expect(freed == 3 && !FileManager.default.fileExists(atPath: cache.folder(repo).path))
        #expect(throws: WhaleError.self) { try cache.remove(repo) }
    }
}
