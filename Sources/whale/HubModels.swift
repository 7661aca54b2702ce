import ArgumentParser
import Foundation
import WhaleCore
import WhaleHub

#if canImport(WhaleHubClient)
    import WhaleHubClient
#endif

/// A model argument as a path: a file or directory that exists is used as it is; `org/name[:TAG][@REVISION]`
/// is looked up in the Hugging Face cache (huggingface_hub's, shared with transformers and vLLM) and, when
/// it is not there, pulled from the Hub — unless `pull` is false (`--no-pull`) or HF_HUB_OFFLINE is set.
func modelPath(_ argument: String, pull: Bool = true) throws -> String {
    // A missing file is for the loader to name, not a repository to look for on the Hub.
    guard !FileManager.default.fileExists(atPath: argument), !looksLikePath(argument),
        let reference = ModelReference(argument)
    else { return argument }
    let environment = ProcessInfo.processInfo.environment
    do {
        return try HubCache(environment: environment).resolve(reference).path
    } catch let error as WhaleError where error.code == .fileNotFound {
        #if canImport(WhaleHubClient)
            guard pull, !HubSettings(environment: environment).offline else { throw error }
            return try pullModel(reference).path
        #else
            throw error
        #endif
    }
}

/// `models/x.gguf`, `./m/x`: a file name extension or a folder that exists says a path was meant, even when it
/// would also parse as `org/name`.
func looksLikePath(_ argument: String) -> Bool {
    let name = argument.lowercased()
    if [".gguf", ".safetensors", ".json"].contains(where: name.hasSuffix) { return true }
    let folder = (argument as NSString).deletingLastPathComponent
    var isDirectory: ObjCBool = false
    return FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory) && isDirectory.boolValue
}

/// `whale list`: the models in the Hugging Face cache.
struct List: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the models in the Hugging Face cache.",
        discussion: """
            The cache huggingface_hub, transformers and vLLM share: HF_HUB_CACHE, else HF_HOME/hub, else \
            ~/.cache/huggingface/hub. Any command that takes a model takes a cached one by name: \
            org/name[:TAG][@REVISION], TAG choosing a GGUF quantization (as llama.cpp's -hf does).
            """)

    func run() throws {
        try reportingErrors {
            let cache = HubCache(environment: ProcessInfo.processInfo.environment)
            var out = StandardOutput()
            print("cache: \(cache.root.path)", to: &out)
            for repo in cache.repositories() {
                guard let snapshot = cache.snapshot(repo) else {
                    print("\(repo)  (no main snapshot)", to: &out)
                    continue
                }
                let files = cache.files(in: snapshot)
                // Each blob once: a blob several snapshots link to is on disk once.
                var blobs: [String: Int64] = [:]
                for file in files {
                    let url = snapshot.appendingPathComponent(file).resolvingSymlinksInPath()
                    let size = HubCache.fileSize(url) ?? 0
                    blobs[url.path] = size
                }
                let bytes = blobs.values.reduce(0, +)
                let ggufs = files.filter { $0.lowercased().hasSuffix(".gguf") }
                let tags = Set(ggufs.compactMap { GGUFSelection.tag(of: $0) }).sorted()
                let commit = String(snapshot.lastPathComponent.prefix(12))
                let size = String(format: "%.2f GiB", Double(bytes) / Double(1 << 30))
                let kind = ggufs.isEmpty ? "safetensors" : "GGUF \(tags.joined(separator: " "))"
                print("\(repo)  main@\(commit)  \(files.count) files  \(size)  \(kind)", to: &out)
            }
        }
    }
}

/// The name `whale serve` lists a model under: a hub name as given, else the file or directory name.
func servedModelName(_ argument: String) -> String {
    if !FileManager.default.fileExists(atPath: argument), !looksLikePath(argument), ModelReference(argument) != nil {
        return argument
    }
    return URL(fileURLWithPath: argument).lastPathComponent
}
