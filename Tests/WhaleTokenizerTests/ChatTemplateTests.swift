import Foundation
import Testing
import WhaleCore
import WhaleTokenizer

/// Rendered prompts equal transformers' `apply_chat_template` output (Fixtures/chat, made by
/// scripts/make-tokenizer-fixtures.py) for each template, and each template is recognised from its Jinja.
@Suite struct ChatTemplateTests {
    static let templates = [
        ("deepseek-v3", "deepseek-v3"), ("deepseek-r1", "deepseek-r1"), ("llama3", "llama3"), ("qwen2", "qwen2"),
        ("chatml-smollm2", "smollm2"),
    ]

    static func messages(_ value: JSONValue) throws -> [ChatMessage] {
        try #require(value.array).map { item in
            let object = try #require(item.object)
            let calls = object["tool_calls"]?.array?.compactMap { call -> ChatMessage.ToolCall? in
                guard let call = call.object, let function = call["function"]?.object,
                    let name = function["name"]?.string, let arguments = function["arguments"]?.string
                else { return nil }
                return ChatMessage.ToolCall(type: call["type"]?.string ?? "function", name: name, arguments: arguments)
            }
            return ChatMessage(
                role: try #require(object["role"]?.string), content: object["content"]?.string, toolCalls: calls)
        }
    }

    @Test(arguments: templates)
    func rendersLikeJinja(fixture: String, name: String) throws {
        let cases = try Fixtures.jsonLines("chat/\(fixture).jsonl")
        #expect(cases.count >= 10)
        let jinja = try String(contentsOfFile: Fixtures.path("chat/\(fixture).jinja"), encoding: .utf8)
        let detected = try ChatTemplate.detect(jinja)
        #expect(detected.name == name)
        let builtIn = try ChatTemplate.named(name)
        for (index, item) in cases.enumerated() {
            let object = try #require(item.object)
            let messages = try Self.messages(try #require(object["messages"]))
            let expected = try #require(object["rendered"]?.string)
            for template in [detected, builtIn] {
                let rendered = try template.render(
                    messages, addGenerationPrompt: object["add_generation_prompt"]?.bool ?? false,
                    bosToken: object["bos_token"]?.string ?? "", eosToken: object["eos_token"]?.string ?? "")
                #expect(
                    rendered.utf8Bytes == expected.utf8Bytes, "\(fixture) case \(index): \(rendered.debugDescription)")
            }
        }
    }

    @Test func unknownTemplateIsNamed() {
        do {
            _ = try ChatTemplate.detect("{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}")
            Issue.record("accepted an unknown template")
        } catch let error as WhaleError {
            #expect(error.problem.contains("[{{ m.role }}]"))
            #expect(error.hint?.contains("--chat-template") == true)
        } catch {
            Issue.record("\(error)")
        }
    }

    @Test func unknownNameIsRefused() {
        #expect(throws: WhaleError.self) { try ChatTemplate.named("vicuna") }
    }

    @Test func r1DropsEarlierThinking() throws {
        let template = try ChatTemplate.named("deepseek-r1")
        let text = try template.render(
            [
                ChatMessage(role: "user", content: "2+2?"),
                ChatMessage(role: "assistant", content: "<think>easy</think>\n\n4"),
                ChatMessage(role: "user", content: "3+3?"),
            ], addGenerationPrompt: true, bosToken: "<B>", eosToken: "<E>")
        #expect(
            text.utf8Bytes
                == "<B><｜User｜>2+2?<｜Assistant｜>\n\n4<｜end▁of▁sentence｜><｜User｜>3+3?<｜Assistant｜><think>\n".utf8Bytes)
    }
}
