/// Loops shared by kernels in this module. The dot products and weighted sums over cache rows of every
/// format are `CacheRowFormat.dot` / `.accumulate` (Attention/CacheRows.swift).
enum Vector {
    /// Σ a[i]·b[i] with 16-wide vectors (one accumulator, reduced as a halving tree) and a scalar tail:
    /// `CacheRowFormat.dot` over a float row.
    @inline(__always)
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        FloatRows.dot(a, UnsafeRawPointer(b), n)
    }

    /// The 16 lanes summed as a halving tree (the order `dot` states).
    @inline(__always)
    static func halvingSum(_ accumulator: SIMD16<Float>) -> Float {
        let half = accumulator.lowHalf + accumulator.highHalf
        let quarter = half.lowHalf + half.highHalf
        let pair = quarter.lowHalf + quarter.highHalf
        return pair[0] + pair[1]
    }
}
