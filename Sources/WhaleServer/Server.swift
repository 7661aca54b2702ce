import Foundation
import Hummingbird
import Logging
import WhaleCore
import WhaleEngine
import WhaleKernels
import WhaleModels
import WhaleTokenizer

/// How `whale serve` is set up.
public struct ServerConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// When set, every `/v1` route needs `Authorization: Bearer KEY`.
    public var apiKey: String?
    /// The model name `/v1/models` lists and responses carry.
    public var modelName: String
    /// Bodies larger than this are refused with 413.
    public var maxBodyBytes: Int
    /// `Access-Control-Allow-Origin` for browsers; nil sends no CORS headers.
    public var corsOrigin: String?

    public init(
        host: String = "127.0.0.1", port: Int = 8080, apiKey: String? = nil, modelName: String,
        maxBodyBytes: Int = 8 << 20, corsOrigin: String? = nil
    ) {
        self.host = host
        self.port = port
        self.apiKey = apiKey
        self.modelName = modelName
        self.maxBodyBytes = maxBodyBytes
        self.corsOrigin = corsOrigin
    }
}

/// The OpenAI-compatible API over a `Scheduler`: what each route does, independent of the HTTP framework
/// (the routes below only move bytes).
public final class InferenceService: Sendable {
    public let scheduler: Scheduler
    public let tokenizer: Tokenizer
    public let template: ChatTemplate?
    public let configuration: ServerConfiguration
    let logger: Logger
    /// When the server started (the model's `created` in `/v1/models`).
    let startedAt = Int64(Date().timeIntervalSince1970)

    public init(
        scheduler: Scheduler, tokenizer: Tokenizer, template: ChatTemplate?, configuration: ServerConfiguration,
        logger: Logger = Logger(label: "whale.serve")
    ) {
        self.scheduler = scheduler
        self.tokenizer = tokenizer
        self.template = template
        self.configuration = configuration
        self.logger = logger
    }

    /// The events of every choice of a request, tagged with the choice's index.
    typealias ChoiceEvents = AsyncStream<(index: Int, event: GenerationEvent)>

    // MARK: Chat completions

    func chatCompletions(_ body: [UInt8]) throws -> (ChatCompletionRequest, prompt: [Int], ChatOutput) {
        let request = try ChatCompletionRequest(RequestFields(body))
        let (prompt, output) = try chatPrompt(request)
        return (request, prompt, output)
    }

    /// Queues the `n` choices of a prompt and merges their events.
    func submit(prompt: [Int], settings: GenerationSettings, param: String) throws -> ChoiceEvents {
        let context = scheduler.configuration.contextSize
        guard prompt.count < context else {
            throw APIError(
                "this model's context is \(context) tokens per sequence, but the prompt has \(prompt.count); shorten it "
                    + "or restart the server with a larger --ctx",
                param: param, code: "context_length_exceeded")
        }
        guard !prompt.isEmpty else { throw APIError.invalid(param, "the prompt is empty") }
        if let bad = prompt.first(where: { $0 < 0 || $0 >= scheduler.model.vocabularySize }) {
            throw APIError.invalid(
                param, "token id \(bad) is outside the vocabulary (0..<\(scheduler.model.vocabularySize))")
        }
        // max_tokens is capped by what the context has left.
        let room = context - prompt.count
        let maxTokens = min(settings.maxTokens ?? room, room)
        var streams: [AsyncStream<GenerationEvent>] = []
        for choice in 0..<settings.n {
            var sampling = settings.sampling
            sampling.seed &+= UInt64(choice)
            let request = GenerationRequest(
                promptTokens: prompt, maxTokens: maxTokens, sampling: sampling, stopStrings: settings.stop,
                stopTokens: tokenizer.endOfGenerationTokenIDs)
            do {
                streams.append(
                    try scheduler.submit(
                        GenerationJob(request: request, logprobs: settings.logprobs, logitBias: settings.logitBias)))
            } catch let error as WhaleError where error.field == "queue" || error.field == "server" {
                throw APIError(status: 503, error.problem + "; retry later", type: "server_error", code: "overloaded")
            }
        }
        scheduler.metrics.request()
        return merge(streams)
    }

    /// One stream of (choice index, event) from the choices' streams; ending it ends theirs.
    func merge(_ streams: [AsyncStream<GenerationEvent>]) -> ChoiceEvents {
        AsyncStream { continuation in
            let task = Task {
                await withTaskGroup(of: Void.self) { group in
                    for (index, stream) in streams.enumerated() {
                        group.addTask {
                            for await event in stream { continuation.yield((index, event)) }
                        }
                    }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// What a choice produced, gathered for a non-streamed response.
    struct ChoiceResult {
        var text = ""
        var tokens: [TokenChoice] = []
        var result: GenerationResult?
        var error: WhaleError?
    }

    func collect(_ events: ChoiceEvents, count: Int) async throws -> [ChoiceResult] {
        var results = Array(repeating: ChoiceResult(), count: count)
        for await (index, event) in events {
            switch event {
            case .tokens(let text, let tokens):
                results[index].text += text
                results[index].tokens += tokens
            case .finished(let result): results[index].result = result
            case .failed(let error): results[index].error = error
            }
        }
        if let error = results.compactMap(\.error).first {
            throw APIError(status: 500, error.description, type: "server_error")
        }
        return results
    }

    func chatResponse(
        _ request: ChatCompletionRequest, prompt: [Int], results: [ChoiceResult], id: String, output: ChatOutput
    ) -> JSONValue {
        let choices: [JSONValue] = results.enumerated().map { index, choice in
            let (reasoning, content, calls) = output.read(choice.text)
            var message: JSONObject = [
                "role": .string("assistant"), "content": calls.isEmpty || !content.isEmpty ? .string(content) : .null,
            ]
            if let reasoning { message.set("reasoning_content", .string(reasoning)) }
            if !calls.isEmpty { message.set("tool_calls", .array(toolCallObjects(calls))) }
            return .object([
                "index": .integer(Int64(index)), "message": .object(message),
                "logprobs": request.settings.logprobs == nil ? .null : chatLogprobs(choice.tokens),
                "finish_reason": .string(calls.isEmpty ? finishReason(choice.result) : "tool_calls"),
            ])
        }
        return envelope(
            id: id, object: "chat.completion", choices: choices,
            usage: usage(prompt: prompt.count, results.compactMap(\.result)))
    }

    /// A streamed message delta: the reasoning as `reasoning_content` (DeepSeek's field), the answer as
    /// `content`.
    func messageDelta(_ piece: ReasoningSplitter.Piece) -> JSONObject {
        var delta = JSONObject()
        if !piece.reasoning.isEmpty { delta.set("reasoning_content", .string(piece.reasoning)) }
        if !piece.content.isEmpty || piece.reasoning.isEmpty { delta.set("content", .string(piece.content)) }
        return delta
    }

    /// OpenAI's chat `logprobs`: `{"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}`, for the
    /// tokens of the message (not the stop token that ended it).
    func chatLogprobs(_ allTokens: [TokenChoice]) -> JSONValue {
        let tokens = allTokens.filter { !$0.endsGeneration }
        func entry(_ id: Int, _ logprob: Double) -> JSONObject {
            let bytes = (try? tokenizer.bytes(of: id)) ?? []
            return JSONObject([
                "token": .string(String(decoding: bytes, as: UTF8.self)), "logprob": .number(logprob),
                "bytes": .array(bytes.map { .integer(Int64($0)) }),
            ])
        }
        return .object(
            JSONObject([
                "content": .array(
                    tokens.map { token in
                        var object = entry(token.id, token.logprob ?? 0)
                        object.set("top_logprobs", .array(token.top.map { .object(entry($0.id, $0.logprob)) }))
                        return .object(object)
                    })
            ]))
    }

    func chatChunk(id: String, index: Int, delta: JSONObject, logprobs: JSONValue = .null, finish: String? = nil)
        -> JSONValue
    {
        envelope(
            id: id, object: "chat.completion.chunk",
            choices: [
                .object(
                    JSONObject([
                        "index": .integer(Int64(index)), "delta": .object(delta), "logprobs": logprobs,
                        "finish_reason": finish.map(JSONValue.string) ?? .null,
                    ]))
            ])
    }

    // MARK: Completions

    /// The prompts of a completion request as token ids.
    func completionPrompts(_ request: CompletionRequest) -> [[Int]] {
        request.prompts.map { prompt in
            switch prompt {
            case .tokens(let ids): return ids
            case .text(let text):
                var ids = tokenizer.encode(text, parseSpecial: true)
                if tokenizer.addsBOS, let bos = tokenizer.bosTokenID, ids.first != bos { ids.insert(bos, at: 0) }
                return ids
            }
        }
    }

    /// The prompt's own log-probabilities (echo with logprobs): one forward pass on the scheduler's thread.
    func scorePrompt(_ ids: [Int], top: Int) async throws -> [TokenChoice] {
        let scores = try await scheduler.perform { model, context in
            try SequenceScore.compute(ids, model: model, context: context, top: top)
        }
        return ids.indices.map { i in
            TokenChoice(
                id: ids[i], logprob: scores.logprobs[i], top: i == 0 ? [] : scores.top[i - 1].map { ($0.0, $0.1) })
        }
    }

    /// OpenAI's legacy completion `logprobs`: tokens, token_logprobs, top_logprobs, text_offset.
    func completionLogprobs(_ tokens: [TokenChoice], startOffset: Int, firstIsUnscored: Bool) -> JSONValue {
        var offset = startOffset
        var pieces: [JSONValue] = []
        var offsets: [JSONValue] = []
        for token in tokens {
            let piece = String(decoding: (try? tokenizer.bytes(of: token.id)) ?? [], as: UTF8.self)
            pieces.append(.string(piece))
            offsets.append(.integer(Int64(offset)))
            offset += piece.count
        }
        return .object(
            JSONObject([
                "tokens": .array(pieces),
                "token_logprobs": .array(
                    tokens.enumerated().map { i, t in
                        i == 0 && firstIsUnscored ? .null : t.logprob.map(JSONValue.number) ?? .null
                    }
                ),
                "top_logprobs": .array(
                    tokens.enumerated().map { i, t in
                        if i == 0 && firstIsUnscored { return .null }
                        var object = JSONObject()
                        for (id, logprob) in t.top {
                            let key = String(decoding: (try? tokenizer.bytes(of: id)) ?? [], as: UTF8.self)
                            if object[key] == nil { object.set(key, .number(logprob)) }
                        }
                        return .object(object)
                    }),
                "text_offset": .array(offsets),
            ]))
    }

    // MARK: Shared pieces

    let fingerprint = "whale"

    /// The fields every response and chunk has (`id`, `object`, `created`, `model`, `system_fingerprint`),
    /// its choices, and `usage` when given.
    func envelope(id: String, object: String, choices: [JSONValue], usage: JSONValue? = nil) -> JSONValue {
        var body = JSONObject([
            "id": .string(id), "object": .string(object), "created": .integer(now()),
            "model": .string(configuration.modelName), "system_fingerprint": .string(fingerprint),
            "choices": .array(choices),
        ])
        if let usage { body.set("usage", usage) }
        return .object(body)
    }

    func now() -> Int64 { Int64(Date().timeIntervalSince1970) }

    func finishReason(_ result: GenerationResult?) -> String {
        switch result?.finishReason {
        case .endOfSequence, .stopString: "stop"
        default: "length"
        }
    }

    func usage(prompt: Int, _ results: [GenerationResult]) -> JSONValue {
        let completion = results.reduce(0) { $0 + $1.tokens.count }
        // Cached: prompt tokens the first choice did not have to compute.
        let cached = results.first.map { $0.promptTokens - $0.promptTokensEvaluated } ?? 0
        return .object(
            JSONObject([
                "prompt_tokens": .integer(Int64(prompt)), "completion_tokens": .integer(Int64(completion)),
                "total_tokens": .integer(Int64(prompt + completion)),
                "prompt_tokens_details": .object(JSONObject(["cached_tokens": .integer(Int64(max(0, cached)))])),
            ]))
    }

    func log(_ id: String, prompt: Int, results: [GenerationResult], started: ContinuousClock.Instant) {
        let generated = results.reduce(0) { $0 + $1.tokens.count }
        let cached = results.first.map { $0.promptTokens - $0.promptTokensEvaluated } ?? 0
        let seconds = (ContinuousClock.now - started).seconds
        let rate = results.map(\.generationTokensPerSecond).max() ?? 0
        logger.info(
            "\(id) prompt=\(prompt) cached=\(cached) generated=\(generated) ttft=\(String(format: "%.3f", results.first?.promptSeconds ?? 0))s tokens/s=\(String(format: "%.1f", rate)) total=\(String(format: "%.2f", seconds))s finish=\(results.map { finishReason($0) }.joined(separator: ","))"
        )
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}

/// A new id for a response: a prefix and 24 hex digits.
func responseID(_ prefix: String) -> String {
    prefix + String((0..<3).map { _ in String(format: "%08x", UInt32.random(in: 0...UInt32.max)) }.joined())
}
