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

/// Tools in chat requests: rendered through the model's template (the prompt is exactly the template's
/// rendering), validated, forced by `tool_choice`, and read back from the answer as OpenAI `tool_calls`.
@Suite struct ToolCallServerTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("WhaleModelsTests/Fixtures")
    static let weather: JSONValue = .object([
        "type": .string("function"),
        "function": .object([
            "name": .string("get_weather"), "description": .string("Weather in a city."),
            "parameters": .object([
                "type": .string("object"),
                "properties": .object(["city": .object(["type": .string("string")])]),
            ]),
        ]),
    ])

    func service(template: String) throws -> InferenceService {
        let path = Self.fixtures.appendingPathComponent("deepseek/v3-sigmoid-noaux").path
        let tokenizer = try Tokenizer.load(path)
        let scheduler = Scheduler(
            model: try ModelRegistry.load(path), tokenizer: tokenizer, pool: ThreadPool(threads: 2),
            configuration: .init(parallel: 2, contextSize: 1024, maxQueue: 8))
        return InferenceService(
            scheduler: scheduler, tokenizer: tokenizer, template: try ChatTemplate.named(template),
            configuration: ServerConfiguration(modelName: "tiny"))
    }

    func post(_ client: some TestClientProtocol, _ body: JSONObject) async throws -> (HTTPResponse.Status, JSONObject) {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return try await client.execute(
            uri: "/v1/chat/completions", method: .post, headers: headers,
            body: ByteBuffer(string: JSONValue.object(body).serialized())
        ) { ($0.status, try #require(try JSONValue.parse(String(buffer: $0.body)).object)) }
    }

    /// The prompt of a request with tools and earlier calls is the template's rendering of it.
    @Test(arguments: ["deepseek-v3", "deepseek-v3.1", "llama3.1", "qwen2.5"])
    func promptIsTheTemplatesRendering(name: String) async throws {
        let service = try service(template: name)
        defer { service.scheduler.shutdown() }
        let call = ChatMessage.ToolCall(name: "get_weather", arguments: #"{"city": "Paris"}"#)
        let messages = [
            ChatMessage(role: "user", content: "Weather in Paris?"),
            ChatMessage(role: "assistant", content: nil, toolCalls: [call]),
            ChatMessage(role: "tool", content: #"{"temp_c": 18}"#),
            ChatMessage(role: "assistant", content: "It is 18 °C."),
            ChatMessage(role: "user", content: "And Rome?"),
        ]
        let text = try ChatTemplate.named(name).render(
            messages, tools: [Self.weather], addGenerationPrompt: true,
            bosToken: service.tokenizer.bosTokenID.map { service.tokenizer.tokens[$0] } ?? "",
            eosToken: service.tokenizer.eosTokenIDs.first.map { service.tokenizer.tokens[$0] } ?? "")
        var ids = service.tokenizer.encode(text, parseSpecial: true)
        if service.tokenizer.addsBOS, let bos = service.tokenizer.bosTokenID, ids.first != bos {
            ids.insert(bos, at: 0)
        }
        let expected = ids.count
        let body: JSONObject = [
            "model": .string("t"), "max_tokens": .integer(1), "tools": .array([Self.weather]),
            "messages": .array([
                .object(["role": .string("user"), "content": .string("Weather in Paris?")]),
                .object([
                    "role": .string("assistant"), "content": .null,
                    "tool_calls": .array([
                        .object([
                            "id": .string("call_1"), "type": .string("function"),
                            "function": .object([
                                "name": .string("get_weather"), "arguments": .string(#"{"city": "Paris"}"#),
                            ]),
                        ])
                    ]),
                ]),
                .object([
                    "role": .string("tool"), "tool_call_id": .string("call_1"), "content": .string(#"{"temp_c": 18}"#),
                ]),
                .object(["role": .string("assistant"), "content": .string("It is 18 °C.")]),
                .object(["role": .string("user"), "content": .string("And Rome?")]),
            ]),
        ]
        try await service.application().test(.router) { client in
            let (status, reply) = try await post(client, body)
            #expect(status == .ok, "\(reply)")
            #expect(reply["usage"]?.object?["prompt_tokens"]?.integer == expected, "\(name)")
        }
    }

    /// Anthropic's tools, `tool_use` and `tool_result` blocks make the same prompt as the OpenAI form of the
    /// same conversation.
    @Test(arguments: ["deepseek-v3.1", "qwen2.5"])
    func anthropicToolBlocksMakeTheSamePrompt(name: String) async throws {
        let service = try service(template: name)
        defer { service.scheduler.shutdown() }
        let headers: HTTPFields = [.contentType: "application/json"]
        let anthropic = #"""
            {"model": "t", "tools": [{"name": "get_weather", "description": "Weather in a city.",
              "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
             "messages": [{"role": "user", "content": "Weather in Paris?"},
              {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C"},
                {"type": "text", "text": "And Rome?"}]}]}
            """#
        let openAI: JSONObject = [
            "model": .string("t"), "max_tokens": .integer(1), "tools": .array([Self.weather]),
            "messages": .array([
                .object(["role": .string("user"), "content": .string("Weather in Paris?")]),
                .object([
                    "role": .string("assistant"), "content": .string("Checking."),
                    "tool_calls": .array([
                        .object([
                            "id": .string("toolu_1"), "type": .string("function"),
                            "function": .object([
                                "name": .string("get_weather"), "arguments": .string(#"{"city": "Paris"}"#),
                            ]),
                        ])
                    ]),
                ]),
                .object(["role": .string("tool"), "tool_call_id": .string("toolu_1"), "content": .string("18 C")]),
                .object(["role": .string("user"), "content": .string("And Rome?")]),
            ]),
        ]
        try await service.application().test(.router) { client in
            let counted = try await client.execute(
                uri: "/v1/messages/count_tokens", method: .post, headers: headers, body: ByteBuffer(string: anthropic)
            ) { try JSONValue.parse(String(buffer: $0.body)).object?["input_tokens"]?.integer }
            let (_, reply) = try await post(client, openAI)
            #expect(counted != nil && counted == reply["usage"]?.object?["prompt_tokens"]?.integer, "\(name)")
        }
    }

    @Test func badToolRequestsNameTheParameter() async throws {
        let service = try service(template: "qwen2.5")
        defer { service.scheduler.shutdown() }
        let chatML = try self.service(template: "chatml")
        defer { chatML.scheduler.shutdown() }
        let user: JSONValue = .array([.object(["role": .string("user"), "content": .string("hi")])])
        let cases: [(JSONObject, String)] = [
            (["messages": user, "tools": .string("x")], "tools"),
            (["messages": user, "tools": .array([.object(["type": .string("function")])])], "tools[0]"),
            (["messages": user, "tool_choice": .string("required")], "tool_choice"),
            (
                [
                    "messages": user, "tools": .array([Self.weather]),
                    "tool_choice": .object([
                        "type": .string("function"), "function": .object(["name": .string("nope")]),
                    ]),
                ], "tool_choice"
            ),
            (["messages": user, "chat_template_kwargs": .object(["x": .bool(true)])], "chat_template_kwargs"),
        ]
        try await service.application().test(.router) { client in
            for (body, param) in cases {
                let (status, reply) = try await post(client, body)
                #expect(status == .badRequest, "\(reply)")
                #expect(reply["error"]?.object?["param"]?.string == param, "\(reply)")
            }
        }
        try await chatML.application().test(.router) { client in
            let (status, reply) = try await post(client, ["messages": user, "tools": .array([Self.weather])])
            #expect(status == .badRequest && reply["error"]?.object?["code"]?.string == "tools_unsupported")
        }
    }

    /// How the server reads answers: calls into `tool_calls` (a forced opening read as the start of the
    /// output, reasoning split off first), malformed calls as text, at most one call without parallel calls.
    @Test func answersAreReadIntoCalls() throws {
        let qwen = ChatOutput(opensReasoning: false, separatesReasoning: true, toolFormat: .qwen25)
        let two =
            "Sure.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": 1}}\n</tool_call>\n"
            + "<tool_call>\n{\"name\": \"b\", \"arguments\": {}}\n</tool_call>"
        let read = qwen.read(two)
        #expect(read.content == "Sure.\n" && read.reasoning == nil)
        #expect(read.calls == [.init(name: "a", arguments: #"{"x": 1}"#), .init(name: "b", arguments: "{}")])
        var single = qwen
        single.parallelToolCalls = false
        #expect(single.read(two).calls.map(\.name) == ["a"])
        let broken = "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": 1}\n</tool_call>"
        #expect(qwen.read(broken).calls.isEmpty && qwen.read(broken).content == broken)

        var forced = ChatOutput(opensReasoning: true, separatesReasoning: true, toolFormat: .deepseekV3)
        forced.forced = "</think>\n\n" + ToolCallFormat.deepseekV3.forcedOpening(name: "get_weather")
        let answer = forced.read("{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>")
        #expect(answer.reasoning == "" && answer.content == "")
        #expect(answer.calls == [.init(name: "get_weather", arguments: #"{"city": "Paris"}"#)])

        let r1 = ChatOutput(opensReasoning: true, separatesReasoning: true, toolFormat: .deepseekV3)
        let thought = r1.read(
            "Need weather.\n</think>\n\n<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>w\n```json\n{}\n"
                + "```<｜tool▁call▁end｜><｜tool▁calls▁end｜>")
        #expect(thought.reasoning == "Need weather." && thought.calls.map(\.name) == ["w"])
    }
}
