import WhaleCore

extension ChatMessage.ToolCall {
    /// The arguments as a chat template's `tojson` receives them: the JSON object the model wrote (transformers
    /// passes arguments as a dict), or, when the text is not a JSON object, the text itself as a string.
    var argumentsValue: JSONValue {
        if let value = try? JSONValue.parse(arguments), value.object != nil { return value }
        return .string(arguments)
    }
}

extension ChatTemplate {
    /// DeepSeek-V3.1's template, step for step.
    func renderDeepSeekV31(_ messages: [ChatMessage], _ addGenerationPrompt: Bool, _ bosToken: String, thinking: Bool)
        -> String
    {
        let systemPrompt = messages.filter { $0.role == "system" }.map { $0.content ?? "None" }.joined(
            separator: "\n\n")
        var out = bosToken + systemPrompt
        var isFirst = false
        var isTool = false
        var isLastUser = false
        for message in messages {
            let content = message.content ?? "None"
            switch message.role {
            case "user":
                isTool = false
                isFirst = false
                isLastUser = true
                out += "<｜User｜>" + content
            case "assistant":
                if let calls = message.toolCalls, !calls.isEmpty {
                    if isLastUser { out += "<｜Assistant｜><think></think>" }
                    isLastUser = false
                    isFirst = false
                    isTool = false
                    for call in calls {
                        let body =
                            "<｜tool▁call▁begin｜>" + call.name + "<｜tool▁sep｜>" + call.argumentsValue.pythonJSON()
                            + "<｜tool▁call▁end｜>"
                        if !isFirst {
                            let text = message.content ?? ""
                            out += text + "<｜tool▁calls▁begin｜>" + body
                            isFirst = true
                        } else {
                            out += body
                        }
                    }
                    out += "<｜tool▁calls▁end｜><｜end▁of▁sentence｜>"
                } else {
                    if isLastUser { out += "<｜Assistant｜><think></think>" }
                    isLastUser = false
                    if isTool {
                        out += content + "<｜end▁of▁sentence｜>"
                        isTool = false
                    } else {
                        var answer = content
                        if let marker = answer.range(of: "</think>") { answer = String(answer[marker.upperBound...]) }
                        out += answer + "<｜end▁of▁sentence｜>"
                    }
                }
            case "tool":
                isLastUser = false
                isTool = true
                out += "<｜tool▁output▁begin｜>" + content + "<｜tool▁output▁end｜>"
            default:
                break
            }
        }
        if addGenerationPrompt && isLastUser && !isTool {
            out += "<｜Assistant｜>" + (thinking ? "<think>" : "<think></think>")
        }
        return out
    }

    /// Meta-Llama-3.1-Instruct's template with its defaults (tools in the first user message, the date
    /// "26 Jul 2024"), step for step.
    func renderLlama31(_ messages: [ChatMessage], tools: [JSONValue]?, _ addGenerationPrompt: Bool, _ bosToken: String)
        throws -> String
    {
        var rest = messages[...]
        var systemMessage = ""
        if let first = rest.first, first.role == "system" {
            systemMessage = pythonStrip(first.content ?? "None")
            rest = rest.dropFirst()
        }
        let header = { (role: String) in "<|start_header_id|>\(role)<|end_header_id|>\n\n" }
        var out = bosToken + header("system")
        if tools != nil { out += "Environment: ipython\n" }
        out += "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
        out += systemMessage + "<|eot_id|>"
        if let tools {
            guard let first = rest.first else {
                throw WhaleError(
                    .invalidArgument, field: "messages",
                    "Llama 3.1's template puts the tools in the first user message, and there is none",
                    hint: "add a user message")
            }
            rest = rest.dropFirst()
            out += header("user")
            out += "Given the following functions, please respond with a JSON for a function call "
            out += "with its proper arguments that best answers the given prompt.\n\n"
            out +=
                "Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its "
            out += "value}.Do not use variables.\n\n"
            for tool in tools { out += tool.pythonJSON(indent: 4) + "\n\n" }
            out += pythonStrip(first.content ?? "None") + "<|eot_id|>"
        }
        for message in rest {
            if let calls = message.toolCalls {
                guard calls.count == 1 else {
                    throw WhaleError(
                        .invalidArgument, field: "messages",
                        "Llama 3.1's template takes one tool call per assistant turn, this one has \(calls.count)",
                        hint: "send each call in a turn of its own")
                }
                out += header("assistant")
                out += "{\"name\": \"" + calls[0].name + "\", \"parameters\": " + calls[0].argumentsValue.pythonJSON()
                out += "}<|eot_id|>"
            } else if message.role == "tool" || message.role == "ipython" {
                // The template writes `content | tojson` when content is a mapping or iterable — which a
                // string is, so a tool result arrives as a JSON string.
                out += header("ipython")
                out += message.content.map { JSONValue.string($0).pythonJSON() } ?? "None"
                out += "<|eot_id|>"
            } else {
                out += header(message.role) + pythonStrip(message.content ?? "None") + "<|eot_id|>"
            }
        }
        if addGenerationPrompt { out += header("assistant") }
        return out
    }

    /// Qwen2.5-Instruct's template, step for step.
    func renderQwen25(_ messages: [ChatMessage], tools: [JSONValue]?, _ addGenerationPrompt: Bool) -> String {
        let defaultSystem = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
        let firstIsSystem = messages.first?.role == "system"
        var out = ""
        if let tools, !tools.isEmpty {
            out += "<|im_start|>system\n" + (firstIsSystem ? messages[0].content ?? "None" : defaultSystem)
            out += "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            out += "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
            for tool in tools { out += "\n" + tool.pythonJSON() }
            out += "\n</tools>\n\nFor each function call, return a json object with function name and arguments "
            out += "within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, "
            out += "\"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n"
        } else {
            out += "<|im_start|>system\n" + (firstIsSystem ? messages[0].content ?? "None" : defaultSystem)
            out += "<|im_end|>\n"
        }
        for (index, message) in messages.enumerated() {
            let calls = message.toolCalls ?? []
            let content = message.content ?? "None"
            if message.role == "user" || (message.role == "system" && index > 0)
                || (message.role == "assistant" && calls.isEmpty)
            {
                out += "<|im_start|>" + message.role + "\n" + content + "<|im_end|>\n"
            } else if message.role == "assistant" {
                out += "<|im_start|>assistant"
                if let text = message.content, !text.isEmpty { out += "\n" + text }
                for call in calls {
                    out += "\n<tool_call>\n{\"name\": \"" + call.name + "\", \"arguments\": "
                    out += call.argumentsValue.pythonJSON() + "}\n</tool_call>"
                }
                out += "<|im_end|>\n"
            } else if message.role == "tool" {
                if index == 0 || messages[index - 1].role != "tool" { out += "<|im_start|>user" }
                out += "\n<tool_response>\n" + content + "\n</tool_response>"
                if index == messages.count - 1 || messages[index + 1].role != "tool" { out += "<|im_end|>\n" }
            }
        }
        if addGenerationPrompt { out += "<|im_start|>assistant\n" }
        return out
    }
}
