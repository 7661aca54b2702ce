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
}
