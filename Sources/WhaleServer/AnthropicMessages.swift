import Hummingbird
import WhaleCore
import WhaleEngine
import WhaleTokenizer

/// A parsed `/v1/messages` body: Anthropic's Messages API, served through the same chat template and
/// scheduler as `/v1/chat/completions`.
struct MessagesRequest {
    var messages: [ChatMessage]
    var settings: GenerationSettings
    /// The tools in OpenAI's form (`{"type": "function", "function": {name, description, parameters}}`), as the
    /// chat templates take them.
    var tools: [JSONValue] = []
    var toolChoice: ChatCompletionRequest.ToolChoice = .auto
    var parallelToolCalls = true

    /// What the server reads, and options that do not change the output here (metadata, routing and
    /// caching hints: the prefix cache works without being asked). temperature / top_p / top_k are no longer in
    /// Anthropic's current SDK but older clients and raw requests send them.
    static let known: Set<String> = [
        "model", "messages", "system", "max_tokens", "temperature", "top_p", "top_k", "stop_sequences", "stream",
        "thinking", "output_config", "metadata", "service_tier", "cache_control", "inference_geo", "speed",
        "user_profile_id", "workspace_id", "tools", "tool_choice",
    ]

    /// - Parameter countingOnly: `/v1/messages/count_tokens`, which takes no generation settings.
    init(_ fields: RequestFields, countingOnly: Bool = false) throws {
        try fields.refuseUnknown(Self.known)
        var settings = GenerationSettings()
        if let output = fields.value("output_config") {
            guard let object = output.object else {
                throw APIError.invalid("output_config", "output_config: must be an object")
            }
            // `effort` is a hint a local model has no use for; a required output format would change the output.
            if let format = object["format"], !format.isNull { throw APIError.unsupported("output_config.format") }
        }
        if !countingOnly {
            guard let maxTokens = try fields.int("max_tokens", in: 1...Int(Int32.max)) else {
                throw APIError.invalid("max_tokens", "max_tokens: field required (the most tokens to generate)")
            }
            settings.maxTokens = maxTokens
            // Anthropic's defaults: temperature 1, no nucleus or top-k cut.
            settings.sampling.temperature = try fields.double("temperature", in: 0...1) ?? 1
            settings.sampling.topP = try fields.double("top_p", in: 0...1, openBelow: true) ?? 1
            settings.sampling.topK = try fields.int("top_k", in: 0...Int(Int32.max)) ?? 0
            settings.sampling.minP = 0
            settings.sampling.penaltyWindow = -1
            settings.sampling.seed = UInt64.random(in: 0...UInt64(UInt32.max))
            if let stops = fields.value("stop_sequences") {
                guard let list = stops.array, list.allSatisfy({ $0.string != nil }) else {
                    throw APIError.invalid("stop_sequences", "stop_sequences must be an array of strings")
                }
                settings.stop = list.compactMap(\.string).filter { !$0.isEmpty }
            }
            settings.stream = try fields.bool("stream") ?? false
            if let thinking = fields.value("thinking") {
                // The model thinks or not by its own design; its reasoning comes back as a thinking block.
                guard let type = thinking.object?["type"]?.string, ["enabled", "disabled", "adaptive"].contains(type)
                else {
                    throw APIError.invalid(
                        "thinking",
                        "thinking must be {\"type\": \"enabled\", \"budget_tokens\": N} or {\"type\": \"disabled\"}")
                }
            }
        }
        var messages: [ChatMessage] = []
        if let system = fields.value("system") {
            messages.append(ChatMessage(role: "system", content: try Self.text(system, param: "system")))
        }
        guard let list = fields.value("messages")?.array else {
            throw APIError.invalid("messages", "messages: field required (an array of {role, content})")
        }
        guard !list.isEmpty else { throw APIError.invalid("messages", "messages: at least one message is required") }
        for (index, item) in list.enumerated() {
            let param = "messages.\(index)"
            guard let message = item.object else { throw APIError.invalid(param, "\(param): must be an object") }
            guard let role = message["role"]?.string, role == "user" || role == "assistant" else {
                throw APIError.invalid(param + ".role", "\(param).role: must be \"user\" or \"assistant\"")
            }
            guard let content = message["content"] else {
                throw APIError.invalid(param + ".content", "\(param).content: field required")
            }
            messages += try Self.messages(role: role, content: content, param: param + ".content")
        }
        self.messages = messages
        self.settings = settings
        try readTools(fields)
    }

    /// `tools` (`{name, description, input_schema}`) and `tool_choice` (`auto`, `any`, `tool` + name, `none`,
    /// with `disable_parallel_tool_use`).
    mutating func readTools(_ fields: RequestFields) throws {
        if let list = fields.value("tools") {
            guard let array = list.array else { throw APIError.invalid("tools", "tools: must be an array") }
            tools = try array.enumerated().map { index, tool in
                let object = tool.object
                guard let name = object?["name"]?.string, !name.isEmpty,
                    object?["type"] == nil || object?["type"]?.string == "custom"
                else {
                    throw APIError.invalid(
                        "tools.\(index)",
                        "tools.\(index): must be a custom tool {\"name\", \"description\", \"input_schema\"} "
                            + "(Anthropic's server tools are not available here)")
                }
                var function: JSONObject = ["name": .string(name)]
                if let description = object?["description"]?.string {
                    function.set("description", .string(description))
                }
                function.set("parameters", object?["input_schema"] ?? .object(["type": .string("object")]))
                return .object(["type": .string("function"), "function": .object(function)])
            }
        }
        if let choice = fields.value("tool_choice") {
            guard let object = choice.object, let type = object["type"]?.string else {
                throw APIError.invalid(
                    "tool_choice", "tool_choice: must be {\"type\": \"auto\" | \"any\" | \"tool\" | \"none\"}")
            }
            switch type {
            case "auto": toolChoice = .auto
            case "any": toolChoice = .required
            case "none": toolChoice = .none
            case "tool":
                let names = tools.compactMap { $0.object?["function"]?.object?["name"]?.string }
                guard let name = object["name"]?.string, names.contains(name) else {
                    throw APIError.invalid(
                        "tool_choice", "tool_choice: {\"type\": \"tool\"} needs the name of one of the tools")
                }
                toolChoice = .function(name)
            default:
                throw APIError.invalid("tool_choice", "tool_choice: unknown type \"\(type)\"")
            }
            parallelToolCalls = !(object["disable_parallel_tool_use"]?.bool ?? false)
        }
    }

    /// The chat request these messages make.
    var chat: ChatCompletionRequest {
        ChatCompletionRequest(
            messages: messages, settings: settings, separatesReasoning: true, tools: tools, toolChoice: toolChoice,
            parallelToolCalls: parallelToolCalls)
    }

    /// One Anthropic message as chat messages: an assistant's text and `tool_use` blocks make one message with
    /// tool calls; a user's `tool_result` blocks become `tool` messages, before the user's text, if any.
    static func messages(role: String, content: JSONValue, param: String) throws -> [ChatMessage] {
        guard let blocks = content.array else {
            return [ChatMessage(role: role, content: try text(content, param: param))]
        }
        var textBlocks: [JSONValue] = []
        var calls: [ChatMessage.ToolCall] = []
        var results: [ChatMessage] = []
        for (index, block) in blocks.enumerated() {
            let object = block.object
            switch object?["type"]?.string {
            case "tool_use" where role == "assistant":
                guard let name = object?["name"]?.string, let input = object?["input"], input.object != nil else {
                    throw APIError.invalid(
                        "\(param).\(index)", "\(param).\(index): tool_use needs a name and an input object")
                }
                calls.append(ChatMessage.ToolCall(name: name, arguments: input.serialized()))
            case "tool_result" where role == "user":
                let result = object?["content"] ?? .string("")
                results.append(ChatMessage(role: "tool", content: try text(result, param: "\(param).\(index).content")))
            default:
                textBlocks.append(block)
            }
        }
        let joined = try text(.array(textBlocks), param: param)
        if role == "assistant" {
            return [
                ChatMessage(
                    role: role, content: calls.isEmpty || !joined.isEmpty ? joined : nil,
                    toolCalls: calls.isEmpty ? nil : calls)
            ]
        }
        return results + (results.isEmpty || !joined.isEmpty ? [ChatMessage(role: role, content: joined)] : [])
    }

    /// Content as text: a string, or content blocks of which text blocks are joined and an earlier turn's
    /// thinking blocks dropped (reasoning templates drop earlier reasoning from the prompt anyway).
    static func text(_ content: JSONValue, param: String) throws -> String {
        if let string = content.string { return string }
        guard let blocks = content.array else {
            throw APIError.invalid(param, "\(param): must be a string or an array of content blocks")
        }
        var text = ""
        for (index, block) in blocks.enumerated() {
            let type = block.object?["type"]?.string
            switch type {
            case "text":
                guard let piece = block.object?["text"]?.string else {
                    throw APIError.invalid("\(param).\(index).text", "\(param).\(index).text: must be a string")
                }
                text += piece
            case "thinking", "redacted_thinking":
                continue
            default:
                throw APIError.invalid(
                    "\(param).\(index)",
                    "\(param).\(index): content blocks of type \"\(type ?? "?")\" are not supported (text, thinking, "
                        + "tool_use and tool_result blocks are)")
            }
        }
        return text
    }
}

extension InferenceService {
    /// `POST /v1/messages`.
    func messagesRoute(_ body: [UInt8]) async throws -> Response {
        let request = try MessagesRequest(RequestFields(body))
        let (prompt, output) = try chatPrompt(request.chat)
        let id = responseID("msg_")
        let started = ContinuousClock.now
        let events = try submit(prompt: prompt, settings: request.settings, param: "messages")
        guard request.settings.stream else {
            let results = try await collect(events, count: 1)
            log(id, prompt: prompt.count, results: results.compactMap(\.result), started: started)
            let (reasoning, text, calls) = output.read(results[0].text)
            var content: [JSONValue] = []
            if let reasoning, !reasoning.isEmpty { content.append(thinkingBlock(reasoning)) }
            if !text.isEmpty || calls.isEmpty { content.append(textBlock(text)) }
            content += calls.map { toolUseBlock($0, input: true) }
            var message = messageObject(id: id, content: content, result: results[0].result, calls: !calls.isEmpty)
            message.set("usage", messageUsage(prompt: prompt.count, results[0].result))
            return json(.object(message))
        }
        return anthropicEvents { [self] send in
            var message = messageObject(id: id, content: [], result: nil, calls: false)
            message.set("usage", messageUsage(prompt: prompt.count, nil))
            try await send("message_start", ["type": .string("message_start"), "message": .object(message)])
            var reader = output.reader()
            /// The open block's index and type; text and thinking blocks open when their first text comes.
            var block: (index: Int, type: String)?
            var blocks = 0
            func open(_ type: String, _ start: JSONValue) async throws {
                if block?.type == type && type != "tool_use" { return }
                try await close()
                block = (blocks, type)
                blocks += 1
                try await send(
                    "content_block_start",
                    [
                        "type": .string("content_block_start"), "index": .integer(Int64(blocks - 1)),
                        "content_block": start,
                    ])
            }
            func close() async throws {
                guard let open = block else { return }
                try await send(
                    "content_block_stop", ["type": .string("content_block_stop"), "index": .integer(Int64(open.index))])
                block = nil
            }
            func delta(_ delta: JSONObject) async throws {
                try await send(
                    "content_block_delta",
                    [
                        "type": .string("content_block_delta"), "index": .integer(Int64(blocks - 1)),
                        "delta": .object(delta),
                    ])
            }
            func stream(_ piece: ReasoningSplitter.Piece) async throws {
                if !piece.reasoning.isEmpty {
                    try await open("thinking", thinkingBlock(""))
                    try await delta(["type": .string("thinking_delta"), "thinking": .string(piece.reasoning)])
                }
                if !piece.content.isEmpty {
                    try await open("text", textBlock(""))
                    try await delta(["type": .string("text_delta"), "text": .string(piece.content)])
                }
            }
            var final: GenerationResult?
            var calls: [ChatMessage.ToolCall] = []
            for await (_, event) in events {
                switch event {
                case .tokens(let text, _):
                    try await stream(reader.feed(text))
                case .finished(let result):
                    let rest = reader.finish()
                    try await stream(ReasoningSplitter.Piece(reasoning: rest.reasoning, content: rest.content))
                    calls = rest.calls
                    final = result
                case .failed(let error):
                    try await send(
                        "error",
                        [
                            "type": .string("error"),
                            "error": .object(["type": .string("api_error"), "message": .string(error.description)]),
                        ])
                    return
                }
            }
            // A message without calls ends with a text block, if only an empty one.
            if calls.isEmpty { try await open("text", textBlock("")) }
            for call in calls {
                // Each tool_use block: its id and name, then the input as JSON text (input_json_delta).
                try await open("tool_use", toolUseBlock(call, input: false))
                try await delta(["type": .string("input_json_delta"), "partial_json": .string(call.arguments)])
            }
            try await close()
            let (reason, sequence) = stopReason(final, calls: !calls.isEmpty)
            try await send(
                "message_delta",
                [
                    "type": .string("message_delta"),
                    "delta": .object(["stop_reason": .string(reason), "stop_sequence": sequence]),
                    "usage": messageUsage(prompt: prompt.count, final),
                ])
            try await send("message_stop", ["type": .string("message_stop")])
            log(id, prompt: prompt.count, results: final.map { [$0] } ?? [], started: started)
        }
    }

    /// `POST /v1/messages/count_tokens`: the prompt's length under the model's chat template.
    func countTokensRoute(_ body: [UInt8]) throws -> Response {
        let request = try MessagesRequest(RequestFields(body), countingOnly: true)
        return json(.object(["input_tokens": .integer(Int64(try chatPrompt(request.chat).prompt.count))]))
    }

    func messageObject(id: String, content: [JSONValue], result: GenerationResult?, calls: Bool) -> JSONObject {
        let (reason, sequence) = result.map { stopReason($0, calls: calls) } ?? ("", .null)
        return [
            "id": .string(id), "type": .string("message"), "role": .string("assistant"),
            "model": .string(configuration.modelName), "content": .array(content),
            "stop_reason": result == nil ? .null : .string(reason), "stop_sequence": sequence,
        ]
    }

    func textBlock(_ text: String) -> JSONValue { .object(["type": .string("text"), "text": .string(text)]) }

    /// A reasoning block. Anthropic signs its thinking blocks; this server has nothing to sign with, so the
    /// signature is empty.
    func thinkingBlock(_ text: String) -> JSONValue {
        .object(["type": .string("thinking"), "thinking": .string(text), "signature": .string("")])
    }

    /// A `tool_use` block; `input: false` for the opening of a streamed one (its input follows as deltas).
    func toolUseBlock(_ call: ChatMessage.ToolCall, input: Bool) -> JSONValue {
        let value = input ? (try? JSONValue.parse(call.arguments)) ?? .object([:]) : .object([:])
        return .object([
            "type": .string("tool_use"), "id": .string(responseID("toolu_")), "name": .string(call.name),
            "input": value,
        ])
    }

    /// Anthropic's stop reason and stop sequence for a finished generation.
    func stopReason(_ result: GenerationResult?, calls: Bool) -> (String, JSONValue) {
        if calls { return ("tool_use", JSONValue.null) }
        switch result?.finishReason {
        case .endOfSequence, .cancelled: return ("end_turn", JSONValue.null)
        case .stopString: return ("stop_sequence", result?.stopString.map(JSONValue.string) ?? JSONValue.null)
        default: return ("max_tokens", JSONValue.null)
        }
    }

    func messageUsage(prompt: Int, _ result: GenerationResult?) -> JSONValue {
        let cached = result.map { $0.promptTokens - $0.promptTokensEvaluated } ?? 0
        return .object([
            "input_tokens": .integer(Int64(prompt - max(0, cached))),
            "output_tokens": .integer(Int64(result?.tokens.count ?? 0)),
            "cache_read_input_tokens": .integer(Int64(max(0, cached))),
            "cache_creation_input_tokens": .integer(0),
        ])
    }
}

/// Anthropic's server-sent events: `event: NAME` and `data: JSON` per event, no `[DONE]`. A client that goes
/// away makes `send` throw, which ends `body` and with it the generation.
func anthropicEvents(
    _ body: @escaping @Sendable (_ send: (String, JSONObject) async throws -> Void) async throws -> Void
) -> Response {
    var headers = HTTPFields()
    headers[.contentType] = "text/event-stream"
    headers[.cacheControl] = "no-cache"
    return Response(
        status: .ok, headers: headers,
        body: ResponseBody { writer in
            try await body { name, data in
                try await writer.write(
                    ByteBuffer(string: "event: \(name)\ndata: \(JSONValue.object(data).serialized())\n\n"))
            }
            try await writer.finish(nil)
        })
}

extension APIError {
    /// The error in Anthropic's shape: `{"type": "error", "error": {"type", "message"}}`, the type named by
    /// the status as Anthropic names it.
    var anthropicBody: JSONValue {
        let type: String =
            switch statusCode {
            case 401: "authentication_error"
            case 403: "permission_error"
            case 404: "not_found_error"
            case 413: "request_too_large"
            case 429: "rate_limit_error"
            case 503, 529: "overloaded_error"
            case 500...: "api_error"
            default: "invalid_request_error"
            }
        return .object([
            "type": .string("error"), "error": .object(["type": .string(type), "message": .string(message)]),
        ])
    }
}
