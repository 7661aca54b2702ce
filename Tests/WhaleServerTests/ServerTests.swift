import Foundation
import Hummingbird
import HummingbirdTesting
import Synchronization
import Testing
import WhaleCore
import WhaleKernels
import WhaleModels
import WhaleTokenizer

@testable import WhaleEngine
@testable import WhaleServer

/// The routes in-process (HummingbirdTesting) on the tiny random Llama with its byte-level tokenizer and the
/// ChatML template: response shapes, errors in OpenAI's form, the API key, streaming, and batch invariance.
@Suite struct ServerTests {
    static let model = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("WhaleModelsTests/Fixtures/tiny-llama").path

    func service(apiKey: String? = nil, parallel: Int = 4, maxQueue: Int = 16, stages: Int? = nil) throws
        -> InferenceService
    {
        let loaded = try ModelRegistry.load(Self.model)
        let model: any LanguageModel = stages.map { StagedModel(loaded, stages: $0) } ?? loaded
        let tokenizer = try Tokenizer.load(Self.model)
        let scheduler = Scheduler(
            model: model, tokenizer: tokenizer, pool: ThreadPool(threads: 2),
            configuration: .init(parallel: parallel, contextSize: 96, maxQueue: maxQueue))
        return InferenceService(
            scheduler: scheduler, tokenizer: tokenizer, template: try ChatTemplate.named("chatml"),
            configuration: ServerConfiguration(apiKey: apiKey, modelName: "tiny"))
    }

    func post(_ client: some TestClientProtocol, _ uri: String, _ body: String, key: String? = nil) async throws
        -> (HTTPResponse.Status, String)
    {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        if let key { headers[.authorization] = "Bearer \(key)" }
        return try await client.execute(uri: uri, method: .post, headers: headers, body: ByteBuffer(string: body)) {
            ($0.status, String(buffer: $0.body))
        }
    }

    func object(_ text: String) throws -> JSONObject { try #require(try JSONValue.parse(text).object) }

    @Test func chatCompletionShape() async throws {
        let service = try service()
        defer { service.scheduler.shutdown() }
        try await service.application().test(.router) { client in
            let (status, body) = try await post(
                client, "/v1/chat/completions",
                #"{"model":"tiny","messages":[{"role":"user","content":"hello"}],"max_tokens":5,"temperature":0}"#)
            #expect(status == .ok, "\(body)")
            let json = try object(body)
            #expect(json["object"]?.string == "chat.completion")
            #expect(json["model"]?.string == "tiny")
            let choice = try #require(json["choices"]?.array?.first?.object)
            #expect(choice["message"]?.object?["role"]?.string == "assistant")
            #expect(choice["finish_reason"]?.string == "length")
            #expect(json["usage"]?.object?["completion_tokens"]?.integer == 5)
        }
    }

    @Test func streamedChatEqualsPlainChat() async throws {
        let service = try service()
        defer { service.scheduler.shutdown() }
        try await service.application().test(.router) { client in
            let request = #"{"model":"t","messages":[{"role":"user","content":"abc"}],"max_tokens":8,"temperature":0"#
            let (_, plain) = try await post(client, "/v1/chat/completions", request + "}")
            let text = try object(plain)["choices"]?.array?.first?.object?["message"]?.object?["content"]?.string
            let (status, stream) = try await post(
                client, "/v1/chat/completions", request + #","stream":true,"stream_options":{"include_usage":true}}"#)
            #expect(status == .ok)
            let events = stream.components(separatedBy: "\n\n").filter { !$0.isEmpty }
            #expect(events.last == "data: [DONE]")
            var streamed = ""
            var finish: String?
            var usage: JSONObject?
            for event in events.dropLast() {
                let chunk = try object(String(event.dropFirst(6)))
                #expect(chunk["object"]?.string == "chat.completion.chunk")
                if let u = chunk["usage"]?.object { usage = u }
                for choice in chunk["choices"]?.array ?? [] {
                    streamed += choice.object?["delta"]?.object?["content"]?.string ?? ""
                    finish = choice.object?["finish_reason"]?.string ?? finish
                }
            }
            #expect(streamed == text)
            #expect(finish == "length")
            #expect(usage?["completion_tokens"]?.integer == 8)
        }
    }

    /// Six requests at once (more than the four slots) each give what they give alone.
    @Test func concurrentRequestsEqualSingleRuns() async throws {
        let service = try service()
        defer { service.scheduler.shutdown() }
        try await service.application().test(.router) { client in
            let prompts = (0..<6).map {
                #"{"model":"t","prompt":[1,\#($0 + 5),\#($0 * 3 + 2),9],"max_tokens":10,"temperature":0}"#
            }
            var alone: [String] = []
            for prompt in prompts { alone.append(try await post(client, "/v1/completions", prompt).1) }
            let together = try await withThrowingTaskGroup(of: (Int, String).self) { group in
                for (i, prompt) in prompts.enumerated() {
                    group.addTask { (i, try await post(client, "/v1/completions", prompt).1) }
                }
                var results = Array(repeating: "", count: prompts.count)
                for try await (i, body) in group { results[i] = body }
                return results
            }
            func text(_ body: String) throws -> String? {
                try object(body)["choices"]?.array?.first?.object?["text"]?.string
            }
            for i in prompts.indices { #expect(try text(together[i]) == text(alone[i]), "request \(i)") }
        }
    }

    /// Through a pipelined model (the scheduler's micro-batches: one group of slots per stage, a group's pass
    /// begun while others are in flight), concurrent requests — with a prompt-scoring request (exclusive
    /// work, which drains the pipeline) among them — each give what they give alone, unpipelined.
    @Test(arguments: [2, 3])
    func pipelinedRequestsEqualSingleRuns(stages: Int) async throws {
        let plain = try service(parallel: 6)
        defer { plain.scheduler.shutdown() }
        let pipelined = try service(parallel: 6, stages: stages)
        defer { pipelined.scheduler.shutdown() }
        let prompts = (0..<8).map {
            #"{"model":"t","prompt":[1,\#($0 + 5),\#($0 * 3 + 2),9],"max_tokens":\#(6 + $0),"temperature":0}"#
        }
        let scoring = #"{"model":"t","prompt":[1,2,3,4,5],"max_tokens":0,"echo":true,"logprobs":1}"#
        let alone = try await plain.application().test(.router) { client in
            var alone: [String] = []
            for prompt in prompts + [scoring] { alone.append(try await post(client, "/v1/completions", prompt).1) }
            return alone
        }
        try await pipelined.application().test(.router) { client in
            let together = try await withThrowingTaskGroup(of: (Int, String).self) { group in
                for (i, prompt) in (prompts + [scoring]).enumerated() {
                    group.addTask { (i, try await post(client, "/v1/completions", prompt).1) }
                }
                var results = Array(repeating: "", count: prompts.count + 1)
                for try await (i, body) in group { results[i] = body }
                return results
            }
            func choice(_ body: String) throws -> String? {
                try object(body)["choices"]?.array?.first?.object.map { JSONValue.object($0).serialized() }
            }
            for i in together.indices { #expect(try choice(together[i]) == choice(alone[i]), "request \(i)") }
        }
        let staged = try #require(pipelined.scheduler.model as? StagedModel)
        #expect(staged.mostInFlight.withLock { $0 } >= 2)
    }

    @Test func errorsNameTheParameter() async throws {
        let service = try service()
        defer { service.scheduler.shutdown() }
        try await service.application().test(.router) { client in
            let cases: [(String, String)] = [
                (#"{"model":"t","messages":[]}"#, "messages"),
                (#"{"model":"t","messages":[{"role":"x","content":"a"}]}"#, "messages[0].role"),
                (#"{"model":"t","messages":[{"role":"user","content":"a"}],"temperature":-1}"#, "temperature"),
                (#"{"model":"t","messages":[{"role":"user","content":"a"}],"n":0}"#, "n"),
                (#"{"model":"t","messages":[{"role":"user","content":"a"}],"tools":"x"}"#, "tools"),
                (#"{"model":"t","messages":[{"role":"user","content":"a"}],"logit_bias":{"x":1}}"#, "logit_bias"),
            ]
            for (body, param) in cases {
                let (status, text) = try await post(client, "/v1/chat/completions", body)
                #expect(status == .badRequest, "\(text)")
                #expect(try object(text)["error"]?.object?["param"]?.string == param, "\(text)")
            }
            let (status, text) = try await post(client, "/v1/chat/completions", "{oops")
            #expect(status == .badRequest && text.contains("invalid_json"))
            let long = String(repeating: "word ", count: 400)
            let (tooLong, reply) = try await post(
                client, "/v1/chat/completions", #"{"model":"t","messages":[{"role":"user","content":"\#(long)"}]}"#)
            #expect(tooLong == .badRequest && reply.contains("context_length_exceeded"), "\(reply)")
        }
    }

    @Test func apiKeyGuardsV1Routes() async throws {
        let service = try service(apiKey: "secret")
        defer { service.scheduler.shutdown() }
        try await service.application().test(.router) { client in
            let body = #"{"model":"t","prompt":[1,2],"max_tokens":1}"#
            let (denied, text) = try await post(client, "/v1/completions", body)
            #expect(denied == .unauthorized && text.contains("invalid_api_key"))
            let (wrong, _) = try await post(client, "/v1/completions", body, key: "nope")
            #expect(wrong == .unauthorized)
            let (allowed, _) = try await post(client, "/v1/completions", body, key: "secret")
            #expect(allowed == .ok)
            try await client.execute(uri: "/health", method: .get) { #expect($0.status == .ok) }
        }
    }

    /// Echo with logprobs and max_tokens 0 scores the prompt: the log-probabilities of SequenceScore.
    @Test func echoScoresThePrompt() async throws {
        let service = try service()
        defer { service.scheduler.shutdown() }
        let ids = [1, 7, 30, 12, 5]
        let expected = try SequenceScore.compute(
            ids, model: service.scheduler.model, context: ForwardContext(pool: ThreadPool(threads: 1)), top: 1)
        try await service.application().test(.router) { client in
            let (status, text) = try await post(
                client, "/v1/completions",
                #"{"model":"t","prompt":[1,7,30,12,5],"max_tokens":0,"echo":true,"logprobs":1}"#)
            #expect(status == .ok, "\(text)")
            let logprobs = try #require(try object(text)["choices"]?.array?.first?.object?["logprobs"]?.object)
            let values = try #require(logprobs["token_logprobs"]?.array)
            #expect(values.count == ids.count && values[0] == .null)
            for i in 1..<ids.count { #expect(abs((values[i].double ?? .nan) - (expected.logprobs[i] ?? 0)) < 1e-9) }
        }
    }

    @Test func queueFullIs503WithRetryAfter() async throws {
        let service = try service(parallel: 1, maxQueue: 0)
        defer { service.scheduler.shutdown() }
        try await service.application().test(.router) { client in
            var headers = HTTPFields()
            headers[.contentType] = "application/json"
            // One long request holds the only slot; the queue takes none.
            async let first = post(client, "/v1/completions", #"{"model":"t","prompt":[1,2],"max_tokens":80}"#)
            try await Task.sleep(for: .milliseconds(50))
            try await client.execute(
                uri: "/v1/completions", method: .post, headers: headers,
                body: ByteBuffer(string: #"{"model":"t","prompt":[3],"max_tokens":1}"#)
            ) { response in
                #expect(response.status == .serviceUnavailable)
                #expect(response.headers[.retryAfter] != nil)
            }
            _ = try await first
        }
    }

    /// Before the model has loaded: /health says loading (503), the API answers 503 model_loading.
    @Test func loadingAnswers503() async throws {
        let handle = ServiceHandle(configuration: ServerConfiguration(modelName: "tiny"))
        try await handle.application().test(.router) { client in
            try await client.execute(uri: "/health", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                #expect(String(buffer: response.body).contains("loading"))
            }
            try await client.execute(uri: "/v1/models", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                #expect(String(buffer: response.body).contains("model_loading"))
            }
            let service = try service()
            defer { service.scheduler.shutdown() }
            handle.ready(service)
            try await client.execute(uri: "/health", method: .get) { #expect($0.status == .ok) }
        }
    }

    @Test func tokenizeAndDetokenize() async throws {
        let service = try service()
        defer { service.scheduler.shutdown() }
        try await service.application().test(.router) { client in
            let (_, tokens) = try await post(client, "/tokenize", #"{"content":"hello world"}"#)
            let ids = try #require(try object(tokens)["tokens"]?.array)
            #expect(!ids.isEmpty)
            let (_, text) = try await post(client, "/detokenize", #"{"tokens":\#(JSONValue.array(ids).serialized())}"#)
            #expect(try object(text)["content"]?.string == "hello world")
        }
    }
}

/// A model that pretends to be split into `stages` (as across MPI ranks): a pass's logits are computed when
/// it begins and handed out in order by `finishPass`, which is what a pipeline guarantees. Records how many
/// passes were in flight at once.
final class StagedModel: PipelinedLanguageModel, @unchecked Sendable {
    let model: any LanguageModel
    let stageCount: Int
    private var queue: [[[Float]]] = []
    let mostInFlight = Mutex(0)

    init(_ model: any LanguageModel, stages: Int) {
        self.model = model
        stageCount = stages
    }

    var architecture: String { model.architecture }
    var vocabularySize: Int { model.vocabularySize }
    var hiddenSize: Int { model.hiddenSize }
    var contextLength: Int { model.contextLength }
    var cacheBytesPerToken: Int { model.cacheBytesPerToken }
    var passesInFlight: Int { queue.count }
    func makeCache(capacity: Int) -> KVCache { model.makeCache(capacity: capacity) }

    func forward(_ batch: [SequenceInput], context: ForwardContext) throws -> [[Float]] {
        precondition(queue.isEmpty, "forward with passes in flight")
        return try model.forward(batch, context: context)
    }

    func forwardKeepingHidden(_ batch: [SequenceInput], context: ForwardContext) throws -> (
        logits: [[Float]], hidden: [[Float]]
    ) { try model.forwardKeepingHidden(batch, context: context) }

    func beginPass(_ batch: [SequenceInput], context: ForwardContext) throws {
        precondition(queue.count < stageCount, "more passes in flight than stages")
        queue.append(try model.forward(batch, context: context))
        let count = queue.count
        mostInFlight.withLock { $0 = max($0, count) }
    }

    func finishPass() throws -> [[Float]] { queue.removeFirst() }
}
