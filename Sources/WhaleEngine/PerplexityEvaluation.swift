import Foundation
import WhaleCore
import WhaleKernels
import WhaleModels

/// Perplexity as llama.cpp's `llama-perplexity` computes it, so the figures are comparable: the tokens are
/// cut into chunks of `contextSize` (the remainder dropped); each chunk is evaluated from an empty cache
/// with its first token replaced by BOS when the model uses one, and only the second half of each chunk is
/// scored. `runningPerplexity[i]` is exp(mean NLL of all tokens scored in chunks 0...i), as it prints.
public struct PerplexityEvaluation: Sendable {
    public var runningPerplexity: [Double] = []
    public var perplexity: Double = .nan
    /// llama-perplexity's ± figure (standard error of the mean NLL, scaled by the perplexity).
    public var uncertainty: Double = 0
    public var scoredTokens = 0

    /// - Parameters:
    ///   - baseFile: when given, each chunk's scored positions are also written to it as llama-perplexity's
    ///     log-probability rows (`--kl-divergence-base`); its header must have been written for these
    ///     chunks.
    ///   - onChunk: called after each chunk with its index and the running perplexity.
    public static func evaluate(
        tokens: [Int], model: any LanguageModel, context: ForwardContext, contextSize n: Int, bos: Int?,
        maxChunks: Int? = nil, baseFile: LogProbabilityFile.Writer? = nil,
        onChunk: (Int, Double) -> Void = { _, _ in }
    ) throws -> PerplexityEvaluation {
        let count = try chunkCount(tokens: tokens.count, contextSize: n, maxChunks: maxChunks)
        var result = PerplexityEvaluation()
        let vocabulary = model.vocabularySize
        let width = LogProbabilityFile.rowWidth(vocabulary: vocabulary)
        var row = [Double](repeating: 0, count: vocabulary)
        var encoded = [UInt16](
            repeating: 0, count: baseFile == nil ? 0 : LogProbabilityFile.rowsPerChunk(contextSize: n) * width)
        var nll = 0.0
        var nll2 = 0.0
        try forEachChunk(tokens: tokens, chunkCount: count, model: model, context: context, contextSize: n, bos: bos) {
            chunk, logits in
            let start = chunk * n
            for (index, j) in ((n / 2)..<(n - 1)).enumerated() {
                let next = tokens[start + j + 1]
                let rowLogits = logits.baseAddress! + index * vocabulary
                row.withUnsafeMutableBufferPointer { out in
                    Ops.logSoftmax(rowLogits, count: vocabulary, output: out.baseAddress!)
                }
                if baseFile != nil {
                    encoded.withUnsafeMutableBufferPointer { out in
                        _ = LogProbabilityFile.encode(
                            logits: rowLogits, vocabulary: vocabulary, token: next,
                            into: out.baseAddress! + index * width)
                    }
                }
                let value = -row[next]
                nll += value
                nll2 += value * value
                result.scoredTokens += 1
            }
            try baseFile?.append(encoded)
            let running = exp(nll / Double(result.scoredTokens))
            result.runningPerplexity.append(running)
            onChunk(chunk, running)
        }
        let mean = nll / Double(result.scoredTokens)
        let variance = nll2 / Double(result.scoredTokens) - mean * mean
        result.perplexity = exp(mean)
        result.uncertainty =
            result.scoredTokens > 1 ? (variance / Double(result.scoredTokens - 1)).squareRoot() * result.perplexity : 0
        return result
    }

    /// How many whole chunks of `n` the text gives (at most `maxChunks`); an error when not even one.
    public static func chunkCount(tokens: Int, contextSize n: Int, maxChunks: Int? = nil) throws -> Int {
        let available = tokens / n
        let count = min(maxChunks ?? available, available)
        guard n >= 4, count >= 1 else {
            throw WhaleError(
                .invalidArgument, field: "text", "\(tokens) tokens are fewer than one chunk of \(n)",
                hint: "use a longer text or a smaller --ctx")
        }
        return count
    }

    /// Evaluates `chunkCount` chunks of `n` tokens, each from an empty cache with its first token replaced by
    /// `bos` (when given), in passes of at most 512 tokens (llama.cpp's micro-batch), and calls `body` with the
    /// chunk's index and the logits of its scored positions n/2 ..< n − 1 (row-major, one row per position).
    public static func forEachChunk(
        tokens: [Int], chunkCount: Int, model: any LanguageModel, context: ForwardContext, contextSize n: Int,
        bos: Int?, body: (Int, UnsafeBufferPointer<Float>) throws -> Void
    ) throws {
        let vocabulary = model.vocabularySize
        for chunk in 0..<chunkCount {
            let start = chunk * n
            var input = Array(tokens[start..<(start + n)])
            if let bos { input[0] = bos }
            let cache = model.makeCache(capacity: n)
            var logits: [Float] = []
            logits.reserveCapacity(n * vocabulary)
            var offset = 0
            while offset < n {
                let end = min(offset + 512, n)
                logits += try model.forward(
                    [SequenceInput(tokens: Array(input[offset..<end]), cache: cache, logits: .all)], context: context)[
                        0]
                offset = end
            }
            try logits.withUnsafeBufferPointer { all in
                let first = (n / 2) * vocabulary
                let rows = LogProbabilityFile.rowsPerChunk(contextSize: n)
                try body(chunk, UnsafeBufferPointer(rebasing: all[first..<(first + rows * vocabulary)]))
            }
        }
    }
}

/// llama-perplexity's `--kl-divergence`: the model evaluated on a base file's text, chunk for chunk as the
/// base was, and its next-token distributions compared with the base's.
public enum KLDivergenceEvaluation {
    /// - Parameter onChunk: called after each chunk with its index and the statistics so far.
    public static func evaluate(
        base: LogProbabilityFile.Reader, model: any LanguageModel, context: ForwardContext, bos: Int?,
        onChunk: (Int, KLDivergenceStatistics) -> Void = { _, _ in }
    ) throws -> KLDivergenceStatistics {
        let header = base.header
        guard header.vocabularySize == model.vocabularySize else {
            throw WhaleError(
                .invalidArgument, field: "--kl-divergence-base",
                "the base file's vocabulary has \(header.vocabularySize) tokens, the model's \(model.vocabularySize)",
                hint: "compare models that share a tokenizer")
        }
        let n = header.contextSize
        let vocabulary = header.vocabularySize
        let width = LogProbabilityFile.rowWidth(vocabulary: vocabulary)
        var statistics = KLDivergenceStatistics()
        try PerplexityEvaluation.forEachChunk(
            tokens: header.tokens, chunkCount: header.chunkCount, model: model, context: context, contextSize: n,
            bos: bos
        ) { chunk, logits in
            let rows = base.nextChunk()
            let start = chunk * n
            for (index, j) in ((n / 2)..<(n - 1)).enumerated() {
                statistics.add(
                    logits: logits.baseAddress! + index * vocabulary, vocabulary: vocabulary,
                    base: rows.baseAddress! + index * width, token: header.tokens[start + j + 1])
            }
            onChunk(chunk, statistics)
        }
        return statistics
    }
}
