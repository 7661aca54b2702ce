// F32, F16 and BF16 weights times float32 activations, with float32 sums (transformers' math).
//
// Each weight vector of 16 elements is widened to float32 once and multiplied with up to four tokens'
// activations; several accumulators hide the latency of the fused multiply-adds. Only the summation order
// differs from `Linear.reference` (left to right), a relative difference of about 1e-6.

/// How one float weight type turns 16 stored elements into float32.
protocol FloatWeightFormat {
    static var elementBytes: Int { get }
    static func load16(_ p: UnsafeRawPointer) -> SIMD16<Float>
    static func load1(_ p: UnsafeRawPointer) -> Float
}

enum F32Weights: FloatWeightFormat {
    static var elementBytes: Int { 4 }
    @inline(__always) static func load16(_ p: UnsafeRawPointer) -> SIMD16<Float> {
        p.loadUnaligned(as: SIMD16<Float>.self)
    }
    @inline(__always) static func load1(_ p: UnsafeRawPointer) -> Float { p.loadUnaligned(as: Float.self) }
}

enum F16Weights: FloatWeightFormat {
    static var elementBytes: Int { 2 }
    @inline(__always) static func load16(_ p: UnsafeRawPointer) -> SIMD16<Float> {
        SIMD16<Float>(p.loadUnaligned(as: SIMD16<Float16>.self))  // vcvtph2ps
    }
    @inline(__always) static func load1(_ p: UnsafeRawPointer) -> Float { Float(p.loadUnaligned(as: Float16.self)) }
}

/// BF16 is the high half of a float32.
enum BF16Weights: FloatWeightFormat {
    static var elementBytes: Int { 2 }
    @inline(__always) static func load16(_ p: UnsafeRawPointer) -> SIMD16<Float> {
        let bits = SIMD16<UInt32>(truncatingIfNeeded: p.loadUnaligned(as: SIMD16<UInt16>.self)) &<< 16
        return unsafeBitCast(bits, to: SIMD16<Float>.self)
    }
    @inline(__always) static func load1(_ p: UnsafeRawPointer) -> Float {
        Float(bitPattern: UInt32(p.loadUnaligned(as: UInt16.self)) &<< 16)
    }
}

enum FloatKernels {
    static func rows(_ job: LinearJob, input: UnsafePointer<Float>, rows: Range<Int>) {
        switch job.type {
        case .f32: f32(job, input, rows)
        case .f16: f16(job, input, rows)
        case .bf16: bf16(job, input, rows)
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
        while job.tokens - t >= 4 {
            for r in rows {
                let sums = row4(format, job.weights + r * job.rowBytes, columns: job.columns, x + t * job.columns)
                job.output[t * job.rows + r] = sums[0]
                job.output[(t + 1) * job.rows + r] = sums[1]
                job.output[(t + 2) * job.rows + r] = sums[2]
                job.output[(t + 3) * job.rows + r] = sums[3]
            }
            t += 4
        }
        while t < job.tokens {
            for r in rows {
                job.output[t * job.rows + r] = row1(
                    format, job.weights + r * job.rowBytes, columns: job.columns, x + t * job.columns)
            }
            t += 1
        }
    }

    /// One row, one token: four accumulators of 16 lanes.
    @inline(__always)
    static func row1<F: FloatWeightFormat>(
        _ format: F.Type, _ w: UnsafeRawPointer, columns: Int, _ x: UnsafePointer<Float>
    ) -> Float {
        let xr = UnsafeRawPointer(x)
        let size = F.elementBytes
        var a0 = SIMD16<Float>()
        var a1 = SIMD16<Float>()
        var a2 = SIMD16<Float>()
        var a3 = SIMD16<Float>()
        let n64 = columns & ~63
        var c = 0
        while c < n64 {
            a0.addProduct(F.load16(w + c &* size), xr.loadUnaligned(fromByteOffset: c &* 4, as: SIMD16<Float>.self))
            a1.addProduct(
                F.load16(w + (c &+ 16) &* size),
                xr.loadUnaligned(fromByteOffset: (c &+ 16) &* 4, as: SIMD16<Float>.self))
            a2.addProduct(
                F.load16(w + (c &+ 32) &* size),
                xr.loadUnaligned(fromByteOffset: (c &+ 32) &* 4, as: SIMD16<Float>.self))
            a3.addProduct(
                F.load16(w + (c &+ 48) &* size),
                xr.loadUnaligned(fromByteOffset: (c &+ 48) &* 4, as: SIMD16<Float>.self))
            c &+= 64
        }
        let n16 = columns & ~15
        while c < n16 {
            a0.addProduct(F.load16(w + c &* size), xr.loadUnaligned(fromByteOffset: c &* 4, as: SIMD16<Float>.self))
            c &+= 16
        }
        var sum = horizontalSum((a0 + a1) + (a2 + a3))
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
        let x1 = x0 + columns &* 4
        let x2 = x1 + columns &* 4
        let x3 = x2 + columns &* 4
        let size = F.elementBytes
        var a0 = SIMD16<Float>()
        var a1 = SIMD16<Float>()
        var a2 = SIMD16<Float>()
        var a3 = SIMD16<Float>()
        var b0 = SIMD16<Float>()
        var b1 = SIMD16<Float>()
        var b2 = SIMD16<Float>()
        var b3 = SIMD16<Float>()
        let n32 = columns & ~31
        var c = 0
        while c < n32 {
            let v = F.load16(w + c &* size)
            let u = F.load16(w + (c &+ 16) &* size)
            let o = c &* 4
            let p = o &+ 64
            a0.addProduct(v, x0.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self))
            a1.addProduct(v, x1.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self))
            a2.addProduct(v, x2.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self))
            a3.addProduct(v, x3.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self))
            b0.addProduct(u, x0.loadUnaligned(fromByteOffset: p, as: SIMD16<Float>.self))
            b1.addProduct(u, x1.loadUnaligned(fromByteOffset: p, as: SIMD16<Float>.self))
            b2.addProduct(u, x2.loadUnaligned(fromByteOffset: p, as: SIMD16<Float>.self))
            b3.addProduct(u, x3.loadUnaligned(fromByteOffset: p, as: SIMD16<Float>.self))
            c &+= 32
        }
        var sums = SIMD4<Float>(
            horizontalSum(a0 + b0), horizontalSum(a1 + b1), horizontalSum(a2 + b2), horizontalSum(a3 + b3))
        while c < columns {
            let v = F.load1(w + c &* size)
            let xp = x + c
            sums += SIMD4(v * xp[0], v * xp[columns], v * xp[2 &* columns], v * xp[3 &* columns])
            c &+= 1
        }
        return sums
    }

    /// Sum of 16 lanes as a tree of halves (`SIMD.sum()` would add them one by one).
    @inline(__always)
    static func horizontalSum(_ v: SIMD16<Float>) -> Float {
        let v8 = v.lowHalf + v.highHalf
        let v4 = v8.lowHalf + v8.highHalf
        let v2 = v4.lowHalf + v4.highHalf
        return v2[0] + v2[1]
    }
}
