import ArgumentParser
import Foundation
import WhaleCore
import WhaleHub

/// A model argument as a path: a file or directory that exists is used as it is; `org/name[:TAG][@REVISION]`
/// is looked up in the Hugging Face cache (huggingface_hub's, shared with transformers and vLLM).
func modelPath(_ argument: String) throws -> String {
    if FileManager.default.fileExists(atPath: argument) { return argument }
    guard let reference = ModelReference(argument) else { return argument }  // the loader names the missing file
    return try HubCache(environment: ProcessInfo.processInfo.environment).resolve(reference).path
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
                    let size = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int64) ?? 0
                    blobs[url.path] = size ?? 0
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
    if !FileManager.default.fileExists(atPath: argument), ModelReference(argument) != nil { return argument }
    return URL(fileURLWithPath: argument).lastPathComponent
}
