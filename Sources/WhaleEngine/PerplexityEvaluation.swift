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

    /// - Parameter onChunk: called after each chunk with its index and the running perplexity.
    public static func evaluate(
        tokens: [Int], model: any LanguageModel, context: ForwardContext, contextSize n: Int, bos: Int?,
        maxChunks: Int? = nil, onChunk: (Int, Double) -> Void = { _, _ in }
    ) throws -> PerplexityEvaluation {
        let available = tokens.count / n
        let count = min(maxChunks ?? available, available)
        guard n >= 2, count >= 1 else {
            throw WhaleError(
                .invalidArgument, field: "text", "\(tokens.count) tokens are fewer than one chunk of \(n)",
                hint: "use a longer text or a smaller --ctx")
        }
        var result = PerplexityEvaluation()
        let vocabulary = model.vocabularySize
        var row = [Double](repeating: 0, count: vocabulary)
        var nll = 0.0
        var nll2 = 0.0
        for chunk in 0..<count {
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
            for j in (n / 2)..<(n - 1) {
                logits.withUnsafeBufferPointer { buffer in
                    row.withUnsafeMutableBufferPointer { out in
                        Ops.logSoftmax(
                            buffer.baseAddress! + j * vocabulary, count: vocabulary, output: out.baseAddress!)
                    }
                }
                let value = -row[tokens[start + j + 1]]
                nll += value
                nll2 += value * value
                result.scoredTokens += 1
            }
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
}
