import Foundation
import HTTPTypes
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

/// A test double for the server's plumbing: the tiny DeepSeek fixture runs and caches as usual, but its logits
/// are replaced so that greedy decoding writes `script` and then ends — what a trained reasoning or
/// tool-calling model writes, which a random fixture never does.
final class ScriptedModel: LanguageModel, Sendable {
    let inner: any LanguageModel
    let script: [Int]
    let end: Int
    /// Per sequence (cache): how much of the script it has written.
    private let cursors = Mutex<[ObjectIdentifier: Int]>([:])

    init(inner: any LanguageModel, script: [Int], end: Int) {
        self.inner = inner
        self.script = script
        self.end = end
    }

    var architecture: String { inner.architecture }
    var vocabularySize: Int { inner.vocabularySize }
    var hiddenSize: Int { inner.hiddenSize }
    var contextLength: Int { inner.contextLength }
    var cacheBytesPerToken: Int { inner.cacheBytesPerToken }
    func makeCache(capacity: Int) -> KVCache { inner.makeCache(capacity: capacity) }

    func forward(_ batch: [SequenceInput], context: ForwardContext) throws -> [[Float]] {
        scripted(batch, try inner.forward(batch, context: context))
    }

    func forwardKeepingHidden(_ batch: [SequenceInput], context: ForwardContext) throws -> (
        logits: [[Float]], hidden: [[Float]]
    ) {
        let (logits, hidden) = try inner.forwardKeepingHidden(batch, context: context)
        return (scripted(batch, logits), hidden)
    }

    /// A sequence fed the script's next token goes on with the script; anything else (a prompt) starts it.
    private func scripted(_ batch: [SequenceInput], _ logits: [[Float]]) -> [[Float]] {
        zip(batch, logits).map { input, rows in
            guard input.logits == .last else { return rows }
            let position = cursors.withLock { cursors -> Int in
                let key = ObjectIdentifier(input.cache)
                var next = 0
                if input.tokens.count == 1, let at = cursors[key], at < script.count, script[at] == input.tokens[0] {
                    next = at + 1
                }
                cursors[key] = next
                return next
            }
            var row = [Float](repeating: -30, count: vocabularySize)
            row[position < script.count ? script[position] : end] = 0
            return row
        }
    }
}

/// Scripted answers through the whole server: R1's reasoning split into `reasoning_content` and `content`
/// (plain, streamed, Anthropic thinking blocks), and tool calls read into `tool_calls` / `tool_use` blocks.
@Suite struct ScriptedAnswerTests {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("WhaleModelsTests/Fixtures/deepseek/v3-sigmoid-noaux").path

    func service(template: String, answer: String) throws -> InferenceService {
        let tokenizer = try Tokenizer.load(Self.fixture)
        let end = try #require(tokenizer.endOfGenerationTokenIDs.first)
        let model = ScriptedModel(
            inner: try ModelRegistry.load(Self.fixture), script: tokenizer.encode(answer, parseSpecial: false),
            end: end)
        let scheduler = Scheduler(
            model: model, tokenizer: tokenizer, pool: ThreadPool(threads: 2),
            configuration: .init(parallel: 2, contextSize: 1024, maxQueue: 8))
        return InferenceService(
            scheduler: scheduler, tokenizer: tokenizer, template: try ChatTemplate.named(template),
            configuration: ServerConfiguration(modelName: "tiny"))
    }

    func post(_ client: some TestClientProtocol, _ uri: String, _ body: String) async throws -> String {
        try await client.execute(
            uri: uri, method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(string: body)
        ) { String(buffer: $0.body) }
    }

    func object(_ text: String) throws -> JSONObject { try #require(try JSONValue.parse(text).object) }

    /// The `data:` events of an SSE stream, without `[DONE]`.
    func chunks(_ stream: String) throws -> [JSONObject] {
        try stream.components(separatedBy: "\n\n").filter { $0.hasPrefix("data: {") }.map {
            try object(String($0.dropFirst(6)))
        }
    }

    @Test func r1ReasoningAndAnswerComeApart() async throws {
        let service = try service(
            template: "deepseek-r1", answer: "Let me think.\n2 + 2 = 4.\n</think>\n\nThe answer is 4.")
        defer { service.scheduler.shutdown() }
        try await service.application().test(.router) { client in
            let request =
                #"{"model":"t","messages":[{"role":"user","content":"2+2?"}],"max_tokens":100,"temperature":0"#
            let plain = try object(try await post(client, "/v1/chat/completions", request + "}"))
            let choice = try #require(plain["choices"]?.array?.first?.object)
            #expect(choice["message"]?.object?["reasoning_content"]?.string == "Let me think.\n2 + 2 = 4.")
            #expect(choice["message"]?.object?["content"]?.string == "The answer is 4.")
            #expect(choice["finish_reason"]?.string == "stop")

            var reasoning = ""
            var content = ""
            for chunk in try chunks(try await post(client, "/v1/chat/completions", request + #","stream":true}"#)) {
                let delta = chunk["choices"]?.array?.first?.object?["delta"]?.object
                reasoning += delta?["reasoning_content"]?.string ?? ""
                content += delta?["content"]?.string ?? ""
            }
            #expect(reasoning == "Let me think.\n2 + 2 = 4." && content == "The answer is 4.")

            let inline = try object(
                try await post(client, "/v1/chat/completions", request + #","reasoning_format":"none"}"#))
            let raw = inline["choices"]?.array?.first?.object?["message"]?.object?["content"]?.string
            #expect(raw == "Let me think.\n2 + 2 = 4.\n</think>\n\nThe answer is 4.")

            let message = try object(
                try await post(
                    client, "/v1/messages",
                    #"{"model":"t","max_tokens":100,"temperature":0,"messages":[{"role":"user","content":"2+2?"}]}"#))
            let blocks = try #require(try message["content"]?.array?.compactMap(\.object))
            #expect(blocks.map { $0["type"]?.string } == ["thinking", "text"])
            #expect(blocks.first?["thinking"]?.string == "Let me think.\n2 + 2 = 4.")
            #expect(blocks.last?["text"]?.string == "The answer is 4.")
        }
    }

    @Test func toolCallsBecomeToolCalls() async throws {
        let call =
            "I will look it up.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
            + "</tool_call>"
        let service = try service(template: "qwen2.5", answer: call)
        defer { service.scheduler.shutdown() }
        let tools =
            #"[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]"#
        try await service.application().test(.router) { client in
            let request =
                #"{"model":"t","messages":[{"role":"user","content":"Weather?"}],"max_tokens":200,"temperature":0,"#
                + #""tools":\#(tools)"#
            let plain = try object(try await post(client, "/v1/chat/completions", request + "}"))
            let choice = try #require(plain["choices"]?.array?.first?.object)
            #expect(choice["finish_reason"]?.string == "tool_calls")
            let message = try #require(choice["message"]?.object)
            #expect(message["content"]?.string == "I will look it up.\n")
            let calls = try #require(try message["tool_calls"]?.array?.compactMap(\.object))
            #expect(calls.count == 1 && calls[0]["type"]?.string == "function")
            #expect(calls[0]["id"]?.string?.hasPrefix("call_") == true)
            #expect(calls[0]["function"]?.object?["name"]?.string == "get_weather")
            #expect(calls[0]["function"]?.object?["arguments"]?.string == #"{"city": "Paris"}"#)

            // Streamed: the text, then the call's opening delta and its arguments, then finish_reason tool_calls.
            var content = ""
            var deltas: [JSONObject] = []
            var finish: String?
            for chunk in try chunks(try await post(client, "/v1/chat/completions", request + #","stream":true}"#)) {
                let choice = chunk["choices"]?.array?.first?.object
                content += choice?["delta"]?.object?["content"]?.string ?? ""
                deltas += choice?["delta"]?.object?["tool_calls"]?.array?.compactMap(\.object) ?? []
                finish = choice?["finish_reason"]?.string ?? finish
            }
            #expect(content == "I will look it up.\n" && finish == "tool_calls")
            #expect(deltas.count == 2)
            #expect(deltas.first?["function"]?.object?["name"]?.string == "get_weather")
            #expect(deltas.first?["id"]?.string?.hasPrefix("call_") == true)
            #expect(deltas.last?["function"]?.object?["arguments"]?.string == #"{"city": "Paris"}"#)

            // Anthropic: a text block and a tool_use block, stop_reason tool_use.
            let anthropic = try object(
                try await post(
                    client, "/v1/messages",
                    #"{"model":"t","max_tokens":200,"temperature":0,"messages":[{"role":"user","content":"Weather?"}],"#
                        + #""tools":[{"name":"get_weather","input_schema":{"type":"object"}}]}"#))
            #expect(anthropic["stop_reason"]?.string == "tool_use")
            let blocks = try #require(try anthropic["content"]?.array?.compactMap(\.object))
            #expect(blocks.map { $0["type"]?.string } == ["text", "tool_use"])
            #expect(blocks.last?["input"] == .object(["city": .string("Paris")]))
        }
    }
}
