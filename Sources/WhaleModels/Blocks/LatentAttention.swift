import WhaleKernels

/// Which of the two equal forms of multi-head latent attention to compute.
public enum LatentAttentionForm: String, Sendable {
    /// Queries are moved into the latent space (W_UKᵀ·q) and W_UV is applied after the weighted sum, so each
    /// cached token costs `kv_lora_rank + rope dims` multiply-adds per head and is never expanded.
    case absorbed
    /// The reference's form: every cached latent is expanded into per-head keys and values first.
    case expanded
}

/// Multi-head latent attention (DeepSeek V2 / V3; deepseek-semantics.md §2) of one layer.
///
///     q      = q_b(norm(q_a(x)))  or  q_proj(x)          per head: [q_nope (dn), q_rope (dr)]
///     c, kʳ  = split(kv_a(x))                             c: kv_lora_rank, kʳ: dr, one head for all
///     cache ← norm(c), rope(kʳ)                          the only per-token state
///     kᴴ_nope = W_UKᴴ·c,  vᴴ = W_UVᴴ·c                   (expanded form)
///     scoreᴴ(t, j) = (q_nopeᴴ·kᴴ_nope(j) + rope(q_ropeᴴ)·kʳ(j)) · scale
///                  = ((W_UKᴴ)ᵀ q_nopeᴴ)·c(j) + …          (absorbed form)
///     out = o_proj(concatᴴ Σ_j softmax(scoreᴴ)_j · vᴴ(j))
struct LatentAttention {
    var queryA: WeightMatrix?
    var queryANorm: [Float]?
    /// `q_b_proj`, or `q_proj` without a query LoRA.
    var query: WeightMatrix
    /// `kv_a_proj_with_mqa`: `[kv_lora_rank + dr, hidden]`.
    var keyValueA: WeightMatrix
    var keyValueANorm: [Float]
    /// Per head `(W_UK)ᵀ`: `[kv_lora_rank, dn]` — maps a query's no-rope part into latent space.
    var keyUpTransposed: [WeightMatrix]
    /// Per head `W_UV`: `[dv, kv_lora_rank]`.
    var valueUp: [WeightMatrix]
    var output: WeightMatrix
}

/// Shapes and constants shared by every MLA layer of a model.
struct LatentAttentionShape: Sendable {
    var heads: Int
    var nopeDim: Int
    var ropeDim: Int
    var valueDim: Int
    var latentRank: Int
    /// Epsilon of q_a_layernorm / kv_a_layernorm (always 1e-6 in transformers).
    var latentNormEps: Float
    var rope: RotaryEmbedding
    var softmaxScale: Float
    var precision: AttentionPrecision
    var form: LatentAttentionForm

    var queryHeadDim: Int { nopeDim + ropeDim }
}

extension LatentAttention {
    /// Attention of `count` tokens (`input` normed hidden rows) into `output` (`count × hidden`); appends
    /// each token's latent and rope key to its sequence's cache layer `layer` at its position.
    func apply(
        _ input: UnsafeMutablePointer<Float>, count: Int, positions: [Int], caches: [KVCache], layer: Int,
        shape s: LatentAttentionShape, output: UnsafeMutablePointer<Float>, context: ForwardContext
    ) {
        let pool = context.pool
        let workspace = context.linear
        let qWidth = s.heads * s.queryHeadDim
        var scratch = Scratch()
        defer { scratch.release() }
        let q = scratch.floats(count * qWidth)
        if let queryA, let queryANorm {
            let compressed = scratch.floats(count * queryA.rows)
            Linear.apply(queryA, input: input, tokens: count, output: compressed, pool: pool, workspace: workspace)
            Ops.rmsNorm(
                compressed, weight: queryANorm, rows: count, n: queryA.rows, eps: s.latentNormEps, output: compressed)
            Linear.apply(query, input: compressed, tokens: count, output: q, pool: pool, workspace: workspace)
        } else {
            Linear.apply(query, input: input, tokens: count, output: q, pool: pool, workspace: workspace)
        }
        let kvWidth = s.latentRank + s.ropeDim
        let kv = scratch.floats(count * kvWidth)
        Linear.apply(keyValueA, input: input, tokens: count, output: kv, pool: pool, workspace: workspace)
        for t in 0..<count {
            let row = kv + t * kvWidth
            let latent = caches[t].keys[layer] + positions[t] * s.latentRank
            let ropeKey = caches[t].values[layer] + positions[t] * s.ropeDim
            Ops.rmsNorm(row, weight: keyValueANorm, rows: 1, n: s.latentRank, eps: s.latentNormEps, output: latent)
            ropeKey.update(from: row + s.latentRank, count: s.ropeDim)
            s.rope.apply(ropeKey, heads: 1, headDim: s.ropeDim, position: positions[t])
            s.rope.apply(q + t * qWidth + s.nopeDim, heads: s.heads, headDim: s.queryHeadDim, position: positions[t])
            if s.precision == .f16 {
                roundToHalf(latent, count: s.latentRank)
                roundToHalf(ropeKey, count: s.ropeDim)
            }
        }
        let attended = scratch.floats(count * s.heads * s.valueDim)
        switch s.form {
        case .absorbed:
            absorbed(
                q, count: count, positions: positions, caches: caches, layer: layer, shape: s, into: attended,
                context: context)
        case .expanded:
            expanded(
                q, count: count, positions: positions, caches: caches, layer: layer, shape: s, into: attended,
                context: context)
        }
        Linear.apply(self.output, input: attended, tokens: count, output: output, pool: pool, workspace: workspace)
    }

    /// The absorbed form: scores and weighted sums over the cached latents themselves.
    private func absorbed(
        _ q: UnsafeMutablePointer<Float>, count: Int, positions: [Int], caches: [KVCache], layer: Int,
        shape s: LatentAttentionShape, into attended: UnsafeMutablePointer<Float>, context: ForwardContext
    ) {
        let qWidth = s.heads * s.queryHeadDim
        let rank = s.latentRank
        var scratch = Scratch()
        defer { scratch.release() }
        // Per head, the no-rope query parts of every token (contiguous), then (W_UK)ᵀ·q_nope: [heads][count, rank].
        let nope = scratch.floats(count * s.nopeDim)
        let latentQueries = scratch.floats(s.heads * count * rank)
        for h in 0..<s.heads {
            for t in 0..<count {
                (nope + t * s.nopeDim).update(from: q + t * qWidth + h * s.queryHeadDim, count: s.nopeDim)
            }
            Linear.apply(
                keyUpTransposed[h], input: nope, tokens: count, output: latentQueries + h * count * rank,
                pool: context.pool, workspace: context.linear)
        }
        // Weighted sums of latents, per head: [heads][count, rank].
        let latentOutputs = scratch.floats(s.heads * count * rank)
        let longest = (positions.max() ?? 0) + 1
        let blocks = (count + GroupedQueryAttention.tokensPerItem - 1) / GroupedQueryAttention.tokensPerItem
        let items = s.heads * blocks
        let scores = scratch.floats(items * longest)
        context.pool.parallelFor(items) { item in
            let h = item % s.heads
            let block = item / s.heads
            let row = scores + item * longest
            let first = block * GroupedQueryAttention.tokensPerItem
            for t in first..<min(count, first + GroupedQueryAttention.tokensPerItem) {
                let latentQuery = latentQueries + (h * count + t) * rank
                let ropeQuery = q + t * qWidth + h * s.queryHeadDim + s.nopeDim
                if s.precision == .f16 {
                    roundToHalf(latentQuery, count: rank)
                    roundToHalf(ropeQuery, count: s.ropeDim)
                }
                let latents = caches[t].keys[layer]
                let ropeKeys = caches[t].values[layer]
                let length = positions[t] + 1
                for j in 0..<length {
                    let score =
                        GroupedQueryAttention.dot(latentQuery, latents + j * rank, rank)
                        + GroupedQueryAttention.dot(ropeQuery, ropeKeys + j * s.ropeDim, s.ropeDim)
                    row[j] = score * s.softmaxScale
                }
                Ops.softmax(row, count: length)
                if s.precision == .f16 { roundToHalf(row, count: length) }
                let out = latentOutputs + (h * count + t) * rank
                out.initialize(repeating: 0, count: rank)
                for j in 0..<length { GroupedQueryAttention.accumulate(row[j], latents + j * rank, into: out, rank) }
            }
        }
        // W_UV per head, then heads side by side.
        let values = scratch.floats(count * s.valueDim)
        for h in 0..<s.heads {
            Linear.apply(
                valueUp[h], input: latentOutputs + h * count * rank, tokens: count, output: values,
                pool: context.pool, workspace: context.linear)
            for t in 0..<count {
                (attended + (t * s.heads + h) * s.valueDim).update(from: values + t * s.valueDim, count: s.valueDim)
            }
        }
    }

    /// The reference's form: expand every cached latent of each token's sequence into per-head keys and values
    /// (W_UK·c, W_UV·c) and attend over those. Used to check the absorbed form; slow for long contexts.
    private func expanded(
        _ q: UnsafeMutablePointer<Float>, count: Int, positions: [Int], caches: [KVCache], layer: Int,
        shape s: LatentAttentionShape, into attended: UnsafeMutablePointer<Float>, context: ForwardContext
    ) {
        let qWidth = s.heads * s.queryHeadDim
        let rank = s.latentRank
        var scratch = Scratch()
        defer { scratch.release() }
        // W_UK per head as [rank, dn] floats (rows of keyUpTransposed).
        let keyUp = scratch.floats(s.heads * rank * s.nopeDim)
        for h in 0..<s.heads {
            for c in 0..<rank { keyUpTransposed[h].dequantizeRow(c, into: keyUp + (h * rank + c) * s.nopeDim) }
        }
        let key = scratch.floats(s.nopeDim)
        let value = scratch.floats(s.valueDim)
        let scores = scratch.floats((positions.max() ?? 0) + 1)
        let out = scratch.floats(s.valueDim)
        for t in 0..<count {
            let latents = caches[t].keys[layer]
            let ropeKeys = caches[t].values[layer]
            let length = positions[t] + 1
            for h in 0..<s.heads {
                let head = q + t * qWidth + h * s.queryHeadDim
                for j in 0..<length {
                    key.initialize(repeating: 0, count: s.nopeDim)
                    for c in 0..<rank {
                        GroupedQueryAttention.accumulate(
                            latents[j * rank + c], keyUp + (h * rank + c) * s.nopeDim, into: key, s.nopeDim)
                    }
                    let score =
                        GroupedQueryAttention.dot(head, key, s.nopeDim)
                        + GroupedQueryAttention.dot(head + s.nopeDim, ropeKeys + j * s.ropeDim, s.ropeDim)
                    scores[j] = score * s.softmaxScale
                }
                Ops.softmax(scores, count: length)
                out.initialize(repeating: 0, count: s.valueDim)
                for j in 0..<length {
                    Linear.apply(
                        valueUp[h], input: latents + j * rank, tokens: 1, output: value, pool: context.pool,
                        workspace: context.linear)
                    GroupedQueryAttention.accumulate(scores[j], value, into: out, s.valueDim)
                }
                (attended + (t * s.heads + h) * s.valueDim).update(from: out, count: s.valueDim)
            }
        }
    }
}
