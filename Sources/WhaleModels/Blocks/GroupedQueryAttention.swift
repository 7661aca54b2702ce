import WhaleKernels

/// Causal grouped-query attention over each token's own sequence cache.
///
/// Token t (at position p in its sequence) attends to that sequence's cached positions 0...p; query head
/// h reads key/value head h / (heads / kvHeads). Scores are scaled by 1/√headDim and soft-maxed in f32.
///
/// With `.f16` precision this is llama.cpp's default attention (f16 K/V cache, no flash attention) on x86,
/// bit for bit: the cached keys/values are already half-precision values, the query and the attention
/// weights are rounded to half precision, and the two products sum in ggml's order — which depends on how
/// many tokens the sequence feeds in this pass, as llama.cpp's does: one token goes through
/// `ggml_vec_dot_f16` (`Half.dot`, four 8-lane accumulators over 32-element steps), two or more through
/// llamafile's tinyBLAS (`Half.tiledDot`, one 8-lane accumulator), which llama.cpp only uses for n ≥ 2.
/// The softmax is ggml's (`Ops.softmaxX86`) over the scores padded to a multiple of eight with −∞, as
/// llama.cpp's masked, padded cache rows are. (With several sequences in one llama.cpp batch its choice
/// follows the batch's total; BlueWhale's follows each sequence's own count, so a sequence's results do not
/// depend on what else is batched with it.)
///
/// Work is split into (head, block of 16 tokens) items so both threads stay busy in prompt processing as
/// well as in decoding.
enum GroupedQueryAttention {
    static let tokensPerItem = 16

    /// `passTokens[t]`: how many tokens token t's sequence feeds in this pass.
    static func run(
        queries: UnsafeMutablePointer<Float>, count: Int, positions: [Int], passTokens: [Int], caches: [KVCache],
        layer: Int, heads: Int, kvHeads: Int, headDim: Int, precision: AttentionPrecision,
        output: UnsafeMutablePointer<Float>, pool: ThreadPool
    ) {
        let group = heads / kvHeads
        let qWidth = heads * headDim
        let kvWidth = kvHeads * headDim
        let scale = 1 / Float(headDim).squareRoot()
        let longest = ((positions.max() ?? 0) + 1 + 7) & ~7
        let blocks = (count + tokensPerItem - 1) / tokensPerItem
        let items = heads * blocks
        pool.parallelFor(items) { item in
            let h = item % heads
            let block = item / heads
            let kvHead = h / group
            // Each work item has its own score row (items run on different threads).
            let row = UnsafeMutablePointer<Float>.allocate(capacity: longest)
            defer { row.deallocate() }
            var slots: UnsafeMutablePointer<Float>?
            defer { slots?.deallocate() }
            for t in (block * tokensPerItem)..<min(count, (block + 1) * tokensPerItem) {
                let q = queries + t * qWidth + h * headDim
                let keys = caches[t].keys[layer] + kvHead * headDim
                let values = caches[t].values[layer] + kvHead * headDim
                let length = positions[t] + 1
                let out = output + t * qWidth + h * headDim
                guard precision == .f16 else {
                    for j in 0..<length { row[j] = dot(q, keys + j * kvWidth, headDim) * scale }
                    Ops.softmax(row, count: length)
                    out.initialize(repeating: 0, count: headDim)
                    for j in 0..<length { accumulate(row[j], values + j * kvWidth, into: out, headDim) }
                    continue
                }
                roundToHalf(q, count: headDim)
                let tiled = passTokens[t] >= 2
                for j in 0..<length {
                    let k = keys + j * kvWidth
                    row[j] =
                        (tiled && headDim % 8 == 0 ? Half.tiledDot(k, q, headDim) : Half.dot(k, q, headDim)) * scale
                }
                let padded = (length + 7) & ~7
                for j in length..<padded { row[j] = -.infinity }
                Ops.softmaxX86(row, count: padded)
                roundToHalf(row, count: length)
                if slots == nil { slots = .allocate(capacity: Half.slotCount * headDim) }
                Half.weightedSum(
                    row, values, stride: kvWidth, length: length, headDim: headDim, tiled: tiled && headDim % 4 == 0,
                    slots: slots!, into: out)
            }
        }
    }

    /// ggml's f16 dot products on x86 (half-precision values held as Float; products and sums in float32).
    enum Half {
        /// `ggml_vec_dot_f16` (AVX2): four 8-lane accumulators over steps of 32, reduced as
        /// `GGML_F32x8_REDUCE` ((a₀+a₂) + (a₁+a₃), then the halves, then two horizontal adds); a tail
        /// past the last full step is added in Double.
        @inline(__always)
        static func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ n: Int) -> Float {
            let rx = UnsafeRawPointer(x)
            let ry = UnsafeRawPointer(y)
            var a0 = SIMD8<Float>()
            var a1 = SIMD8<Float>()
            var a2 = SIMD8<Float>()
            var a3 = SIMD8<Float>()
            let steps = n & ~31
            var i = 0
            while i < steps {
                @inline(__always) func load(_ r: UnsafeRawPointer, _ k: Int) -> SIMD8<Float> {
                    r.loadUnaligned(fromByteOffset: (i &+ 8 &* k) &* 4, as: SIMD8<Float>.self)
                }
                a0.addProduct(load(rx, 0), load(ry, 0))
                a1.addProduct(load(rx, 1), load(ry, 1))
                a2.addProduct(load(rx, 2), load(ry, 2))
                a3.addProduct(load(rx, 3), load(ry, 3))
                i &+= 32
            }
            let s = (a0 + a2) + (a1 + a3)
            let t = s.lowHalf + s.highHalf
            var total = Double((t[0] + t[1]) + (t[2] + t[3]))
            while i < n {
                total += Double(x[i] * y[i])
                i &+= 1
            }
            return Float(total)
        }

        /// tinyBLAS (llamafile's sgemm, 8-wide): one 8-lane accumulator, `hsum` at the end. n % 8 == 0.
        @inline(__always)
        static func tiledDot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ n: Int) -> Float {
            let rx = UnsafeRawPointer(x)
            let ry = UnsafeRawPointer(y)
            var acc = SIMD8<Float>()
            var i = 0
            while i < n {
                acc.addProduct(
                    rx.loadUnaligned(fromByteOffset: i &* 4, as: SIMD8<Float>.self),
                    ry.loadUnaligned(fromByteOffset: i &* 4, as: SIMD8<Float>.self))
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
            _ weights: UnsafePointer<Float>, _ values: UnsafePointer<Float>, stride: Int, length: Int, headDim: Int,
            tiled: Bool, slots: UnsafeMutablePointer<Float>, into out: UnsafeMutablePointer<Float>
        ) {
            let used = tiled ? 8 : slotCount
            slots.initialize(repeating: 0, count: used * headDim)
            for j in 0..<length {
                let slot = slots + (j % used) * headDim
                let w = weights[j]
                let v = values + j * stride
                var d = 0
                while d + 8 <= headDim {
                    let r = UnsafeMutableRawPointer(slot + d)
                    var acc = r.loadUnaligned(as: SIMD8<Float>.self)
                    acc.addProduct(UnsafeRawPointer(v + d).loadUnaligned(as: SIMD8<Float>.self), SIMD8(repeating: w))
                    r.storeBytes(of: acc, as: SIMD8<Float>.self)
                    d += 8
                }
                while d < headDim {
                    slot[d] = slot[d].addingProduct(v[d], w)
                    d += 1
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

    /// Σ a[i]·b[i] with 16-wide vectors and a scalar tail.
    @inline(__always)
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        let ra = UnsafeRawPointer(a)
        let rb = UnsafeRawPointer(b)
        var accumulator = SIMD16<Float>()
        var i = 0
        let vectorEnd = n & ~15
        while i < vectorEnd {
            accumulator.addProduct(
                ra.loadUnaligned(fromByteOffset: i &* 4, as: SIMD16<Float>.self),
                rb.loadUnaligned(fromByteOffset: i &* 4, as: SIMD16<Float>.self))
            i &+= 16
        }
        let half = accumulator.lowHalf + accumulator.highHalf
        let quarter = half.lowHalf + half.highHalf
        let pair = quarter.lowHalf + quarter.highHalf
        var total = pair[0] + pair[1]
        while i < n {
            total += a[i] * b[i]
            i &+= 1
        }
        return total
    }

    /// out[i] += w · v[i].
    @inline(__always)
    static func accumulate(_ w: Float, _ v: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, _ n: Int) {
        let rv = UnsafeRawPointer(v)
        let ro = UnsafeMutableRawPointer(out)
        let weight = SIMD16<Float>(repeating: w)
        var i = 0
        let vectorEnd = n & ~15
        while i < vectorEnd {
            var o = ro.loadUnaligned(fromByteOffset: i &* 4, as: SIMD16<Float>.self)
            o.addProduct(weight, rv.loadUnaligned(fromByteOffset: i &* 4, as: SIMD16<Float>.self))
            ro.storeBytes(of: o, toByteOffset: i &* 4, as: SIMD16<Float>.self)
            i &+= 16
        }
        while i < n {
            out[i] += w * v[i]
            i &+= 1
        }
    }
}

/// Rounds each value to the nearest half-precision value (kept as Float).
@inline(__always)
func roundToHalf(_ x: UnsafeMutablePointer<Float>, count: Int) {
    for i in 0..<count { x[i] = Float(Float16(x[i])) }
}
