import WhaleKernels

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Causal grouped-query attention over each token's own sequence cache.
///
/// Token t (at position p in its sequence) attends to that sequence's cached positions 0...p; query head
/// h reads key/value head h / (heads / kvHeads). Scores are scaled by 1/√headDim and soft-maxed in f32.
/// With `.f16` precision the cached keys/values are already half-precision values, and the query and the
/// attention weights are rounded to half precision before their products, as llama.cpp does.
enum GroupedQueryAttention {
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
        // One score buffer per head, so heads can run on different threads.
        let scores = UnsafeMutablePointer<Float>.allocate(capacity: heads * longest)
        defer { scores.deallocate() }
        let queriesAddress = UnsafeMutablePointer(queries)
        let outputAddress = UnsafeMutablePointer(output)
        pool.parallelFor(heads) { h in
            let kvHead = h / group
            let row = scores + h * longest
            for t in 0..<count {
                let q = queriesAddress + t * qWidth + h * headDim
                if precision == .f16 { roundToHalf(q, count: headDim) }
                let keys = caches[t].keys[layer] + kvHead * headDim
                let values = caches[t].values[layer] + kvHead * headDim
                let length = positions[t] + 1
                for j in 0..<length {
                    let key = keys + j * kvWidth
                    var dot: Float = 0
                    for d in 0..<headDim { dot += q[d] * key[d] }
                    row[j] = dot * scale
                }
                Ops.softmax(row, count: length)
                if precision == .f16 { roundToHalf(row, count: length) }
                let out = outputAddress + t * qWidth + h * headDim
                for d in 0..<headDim { out[d] = 0 }
                for j in 0..<length {
                    let weight = row[j]
                    let value = values + j * kvWidth
                    for d in 0..<headDim { out[d] += weight * value[d] }
                }
            }
        }
    }
}

/// Rounds each value to the nearest half-precision value (kept as Float).
@inline(__always)
func roundToHalf(_ x: UnsafeMutablePointer<Float>, count: Int) {
    for i in 0..<count { x[i] = Float(Float16(x[i])) }
}
