extension Ops {
    /// e^x for eight floats, computed as llama.cpp's x86 `ggml_v_expf` (AVX2 + FMA) does, bit for bit: its
    /// softmax and SiLU use it, and a 4-bit model turns last-bit differences there into visibly different
    /// logprobs (see [X86_BLOCK_DOT]). Within 1.5 ulp of the true value; 0 for −∞, ∞ past the float range.
    ///
    /// x = n·ln 2 + b with n rounded to an integer, e^b by a degree-5 polynomial, 2ⁿ built in the exponent
    /// bits — with a second path for |n| > 126, where 2ⁿ is split in two factors to reach subnormals and ∞.
    @inline(__always)
    public static func exp8(_ x: SIMD8<Float>) -> SIMD8<Float> {
        let shifter = SIMD8<Float>(repeating: 0x1.8p23)
        let z = shifter.addingProduct(x, SIMD8(repeating: 0x1.715476p+0))
        let n = z - shifter
        let b = x.addingProduct(-n, SIMD8(repeating: 0x1.62e4p-1)).addingProduct(-n, SIMD8(repeating: 0x1.7f7d1cp-20))
        let e = unsafeBitCast(z, to: SIMD8<UInt32>.self) &<< 23
        let k = unsafeBitCast(e &+ (1 as Float).bitPattern, to: SIMD8<Float>.self)
        let magnitude = unsafeBitCast(unsafeBitCast(n, to: SIMD8<UInt32>.self) & 0x7FFF_FFFF, to: SIMD8<Float>.self)
        let large = magnitude .> 126
        let u = b * b
        let inner = SIMD8<Float>(repeating: 0x1.573e2ep-5).addingProduct(SIMD8(repeating: 0x1.0e4020p-7), b)
        let j = SIMD8<Float>(repeating: 0x1.fffdb6p-2).addingProduct(SIMD8(repeating: 0x1.555e66p-3), b)
            .addingProduct(inner, u)
        let polynomial = (SIMD8<Float>(repeating: 0x1.ffffecp-1) * b).addingProduct(j, u)
        let regular = k.addingProduct(polynomial, k)
        if !any(large) { return regular }
        let g = SIMD8<UInt32>(repeating: 0).replacing(with: 0x8200_0000, where: n .<= 0)
        let s1 = unsafeBitCast(g &+ 0x7F00_0000, to: SIMD8<Float>.self)
        let s2 = unsafeBitCast(e &- g, to: SIMD8<Float>.self)
        var result = regular.replacing(with: s2.addingProduct(s2, polynomial) * s1, where: large)
        result.replace(with: s1 * s1, where: magnitude .> 192)
        return result
    }
}
