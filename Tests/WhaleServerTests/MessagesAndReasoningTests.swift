import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing
import WhaleCore
import WhaleKernels
import WhaleModels
import WhaleTokenizer

@testable import WhaleEngine
@testable import WhaleServer

/// Anthropic's Messages API against the OpenAI route on the same model (same text, same token counts, the
/// event sequence, errors in Anthropic's shape), and a reasoning template's output split into
/// `reasoning_content` and `content`.
@Suite struct MessagesAndReasoningTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("WhaleModelsTests/Fixtures")

    func service(_ model: String, template: String, apiKey: String? = nil) throws -> InferenceService {
        let path = Self.fixtures.appendingPathComponent(model).path
        let tokenizer = try Tokenizer.load(path)
        let scheduler = Scheduler(
            model: try ModelRegistry.load(path), tokenizer: tokenizer, pool: ThreadPool(threads: 2),
            configuration: .init(parallel: 2, contextSize: 96, maxQueue: 8))
        return InferenceService(
            scheduler: scheduler, tokenizer: tokenizer, template: try ChatTemplate.named(template),
            configuration: ServerConfiguration(apiKey: apiKey, modelName: "tiny"))
    }

    func post(_ client: some TestClientProtocol, _ uri: String, _ body: String, headers extra: HTTPFields = [:])
        async throws -> (HTTPResponse.Status, String)
    {
        var headers = extra
        headers[.contentType] = "application/json"
        return try await client.execute(uri: uri, method: .post, headers: headers, body: ByteBuffer(string: body)) {
            ($0.status, String(buffer: $0.body))
        }
    }

    func object(_ text: String) throws -> JSONObject { try #require(try JSONValue.parse(text).object) }

    /// (event name, data) of an Anthropic event stream.
    func events(_ text: String) throws -> [(String, JSONObject)] {
        try text.components(separatedBy: "\n\n").filter { !$0.isEmpty }.map { event in
            let lines = event.components(separatedBy: "\n")
            #expect(lines.count == 2 && lines[0].hasPrefix("event: ") && lines[1].hasPrefix("data: "), "\(event)")
            return (String(lines[0].dropFirst(7)), try object(String(lines[1].dropFirst(6))))
        }
    }

    @Test func messagesEqualChatCompletions() async throws {
        let service = try service("tiny-llama", template: "chatml")
        defer { service.scheduler.shutdown() }
        try await service.application().test(.router) { client in
            let (_, chat) = try await post(
                client, "/v1/chat/completions",
                #"{"model":"t","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}],"#
                    + #""max_tokens":6,"temperature":0}"#)
            let chatJSON = try object(chat)
            let expected = chatJSON["choices"]?.array?.first?.object?["message"]?.object?["content"]?.string
            let promptTokens = chatJSON["usage"]?.object?["prompt_tokens"]?.integer
            let outputTokens = try #require(chatJSON["usage"]?.object?["completion_tokens"]?.integer)
            let finish = chatJSON["choices"]?.array?.first?.object?["finish_reason"]?.string
            let stopReason = finish == "length" ? "max_tokens" : "end_turn"
            let request =
                #"{"model":"t","system":"Be brief.","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"#
                + #""max_tokens":6,"temperature":0"#
            let (status, body) = try await post(client, "/v1/messages", request + "}")
            #expect(status == .ok, "\(body)")
            let message = try object(body)
            #expect(message["type"]?.string == "message" && message["role"]?.string == "assistant")
            #expect(message["id"]?.string?.hasPrefix("msg_") == true)
            let content = try #require(message["content"]?.array)
            #expect(content.count == 1 && content[0].object?["type"]?.string == "text")
            #expect(content[0].object?["text"]?.string == expected)
            #expect(message["stop_reason"]?.string == stopReason && message["stop_sequence"] == .null)
            let usage = try #require(message["usage"]?.object)
            #expect(usage["output_tokens"]?.integer == outputTokens)
            let input = (usage["input_tokens"]?.integer ?? 0) + (usage["cache_read_input_tokens"]?.integer ?? 0)
            #expect(input == promptTokens)

            // Streamed: Anthropic's event sequence, the same text.
            let (streamStatus, stream) = try await post(client, "/v1/messages", request + #","stream":true}"#)
            #expect(streamStatus == .ok)
            let sequence = try events(stream)
            let names = sequence.map(\.0)
            #expect(names.first == "message_start" && names.dropFirst().first == "content_block_start")
            #expect(Array(names.suffix(3)) == ["content_block_stop", "message_delta", "message_stop"])
            #expect(names.dropFirst(2).dropLast(3).allSatisfy { $0 == "content_block_delta" })
            let text = sequence.filter { $0.0 == "content_block_delta" }.compactMap {
                $0.1["delta"]?.object?["text"]?.string
            }.joined()
            #expect(text == expected)
            let delta = try #require(sequence.first { $0.0 == "message_delta" }?.1)
            #expect(delta["delta"]?.object?["stop_reason"]?.string == stopReason)
            #expect(delta["usage"]?.object?["output_tokens"]?.integer == outputTokens)

            // count_tokens: the prompt the template makes.
            let (_, counted) = try await post(
                client, "/v1/messages/count_tokens",
                #"{"model":"t","system":"Be brief.","messages":[{"role":"user","content":"hi"}]}"#)
            #expect(try object(counted)["input_tokens"]?.integer == promptTokens)
        }
    }

    @Test func stopSequenceIsReported() async throws {
        let service = try service("tiny-llama", template: "chatml")
        defer { service.scheduler.shutdown() }
        try await service.application().test(.router) { client in
            let request = #"{"model":"t","messages":[{"role":"user","content":"abc"}],"max_tokens":24,"temperature":0"#
            let (_, full) = try await post(client, "/v1/messages", request + "}")
            let text = try #require(try object(full)["content"]?.array?.first?.object?["text"]?.string)
            try #require(text.count > 6)
            let stop = String(Array(text)[3..<6])
            let (_, stopped) = try await post(
                client, "/v1/messages", request + #","stop_sequences":[\#(JSONValue.string(stop).serialized())]}"#)
            let message = try object(stopped)
            #expect(message["stop_reason"]?.string == "stop_sequence")
            #expect(message["stop_sequence"]?.string == stop)
            let cut = String(text[..<text.range(of: stop)!.lowerBound])
            #expect(message["content"]?.array?.first?.object?["text"]?.string == cut)
        }
    }

    /// Errors on /v1/messages come in Anthropic's shape, the API key also as `x-api-key`.
    @Test func errorsInAnthropicShape() async throws {
        let service = try service("tiny-llama", template: "chatml", apiKey: "secret")
        defer { service.scheduler.shutdown() }
        try await service.application().test(.router) { client in
            var key = HTTPFields()
            key[HTTPField.Name("x-api-key")!] = "secret"
            let cases: [(String, String)] = [
                (#"{"model":"t","messages":[{"role":"user","content":"a"}]}"#, "max_tokens"),
                (#"{"model":"t","max_tokens":5,"messages":[{"role":"system","content":"a"}]}"#, "messages.0.role"),
                (#"{"model":"t","max_tokens":5,"messages":[{"role":"user","content":[{"type":"image"}]}]}"#, "image"),
                (
                    #"{"model":"t","max_tokens":5,"messages":[{"role":"user","content":"a"}],"temperature":1.5}"#,
                    "temperature"
                ),
                (
                    #"{"model":"t","max_tokens":5,"messages":[{"role":"user","content":"a"}],"tools":[{"type":"bash_20250124","name":"bash"}]}"#,
                    "tools.0"
                ),
            ]
            for (body, mention) in cases {
                let (status, text) = try await post(client, "/v1/messages", body, headers: key)
                #expect(status == .badRequest, "\(text)")
                let error = try object(text)
                #expect(error["type"]?.string == "error")
                #expect(error["error"]?.object?["type"]?.string == "invalid_request_error")
                #expect(error["error"]?.object?["message"]?.string?.contains(mention) == true, "\(text)")
            }
            let (denied, text) = try await post(
                client, "/v1/messages", #"{"model":"t","max_tokens":1,"messages":[{"role":"user","content":"a"}]}"#)
            #expect(denied == .unauthorized)
            #expect(try object(text)["error"]?.object?["type"]?.string == "authentication_error")
        }
    }

    /// With R1's template on a DeepSeek-architecture model the output starts inside the reasoning: what comes
    /// before `</think>` is `reasoning_content`, the rest `content` — plain and streamed alike, and exactly the
    /// split of the inline text (`reasoning_format: none`).
    @Test func r1ReasoningIsReturnedApart() async throws {
        let service = try service("deepseek/v3-sigmoid-noaux", template: "deepseek-r1")
        defer { service.scheduler.shutdown() }
        try await service.application().test(.router) { client in
            let request = #"{"model":"t","messages":[{"role":"user","content":"why?"}],"max_tokens":16,"temperature":0"#
            let (_, inline) = try await post(client, "/v1/chat/completions", request + #","reasoning_format":"none"}"#)
            let raw = try #require(
                try object(inline)["choices"]?.array?.first?.object?["message"]?.object?["content"]?.string)
            #expect(
                try object(inline)["choices"]?.array?.first?.object?["message"]?.object?["reasoning_content"] == nil)
            let expected = ReasoningSplitter.split(raw, startsInReasoning: true)
            #expect(!expected.reasoning.isEmpty)

            let (_, plain) = try await post(client, "/v1/chat/completions", request + "}")
            let message = try #require(try object(plain)["choices"]?.array?.first?.object?["message"]?.object)
            #expect(message["reasoning_content"]?.string == expected.reasoning)
            #expect(message["content"]?.string == expected.content)

            let (_, stream) = try await post(client, "/v1/chat/completions", request + #","stream":true}"#)
            var streamed = ReasoningSplitter.Piece()
            for event in stream.components(separatedBy: "\n\n") where event.hasPrefix("data: {") {
                for choice in try object(String(event.dropFirst(6)))["choices"]?.array ?? [] {
                    let delta = choice.object?["delta"]?.object
                    streamed.reasoning += delta?["reasoning_content"]?.string ?? ""
                    streamed.content += delta?["content"]?.string ?? ""
                }
            }
            #expect(streamed == expected)

            // Anthropic's API returns the reasoning as a thinking block before the text.
            let (_, anthropic) = try await post(
                client, "/v1/messages",
                #"{"model":"t","messages":[{"role":"user","content":"why?"}],"#
                    + #""max_tokens":16,"temperature":0,"thinking":{"type":"enabled","budget_tokens":1024}}"#)
            let blocks = try #require(try object(anthropic)["content"]?.array?.compactMap(\.object))
            #expect(blocks.map { $0["type"]?.string } == ["thinking", "text"])
            #expect(blocks.first?["thinking"]?.string == expected.reasoning)
            #expect(blocks.last?["text"]?.string == expected.content)

            let (status, error) = try await post(
                client, "/v1/chat/completions", request + #","reasoning_format":"sometimes"}"#)
            #expect(status == .badRequest && error.contains("reasoning_format"))
        }
    }
}
