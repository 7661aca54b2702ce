import ArgumentParser
import Foundation
import WhaleCore
import WhaleTokenizer

struct ChatTemplateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat-template",
        abstract: "Render a conversation with a model's chat template, as the model will see it.",
        discussion: """
            MESSAGES is a JSON file holding an array of {"role": ..., "content": ...} objects (or an object \
            with a "messages" array). The template is the one the model carries (tokenizer.chat_template in \
            GGUF, chat_template in tokenizer_config.json), recognised by name; --chat-template NAME picks a \
            built-in one instead: \(ChatTemplate.builtIn.map(\.name).joined(separator: ", ")).
            """)

    @Argument(help: "A .gguf file, a model directory, a tokenizer.json file, or org/name[:TAG] from the Hub.")
    var model: String

    @Argument(help: "JSON file with the messages.")
    var messages: String

    @Option(help: "Use this built-in template instead of the model's.")
    var chatTemplate: String?

    @Flag(help: "Do not end with the opening of an assistant turn.")
    var noGenerationPrompt = false

    @Flag(help: "Print the prompt's token ids (special tokens matched) instead of its text.")
    var tokens = false

    @OptionGroup var hub: HubOptions

    func run() throws {
        try reportingErrors {
            let tokenizer = try Tokenizer.load(try modelPath(model, pull: !hub.noPull))
            let template = try resolveChatTemplate(tokenizer: tokenizer, name: chatTemplate)
            let conversation = try parseMessages(try readText(messages), file: messages)
            let prompt = try template.render(
                conversation, addGenerationPrompt: !noGenerationPrompt,
                bosToken: tokenizer.bosTokenID.map { tokenizer.tokens[$0] } ?? "",
                eosToken: tokenizer.eosTokenIDs.first.map { tokenizer.tokens[$0] } ?? "")
            var out = StandardOutput()
            if tokens {
                let ids = tokenizer.encode(prompt, parseSpecial: true)
                print(JSONValue.array(ids.map { .integer(Int64($0)) }).serialized(), to: &out)
            } else {
                print(prompt, terminator: "", to: &out)
            }
        }
    }
}

/// The template named on the command line, or the one the model carries.
func resolveChatTemplate(tokenizer: Tokenizer, name: String?) throws -> ChatTemplate {
    if let name { return try ChatTemplate.named(name) }
    guard let jinja = tokenizer.chatTemplate else {
        throw WhaleError(
            .missingKey, file: tokenizer.source, field: "chat template", "the model carries no chat template",
            hint: "pick one with --chat-template NAME: \(ChatTemplate.builtIn.map(\.name).joined(separator: ", "))")
    }
    return try ChatTemplate.detect(jinja, source: tokenizer.source)
}

/// `[{"role":..,"content":..}, ...]` or `{"messages": [...]}` → messages.
func parseMessages(_ text: String, file: String) throws -> [ChatMessage] {
    let root = try JSONValue.parse(text, file: file)
    guard let list = root.array ?? root.object?["messages"]?.array else {
        throw WhaleError(.invalidValue, file: file, "expected an array of messages or {\"messages\": [...]}")
    }
    return try list.enumerated().map { index, item in
        guard let object = item.object, let role = object["role"]?.string else {
            throw WhaleError(
                .invalidValue, file: file, field: "messages[\(index)]", "expected {\"role\": ..., \"content\": ...}")
        }
        let calls = try object["tool_calls"]?.array?.enumerated().map { callIndex, call -> ChatMessage.ToolCall in
            guard let call = call.object, let function = call["function"]?.object, let name = function["name"]?.string
            else {
                throw WhaleError(
                    .invalidValue, file: file, field: "messages[\(index)].tool_calls[\(callIndex)]",
                    "expected {\"type\": ..., \"function\": {\"name\": ..., \"arguments\": ...}}")
            }
            let arguments = function["arguments"]?.string ?? function["arguments"]?.serialized() ?? "{}"
            return ChatMessage.ToolCall(type: call["type"]?.string ?? "function", name: name, arguments: arguments)
        }
        let content = object["content"]
        guard content == nil || content!.isNull || content!.string != nil else {
            throw WhaleError(
                .invalidValue, file: file, field: "messages[\(index)].content", "expected a string or null")
        }
        return ChatMessage(role: role, content: content?.string, toolCalls: calls)
    }
}
