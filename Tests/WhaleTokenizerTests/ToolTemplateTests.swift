import Foundation
import Testing
import WhaleCore
import WhaleTokenizer

/// Tool-calling templates render byte for byte as transformers' `apply_chat_template(messages, tools=…)`
/// (Fixtures/chat/tools-*.jsonl, made by scripts/make-tool-template-fixtures.py), and the tool calls in
/// each rendered assistant turn — what the model learns to write — parse back to the calls that were rendered.
@Suite struct ToolTemplateTests {
    /// (fixture, built-in template name)
    static let templates = [
        ("deepseek-v3", "deepseek-v3"), ("deepseek-v3.1", "deepseek-v3.1"), ("llama3.1", "llama3.1"),
        ("qwen2.5", "qwen2.5"),
    ]

    /// A fixture conversation's messages; dict arguments become JSON text, as an OpenAI client sends them.
    static func messages(_ value: JSONValue) throws -> [ChatMessage] {
        try #require(value.array).map { item in
            let object = try #require(item.object)
            let calls = try object["tool_calls"]?.array?.map { call -> ChatMessage.ToolCall in
                let function = try #require(call.object?["function"]?.object)
                let arguments = try #require(function["arguments"])
                return ChatMessage.ToolCall(
                    type: call.object?["type"]?.string ?? "function", name: try #require(function["name"]?.string),
                    arguments: arguments.string ?? arguments.serialized())
            }
            return ChatMessage(
                role: try #require(object["role"]?.string), content: object["content"]?.string, toolCalls: calls)
        }
    }

    static func template(_ name: String, kwargs: JSONObject?) throws -> ChatTemplate {
        let thinking = kwargs?["thinking"]?.bool == true
        return try ChatTemplate.named(name + (thinking ? "-thinking" : ""))
    }

    @Test(arguments: templates)
    func rendersLikeTransformers(fixture: String, name: String) throws {
        let cases = try Fixtures.jsonLines("chat/tools-\(fixture).jsonl")
        #expect(cases.count >= 10)
        let jinja = try String(contentsOfFile: Fixtures.path("chat/\(fixture).jinja"), encoding: .utf8)
        #expect(try ChatTemplate.detect(jinja).name == name)
        for (index, item) in cases.enumerated() {
            let object = try #require(item.object)
            let template = try Self.template(name, kwargs: object["kwargs"]?.object)
            let messages = try Self.messages(try #require(object["messages"]))
            let render = {
                try template.render(
                    messages, tools: object["tools"]?.array,
                    addGenerationPrompt: object["add_generation_prompt"]?.bool
                        ?? false, bosToken: object["bos_token"]?.string ?? "",
                    eosToken: object["eos_token"]?.string ?? ""
                )
            }
            if let expected = object["rendered"]?.string {
                let rendered = try render()
                #expect(
                    rendered.utf8Bytes == expected.utf8Bytes, "\(fixture) case \(index): \(rendered.debugDescription)")
            } else {
                #expect(throws: WhaleError.self, "\(fixture) case \(index): the template raises") { try render() }
            }
        }
    }

    /// The assistant turns with tool calls, cut out of transformers' rendering, parse back to their calls
    /// (same names, same arguments as JSON values) and text; rendering the parsed calls gives the same text.
    @Test(arguments: templates)
    func parsedCallsRoundTrip(fixture: String, name: String) throws {
        let template = try ChatTemplate.named(name)
        let format = try #require(template.toolCallFormat)
        var checked = 0
        for item in try Fixtures.jsonLines("chat/tools-\(fixture).jsonl") {
            let object = try #require(item.object)
            guard let rendered = object["rendered"]?.string else { continue }
            for message in try Self.messages(try #require(object["messages"])) {
                // Llama 3.1 takes one call per turn (the template raises otherwise; rendersLikeTransformers checks).
                guard let calls = message.toolCalls, format != .llama31 || calls.count == 1 else { continue }
                let turn = try #require(
                    try template.render(
                        [message], addGenerationPrompt: false, bosToken: "", eosToken: "<E>"
                    ).assistantTurn(format), "\(fixture)")
                #expect(rendered.contains(turn), "\(fixture): \(turn.debugDescription) is not in the golden")
                let parsed = try #require(format.parse(turn), "\(fixture): \(turn.debugDescription)")
                // Llama 3.1's template drops the text of a calling turn.
                #expect(parsed.content == (format == .llama31 ? "" : message.content ?? ""), "\(fixture)")
                #expect(parsed.calls.map(\.name) == calls.map(\.name))
                for (got, want) in zip(parsed.calls, calls) {
                    #expect(try JSONValue.parse(got.arguments) == JSONValue.parse(want.arguments), "\(fixture)")
                }
                let again = ChatMessage(role: "assistant", content: message.content, toolCalls: parsed.calls)
                let rerendered = try template.render([again], addGenerationPrompt: false, bosToken: "", eosToken: "<E>")
                #expect(rerendered.assistantTurn(format) == turn, "\(fixture)")
                checked += 1
            }
        }
        #expect(checked >= (format == .llama31 ? 4 : 6))
    }

    /// Output that is not a well-formed call is not a call (the server returns it as text).
    @Test func malformedCallsAreText() {
        let cases: [(ToolCallFormat, String)] = [
            (.qwen25, "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}\n</tool_call>"),
            (.qwen25, "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}"),
            (.qwen25, "<tool_call>\n{\"arguments\": {}}\n</tool_call>"),
            (.qwen25, "<tool_call>\n{\"name\": \"f\", \"arguments\": \"not an object\"}\n</tool_call>"),
            (.qwen25, "Just an answer with no call."),
            (.llama31, "{\"name\": \"f\", \"parameters\": {\"a\": 1}"),
            (.llama31, "The answer is {\"name\": 1}."),
            (.llama31, "{\"parameters\": {}}"),
            (.deepseekV31, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>{\"a\": }<｜tool▁call▁end｜>"),
            (.deepseekV31, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f{\"a\": 1}<｜tool▁call▁end｜>"),
            (.deepseekV31, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>{}<｜tool▁call▁end｜>junk"),
            (
                .qwen25,
                "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call><tool_call>{\"name\": 1}</tool_call>"
            ),
            (.deepseekV3, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n{\"a\": 1}<｜tool▁call▁end｜>"),
            (.deepseekV3, "<｜tool▁calls▁begin｜><｜tool▁calls▁end｜>"),
        ]
        for (format, text) in cases { #expect(format.parse(text) == nil, "\(format): \(text.debugDescription)") }
    }

    /// What a model writes after its calls is kept as text, after the text before them.
    @Test func textAfterTheCallsIsKept() throws {
        let qwen = try #require(
            ToolCallFormat.qwen25.parse(
                "Hi.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>\n\nMore text."))
        #expect(qwen.content == "Hi.\nMore text." && qwen.calls == [.init(name: "f", arguments: "{}")])
        let deepseek = try #require(
            ToolCallFormat.deepseekV31.parse(
                "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>{}<｜tool▁call▁end｜><｜tool▁calls▁end｜> done"))
        #expect(deepseek.content == "done" && deepseek.calls.count == 1)
    }

    /// Several calls with arguments holding braces, quotes and newlines, and text before them.
    @Test func severalCallsWithAwkwardArguments() throws {
        let calls = [
            ChatMessage.ToolCall(
                name: "get_weather", arguments: #"{"city": "New \"York\" {NY}\nline 2", "n": [1, {}]}"#),
            ChatMessage.ToolCall(name: "search", arguments: #"{"query": "a}b{c </tool_call> \\ d"}"#),
        ]
        for name in ["deepseek-v3", "deepseek-v3.1", "qwen2.5"] {
            let template = try ChatTemplate.named(name)
            let format = try #require(template.toolCallFormat)
            let message = ChatMessage(role: "assistant", content: "Checking.", toolCalls: calls)
            let turn = try #require(
                try template.render([message], addGenerationPrompt: false, bosToken: "", eosToken: "").assistantTurn(
                    format))
            let parsed = try #require(format.parse(turn), "\(name): \(turn.debugDescription)")
            #expect(parsed.content == "Checking.", "\(name)")
            #expect(parsed.calls.map(\.name) == ["get_weather", "search"], "\(name)")
            for (got, want) in zip(parsed.calls, calls) {
                #expect(try JSONValue.parse(got.arguments) == JSONValue.parse(want.arguments), "\(name)")
            }
        }
    }

    /// Streamed in chunks of every size, the text before the calls comes out, the calls are found at the end,
    /// and text without calls (or with broken ones) comes out unchanged.
    @Test func streamingFindsTheSameCalls() throws {
        let calls = [
            ChatMessage.ToolCall(name: "get_weather", arguments: #"{"city": "Paris"}"#),
            ChatMessage.ToolCall(name: "search", arguments: #"{"query": "{x}\n\"y\""}"#),
        ]
        for name in ["deepseek-v3", "deepseek-v3.1", "llama3.1", "qwen2.5"] {
            let template = try ChatTemplate.named(name)
            let format = try #require(template.toolCallFormat)
            let message = ChatMessage(
                role: "assistant", content: format == .llama31 ? nil : "Let me look.",
                toolCalls: format == .llama31 ? [calls[0]] : calls)
            let turn = try #require(
                try template.render([message], addGenerationPrompt: false, bosToken: "", eosToken: "").assistantTurn(
                    format))
            let expected = try #require(format.parse(turn))
            let plain = "No calls here: just {braces} and <tags>."
            let broken = String(turn.dropLast(12))
            for (text, wantCalls) in [(turn, expected.calls), (plain, []), (broken, [])] {
                let characters = Array(text)
                for size in [1, 2, 3, 5, 8, 13, characters.count] {
                    var stream = ToolCallStream(format: format)
                    var shown = ""
                    for start in stride(from: 0, to: characters.count, by: size) {
                        shown += stream.feed(String(characters[start..<min(start + size, characters.count)]))
                    }
                    let end = stream.finish()
                    shown += end.text
                    #expect(end.calls == wantCalls, "\(name), chunks of \(size): \(text.debugDescription)")
                    if wantCalls.isEmpty {
                        #expect(shown == text, "\(name), chunks of \(size)")
                    } else {
                        #expect(
                            shown.trimmingCharacters(in: .newlines) == expected.content, "\(name), chunks of \(size)")
                    }
                }
            }
        }
    }

    @Test func pythonJSONMatchesJsonDumps() throws {
        let value = try JSONValue.parse(
            #"{"a": [1, 2.5, 1e16, 1e-5, 0.0001, true, null, "é\u0001\n"], "b": {}, "c": []}"#)
        #expect(
            value.pythonJSON() == #"{"a": [1, 2.5, 1e+16, 1e-05, 0.0001, true, null, "é\u0001\n"], "b": {}, "c": []}"#)
        #expect(value.pythonJSON(indent: 2).hasPrefix("{\n  \"a\": [\n    1,\n    2.5,"))
    }
}

extension String {
    /// The assistant turn of a rendered single assistant message: what the model writes for it.
    fileprivate func assistantTurn(_ format: ToolCallFormat) -> String? {
        switch format {
        case .deepseekV3, .deepseekV31:
            // `<｜Assistant｜>` (V3.1: `<think></think>`) opens the turn when a user turn precedes it; alone it is
            // the text before the calls.
            var text = Substring(self)
            if text.hasPrefix("<｜Assistant｜>") { text = text.dropFirst("<｜Assistant｜>".count) }
            if text.hasPrefix("<think></think>") { text = text.dropFirst("<think></think>".count) }
            guard let end = text.range(of: "<｜end▁of▁sentence｜>") else { return nil }
            return String(text[..<end.lowerBound])
        case .llama31:
            guard let start = range(of: "<|start_header_id|>assistant<|end_header_id|>\n\n"),
                let end = self[start.upperBound...].range(of: "<|eot_id|>")
            else { return nil }
            return String(self[start.upperBound..<end.lowerBound])
        case .qwen25:
            guard let start = range(of: "<|im_start|>assistant"),
                let end = self[start.upperBound...].range(of: "<|im_end|>")
            else { return nil }
            var text = self[start.upperBound..<end.lowerBound]
            if text.hasPrefix("\n") { text = text.dropFirst() }
            return String(text)
        }
    }
}
