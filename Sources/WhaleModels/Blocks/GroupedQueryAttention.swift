import WhaleKernels

/// Causal grouped-query attention with RoPE (Llama, Qwen2), over each token's own sequence cache:
///
///     q, k, v = x·Wqᵀ (+bq), x·Wkᵀ (+bk), x·Wvᵀ (+bv)     // [T, heads·hd], [T, kvHeads·hd] ×2
///     rope(q, k) at each token's position; k, v → the sequence's cache
///     out = (softmax(q·kᵀ / √hd, causal) · v) · Woᵀ        // query head h reads kv head h / (heads / kvHeads)
///
/// The attention itself is `Attention.groupedQuery` (WhaleKernels), which also holds the rules for
/// reproducing llama.cpp's f16 cache rounding.
struct GroupedQueryAttention: AttentionBlock {
    struct Shape: Sendable {
        var heads: Int
        var kvHeads: Int
        var headDim: Int
        var rope: RotaryEmbedding
        var precision: AttentionPrecision

        var queryWidth: Int { heads * headDim }
        var keyWidth: Int { kvHeads * headDim }
    }

    var query: WeightMatrix
    var key: WeightMatrix
    var value: WeightMatrix
    var output: WeightMatrix
    var queryBias: [Float]?
    var keyBias: [Float]?
    var valueBias: [Float]?
    var shape: Shape

    func apply(
        _ x: UnsafePointer<Float>, pass: ForwardPass, cacheLayer: Int, layer: Int,
        output projected: UnsafeMutablePointer<Float>, context: ForwardContext
    ) {
        let s = shape
        let n = pass.count
        let arena = context.arena
        let mark = arena.mark
        defer { arena.rewind(to: mark) }
        let q = arena.floats(n * s.queryWidth)  // [T, heads, headDim]
        let k = arena.floats(n * s.keyWidth)  // [T, kvHeads, headDim]
        let v = arena.floats(n * s.keyWidth)  // [T, kvHeads, headDim]
        context.linear(query, x, tokens: n, into: q)
        context.linear(key, x, tokens: n, into: k)
        context.linear(value, x, tokens: n, into: v)
        if let queryBias { Ops.addBias(queryBias, to: q, rows: n, n: s.queryWidth) }
        if let keyBias { Ops.addBias(keyBias, to: k, rows: n, n: s.keyWidth) }
        if let valueBias { Ops.addBias(valueBias, to: v, rows: n, n: s.keyWidth) }
        let views = arena.buffer(Attention.TokenView.self, count: n)  // [T]
        for t in 0..<n {
            let position = pass.positions[t]
            let kt = k + t * s.keyWidth
            let vt = v + t * s.keyWidth
            s.rope.apply(q + t * s.queryWidth, heads: s.heads, headDim: s.headDim, position: position)
            s.rope.apply(kt, heads: s.kvHeads, headDim: s.headDim, position: position)
            if s.precision == .f16 {
                // What the half cache holds; the taps below show it.
                Ops.roundToHalf(kt, count: s.keyWidth)
                Ops.roundToHalf(vt, count: s.keyWidth)
            }
            let cache = pass.cache(t)
            cache.store(kt, stream: KVCache.firstStream, layer: cacheLayer, position: position)
            cache.store(vt, stream: KVCache.secondStream, layer: cacheLayer, position: position)
            views[t] = Attention.TokenView(
                keys: cache.rows(stream: KVCache.firstStream, layer: cacheLayer),
                values: cache.rows(stream: KVCache.secondStream, layer: cacheLayer), length: position + 1,
                passTokens: pass.passTokens(t))
        }
        context.tap("q", layer, q, [n, s.queryWidth])
        context.tap("k", layer, k, [n, s.keyWidth])
        context.tap("v", layer, v, [n, s.keyWidth])
        let attended = arena.floats(n * s.queryWidth)  // [T, heads, headDim]
        let weights = context.taps == nil ? nil : arena.floats(s.heads * n * pass.longestContext)
        Attention.groupedQuery(
            queries: q, tokens: views, count: n, heads: s.heads, kvHeads: s.kvHeads, headDim: s.headDim,
            precision: s.precision, rowCapacity: pass.longestContext, output: attended, weights: weights,
            weightsStride: pass.longestContext, pool: context.pool, arena: arena)
        if let weights { context.tapAttentionWeights(weights, heads: s.heads, pass: pass, layer: layer) }
        context.linear(output, attended, tokens: n, into: projected)
    }
}

extension ForwardContext {
    /// Tap `attn_weights` `[heads, T, T]` from rows of `pass.longestContext`: the softmax weights of each
    /// token over the pass's positions (zero where masked). Meaningful for a one-sequence pass from an empty
    /// cache — what `whale score --dump-taps` runs.
    func tapAttentionWeights(_ rows: UnsafePointer<Float>, heads: Int, pass: ForwardPass, layer: Int) {
        guard taps != nil else { return }
        let n = pass.count
        let stride = pass.longestContext
        var square = [Float](repeating: 0, count: heads * n * n)
        for h in 0..<heads {
            for t in 0..<n {
                let length = min(pass.positions[t] + 1, n)
                for j in 0..<length { square[(h * n + t) * n + j] = rows[(h * n + t) * stride + j] }
            }
        }
        square.withUnsafeBufferPointer { tap("attn_weights", layer, $0.baseAddress!, [heads, n, n]) }
    }
}
