import WhaleCore
import WhaleKernels

/// Which of the two equal forms of multi-head latent attention to compute.
public enum LatentAttentionForm: String, Sendable {
    /// Queries are moved into the latent space (W_UKᵀ·q) and W_UV is applied after the weighted sum, so each
    /// cached token costs `kv_lora_rank + rope dims` multiply-adds per head and is never expanded.
    case absorbed
    /// The reference's form: every cached latent is expanded into per-head keys and values first.
    case expanded
}

/// Multi-head latent attention (DeepSeek V2 / V3; docs/DEEPSEEK.md §3) of one layer.
///
///     q      = q_b(norm(q_a(x)))  or  q_proj(x)          [T, heads, dn + dr]: per head [q_nope, q_rope]
///     c, kʳ  = split(kv_a(x))                             [T, rank], [T, dr]: one rope key for all heads
///     cache ← norm(c), rope(kʳ)                          the only per-token state (KVCache .latent)
///     kᴴ_nope = W_UKᴴ·c,  vᴴ = W_UVᴴ·c                   (expanded form)
///     scoreᴴ(t, j) = (q_nopeᴴ·kᴴ_nope(j) + rope(q_ropeᴴ)·kʳ(j)) · scale
///                  = ((W_UKᴴ)ᵀ q_nopeᴴ)·c(j) + …          (absorbed form)
///     out = o_proj(concatᴴ W_UVᴴ Σ_j softmax(scoreᴴ)_j · c(j))
struct LatentAttention: AttentionBlock {
    /// Shapes and constants shared by every MLA layer of a model.
    struct Shape: Sendable {
        var heads: Int
        /// `qk_nope_head_dim` (dn), `qk_rope_head_dim` (dr), `v_head_dim` (dv), `kv_lora_rank`.
        var nopeDim: Int
        var ropeDim: Int
        var valueDim: Int
        var latentRank: Int
        /// Epsilon of q_a_layernorm / kv_a_layernorm (always 1e-6 in transformers).
        var latentNormEps: Float
        var rope: RotaryEmbedding
        /// 1/√(dn + dr), times YaRN's mscale² (docs/DEEPSEEK.md §5).
        var softmaxScale: Float
        var precision: AttentionPrecision
        var form: LatentAttentionForm

        var queryHeadDim: Int { nopeDim + ropeDim }
        var queryWidth: Int { heads * queryHeadDim }
    }

    /// `q_a_proj` `[qLoraRank, hidden]` and its norm, when the model has a query LoRA.
    var queryA: WeightMatrix?
    var queryANorm: [Float]?
    /// `q_b_proj` `[heads·(dn+dr), qLoraRank]`, or `q_proj` `[heads·(dn+dr), hidden]` without a query LoRA.
    var query: WeightMatrix
    /// `kv_a_proj_with_mqa`: `[rank + dr, hidden]`.
    var keyValueA: WeightMatrix
    var keyValueANorm: [Float]
    /// Per head `(W_UK)ᵀ`: `[rank, dn]` — maps a query's no-rope part into latent space.
    var keyUpTransposed: [WeightMatrix]
    /// Per head `W_UV`: `[dv, rank]`.
    var valueUp: [WeightMatrix]
    /// `o_proj`: `[hidden, heads·dv]`.
    var output: WeightMatrix
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
        let q = arena.floats(n * s.queryWidth)  // [T, heads, dn + dr]
        let kvWidth = s.latentRank + s.ropeDim
        let kv = arena.floats(n * kvWidth)  // [T, rank + dr]
        if let queryA, let queryANorm {
            let compressedMark = arena.mark
            defer { arena.rewind(to: compressedMark) }
            let compressed = arena.floats(n * queryA.rows)  // [T, qLoraRank]
            // Both down-projections of x as one parallel job.
            context.linear([
                Linear.Product(queryA, input: x, tokens: n, output: compressed),
                Linear.Product(keyValueA, input: x, tokens: n, output: kv),
            ])
            Ops.rmsNorm(
                compressed, weight: queryANorm, rows: n, n: queryA.rows, eps: s.latentNormEps, output: compressed)
            context.linear(query, compressed, tokens: n, into: q)
        } else {
            context.linear([
                Linear.Product(query, input: x, tokens: n, output: q),
                Linear.Product(keyValueA, input: x, tokens: n, output: kv),
            ])
        }
        context.tap("q", layer, q, [n, s.queryWidth])
        let views = arena.buffer(Attention.TokenView.self, count: n)  // [T]
        for t in 0..<n {
            let position = pass.positions[t]
            let latent = kv + t * kvWidth  // [rank], normalised in place
            let ropeKey = latent + s.latentRank  // [dr], rotated in place
            Ops.rmsNorm(latent, weight: keyValueANorm, rows: 1, n: s.latentRank, eps: s.latentNormEps, output: latent)
            s.rope.apply(ropeKey, heads: 1, headDim: s.ropeDim, position: position)
            s.rope.apply(q + t * s.queryWidth + s.nopeDim, heads: s.heads, headDim: s.queryHeadDim, position: position)
            let cache = pass.cache(t)
            views[t] = Attention.TokenView(
                keys: cache.rows(stream: KVCache.firstStream, layer: cacheLayer),
                values: cache.rows(stream: KVCache.secondStream, layer: cacheLayer), length: position + 1,
                passTokens: pass.passTokens(t))
        }
        // The taps show the values the layer computed; an f16 cache stores them rounded to half.
        tapCacheRows(kv, pass: pass, layer: layer, q: q, context: context)
        for t in 0..<n {
            let position = pass.positions[t]
            let cache = pass.cache(t)
            cache.store(kv + t * kvWidth, stream: KVCache.firstStream, layer: cacheLayer, position: position)
            cache.store(
                kv + t * kvWidth + s.latentRank, stream: KVCache.secondStream, layer: cacheLayer, position: position)
        }
        let attended = arena.floats(n * s.heads * s.valueDim)  // [T, heads, dv]
        switch s.form {
        case .absorbed:
            absorbed(q, pass: pass, views: views, layer: layer, into: attended, context: context)
        case .expanded:
            expanded(q, pass: pass, views: views, cacheLayer: cacheLayer, into: attended, context: context)
        }
        context.linear(output, attended, tokens: n, into: projected)
    }

    /// Tokens per chunk of the absorbed form in a prompt pass. Its per-head intermediates take
    /// `heads × (2·rank + dn + dv)` floats per token (dsv3-mini: 40 KiB, DeepSeek-V3: 640 KiB), the largest
    /// scratch of a pass; chunks bound them (and so a prompt's peak memory) while keeping every head of a
    /// token together and the per-head products batched. Tokens are independent, so chunking changes no sum.
    static let absorbedChunkTokens = 128

    /// The absorbed form: scores and weighted sums over the cached latents themselves, a chunk of tokens at a
    /// time (all of them when taps are on: the attention-weights tap is one `[heads, T, length]` array).
    private func absorbed(
        _ q: UnsafeMutablePointer<Float>, pass: ForwardPass, views: UnsafePointer<Attention.TokenView>, layer: Int,
        into attended: UnsafeMutablePointer<Float>, context: ForwardContext
    ) {
        let s = shape
        let n = pass.count
        let weights = context.taps == nil ? nil : context.arena.floats(s.heads * n * pass.longestContext)
        for chunk in tokenChunks(n, atMost: context.taps == nil ? Self.absorbedChunkTokens : n) {
            absorbed(
                q + chunk.lowerBound * s.queryWidth, count: chunk.count, pass: pass, views: views + chunk.lowerBound,
                weights: weights, into: attended + chunk.lowerBound * s.heads * s.valueDim, context: context)
        }
        if let weights { context.tapAttentionWeights(weights, heads: s.heads, pass: pass, layer: layer) }
    }

    /// The absorbed form for `n` consecutive tokens of the pass: `q` `[n, heads, dn + dr]`, `views` theirs,
    /// `attended` `[n, heads, dv]`; `weights` `[heads, n, length]` when taps are on (then `n` is the pass).
    private func absorbed(
        _ q: UnsafeMutablePointer<Float>, count n: Int, pass: ForwardPass, views: UnsafePointer<Attention.TokenView>,
        weights: UnsafeMutablePointer<Float>?, into attended: UnsafeMutablePointer<Float>, context: ForwardContext
    ) {
        let s = shape
        let rank = s.latentRank
        let arena = context.arena
        let mark = arena.mark
        defer { arena.rewind(to: mark) }
        // (W_UKᴴ)ᵀ·q_nopeᴴ for every head: the query in latent space.
        // Every head's product in one parallel job: each is small (rank × dn weights).
        let nope = arena.floats(s.heads * n * s.nopeDim)  // [heads, n, dn]: the no-rope queries
        let latentQueries = arena.floats(s.heads * n * rank)  // [heads, n, rank]
        for h in 0..<s.heads {
            for t in 0..<n {
                (nope + (h * n + t) * s.nopeDim).update(
                    from: q + t * s.queryWidth + h * s.queryHeadDim, count: s.nopeDim)
            }
        }
        context.linear(
            (0..<s.heads).map { h in
                Linear.Product(
                    keyUpTransposed[h], input: nope + h * n * s.nopeDim, tokens: n,
                    output: latentQueries + h * n * rank)
            })
        let latentOutputs = arena.floats(s.heads * n * rank)  // [heads, n, rank]: Σ_j weight_j · c(j)
        Attention.latent(
            latentQueries: latentQueries, ropeQueries: q + s.nopeDim, ropeQueryTokenStride: s.queryWidth,
            ropeQueryHeadStride: s.queryHeadDim, tokens: views, count: n, heads: s.heads, rank: rank,
            ropeDim: s.ropeDim,
            softmaxScale: s.softmaxScale, precision: s.precision, rowCapacity: pass.longestContext,
            output: latentOutputs, weights: weights, weightsStride: pass.longestContext, pool: context.pool,
            arena: arena)
        // W_UV per head, then heads side by side.
        let values = arena.floats(s.heads * n * s.valueDim)  // [heads, n, dv]
        context.linear(
            (0..<s.heads).map { h in
                Linear.Product(
                    valueUp[h], input: latentOutputs + h * n * rank, tokens: n, output: values + h * n * s.valueDim)
            })
        for h in 0..<s.heads {
            for t in 0..<n {
                (attended + (t * s.heads + h) * s.valueDim).update(
                    from: values + (h * n + t) * s.valueDim, count: s.valueDim)
            }
        }
    }

    /// The reference's form: expand every cached latent of each token's sequence into per-head keys and values
    /// (W_UK·c, W_UV·c) and attend over those, in plain float32 loops. Used to check the absorbed form; slow
    /// for long contexts.
    private func expanded(
        _ q: UnsafeMutablePointer<Float>, pass: ForwardPass, views: UnsafePointer<Attention.TokenView>,
        cacheLayer: Int, into attended: UnsafeMutablePointer<Float>, context: ForwardContext
    ) {
        let s = shape
        let rank = s.latentRank
        let arena = context.arena
        let mark = arena.mark
        defer { arena.rewind(to: mark) }
        let keyUp = arena.floats(s.heads * rank * s.nopeDim)  // [heads, rank, dn]: W_UKᵀ per head
        for h in 0..<s.heads {
            for c in 0..<rank { keyUpTransposed[h].dequantizeRow(c, into: keyUp + (h * rank + c) * s.nopeDim) }
        }
        let key = arena.floats(s.nopeDim)  // [dn]
        let value = arena.floats(s.valueDim)  // [dv]
        let scores = arena.floats(pass.longestContext)  // [length]
        let out = arena.floats(s.valueDim)  // [dv]
        let latents = arena.floats(pass.longestContext * rank)  // [length, rank]
        let ropeKeys = arena.floats(pass.longestContext * s.ropeDim)  // [length, dr]
        for t in 0..<pass.count {
            let length = views[t].length
            let cache = pass.cache(t)
            for j in 0..<length {
                cache.load(stream: KVCache.firstStream, layer: cacheLayer, position: j, into: latents + j * rank)
                cache.load(stream: KVCache.secondStream, layer: cacheLayer, position: j, into: ropeKeys + j * s.ropeDim)
            }
            for h in 0..<s.heads {
                let head = q + t * s.queryWidth + h * s.queryHeadDim
                for j in 0..<length {
                    for d in 0..<s.nopeDim { key[d] = 0 }
                    for c in 0..<rank {
                        let weight = keyUp + (h * rank + c) * s.nopeDim
                        for d in 0..<s.nopeDim { key[d] += latents[j * rank + c] * weight[d] }
                    }
                    var score: Float = 0
                    for d in 0..<s.nopeDim { score += head[d] * key[d] }
                    for d in 0..<s.ropeDim { score += head[s.nopeDim + d] * ropeKeys[j * s.ropeDim + d] }
                    scores[j] = score * s.softmaxScale
                }
                Ops.softmax(scores, count: length)
                for d in 0..<s.valueDim { out[d] = 0 }
                for j in 0..<length {
                    context.linear(valueUp[h], latents + j * rank, tokens: 1, into: value)
                    for d in 0..<s.valueDim { out[d] += scores[j] * value[d] }
                }
                (attended + (t * s.heads + h) * s.valueDim).update(from: out, count: s.valueDim)
            }
        }
    }

    /// Taps of what this pass wrote to the cache (`kv_latent`, `k_rope`) and the rotated query rope parts
    /// (`q_rope`), when taps are on.
    /// - Parameter kv: `[T, rank + dr]`: each token's normalised latent and rotated rope key.
    private func tapCacheRows(
        _ kv: UnsafePointer<Float>, pass: ForwardPass, layer: Int, q: UnsafePointer<Float>, context: ForwardContext
    ) {
        guard context.taps != nil else { return }
        let s = shape
        let n = pass.count
        let kvWidth = s.latentRank + s.ropeDim
        var latents = [Float](repeating: 0, count: n * s.latentRank)
        var ropeKeys = [Float](repeating: 0, count: n * s.ropeDim)
        var ropeQueries = [Float](repeating: 0, count: n * s.heads * s.ropeDim)
        for t in 0..<n {
            for i in 0..<s.latentRank { latents[t * s.latentRank + i] = kv[t * kvWidth + i] }
            for i in 0..<s.ropeDim { ropeKeys[t * s.ropeDim + i] = kv[t * kvWidth + s.latentRank + i] }
            for h in 0..<s.heads {
                for i in 0..<s.ropeDim {
                    ropeQueries[(t * s.heads + h) * s.ropeDim + i] =
                        q[t * s.queryWidth + h * s.queryHeadDim + s.nopeDim + i]
                }
            }
        }
        latents.withUnsafeBufferPointer { context.tap("kv_latent", layer, $0.baseAddress!, [n, s.latentRank]) }
        ropeKeys.withUnsafeBufferPointer { context.tap("k_rope", layer, $0.baseAddress!, [n, s.ropeDim]) }
        ropeQueries.withUnsafeBufferPointer { context.tap("q_rope", layer, $0.baseAddress!, [n, s.heads * s.ropeDim]) }
    }
}
