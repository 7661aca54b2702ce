// Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 weights (32-element blocks) times Q8_0 / Q8_1 activations.
//
// [PURE_SIMD_OPS] The kernels use only loads, bit casts and lane-wise integer and float arithmetic on
// concrete SIMD types, which the standard library maps straight to LLVM vector instructions. Its generic
// conversions (`SIMD32<Int32>(truncatingIfNeeded:)`, …) are element loops that become vector code only if
// LLVM happens to inline them: measured, they stayed calls inside the loop in a package build (0.1 GB/s)
// and turned into shuffle storms in a whole-module one. Widening is done instead with masks and shifts
// on 16-bit lanes and products with 16-bit multiplies. The one conversion used, `SIMD8<Float>(SIMD8<Int32>)`,
// compiles to a single `vcvtdq2ps` here (scripts/bench-kernels.sh checks the kernels contain no calls —
// used in more places, it stopped being inlined) and measured faster than the 2²³ + 2²² bias trick.
//
// A block of 4-bit codes is unpacked into two 256-bit vectors of 16-bit lanes (even and odd elements);
// the activations are pre-arranged to match (`ActivationLayout.nibbleQuads`), so a block costs two
// `vpmullw` and one sum of adjacent lanes gives ggml's eight four-element lanes directly. Each weight block is
// unpacked once for up to four tokens.
//
// [X86_BLOCK_DOT] The float steps are those of llama.cpp's x86 (AVX2) `ggml_vec_dot_<type>_q8_<0|1>`, so
// results are bit-identical to it: per block, eight lanes each holding the exact integer sum of four
// consecutive products, `acc = fma(d_w·d_x, lanes, acc)`; for Q4_1 / Q5_1 a scalar `summs = fma(m_w, s_x,
// summs)` in block order; the row's value is `hsum(acc) + summs` with the SSE reduction order
// (`horizontalSum`). Bit-identity matters beyond tidiness: a 4-bit model amplifies a last-bit difference in
// any activation (through the next layer's 8-bit rounding) into logprob differences of 0.1 and more.

/// A 32-element block type whose values are 4-bit codes (plus a fifth bit for Q5), with `y = d·code + m`
/// (Q4_1, Q5_1: `hasMinimum`) or `y = d·(code − zeroPoint)` (Q4_0, Q5_0).
protocol NibbleBlockFormat {
    static var blockBytes: Int { get }
    /// Offset of the 16 packed nibble bytes.
    static var nibblesOffset: Int { get }
    /// The block's float16 d (low half) and m (high half; d again without a minimum) as one 32-bit word.
    static func scaleWord(_ block: UnsafeRawPointer) -> UInt32
    /// Whether the block has a 32-bit word of fifth bits at offset `nibblesOffset − 4`.
    static var hasFifthBits: Bool { get }
    static var hasMinimum: Bool { get }
    static var zeroPoint: Int16 { get }
}

enum Q4_0Format: NibbleBlockFormat {
    static var blockBytes: Int { 18 }
    static var nibblesOffset: Int { 2 }
    static var hasFifthBits: Bool { false }
    static var hasMinimum: Bool { false }
    static var zeroPoint: Int16 { 8 }
    @inline(__always) static func scaleWord(_ block: UnsafeRawPointer) -> UInt32 {
        let d = UInt32(block.loadUnaligned(as: UInt16.self))
        return d | d &<< 16
    }
}

enum Q4_1Format: NibbleBlockFormat {
    static var blockBytes: Int { 20 }
    static var nibblesOffset: Int { 4 }
    static var hasFifthBits: Bool { false }
    static var hasMinimum: Bool { true }
    static var zeroPoint: Int16 { 0 }
    @inline(__always) static func scaleWord(_ block: UnsafeRawPointer) -> UInt32 {
        block.loadUnaligned(as: UInt32.self)
    }
}

enum Q5_0Format: NibbleBlockFormat {
    static var blockBytes: Int { 22 }
    static var nibblesOffset: Int { 6 }
    static var hasFifthBits: Bool { true }
    static var hasMinimum: Bool { false }
    static var zeroPoint: Int16 { 16 }
    @inline(__always) static func scaleWord(_ block: UnsafeRawPointer) -> UInt32 {
        let d = UInt32(block.loadUnaligned(as: UInt16.self))
        return d | d &<< 16
    }
}

enum Q5_1Format: NibbleBlockFormat {
    static var blockBytes: Int { 24 }
    static var nibblesOffset: Int { 8 }
    static var hasFifthBits: Bool { true }
    static var hasMinimum: Bool { true }
    static var zeroPoint: Int16 { 0 }
    @inline(__always) static func scaleWord(_ block: UnsafeRawPointer) -> UInt32 {
        block.loadUnaligned(as: UInt32.self)
    }
}

enum LegacyKernels {
    static func rows(_ job: LinearJob, _ x: QuantizedActivations, rows: Range<Int>) {
        switch job.type {
        case .q4_0: q4_0(job, x, rows)
        case .q4_1: q4_1(job, x, rows)
        case .q5_0: q5_0(job, x, rows)
        case .q5_1: q5_1(job, x, rows)
        case .q8_0: q8_0(job, x, rows)
        default: preconditionFailure(Linear.unsupportedMessage(job.type))
        }
    }

    // One non-generic entry point per type, so each gets its own fully specialized loop.
    @inline(never) static func q4_0(_ j: LinearJob, _ x: QuantizedActivations, _ r: Range<Int>) {
        nibbleRows(Q4_0Format.self, j, x, r)
    }
    @inline(never) static func q4_1(_ j: LinearJob, _ x: QuantizedActivations, _ r: Range<Int>) {
        nibbleRows(Q4_1Format.self, j, x, r)
    }
    @inline(never) static func q5_0(_ j: LinearJob, _ x: QuantizedActivations, _ r: Range<Int>) {
        nibbleRows(Q5_0Format.self, j, x, r)
    }
    @inline(never) static func q5_1(_ j: LinearJob, _ x: QuantizedActivations, _ r: Range<Int>) {
        nibbleRows(Q5_1Format.self, j, x, r)
    }

    // MARK: Nibble blocks

    /// Rows `rows` for every token: tiles of four tokens share each unpacked block; the remaining tokens go
    /// one at a time.
    @inline(__always)
    static func nibbleRows<F: NibbleBlockFormat>(
        _ format: F.Type, _ job: LinearJob, _ x: QuantizedActivations, _ rows: Range<Int>
    ) {
        if x.sizes.byteValues {
            job.tokenTiles(rows) { w, token, count in
                byteRow(
                    w, blockBytes: F.blockBytes, scaleStride: 8, hasMinimum: F.hasMinimum, x, token: token,
                    count: count, codes: { byteCodes(format, $0) },
                    scales: { SIMD2<Float>(unsafeBitCast(F.scaleWord($0), to: SIMD2<Float16>.self)) })
            }
            return
        }
        let blocks = x.sizes.blocks
        var t = 0
        while job.tokens &- t >= 4 {
            for r in rows {
                let sums = nibbleRow4(format, job.weights + r &* job.rowBytes, blocks: blocks, x, token: t)
                for k in 0..<4 { job.output[(t &+ k) &* job.rows &+ r] = sums[k] }
            }
            t &+= 4
        }
        while t < job.tokens {
            for r in rows {
                job.output[t &* job.rows &+ r] = nibbleRow1(
                    format, job.weights + r &* job.rowBytes, blocks: blocks, x, token: t)
            }
            t &+= 1
        }
    }

    /// One weight block unpacked (see `ActivationLayout.nibbleQuads`): 16-bit lane k of `c0` holds the code of
    /// element 2k (k < 8) or 16 + 2(k − 8), of `c1` the next element — minus the zero point; and the block's
    /// d and m.
    struct NibbleBlock {
        var c0, c1: SIMD16<Int16>
        var d, m: Float
    }

    @inline(__always)
    static func nibbleBlock<F: NibbleBlockFormat>(_ format: F.Type, _ w: UnsafeRawPointer, block b: Int) -> NibbleBlock
    {
        let a = w + b &* F.blockBytes
        // Byte k holds element k (low nibble) and k + 16 (high nibble); word k holds bytes 2k, 2k + 1.
        let words = (a + F.nibblesOffset).loadUnaligned(as: SIMD8<UInt16>.self)
        let v = SIMD16<UInt16>(lowHalf: words, highHalf: words &>> 4)
        var c0: SIMD16<UInt16> = v & 0x000F
        var c1: SIMD16<UInt16> = (v &>> 8) & 0x000F
        if F.hasFifthBits {
            // Bit e of qh is element e's fifth bit: lanes k < 8 read its low half, the others its high half.
            let qh = (a + (F.nibblesOffset &- 4)).loadUnaligned(as: UInt32.self)
            let halves = SIMD16<UInt16>(
                lowHalf: SIMD8(repeating: UInt16(truncatingIfNeeded: qh)),
                highHalf: SIMD8(repeating: UInt16(truncatingIfNeeded: qh &>> 16)))
            let even = SIMD16<UInt16>(0, 2, 4, 6, 8, 10, 12, 14, 0, 2, 4, 6, 8, 10, 12, 14)
            let odd: SIMD16<UInt16> = even &+ 1
            let fifth0: SIMD16<UInt16> = ((halves &>> even) &<< 4) & 0x10
            let fifth1: SIMD16<UInt16> = ((halves &>> odd) &<< 4) & 0x10
            c0 |= fifth0
            c1 |= fifth1
        }
        let dm = SIMD2<Float>(unsafeBitCast(F.scaleWord(a), to: SIMD2<Float16>.self))
        let zero = SIMD16<Int16>(repeating: F.zeroPoint)
        return NibbleBlock(
            c0: unsafeBitCast(c0, to: SIMD16<Int16>.self) &- zero,
            c1: unsafeBitCast(c1, to: SIMD16<Int16>.self) &- zero,
            d: dm[0], m: dm[1])
    }

    /// Adds one token's products with one block ([X86_BLOCK_DOT]): `y` is the block's 32 activation values,
    /// `s` its two scale floats (d, s; see `QuantizedActivations.quantize`).
    @inline(__always)
    static func accumulate<F: NibbleBlockFormat>(
        _ format: F.Type, _ block: NibbleBlock, _ y: UnsafeRawPointer, _ s: UnsafeRawPointer,
        _ acc: inout SIMD8<Float>, _ summs: inout Float
    ) {
        // Two products of |code| < 32 and |q| ≤ 127 per lane, four per pair of lanes: all fit in 16 bits.
        let products: SIMD16<Int16> =
            block.c0 &* y.load(as: SIMD16<Int16>.self) &+ block.c1 &* y.load(fromByteOffset: 32, as: SIMD16<Int16>.self)
        let scales = s.load(as: SIMD2<Float>.self)
        acc.addProduct(SIMD8(repeating: block.d * scales[0]), SIMD8<Float>(narrowPairSums(products)))
        if F.hasMinimum { summs.addProduct(block.m, scales[1]) }
    }

    @inline(__always)
    static func nibbleRow1<F: NibbleBlockFormat>(
        _ format: F.Type, _ w: UnsafeRawPointer, blocks: Int, _ x: QuantizedActivations, token: Int
    ) -> Float {
        var acc = SIMD8<Float>()
        var summs: Float = 0
        let y = x.values(token: token)
        let s = x.scales(token: token)
        if StreamPrefetch.streams(token: token, count: 1) { StreamPrefetch.ahead(of: w, bytes: blocks &* F.blockBytes) }
        for b in 0..<blocks {
            accumulate(format, nibbleBlock(format, w, block: b), y + b &* 64, s + b &* 8, &acc, &summs)
        }
        return horizontalSum(acc) + summs
    }

    @inline(__always)
    static func nibbleRow4<F: NibbleBlockFormat>(
        _ format: F.Type, _ w: UnsafeRawPointer, blocks: Int, _ x: QuantizedActivations, token: Int
    ) -> SIMD4<Float> {
        var acc0 = SIMD8<Float>()
        var acc1 = SIMD8<Float>()
        var acc2 = SIMD8<Float>()
        var acc3 = SIMD8<Float>()
        var summs0: Float = 0
        var summs1: Float = 0
        var summs2: Float = 0
        var summs3: Float = 0
        let y0 = x.values(token: token)
        let s0 = x.scales(token: token)
        let valueStride = x.sizes.valuesPerToken &* 2
        let scaleStride = x.sizes.scalesPerToken &* 4
        for b in 0..<blocks {
            let block = nibbleBlock(format, w, block: b)
            let y = y0 + b &* 64
            let s = s0 + b &* 8
            accumulate(format, block, y, s, &acc0, &summs0)
            accumulate(format, block, y + valueStride, s + scaleStride, &acc1, &summs1)
            accumulate(format, block, y + 2 &* valueStride, s + 2 &* scaleStride, &acc2, &summs2)
            accumulate(format, block, y + 3 &* valueStride, s + 3 &* scaleStride, &acc3, &summs3)
        }
        return SIMD4(
            horizontalSum(acc0) + summs0, horizontalSum(acc1) + summs1, horizontalSum(acc2) + summs2,
            horizontalSum(acc3) + summs3)
    }

    // MARK: Q8_0

    @inline(never)
    static func q8_0(_ job: LinearJob, _ x: QuantizedActivations, _ rows: Range<Int>) {
        if x.sizes.byteValues {
            // Signed codes read as unsigned with the top bit flipped: code + 128 (`ActivationLayout.codeOffset`).
            job.tokenTiles(rows) { w, token, count in
                byteRow(
                    w, blockBytes: 34, scaleStride: 4, hasMinimum: false, x, token: token, count: count,
                    codes: { ($0 + 2).loadUnaligned(as: SIMD8<UInt32>.self) ^ 0x8080_8080 },
                    scales: { SIMD2(Dequantize.half($0, 0), 0) })
            }
            return
        }
        var t = 0
        while t < job.tokens {
            let count = min(4, job.tokens &- t)
            for r in rows {
                let sums = q8_0Row(job.weights + r &* job.rowBytes, blocks: x.sizes.blocks, x, token: t, count: count)
                for k in 0..<count { job.output[(t &+ k) &* job.rows &+ r] = sums[k] }
            }
            t &+= count
        }
    }

    /// block_q8_0 (34 bytes): d (f16), 32 int8. Activations in even/odd order.
    @inline(__always)
    static func q8_0Row(_ w: UnsafeRawPointer, blocks: Int, _ x: QuantizedActivations, token: Int, count: Int)
        -> SIMD4<Float>
    {
        var acc0 = SIMD8<Float>()
        var acc1 = SIMD8<Float>()
        var acc2 = SIMD8<Float>()
        var acc3 = SIMD8<Float>()
        let y0 = x.values(token: token)
        let s0 = x.scales(token: token)
        let valueStride = x.sizes.valuesPerToken &* 2
        let scaleStride = x.sizes.scalesPerToken &* 4
        if StreamPrefetch.streams(token: token, count: count) { StreamPrefetch.ahead(of: w, bytes: blocks &* 34) }
        var b = 0
        while b < blocks {
            let block = w + b &* 34
            let packed = (block + 2).loadUnaligned(as: SIMD16<Int16>.self)
            let even: SIMD16<Int16> = (packed &<< 8) &>> 8
            let odd: SIMD16<Int16> = packed &>> 8
            let d = Dequantize.half(block, 0)
            @inline(__always) func accumulate(_ acc: inout SIMD8<Float>, _ k: Int) {
                let valueOffset: Int = k &* valueStride &+ b &* 64
                let y = y0 + valueOffset
                let products: SIMD16<Int16> =
                    even &* y.load(as: SIMD16<Int16>.self) &+ odd &* y.load(fromByteOffset: 32, as: SIMD16<Int16>.self)
                let lanes = pairSums(products)
                let scaleOffset: Int = k &* scaleStride
                let scale = d * (s0 + scaleOffset).load(fromByteOffset: b &* 4, as: Float.self)
                acc.addProduct(SIMD8(repeating: scale), SIMD8<Float>(lanes))
            }
            accumulate(&acc0, 0)
            if count > 1 { accumulate(&acc1, 1) }
            if count > 2 { accumulate(&acc2, 2) }
            if count > 3 { accumulate(&acc3, 3) }
            b &+= 1
        }
        return SIMD4(horizontalSum(acc0), horizontalSum(acc1), horizontalSum(acc2), horizontalSum(acc3))
    }

    // MARK: Shared helpers

    /// Adjacent 16-bit lanes summed into 32-bit lanes (sign-extending both halves).
    @inline(__always)
    static func pairSums(_ p: SIMD16<Int16>) -> SIMD8<Int32> {
        let p32 = unsafeBitCast(p, to: SIMD8<Int32>.self)
        let low: SIMD8<Int32> = (p32 &<< 16) &>> 16
        let high: SIMD8<Int32> = p32 &>> 16
        return low &+ high
    }

    /// `pairSums` for lanes whose pair sums fit in 16 bits (|lo + hi| < 2¹⁵), one operation cheaper: the
    /// high half of p · 0x10001 is lo + hi (the low half only adds carries below bit 16).
    @inline(__always)
    static func narrowPairSums(_ p: SIMD16<Int16>) -> SIMD8<Int32> {
        (unsafeBitCast(p, to: SIMD8<Int32>.self) &* 0x0001_0001) &>> 16
    }

    /// Int32 → Float, exact for |v| < 2²²: adding 2²³ + 2²² puts v in the mantissa of a float.
    @inline(__always)
    static func exactFloat(_ v: SIMD8<Int32>) -> SIMD8<Float> {
        unsafeBitCast(v &+ 0x4B40_0000, to: SIMD8<Float>.self) - SIMD8(repeating: 12_582_912)
    }

    /// Int32 → Float for any value (rounded once): the high and low 16 bits converted exactly, then joined.
    /// (The K-quant kernels use it: with them also calling `SIMD8<Float>(SIMD8<Int32>)`, the compiler stopped
    /// inlining that conversion anywhere.)
    @inline(__always)
    static func wideFloat(_ v: SIMD8<Int32>) -> SIMD8<Float> {
        let high = exactFloat(v &>> 16)
        let low = exactFloat(v & 0xFFFF)
        return high * SIMD8(repeating: 65536) + low
    }

    /// Sum of eight lanes in x86's order (`Ops.horizontalSum`; `SIMD.sum()` adds them one by one).
    @inline(__always)
    static func horizontalSum(_ v: SIMD8<Float>) -> Float { Ops.horizontalSum(v) }
}

// MARK: Byte kernels (AVX-512 VNNI)

extension LegacyKernels {
    /// One block's 32 codes as unsigned bytes in element order (word k: elements 4k … 4k + 3), the fifth bit
    /// included for Q5; the weight is d · (code − zero point) (+ m).
    @inline(__always)
    static func byteCodes<F: NibbleBlockFormat>(_ format: F.Type, _ a: UnsafeRawPointer) -> SIMD8<UInt32> {
        // Byte k holds element k (low nibble) and k + 16 (high nibble).
        let packed = (a + F.nibblesOffset).loadUnaligned(as: SIMD4<UInt32>.self)
        let low: SIMD4<UInt32> = packed & 0x0F0F_0F0F
        let high: SIMD4<UInt32> = (packed &>> 4) & 0x0F0F_0F0F
        var codes = SIMD8(lowHalf: low, highHalf: high)
        if F.hasFifthBits {
            // Bit e of qh is element e's fifth bit: nibble k of qh belongs to word k; multiplying a 4-bit
            // value by 1 + 2⁷ + 2¹⁴ + 2²¹ puts its bit j at bit 8j (the copies do not overlap).
            let qh = (a + (F.nibblesOffset &- 4)).loadUnaligned(as: UInt32.self)
            let shifts = SIMD8<UInt32>(0, 4, 8, 12, 16, 20, 24, 28)
            let nibbles: SIMD8<UInt32> = (SIMD8(repeating: qh) &>> shifts) & 0xF
            let bits: SIMD8<UInt32> = (nibbles &* 0x0020_4081) & 0x0101_0101
            codes |= bits &<< 4
        }
        return codes
    }

    /// One row for up to four tokens with byte dot products, two blocks per 64-byte product. Each product
    /// starts from the activations' `laneSums` (−offset · Σ of four values) when the type has a code offset,
    /// so its 32-bit lanes are exactly ggml's four-element lanes of (code − offset) · q; the float steps
    /// are then those of [X86_BLOCK_DOT], block by block, so results stay bit-identical to llama.cpp.
    /// `scaleStride`: bytes of activation scales per block (8: d and s, 4: d); `scales(block)`: the weight
    /// block's d and m.
    @inline(__always)
    static func byteRow(
        _ w: UnsafeRawPointer, blockBytes: Int, scaleStride: Int, hasMinimum: Bool, _ x: QuantizedActivations,
        token: Int, count: Int, codes: (UnsafeRawPointer) -> SIMD8<UInt32>, scales: (UnsafeRawPointer) -> SIMD2<Float>
    ) -> SIMD4<Float> {
        var accs = (SIMD8<Float>(), SIMD8<Float>(), SIMD8<Float>(), SIMD8<Float>())
        var summs = (Float(0), Float(0), Float(0), Float(0))
        let hasOffset = x.sizes.codeOffset != 0
        /// Blocks b and b + 1 (`both`) or b alone.
        @inline(__always) func blockPair(_ b: Int, both: Bool) {
            let first = w + b &* blockBytes
            let second = first + blockBytes
            let secondCodes: SIMD8<UInt32> = both ? codes(second) : .zero
            let unsigned = SIMD16(lowHalf: codes(first), highHalf: secondCodes)
            let firstScales = scales(first)
            let secondScales: SIMD2<Float> = both ? scales(second) : .zero
            @inline(__always) func accumulate(_ acc: inout SIMD8<Float>, _ summ: inout Float, _ k: Int) {
                let t = token &+ k
                let values = (x.bytes(token: t) + b &* 32).loadUnaligned(as: SIMD16<UInt32>.self)
                var start = SIMD16<Int32>()
                if hasOffset {
                    let sums = x.laneSums(token: t) + b &* 32
                    let secondSums: SIMD8<Int32> =
                        both ? sums.loadUnaligned(fromByteOffset: 32, as: SIMD8<Int32>.self) : .zero
                    start = SIMD16(lowHalf: sums.loadUnaligned(as: SIMD8<Int32>.self), highHalf: secondSums)
                }
                let lanes = ByteDotProduct.exactFloat(ByteDotProduct.accumulate(start, unsigned, values))
                let s = x.scales(token: t) + b &* scaleStride
                acc.addProduct(SIMD8(repeating: firstScales[0] * s.load(as: Float.self)), lanes.lowHalf)
                if hasMinimum { summ.addProduct(firstScales[1], s.load(fromByteOffset: 4, as: Float.self)) }
                if both {
                    let next = s + scaleStride
                    acc.addProduct(SIMD8(repeating: secondScales[0] * next.load(as: Float.self)), lanes.highHalf)
                    if hasMinimum { summ.addProduct(secondScales[1], next.load(fromByteOffset: 4, as: Float.self)) }
                }
            }
            accumulate(&accs.0, &summs.0, 0)
            if count > 1 { accumulate(&accs.1, &summs.1, 1) }
            if count > 2 { accumulate(&accs.2, &summs.2, 2) }
            if count > 3 { accumulate(&accs.3, &summs.3, 3) }
        }
        let blocks = x.sizes.blocks
        if StreamPrefetch.streams(token: token, count: count) {
            StreamPrefetch.ahead(of: w, bytes: blocks &* blockBytes)
        }
        var b = 0
        while blocks &- b >= 2 {
            blockPair(b, both: true)
            b &+= 2
        }
        if b < blocks { blockPair(b, both: false) }
        var sums = SIMD4<Float>()
        sums[0] = horizontalSum(accs.0) + summs.0
        if count > 1 { sums[1] = horizontalSum(accs.1) + summs.1 }
        if count > 2 { sums[2] = horizontalSum(accs.2) + summs.2 }
        if count > 3 { sums[3] = horizontalSum(accs.3) + summs.3 }
        return sums
    }
}
