import ArgumentParser
import Foundation
import WhaleCore
import WhaleEngine
import WhaleFormats
import WhaleKernels
import WhaleModels
import WhaleTokenizer

/// Options shared by the commands that run a model.
struct ModelOptions: ParsableArguments {
    @Argument(help: "A .gguf file or a model directory (config.json + safetensors).")
    var model: String

    @Option(name: [.short, .long], help: "Worker threads (default: all cores).")
    var threads: Int?

    @Option(name: .customLong("ctx"), help: "Context size in tokens (default: the model's, at most 4096).")
    var contextSize: Int?

    @Option(
        name: .customLong("cache-type"),
        help: "Attention precision, f16 or f32 (default: f16 for GGUF as llama.cpp, f32 for safetensors).")
    var cacheType: String?

    /// The model, its tokenizer (nil when a model directory has none), and a forward context.
    func load() throws -> (model: any LanguageModel, tokenizer: Tokenizer?, context: ForwardContext, contextSize: Int) {
        var options = LoadOptions()
        if let cacheType {
            guard let precision = AttentionPrecision(rawValue: cacheType) else {
                throw WhaleError(.invalidArgument, field: "--cache-type", "\"\(cacheType)\"", hint: "use f16 or f32")
            }
            options.attentionPrecision = precision
        }
        let model = try ModelRegistry.load(self.model, options: options)
        var tokenizer: Tokenizer? = nil
        if FileSystem.isDirectory(self.model) {
            if FileSystem.isFile(FileSystem.join(self.model, "tokenizer.json")) {
                tokenizer = try Tokenizer.load(self.model)
            }
        } else {
            do {
                tokenizer = try Tokenizer.load(self.model)
            } catch let error as WhaleError where error.code == .missingKey && error.field == "tokenizer.ggml.model" {
                tokenizer = nil  // a GGUF without a vocabulary: --tokens still works
            }
        }
        let threadCount = threads ?? ProcessInfo.processInfo.activeProcessorCount
        guard threadCount >= 1 && threadCount <= 512 else {
            throw WhaleError(.invalidArgument, field: "--threads", "\(threadCount) threads", hint: "give 1 or more")
        }
        let size = contextSize ?? min(model.contextLength, 4096)
        guard size >= 1 else { throw WhaleError(.invalidArgument, field: "--ctx", "context size must be positive") }
        return (model, tokenizer, ForwardContext(pool: ThreadPool(threads: threadCount)), size)
    }
}

/// Options that choose how tokens are sampled.
struct SamplingOptions: ParsableArguments {
    @Option(name: .customLong("temp"), help: "Temperature; 0 is greedy.")
    var temperature: Double = 0.8
    @Option(name: .customLong("top-k"), help: "Keep the K most likely tokens (0: all).")
    var topK: Int = 40
    @Option(name: .customLong("top-p"), help: "Keep the smallest set with this much probability.")
    var topP: Double = 0.95
    @Option(name: .customLong("min-p"), help: "Drop tokens less likely than this fraction of the best one.")
    var minP: Double = 0.05
    @Option(name: .customLong("repeat-penalty"), help: "Penalize tokens seen in the last --repeat-last-n.")
    var repeatPenalty: Double = 1.0
    @Option(name: .customLong("repeat-last-n"), help: "Window of tokens the penalties look at (-1: all).")
    var repeatLastN: Int = 64
    @Option(name: .customLong("frequency-penalty"), help: "Subtract this times each token's count.")
    var frequencyPenalty: Double = 0
    @Option(name: .customLong("presence-penalty"), help: "Subtract this from every token already seen.")
    var presencePenalty: Double = 0
    @Option(help: "Random seed: the same seed gives the same text (default: random).")
    var seed: UInt64?

    func parameters() throws -> SamplingParameters {
        guard temperature >= 0, topP > 0, topP <= 1, minP >= 0, minP <= 1, repeatPenalty > 0 else {
            throw WhaleError(
                .invalidArgument, field: "sampling",
                "need --temp ≥ 0, 0 < --top-p ≤ 1, 0 ≤ --min-p ≤ 1, --repeat-penalty > 0")
        }
        var p = SamplingParameters()
        p.temperature = temperature
        p.topK = topK
        p.topP = topP
        p.minP = minP
        p.repeatPenalty = repeatPenalty
        p.penaltyWindow = repeatLastN
        p.frequencyPenalty = frequencyPenalty
        p.presencePenalty = presencePenalty
        p.seed = seed ?? UInt64.random(in: 0...UInt64(UInt32.max))
        return p
    }
}

/// How generation uses the context and the model's draft module.
struct DecodingOptions: ParsableArguments {
    @Flag(
        help: ArgumentHelp(
            "Self-speculative decoding with the model's multi-token-prediction module (DeepSeek-V3/R1); needs --temp 0.",
            discussion: "The output is the same as without it; the draft acceptance rate is printed at the end."))
    var mtp = false

    @Flag(help: "Stop when the context is full instead of dropping the oldest tokens (after --keep) and going on.")
    var noContextShift = false

    @Option(help: "Tokens at the start of the context that a context shift never drops (default: the BOS token).")
    var keep: Int?

    /// Applies the options to `generator`.
    func configure(_ generator: Generator, tokenizer: Tokenizer?) throws {
        if !noContextShift {
            let bos = tokenizer?.bosTokenID != nil && tokenizer?.addsBOS == true ? 1 : 0
            generator.contextShift = Generator.ContextShift(keep: keep ?? bos)
        }
        if mtp { try generator.enableDrafting() }
    }
}

/// The end-of-run summary on stderr: speeds, why it stopped, the cache, and the drafts.
func generationSummary(_ result: GenerationResult, model: any LanguageModel, cache: KVCache) -> String {
    var line = String(
        format: "prompt: %d tokens, %.1f tokens/s | generation: %d tokens, %.1f tokens/s | %@",
        result.promptTokensEvaluated, result.promptTokensPerSecond, result.tokens.count,
        result.generationTokensPerSecond, result.finishReason.rawValue)
    line += String(
        format: "\ncache: %d tokens × %d bytes = %.2f MiB", cache.count, model.cacheBytesPerToken,
        Double(cache.count * model.cacheBytesPerToken) / 1_048_576)
    if result.shiftedOutTokens > 0 { line += " | context shift dropped \(result.shiftedOutTokens) tokens" }
    if result.draftedTokens > 0 {
        line += String(
            format: "\nmtp: %d drafted, %d accepted (%.1f%%)", result.draftedTokens, result.acceptedDraftTokens,
            100 * result.draftAcceptanceRate)
    }
    return line
}
