import WhaleCPUFeatures

#if arch(x86_64)
    import _Builtin_intrinsics.intel
#endif

/// Sums of unsigned × signed byte products, four at a time, into 32-bit lanes — one instruction where the
/// target has it (`vpdpbusd`, AVX-512 VNNI).
///
/// Portable SIMD cannot reach that instruction: LLVM forms it only from byte-to-int32 widenings, and the
/// standard library's generic conversions do not become those ([PURE_SIMD_OPS]). So on x86-64 this calls
/// the clang intrinsic, and whether it exists is a compile-time constant of the build's target CPU
/// (WhaleCPUFeatures): kernels branch on `isAvailable`, and the optimizer keeps only the path the target
/// has. Everywhere else (another CPU, arm64) the kernels use their portable 16-bit code — and so do debug
/// builds: they have no target CPU, and without optimization LLVM cannot compile the intrinsic's
/// 512-bit code for a CPU that lacks it, even on a path that never runs.
enum ByteDotProduct {
    /// Whether the build's target CPU has the instruction (constant-folded).
    @inline(__always) static var isAvailable: Bool {
        #if arch(x86_64) && !DEBUG
            WHALE_X86_AVX512_VNNI != 0
        #else
            false
        #endif
    }

    /// `sums` plus, in lane i, Σ_{k<4} `unsigned[4i + k]` · `signed[4i + k]` (exact: |Σ| < 2¹⁷ per call),
    /// the 64 bytes of each operand packed four to a 32-bit lane (little-endian). Kernels do their byte
    /// arithmetic on 32-bit lanes: on `SIMD64<UInt8>` (and `SIMD32<UInt16>`) shifts compile to scalar code.
    /// Only for `isAvailable` targets.
    @inline(__always)
    static func accumulate(_ sums: SIMD16<Int32>, _ unsigned: SIMD16<UInt32>, _ signed: SIMD16<UInt32>)
        -> SIMD16<Int32>
    {
        #if arch(x86_64) && !DEBUG
            // A constant: on targets without VNNI the optimizer removes the intrinsic before code generation.
            if WHALE_X86_AVX512_VNNI != 0 {
                let result = _mm512_dpbusd_epi32(
                    unsafeBitCast(sums, to: __m512i.self), unsafeBitCast(unsigned, to: __m512i.self),
                    unsafeBitCast(signed, to: __m512i.self))
                return unsafeBitCast(result, to: SIMD16<Int32>.self)
            }
        #endif
        preconditionFailure("ByteDotProduct.accumulate on a target without byte dot products")
    }

    /// In 16-bit lane i, `unsigned[2i]` · `signed[2i]` + `unsigned[2i + 1]` · `signed[2i + 1]` (`vpmaddubsw`;
    /// it saturates at ±2¹⁵, which products of 4-bit codes and int8 values never reach). Packing as in
    /// `accumulate`; only for `isAvailable` targets.
    @inline(__always)
    static func pairSums(_ unsigned: SIMD16<UInt32>, _ signed: SIMD16<UInt32>) -> SIMD16<UInt32> {
        #if arch(x86_64) && !DEBUG
            if WHALE_X86_AVX512_VNNI != 0 {
                let result = _mm512_maddubs_epi16(
                    unsafeBitCast(unsigned, to: __m512i.self), unsafeBitCast(signed, to: __m512i.self))
                return unsafeBitCast(result, to: SIMD16<UInt32>.self)
            }
        #endif
        preconditionFailure("ByteDotProduct.pairSums on a target without byte dot products")
    }

    /// `sums` plus, in lane i, the products of the two signed 16-bit halves of `pairs[i]` and `factors[i]`,
    /// added (`vpdpwssd`). Only for `isAvailable` targets.
    @inline(__always)
    static func accumulatePairs(_ sums: SIMD16<Int32>, _ pairs: SIMD16<UInt32>, _ factors: SIMD16<UInt32>)
        -> SIMD16<Int32>
    {
        #if arch(x86_64) && !DEBUG
            if WHALE_X86_AVX512_VNNI != 0 {
                let result = _mm512_dpwssd_epi32(
                    unsafeBitCast(sums, to: __m512i.self), unsafeBitCast(pairs, to: __m512i.self),
                    unsafeBitCast(factors, to: __m512i.self))
                return unsafeBitCast(result, to: SIMD16<Int32>.self)
            }
        #endif
        preconditionFailure("ByteDotProduct.accumulatePairs on a target without byte dot products")
    }
}

// Shared by the byte kernels.
extension ByteDotProduct {
    /// Sixteen float16 values (bit patterns) as floats (`vcvtph2ps`). Only for `isAvailable` targets.
    @inline(__always)
    static func halfToFloat(_ halves: SIMD16<UInt16>) -> SIMD16<Float> {
        #if arch(x86_64) && !DEBUG
            if WHALE_X86_AVX512_VNNI != 0 {
                return unsafeBitCast(_mm512_cvtph_ps(unsafeBitCast(halves, to: __m256i.self)), to: SIMD16<Float>.self)
            }
        #endif
        preconditionFailure("ByteDotProduct.halfToFloat on a target without byte dot products")
    }

    /// Int32 → Float, rounded to nearest (`vcvtdq2ps`). Only for `isAvailable` targets.
    @inline(__always)
    static func toFloat(_ v: SIMD16<Int32>) -> SIMD16<Float> {
        #if arch(x86_64) && !DEBUG
            if WHALE_X86_AVX512_VNNI != 0 {
                return unsafeBitCast(_mm512_cvtepi32_ps(unsafeBitCast(v, to: __m512i.self)), to: SIMD16<Float>.self)
            }
        #endif
        preconditionFailure("ByteDotProduct.toFloat on a target without byte dot products")
    }

    /// Int32 → Float, exact for |v| < 2²²: adding 2²³ + 2²² puts v in the mantissa of a float.
    @inline(__always)
    static func exactFloat(_ v: SIMD16<Int32>) -> SIMD16<Float> {
        unsafeBitCast(v &+ 0x4B40_0000, to: SIMD16<Float>.self) - SIMD16(repeating: 12_582_912)
    }
}

extension LinearJob {
    /// Rows `rows` for every token, four tokens per pass over a row while four remain, then one at a time;
    /// `row(weights, token, count)` returns the first `count` lanes. The constant counts let each inlined
    /// copy of `row` drop its per-token branches.
    @inline(__always)
    func tokenTiles(_ rows: Range<Int>, _ row: (UnsafeRawPointer, Int, Int) -> SIMD4<Float>) {
        var t = 0
        while tokens &- t >= 4 {
            for r in rows {
                let sums = row(weights + r &* rowBytes, t, 4)
                for k in 0..<4 { output[(t &+ k) &* self.rows &+ r] = sums[k] }
            }
            t &+= 4
        }
        while t < tokens {
            for r in rows { output[t &* self.rows &+ r] = row(weights + r &* rowBytes, t, 1)[0] }
            t &+= 1
        }
    }
}
