// Q4_K and Q6_K weights (256-element super-blocks) times Q8_K activations.
//
// A super-block is unpacked once into eight vectors of 32 unsigned codes, then multiplied with each
// token's int8 activations (`vpdpbusd`). Per-group scales and the Q4_K minimums / Q6_K's −32 are applied
// in integers with the activations' 16-element sums (ggml's `bsums`), so only two float operations remain
// per super-block; they differ from ggml's 8-lane float sums ([BLOCK_DOT_ORDER]) only in rounding.

/// A super-block unpacked into codes: `codes[k]` holds elements `32k ..< 32k + 32`.
struct SuperBlockCodes {
    var c0, c1, c2, c3, c4, c5, c6, c7: SIMD32<UInt8>
}

enum KQuantKernels {
    static func rows(_ job: LinearJob, _ x: QuantizedActivations, rows: Range<Int>) {
        switch job.type {
        case .q4_K: q4_K(job, x, rows)
        case .q6_K: q6_K(job, x, rows)
        default: preconditionFailure(Linear.unsupportedMessage(job.type))
        }
    }

    // MARK: Q4_K

    /// block_q4_K: d, dmin (f16), 12 bytes of 6-bit scales and mins, 128 bytes of nibbles (see
    /// `Dequantize.q4_K`). y = d·sc·q − dmin·m.
    @inline(never)
    static func q4_K(_ job: LinearJob, _ x: QuantizedActivations, _ rows: Range<Int>) {
        let blocks = job.columns / 256
        var t = 0
        while t < job.tokens {
            let count = min(4, job.tokens - t)
            for r in rows {
                let w = job.weights + r * job.rowBytes
                var sums = SIMD4<Float>()
                for b in 0..<blocks {
                    let block = w + b &* 144
                    let codes = q4KCodes(block)
                    let (scales, mins) = q4KScales(block)
                    let d = Dequantize.half(block, 0)
                    let dmin = Dequantize.half(block, 2)
                    for k in 0..<count {
                        let token = t &+ k
                        let i = token &* x.layout.blocksPerToken &+ b
                        let y = UnsafeRawPointer(x.values + token &* x.layout.columns + b &* 256)
                        let groupSums = x.groupSums + i &* 16
                        let isum = scaledDot(codes, y, scales: scales)
                        var msum: Int32 = 0
                        for g in 0..<8 {
                            msum &+= Int32(truncatingIfNeeded: (mins &>> UInt64(8 &* g)) & 0xFF)
                                &* (groupSums[2 &* g] &+ groupSums[2 &* g &+ 1])
                        }
                        let yd = x.scales[i]
                        sums[k] += (d * yd) * Float(isum)
                        sums[k] -= (dmin * yd) * Float(msum)
                    }
                }
                for k in 0..<count { job.output[(t + k) * job.rows + r] = sums[k] }
            }
            t += count
        }
    }

    /// Scales (byte g = scale of group g) and mins, unpacked from the 12 bytes at offset 4 as
    /// ggml's `utmp` trick does.
    @inline(__always)
    static func q4KScales(_ block: UnsafeRawPointer) -> (scales: UInt64, mins: UInt64) {
        let u0 = UInt32(littleEndian: block.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        let u1 = UInt32(littleEndian: block.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        let u2 = UInt32(littleEndian: block.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
        let scalesLow = u0 & 0x3F3F_3F3F
        let scalesHigh = (u2 & 0x0F0F_0F0F) | ((u0 >> 6) & 0x0303_0303) << 4
        let minsLow = u1 & 0x3F3F_3F3F
        let minsHigh = ((u2 >> 4) & 0x0F0F_0F0F) | ((u1 >> 6) & 0x0303_0303) << 4
        return (UInt64(scalesLow) | UInt64(scalesHigh) << 32, UInt64(minsLow) | UInt64(minsHigh) << 32)
    }

    @inline(__always)
    static func q4KCodes(_ block: UnsafeRawPointer) -> SuperBlockCodes {
        @inline(__always) func pair(_ chunk: Int) -> (SIMD32<UInt8>, SIMD32<UInt8>) {
            let packed = block.loadUnaligned(fromByteOffset: 16 &+ 32 &* chunk, as: SIMD32<UInt8>.self)
            return (packed & 0x0F, shiftRight4(packed))
        }
        let (c0, c1) = pair(0)
        let (c2, c3) = pair(1)
        let (c4, c5) = pair(2)
        let (c6, c7) = pair(3)
        return SuperBlockCodes(c0: c0, c1: c1, c2: c2, c3: c3, c4: c4, c5: c5, c6: c6, c7: c7)
    }

    /// Σ_g scale[g] · Σ_{i in group g} code_i · y_i for eight groups of 32.
    @inline(__always)
    static func scaledDot(_ codes: SuperBlockCodes, _ y: UnsafeRawPointer, scales: UInt64) -> Int32 {
        @inline(__always) func scale(_ g: Int) -> Int32 { Int32(truncatingIfNeeded: (scales >> UInt64(8 * g)) & 0xFF) }
        let d0 = scale(0) &* LegacyKernels.dot(codes.c0, y) &+ scale(1) &* LegacyKernels.dot(codes.c1, y + 32)
        let d1 = scale(2) &* LegacyKernels.dot(codes.c2, y + 64) &+ scale(3) &* LegacyKernels.dot(codes.c3, y + 96)
        let d2 = scale(4) &* LegacyKernels.dot(codes.c4, y + 128) &+ scale(5) &* LegacyKernels.dot(codes.c5, y + 160)
        let d3 = scale(6) &* LegacyKernels.dot(codes.c6, y + 192) &+ scale(7) &* LegacyKernels.dot(codes.c7, y + 224)
        return (d0 &+ d1) &+ (d2 &+ d3)
    }

    // MARK: Q6_K

    /// block_q6_K: ql (128 bytes, low nibbles), qh (64 bytes, two high bits each), 16 int8 scales, d (f16);
    /// y = d·sc·(q − 32) (see `Dequantize.q6_K`).
    @inline(never)
    static func q6_K(_ job: LinearJob, _ x: QuantizedActivations, _ rows: Range<Int>) {
        let blocks = job.columns / 256
        var t = 0
        while t < job.tokens {
            let count = min(4, job.tokens - t)
            for r in rows {
                let w = job.weights + r * job.rowBytes
                var sums = SIMD4<Float>()
                for b in 0..<blocks {
                    let block = w + b &* 210
                    let codes = q6KCodes(block)
                    let d = Dequantize.half(block, 208)
                    for k in 0..<count {
                        let token = t &+ k
                        let i = token &* x.layout.blocksPerToken &+ b
                        let y = UnsafeRawPointer(x.values + token &* x.layout.columns + b &* 256)
                        let isum = q6KDot(codes, y, block: block, groupSums: x.groupSums + i &* 16)
                        sums[k] += (d * x.scales[i]) * Float(isum)
                    }
                }
                for k in 0..<count { job.output[(t + k) * job.rows + r] = sums[k] }
            }
            t += count
        }
    }

    @inline(__always)
    static func q6KCodes(_ block: UnsafeRawPointer) -> SuperBlockCodes {
        @inline(__always) func half(_ h: Int) -> (SIMD32<UInt8>, SIMD32<UInt8>, SIMD32<UInt8>, SIMD32<UInt8>) {
            let low0 = block.loadUnaligned(fromByteOffset: 64 &* h, as: SIMD32<UInt8>.self)
            let low1 = block.loadUnaligned(fromByteOffset: 64 &* h &+ 32, as: SIMD32<UInt8>.self)
            let high = block.loadUnaligned(fromByteOffset: 128 &+ 32 &* h, as: SIMD32<UInt8>.self)
            return (
                (low0 & 0x0F) | (high & 0x03) &<< 4,
                (low1 & 0x0F) | (high & 0x0C) &<< 2,
                shiftRight4(low0) | (high & 0x30),
                shiftRight4(low1) | shiftRight2(high & 0xC0)
            )
        }
        let (c0, c1, c2, c3) = half(0)
        let (c4, c5, c6, c7) = half(1)
        return SuperBlockCodes(c0: c0, c1: c1, c2: c2, c3: c3, c4: c4, c5: c5, c6: c6, c7: c7)
    }

    /// Σ_g scale[g] · Σ_{i in group g} (code_i − 32) · y_i for sixteen groups of 16.
    @inline(__always)
    static func q6KDot(
        _ codes: SuperBlockCodes, _ y: UnsafeRawPointer, block: UnsafeRawPointer, groupSums: UnsafePointer<Int32>
    ) -> Int32 {
        let scales = block.loadUnaligned(fromByteOffset: 192, as: SIMD16<Int8>.self)
        @inline(__always) func pair(_ c: SIMD32<UInt8>, _ k: Int) -> Int32 {
            let g = 2 &* k
            let low = dot16(c.lowHalf, y + 32 &* k) &- 32 &* groupSums[g]
            let high = dot16(c.highHalf, y + (32 &* k &+ 16)) &- 32 &* groupSums[g &+ 1]
            return Int32(scales[g]) &* low &+ Int32(scales[g &+ 1]) &* high
        }
        let s0 = pair(codes.c0, 0) &+ pair(codes.c1, 1)
        let s1 = pair(codes.c2, 2) &+ pair(codes.c3, 3)
        let s2 = pair(codes.c4, 4) &+ pair(codes.c5, 5)
        let s3 = pair(codes.c6, 6) &+ pair(codes.c7, 7)
        return (s0 &+ s1) &+ (s2 &+ s3)
    }

    // MARK: Helpers

    @inline(__always)
    static func dot16(_ codes: SIMD16<UInt8>, _ y: UnsafeRawPointer) -> Int32 {
        let activations = y.load(as: SIMD16<Int8>.self)
        return (SIMD16<Int32>(truncatingIfNeeded: codes) &* SIMD16<Int32>(truncatingIfNeeded: activations))
            .wrappedSum()
    }

    /// Each byte's high nibble, shifted down (x86 has no byte shift; a 16-bit shift plus mask is one).
    @inline(__always)
    static func shiftRight4(_ v: SIMD32<UInt8>) -> SIMD32<UInt8> {
        unsafeBitCast(unsafeBitCast(v, to: SIMD16<UInt16>.self) &>> 4, to: SIMD32<UInt8>.self) & 0x0F
    }

    @inline(__always)
    static func shiftRight2(_ v: SIMD32<UInt8>) -> SIMD32<UInt8> {
        unsafeBitCast(unsafeBitCast(v, to: SIMD16<UInt16>.self) &>> 2, to: SIMD32<UInt8>.self) & 0x3F
    }
}
