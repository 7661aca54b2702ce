import WhaleCore

/// How a model writes tool calls, as its chat template renders them in assistant turns — so the parser reads
/// back exactly what the template writes (the tests round-trip every format).
public enum ToolCallFormat: Sendable, Equatable {
    /// DeepSeek V3 / R1: `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS\n```
    /// <｜tool▁call▁end｜>`, calls joined by a newline, then `<｜tool▁calls▁end｜>`.
    case deepseekV3
    /// DeepSeek V3.1: `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{json}<｜tool▁call▁end｜>…
    /// <｜tool▁calls▁end｜>`.
    case deepseekV31
    /// Llama 3.1: the whole answer is `{"name": NAME, "parameters": {json}}` (optionally after `<|python_tag|>`).
    case llama31
    /// Qwen2.5: `<tool_call>\n{"name": NAME, "arguments": {json}}\n</tool_call>` blocks after the text.
    case qwen25

    static let callsBegin = "<｜tool▁calls▁begin｜>"
    static let callsEnd = "<｜tool▁calls▁end｜>"
    static let callBegin = "<｜tool▁call▁begin｜>"
    static let callEnd = "<｜tool▁call▁end｜>"
    static let separator = "<｜tool▁sep｜>"

    /// The text that starts the calls. Streaming holds text back from where it may begin; for Llama 3.1 it can
    /// only begin the answer.
    public var openings: [String] {
        switch self {
        case .deepseekV3, .deepseekV31: [Self.callsBegin]
        case .llama31: ["{", "<|python_tag|>"]
        case .qwen25: ["<tool_call>"]
        }
    }

    /// Whether calls can only open the answer (Llama 3.1) rather than follow text.
    public var callsOpenTheAnswer: Bool { self == .llama31 }

    /// What is added after the generation prompt to make the model call a tool (`tool_choice` `required`),
    /// or the function `name`: the opening of a call, up to where the model writes the arguments.
    public func forcedOpening(name: String?) -> String {
        switch self {
        case .deepseekV3:
            return Self.callsBegin + Self.callBegin + "function" + Self.separator
                + (name.map { $0 + "\n```json\n" } ?? "")
        case .deepseekV31:
            return Self.callsBegin + Self.callBegin + (name.map { $0 + Self.separator } ?? "")
        case .llama31:
            return "{\"name\": \"" + (name.map { $0 + "\", \"parameters\": " } ?? "")
        case .qwen25:
            return "<tool_call>\n{\"name\": \"" + (name.map { $0 + "\", \"arguments\": " } ?? "")
        }
    }

    /// The text and the calls in `output`; nil when it holds no calls or they are not well formed (the caller
    /// then returns the output as plain text). The text is what precedes the calls, and what a model wrote after
    /// them, if anything, on a line of its own. Arguments keep the model's text for DeepSeek
    /// V3 (its template writes them verbatim) and are JSON as Python writes it otherwise (what those templates
    /// render), so a parsed call renders back to the same text.
    public func parse(_ output: String) -> (content: String, calls: [ChatMessage.ToolCall])? {
        switch self {
        case .deepseekV3, .deepseekV31: return parseDeepSeek(output)
        case .llama31: return parseLlama31(output)
        case .qwen25: return parseQwen25(output)
        }
    }

    private func parseDeepSeek(_ output: String) -> (content: String, calls: [ChatMessage.ToolCall])? {
        guard let begin = output.range(of: Self.callsBegin) else { return nil }
        var scanner = Scanner(output[begin.upperBound...])
        var calls: [ChatMessage.ToolCall] = []
        while true {
            scanner.skipWhitespace()
            if scanner.take(Self.callsEnd) || scanner.isAtEnd { break }
            guard scanner.take(Self.callBegin) else { return nil }
            let call: ChatMessage.ToolCall
            if self == .deepseekV3 {
                guard let type = scanner.upTo(Self.separator), let name = scanner.upTo("\n"),
                    scanner.take("```json\n"), let arguments = scanner.jsonObject(),
                    scanner.take("\n```" + Self.callEnd)
                else { return nil }
                call = ChatMessage.ToolCall(type: type, name: name, arguments: arguments.text)
            } else {
                guard let name = scanner.upTo(Self.separator), let arguments = scanner.jsonObject(),
                    scanner.take(Self.callEnd)
                else { return nil }
                call = ChatMessage.ToolCall(name: name, arguments: arguments.value.pythonJSON())
            }
            guard !call.name.isEmpty, !call.name.contains(where: \.isNewline) else { return nil }
            calls.append(call)
        }
        guard !calls.isEmpty else { return nil }
        return (Self.text(before: output[..<begin.lowerBound], after: scanner.rest), calls)
    }

    static func text(before: Substring, after: Substring) -> String {
        let trailing = pythonStrip(String(after))
        if trailing.isEmpty { return String(before) }
        return before.isEmpty ? trailing : before + "\n" + trailing
    }

    private func parseLlama31(_ output: String) -> (content: String, calls: [ChatMessage.ToolCall])? {
        var text = Substring(pythonStrip(output))
        if text.hasPrefix("<|python_tag|>") { text = text.dropFirst("<|python_tag|>".count) }
        guard let call = Self.namedCall(String(text), argumentKeys: ["parameters", "arguments"]) else { return nil }
        return ("", [call])
    }

    private func parseQwen25(_ output: String) -> (content: String, calls: [ChatMessage.ToolCall])? {
        guard let first = output.range(of: "<tool_call>") else { return nil }
        var content = output[..<first.lowerBound]
        if content.hasSuffix("\n") { content = content.dropLast() }
        var scanner = Scanner(output[first.lowerBound...])
        var calls: [ChatMessage.ToolCall] = []
        while scanner.take("<tool_call>") {
            guard let body = scanner.jsonObject(),
                let call = Self.namedCall(body.text, argumentKeys: ["arguments", "parameters"])
            else { return nil }
            scanner.skipWhitespace()
            guard scanner.take("</tool_call>") else { return nil }
            calls.append(call)
            scanner.skipWhitespace()
        }
        return calls.isEmpty ? nil : (Self.text(before: content, after: scanner.rest), calls)
    }

    /// `{"name": NAME, KEY: {arguments}}`, KEY the first of `argumentKeys` present.
    static func namedCall(_ text: String, argumentKeys: [String]) -> ChatMessage.ToolCall? {
        guard let object = jsonObject(text)?.object, let name = object["name"]?.string, !name.isEmpty,
            let key = argumentKeys.first(where: { object[$0] != nil }), let arguments = object[key],
            arguments.object != nil
        else { return nil }
        return ChatMessage.ToolCall(name: name, arguments: arguments.pythonJSON())
    }

    static func jsonObject(_ text: String) -> JSONValue? {
        guard let value = try? JSONValue.parse(text), value.object != nil else { return nil }
        return value
    }

    /// Reads through text by markers.
    struct Scanner {
        var rest: Substring

        init(_ text: Substring) { rest = text }

        var isAtEnd: Bool { rest.isEmpty }

        mutating func skipWhitespace() { rest = rest.drop(while: \.isWhitespace) }

        /// Consumes `prefix` if the text starts with it.
        mutating func take(_ prefix: String) -> Bool {
            guard rest.hasPrefix(prefix) else { return false }
            rest = rest.dropFirst(prefix.count)
            return true
        }

        /// A JSON object after optional whitespace — up to its matching brace, so markers inside its strings do
        /// not end it — consumed, with its text; nil when none parses.
        mutating func jsonObject() -> (text: String, value: JSONValue)? {
            let start = rest.drop(while: \.isWhitespace)
            guard start.first == "{" else { return nil }
            var depth = 0
            var inString = false
            var escaped = false
            // By scalars: a quote followed by a combining mark is one Character but still ends a string.
            let scalars = start.unicodeScalars
            var index = scalars.startIndex
            while index < scalars.endIndex {
                let character = scalars[index]
                if inString {
                    if escaped {
                        escaped = false
                    } else if character == "\\" {
                        escaped = true
                    } else if character == "\"" {
                        inString = false
                    }
                } else if character == "\"" {
                    inString = true
                } else if character == "{" || character == "[" {
                    depth += 1
                } else if character == "}" || character == "]" {
                    depth -= 1
                    if depth == 0 {
                        let end = scalars.index(after: index)
                        let text = String(start[..<end])
                        guard let value = ToolCallFormat.jsonObject(text) else { return nil }
                        rest = start[end...]
                        return (text, value)
                    }
                }
                index = scalars.index(after: index)
            }
            return nil
        }

        /// The text before `marker`, consuming both; nil (nothing consumed) when `marker` does not follow.
        mutating func upTo(_ marker: String) -> String? {
            guard let range = rest.range(of: marker) else { return nil }
            let text = String(rest[..<range.lowerBound])
            rest = rest[range.upperBound...]
            return text
        }
    }
}

extension ChatTemplate {
    /// How this template's model writes tool calls; nil for templates without them.
    public var toolCallFormat: ToolCallFormat? {
        switch family {
        case .deepseek: .deepseekV3
        case .deepseekV31: .deepseekV31
        case .llama31: .llama31
        case .qwen25: .qwen25
        case .llama3, .chatML: nil
        }
    }
}

/// Finds tool calls in an answer as it streams: text before any call goes out at once; from where a call may
/// begin (an opening marker, or the start of a marker at the end of the text so far) the text is held until
/// the answer ends, then parsed — calls if well formed, otherwise the held text after all.
public struct ToolCallStream: Sendable {
    public let format: ToolCallFormat
    /// Text held back: a possible marker start, or everything from a marker on.
    var held = ""
    /// Whether a call opening was seen (everything from it is held).
    var inCalls = false
    /// Llama 3.1: whether the answer has begun with something other than a call (no call can follow).
    var answering = false

    public init(format: ToolCallFormat) { self.format = format }

    /// Adds answer text; returns the text that can be shown now.
    public mutating func feed(_ text: String) -> String {
        held += text
        if inCalls || answering && format.callsOpenTheAnswer {
            if inCalls { return "" }
            defer { held = "" }
            return held
        }
        if format.callsOpenTheAnswer {
            let start = held.drop(while: \.isWhitespace)
            if start.isEmpty { return "" }
            if format.openings.contains(where: { start.hasPrefix($0) }) {
                inCalls = true
                return ""
            }
            if format.openings.contains(where: { $0.hasPrefix(start) }) { return "" }
            answering = true
            defer { held = "" }
            return held
        }
        if let opening = format.openings.compactMap({ held.range(of: $0) }).min(by: { $0.lowerBound < $1.lowerBound }) {
            let shown = String(held[..<opening.lowerBound])
            held = String(held[opening.lowerBound...])
            inCalls = true
            return shown
        }
        // Keep back the longest ending that could still grow into an opening.
        var keep = 0
        for opening in format.openings {
            for length in stride(from: min(opening.count - 1, held.count), to: keep, by: -1)
            where held.hasSuffix(opening.prefix(length)) {
                keep = length
                break
            }
        }
        let shown = String(held.dropLast(keep))
        held = String(held.suffix(keep))
        return shown
    }

    /// The end of the answer: the calls found, and the text still to show (all of the held text when it was
    /// not well-formed calls).
    public mutating func finish() -> (text: String, calls: [ChatMessage.ToolCall]) {
        defer { held = "" }
        // The held text starts at the calls: the parsed text is what followed them.
        if inCalls, let parsed = format.parse(held) { return (parsed.content, parsed.calls) }
        return (held, [])
    }
}
