import ArgumentParser
import Foundation
import WhaleCore
import WhaleDistributed
import WhaleEngine
import WhaleFormats
import WhaleKernels
import WhaleModels
import WhaleTokenizer

/// How a command's model argument is described.
let modelHelp = ArgumentHelp(
    "A .gguf file, a model directory (config.json + safetensors), or org/name[:TAG] from the Hugging Face Hub.")

/// Options shared by the commands that run a model.
struct ModelOptions: ParsableArguments {
    @Argument(help: modelHelp)
    var model: String

    @Option(name: [.short, .long], parsing: .unconditional, help: "Worker threads (default: one per physical core).")
    var threads: Int?

    @Option(
        name: .customLong("ctx"), parsing: .unconditional,
        help: ArgumentHelp(
            "Context size in tokens, at most the model's trained length (default: that length, at most 4096; "
                + "perplexity: 512)."))
    var contextSize: Int?

    @Option(
        name: .customLong("cache-type"),
        help: ArgumentHelp(
            "Cache precision: f16, f32 or q8_0 (default: f16 for GGUF as llama.cpp, f32 for safetensors).",
            valueName: "type"))
    var cacheType: String?

    @Option(
        name: .customLong("split-layers"),
        help: ArgumentHelp(
            "Under mpirun: decoder layers per rank, e.g. 7,5 (default: in proportion to each rank's free memory).",
            valueName: "counts"))
    var splitLayers: String?

    @OptionGroup var hub: HubOptions

    /// The model, its tokenizer (nil when a model directory has none), and a forward context. The model file
    /// is opened (mapped and validated) once; the tokenizer reads the same mapping.
    ///
    /// Under mpirun with several ranks this is the rank's share of the model (`loadModel`): rank 0 gets a
    /// model that runs like any other; a worker rank never returns (it throws `WorkerStopped` when done).
    ///
    /// - Parameters:
    ///   - defaultContext: the context size without --ctx (nil: the model's, at most 4096).
    ///   - sequences: sequences the caller keeps at once (the server's --parallel), for the memory check.
    func load(defaultContext: Int? = nil, sequences: Int = 1) throws -> (
        model: any LanguageModel, tokenizer: Tokenizer?, context: ForwardContext, contextSize: Int
    ) {
        var options = LoadOptions()
        if let cacheType { options.attentionPrecision = try AttentionPrecision(cacheType: cacheType) }
        let threadCount = threads ?? CPUTopology.physicalCoreCount
        guard threadCount >= 1 && threadCount <= 512 else {
            throw WhaleError(.invalidArgument, field: "--threads", "\(threadCount) threads", hint: "give 1 to 512")
        }
        if let contextSize, contextSize < 1 {
            throw WhaleError(.invalidArgument, field: "--ctx", "context size \(contextSize)", hint: "give 1 or more")
        }
        let (model, files) = try loadModel(
            self.model, pull: !hub.noPull, options: options, threads: threadCount,
            cacheTokens: (contextSize ?? defaultContext ?? 4096) * sequences, split: splitLayers)
        let tokenizer: Tokenizer?
        switch files {
        case .safetensors(let weights, _):
            let hasTokenizer = FileSystem.isFile(FileSystem.join(weights.directory, "tokenizer.json"))
            tokenizer = hasTokenizer ? try Tokenizer.load(weights.directory) : nil
        case .gguf(let weights):
            do {
                tokenizer = try Tokenizer.load(gguf: weights)
            } catch let error as WhaleError where error.code == .missingKey && error.field == "tokenizer.ggml.model" {
                tokenizer = nil  // a GGUF without a vocabulary: --tokens still works
            }
        }
        let size = contextSize ?? defaultContext ?? min(model.contextLength, 4096)
        try checkContext(size, model: model)
        return (model, tokenizer, ForwardContext(pool: ThreadPool(threads: threadCount)), size)
    }

    /// Refuses a context the model was not trained for, or whose cache would not fit in memory, before
    /// anything is allocated.
    func checkContext(_ size: Int, model: any LanguageModel) throws {
        guard size <= model.contextLength else {
            throw WhaleError(
                .invalidArgument, field: "--ctx",
                "\(size) tokens is beyond the \(model.contextLength) the model was trained for",
                hint: "use --ctx \(model.contextLength) or less")
        }
        let (bytes, overflow) = size.multipliedReportingOverflow(by: model.cacheBytesPerToken)
        let memory = ProcessInfo.processInfo.physicalMemory
        guard !overflow, UInt64(bytes) <= memory / 10 * 9 else {
            let gib = Double(size) * Double(model.cacheBytesPerToken) / 1_073_741_824
            throw WhaleError(
                .invalidArgument, field: "--ctx",
                String(
                    format: "a cache of %d tokens needs %.1f GiB, more than this machine's %.1f GiB of memory", size,
                    gib, Double(memory) / 1_073_741_824),
                hint: "use a smaller --ctx")
        }
    }
}

/// Options that choose how tokens are sampled.
struct SamplingOptions: ParsableArguments {
    @Option(name: .customLong("temp"), parsing: .unconditional, help: "Temperature; 0 is greedy.")
    var temperature: Double = 0.8
    @Option(name: .customLong("top-k"), parsing: .unconditional, help: "Keep the K most likely tokens (0: all).")
    var topK: Int = 40
    @Option(
        name: .customLong("top-p"), parsing: .unconditional, help: "Keep the smallest set with this much probability.")
    var topP: Double = 0.95
    @Option(
        name: .customLong("min-p"), parsing: .unconditional,
        help: "Drop tokens less likely than this fraction of the best one.")
    var minP: Double = 0.05
    @Option(
        name: .customLong("repeat-penalty"), parsing: .unconditional,
        help: "Penalize tokens seen in the last --repeat-last-n.")
    var repeatPenalty: Double = 1.0
    @Option(
        name: .customLong("repeat-last-n"), parsing: .unconditional,
        help: "Window of tokens the penalties look at (-1: all).")
    var repeatLastN: Int = 64
    @Option(
        name: .customLong("frequency-penalty"), parsing: .unconditional, help: "Subtract this times each token's count."
    )
    var frequencyPenalty: Double = 0
    @Option(
        name: .customLong("presence-penalty"), parsing: .unconditional,
        help: "Subtract this from every token already seen.")
    var presencePenalty: Double = 0
    @Option(parsing: .unconditional, help: "Random seed: the same seed gives the same text (default: random).")
    var seed: UInt64?

    func parameters() throws -> SamplingParameters {
        func check(_ valid: Bool, _ option: String, _ value: CustomStringConvertible, _ rule: String) throws {
            guard valid else { throw WhaleError(.invalidArgument, field: option, "\(value)", hint: rule) }
        }
        try check(temperature >= 0 && temperature.isFinite, "--temp", temperature, "give 0 (greedy) or more")
        try check(topK >= 0, "--top-k", topK, "give 0 (all tokens) or more")
        try check(topP > 0 && topP <= 1, "--top-p", topP, "give a value in (0, 1]")
        try check(minP >= 0 && minP <= 1, "--min-p", minP, "give a value in [0, 1]")
        try check(repeatPenalty > 0 && repeatPenalty.isFinite, "--repeat-penalty", repeatPenalty, "give more than 0")
        try check(repeatLastN >= -1, "--repeat-last-n", repeatLastN, "give -1 (all), 0 (none) or more")
        try check(frequencyPenalty.isFinite, "--frequency-penalty", frequencyPenalty, "give a number")
        try check(presencePenalty.isFinite, "--presence-penalty", presencePenalty, "give a number")
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

    @Option(
        parsing: .unconditional,
        help: "Tokens at the start of the context that a context shift never drops (default: the BOS token).")
    var keep: Int?

    /// Applies the options to `generator`.
    func configure(_ generator: Generator, tokenizer: Tokenizer?) throws {
        if !noContextShift {
            let bos = tokenizer?.bosTokenID != nil && tokenizer?.addsBOS == true ? 1 : 0
            generator.contextShift = Generator.ContextShift(keep: keep ?? bos)
        }
        if mtp {
            if generator.model is PipelineModel {
                throw WhaleError(
                    .invalidArgument, field: "--mtp", "self-speculative decoding does not run across MPI ranks yet",
                    hint: "run without --mtp, or in one process")
            }
            try generator.enableDrafting()
        }
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

extension AttentionPrecision {
    /// The `--cache-type` option's value, or an error listing the types there are.
    init(cacheType: String) throws {
        guard let precision = AttentionPrecision(rawValue: cacheType) else {
            let types = AttentionPrecision.allCases.map(\.rawValue).joined(separator: ", ")
            throw WhaleError(.invalidArgument, field: "--cache-type", "\"\(cacheType)\"", hint: "use one of \(types)")
        }
        self = precision
    }
}
