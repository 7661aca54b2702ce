/// How attention rounds what it reads: `f16` reproduces llama.cpp's default f16 K/V cache (keys, values,
/// the query and the attention weights rounded to half precision, as ggml's f16 matrix products do);
/// `f32` is transformers' float32 math; `q8_0` stores the cache as Q8_0 blocks (`Q8Rows`: half the bytes of
/// f16 again) and computes in float32 over the dequantized values (queries and weights are not rounded).
/// Absorbed MLA attention (`Attention.latent`) rounds only the cache rows, for every precision.
public enum AttentionPrecision: String, Sendable, CaseIterable {
    case f16
    case f32
    case q8_0
}

/// Causal attention kernels: each token of a pass attends to its own sequence's cached positions
/// `0..<length` (its own position included, already written to the cache).
///
/// Work is split into (head, block of 16 tokens) items so both threads stay busy in prompt processing as
/// well as in decoding; each thread reuses one score row (`rowCapacity` floats, taken from the arena).
public enum Attention {
    static let tokensPerItem = 16

    /// Where one token's sequence keeps this layer's cache rows, and how far the token may look. The rows
    /// hold floats for `.f32` attention, halves (`HalfRows`) for `.f16` and Q8_0 blocks (`Q8Rows`) for
    /// `.q8_0`.
    public struct TokenView {
        /// Row 0 of the keys (dense: `kvWidth` values per position; MLA: the latents).
        public var keys: UnsafeRawPointer
        /// Row 0 of the values (dense) or of the rope keys (MLA).
        public var values: UnsafeRawPointer
        /// Cached positions the token attends to: its position + 1.
        public var length: Int
        /// Tokens the token's sequence feeds in this pass (llama.cpp picks its f16 product by this).
        public var passTokens: Int

        public init(keys: UnsafeRawPointer, values: UnsafeRawPointer, length: Int, passTokens: Int) {
            self.keys = keys
            self.values = values
            self.length = length
            self.passTokens = passTokens
        }
    }

    /// Grouped-query attention of `count` tokens.
    ///
    /// `queries` `[T, heads, headDim]` (rounded to half in place with `.f16`), the cache rows `[length,
    /// kvHeads, headDim]`; query head h reads kv head h / (heads / kvHeads). Scores are scaled by 1/√headDim.
    /// `output` `[T, heads, headDim]`. With `weights`, the softmax row of (head h, token t) is also written to
    /// `weights[(h·count + t)·weightsStride + j]`.
    ///
    /// With `.f16` this is llama.cpp's default attention (f16 K/V cache, no flash attention) on x86, bit for
    /// bit: the cached keys/values are already half-precision values, the query and the attention weights
    /// are rounded to half precision, and the two products sum in ggml's order — which depends on how many
    /// tokens the sequence feeds in this pass, as llama.cpp's does: one token goes through `ggml_vec_dot_f16`
    /// (`Half.dot`, four 8-lane accumulators over 32-element steps), two or more through llamafile's
    /// tinyBLAS (`Half.tiledDot`, one 8-lane accumulator), which llama.cpp only uses for n ≥ 2. The softmax
    /// is ggml's (`Ops.softmaxX86`) over the scores padded to a multiple of eight with −∞, as llama.cpp's
    /// masked, padded cache rows are. (With several sequences in one llama.cpp batch its choice follows the
    /// batch's total; BlueWhale's follows each sequence's own count, so a sequence's results do not depend
    /// on what else is batched with it.) With `.f32` it is transformers' float32 attention.
    @inline(never)
    public static func groupedQuery(
        queries: UnsafeMutablePointer<Float>, tokens: UnsafePointer<TokenView>, count: Int, heads: Int,
        kvHeads: Int, headDim: Int, precision: AttentionPrecision, rowCapacity: Int,
        output: UnsafeMutablePointer<Float>, weights: UnsafeMutablePointer<Float>? = nil, weightsStride: Int = 0,
        pool: ThreadPool, arena: ScratchArena
    ) {
        let group = heads / kvHeads
        let qWidth = heads * headDim
        let kvWidth = kvHeads * headDim
        let scale = 1 / Float(headDim).squareRoot()
        let rowLength = (rowCapacity + 7) & ~7
        let perWorker = rowLength + Half.slotCount * headDim
        let mark = arena.mark
        defer { arena.rewind(to: mark) }
        let scratch = arena.floats(pool.threadCount * perWorker)
        let items = heads * ((count + tokensPerItem - 1) / tokensPerItem)
        pool.parallelFor(items) { item, worker in
            let h = item % heads
            let block = item / heads
            let kvHead = h / group
            let row = scratch + worker * perWorker
            let slots = row + rowLength
            for t in (block * tokensPerItem)..<min(count, (block + 1) * tokensPerItem) {
                let view = tokens[t]
                let q = queries + t * qWidth + h * headDim
                let length = view.length
                let out = output + t * qWidth + h * headDim
                defer { weights.map { ($0 + (h * count + t) * weightsStride).update(from: row, count: length) } }
                switch precision {
                case .f32:
                    floatRows(
                        FloatRows.self, q, view, kvHead: kvHead, kvWidth: kvWidth, headDim: headDim, scale: scale,
                        row: row, out: out)
                    continue
                case .q8_0:
                    floatRows(
                        Q8CacheRows.self, q, view, kvHead: kvHead, kvWidth: kvWidth, headDim: headDim, scale: scale,
                        row: row, out: out)
                    continue
                case .f16: break
                }
                let keys = view.keys + kvHead * headDim * 2
                let values = view.values + kvHead * headDim * 2
                Ops.roundToHalf(q, count: headDim)
                let tiled = view.passTokens >= 2
                for j in 0..<length {
                    let k = keys + j * kvWidth * 2
                    row[j] =
                        (tiled && headDim % 8 == 0 ? Half.tiledDot(k, q, headDim) : Half.dot(k, q, headDim)) * scale
                }
                let padded = (length + 7) & ~7
                for j in length..<padded { row[j] = -.infinity }
                Ops.softmaxX86(row, count: padded)
                Ops.roundToHalf(row, count: length)
                Half.weightedSum(
                    row, values, stride: kvWidth, length: length, headDim: headDim, tiled: tiled && headDim % 4 == 0,
                    slots: slots, into: out)
            }
        }
    }

    /// Multi-head latent attention in the absorbed form (docs/DEEPSEEK.md §3): scores and weighted sums
    /// over the cached latents themselves, never expanded into per-head keys and values.
    ///
    /// - `latentQueries` `[heads, T, rank]`: each head's no-rope query moved into latent space ((W_UK)ᵀ·q).
    /// - `ropeQueries`: token t's head h rope query (`ropeDim` floats, rotated) at
    ///   `ropeQueries + t·ropeQueryTokenStride + h·ropeQueryHeadStride`.
    /// - the cache rows: `tokens[t].keys` the latents `[length, rank]`, `tokens[t].values` the rope keys
    ///   `[length, ropeDim]`.
    /// - `output` `[heads, T, rank]`: Σ_j softmax(score)_j · latent_j.
    ///
    /// score(j) = (latentQuery·latent_j + ropeQuery·ropeKey_j) · softmaxScale. `precision` is the cache rows'
    /// storage only: the math is float32 for all three (nothing else rounded to half; exponentials by
    /// `Ops.exp8`), in one pass over the cache with a running softmax ([LATENT_ATTENTION_KERNEL]), so the
    /// order of the sums is the kernel's own; `weights`, when given, receives softmax(score) per head and token.
    @inline(never)
    public static func latent(
        latentQueries: UnsafeMutablePointer<Float>, ropeQueries: UnsafeMutablePointer<Float>,
        ropeQueryTokenStride: Int, ropeQueryHeadStride: Int, tokens: UnsafePointer<TokenView>, count: Int,
        heads: Int, rank: Int, ropeDim: Int, softmaxScale: Float, precision: AttentionPrecision, rowCapacity: Int,
        output: UnsafeMutablePointer<Float>, weights: UnsafeMutablePointer<Float>? = nil, weightsStride: Int = 0,
        pool: ThreadPool, arena: ScratchArena
    ) {
        let mark = arena.mark
        defer { arena.rewind(to: mark) }
        let kernel = LatentAttentionKernel(
            latentQueries: latentQueries, ropeQueries: ropeQueries, ropeQueryTokenStride: ropeQueryTokenStride,
            ropeQueryHeadStride: ropeQueryHeadStride, tokens: tokens, count: count, heads: heads, rank: rank,
            ropeDim: ropeDim, softmaxScale: softmaxScale, rowCapacity: rowCapacity, output: output,
            weights: weights, weightsStride: weightsStride)
        switch precision {
        case .f16: kernel.run(HalfCacheRows.self, pool: pool, arena: arena)
        case .f32: kernel.run(FloatRows.self, pool: pool, arena: arena)
        case .q8_0: kernel.run(Q8CacheRows.self, pool: pool, arena: arena)
        }
    }

    /// One head of one token over cache rows widened to floats (`.f32`: transformers' float32 attention;
    /// `.q8_0`: the same math over the dequantized rows): scores one dot product at a time, softmax, then
    /// the weighted sum of the values in position order.
    @inline(__always)
    static func floatRows<Row: CacheRowFormat>(
        _ format: Row.Type, _ q: UnsafePointer<Float>, _ view: TokenView, kvHead: Int, kvWidth: Int, headDim: Int,
        scale: Float, row: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>
    ) {
        let rowBytes = Row.rowBytes(kvWidth)
        let keys = view.keys + Row.rowBytes(kvHead &* headDim)
        let values = view.values + Row.rowBytes(kvHead &* headDim)
        for j in 0..<view.length { row[j] = Row.dot(q, keys + j &* rowBytes, headDim) * scale }
        Ops.softmax(row, count: view.length)
        out.initialize(repeating: 0, count: headDim)
        for j in 0..<view.length { Row.accumulate(row[j], values + j &* rowBytes, into: out, headDim) }
    }

    /// ggml's f16 dot products on x86 over half-precision cache rows (`HalfRows`; products and sums in float32).
    enum Half {
        /// `ggml_vec_dot_f16` (AVX2): four 8-lane accumulators over steps of 32, reduced as
        /// `GGML_F32x8_REDUCE` ((a₀+a₂) + (a₁+a₃), then the halves, then two horizontal adds); a tail
        /// past the last full step is added in Double.
        @inline(__always)
        static func dot(_ x: UnsafeRawPointer, _ y: UnsafePointer<Float>, _ n: Int) -> Float {
            let ry = UnsafeRawPointer(y)
            var a0 = SIMD8<Float>()
            var a1 = SIMD8<Float>()
            var a2 = SIMD8<Float>()
            var a3 = SIMD8<Float>()
            let steps = n & ~31
            var i = 0
            while i < steps {
                @inline(__always) func load(_ k: Int) -> SIMD8<Float> {
                    ry.loadUnaligned(fromByteOffset: (i &+ 8 &* k) &* 4, as: SIMD8<Float>.self)
                }
                @inline(__always) func half(_ k: Int) -> SIMD8<Float> { HalfRows.load8(x, i &+ 8 &* k) }
                a0.addProduct(half(0), load(0))
                a1.addProduct(half(1), load(1))
                a2.addProduct(half(2), load(2))
                a3.addProduct(half(3), load(3))
                i &+= 32
            }
            let s = (a0 + a2) + (a1 + a3)
            let t = s.lowHalf + s.highHalf
            var total = Double((t[0] + t[1]) + (t[2] + t[3]))
            while i < n {
                total += Double(HalfRows.load1(x, i) * y[i])
                i &+= 1
            }
            return Float(total)
        }

        /// tinyBLAS (llamafile's sgemm, 8-wide): one 8-lane accumulator, `hsum` at the end. n % 8 == 0.
        @inline(__always)
        static func tiledDot(_ x: UnsafeRawPointer, _ y: UnsafePointer<Float>, _ n: Int) -> Float {
            let ry = UnsafeRawPointer(y)
            var acc = SIMD8<Float>()
            var i = 0
            while i < n {
                acc.addProduct(HalfRows.load8(x, i), ry.loadUnaligned(fromByteOffset: i &* 4, as: SIMD8<Float>.self))
                i &+= 8
            }
            return Ops.horizontalSum(acc)
        }

        /// Accumulators per output value of `weightedSum`: ggml's 4 × 8 lanes.
        static let slotCount = 32

        /// out[d] = Σ_j weights[j] · values[j·stride + d] for j < length, summed as ggml's product of the
        /// transposed V cache with the weights: position j goes to lane j % 8 of accumulator (j / 8) % 4
        /// (`dot`) or of the single accumulator (`tiledDot`), done for all d at once. Positions past `length`
        /// have weight 0 in llama.cpp and leave every sum as it is.
        static func weightedSum(
            _ weights: UnsafePointer<Float>, _ values: UnsafeRawPointer, stride: Int, length: Int, headDim: Int,
            tiled: Bool, slots: UnsafeMutablePointer<Float>, into out: UnsafeMutablePointer<Float>
        ) {
            let used = tiled ? 8 : slotCount
            slots.initialize(repeating: 0, count: used * headDim)
            // Slot by slot, each slot's positions (j ≡ slot mod `used`) in increasing order: the same fused
            // multiply-adds in the same order as visiting every position in turn, with the sums in registers
            // instead of loaded and stored for each position.
            let rowBytes = stride &* 2
            for s in 0..<min(used, length) {
                let slot = UnsafeMutableRawPointer(slots + s &* headDim)
                var d = 0
                while d &+ 32 <= headDim {
                    var a0 = SIMD8<Float>()
                    var a1 = SIMD8<Float>()
                    var a2 = SIMD8<Float>()
                    var a3 = SIMD8<Float>()
                    var j = s
                    while j < length {
                        let w = SIMD8<Float>(repeating: weights[j])
                        let v = values + j &* rowBytes
                        a0.addProduct(HalfRows.load8(v, d), w)
                        a1.addProduct(HalfRows.load8(v, d &+ 8), w)
                        a2.addProduct(HalfRows.load8(v, d &+ 16), w)
                        a3.addProduct(HalfRows.load8(v, d &+ 24), w)
                        j &+= used
                    }
                    slot.storeBytes(of: a0, toByteOffset: d &* 4, as: SIMD8<Float>.self)
                    slot.storeBytes(of: a1, toByteOffset: (d &+ 8) &* 4, as: SIMD8<Float>.self)
                    slot.storeBytes(of: a2, toByteOffset: (d &+ 16) &* 4, as: SIMD8<Float>.self)
                    slot.storeBytes(of: a3, toByteOffset: (d &+ 24) &* 4, as: SIMD8<Float>.self)
                    d &+= 32
                }
                while d &+ 8 <= headDim {
                    var a = SIMD8<Float>()
                    var j = s
                    while j < length {
                        a.addProduct(HalfRows.load8(values + j &* rowBytes, d), SIMD8(repeating: weights[j]))
                        j &+= used
                    }
                    slot.storeBytes(of: a, toByteOffset: d &* 4, as: SIMD8<Float>.self)
                    d &+= 8
                }
                let scalars = slots + s &* headDim
                while d < headDim {
                    var a: Float = 0
                    var j = s
                    while j < length {
                        a = a.addingProduct(HalfRows.load1(values + j &* rowBytes, d), weights[j])
                        j &+= used
                    }
                    scalars[d] = a
                    d &+= 1
                }
            }
            for d in 0..<headDim {
                @inline(__always) func lane(_ l: Int) -> Float { slots[l * headDim + d] }
                if tiled {
                    out[d] = ((lane(4) + lane(0)) + (lane(6) + lane(2))) + ((lane(5) + lane(1)) + (lane(7) + lane(3)))
                } else {
                    // The four accumulators' lane l, combined as (a₀ + a₂) + (a₁ + a₃).
                    @inline(__always) func s(_ l: Int) -> Float {
                        (lane(l) + lane(16 + l)) + (lane(8 + l) + lane(24 + l))
                    }
                    out[d] = ((s(0) + s(4)) + (s(1) + s(5))) + ((s(2) + s(6)) + (s(3) + s(7)))
                }
            }
        }
    }
}

extension Ops {
    /// Rounds each value to the nearest half-precision value (kept as Float): what an f16 cache stores.
    public static func roundToHalf(_ x: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { x[i] = Float(Float16(x[i])) }
    }
}
