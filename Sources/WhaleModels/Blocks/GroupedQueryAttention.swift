import WhaleKernels

/// Causal grouped-query attention over each token's own sequence cache.
///
/// Token t (at position p in its sequence) attends to that sequence's cached positions 0...p; query head
/// h reads key/value head h / (heads / kvHeads). Scores are scaled by 1/√headDim and soft-maxed in f32.
/// With `.f16` precision the cached keys/values are already half-precision values, and the query and the
/// attention weights are rounded to half precision before their products, as llama.cpp does.
///
/// Work is split into (head, block of 16 tokens) items so both threads stay busy in prompt processing as
/// well as in decoding.
enum GroupedQueryAttention {
    static let tokensPerItem = 16

    static func run(
        queries: UnsafeMutablePointer<Float>, count: Int, positions: [Int], caches: [KVCache], layer: Int, heads: Int,
        kvHeads: Int, headDim: Int, precision: AttentionPrecision, output: UnsafeMutablePointer<Float>,
        pool: ThreadPool
    ) {
        let group = heads / kvHeads
        let qWidth = heads * headDim
        let kvWidth = kvHeads * headDim
        let scale = 1 / Float(headDim).squareRoot()
        let longest = (positions.max() ?? 0) + 1
        let blocks = (count + tokensPerItem - 1) / tokensPerItem
        let items = heads * blocks
        // One score row per work item, so items can run on different threads.
        let scores = UnsafeMutablePointer<Float>.allocate(capacity: items * longest)
        defer { scores.deallocate() }
        pool.parallelFor(items) { item in
            let h = item % heads
            let block = item / heads
            let kvHead = h / group
            let row = scores + item * longest
            for t in (block * tokensPerItem)..<min(count, (block + 1) * tokensPerItem) {
                let q = queries + t * qWidth + h * headDim
                if precision == .f16 { roundToHalf(q, count: headDim) }
                let keys = caches[t].keys[layer] + kvHead * headDim
                let values = caches[t].values[layer] + kvHead * headDim
                let length = positions[t] + 1
                for j in 0..<length { row[j] = dot(q, keys + j * kvWidth, headDim) * scale }
                Ops.softmax(row, count: length)
                if precision == .f16 { roundToHalf(row, count: length) }
                let out = output + t * qWidth + h * headDim
                out.initialize(repeating: 0, count: headDim)
                for j in 0..<length { accumulate(row[j], values + j * kvWidth, into: out, headDim) }
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
