// F32, F16 and BF16 weights times float32 activations, with float32 sums (transformers' math).
//
// [PURE_SIMD_OPS] F16 and BF16 are widened without the standard library's generic conversions (left as
// calls inside the loop with `-target-cpu haswell`): 16 stored elements are read as eight 32-bit lanes and
// split into the even and the odd elements, as floats, with shifts and masks (exact for every value); the
// activations are de-interleaved to match (`LinearWorkspace.deinterleave`). Each weight vector is converted
// once and multiplied with up to four tokens; several accumulators hide the FMA latency. Only the
// summation order differs from `Linear.reference` (left to right): about 1e-6 relative.

/// How one float weight type turns 16 stored elements into float32.
protocol FloatWeightFormat {
    static var elementBytes: Int { get }
    /// Elements 0, 2, …, 14 and 1, 3, …, 15 of the 16 at `p` (F16, BF16), or elements 0–7 and 8–15 (F32).
    static func load16(_ p: UnsafeRawPointer) -> (SIMD8<Float>, SIMD8<Float>)
    static func load1(_ p: UnsafeRawPointer) -> Float
    /// Whether `load16` splits even and odd elements (so the activations must be de-interleaved).
    static var interleaved: Bool { get }
}

enum F32Weights: FloatWeightFormat {
    static var elementBytes: Int { 4 }
    static var interleaved: Bool { false }
    @inline(__always) static func load16(_ p: UnsafeRawPointer) -> (SIMD8<Float>, SIMD8<Float>) {
        (p.loadUnaligned(as: SIMD8<Float>.self), p.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self))
    }
    @inline(__always) static func load1(_ p: UnsafeRawPointer) -> Float { p.loadUnaligned(as: Float.self) }
}

/// IEEE half precision, widened exactly (subnormals, ±0, infinities and NaN included) with integer and
/// one float multiply per vector, as in ryg's `half_to_float_SSE2`.
enum F16Weights: FloatWeightFormat {
    static var elementBytes: Int { 2 }
    static var interleaved: Bool { true }
    @inline(__always) static func load16(_ p: UnsafeRawPointer) -> (SIMD8<Float>, SIMD8<Float>) {
        let v = p.loadUnaligned(as: SIMD8<Int32>.self)
        return (widen(v & 0xFFFF), widen(v &>> 16 & 0xFFFF))
    }
    /// Half-precision bits (in the low 16 bits of each lane) → float.
    @inline(__always) static func widen(_ h: SIMD8<Int32>) -> SIMD8<Float> {
        let magnitude: SIMD8<Int32> = h & 0x7FFF
        // Exponent and mantissa in float position; × 2^112 rebiases the exponent and normalizes subnormals.
        let shifted: SIMD8<Int32> = magnitude &<< 13
        let scaled: SIMD8<Float> = unsafeBitCast(shifted, to: SIMD8<Float>.self) * SIMD8<Float>(repeating: 0x1p112)
        // Infinity / NaN (magnitude > 0x7BFF): force the float exponent to all ones.
        let infinityOrNaN: SIMD8<Int32> = ((0x7BFF &- magnitude) &>> 31) & 0x7F80_0000
        let sign: SIMD8<Int32> = (h & 0x8000) &<< 16
        let bits: SIMD8<Int32> = unsafeBitCast(scaled, to: SIMD8<Int32>.self) | infinityOrNaN | sign
        return unsafeBitCast(bits, to: SIMD8<Float>.self)
    }
    @inline(__always) static func load1(_ p: UnsafeRawPointer) -> Float {
        widen(SIMD8(repeating: Int32(p.loadUnaligned(as: UInt16.self))))[0]
    }
}

/// BF16 is the high half of a float32.
enum BF16Weights: FloatWeightFormat {
    static var elementBytes: Int { 2 }
    static var interleaved: Bool { true }
    @inline(__always) static func load16(_ p: UnsafeRawPointer) -> (SIMD8<Float>, SIMD8<Float>) {
        let v = p.loadUnaligned(as: SIMD8<UInt32>.self)
        return (unsafeBitCast(v &<< 16, to: SIMD8<Float>.self), unsafeBitCast(v & 0xFFFF_0000, to: SIMD8<Float>.self))
    }
    @inline(__always) static func load1(_ p: UnsafeRawPointer) -> Float {
        Float(bitPattern: UInt32(p.loadUnaligned(as: UInt16.self)) &<< 16)
    }
}

enum FloatKernels {
    /// `x` is the input as given (F32) or as `LinearWorkspace.deinterleave` arranged it (F16, BF16).
    static func rows(_ job: LinearJob, input x: UnsafePointer<Float>, rows: Range<Int>) {
        switch job.type {
        case .f32: f32(job, x, rows)
        case .f16: f16(job, x, rows)
        case .bf16: bf16(job, x, rows)
        default: preconditionFailure(Linear.unsupportedMessage(job.type))
        }
    }

    @inline(never) static func f32(_ job: LinearJob, _ x: UnsafePointer<Float>, _ rows: Range<Int>) {
        run(F32Weights.self, job, x, rows)
    }
    @inline(never) static func f16(_ job: LinearJob, _ x: UnsafePointer<Float>, _ rows: Range<Int>) {
        run(F16Weights.self, job, x, rows)
    }
    @inline(never) static func bf16(_ job: LinearJob, _ x: UnsafePointer<Float>, _ rows: Range<Int>) {
        run(BF16Weights.self, job, x, rows)
    }

    @inline(__always)
    static func run<F: FloatWeightFormat>(
        _ format: F.Type, _ job: LinearJob, _ x: UnsafePointer<Float>, _ rows: Range<Int>
    ) {
        var t = 0
        while job.tokens &- t >= 4 {
            for r in rows {
                let sums = row4(format, job.weights + r &* job.rowBytes, columns: job.columns, x + t &* job.columns)
                for k in 0..<4 { job.output[(t &+ k) &* job.rows &+ r] = sums[k] }
            }
            t &+= 4
        }
        let prefetching = StreamPrefetch.isEnabled
        while t < job.tokens {
            for r in rows {
                let w = job.weights + r &* job.rowBytes
                // A token's first pass over the rows streams them ([STREAM_PREFETCH]).
                if t == 0 && prefetching { StreamPrefetch.ahead(of: w, bytes: job.rowBytes) }
                job.output[t &* job.rows &+ r] = row1(format, w, columns: job.columns, x + t &* job.columns)
            }
            t &+= 1
        }
    }

    /// One row, one token: four accumulators of eight lanes.
    @inline(__always)
    static func row1<F: FloatWeightFormat>(
        _ format: F.Type, _ w: UnsafeRawPointer, columns: Int, _ x: UnsafePointer<Float>
    ) -> Float {
        let xr = UnsafeRawPointer(x)
        let size = F.elementBytes
        var a0 = SIMD8<Float>()
        var a1 = SIMD8<Float>()
        var a2 = SIMD8<Float>()
        var a3 = SIMD8<Float>()
        let n32 = columns & ~31
        var c = 0
        while c < n32 {
            let (v0, v1) = F.load16(w + c &* size)
            let (v2, v3) = F.load16(w + (c &+ 16) &* size)
            a0.addProduct(v0, xr.loadUnaligned(fromByteOffset: c &* 4, as: SIMD8<Float>.self))
            a1.addProduct(v1, xr.loadUnaligned(fromByteOffset: c &* 4 &+ 32, as: SIMD8<Float>.self))
            a2.addProduct(v2, xr.loadUnaligned(fromByteOffset: c &* 4 &+ 64, as: SIMD8<Float>.self))
            a3.addProduct(v3, xr.loadUnaligned(fromByteOffset: c &* 4 &+ 96, as: SIMD8<Float>.self))
            c &+= 32
        }
        let n16 = columns & ~15
        if c < n16 {
            let (v0, v1) = F.load16(w + c &* size)
            a0.addProduct(v0, xr.loadUnaligned(fromByteOffset: c &* 4, as: SIMD8<Float>.self))
            a1.addProduct(v1, xr.loadUnaligned(fromByteOffset: c &* 4 &+ 32, as: SIMD8<Float>.self))
            c &+= 16
        }
        var sum = LegacyKernels.horizontalSum((a0 + a1) + (a2 + a3))
        while c < columns {
            sum += F.load1(w + c &* size) * x[c]
            c &+= 1
        }
        return sum
    }

    /// One row, four tokens: each weight vector is converted once and used four times.
    @inline(__always)
    static func row4<F: FloatWeightFormat>(
        _ format: F.Type, _ w: UnsafeRawPointer, columns: Int, _ x: UnsafePointer<Float>
    ) -> SIMD4<Float> {
        let x0 = UnsafeRawPointer(x)
        let stride = columns &* 4
        let size = F.elementBytes
        var a0 = SIMD8<Float>()
        var a1 = SIMD8<Float>()
        var a2 = SIMD8<Float>()
        var a3 = SIMD8<Float>()
        var b0 = SIMD8<Float>()
        var b1 = SIMD8<Float>()
        var b2 = SIMD8<Float>()
        var b3 = SIMD8<Float>()
        let n16 = columns & ~15
        var c = 0
        while c < n16 {
            let (v, u) = F.load16(w + c &* size)
            let o = c &* 4
            a0.addProduct(v, x0.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self))
            b0.addProduct(u, x0.loadUnaligned(fromByteOffset: o &+ 32, as: SIMD8<Float>.self))
            a1.addProduct(v, x0.loadUnaligned(fromByteOffset: o &+ stride, as: SIMD8<Float>.self))
            b1.addProduct(u, x0.loadUnaligned(fromByteOffset: o &+ stride &+ 32, as: SIMD8<Float>.self))
            a2.addProduct(v, x0.loadUnaligned(fromByteOffset: o &+ 2 &* stride, as: SIMD8<Float>.self))
            b2.addProduct(u, x0.loadUnaligned(fromByteOffset: o &+ 2 &* stride &+ 32, as: SIMD8<Float>.self))
            a3.addProduct(v, x0.loadUnaligned(fromByteOffset: o &+ 3 &* stride, as: SIMD8<Float>.self))
            b3.addProduct(u, x0.loadUnaligned(fromByteOffset: o &+ 3 &* stride &+ 32, as: SIMD8<Float>.self))
            c &+= 16
        }
        var sums = SIMD4<Float>(
            LegacyKernels.horizontalSum(a0 + b0), LegacyKernels.horizontalSum(a1 + b1),
            LegacyKernels.horizontalSum(a2 + b2), LegacyKernels.horizontalSum(a3 + b3))
        while c < columns {
            let v = F.load1(w + c &* size)
            let xp = x + c
            sums += SIMD4(v * xp[0], v * xp[columns], v * xp[2 &* columns], v * xp[3 &* columns])
            c &+= 1
        }
        return sums
    }
}
