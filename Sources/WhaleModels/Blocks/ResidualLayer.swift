import WhaleKernels

/// Attention of one layer: reads the normed residual stream of a pass, writes each token's attention state
/// to its sequence's cache, and returns the attention output (after the output projection).
protocol AttentionBlock {
    func apply(
        _ x: UnsafePointer<Float>, pass: ForwardPass, cacheLayer: Int, layer: Int,
        output: UnsafeMutablePointer<Float>, context: ForwardContext)
}

/// The feed-forward part of one layer: `output[t] = FFN(x[t])` for `count` tokens.
protocol FeedForwardBlock {
    func apply(
        _ x: UnsafePointer<Float>, count: Int, layer: Int, output: UnsafeMutablePointer<Float>,
        context: ForwardContext)
}

/// The pre-norm residual layer every supported architecture uses:
///
///     h += attention(rmsnorm(h) · attn_norm)
///     h += ffn(rmsnorm(h) · ffn_norm)
struct ResidualLayer: DecoderLayer {
    var attentionNorm: [Float]
    var attention: any AttentionBlock
    var feedForwardNorm: [Float]
    var feedForward: any FeedForwardBlock
    var eps: Float

    func apply(
        _ hidden: UnsafeMutablePointer<Float>, pass: ForwardPass, cacheLayer: Int, layer: Int, context: ForwardContext
    ) {
        let n = pass.count
        let d = attentionNorm.count
        let arena = context.arena
        let mark = arena.mark
        defer { arena.rewind(to: mark) }
        let normed = arena.floats(n * d)  // [T, hidden]
        let delta = arena.floats(n * d)  // [T, hidden]
        Ops.rmsNorm(hidden, weight: attentionNorm, rows: n, n: d, eps: eps, output: normed)
        context.tap("attn_norm", layer, normed, [n, d])
        attention.apply(normed, pass: pass, cacheLayer: cacheLayer, layer: layer, output: delta, context: context)
        context.tap("attn_out", layer, delta, [n, d])
        Ops.add(delta, into: hidden, count: n * d)
        context.tap("ffn_inp", layer, hidden, [n, d])
        Ops.rmsNorm(hidden, weight: feedForwardNorm, rows: n, n: d, eps: eps, output: normed)
        context.tap("ffn_norm", layer, normed, [n, d])
        feedForward.apply(normed, count: n, layer: layer, output: delta, context: context)
        context.tap("ffn_out", layer, delta, [n, d])
        Ops.add(delta, into: hidden, count: n * d)
    }
}

/// A SwiGLU MLP, `down(silu(gate·x) ⊙ up·x)`: the dense FFN of every architecture, each routed expert and
/// the shared experts of DeepSeekMoE.
struct FeedForward: FeedForwardBlock {
    var gate: WeightMatrix
    var up: WeightMatrix
    var down: WeightMatrix

    /// The MLP's inner width.
    var width: Int { gate.rows }

    /// Tokens per chunk of a prompt pass: the gate and up outputs (`2 × width` floats per token, dsv3-mini's
    /// dense layer 32 KiB) are the widest intermediates of a layer, and a 512-token pass of them would be
    /// most of its scratch memory. A chunk of this many tokens still fills the matrix kernels' tiles.
    static let chunkTokens = 256

    func apply(
        _ x: UnsafePointer<Float>, count: Int, layer: Int, output: UnsafeMutablePointer<Float>,
        context: ForwardContext
    ) {
        let arena = context.arena
        let mark = arena.mark
        defer { arena.rewind(to: mark) }
        let chunks = tokenChunks(count, atMost: Self.chunkTokens)
        let longest = chunks.map(\.count).max() ?? 0
        let gated = arena.floats(longest * width)  // [chunk, width]
        let upped = arena.floats(longest * width)  // [chunk, width]
        for chunk in chunks {
            let input = x + chunk.lowerBound * gate.columns
            // One parallel job, one quantization of x.
            context.linear([
                Linear.Product(gate, input: input, tokens: chunk.count, output: gated),
                Linear.Product(up, input: input, tokens: chunk.count, output: upped),
            ])
            Ops.swiGLU(gate: gated, up: upped, rows: chunk.count, n: width)
            context.linear(down, gated, tokens: chunk.count, into: output + chunk.lowerBound * down.rows)
        }
    }
}
