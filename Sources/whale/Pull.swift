import ArgumentParser
import Foundation
import WhaleCore
import WhaleHub

#if canImport(WhaleHubClient)
    import WhaleHubClient

    /// `whale pull`: a model from the Hugging Face Hub into the cache huggingface_hub shares.
    struct Pull: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Download a model from the Hugging Face Hub into its cache.",
            discussion: """
                GGUF repositories: TAG picks the quantization as llama.cpp's -hf does (a case-insensitive match in \
                the file name; every shard of a split model); without one, Q4_K_M if there is one, else the only \
                GGUF. Safetensors repositories: config, tokenizer, the weight index and every shard it lists. \
                Files go to the Hugging Face cache (HF_HUB_CACHE, else HF_HOME/hub, else \
                ~/.cache/huggingface/hub), shared with huggingface_hub, transformers and vLLM. An interrupted pull \
                resumes where it stopped; every LFS file's SHA-256 is checked before it is used. HF_ENDPOINT, \
                HF_TOKEN and HF_HUB_OFFLINE are read as huggingface_hub reads them. Prints the path that whale run \
                loads.
                """)

        @Argument(help: "org/name[:TAG], e.g. deepseek-ai/DeepSeek-V2-Lite-Chat or a GGUF repository with :Q4_K_M.")
        var model: String

        @Option(help: "A branch, tag or commit (default: main).")
        var revision: String?

        @Option(help: "Fetch the files matching this glob instead of the model's (repeatable).")
        var include: [String] = []

        @Flag(name: [.short, .long], help: "No progress output.")
        var quiet = false

        func run() throws {
            try reportingErrors {
                var reference = try hubReference(model)
                if let revision { reference.revision = revision }
                let path = try pullModel(reference, include: include, quiet: quiet)
                var out = StandardOutput()
                print(path.path, to: &out)
            }
        }
    }

    /// Runs a pull to completion from synchronous code (the commands are synchronous; the download is not).
    func pullModel(_ reference: ModelReference, include: [String] = [], quiet: Bool = false) throws -> URL {
        let environment = ProcessInfo.processInfo.environment
        let client = HubClient(
            settings: HubSettings(environment: environment), cache: HubCache(environment: environment),
            progress: PullProgress(quiet: quiet))
        let outcome = PullOutcome()
        let done = DispatchSemaphore(value: 0)
        Task.detached {
            do {
                outcome.set(.success(try await client.pull(reference, include: include)))
            } catch {
                outcome.set(.failure(error))
            }
            try? await client.shutdown()
            done.signal()
        }
        done.wait()
        return try outcome.get()
    }

    /// The pull's result, handed from its task to the waiting thread (the semaphore orders the accesses).
    private final class PullOutcome: @unchecked Sendable {
        private var result: Result<URL, any Error>?
        func set(_ result: Result<URL, any Error>) { self.result = result }
        func get() throws -> URL { try result!.get() }
    }

    let pullCommands: [any ParsableCommand.Type] = [Pull.self]
#else
    /// No `pull` in builds without async-http-client (Swift before 6.2; see Package.swift).
    let pullCommands: [any ParsableCommand.Type] = []
#endif

/// `org/name[:TAG][@REVISION]` as given to pull and rm, or an error saying what such a name looks like.
func hubReference(_ argument: String) throws -> ModelReference {
    guard let reference = ModelReference(argument) else {
        throw WhaleError(
            .invalidArgument, field: "model", "\"\(argument)\" is not a Hub name",
            hint: "give org/name[:TAG], e.g. deepseek-ai/DeepSeek-V2-Lite-Chat; `whale list` shows what is cached")
    }
    return reference
}

/// `--no-pull`, for every command that takes a model.
struct HubOptions: ParsableArguments {
    @Flag(help: "Use a model named org/name only if it is already in the Hugging Face cache; never download.")
    var noPull = false
}

/// `whale rm`: a model out of the cache.
struct Remove: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rm",
        abstract: "Delete a model from the Hugging Face cache.",
        discussion: """
            org/name deletes the whole repository (every revision); org/name:TAG only that GGUF (all its shards) \
            from the main snapshot (or @REVISION's), keeping the blobs another snapshot still links to.
            """)

    @Argument(help: "org/name[:TAG][@REVISION].")
    var model: String

    func run() throws {
        try reportingErrors {
            let reference = try hubReference(model)
            let cache = HubCache(environment: ProcessInfo.processInfo.environment)
            let freed: Int64
            if let tag = reference.tag {
                guard let snapshot = cache.snapshot(reference.repo, revision: reference.revision) else {
                    throw WhaleError(
                        .fileNotFound, field: reference.repo, "no snapshot of \(reference.revision) in the cache",
                        hint: "`whale list` shows what is cached")
                }
                let files = cache.files(in: snapshot)
                let ggufs = files.filter { $0.lowercased().hasSuffix(".gguf") }
                let first = try GGUFSelection.choose(ggufs, tag: tag, repo: reference.repo)
                let shards = try GGUFSelection.shards(of: first, in: files, repo: reference.repo)
                freed = try cache.remove(reference.repo, revision: reference.revision, files: shards)
            } else {
                freed = try cache.remove(reference.repo)
            }
            var out = StandardOutput()
            print(
                String(format: "removed %@ (%.2f GiB freed)", reference.description, Double(freed) / 1_073_741_824),
                to: &out)
        }
    }
}
