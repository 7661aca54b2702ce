import WhaleCore
import WhaleEngine
import WhaleTokenizer

/// How a chat answer is read: a reasoning model's thinking split off, tool calls found in the model's own
/// format. `forced` is text the prompt already ends with (the opening of a call, when `tool_choice` demands
/// one): it is read as the start of the output.
struct ChatOutput: Sendable {
    var opensReasoning: Bool
    var separatesReasoning: Bool
    /// nil: no tools offered, calls are not looked for.
    var toolFormat: ToolCallFormat?
    var forced = ""
    var parallelToolCalls = true

    /// A whole answer: reasoning (nil when the request keeps it inline, or there is none and the template
    /// does not open any), answer text, calls.
    func read(_ generated: String) -> (reasoning: String?, content: String, calls: [ChatMessage.ToolCall]) {
        var reader = reader()
        var piece = reader.feed(generated)
        let rest = reader.finish()
        piece.reasoning += rest.reasoning
        piece.content += rest.content
        let reasoning = separatesReasoning && (opensReasoning || !piece.reasoning.isEmpty) ? piece.reasoning : nil
        return (reasoning, piece.content, rest.calls)
    }

    /// A reader for one streamed choice, already past `forced`.
    func reader() -> Reader {
        var reader = Reader(
            splitter: separatesReasoning ? ReasoningSplitter(startsInReasoning: opensReasoning) : nil,
            calls: toolFormat.map { ToolCallStream(format: $0) }, parallel: parallelToolCalls)
        let piece = reader.feed(forced)
        assert(piece.reasoning.isEmpty && piece.content.isEmpty, "a forced opening is held, never shown")
        return reader
    }

    /// Reads one choice's text as it streams: reasoning apart, answer text until a possible call, calls at the
    /// end.
    struct Reader: Sendable {
        var splitter: ReasoningSplitter?
        var calls: ToolCallStream?
        let parallel: Bool

        mutating func feed(_ text: String) -> ReasoningSplitter.Piece {
            var piece = splitter?.feed(text) ?? ReasoningSplitter.Piece(content: text)
            if calls != nil { piece.content = calls!.feed(piece.content) }
            return piece
        }

        /// The rest of the text, and the calls (at most one unless parallel calls are allowed).
        mutating func finish() -> (reasoning: String, content: String, calls: [ChatMessage.ToolCall]) {
            var piece = splitter?.finish() ?? ReasoningSplitter.Piece()
            var found: [ChatMessage.ToolCall] = []
            if calls != nil {
                piece.content = calls!.feed(piece.content)
                let end = calls!.finish()
                piece.content += end.text
                found = parallel ? end.calls : Array(end.calls.prefix(1))
            }
            return (piece.reasoning, piece.content, found)
        }
    }
}

extension InferenceService {
    /// The template for a request: DeepSeek V3.1 in or out of thinking mode as `chat_template_kwargs` asks.
    func template(for request: ChatCompletionRequest) throws -> ChatTemplate {
        guard let template else {
            throw APIError(
                "the model carries no chat template the server recognises; start whale serve with --chat-template NAME "
                    + "(\(ChatTemplate.builtIn.map(\.name).joined(separator: ", "))) or use /v1/completions",
                param: "messages", code: "no_chat_template")
        }
        if let thinking = request.thinking, case .deepseekV31 = template.family {
            return ChatTemplate(name: template.name, family: .deepseekV31(thinking: thinking))
        }
        return template
    }

    /// The prompt of a chat request (tools rendered, a forced call opened) and how to read its answer.
    func chatPrompt(_ request: ChatCompletionRequest) throws -> (prompt: [Int], output: ChatOutput) {
        let template = try template(for: request)
        let offersTools = !request.tools.isEmpty && request.toolChoice != .none
        var output = ChatOutput(
            opensReasoning: template.opensReasoning, separatesReasoning: request.separatesReasoning,
            toolFormat: offersTools ? template.toolCallFormat : nil, parallelToolCalls: request.parallelToolCalls)
        if offersTools && output.toolFormat == nil {
            let supported = ChatTemplate.builtIn.filter { $0.toolCallFormat != nil }.map(\.name)
            throw APIError(
                "tools need a chat template with a tool-call format; this model's is \(template.name) "
                    + "(templates with tools: \(supported.joined(separator: ", ")))",
                param: "tools", code: "tools_unsupported")
        }
        var text: String
        do {
            text = try template.render(
                request.messages, tools: offersTools ? request.tools : nil, addGenerationPrompt: true,
                bosToken: tokenizer.bosTokenID.map { tokenizer.tokens[$0] } ?? "",
                eosToken: tokenizer.eosTokenIDs.first.map { tokenizer.tokens[$0] } ?? "")
        } catch let error as WhaleError {
            throw APIError(error)
        }
        if let format = output.toolFormat {
            let name: String?? =
                switch request.toolChoice {
                case .required: .some(nil)
                case .function(let name): .some(name)
                case .auto, .none: nil
                }
            if let name {
                // A reasoning template has opened the thinking: close it, then open the call.
                output.forced = (template.opensReasoning ? "</think>\n\n" : "") + format.forcedOpening(name: name)
                text += output.forced
            }
        }
        var ids = tokenizer.encode(text, parseSpecial: true)
        if tokenizer.addsBOS, let bos = tokenizer.bosTokenID, ids.first != bos { ids.insert(bos, at: 0) }
        return (ids, output)
    }

    /// OpenAI's `tool_calls` entries for `calls`, with new ids.
    func toolCallObjects(_ calls: [ChatMessage.ToolCall]) -> [JSONValue] {
        calls.map { call in
            .object([
                "id": .string(responseID("call_")), "type": .string("function"),
                "function": .object(["name": .string(call.name), "arguments": .string(call.arguments)]),
            ])
        }
    }

    /// The streamed form of `calls`, as OpenAI sends it: per call a delta with its index, id, type and name
    /// (empty arguments), then one with its arguments.
    func toolCallDeltas(_ calls: [ChatMessage.ToolCall]) -> [JSONValue] {
        calls.enumerated().flatMap { index, call -> [JSONValue] in
            let position = JSONValue.integer(Int64(index))
            return [
                .object([
                    "index": position, "id": .string(responseID("call_")), "type": .string("function"),
                    "function": .object(["name": .string(call.name), "arguments": .string("")]),
                ]),
                .object(["index": position, "function": .object(["arguments": .string(call.arguments)])]),
            ]
        }
    }
}
