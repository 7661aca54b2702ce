// Q4_K, Q5_K and Q6_K weights (256-element super-blocks) times Q8_K activations, with the same pure SIMD
// operations as the legacy kernels ([PURE_SIMD_OPS]); Q3_K and Q2_K are in LinearKQuantsLowBit.swift.
//
// Within a super-block everything stays in integers: 16-bit products, summed in pairs into 32-bit lanes,
// multiplied by the 6-bit (Q4_K / Q5_K) or int8 (Q6_K) group scales and accumulated; Q4_K's minimums and Q6_K's
// −32 offset are applied with the activations' 16-element sums (ggml's `bsums`). One float multiply per
// super-block remains, so results differ from ggml's 8-lane float sums ([BLOCK_DOT_ORDER]) only in rounding.
//
// Where the target has byte dot products (`ByteDotProduct`, AVX-512 VNNI) the kernels take 64 packed bytes of
// codes at a time as unsigned bytes against int8 activations, one instruction per 64 products, the group
// scales applied to the 4-product lane sums; the float steps then differ (one conversion per super-block,
// lanes summed at the end of the row), integer sums stay exact.

enum KQuantKernels {
    static func rows(_ job: LinearJob, _ x: QuantizedActivations, rows: Range<Int>) {
        switch job.type {
        case .q4_K: q4_K(job, x, rows)
        case .q5_K: q5_K(job, x, rows)
        case .q6_K: q6_K(job, x, rows)
        case .q3_K: q3_K(job, x, rows)
        case .q2_K: q2_K(job, x, rows)
        default: preconditionFailure(Linear.unsupportedMessage(job.type))
        }
    }

    // MARK: Q4_K and Q5_K

    /// block_q4_K (144 bytes): d, dmin (f16), 12 bytes of 6-bit scales and mins, 128 bytes of nibbles
    /// (see `Dequantize.q4_K`). y = d·sc·q − dmin·m.
    @inline(never)
    static func q4_K(_ job: LinearJob, _ x: QuantizedActivations, _ rows: Range<Int>) {
        q4KFamily(job, x, rows, hasFifthBit: false)
    }

    /// block_q5_K (176 bytes): Q4_K's d, dmin and scales, then 32 bytes of fifth bits (bit i / 32 of byte
    /// i % 32 for element i) before the 128 bytes of nibbles (see `Dequantize.q5_K`). The kernels are Q4_K's
    /// with the fifth bit or-ed into each code; the activations are in Q4_K's order.
    @inline(never)
    static func q5_K(_ job: LinearJob, _ x: QuantizedActivations, _ rows: Range<Int>) {
        q4KFamily(job, x, rows, hasFifthBit: true)
    }

    /// Q4_K (`hasFifthBit` false) or Q5_K rows; the flag is a constant in each inlined copy.
    @inline(__always)
    static func q4KFamily(_ job: LinearJob, _ x: QuantizedActivations, _ rows: Range<Int>, hasFifthBit: Bool) {
        if x.sizes.byteValues {
            job.tokenTiles(rows) { row, token, count in
                q4KRowBytes(row, x, token: token, count: count, hasFifthBit: hasFifthBit)
            }
            return
        }
        job.tokenTiles(rows) { row, token, count in
            q4KRow(row, x, token: token, count: count, hasFifthBit: hasFifthBit)
        }
    }

    @inline(__always)
    static func q4KRow(_ w: UnsafeRawPointer, _ x: QuantizedActivations, token: Int, count: Int, hasFifthBit: Bool)
        -> SIMD4<Float>
    {
        var sums = SIMD4<Float>()
        let blocks = x.sizes.blocks
        let blockBytes = hasFifthBit ? 176 : 144
        let codesStart = hasFifthBit ? 48 : 16
        let prefetching = StreamPrefetch.streams(token: token, count: count)
        for b in 0..<blocks {
            let block = w + b &* blockBytes
            if prefetching { StreamPrefetch.ahead(of: block, bytes: blockBytes) }
            let (scales, mins) = q4KScales(block)
            // Q5_K: lane k holds the fifth bits of elements 2k (low byte) and 2k + 1 (high byte) of each 32.
            let fifthBits = hasFifthBit ? (block + 16).loadUnaligned(as: SIMD16<UInt16>.self) : .zero
            let d = Dequantize.half(block, 0)
            let dmin = Dequantize.half(block, 2)
            var i0 = SIMD8<Int32>()
            var i1 = SIMD8<Int32>()
            var i2 = SIMD8<Int32>()
            var i3 = SIMD8<Int32>()
            for chunk in 0..<4 {
                let codesOffset: Int = codesStart &+ 32 &* chunk
                let codes = (block + codesOffset).loadUnaligned(as: SIMD16<UInt16>.self)
                var u0: SIMD16<UInt16> = codes & 0x000F
                var u1: SIMD16<UInt16> = (codes &>> 4) & 0x000F
                var u2: SIMD16<UInt16> = (codes &>> 8) & 0x000F
                var u3: SIMD16<UInt16> = codes &>> 12
                if hasFifthBit {
                    // Elements 64c + j take bit 2c of their byte, 64c + 32 + j bit 2c + 1.
                    let bit = UInt16(2 &* chunk)
                    u0 |= laneBit(fifthBits, bit, movedTo: 4)
                    u1 |= laneBit(fifthBits, bit &+ 1, movedTo: 4)
                    u2 |= laneBit(fifthBits, bit &+ 8, movedTo: 4)
                    u3 |= laneBit(fifthBits, bit &+ 9, movedTo: 4)
                }
                let c0 = unsafeBitCast(u0, to: SIMD16<Int16>.self)
                let c1 = unsafeBitCast(u1, to: SIMD16<Int16>.self)
                let c2 = unsafeBitCast(u2, to: SIMD16<Int16>.self)
                let c3 = unsafeBitCast(u3, to: SIMD16<Int16>.self)
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

    /// Bit `bit` of each lane, moved to bit `position` (the rest zero). A function with typed operands: as
    /// inline expressions, Swift 6.0's type checker takes ~100 ms for each of these.
    @inline(__always)
    static func laneBit(_ lanes: SIMD16<UInt16>, _ bit: UInt16, movedTo position: UInt16) -> SIMD16<UInt16> {
        let shifted: SIMD16<UInt16> = lanes &>> bit
        let isolated: SIMD16<UInt16> = shifted & 0x0001
        return isolated &<< position
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
        if x.sizes.byteValues {
            job.tokenTiles(rows) { row, token, count in q6KRowBytes(row, x, token: token, count: count) }
            return
        }
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
        let prefetching = StreamPrefetch.streams(token: token, count: count)
        for b in 0..<blocks {
            let block = w + b &* 210
            if prefetching { StreamPrefetch.ahead(of: block, bytes: 210) }
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

// MARK: Byte kernels (AVX-512 VNNI)

extension KQuantKernels {
    /// Q4_K with byte dot products. Per super-block the 128 code bytes are two 64-byte loads; the low nibbles
    /// of the first are elements 0–31 and 64–95 (groups 0 and 2), its high nibbles 32–63 and 96–127
    /// (groups 1 and 3), and likewise for the second with groups 4–7; the activations are stored in that
    /// order. Codes times values are summed in pairs into 16-bit lanes (at most 2 · 15 · 127), and those,
    /// times their group's scale, in pairs into 32-bit lanes: each 32-bit lane holds four elements of one
    /// group (eight lanes of one group, eight of the other per product). Bounds: four products of at most
    /// 2 · 2 · 15 · 127 · 63 per lane: < 2²¹, exact in a float (Q5_K's 31 for 15: 3,968,496 < 2²²). The
    /// minimum term, dmin · d_x · Σ_g m_g · Σq_g, takes the activations' `groupSums32` (Σq per group, made once
    /// per token): exact integer products m_g · Σq_g (< 2¹⁸), one float multiply-add per token. Q5_K
    /// (`hasFifthBit`) ors its fifth bits into the codes (16-bit pair sums at most 2 · 31 · 127).
    @inline(__always)
    static func q4KRowBytes(
        _ w: UnsafeRawPointer, _ x: QuantizedActivations, token: Int, count: Int, hasFifthBit: Bool
    ) -> SIMD4<Float> {
        var dots = (SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>())
        var minimums = (SIMD8<Float>(), SIMD8<Float>(), SIMD8<Float>(), SIMD8<Float>())
        let firstOfPair = SIMD16<UInt32>(0, 0, 0, 0, 0, 0, 0, 0, 16, 16, 16, 16, 16, 16, 16, 16)
        let secondOfPair: SIMD16<UInt32> = firstOfPair &+ 8
        let byteShifts = SIMD4<UInt32>(0, 8, 16, 24)
        let blocks = x.sizes.blocks
        let blockBytes = hasFifthBit ? 176 : 144
        let codesStart = hasFifthBit ? 48 : 16
        let prefetching = StreamPrefetch.streams(token: token, count: count)
        for b in 0..<blocks {
            let block = w + b &* blockBytes
            if prefetching { StreamPrefetch.ahead(of: block, bytes: blockBytes) }
            let (scales, mins) = q4KScales(block)
            let d = Dequantize.half(block, 0)
            let dmin = Dequantize.half(block, 2)
            let scalesLow = SIMD16<UInt32>(repeating: UInt32(truncatingIfNeeded: scales))
            let scalesHigh = SIMD16<UInt32>(repeating: UInt32(truncatingIfNeeded: scales &>> 32))
            // Each scale in both 16-bit halves of its lanes, for the pair sums' multiply-add.
            let scale0: SIMD16<UInt32> = ((scalesLow &>> firstOfPair) & 0xFF) &* 0x0001_0001
            let scale1: SIMD16<UInt32> = ((scalesLow &>> secondOfPair) & 0xFF) &* 0x0001_0001
            let scale2: SIMD16<UInt32> = ((scalesHigh &>> firstOfPair) & 0xFF) &* 0x0001_0001
            let scale3: SIMD16<UInt32> = ((scalesHigh &>> secondOfPair) & 0xFF) &* 0x0001_0001
            let minsLow = SIMD4<UInt32>(repeating: UInt32(truncatingIfNeeded: mins)) &>> byteShifts
            let minsHigh = SIMD4<UInt32>(repeating: UInt32(truncatingIfNeeded: mins &>> 32)) &>> byteShifts
            let groupMins = unsafeBitCast(SIMD8(lowHalf: minsLow, highHalf: minsHigh) & 0xFF, to: SIMD8<Int32>.self)
            let codes0 = (block + codesStart).loadUnaligned(as: SIMD16<UInt32>.self)
            let codes1 = (block + (codesStart &+ 64)).loadUnaligned(as: SIMD16<UInt32>.self)
            var nibbles0: SIMD16<UInt32> = codes0 & 0x0F0F_0F0F
            var nibbles1: SIMD16<UInt32> = (codes0 &>> 4) & 0x0F0F_0F0F
            var nibbles2: SIMD16<UInt32> = codes1 & 0x0F0F_0F0F
            var nibbles3: SIMD16<UInt32> = (codes1 &>> 4) & 0x0F0F_0F0F
            if hasFifthBit {
                // Byte j of the fifth bits serves elements j + 32k, k < 8, as bit k; nibbles0 holds elements
                // 0–31 and 64–95 (bits 0 and 2), nibbles1 32–63 and 96–127 (bits 1 and 3), and so on.
                let bits = (block + 16).loadUnaligned(as: SIMD8<UInt32>.self)
                @inline(__always) func fifth(_ first: UInt32) -> SIMD16<UInt32> {
                    let both = SIMD16(lowHalf: bits &>> first, highHalf: bits &>> (first &+ 2))
                    return (both & 0x0101_0101) &<< 4
                }
                nibbles0 |= fifth(0)
                nibbles1 |= fifth(1)
                nibbles2 |= fifth(4)
                nibbles3 |= fifth(5)
            }
            @inline(__always) func accumulate(_ dot: inout SIMD16<Float>, _ minimum: inout SIMD8<Float>, _ k: Int) {
                let t = token &+ k
                let y = x.bytes(token: t) + b &* 256
                // Pair sums of codes × values (16 bits), then × the group scales into 32-bit lanes.
                @inline(__always) func values(_ offset: Int) -> SIMD16<UInt32> {
                    y.loadUnaligned(fromByteOffset: offset, as: SIMD16<UInt32>.self)
                }
                let p0 = ByteDotProduct.pairSums(nibbles0, values(0))
                let p1 = ByteDotProduct.pairSums(nibbles1, values(64))
                let p2 = ByteDotProduct.pairSums(nibbles2, values(128))
                let p3 = ByteDotProduct.pairSums(nibbles3, values(192))
                var sum = ByteDotProduct.accumulatePairs(.zero, p0, scale0)
                sum = ByteDotProduct.accumulatePairs(sum, p1, scale1)
                sum = ByteDotProduct.accumulatePairs(sum, p2, scale2)
                sum = ByteDotProduct.accumulatePairs(sum, p3, scale3)
                let yd = x.scales(token: t).load(fromByteOffset: b &* 4, as: Float.self)
                dot.addProduct(ByteDotProduct.exactFloat(sum), SIMD16(repeating: d * yd))
                let sumsOffset: Int = (t &* blocks &+ b) &* 8
                let groupSums = UnsafeRawPointer(x.groupSums32 + sumsOffset).loadUnaligned(as: SIMD8<Int32>.self)
                let minimums: SIMD8<Int32> = groupMins &* groupSums
                minimum.addProduct(LegacyKernels.exactFloat(minimums), SIMD8(repeating: dmin * yd))
            }
            accumulate(&dots.0, &minimums.0, 0)
            if count > 1 { accumulate(&dots.1, &minimums.1, 1) }
            if count > 2 { accumulate(&dots.2, &minimums.2, 2) }
            if count > 3 { accumulate(&dots.3, &minimums.3, 3) }
        }
        @inline(__always) func total(_ dot: SIMD16<Float>, _ minimum: SIMD8<Float>) -> Float {
            Vector.halvingSum(dot) - LegacyKernels.horizontalSum(minimum)
        }
        var sums = SIMD4<Float>()
        sums[0] = total(dots.0, minimums.0)
        if count > 1 { sums[1] = total(dots.1, minimums.1) }
        if count > 2 { sums[2] = total(dots.2, minimums.2) }
        if count > 3 { sums[3] = total(dots.3, minimums.3) }
        return sums
    }

    /// Q6_K with byte dot products. Per half super-block: 64 bytes of low nibbles (elements 0–63 in their low
    /// nibbles, 64–127 in their high ones) and 32 bytes of high bit pairs make two vectors of 64 unsigned
    /// 6-bit codes in natural order; each product starts from the activations' `laneSums` (−32 · Σ of the
    /// lane's four values), which applies the −32 offset. The 16-element groups' scales multiply lanes, four
    /// lanes each. Bounds: a lane is at most 4 · 32 · 127 in magnitude, times a scale ≤ 128, two of them:
    /// < 2²², exact in a float — so each half is converted on its own.
    @inline(__always)
    static func q6KRowBytes(_ w: UnsafeRawPointer, _ x: QuantizedActivations, token: Int, count: Int)
        -> SIMD4<Float>
    {
        var dots = (SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>())
        // Left shifts that put byte i / 4 of a word on top of lane i, for an arithmetic shift back.
        let scaleShifts = SIMD16<UInt32>(24, 24, 24, 24, 16, 16, 16, 16, 8, 8, 8, 8, 0, 0, 0, 0)
        let prefetching = StreamPrefetch.streams(token: token, count: count)
        for b in 0..<x.sizes.blocks {
            let block = w + b &* 210
            if prefetching { StreamPrefetch.ahead(of: block, bytes: 210) }
            let d = Dequantize.half(block, 208)
            for half in 0..<2 {
                let lowBits = (block + 64 &* half).loadUnaligned(as: SIMD16<UInt32>.self)
                let highBits = (block + (128 &+ 32 &* half)).loadUnaligned(as: SIMD8<UInt32>.self)
                let highOfFirst: SIMD16<UInt32> = SIMD16(lowHalf: highBits, highHalf: highBits &>> 2) & 0x0303_0303
                let highOfSecond: SIMD16<UInt32> =
                    SIMD16(lowHalf: highBits &>> 4, highHalf: highBits &>> 6) & 0x0303_0303
                let codes0: SIMD16<UInt32> = (lowBits & 0x0F0F_0F0F) | (highOfFirst &<< 4)
                let codes1: SIMD16<UInt32> = ((lowBits &>> 4) & 0x0F0F_0F0F) | (highOfSecond &<< 4)
                let scaleOffset: Int = 192 &+ 8 &* half
                let firstScales = block.loadUnaligned(fromByteOffset: scaleOffset, as: UInt32.self)
                let secondScales = block.loadUnaligned(fromByteOffset: scaleOffset &+ 4, as: UInt32.self)
                let words0 = SIMD16<UInt32>(repeating: firstScales)
                let words1 = SIMD16<UInt32>(repeating: secondScales)
                let scale0: SIMD16<Int32> = unsafeBitCast(words0 &<< scaleShifts, to: SIMD16<Int32>.self) &>> 24
                let scale1: SIMD16<Int32> = unsafeBitCast(words1 &<< scaleShifts, to: SIMD16<Int32>.self) &>> 24
                let element: Int = b &* 256 &+ 128 &* half
                @inline(__always) func accumulate(_ dot: inout SIMD16<Float>, _ k: Int) {
                    let t = token &+ k
                    let y = x.bytes(token: t) + element
                    let offsets = x.laneSums(token: t) + element
                    let p0 = ByteDotProduct.accumulate(
                        offsets.loadUnaligned(as: SIMD16<Int32>.self), codes0, y.loadUnaligned(as: SIMD16<UInt32>.self))
                    let p1 = ByteDotProduct.accumulate(
                        offsets.loadUnaligned(fromByteOffset: 64, as: SIMD16<Int32>.self), codes1,
                        y.loadUnaligned(fromByteOffset: 64, as: SIMD16<UInt32>.self))
                    let sum: SIMD16<Int32> = scale0 &* p0 &+ scale1 &* p1
                    let yd = x.scales(token: t).load(fromByteOffset: b &* 4, as: Float.self)
                    dot.addProduct(ByteDotProduct.exactFloat(sum), SIMD16(repeating: d * yd))
                }
                accumulate(&dots.0, 0)
                if count > 1 { accumulate(&dots.1, 1) }
                if count > 2 { accumulate(&dots.2, 2) }
                if count > 3 { accumulate(&dots.3, 3) }
            }
        }
        var sums = SIMD4<Float>()
        sums[0] = Vector.halvingSum(dots.0)
        if count > 1 { sums[1] = Vector.halvingSum(dots.1) }
        if count > 2 { sums[2] = Vector.halvingSum(dots.2) }
        if count > 3 { sums[3] = Vector.halvingSum(dots.3) }
        return sums
    }
}
