import WhaleCore
import WhaleKernels
import WhaleModels

/// What `whale score` reports: the log-probability of each token given the ones before it, and the most
/// likely tokens after each position.
public enum SequenceScore {
    /// `logprobs[i] = log p(ids[i] | ids[..<i])` (nil for i = 0); `top[i]`: the `top` most likely tokens after
    /// `ids[...i]`, best first. Evaluated in chunks of `chunk` tokens (one pass per chunk) on a fresh cache.
    public static func compute(
        _ ids: [Int], model: any LanguageModel, context: ForwardContext, top: Int, chunk: Int = 256
    ) throws -> (logprobs: [Double?], top: [[(Int, Double)]]) {
        let cache = model.makeCache(capacity: ids.count)
        let vocabulary = model.vocabularySize
        var logprobs: [Double?] = [nil]
        var topLists: [[(Int, Double)]] = []
        var start = 0
        var row = [Double](repeating: 0, count: vocabulary)
        while start < ids.count {
            let end = min(start + max(chunk, 1), ids.count)
            let logits = try model.forward(
                [SequenceInput(tokens: Array(ids[start..<end]), cache: cache, logits: .all)], context: context)[0]
            for i in start..<end {
                logits.withUnsafeBufferPointer { buffer in
                    row.withUnsafeMutableBufferPointer { out in
                        Ops.logSoftmax(
                            buffer.baseAddress! + (i - start) * vocabulary, count: vocabulary, output: out.baseAddress!)
                    }
                }
                if i + 1 < ids.count { logprobs.append(row[ids[i + 1]]) }
                if top > 0 {
                    let best = row.withUnsafeBufferPointer { largestIndices($0, count: top) }
                    topLists.append(best.map { ($0, row[$0]) })
                } else {
                    topLists.append([])
                }
            }
            start = end
        }
        return (logprobs, topLists)
    }
}
