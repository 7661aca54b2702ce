// Q2_K and Q3_K weights (the low-bit K-quants of Q2_K / Q3_K_M files, DeepSeek-R1's small quants) times
// Q8_K activations, in the style of the Q4_K / Q6_K kernels (LinearKQuants.swift).
//
// Both types keep 2-bit codes placed alike: element 128h + 32j + l (h < 2, j < 4, l < 32) is bits 2j…2j+1
// of qs[32h + l], in 16-element group 8h + 2j + l / 16. Q3_K adds a third bit (bit 4h + j of hmask[l], set
// meaning +4 over Q2_K's range, clear meaning the value is 4 lower) and signed 6-bit scales; Q2_K adds
// 4-bit scales and mins. Codes are unsigned — Q3_K's value is `code − 4`, its offset applied with the
// activations' per-16 sums as Q2_K's mins are — and both types read their activations in Q6_K's layout
// (`ActivationLayout.q6K`).

extension KQuantKernels {
    /// block_q2_K (84 bytes): 16 bytes of scales (low nibble) and mins (high nibble), 64 bytes of 2-bit
    /// codes, d, dmin (f16). y = d·sc·q − dmin·m (see `Dequantize.q2_K`).
    @inline(never)
    static func q2_K(_ job: LinearJob, _ x: QuantizedActivations, _ rows: Range<Int>) {
        lowBitFamily(job, x, rows, isQ3K: false)
    }

    /// block_q3_K (110 bytes): hmask (32 bytes of third bits), 64 bytes of 2-bit codes, 12 bytes of 6-bit
    /// scales, d (f16). y = d·(sc − 32)·(q − 4·[third bit clear]) (see `Dequantize.q3_K`).
    @inline(never)
    static func q3_K(_ job: LinearJob, _ x: QuantizedActivations, _ rows: Range<Int>) {
        lowBitFamily(job, x, rows, isQ3K: true)
    }

    /// Q2_K (`isQ3K` false) or Q3_K rows; the flag is a constant in each inlined copy.
    @inline(__always)
    static func lowBitFamily(_ job: LinearJob, _ x: QuantizedActivations, _ rows: Range<Int>, isQ3K: Bool) {
        if x.sizes.byteValues {
            job.tokenTiles(rows) { row, token, count in
                lowBitRowBytes(row, x, token: token, count: count, isQ3K: isQ3K)
            }
            return
        }
        job.tokenTiles(rows) { row, token, count in lowBitRow(row, x, token: token, count: count, isQ3K: isQ3K) }
    }

    /// The 16 group scale bytes of a block, four to a word (byte g: group g). Q2_K: its scale bytes as
    /// stored (scale in the low nibble, min in the high one). Q3_K: the 6-bit scales unpacked from their 12
    /// bytes, unsigned (the value is the byte − 32): group g's low four bits are nibble g / 8 of byte
    /// g % 8, its top two bits bits 2·(g / 4) of byte 8 + g % 4 (ggml's `kmask` trick, one word at a time).
    @inline(__always)
    static func lowBitScaleWords(_ block: UnsafeRawPointer, isQ3K: Bool) -> SIMD4<UInt32> {
        if !isQ3K { return block.loadUnaligned(as: SIMD4<UInt32>.self) }
        let a0 = UInt32(littleEndian: block.loadUnaligned(fromByteOffset: 96, as: UInt32.self))
        let a1 = UInt32(littleEndian: block.loadUnaligned(fromByteOffset: 100, as: UInt32.self))
        let top = UInt32(littleEndian: block.loadUnaligned(fromByteOffset: 104, as: UInt32.self))
        let low = SIMD4<UInt32>(a0, a1, a0 &>> 4, a1 &>> 4) & 0x0F0F_0F0F
        let high = (SIMD4<UInt32>(repeating: top) &>> SIMD4(0, 2, 4, 6)) & 0x0303_0303
        return low | high &<< 4
    }

    /// The 16 bytes of four words as 16 lanes (lane i: byte i).
    @inline(__always)
    static func byteLanes(_ words: SIMD4<UInt32>) -> SIMD16<UInt32> {
        let spread = SIMD16<UInt32>(
            words[0], words[0], words[0], words[0], words[1], words[1], words[1], words[1],
            words[2], words[2], words[2], words[2], words[3], words[3], words[3], words[3])
        let shifts = SIMD16<UInt32>(0, 8, 16, 24, 0, 8, 16, 24, 0, 8, 16, 24, 0, 8, 16, 24)
        return (spread &>> shifts) & 0xFF
    }

    /// One row against one to four tokens with 16-bit products: per 32 elements (one j of one half) the 32
    /// code bytes give the even and the odd elements as the two bytes of 16-bit lanes, as the activations'
    /// even/odd order has them; pair sums into 32-bit lanes times the two groups' scales. Bounds: a 16-bit
    /// lane is at most 2 · 7 · 127; the 32-bit sums stay below 2²² (`wideFloat` converts them anyway).
    @inline(__always)
    static func lowBitRow(_ w: UnsafeRawPointer, _ x: QuantizedActivations, token: Int, count: Int, isQ3K: Bool)
        -> SIMD4<Float>
    {
        var sums = SIMD4<Float>()
        let blockBytes = isQ3K ? 110 : 84
        let codesStart = isQ3K ? 32 : 16
        let prefetching = StreamPrefetch.streams(token: token, count: count)
        for b in 0..<x.sizes.blocks {
            let block = w + b &* blockBytes
            if prefetching { StreamPrefetch.ahead(of: block, bytes: blockBytes) }
            let scaleBytes = unsafeBitCast(byteLanes(lowBitScaleWords(block, isQ3K: isQ3K)), to: SIMD16<Int32>.self)
            let scales: SIMD16<Int32> = isQ3K ? scaleBytes &- 32 : scaleBytes & 0x0F
            // Q3_K: lane k holds the third bits of elements 2k (low byte) and 2k + 1 (high byte) of each 32.
            let thirdBits = isQ3K ? block.loadUnaligned(as: SIMD16<UInt16>.self) : .zero
            var i0 = SIMD8<Int32>()
            var i1 = SIMD8<Int32>()
            var i2 = SIMD8<Int32>()
            var i3 = SIMD8<Int32>()
            for half in 0..<2 {
                let codesOffset: Int = codesStart &+ 32 &* half
                let codes = (block + codesOffset).loadUnaligned(as: SIMD16<UInt16>.self)
                for j in 0..<4 {
                    let shift = UInt16(2 &* j)
                    let evenShifted: SIMD16<UInt16> = codes &>> shift
                    let oddShifted: SIMD16<UInt16> = codes &>> (shift &+ 8)
                    var evenCodes: SIMD16<UInt16> = evenShifted & 0x0003
                    var oddCodes: SIMD16<UInt16> = oddShifted & 0x0003
                    if isQ3K {
                        let bit = UInt16(4 &* half &+ j)
                        evenCodes |= laneBit(thirdBits, bit, movedTo: 2)
                        oddCodes |= laneBit(thirdBits, bit &+ 8, movedTo: 2)
                    }
                    let even = unsafeBitCast(evenCodes, to: SIMD16<Int16>.self)
                    let odd = unsafeBitCast(oddCodes, to: SIMD16<Int16>.self)
                    let group = 8 &* half &+ 2 &* j
                    let scale = SIMD8<Int32>(
                        lowHalf: SIMD4(repeating: scales[group]), highHalf: SIMD4(repeating: scales[group &+ 1]))
                    let offset: Int = (b &* 256 &+ 128 &* half &+ 32 &* j) &* 2
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
            let d = Dequantize.half(block, isQ3K ? 108 : 80)
            let dmin = isQ3K ? 0 : Dequantize.half(block, 82)
            // Q3_K: the −4 offset, weighted by the scales; Q2_K: the mins.
            let offsetWeights: SIMD16<Int32> = isQ3K ? scales &* -4 : scaleBytes &>> 4
            @inline(__always) func finish(_ acc: SIMD8<Int32>, _ k: Int) -> Float {
                let token = token &+ k
                let yd = x.scales(token: token).load(fromByteOffset: b &* 4, as: Float.self)
                let groupOffset: Int = token &* x.sizes.groupsPerToken &+ b &* 16
                let groupSums = UnsafeRawPointer(x.groupSums + groupOffset).loadUnaligned(as: SIMD16<Int32>.self)
                let offset = Float((offsetWeights &* groupSums).wrappedSum())
                let dot: Float = LegacyKernels.horizontalSum(LegacyKernels.wideFloat(acc))
                return isQ3K ? (d * yd) * (dot + offset) : (d * yd) * dot - (dmin * yd) * offset
            }
            sums[0] += finish(i0, 0)
            if count > 1 { sums[1] += finish(i1, 1) }
            if count > 2 { sums[2] += finish(i2, 2) }
            if count > 3 { sums[3] += finish(i3, 3) }
        }
        return sums
    }

    /// One row with byte dot products (`ByteDotProduct`), as Q4_K's: per half super-block the 32 code bytes
    /// (and Q3_K's 32 hmask bytes) make two vectors of 64 unsigned codes in natural order, four to a 32-bit
    /// lane, so lanes 4g…4g + 3 of a vector are one 16-element group. Codes times values are summed in pairs
    /// into 16-bit lanes (at most 2 · 7 · 127), and those, times their group's scale, in pairs into 32-bit
    /// lanes over the whole super-block: one conversion per super-block and token. Bounds: four products of
    /// at most 2 · 2 · 7 · 127 · 32 per lane (Q2_K: 3 and 15): < 2²², exact in a float. The offset term —
    /// Q3_K's −4 · Σ_g sc_g · Σq_g, Q2_K's mins Σ_g m_g · Σq_g — takes the per-16 `groupSums`: exact integer
    /// products (< 2¹⁹), one float multiply-add per super-block and token.
    @inline(__always)
    static func lowBitRowBytes(
        _ w: UnsafeRawPointer, _ x: QuantizedActivations, token: Int, count: Int, isQ3K: Bool
    ) -> SIMD4<Float> {
        var dots = (SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>())
        var offsets = (SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>())
        // Right shifts that bring byte i / 4 of a word to the bottom of lane i.
        let quadShifts = SIMD16<UInt32>(0, 0, 0, 0, 8, 8, 8, 8, 16, 16, 16, 16, 24, 24, 24, 24)
        let blockBytes = isQ3K ? 110 : 84
        let codesStart = isQ3K ? 32 : 16
        let prefetching = StreamPrefetch.streams(token: token, count: count)
        for b in 0..<x.sizes.blocks {
            let block = w + b &* blockBytes
            if prefetching { StreamPrefetch.ahead(of: block, bytes: blockBytes) }
            let scaleWords = lowBitScaleWords(block, isQ3K: isQ3K)
            /// The scales of four groups (bytes of `word`), each in both 16-bit halves of its four lanes.
            @inline(__always) func laneScales(_ word: UInt32) -> SIMD16<UInt32> {
                let spread: SIMD16<UInt32> = SIMD16(repeating: word) &>> quadShifts
                let bytes: SIMD16<UInt32> = spread & 0xFF
                let centered: SIMD16<UInt32> = bytes &- 32
                let scales: SIMD16<UInt32> = isQ3K ? centered & 0xFFFF : bytes & 0x0F
                return scales &* 0x0001_0001
            }
            let thirdBits = isQ3K ? block.loadUnaligned(as: SIMD8<UInt32>.self) : .zero
            /// The 64 codes of elements 128h + 64v …, v < 2.
            @inline(__always) func codes(_ half: Int, _ v: Int) -> SIMD16<UInt32> {
                let codeBytes = (block + (codesStart &+ 32 &* half)).loadUnaligned(as: SIMD8<UInt32>.self)
                let first = UInt32(4 &* v)
                let low: SIMD8<UInt32> = codeBytes &>> first
                let high: SIMD8<UInt32> = codeBytes &>> (first &+ 2)
                let both = SIMD16<UInt32>(lowHalf: low, highHalf: high)
                var codes: SIMD16<UInt32> = both & 0x0303_0303
                if isQ3K {
                    // Elements 128h + 32j + l take bit 4h + j of hmask[l].
                    let bit = UInt32(4 &* half &+ 2 &* v)
                    let lowBits: SIMD8<UInt32> = thirdBits &>> bit
                    let highBits: SIMD8<UInt32> = thirdBits &>> (bit &+ 1)
                    let bits: SIMD16<UInt32> = SIMD16(lowHalf: lowBits, highHalf: highBits) & 0x0101_0101
                    codes |= bits &<< 2
                }
                return codes
            }
            let codes0 = codes(0, 0)
            let codes1 = codes(0, 1)
            let codes2 = codes(1, 0)
            let codes3 = codes(1, 1)
            let scale0 = laneScales(scaleWords[0])
            let scale1 = laneScales(scaleWords[1])
            let scale2 = laneScales(scaleWords[2])
            let scale3 = laneScales(scaleWords[3])
            let d = Dequantize.half(block, isQ3K ? 108 : 80)
            let offsetScale = isQ3K ? d : Dequantize.half(block, 82)
            let scaleBytes = unsafeBitCast(byteLanes(scaleWords), to: SIMD16<Int32>.self)
            // Q3_K: 4 · (sc − 32), subtracted; Q2_K: the mins.
            let fourTimesScales: SIMD16<Int32> = (scaleBytes &- 32) &* 4
            let mins: SIMD16<Int32> = scaleBytes &>> 4
            let offsetWeights = isQ3K ? fourTimesScales : mins
            @inline(__always) func accumulate(_ dot: inout SIMD16<Float>, _ offset: inout SIMD16<Float>, _ k: Int) {
                let t = token &+ k
                let y = x.bytes(token: t) + b &* 256
                @inline(__always) func values(_ at: Int) -> SIMD16<UInt32> {
                    y.loadUnaligned(fromByteOffset: at, as: SIMD16<UInt32>.self)
                }
                var sum = ByteDotProduct.accumulatePairs(.zero, ByteDotProduct.pairSums(codes0, values(0)), scale0)
                sum = ByteDotProduct.accumulatePairs(sum, ByteDotProduct.pairSums(codes1, values(64)), scale1)
                sum = ByteDotProduct.accumulatePairs(sum, ByteDotProduct.pairSums(codes2, values(128)), scale2)
                sum = ByteDotProduct.accumulatePairs(sum, ByteDotProduct.pairSums(codes3, values(192)), scale3)
                let yd = x.scales(token: t).load(fromByteOffset: b &* 4, as: Float.self)
                dot.addProduct(ByteDotProduct.exactFloat(sum), SIMD16(repeating: d * yd))
                let groupOffset: Int = t &* x.sizes.groupsPerToken &+ b &* 16
                let groupSums = UnsafeRawPointer(x.groupSums + groupOffset).loadUnaligned(as: SIMD16<Int32>.self)
                let weighted: SIMD16<Int32> = offsetWeights &* groupSums
                offset.addProduct(ByteDotProduct.exactFloat(weighted), SIMD16(repeating: offsetScale * yd))
            }
            accumulate(&dots.0, &offsets.0, 0)
            if count > 1 { accumulate(&dots.1, &offsets.1, 1) }
            if count > 2 { accumulate(&dots.2, &offsets.2, 2) }
            if count > 3 { accumulate(&dots.3, &offsets.3, 3) }
        }
        @inline(__always) func total(_ dot: SIMD16<Float>, _ offset: SIMD16<Float>) -> Float {
            Vector.halvingSum(dot) - Vector.halvingSum(offset)
        }
        var sums = SIMD4<Float>()
        sums[0] = total(dots.0, offsets.0)
        if count > 1 { sums[1] = total(dots.1, offsets.1) }
        if count > 2 { sums[2] = total(dots.2, offsets.2) }
        if count > 3 { sums[3] = total(dots.3, offsets.3) }
        return sums
    }
}
