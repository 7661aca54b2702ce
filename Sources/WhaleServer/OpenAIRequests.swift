import WhaleCore
import WhaleEngine
import WhaleTokenizer

/// The generation settings shared by `/v1/chat/completions` and `/v1/completions`, validated.
struct GenerationSettings {
    var sampling = SamplingParameters()
    /// nil: until the context is full.
    var maxTokens: Int?
    var stop: [String] = []
    /// Choices per prompt.
    var n = 1
    /// nil: no log-probabilities; k ≥ 0: the chosen token's and the k best.
    var logprobs: Int?
    var logitBias: [Int: Float] = [:]
    var stream = false
    var includeUsage = false
}

/// A parsed `/v1/chat/completions` body.
struct ChatCompletionRequest {
    var messages: [ChatMessage]
    var settings: GenerationSettings
    /// Whether a reasoning model's thinking is returned apart (`reasoning_content`) or inline in `content`
    /// (`"reasoning_format": "none"`, llama-server's option).
    var separatesReasoning: Bool
    /// Function definitions as sent (`{"type": "function", "function": {...}}`), rendered by the template.
    var tools: [JSONValue] = []
    var toolChoice: ToolChoice = .auto
    /// false: at most one call per answer.
    var parallelToolCalls = true
    /// DeepSeek V3.1's thinking mode (`chat_template_kwargs: {"thinking": true}`, as vLLM and llama-server
    /// take it); nil: the template's default.
    var thinking: Bool?

    enum ToolChoice: Equatable {
        /// The model may call tools (the default when there are tools).
        case auto
        /// Tools are not offered and calls are not parsed.
        case none
        /// The model must call one of the tools.
        case required
        /// The model must call this function.
        case function(String)
    }
}

/// A parsed `/v1/completions` body.
struct CompletionRequest {
    enum Prompt {
        case text(String)
        case tokens([Int])
    }
    var prompts: [Prompt]
    var echo: Bool
    var settings: GenerationSettings
}

/// Typed reads of a request body's fields, with errors that name the parameter (OpenAI's error shape).
struct RequestFields {
    let object: JSONObject

    init(_ body: [UInt8]) throws {
        let value: JSONValue
        do {
            value = try body.withUnsafeBytes { try JSONValue.parse($0) }
        } catch let error as WhaleError {
            throw APIError("the body is not valid JSON: \(error.problem)", code: "invalid_json")
        }
        guard let object = value.object else { throw APIError("the body must be a JSON object", code: "invalid_json") }
        self.object = object
    }

    func value(_ key: String) -> JSONValue? {
        guard let value = object[key], !value.isNull else { return nil }
        return value
    }

    func int(_ key: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let value = value(key) else { return nil }
        guard let int = value.integer ?? value.double.flatMap({ $0 == $0.rounded() ? Int(exactly: $0) : nil }) else {
            throw APIError.invalid(key, "'\(key)' must be an integer")
        }
        guard range.contains(int) else {
            throw APIError.invalid(
                key, "'\(key)' must be between \(range.lowerBound) and \(range.upperBound), got \(int)")
        }
        return int
    }

    func double(_ key: String, in range: ClosedRange<Double>, openBelow: Bool = false) throws -> Double? {
        guard let value = value(key) else { return nil }
        guard let double = value.double, double.isFinite else {
            throw APIError.invalid(key, "'\(key)' must be a number")
        }
        guard range.contains(double), !(openBelow && double == range.lowerBound) else {
            let low = openBelow ? "more than \(range.lowerBound)" : "at least \(range.lowerBound)"
            throw APIError.invalid(key, "'\(key)' must be \(low) and at most \(range.upperBound), got \(double)")
        }
        return double
    }

    func bool(_ key: String) throws -> Bool? {
        guard let value = value(key) else { return nil }
        guard let bool = value.bool else { throw APIError.invalid(key, "'\(key)' must be true or false") }
        return bool
    }

    func string(_ key: String) throws -> String? {
        guard let value = value(key) else { return nil }
        guard let string = value.string else { throw APIError.invalid(key, "'\(key)' must be a string") }
        return string
    }

    /// Refuses keys outside `known`: an unsupported parameter would otherwise be silently ignored.
    func refuseUnknown(_ known: Set<String>) throws {
        for key in object.keys where !known.contains(key) { throw APIError.unsupported(key) }
    }

    /// The settings both endpoints share. `maxTokensKeys`: the parameter names that set the length.
    func settings(maxTokensKeys: [String], logprobs: Int?) throws -> GenerationSettings {
        var s = GenerationSettings()
        // OpenAI's defaults: temperature 1, top_p 1, no top-k / min-p, no penalties.
        s.sampling.temperature = try double("temperature", in: 0...2) ?? 1
        s.sampling.topP = try double("top_p", in: 0...1, openBelow: true) ?? 1
        s.sampling.topK = try int("top_k", in: 0...Int(Int32.max)) ?? 0
        s.sampling.minP = try double("min_p", in: 0...1) ?? 0
        s.sampling.presencePenalty = try double("presence_penalty", in: -2...2) ?? 0
        s.sampling.frequencyPenalty = try double("frequency_penalty", in: -2...2) ?? 0
        s.sampling.repeatPenalty = try double("repetition_penalty", in: 0...10, openBelow: true) ?? 1
        s.sampling.penaltyWindow = -1
        if let seed = value("seed") {
            guard let int = seed.integer else { throw APIError.invalid("seed", "'seed' must be an integer") }
            s.sampling.seed = UInt64(bitPattern: Int64(int))
        } else {
            s.sampling.seed = UInt64.random(in: 0...UInt64(UInt32.max))
        }
        for key in maxTokensKeys {
            if let max = try int(key, in: 0...Int(Int32.max)) { s.maxTokens = max }
        }
        if let stop = value("stop") {
            if let one = stop.string {
                s.stop = [one]
            } else if let list = stop.array, list.allSatisfy({ $0.string != nil }) {
                s.stop = list.compactMap(\.string)
            } else {
                throw APIError.invalid("stop", "'stop' must be a string or an array of strings")
            }
            s.stop = s.stop.filter { !$0.isEmpty }
        }
        s.n = try int("n", in: 1...16) ?? 1
        s.logprobs = logprobs
        if let bias = value("logit_bias") {
            guard let object = bias.object else {
                throw APIError.invalid("logit_bias", "'logit_bias' must map token ids to numbers")
            }
            for key in object.keys {
                guard let id = Int(key), id >= 0, let amount = object[key]?.double, (-100...100).contains(amount) else {
                    throw APIError.invalid(
                        "logit_bias", "'logit_bias' maps token ids to numbers from -100 to 100; '\(key)' does not")
                }
                s.logitBias[id] = Float(amount)
            }
        }
        s.stream = try bool("stream") ?? false
        if let options = value("stream_options") {
            guard let object = options.object else {
                throw APIError.invalid("stream_options", "'stream_options' must be an object")
            }
            s.includeUsage = object["include_usage"]?.bool ?? false
        }
        return s
    }
}

extension ChatCompletionRequest {
    static let known: Set<String> = [
        "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "min_p",
        "presence_penalty", "frequency_penalty", "repetition_penalty", "seed", "stop", "n", "logprobs",
        "top_logprobs", "logit_bias", "stream", "stream_options", "user", "response_format", "metadata", "store",
        "reasoning_format", "tools", "tool_choice", "parallel_tool_calls", "chat_template_kwargs",
    ]

    init(_ fields: RequestFields) throws {
        try fields.refuseUnknown(Self.known)
        if let format = fields.value("response_format") {
            guard format.object?["type"]?.string == "text" else { throw APIError.unsupported("response_format") }
        }
        var logprobs: Int? = nil
        if try fields.bool("logprobs") == true { logprobs = try fields.int("top_logprobs", in: 0...20) ?? 0 }
        if logprobs == nil, fields.value("top_logprobs") != nil {
            throw APIError.invalid("top_logprobs", "'top_logprobs' needs 'logprobs': true")
        }
        settings = try fields.settings(maxTokensKeys: ["max_tokens", "max_completion_tokens"], logprobs: logprobs)
        switch try fields.string("reasoning_format") ?? "auto" {
        case "auto", "deepseek": separatesReasoning = true
        case "none": separatesReasoning = false
        default:
            throw APIError.invalid(
                "reasoning_format", "'reasoning_format' must be \"auto\", \"deepseek\" or \"none\" (thinking inline)")
        }
        guard let list = fields.value("messages")?.array else {
            throw APIError.invalid("messages", "'messages' must be an array of messages")
        }
        guard !list.isEmpty else { throw APIError.invalid("messages", "'messages' must not be empty") }
        messages = try list.enumerated().map { index, item in
            let param = "messages[\(index)]"
            guard let message = item.object else { throw APIError.invalid(param, "\(param) must be an object") }
            guard let role = message["role"]?.string,
                ["system", "developer", "user", "assistant", "tool"].contains(role)
            else {
                throw APIError.invalid(
                    param + ".role", "\(param).role must be one of system, developer, user, assistant, tool")
            }
            var calls: [ChatMessage.ToolCall]?
            if role == "assistant", let list = message["tool_calls"], !list.isNull {
                calls = try Self.toolCalls(list, param: param + ".tool_calls")
            }
            return ChatMessage(
                role: role == "developer" ? "system" : role, content: try Self.text(message["content"], param: param),
                toolCalls: calls)
        }
        try readTools(fields)
        if let kwargs = fields.value("chat_template_kwargs") {
            guard let object = kwargs.object else {
                throw APIError.invalid("chat_template_kwargs", "'chat_template_kwargs' must be an object")
            }
            for key in object.keys {
                guard key == "thinking" || key == "enable_thinking", let value = object[key]?.bool else {
                    throw APIError.invalid(
                        "chat_template_kwargs",
                        "chat_template_kwargs takes \"thinking\" (or \"enable_thinking\"): true or false; '\(key)' is not supported"
                    )
                }
                thinking = value
            }
        }
    }

    /// An assistant message's `tool_calls`: `[{"id", "type": "function", "function": {"name", "arguments"}}]`.
    static func toolCalls(_ value: JSONValue, param: String) throws -> [ChatMessage.ToolCall] {
        guard let list = value.array else { throw APIError.invalid(param, "\(param) must be an array of tool calls") }
        return try list.enumerated().map { index, call in
            let function = call.object?["function"]?.object
            guard let name = function?["name"]?.string, !name.isEmpty else {
                throw APIError.invalid("\(param)[\(index)]", "\(param)[\(index)].function.name is required")
            }
            // Arguments are JSON text; some clients send the object itself.
            let arguments = function?["arguments"]
            guard let text = arguments?.string ?? arguments.flatMap({ $0.object != nil ? $0.serialized() : nil }) else {
                throw APIError.invalid(
                    "\(param)[\(index)]", "\(param)[\(index)].function.arguments must be a JSON string")
            }
            return ChatMessage.ToolCall(type: call.object?["type"]?.string ?? "function", name: name, arguments: text)
        }
    }

    /// `tools`, `tool_choice` and `parallel_tool_calls`.
    mutating func readTools(_ fields: RequestFields) throws {
        if let list = fields.value("tools") {
            guard let array = list.array else { throw APIError.invalid("tools", "'tools' must be an array") }
            for (index, tool) in array.enumerated() {
                guard tool.object?["type"]?.string == "function",
                    let name = tool.object?["function"]?.object?["name"]?.string, !name.isEmpty
                else {
                    throw APIError.invalid(
                        "tools[\(index)]",
                        "tools[\(index)] must be {\"type\": \"function\", \"function\": {\"name\", ...}}")
                }
            }
            tools = array
        }
        let names = tools.compactMap { $0.object?["function"]?.object?["name"]?.string }
        if let choice = fields.value("tool_choice") {
            switch choice.string {
            case "none": toolChoice = .none
            case "auto": toolChoice = .auto
            case "required": toolChoice = .required
            default:
                guard let name = choice.object?["function"]?.object?["name"]?.string else {
                    throw APIError.invalid(
                        "tool_choice",
                        "'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\"}}"
                    )
                }
                guard names.contains(name) else {
                    throw APIError.invalid("tool_choice", "tool_choice names \"\(name)\", which is not in 'tools'")
                }
                toolChoice = .function(name)
            }
            if toolChoice != .none && toolChoice != .auto && tools.isEmpty {
                throw APIError.invalid("tool_choice", "tool_choice requires 'tools'")
            }
        }
        parallelToolCalls = try fields.bool("parallel_tool_calls") ?? true
    }

    /// A message's content: a string, or an array of `{"type": "text", "text": ...}` parts joined.
    static func text(_ content: JSONValue?, param: String) throws -> String? {
        guard let content, !content.isNull else { return nil }
        if let string = content.string { return string }
        guard let parts = content.array else {
            throw APIError.invalid(param + ".content", "\(param).content must be a string or an array of text parts")
        }
        return try parts.enumerated().map { i, part in
            guard let object = part.object, object["type"]?.string == "text", let text = object["text"]?.string else {
                throw APIError.invalid(
                    "\(param).content[\(i)]",
                    "only text content parts ({\"type\": \"text\", \"text\": ...}) are supported")
            }
            return text
        }.joined()
    }
}

extension CompletionRequest {
    static let known: Set<String> = [
        "model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "min_p", "presence_penalty",
        "frequency_penalty", "repetition_penalty", "seed", "stop", "n", "logprobs", "logit_bias", "stream",
        "stream_options", "echo", "user", "best_of",
    ]

    init(_ fields: RequestFields) throws {
        try fields.refuseUnknown(Self.known)
        if let best = try fields.int("best_of", in: 0...Int(Int32.max)), best != 1 {
            throw APIError.unsupported("best_of")
        }
        settings = try fields.settings(maxTokensKeys: ["max_tokens"], logprobs: try fields.int("logprobs", in: 0...20))
        if settings.maxTokens == nil { settings.maxTokens = 16 }  // OpenAI's default for completions
        echo = try fields.bool("echo") ?? false
        guard let prompt = fields.value("prompt") else { throw APIError.invalid("prompt", "'prompt' is required") }
        func ids(_ list: [JSONValue]) -> [Int]? {
            let ids = list.compactMap(\.integer)
            return ids.count == list.count && !list.isEmpty ? ids : nil
        }
        if let text = prompt.string {
            prompts = [.text(text)]
        } else if let list = prompt.array, let tokens = ids(list) {
            prompts = [.tokens(tokens)]
        } else if let list = prompt.array, !list.isEmpty, list.allSatisfy({ $0.string != nil }) {
            prompts = list.compactMap(\.string).map { .text($0) }
        } else if let list = prompt.array, !list.isEmpty,
            let batches = Optional(list.compactMap { $0.array.flatMap(ids) }),
            batches.count == list.count
        {
            prompts = batches.map { .tokens($0) }
        } else {
            throw APIError.invalid(
                "prompt", "'prompt' must be a string, an array of strings, an array of token ids, or an array of those")
        }
    }
}
