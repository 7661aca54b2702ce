import Foundation
import WhaleCore

/// One message of a conversation.
public struct ChatMessage: Sendable, Equatable {
    public struct ToolCall: Sendable, Equatable {
        public var type: String
        public var name: String
        /// The arguments as the JSON text the model wrote.
        public var arguments: String

        public init(type: String = "function", name: String, arguments: String) {
            self.type = type
            self.name = name
            self.arguments = arguments
        }
    }

    public var role: String
    /// nil is Jinja's `none` (an assistant message that only calls tools).
    public var content: String?
    public var toolCalls: [ToolCall]?

    public init(role: String, content: String?, toolCalls: [ToolCall]? = nil) {
        self.role = role
        self.content = content
        self.toolCalls = toolCalls
    }
}

/// Renders a conversation into the prompt text a model was trained on, character for character as its
/// own Jinja template does (checked against transformers' `apply_chat_template`).
///
/// Templates are recognised from the text a model carries (`tokenizer.chat_template` in GGUF,
/// `chat_template` in tokenizer_config.json) by the markers and options that change what they render;
/// an unrecognised template is an error, unless the user names one (`--chat-template NAME`).
public struct ChatTemplate: Sendable, Equatable {
    public enum Family: Sendable, Equatable {
        /// DeepSeek V3 / R1: `<｜User｜>…<｜Assistant｜>…<｜end▁of▁sentence｜>`, system prompts first.
        /// `stripsThinking`: earlier assistant turns keep only what follows their last `</think>` (R1 and
        /// later V3 templates); `generationSuffix`: what follows the final `<｜Assistant｜>` (R1: `<think>\n`).
        case deepseek(stripsThinking: Bool, generationSuffix: String)
        /// Llama 3 Instruct: header ids around the role, trimmed content, `<|eot_id|>`.
        case llama3
        /// ChatML (`<|im_start|>role\n…<|im_end|>\n`), with the system prompt the template inserts when the
        /// conversation has none (Qwen2, SmolLM2), or none.
        case chatML(defaultSystem: String?)
        /// DeepSeek V3.1: tool calls as `name<｜tool▁sep｜>{json}`, `<think></think>` opening each answer, or
        /// `<think>` in thinking mode.
        case deepseekV31(thinking: Bool)
        /// Llama 3.1 Instruct: a knowledge-date system header; tools in the first user message as indented
        /// JSON; calls as `{"name", "parameters"}`, one per turn; results in `ipython` turns.
        case llama31
        /// Qwen2.5 Instruct: ChatML with tools in the system prompt and `<tool_call>` blocks.
        case qwen25
    }

    public var name: String
    public var family: Family

    public init(name: String, family: Family) {
        self.name = name
        self.family = family
    }

    /// The templates `--chat-template` accepts.
    public static let builtIn: [ChatTemplate] = [
        ChatTemplate(name: "deepseek-v3", family: .deepseek(stripsThinking: true, generationSuffix: "")),
        ChatTemplate(name: "deepseek-r1", family: .deepseek(stripsThinking: true, generationSuffix: "<think>\n")),
        ChatTemplate(name: "deepseek-v3.1", family: .deepseekV31(thinking: false)),
        ChatTemplate(name: "deepseek-v3.1-thinking", family: .deepseekV31(thinking: true)),
        ChatTemplate(name: "llama3", family: .llama3),
        ChatTemplate(name: "llama3.1", family: .llama31),
        ChatTemplate(name: "qwen2.5", family: .qwen25),
        ChatTemplate(name: "chatml", family: .chatML(defaultSystem: nil)),
        ChatTemplate(name: "qwen2", family: .chatML(defaultSystem: "You are a helpful assistant.")),
        ChatTemplate(
            name: "smollm2",
            family: .chatML(defaultSystem: "You are a helpful AI assistant named SmolLM, trained by Hugging Face")),
    ]

    /// The built-in template called `name`.
    public static func named(_ name: String) throws -> ChatTemplate {
        guard let template = builtIn.first(where: { $0.name == name }) else {
            throw WhaleError(
                .invalidArgument, field: "--chat-template", "unknown chat template \"\(name)\"",
                hint: "choose one of: \(builtIn.map(\.name).joined(separator: ", "))")
        }
        return template
    }

    /// Recognises the Jinja template a model carries.
    public static func detect(_ jinja: String, source: String? = nil) throws -> ChatTemplate {
        func unknown(_ why: String) -> WhaleError {
            let start = jinja.prefix(80).map { $0 == "\n" ? "\\n" : String($0) }.joined()
            return WhaleError(
                .unsupportedArchitecture, file: source, field: "chat template",
                "\(why) (it starts \"\(start)\(jinja.count > 80 ? "…" : "")\")",
                hint: "pick one with --chat-template NAME: \(builtIn.map(\.name).joined(separator: ", "))")
        }
        if jinja.contains("<｜User｜>") && jinja.contains("<｜tool▁sep｜>") && jinja.contains("is_last_user")
            && jinja.contains("<think></think>")
        {
            return try named("deepseek-v3.1")
        }
        if jinja.contains("<｜User｜>") && jinja.contains("<｜Assistant｜>") {
            let strips = jinja.contains("split('</think>')")
            let suffix = jinja.contains("<｜Assistant｜><think>\\n") || jinja.contains("<｜Assistant｜><think>\n")
            let name = suffix ? "deepseek-r1" : "deepseek-v3"
            return ChatTemplate(
                name: name + (strips ? "" : " (keeps thinking)"),
                family: .deepseek(stripsThinking: strips, generationSuffix: suffix ? "<think>\n" : ""))
        }
        if jinja.contains("<|start_header_id|>") && jinja.contains("<|eot_id|>") {
            if jinja.contains("Cutting Knowledge Date: December 2023") && jinja.contains("\"26 Jul 2024\"")
                && jinja.contains("tools_in_user_message")
            {
                return try named("llama3.1")
            }
            if jinja.contains("Cutting Knowledge Date") || jinja.contains("tools") {
                throw unknown("this Llama 3.1+ template (dates, tools) is not built in")
            }
            return try named("llama3")
        }
        if jinja.contains("<|im_start|>") && jinja.contains("<|im_end|>") {
            if jinja.contains("<tool_call>") && jinja.contains("You are Qwen, created by Alibaba Cloud.")
                && jinja.contains("<tool_response>")
            {
                return try named("qwen2.5")
            }
            if jinja.contains("tools") { throw unknown("this ChatML template with tool support is not built in") }
            let system = defaultSystemPrompt(in: jinja)
            let known = builtIn.first { $0.family == .chatML(defaultSystem: system) }
            return ChatTemplate(name: known?.name ?? "chatml", family: .chatML(defaultSystem: system))
        }
        throw unknown("unrecognised chat template")
    }

    /// The system prompt a ChatML template inserts when the first message is not a system message: the
    /// text between `<|im_start|>system\n` and `<|im_end|>` in the template.
    static func defaultSystemPrompt(in jinja: String) -> String? {
        guard jinja.contains("!= 'system'") || jinja.contains("!= \"system\"") else { return nil }
        for marker in ["<|im_start|>system\n", "<|im_start|>system\\n"] {
            guard let start = jinja.range(of: marker), let end = jinja[start.upperBound...].range(of: "<|im_end|>")
            else { continue }
            let raw = String(jinja[start.upperBound..<end.lowerBound])
            // A Jinja string literal: undo its escapes.
            return raw.replacingEscapes()
        }
        return nil
    }

    /// The prompt for `messages`, with `tools` (function definitions as OpenAI sends them) where the template
    /// renders them. Throws where the template raises (Llama 3.1: several calls in one turn).
    /// - Parameter addGenerationPrompt: end with the opening of an assistant turn, for the model to continue.
    public func render(
        _ messages: [ChatMessage], tools: [JSONValue]? = nil, addGenerationPrompt: Bool, bosToken: String,
        eosToken: String
    ) throws -> String {
        switch family {
        case .deepseekV31(let thinking):
            return renderDeepSeekV31(messages, addGenerationPrompt, bosToken, thinking: thinking)
        case .llama31:
            return try renderLlama31(messages, tools: tools, addGenerationPrompt, bosToken)
        case .qwen25:
            return renderQwen25(messages, tools: tools, addGenerationPrompt)
        case .deepseek(let strips, let suffix):
            return renderDeepSeek(messages, addGenerationPrompt, bosToken, strips: strips, suffix: suffix)
        case .llama3:
            var out = ""
            for (index, message) in messages.enumerated() {
                if index == 0 { out += bosToken }
                out += "<|start_header_id|>\(message.role)<|end_header_id|>\n\n"
                out += pythonStrip(message.content ?? "None") + "<|eot_id|>"
            }
            if addGenerationPrompt { out += "<|start_header_id|>assistant<|end_header_id|>\n\n" }
            return out
        case .chatML(let defaultSystem):
            var out = ""
            for (index, message) in messages.enumerated() {
                if index == 0, messages[0].role != "system", let defaultSystem {
                    out += "<|im_start|>system\n\(defaultSystem)<|im_end|>\n"
                }
                out += "<|im_start|>\(message.role)\n\(message.content ?? "None")<|im_end|>\n"
            }
            if addGenerationPrompt { out += "<|im_start|>assistant\n" }
            return out
        }
    }

    /// DeepSeek's template, step for step (including its quirk: after the first tool-calling assistant
    /// message, later tool calls are joined with a newline and no `<｜Assistant｜>`).
    private func renderDeepSeek(
        _ messages: [ChatMessage], _ addGenerationPrompt: Bool, _ bosToken: String, strips: Bool, suffix: String
    ) -> String {
        let systemPrompt = messages.filter { $0.role == "system" }.map { $0.content ?? "None" }.joined(
            separator: "\n\n")
        var out = bosToken + systemPrompt
        var isFirst = false
        var isTool = false
        var isOutputFirst = true
        for message in messages {
            switch message.role {
            case "user":
                isTool = false
                out += "<｜User｜>" + (message.content ?? "None")
            case "assistant":
                if let calls = message.toolCalls {
                    isTool = false
                    for call in calls {
                        let body =
                            "<｜tool▁call▁begin｜>\(call.type)<｜tool▁sep｜>\(call.name)\n```json\n\(call.arguments)\n```"
                            + "<｜tool▁call▁end｜>"
                        if !isFirst {
                            out += "<｜Assistant｜>" + (message.content ?? "") + "<｜tool▁calls▁begin｜>" + body
                            isFirst = true
                        } else {
                            out += "\n" + body
                        }
                    }
                    out += "<｜tool▁calls▁end｜><｜end▁of▁sentence｜>"
                } else if isTool {
                    out += "<｜tool▁outputs▁end｜>" + (message.content ?? "None") + "<｜end▁of▁sentence｜>"
                    isTool = false
                } else {
                    var content = message.content ?? "None"
                    if strips, let range = content.range(of: "</think>", options: .backwards) {
                        content = String(content[range.upperBound...])
                    }
                    out += "<｜Assistant｜>" + content + "<｜end▁of▁sentence｜>"
                }
            case "tool":
                isTool = true
                if isOutputFirst {
                    out += "<｜tool▁outputs▁begin｜>"
                    isOutputFirst = false
                }
                out += "<｜tool▁output▁begin｜>" + (message.content ?? "None") + "<｜tool▁output▁end｜>"
            default:
                break
            }
        }
        if isTool { out += "<｜tool▁outputs▁end｜>" }
        if addGenerationPrompt && !isTool { out += "<｜Assistant｜>" + suffix }
        return out
    }
}

/// Python's `str.strip()` (Jinja's `trim`): removes whitespace as `str.isspace` defines it.
func pythonStrip(_ text: String) -> String {
    func isSpace(_ scalar: Unicode.Scalar) -> Bool {
        scalar.properties.isWhitespace || (0x1C...0x1F).contains(scalar.value)
    }
    let scalars = Array(text.unicodeScalars)
    var start = 0
    var end = scalars.count
    while start < end && isSpace(scalars[start]) { start += 1 }
    while end > start && isSpace(scalars[end - 1]) { end -= 1 }
    return String(String.UnicodeScalarView(scalars[start..<end]))
}

extension String {
    /// Undoes the escapes of a Jinja/Python string literal (`\n`, `\t`, `\\`, `\'`, `\"`).
    func replacingEscapes() -> String {
        var out = ""
        var escaping = false
        for character in self {
            if escaping {
                switch character {
                case "n": out.append("\n")
                case "t": out.append("\t")
                case "r": out.append("\r")
                default: out.append(character)
                }
                escaping = false
            } else if character == "\\" {
                escaping = true
            } else {
                out.append(character)
            }
        }
        return out
    }
}
