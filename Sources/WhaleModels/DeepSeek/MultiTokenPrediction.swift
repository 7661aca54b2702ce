import WhaleCore
import WhaleKernels

/// V3's multi-token-prediction module (docs/DEEPSEEK.md §8): from the main model's final normed hidden state
/// hᵢ and the next token tᵢ₊₁ it predicts tᵢ₊₂, for self-speculative decoding.
///
///     x = eh_proj([enorm(embed(tᵢ₊₁)); hnorm(hᵢ)])     // [T, 2·hidden] → [T, hidden]; vLLM's and SGLang's order
///     x = decoder layer(x)                              // one more MLA + MoE layer, with its own cache
///     logits = shared_head(rmsnorm(x))
struct MultiTokenPrediction: DraftModule {
    var embeddingNorm: [Float]
    var hiddenNorm: [Float]
    /// `eh_proj`: `[hidden, 2·hidden]` over `[enorm(embedding); hnorm(hidden)]`.
    var projection: WeightMatrix
    var layer: ResidualLayer
    var headNorm: [Float]
    var head: WeightMatrix
    var embedding: WeightMatrix
    var eps: Float
    var cacheLayout: KVCache.Layout
    var rotated: KVCache.RotatedPart
    /// The layer's index in the checkpoint (`num_hidden_layers`), for taps.
    var layerIndex: Int

    func makeCache(capacity: Int) -> KVCache {
        KVCache(layout: cacheLayout, layers: 1, capacity: capacity, rotated: rotated)
    }

    /// Feeds the pairs `(hidden[i], tokens[i])` — the main model's normed final hidden state at some position p
    /// and the token at p + 1 — appending them to `cache` (entry i at position `cache.count + i`, the position
    /// of its hidden state), and returns the logits for the token after the last pair's token.
    func draft(
        hidden: [Float], tokens: [Int], cache: KVCache, decoder: TransformerDecoder, context: ForwardContext
    ) throws -> [Float] {
        let d = decoder.hiddenSize
        let arena = context.arena
        let batch = [SequenceInput(tokens: tokens, cache: cache, logits: .last)]
        let pass = ForwardPass(batch, arena: arena)
        let n = pass.count
        let joined = arena.floats(n * 2 * d)  // [T, 2·hidden]
        let row = arena.floats(d)  // [hidden]
        for t in 0..<n {
            let half = joined + t * 2 * d
            embedding.dequantizeRow(tokens[t], into: row)
            Ops.rmsNorm(row, weight: embeddingNorm, rows: 1, n: d, eps: eps, output: half)
            hidden.withUnsafeBufferPointer { states in
                Ops.rmsNorm(
                    states.baseAddress! + t * d, weight: hiddenNorm, rows: 1, n: d, eps: eps, output: half + d)
            }
        }
        let x = arena.floats(n * d)  // [T, hidden]
        context.linear(projection, joined, tokens: n, into: x)
        layer.apply(x, pass: pass, cacheLayer: 0, layer: layerIndex, context: context)
        cache.advance(by: n)
        let normed = arena.floats(d)  // [hidden]
        Ops.rmsNorm(x + (n - 1) * d, weight: headNorm, rows: 1, n: d, eps: eps, output: normed)
        return decoder.project(normed, rows: 1, through: head, context: context)
    }
}
