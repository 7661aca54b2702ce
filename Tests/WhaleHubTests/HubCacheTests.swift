import Foundation
import Testing
import WhaleCore
import WhaleHub

/// Reading the Hugging Face cache in huggingface_hub's layout (refs → commit → snapshot links into blobs):
/// names and tags resolve to the file llama.cpp's `-hf` would pick, errors say what is there.
@Suite struct HubCacheTests {
    /// A cache with one repository: `files` (path → bytes) linked from snapshots/<commit>/ into blobs/, as
    /// huggingface_hub writes them, and refs/main naming the commit.
    static func cache(repo: String, files: [String: String], missingBlobs: Set<String> = []) throws -> HubCache {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("whale-hub-\(UUID().uuidString)")
        let cache = HubCache(root: root)
        let folder = cache.folder(repo)
        let commit = String(repeating: "ab12", count: 10)
        let snapshot = folder.appendingPathComponent("snapshots/\(commit)")
        let blobs = folder.appendingPathComponent("blobs")
        try FileManager.default.createDirectory(at: blobs, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(
            at: folder.appendingPathComponent("refs"), withIntermediateDirectories: true)
        try commit.write(to: folder.appendingPathComponent("refs/main"), atomically: true, encoding: .utf8)
        for (index, (path, content)) in files.sorted(by: { $0.key < $1.key }).enumerated() {
            let blob = "blob\(index)"
            if !missingBlobs.contains(path) {
                try content.write(to: blobs.appendingPathComponent(blob), atomically: true, encoding: .utf8)
            }
            let link = snapshot.appendingPathComponent(path)
            try FileManager.default.createDirectory(
                at: link.deletingLastPathComponent(), withIntermediateDirectories: true)
            // Relative, as huggingface_hub makes them: up to the repository folder, then blobs/.
            let depth = path.split(separator: "/").count + 1
            let target = String(repeating: "../", count: depth) + "blobs/" + blob
            try FileManager.default.createSymbolicLink(atPath: link.path, withDestinationPath: target)
        }
        return cache
    }

    @Test func referencesParse() {
        #expect(ModelReference("org/name") == ModelReference("org/name@main"))
        let full = ModelReference("bartowski/DeepSeek-R1-GGUF:Q4_K_M@v1.0")
        #expect(full?.repo == "bartowski/DeepSeek-R1-GGUF" && full?.tag == "Q4_K_M" && full?.revision == "v1.0")
        #expect(ModelReference("models/x.gguf")?.repo == "models/x.gguf")  // the CLI checks the disk first
        for bad in ["name", "a/b/c", "/abs", "org/", "org/name:", "../up/x", "org/na me"] {
            #expect(ModelReference(bad) == nil, "\(bad)")
        }
    }

    @Test func cacheRootFollowsHuggingFaceHub() {
        #expect(HubCache(environment: ["HF_HUB_CACHE": "/x/hub", "HF_HOME": "/y"]).root.path == "/x/hub")
        #expect(HubCache(environment: ["HF_HOME": "/y"]).root.path == "/y/hub")
        #expect(HubCache(environment: ["XDG_CACHE_HOME": "/c", "HOME": "/h"]).root.path == "/c/huggingface/hub")
        #expect(HubCache(environment: ["HOME": "/h"]).root.path == "/h/.cache/huggingface/hub")
    }

    @Test func tagsPickTheGGUF() throws {
        let cache = try Self.cache(
            repo: "org/m-GGUF",
            files: [
                "m-Q8_0.gguf": "a", "m-Q4_K_M.gguf": "b", "m-IQ2_XXS.gguf": "c", "README.md": "r",
                "BF16/m-BF16-00001-of-00002.gguf": "d", "BF16/m-BF16-00002-of-00002.gguf": "e",
            ])
        func resolved(_ name: String) throws -> String {
            let reference = try #require(ModelReference(name))
            return String(try cache.resolve(reference).path.split(separator: "/").suffix(2).joined(separator: "/"))
        }
        #expect(try resolved("org/m-GGUF:q8_0").hasSuffix("m-Q8_0.gguf"))
        #expect(try resolved("org/m-GGUF:IQ2_XXS").hasSuffix("m-IQ2_XXS.gguf"))
        #expect(try resolved("org/m-GGUF").hasSuffix("m-Q4_K_M.gguf"))  // Q4_K_M without a tag
        #expect(try resolved("org/m-GGUF:bf16") == "BF16/m-BF16-00001-of-00002.gguf")  // a split model's first shard
        do {
            _ = try cache.resolve(try #require(ModelReference("org/m-GGUF:Q2_K")))
            Issue.record("a missing tag resolved")
        } catch let error as WhaleError {
            #expect(error.problem.contains(":Q2_K"))
            #expect(error.hint == "tags there: BF16, IQ2_XXS, Q4_K_M, Q8_0")
        }
    }

    @Test func withoutQ4KMSeveralModelsNeedATag() throws {
        let cache = try Self.cache(repo: "org/two", files: ["a-Q8_0.gguf": "a", "a-F16.gguf": "b"])
        #expect(throws: WhaleError.self) { try cache.resolve(ModelReference("org/two")!) }
        let one = try Self.cache(repo: "org/one", files: ["only.gguf": "a"])
        #expect(try one.resolve(ModelReference("org/one")!).lastPathComponent == "only.gguf")
    }

    @Test func safetensorsResolveToTheSnapshot() throws {
        let cache = try Self.cache(
            repo: "deepseek-ai/DeepSeek-V2-Lite-Chat",
            files: ["config.json": "{}", "model.safetensors": "w", "tokenizer.json": "{}"])
        let path = try cache.resolve(ModelReference("deepseek-ai/DeepSeek-V2-Lite-Chat")!)
        #expect(path.deletingLastPathComponent().lastPathComponent == "snapshots")
        #expect(cache.files(in: path) == ["config.json", "model.safetensors", "tokenizer.json"])
        #expect(cache.repositories() == ["deepseek-ai/DeepSeek-V2-Lite-Chat"])
        #expect(throws: WhaleError.self) {
            try cache.resolve(ModelReference("deepseek-ai/DeepSeek-V2-Lite-Chat:Q4_0")!)
        }
    }

    /// A link whose blob is missing (an interrupted download) is not a file of the snapshot.
    @Test func missingBlobsAreNotFiles() throws {
        let cache = try Self.cache(
            repo: "org/m", files: ["m-Q4_K_M.gguf": "a", "m-Q8_0.gguf": "b"], missingBlobs: ["m-Q4_K_M.gguf"])
        let snapshot = try #require(cache.snapshot("org/m"))
        #expect(cache.files(in: snapshot) == ["m-Q8_0.gguf"])
        #expect(try cache.resolve(ModelReference("org/m")!).lastPathComponent == "m-Q8_0.gguf")
    }

    @Test func uncachedRepositoryIsAClearError() throws {
        let cache = try Self.cache(repo: "org/m", files: ["m.gguf": "a"])
        do {
            _ = try cache.resolve(ModelReference("org/other:Q4_K_M")!)
            Issue.record("resolved a repository that is not cached")
        } catch let error as WhaleError {
            #expect(error.problem.contains("org/other") && error.problem.contains(cache.root.path))
            #expect(error.hint?.contains("whale pull org/other") == true)
        }
    }
}
