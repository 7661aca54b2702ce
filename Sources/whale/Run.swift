import ArgumentParser
import Foundation
import WhaleCore
import WhaleEngine
import WhaleModels
import WhaleTokenizer

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text from a prompt, streaming it as it is produced.",
        discussion: """
            The prompt is given as text (-p, tokenized with the model's tokenizer, special tokens written in it \
            matched) or as token ids (--tokens). --chat wraps -p in the model's chat template as a user message \
            (with --system as the system message). Prompt and generation speed are printed to stderr at the end; \
            --json prints {"tokens", "text", "timings"} instead of streaming.
            """)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var sampling: SamplingOptions

    @Option(name: [.short, .customLong("prompt")], help: "The prompt text.")
    var prompt: String?

    @Option(help: "The prompt as token ids: 1,2,3 or [1,2,3].")
    var tokens: String?

    @Option(name: .short, parsing: .unconditional, help: "Maximum tokens to generate.")
    var n: Int = 128

    @Flag(help: "Apply the model's chat template to the prompt.")
    var chat = false

    @Option(help: "System message for --chat.")
    var system: String?

    @Option(help: "Use this built-in chat template instead of the model's.")
    var chatTemplate: String?

    @Option(help: "Stop before this text (repeatable).")
    var stop: [String] = []

    @Flag(help: "Print one JSON object with tokens, text and timings at the end instead of streaming text.")
    var json = false

    @OptionGroup var decoding: DecodingOptions

    func validate() throws {
        guard (prompt == nil) != (tokens == nil) else { throw ValidationError("give exactly one of -p and --tokens") }
        if chat && prompt == nil { throw ValidationError("--chat needs -p") }
        guard n >= 0 else { throw ValidationError("-n must be ≥ 0") }
    }

    func run() throws {
        try reportingErrors {
            let (model, tokenizer, context, contextSize) = try modelOptions.load()
            let promptTokens: [Int]
            if let tokens {
                promptTokens = try parseTokenIDs(tokens)
            } else {
                guard let tokenizer else {
                    throw WhaleError(
                        .fileNotFound, file: modelOptions.model, "the model has no tokenizer",
                        hint: "pass the prompt as token ids with --tokens")
                }
                promptTokens = try buildPrompt(
                    prompt ?? "", chat: chat, system: system, templateName: chatTemplate, tokenizer: tokenizer)
            }
            let generator = Generator(model: model, tokenizer: tokenizer, context: context, contextSize: contextSize)
            try decoding.configure(generator, tokenizer: tokenizer)
            let request = GenerationRequest(
                promptTokens: promptTokens, maxTokens: n, sampling: try sampling.parameters(), stopStrings: stop,
                stopTokens: tokenizer?.endOfGenerationTokenIDs ?? [])
            var out = StandardOutput()
            let opensReasoning =
                chat && tokens == nil && tokenizer != nil
                ? try resolveChatTemplate(tokenizer: tokenizer!, name: chatTemplate).opensReasoning : false
            var printer = GeneratedTextPrinter(startsInReasoning: opensReasoning)
            let result = try generator.generate(request, onText: { text in if !json { printer.write(text) } })
            if !json { printer.finish() }
            if json {
                let object = JSONObject([
                    "prompt_tokens": .array(promptTokens.map { .integer(Int64($0)) }),
                    "tokens": .array(result.tokens.map { .integer(Int64($0)) }),
                    "text": .string(result.text),
                    "finish_reason": .string(result.finishReason.rawValue),
                    "timings": .object(
                        JSONObject([
                            "prompt_tokens": .integer(Int64(result.promptTokensEvaluated)),
                            "prompt_seconds": .number(result.promptSeconds),
                            "prompt_tokens_per_second": .number(result.promptTokensPerSecond),
                            "generated_tokens": .integer(Int64(result.tokens.count)),
                            "generation_seconds": .number(result.generationSeconds),
                            "generation_tokens_per_second": .number(result.generationTokensPerSecond),
                            "cache_bytes_per_token": .integer(Int64(model.cacheBytesPerToken)),
                            "draft_tokens": .integer(Int64(result.draftedTokens)),
                            "accepted_draft_tokens": .integer(Int64(result.acceptedDraftTokens)),
                            "context_shift_dropped_tokens": .integer(Int64(result.shiftedOutTokens)),
                        ])),
                    "seed": .integer(Int64(bitPattern: request.sampling.seed)),
                ])
                print(JSONValue.object(object).serialized(), to: &out)
            } else {
                print("", to: &out)
            }
            var err = StandardError()
            print(generationSummary(result, model: model, cache: generator.cache), to: &err)
        }
    }
}

/// Prompt text → token ids: wrapped in the chat template when asked, BOS added when the model wants one and
/// the text does not already start with it.
func buildPrompt(_ prompt: String, chat: Bool, system: String?, templateName: String?, tokenizer: Tokenizer) throws
    -> [Int]
{
    var text = prompt
    if chat {
        let template = try resolveChatTemplate(tokenizer: tokenizer, name: templateName)
        var messages: [ChatMessage] = []
        if let system { messages.append(ChatMessage(role: "system", content: system)) }
        messages.append(ChatMessage(role: "user", content: prompt))
        text = try template.render(
            messages, addGenerationPrompt: true, bosToken: tokenizer.bosTokenID.map { tokenizer.tokens[$0] } ?? "",
            eosToken: tokenizer.eosTokenIDs.first.map { tokenizer.tokens[$0] } ?? "")
    }
    var ids = tokenizer.encode(text, parseSpecial: true)
    if tokenizer.addsBOS, let bos = tokenizer.bosTokenID, ids.first != bos { ids.insert(bos, at: 0) }
    return ids
}
