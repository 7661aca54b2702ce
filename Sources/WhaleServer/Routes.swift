import Foundation
import HTTPTypes
import Hummingbird
import Logging
import ServiceLifecycle
import Synchronization
import WhaleCore
import WhaleEngine
import WhaleTokenizer

extension APIError: HTTPResponseError {
    public var status: HTTPResponse.Status { .init(code: statusCode) }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        if statusCode == 503 { headers[.retryAfter] = "1" }
        // Anthropic's routes answer in Anthropic's error shape, the rest in OpenAI's.
        let shaped = request.uri.path.hasPrefix("/v1/messages") ? anthropicBody : body
        return Response(
            status: status, headers: headers,
            body: ResponseBody(byteBuffer: ByteBuffer(string: shaped.serialized())))
    }
}

/// What the routes serve: the configuration from the start, the model once it has loaded. Until then every
/// route but `/health` (which says `loading`) answers 503, as llama-server does, so a client can start polling
/// as soon as the port is open.
public final class ServiceHandle: Sendable {
    public let configuration: ServerConfiguration
    private let loaded = Mutex<InferenceService?>(nil)

    public init(configuration: ServerConfiguration) { self.configuration = configuration }

    /// The routes serve `service` from now on.
    public func ready(_ service: InferenceService) { loaded.withLock { $0 = service } }

    var service: InferenceService? { loaded.withLock { $0 } }

    func current() throws -> InferenceService {
        guard let service else {
            throw APIError(
                status: 503, "the model is still loading; retry in a moment", type: "server_error",
                code: "model_loading")
        }
        return service
    }

    /// The HTTP application: routes, API-key check, body limit, CORS. On a graceful shutdown (SIGINT,
    /// SIGTERM) the scheduler stops: running requests end with a final chunk.
    public func application(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in })
        -> some ApplicationProtocol
    {
        let router = Router()
        router.add(middleware: GuardMiddleware(apiKey: configuration.apiKey, corsOrigin: configuration.corsOrigin))
        router.get("/") { _, _ in
            var headers = HTTPFields()
            headers[.contentType] = "text/html; charset=utf-8"
            headers[.cacheControl] = "no-cache"
            return Response(
                status: .ok, headers: headers,
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: PackageResources.chat_html)))
        }
        router.get("/health") { [self] _, _ in
            service == nil
                ? json(.object(JSONObject(["status": .string("loading")])), status: .serviceUnavailable)
                : json(.object(JSONObject(["status": .string("ok")])))
        }
        router.get("/metrics") { [self] _, _ in
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4"
            return Response(
                status: .ok, headers: headers,
                body: ResponseBody(byteBuffer: ByteBuffer(string: try current().scheduler.metrics.render())))
        }
        router.get("/v1/models") { [self] _, _ in
            let service = try current()
            return json(
                .object(
                    JSONObject([
                        "object": .string("list"),
                        "data": .array([
                            .object(
                                JSONObject([
                                    "id": .string(configuration.modelName), "object": .string("model"),
                                    "created": .integer(service.startedAt), "owned_by": .string("bluewhale"),
                                ]))
                        ]),
                    ])))
        }
        router.post("/v1/chat/completions") { [self] request, _ in
            try await current().chatRoute(try await body(request))
        }
        router.post("/v1/completions") { [self] request, _ in
            try await current().completionRoute(try await body(request))
        }
        router.post("/v1/messages") { [self] request, _ in
            try await current().messagesRoute(try await body(request))
        }
        router.post("/v1/messages/count_tokens") { [self] request, _ in
            try current().countTokensRoute(try await body(request))
        }
        router.post("/tokenize") { [self] request, _ in
            try current().tokenizeRoute(try await body(request))
        }
        router.post("/detokenize") { [self] request, _ in
            try current().detokenizeRoute(try await body(request))
        }
        router.get("/tokenizer_info") { [self] _, _ in try current().tokenizerInfoRoute() }
        return Application(
            router: router,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "whale"),
            services: [SchedulerService(handle: self)],
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
            logger: Logger(label: "whale.serve"))
    }

    /// The request body, at most `maxBodyBytes`.
    func body(_ request: Request) async throws -> [UInt8] {
        var request = request
        do {
            let buffer = try await request.collectBody(upTo: configuration.maxBodyBytes)
            return Array(buffer.readableBytesView)
        } catch {
            throw APIError(
                status: 413, "the request body is larger than \(configuration.maxBodyBytes) bytes",
                code: "request_too_large")
        }
    }
}

extension InferenceService {
    /// The application serving this (loaded) service.
    public func application(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in })
        -> some ApplicationProtocol
    {
        let handle = ServiceHandle(configuration: configuration)
        handle.ready(self)
        return handle.application(onServerRunning: onServerRunning)
    }

    /// `/tokenize` as llama-server has it (`{"content", "add_special", "parse_special"}`) and as vLLM has it
    /// (`{"prompt", "add_special_tokens"}`, what lm-evaluation-harness's remote tokenizer sends) → `{"tokens"}`.
    func tokenizeRoute(_ body: [UInt8]) throws -> Response {
        let fields = try RequestFields(body)
        guard let content = try fields.string("content") ?? fields.string("prompt") else {
            throw APIError.invalid("content", "'content' (or 'prompt'): the text to tokenize is required")
        }
        var ids = tokenizer.encode(content, parseSpecial: try fields.bool("parse_special") ?? true)
        let addSpecial = try fields.bool("add_special") ?? fields.bool("add_special_tokens") ?? false
        if addSpecial, tokenizer.addsBOS, let bos = tokenizer.bosTokenID, ids.first != bos {
            ids.insert(bos, at: 0)
        }
        return json(
            .object([
                "tokens": .array(ids.map { .integer(Int64($0)) }), "count": .integer(Int64(ids.count)),
                "max_model_len": .integer(Int64(scheduler.configuration.contextSize)),
            ]))
    }

    /// `/detokenize`: `{"tokens"}` → the text, as llama-server (`content`) and vLLM (`prompt`) name it.
    func detokenizeRoute(_ body: [UInt8]) throws -> Response {
        let fields = try RequestFields(body)
        guard let list = fields.value("tokens")?.array, list.allSatisfy({ $0.integer != nil }) else {
            throw APIError.invalid("tokens", "'tokens' must be an array of token ids")
        }
        do {
            let text = try tokenizer.decode(list.compactMap(\.integer))
            return json(.object(["content": .string(text), "prompt": .string(text)]))
        } catch let error as WhaleError {
            throw APIError(error)
        }
    }

    /// vLLM's `/tokenizer_info`: the special tokens and the chat template, so a client can tokenize through
    /// `/tokenize` instead of loading the tokenizer itself (lm-evaluation-harness's `tokenizer_backend=remote`,
    /// which it picks automatically when this route answers).
    func tokenizerInfoRoute() -> Response {
        func token(_ id: Int?) -> JSONValue { id.map { .string(tokenizer.tokens[$0]) } ?? .null }
        var info: JSONObject = [
            "tokenizer_class": .string("whale"), "bos_token": token(tokenizer.bosTokenID),
            "eos_token": token(tokenizer.eosTokenIDs.first), "pad_token": .null,
            "add_bos_token": .bool(tokenizer.addsBOS), "vocab_size": .integer(Int64(tokenizer.vocabularySize)),
            "model_max_length": .integer(Int64(scheduler.configuration.contextSize)),
        ]
        if let jinja = tokenizer.chatTemplate { info.set("chat_template", .string(jinja)) }
        return json(.object(info))
    }

    func chatRoute(_ body: [UInt8]) async throws -> Response {
        let (request, prompt, output) = try chatCompletions(body)
        let id = responseID("chatcmpl-")
        let started = ContinuousClock.now
        let events = try submit(prompt: prompt, settings: request.settings, param: "messages")
        guard request.settings.stream else {
            let results = try await collect(events, count: request.settings.n)
            log(id, prompt: prompt.count, results: results.compactMap(\.result), started: started)
            return json(chatResponse(request, prompt: prompt, results: results, id: id, output: output))
        }
        let settings = request.settings
        return sse { [self] send in
            var readers = Array(repeating: output.reader(), count: settings.n)
            for index in 0..<settings.n {
                try await send(
                    chatChunk(id: id, index: index, delta: ["role": .string("assistant"), "content": .string("")]))
            }
            var results: [GenerationResult] = []
            for await (index, event) in events {
                switch event {
                case .tokens(let text, let tokens):
                    let piece = readers[index].feed(text)
                    let shown = tokens.filter { !$0.endsGeneration }
                    let logprobs = settings.logprobs == nil || shown.isEmpty ? JSONValue.null : chatLogprobs(shown)
                    if piece.isEmpty && logprobs == .null { continue }
                    try await send(chatChunk(id: id, index: index, delta: messageDelta(piece), logprobs: logprobs))
                case .finished(let result):
                    results.append(result)
                    let rest = readers[index].finish()
                    let piece = ReasoningSplitter.Piece(reasoning: rest.reasoning, content: rest.content)
                    if !piece.isEmpty { try await send(chatChunk(id: id, index: index, delta: messageDelta(piece))) }
                    for delta in toolCallDeltas(rest.calls) {
                        try await send(chatChunk(id: id, index: index, delta: ["tool_calls": .array([delta])]))
                    }
                    let finish = rest.calls.isEmpty ? finishReason(result) : "tool_calls"
                    try await send(chatChunk(id: id, index: index, delta: JSONObject(), finish: finish))
                case .failed(let error):
                    try await send(APIError(status: 500, error.description, type: "server_error").body)
                }
            }
            if settings.includeUsage {
                try await send(
                    envelope(
                        id: id, object: "chat.completion.chunk", choices: [],
                        usage: usage(prompt: prompt.count, results)))
            }
            log(id, prompt: prompt.count, results: results, started: started)
        }
    }

    func completionRoute(_ body: [UInt8]) async throws -> Response {
        let request = try CompletionRequest(RequestFields(body))
        let prompts = completionPrompts(request)
        let id = responseID("cmpl-")
        let started = ContinuousClock.now
        let settings = request.settings
        if settings.stream {
            guard prompts.count == 1, !request.echo else {
                throw APIError.invalid("stream", "streaming takes one prompt and no echo")
            }
            let events = try submit(prompt: prompts[0], settings: settings, param: "prompt")
            return sse { [self] send in
                var results: [GenerationResult] = []
                for await (index, event) in events {
                    switch event {
                    case .tokens(let text, let tokens):
                        let logprobs =
                            settings.logprobs == nil || tokens.isEmpty
                            ? JSONValue.null : completionLogprobs(tokens, startOffset: 0, firstIsUnscored: false)
                        try await send(
                            completionChunk(id: id, index: index, text: text, logprobs: logprobs, finish: nil))
                    case .finished(let result):
                        results.append(result)
                        try await send(
                            completionChunk(
                                id: id, index: index, text: "", logprobs: .null, finish: finishReason(result)))
                    case .failed(let error):
                        try await send(APIError(status: 500, error.description, type: "server_error").body)
                    }
                }
                if settings.includeUsage {
                    try await send(
                        envelope(
                            id: id, object: "text_completion", choices: [],
                            usage: usage(prompt: prompts[0].count, results)))
                }
                log(id, prompt: prompts[0].count, results: results, started: started)
            }
        }
        var choices: [JSONValue] = []
        var allResults: [GenerationResult] = []
        var promptTokens = 0
        for (p, prompt) in prompts.enumerated() {
            promptTokens += prompt.count
            let echoText = request.echo ? (try? tokenizer.decode(prompt)) ?? "" : ""
            let scored =
                request.echo && settings.logprobs != nil
                ? try await scorePrompt(prompt, top: settings.logprobs ?? 0) : []
            let results: [ChoiceResult]
            if settings.maxTokens == 0 {
                // Nothing to generate: the prompt alone (how lm-evaluation-harness scores log-likelihoods).
                guard prompt.count < scheduler.configuration.contextSize else {
                    throw APIError(
                        "the prompt has \(prompt.count) tokens, more than the context of \(scheduler.configuration.contextSize)",
                        param: "prompt", code: "context_length_exceeded")
                }
                results = Array(repeating: ChoiceResult(), count: settings.n)
            } else {
                results = try await collect(
                    try submit(prompt: prompt, settings: settings, param: "prompt"), count: settings.n)
            }
            for (n, choice) in results.enumerated() {
                let tokens = scored + choice.tokens
                let logprobs =
                    settings.logprobs == nil
                    ? JSONValue.null
                    : completionLogprobs(
                        tokens, startOffset: request.echo ? 0 : echoText.count, firstIsUnscored: request.echo)
                choices.append(
                    .object(
                        JSONObject([
                            "text": .string(echoText + choice.text), "index": .integer(Int64(p * settings.n + n)),
                            "logprobs": logprobs,
                            "finish_reason": .string(settings.maxTokens == 0 ? "length" : finishReason(choice.result)),
                        ])))
                if let result = choice.result { allResults.append(result) }
            }
        }
        log(id, prompt: promptTokens, results: allResults, started: started)
        return json(
            envelope(
                id: id, object: "text_completion", choices: choices, usage: usage(prompt: promptTokens, allResults)))
    }

    func completionChunk(id: String, index: Int, text: String, logprobs: JSONValue, finish: String?) -> JSONValue {
        envelope(
            id: id, object: "text_completion",
            choices: [
                .object(
                    JSONObject([
                        "text": .string(text), "index": .integer(Int64(index)), "logprobs": logprobs,
                        "finish_reason": finish.map(JSONValue.string) ?? .null,
                    ]))
            ])
    }
}

/// A JSON response.
func json(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
    var headers = HTTPFields()
    headers[.contentType] = "application/json"
    return Response(
        status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: value.serialized())))
}

/// A server-sent-events response: `body` sends `data: JSON` events; `data: [DONE]` ends it. A client that goes
/// away makes `send` throw, which ends `body` and with it the request's generation.
func sse(_ body: @escaping @Sendable (_ send: (JSONValue) async throws -> Void) async throws -> Void) -> Response {
    var headers = HTTPFields()
    headers[.contentType] = "text/event-stream"
    headers[.cacheControl] = "no-cache"
    return Response(
        status: .ok, headers: headers,
        body: ResponseBody { writer in
            try await body { value in try await writer.write(ByteBuffer(string: "data: \(value.serialized())\n\n")) }
            try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
            try await writer.finish(nil)
        })
}

/// The API key on `/v1` routes (`Authorization: Bearer KEY`, or Anthropic's `x-api-key`), and CORS headers
/// when an origin is configured.
struct GuardMiddleware<Context: RequestContext>: RouterMiddleware {
    let apiKey: String?
    let corsOrigin: String?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        if let corsOrigin, request.method == .options {
            var headers = HTTPFields()
            headers[.accessControlAllowOrigin] = corsOrigin
            headers[.accessControlAllowHeaders] = "authorization, content-type, x-api-key"
            headers[.accessControlAllowMethods] = "GET, POST, OPTIONS"
            return Response(status: .noContent, headers: headers)
        }
        if let apiKey, request.uri.path.hasPrefix("/v1") {
            let bearer = request.headers[.authorization]
            let header = request.headers[HTTPField.Name("x-api-key")!]
            guard bearer == "Bearer \(apiKey)" || header == apiKey else {
                throw APIError(
                    status: 401, "invalid or missing API key: send Authorization: Bearer KEY",
                    type: "invalid_request_error", code: "invalid_api_key")
            }
        }
        var response = try await next(request, context)
        if let corsOrigin { response.headers[.accessControlAllowOrigin] = corsOrigin }
        return response
    }
}

/// Stops the scheduler when the application shuts down gracefully.
struct SchedulerService: Service {
    let handle: ServiceHandle

    func run() async throws {
        try? await gracefulShutdown()
        handle.service?.scheduler.shutdown()
    }
}
