// Q4_K and Q6_K weights (256-element super-blocks) times Q8_K activations, with the same pure SIMD
// operations as the legacy kernels ([PURE_SIMD_OPS]).
//
// Within a super-block everything stays in integers: 16-bit products, summed in pairs into 32-bit lanes,
// multiplied by the 6-bit (Q4_K) or int8 (Q6_K) group scales and accumulated; Q4_K's minimums and Q6_K's
// −32 offset are applied with the activations' 16-element sums (ggml's `bsums`). One float multiply per
// super-block remains, so results differ from ggml's 8-lane float sums ([BLOCK_DOT_ORDER]) only in rounding.

enum KQuantKernels {
    static func rows(_ job: LinearJob, _ x: QuantizedActivations, rows: Range<Int>) {
        switch job.type {
        case .q4_K: q4_K(job, x, rows)
        case .q6_K: q6_K(job, x, rows)
        default: preconditionFailure(Linear.unsupportedMessage(job.type))
        }
    }

    // MARK: Q4_K

    /// block_q4_K (144 bytes): d, dmin (f16), 12 bytes of 6-bit scales and mins, 128 bytes of nibbles
    /// (see `Dequantize.q4_K`). y = d·sc·q − dmin·m.
    @inline(never)
    static func q4_K(_ job: LinearJob, _ x: QuantizedActivations, _ rows: Range<Int>) {
        // Constant token counts (4, then 1) let each inlined copy drop the per-token branches.
        var t = 0
        while job.tokens &- t >= 4 {
            for r in rows {
                let sums = q4KRow(job.weights + r &* job.rowBytes, x, token: t, count: 4)
                for k in 0..<4 { job.output[(t &+ k) &* job.rows &+ r] = sums[k] }
            }
            t &+= 4
        }
        while t < job.tokens {
            for r in rows {
                job.output[t &* job.rows &+ r] = q4KRow(job.weights + r &* job.rowBytes, x, token: t, count: 1)[0]
            }
            t &+= 1
        }
    }

    @inline(__always)
    static func q4KRow(_ w: UnsafeRawPointer, _ x: QuantizedActivations, token: Int, count: Int) -> SIMD4<Float> {
        var sums = SIMD4<Float>()
        let blocks = x.sizes.blocks
        for b in 0..<blocks {
            let block = w + b &* 144
            let (scales, mins) = q4KScales(block)
            let d = Dequantize.half(block, 0)
            let dmin = Dequantize.half(block, 2)
            var i0 = SIMD8<Int32>()
            var i1 = SIMD8<Int32>()
            var i2 = SIMD8<Int32>()
            var i3 = SIMD8<Int32>()
            for chunk in 0..<4 {
                let codesOffset: Int = 16 &+ 32 &* chunk
                let codes = (block + codesOffset).loadUnaligned(as: SIMD16<UInt16>.self)
                let c0 = unsafeBitCast(codes & 0x000F, to: SIMD16<Int16>.self)
                let c1 = unsafeBitCast((codes &>> 4) & 0x000F, to: SIMD16<Int16>.self)
                let c2 = unsafeBitCast((codes &>> 8) & 0x000F, to: SIMD16<Int16>.self)
                let c3 = unsafeBitCast(codes &>> 12, to: SIMD16<Int16>.self)
                let lowShift: Int = 16 &* chunk
                let lowScale: UInt64 = (scales &>> UInt64(lowShift)) & 0xFF
                let highScale: UInt64 = (scales &>> UInt64(lowShift &+ 8)) & 0xFF
                let low = SIMD8<Int32>(repeating: Int32(truncatingIfNeeded: lowScale))
                let high = SIMD8<Int32>(repeating: Int32(truncatingIfNeeded: highScale))
                @inline(__always) func accumulate(_ acc: inout SIMD8<Int32>, _ k: Int) {
                    let offset: Int = (b &* 256 &+ chunk &* 64) &* 2
                    let y = x.values(token: token &+ k) + offset
                    let lowGroup: SIMD16<Int16> =
                        c0 &* y.load(as: SIMD16<Int16>.self) &+ c2 &* y.load(fromByteOffset: 64, as: SIMD16<Int16>.self)
                    let highGroup: SIMD16<Int16> =
                        c1 &* y.load(fromByteOffset: 32, as: SIMD16<Int16>.self)
                        &+ c3 &* y.load(fromByteOffset: 96, as: SIMD16<Int16>.self)
                    let lowSums: SIMD8<Int32> = LegacyKernels.narrowPairSums(lowGroup) &* low
                    let highSums: SIMD8<Int32> = LegacyKernels.narrowPairSums(highGroup) &* high
                    acc &+= lowSums &+ highSums
                }
                accumulate(&i0, 0)
                if count > 1 { accumulate(&i1, 1) }
                if count > 2 { accumulate(&i2, 2) }
                if count > 3 { accumulate(&i3, 3) }
            }
            @inline(__always) func finish(_ acc: SIMD8<Int32>, _ k: Int) -> Float {
                let token = token &+ k
                let yd = x.scales(token: token).load(fromByteOffset: b &* 4, as: Float.self)
                let groupOffset: Int = token &* x.sizes.groupsPerToken &+ b &* 16
                let groupSums = x.groupSums + groupOffset
                var minimum: Int32 = 0
                for g in 0..<8 {
                    let shift: Int = 8 &* g
                    let m = Int32(truncatingIfNeeded: (mins &>> UInt64(shift)) & 0xFF)
                    let pairSum: Int32 = groupSums[2 &* g] &+ groupSums[2 &* g &+ 1]
                    minimum &+= m &* pairSum
                }
                let dot: Float = LegacyKernels.horizontalSum(LegacyKernels.wideFloat(acc))
                return (d * yd) * dot - (dmin * yd) * Float(minimum)
            }
            sums[0] += finish(i0, 0)
            if count > 1 { sums[1] += finish(i1, 1) }
            if count > 2 { sums[2] += finish(i2, 2) }
            if count > 3 { sums[3] += finish(i3, 3) }
        }
        return sums
    }

    /// Scales (byte g = scale of group g) and mins, unpacked from the 12 bytes at offset 4 as ggml's
    /// `utmp` trick does.
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

    // MARK: Q6_K

    /// block_q6_K (210 bytes): ql (128 bytes, low nibbles), qh (64 bytes, two high bits each), 16 int8
    /// scales, d (f16); y = d·sc·(q − 32) (see `Dequantize.q6_K`).
    @inline(never)
    static func q6_K(_ job: LinearJob, _ x: QuantizedActivations, _ rows: Range<Int>) {
        // Constant token counts (4, then 1) let each inlined copy drop the per-token branches.
        var t = 0
        while job.tokens &- t >= 4 {
            for r in rows {
                let sums = q6KRow(job.weights + r &* job.rowBytes, x, token: t, count: 4)
                for k in 0..<4 { job.output[(t &+ k) &* job.rows &+ r] = sums[k] }
            }
            t &+= 4
        }
        while t < job.tokens {
            for r in rows {
                job.output[t &* job.rows &+ r] = q6KRow(job.weights + r &* job.rowBytes, x, token: t, count: 1)[0]
            }
            t &+= 1
        }
    }

    @inline(__always)
    static func q6KRow(_ w: UnsafeRawPointer, _ x: QuantizedActivations, token: Int, count: Int) -> SIMD4<Float> {
        var sums = SIMD4<Float>()
        let blocks = x.sizes.blocks
        for b in 0..<blocks {
            let block = w + b &* 210
            var i0 = SIMD8<Int32>()
            var i1 = SIMD8<Int32>()
            var i2 = SIMD8<Int32>()
            var i3 = SIMD8<Int32>()
            for half in 0..<2 {
                let lowOffset: Int = 64 &* half
                let highOffset: Int = 128 &+ 32 &* half
                let low0 = (block + lowOffset).loadUnaligned(as: SIMD16<UInt16>.self)
                let low1 = (block + (lowOffset &+ 32)).loadUnaligned(as: SIMD16<UInt16>.self)
                let high = (block + highOffset).loadUnaligned(as: SIMD16<UInt16>.self)
                for quarter in 0..<4 {
                    // Elements 32·quarter + 2k (even) and + 2k + 1 (odd) of this half, k < 16.
                    let low = quarter & 1 == 0 ? low0 : low1
                    let nibbleBits: Int = 4 &* (quarter &>> 1)
                    let nibble = UInt16(nibbleBits)
                    let shift = UInt16(2 &* quarter)
                    let oddNibble: UInt16 = nibble &+ 8
                    let oddShift: UInt16 = shift &+ 8
                    // Sub-expressions with explicit types: as one expression each, Swift 6.0's type checker gives
                    // up on these (Debian's swiftlang 6.0.3, the Raspberry Pi compiler).
                    let evenLow: SIMD16<UInt16> = (low &>> nibble) & 0x000F
                    let evenHigh: SIMD16<UInt16> = ((high &>> shift) & 0x0003) &<< 4
                    let even = unsafeBitCast(evenLow | evenHigh, to: SIMD16<Int16>.self)
                    let oddLow: SIMD16<UInt16> = (low &>> oddNibble) & 0x000F
                    let oddHigh: SIMD16<UInt16> = ((high &>> oddShift) & 0x0003) &<< 4
                    let odd = unsafeBitCast(oddLow | oddHigh, to: SIMD16<Int16>.self)
                    let group = 8 &* half &+ 2 &* quarter
                    let scale = SIMD8<Int32>(
                        lowHalf: SIMD4(repeating: Int32(block.load(fromByteOffset: 192 &+ group, as: Int8.self))),
                        highHalf: SIMD4(repeating: Int32(block.load(fromByteOffset: 193 &+ group, as: Int8.self))))
                    let offset: Int = (b &* 256 &+ 128 &* half &+ 32 &* quarter) &* 2
                    @inline(__always) func accumulate(_ acc: inout SIMD8<Int32>, _ k: Int) {
                        let y = x.values(token: token &+ k) + offset
                        let p: SIMD16<Int16> =
                            even &* y.load(as: SIMD16<Int16>.self) &+ odd
                            &* y.load(fromByteOffset: 32, as: SIMD16<Int16>.self)
                        let products: SIMD8<Int32> = LegacyKernels.narrowPairSums(p) &* scale
                        acc &+= products
                    }
                    accumulate(&i0, 0)
                    if count > 1 { accumulate(&i1, 1) }
                    if count > 2 { accumulate(&i2, 2) }
                    if count > 3 { accumulate(&i3, 3) }
                }
            }
            let d = Dequantize.half(block, 208)
            @inline(__always) func finish(_ acc: SIMD8<Int32>, _ k: Int) -> Float {
                let token = token &+ k
                let yd = x.scales(token: token).load(fromByteOffset: b &* 4, as: Float.self)
                let groupOffset: Int = token &* x.sizes.groupsPerToken &+ b &* 16
                let groupSums = x.groupSums + groupOffset
                var offset: Int32 = 0
                for g in 0..<16 {
                    let scale = Int32(block.load(fromByteOffset: 192 &+ g, as: Int8.self))
                    offset &+= scale &* groupSums[g]
                }
                let dot: Float = LegacyKernels.horizontalSum(LegacyKernels.wideFloat(acc))
                return (d * yd) * (dot - 32 * Float(offset))
            }
            sums[0] += finish(i0, 0)
            if count > 1 { sums[1] += finish(i1, 1) }
            if count > 2 { sums[2] += finish(i2, 2) }
            if count > 3 { sums[3] += finish(i3, 3) }
        }
        return sums
    }
}
