#if canImport(WhaleServer)
    import ArgumentParser
    import Foundation
    import Logging
    import WhaleCore
    import WhaleEngine
    import WhaleServer
    import WhaleTokenizer

    struct Serve: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Serve the model over an OpenAI-compatible HTTP API, several requests at once.",
            discussion: """
                Routes: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health, GET /metrics \
                (Prometheus), POST /tokenize, POST /detokenize. Up to --parallel sequences are decoded together \
                in one forward pass per step (continuous batching); more requests wait in a queue of --max-queue, \
                beyond which the server answers 503. --ctx is the context of each sequence. With --api-key (or \
                WHALE_API_KEY) every /v1 route needs Authorization: Bearer KEY. Ctrl-C or SIGTERM stops taking \
                requests and ends running ones with a final chunk.
                """)

        @OptionGroup var modelOptions: ModelOptions

        @Option(help: "Address to listen on (127.0.0.1: this machine only).")
        var host = "127.0.0.1"

        @Option(help: "Port to listen on (0: any free port, printed at start).")
        var port = 8080

        @Option(help: "Sequences decoded together.")
        var parallel = 4

        @Option(help: "Requests that may wait for a free sequence before the server answers 503.")
        var maxQueue = 64

        @Option(help: "API key that /v1 routes require (default: $WHALE_API_KEY; none: open).")
        var apiKey: String?

        @Option(help: "Model name the API reports (default: the model file's name).")
        var alias: String?

        @Option(help: "Use this built-in chat template instead of the model's.")
        var chatTemplate: String?

        @Option(help: "Allow browsers on this origin (CORS); none by default.")
        var corsOrigin: String?

        func validate() throws {
            guard (1...64).contains(parallel) else { throw ValidationError("--parallel must be 1 to 64") }
            guard maxQueue >= 0 else { throw ValidationError("--max-queue must be ≥ 0") }
            guard (0...65535).contains(port) else { throw ValidationError("--port must be 0 to 65535") }
        }

        func run() throws {
            try reportingErrors {
                if ClusterSession.current?.isWorker == true {
                    // A rank after 0 of an MPI job runs its layers; rank 0 alone listens.
                    _ = try modelOptions.load(sequences: parallel)
                    return
                }
                let name = alias ?? servedModelName(modelOptions.model)
                let key =
                    apiKey ?? ProcessInfo.processInfo.environment["WHALE_API_KEY"].flatMap { $0.isEmpty ? nil : $0 }
                // The port opens first (GET /health answers 503 "loading"), then the model loads.
                let handle = ServiceHandle(
                    configuration: ServerConfiguration(
                        host: host, port: port, apiKey: key, modelName: name, corsOrigin: corsOrigin))
                let host = host
                let application = handle.application { port in
                    var err = StandardError()
                    print("whale serve: listening on http://\(host):\(port), loading \(name)", to: &err)
                }
                let done = DispatchSemaphore(value: 0)
                let failure = ErrorBox()
                Task {
                    do { try await application.runService() } catch { failure.error = error }
                    done.signal()
                }
                let (model, tokenizer, context, contextSize) = try modelOptions.load(sequences: parallel)
                guard let tokenizer else {
                    throw WhaleError(
                        .fileNotFound, file: modelOptions.model, "serving needs the model's tokenizer",
                        hint: "add tokenizer.json to the model directory")
                }
                let template: ChatTemplate?
                if let chatTemplate {
                    template = try ChatTemplate.named(chatTemplate)
                } else {
                    template = tokenizer.chatTemplate.flatMap { try? ChatTemplate.detect($0, source: tokenizer.source) }
                }
                let scheduler = Scheduler(
                    model: model, tokenizer: tokenizer, pool: context.pool,
                    configuration: .init(parallel: parallel, contextSize: contextSize, maxQueue: maxQueue))
                var logger = Logger(label: "whale.serve")
                logger.logLevel = .info
                handle.ready(
                    InferenceService(
                        scheduler: scheduler, tokenizer: tokenizer, template: template,
                        configuration: handle.configuration, logger: logger))
                var err = StandardError()
                print(
                    "whale serve: ready — \(parallel) sequences × \(contextSize) tokens"
                        + (template.map { ", chat template \($0.name)" } ?? ", no chat template (use /v1/completions)"),
                    to: &err)
                done.wait()
                if let error = failure.error {
                    throw WhaleError(
                        .invalidArgument, field: "--host/--port", "cannot serve on \(host):\(port): \(error)",
                        hint: "pick a free port with --port")
                }
            }
        }
    }

    /// Carries an error out of the server task.
    final class ErrorBox: @unchecked Sendable {
        var error: (any Error)?
    }
#endif
