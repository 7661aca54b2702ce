// Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 weights (32-element blocks) times Q8_0 / Q8_1 activations.
//
// [PURE_SIMD_OPS] The kernels use only loads, bit casts and lane-wise integer and float arithmetic on
// concrete SIMD types, which the standard library maps straight to LLVM vector instructions. Its generic
// conversions (`SIMD32<Int32>(truncatingIfNeeded:)`, …) are element loops that become vector code only if
// LLVM happens to inline them: measured, they stayed calls inside the loop in a package build (0.1 GB/s)
// and turned into shuffle storms in a whole-module one. Widening is done instead with masks and shifts
// on 16-bit lanes, products with 16-bit multiplies, and int → float with the 2²³ + 2²² bias trick.
//
// Two blocks of 4-bit codes fill one 256-bit vector of 16-bit lanes (four nibbles each); the
// activations are pre-arranged to match (`ActivationLayout.nibblePairs`), so a block pair costs four
// `vpmullw`. Each weight block is unpacked once for up to four tokens.
//
// The float steps differ from the reference's ([BLOCK_DOT_ORDER]) only in summation order: each row keeps
// eight float lanes and reduces them at the end.

/// A 32-element block type whose values are 4-bit codes (plus a fifth bit for Q5), with `y = d·code + m`
/// (Q4_1, Q5_1) or `y = d·(code − zeroPoint)` (Q4_0, Q5_0; `m` is then taken as `d` and the zero point is
/// folded into the activations' `s`).
protocol NibbleBlockFormat {
    static var blockBytes: Int { get }
    /// Offset of the 16 packed nibble bytes.
    static var nibblesOffset: Int { get }
    /// The block's float16 d (low half) and m-or-d (high half) as one 32-bit word.
    static func scaleWord(_ block: UnsafeRawPointer) -> UInt32
    /// Whether the block has a 32-bit word of fifth bits at offset `nibblesOffset − 4`.
    static var hasFifthBits: Bool { get }
}

enum Q4_0Format: NibbleBlockFormat {
    static var blockBytes: Int { 18 }
    static var nibblesOffset: Int { 2 }
    static var hasFifthBits: Bool { false }
    @inline(__always) static func scaleWord(_ block: UnsafeRawPointer) -> UInt32 {
        let d = UInt32(block.loadUnaligned(as: UInt16.self))
        return d | d &<< 16
    }
}

enum Q4_1Format: NibbleBlockFormat {
    static var blockBytes: Int { 20 }
    static var nibblesOffset: Int { 4 }
    static var hasFifthBits: Bool { false }
    @inline(__always) static func scaleWord(_ block: UnsafeRawPointer) -> UInt32 {
        block.loadUnaligned(as: UInt32.self)
    }
}

enum Q5_0Format: NibbleBlockFormat {
    static var blockBytes: Int { 22 }
    static var nibblesOffset: Int { 6 }
    static var hasFifthBits: Bool { true }
    @inline(__always) static func scaleWord(_ block: UnsafeRawPointer) -> UInt32 {
        let d = UInt32(block.loadUnaligned(as: UInt16.self))
        return d | d &<< 16
    }
}

enum Q5_1Format: NibbleBlockFormat {
    static var blockBytes: Int { 24 }
    static var nibblesOffset: Int { 8 }
    static var hasFifthBits: Bool { true }
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

    /// Rows `rows` for every token: tiles of four tokens share each unpacked block pair; the remaining
    /// tokens go one at a time.
    @inline(__always)
    static func nibbleRows<F: NibbleBlockFormat>(
        _ format: F.Type, _ job: LinearJob, _ x: QuantizedActivations, _ rows: Range<Int>
    ) {
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

    /// A pair of weight blocks unpacked: four vectors of codes (see `ActivationLayout.nibblePairs`), and
    /// the blocks' d and m (or d again) spread over the four lanes each block's sums land in.
    struct NibblePair {
        var c0, c1, c2, c3: SIMD16<Int16>
        var d: SIMD8<Float>
        var m: SIMD8<Float>
    }

    /// Blocks `2·pair` and `2·pair + 1`, or only the first (`single`, for an odd block count).
    @inline(__always)
    static func nibblePair<F: NibbleBlockFormat>(_ format: F.Type, _ w: UnsafeRawPointer, pair: Int, single: Bool)
        -> NibblePair
    {
        let a = w + (2 &* pair) &* F.blockBytes
        let b = a + F.blockBytes
        let low = (a + F.nibblesOffset).loadUnaligned(as: SIMD8<UInt16>.self)
        let codes = SIMD16(
            lowHalf: low, highHalf: single ? .zero : (b + F.nibblesOffset).loadUnaligned(as: SIMD8<UInt16>.self))
        var n0 = codes & 0x000F
        var n1 = (codes &>> 4) & 0x000F
        var n2 = (codes &>> 8) & 0x000F
        var n3 = codes &>> 12
        if F.hasFifthBits {
            let qhA = (a + (F.nibblesOffset &- 4)).loadUnaligned(as: UInt32.self)
            let qhB = single ? 0 : (b + (F.nibblesOffset &- 4)).loadUnaligned(as: UInt32.self)
            addFifthBits(&n0, &n1, &n2, &n3, qhA, qhB)
        }
        let words = SIMD2(F.scaleWord(a), single ? 0 : F.scaleWord(b))
        let dm = SIMD4<Float>(unsafeBitCast(words, to: SIMD4<Float16>.self))
        return NibblePair(
            c0: unsafeBitCast(n0, to: SIMD16<Int16>.self), c1: unsafeBitCast(n1, to: SIMD16<Int16>.self),
            c2: unsafeBitCast(n2, to: SIMD16<Int16>.self), c3: unsafeBitCast(n3, to: SIMD16<Int16>.self),
            d: SIMD8(dm[0], dm[0], dm[0], dm[0], dm[2], dm[2], dm[2], dm[2]),
            m: SIMD8(dm[1], dm[1], dm[1], dm[1], dm[3], dm[3], dm[3], dm[3]))
    }

    /// Adds one token's products with a block pair: `y` is the pair's 64 activation values, `s` its 16
    /// scale floats (d_A ×4, d_B ×4, s_A / 4 ×4, s_B / 4 ×4; see `QuantizedActivations.quantize`). The
    /// weights' m·s term is spread over the block's four lanes (÷ 4 is exact), so one accumulator suffices.
    @inline(__always)
    static func accumulate(_ p: NibblePair, _ y: UnsafeRawPointer, _ s: UnsafeRawPointer, _ acc: inout SIMD8<Float>) {
        let products =
            (p.c0 &* y.load(as: SIMD16<Int16>.self) &+ p.c1 &* y.load(fromByteOffset: 32, as: SIMD16<Int16>.self))
            &+ (p.c2 &* y.load(fromByteOffset: 64, as: SIMD16<Int16>.self)
                &+ p.c3 &* y.load(fromByteOffset: 96, as: SIMD16<Int16>.self))
        // Sums of four products of codes < 32 and |q| ≤ 127 fit in 16 bits.
        let lanes = narrowPairSums(products)
        acc.addProduct(p.d * s.load(as: SIMD8<Float>.self), exactFloat(lanes))
        acc.addProduct(p.m, s.load(fromByteOffset: 32, as: SIMD8<Float>.self))
    }

    @inline(__always)
    static func nibbleRow1<F: NibbleBlockFormat>(
        _ format: F.Type, _ w: UnsafeRawPointer, blocks: Int, _ x: QuantizedActivations, token: Int
    ) -> Float {
        var acc = SIMD8<Float>()
        let y = x.values(token: token)
        let s = x.scales(token: token)
        let pairs = blocks &>> 1
        var pair = 0
        while pair < pairs {
            let p = nibblePair(format, w, pair: pair, single: false)
            accumulate(p, y + pair &* 128, s + pair &* 64, &acc)
            pair &+= 1
        }
        if blocks & 1 == 1 {
            let p = nibblePair(format, w, pair: pair, single: true)
            accumulate(p, y + pair &* 128, s + pair &* 64, &acc)
        }
        return horizontalSum(acc)
    }

    @inline(__always)
    static func nibbleRow4<F: NibbleBlockFormat>(
        _ format: F.Type, _ w: UnsafeRawPointer, blocks: Int, _ x: QuantizedActivations, token: Int
    ) -> SIMD4<Float> {
        var acc0 = SIMD8<Float>()
        var acc1 = SIMD8<Float>()
        var acc2 = SIMD8<Float>()
        var acc3 = SIMD8<Float>()
        let y0 = x.values(token: token)
        let s0 = x.scales(token: token)
        let valueStride = x.sizes.valuesPerToken &* 2
        let scaleStride = x.sizes.scalesPerToken &* 4
        let pairs = (blocks &+ 1) &>> 1
        var pair = 0
        while pair < pairs {
            let p = nibblePair(format, w, pair: pair, single: 2 &* pair &+ 1 == blocks)
            let y = y0 + pair &* 128
            let s = s0 + pair &* 64
            accumulate(p, y, s, &acc0)
            accumulate(p, y + valueStride, s + scaleStride, &acc1)
            accumulate(p, y + 2 &* valueStride, s + 2 &* scaleStride, &acc2)
            accumulate(p, y + 3 &* valueStride, s + 3 &* scaleStride, &acc3)
            pair &+= 1
        }
        return SIMD4(horizontalSum(acc0), horizontalSum(acc1), horizontalSum(acc2), horizontalSum(acc3))
    }

    /// ORs the fifth bit (16) into each code: bit e of a block's `qh` belongs to its element e, and lane k
    /// of n0…n3 holds elements 2k, 2k + 16, 2k + 1, 2k + 17 (k < 8 block A, else block B).
    @inline(__always)
    static func addFifthBits(
        _ n0: inout SIMD16<UInt16>, _ n1: inout SIMD16<UInt16>, _ n2: inout SIMD16<UInt16>,
        _ n3: inout SIMD16<UInt16>, _ qhA: UInt32, _ qhB: UInt32
    ) {
        let low = SIMD16<UInt16>(
            lowHalf: SIMD8(repeating: UInt16(truncatingIfNeeded: qhA)),
            highHalf: SIMD8(repeating: UInt16(truncatingIfNeeded: qhB)))
        let high = SIMD16<UInt16>(
            lowHalf: SIMD8(repeating: UInt16(truncatingIfNeeded: qhA &>> 16)),
            highHalf: SIMD8(repeating: UInt16(truncatingIfNeeded: qhB &>> 16)))
        let even = SIMD16<UInt16>(0, 2, 4, 6, 8, 10, 12, 14, 0, 2, 4, 6, 8, 10, 12, 14)
        let odd = even &+ 1
        n0 |= ((low &>> even) &<< 4) & 0x10
        n1 |= ((high &>> even) &<< 4) & 0x10
        n2 |= ((low &>> odd) &<< 4) & 0x10
        n3 |= ((high &>> odd) &<< 4) & 0x10
    }

    // MARK: Q8_0

    @inline(never)
    static func q8_0(_ job: LinearJob, _ x: QuantizedActivations, _ rows: Range<Int>) {
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
        var b = 0
        while b < blocks {
            let block = w + b &* 34
            let packed = (block + 2).loadUnaligned(as: SIMD16<Int16>.self)
            let even = (packed &<< 8) &>> 8
            let odd = packed &>> 8
            let d = Dequantize.half(block, 0)
            @inline(__always) func accumulate(_ acc: inout SIMD8<Float>, _ k: Int) {
                let y = y0 + (k &* valueStride &+ b &* 64)
                let lanes = pairSums(
                    even &* y.load(as: SIMD16<Int16>.self) &+ odd &* y.load(fromByteOffset: 32, as: SIMD16<Int16>.self))
                let scale = d * (s0 + k &* scaleStride).load(fromByteOffset: b &* 4, as: Float.self)
                acc.addProduct(SIMD8(repeating: scale), exactFloat(lanes))
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
        return ((p32 &<< 16) &>> 16) &+ (p32 &>> 16)
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
    @inline(__always)
    static func wideFloat(_ v: SIMD8<Int32>) -> SIMD8<Float> {
        let high = exactFloat(v &>> 16)
        let low = exactFloat(v & 0xFFFF)
        return high * SIMD8(repeating: 65536) + low
    }

    /// Sum of eight lanes as a tree (`SIMD.sum()` adds them one by one).
    @inline(__always)
    static func horizontalSum(_ v: SIMD8<Float>) -> Float {
        let v4 = v.lowHalf + v.highHalf
        return (v4[0] + v4[2]) + (v4[1] + v4[3])
    }
}
