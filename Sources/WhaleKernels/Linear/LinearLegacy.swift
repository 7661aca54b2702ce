// Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 weights (32-element blocks) times Q8_0 / Q8_1 activations.
//
// Every block is turned into 32 unsigned bytes ("codes") and multiplied with the int8 activations by
// `dot` below, which LLVM compiles to one `vpdpbusd` (u8 × s8, AVX-512 VNNI) plus a horizontal add. Signed
// weights are shifted into unsigned range and the shift is taken back with the activations' block sum:
// Σ (c − z) · y = Σ c · y − z · Σ y, exact in integers. Q8_0 codes are `w ^ 0x80 = w + 128`.
//
// The float steps per block are exactly those of `Linear.reference` ([BLOCK_DOT_ORDER]) and each row's
// sum runs over blocks in order, so for these types `apply` and `reference` agree bit for bit.

/// How one 32-element weight block type turns into codes and a float contribution.
protocol LegacyBlockFormat {
    /// Bytes per block.
    static var blockBytes: Int { get }
    /// The block's 32 values in element order as unsigned codes (value + zero point).
    static func codes(_ block: UnsafeRawPointer) -> SIMD32<UInt8>
    /// The block's contribution to the row sum, given `dot = Σ code · y` (exact) and the activations' block.
    static func contribution(_ block: UnsafeRawPointer, dot: Int32, _ x: QuantizedActivations, _ index: Int) -> Float
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
        run(Q4_0Block.self, j, x, r)
    }
    @inline(never) static func q4_1(_ j: LinearJob, _ x: QuantizedActivations, _ r: Range<Int>) {
        run(Q4_1Block.self, j, x, r)
    }
    @inline(never) static func q5_0(_ j: LinearJob, _ x: QuantizedActivations, _ r: Range<Int>) {
        run(Q5_0Block.self, j, x, r)
    }
    @inline(never) static func q5_1(_ j: LinearJob, _ x: QuantizedActivations, _ r: Range<Int>) {
        run(Q5_1Block.self, j, x, r)
    }
    @inline(never) static func q8_0(_ j: LinearJob, _ x: QuantizedActivations, _ r: Range<Int>) {
        run(Q8_0Block.self, j, x, r)
    }

    /// Rows `rows` for every token: tokens in groups of four share each unpacked weight block.
    @inline(__always)
    static func run<F: LegacyBlockFormat>(_ format: F.Type, _ job: LinearJob, _ x: QuantizedActivations, _ rows: Range<Int>) {
        let blocks = job.columns / 32
        var t = 0
        while job.tokens - t >= 4 {
            for r in rows {
                let sums = row4(format, job.weights + r * job.rowBytes, blocks: blocks, x, token: t)
                job.output[t * job.rows + r] = sums.0
                job.output[(t + 1) * job.rows + r] = sums.1
                job.output[(t + 2) * job.rows + r] = sums.2
                job.output[(t + 3) * job.rows + r] = sums.3
            }
            t += 4
        }
        while t < job.tokens {
            var r = rows.lowerBound
            while rows.upperBound - r >= 2 {
                let sums = row2x1(format, job.weights + r * job.rowBytes, rowBytes: job.rowBytes, blocks: blocks, x, token: t)
                job.output[t * job.rows + r] = sums.0
                job.output[t * job.rows + r + 1] = sums.1
                r += 2
            }
            if r < rows.upperBound {
                job.output[t * job.rows + r] = row1(format, job.weights + r * job.rowBytes, blocks: blocks, x, token: t)
            }
            t += 1
        }
    }

    @inline(__always)
    static func row1<F: LegacyBlockFormat>(
        _ format: F.Type, _ w: UnsafeRawPointer, blocks: Int, _ x: QuantizedActivations, token: Int
    ) -> Float {
        let y = UnsafeRawPointer(x.values + token * x.layout.columns)
        let first = token * x.layout.blocksPerToken
        var sum: Float = 0
        var b = 0
        while b < blocks {
            let block = w + b &* F.blockBytes
            sum += F.contribution(block, dot: dot(F.codes(block), y + b &* 32), x, first &+ b)
            b &+= 1
        }
        return sum
    }

    /// Two adjacent rows, one token: two independent chains of float adds keep the core busy.
    @inline(__always)
    static func row2x1<F: LegacyBlockFormat>(
        _ format: F.Type, _ w: UnsafeRawPointer, rowBytes: Int, blocks: Int, _ x: QuantizedActivations, token: Int
    ) -> (Float, Float) {
        let y = UnsafeRawPointer(x.values + token * x.layout.columns)
        let first = token * x.layout.blocksPerToken
        let w1 = w + rowBytes
        var sum0: Float = 0
        var sum1: Float = 0
        var b = 0
        while b < blocks {
            let block0 = w + b &* F.blockBytes
            let block1 = w1 + b &* F.blockBytes
            let yb = y + b &* 32
            sum0 += F.contribution(block0, dot: dot(F.codes(block0), yb), x, first &+ b)
            sum1 += F.contribution(block1, dot: dot(F.codes(block1), yb), x, first &+ b)
            b &+= 1
        }
        return (sum0, sum1)
    }

    @inline(__always)
    static func row4<F: LegacyBlockFormat>(
        _ format: F.Type, _ w: UnsafeRawPointer, blocks: Int, _ x: QuantizedActivations, token: Int
    ) -> (Float, Float, Float, Float) {
        let columns = x.layout.columns
        let y0 = UnsafeRawPointer(x.values + token * columns)
        let y1 = y0 + columns
        let y2 = y1 + columns
        let y3 = y2 + columns
        let perToken = x.layout.blocksPerToken
        let first = token * perToken
        var s0: Float = 0
        var s1: Float = 0
        var s2: Float = 0
        var s3: Float = 0
        var b = 0
        while b < blocks {
            let block = w + b &* F.blockBytes
            let codes = F.codes(block)
            let offset = b &* 32
            let i = first &+ b
            s0 += F.contribution(block, dot: dot(codes, y0 + offset), x, i)
            s1 += F.contribution(block, dot: dot(codes, y1 + offset), x, i &+ perToken)
            s2 += F.contribution(block, dot: dot(codes, y2 + offset), x, i &+ 2 &* perToken)
            s3 += F.contribution(block, dot: dot(codes, y3 + offset), x, i &+ 3 &* perToken)
            b &+= 1
        }
        return (s0, s1, s2, s3)
    }

    /// Σ codes[i] · y[i] over 32 values: unsigned × signed bytes, widened and summed — `vpdpbusd` with VNNI.
    @inline(__always)
    static func dot(_ codes: SIMD32<UInt8>, _ y: UnsafeRawPointer) -> Int32 {
        let activations = y.load(as: SIMD32<Int8>.self)
        return (SIMD32<Int32>(truncatingIfNeeded: codes) &* SIMD32<Int32>(truncatingIfNeeded: activations))
            .wrappedSum()
    }

    /// 16 packed bytes → 32 nibbles: low nibbles are elements 0–15, high nibbles 16–31 (ggml's order).
    @inline(__always)
    static func nibbles(_ packed: UnsafeRawPointer) -> SIMD32<UInt8> {
        let raw = packed.loadUnaligned(as: SIMD16<UInt8>.self)
        let high = unsafeBitCast(unsafeBitCast(raw, to: SIMD8<UInt16>.self) &>> 4, to: SIMD16<UInt8>.self)
        return SIMD32(lowHalf: raw & 0x0F, highHalf: high & 0x0F)
    }

    /// The fifth bits of a Q5 block: byte i is 16 if bit i of `qh` is set, else 0.
    @inline(__always)
    static func fifthBits(_ qh: UInt32) -> SIMD32<UInt8> {
        // Multiplying a byte by 0x0101…01 copies it into all eight bytes; the mask keeps bit k in byte k.
        @inline(__always) func spread(_ byte: UInt32) -> UInt64 {
            (UInt64(byte & 0xFF) &* 0x0101_0101_0101_0101) & 0x8040_2010_0804_0201
        }
        let words = SIMD4<UInt64>(spread(qh), spread(qh >> 8), spread(qh >> 16), spread(qh >> 24))
        let bytes = unsafeBitCast(words, to: SIMD32<UInt8>.self)
        // A byte is 0 or a power of two ≤ 128: adding 127 sets bit 7 exactly when it is not 0.
        return ((bytes &+ 0x7F) & 0x80) &>> 3
    }
}

enum Q4_0Block: LegacyBlockFormat {
    static var blockBytes: Int { 18 }
    @inline(__always) static func codes(_ block: UnsafeRawPointer) -> SIMD32<UInt8> {
        LegacyKernels.nibbles(block + 2)
    }
    @inline(__always)
    static func contribution(_ block: UnsafeRawPointer, dot: Int32, _ x: QuantizedActivations, _ i: Int) -> Float {
        Float(dot &- 8 &* x.groupSums[i]) * Dequantize.half(block, 0) * x.scales[i]
    }
}

enum Q4_1Block: LegacyBlockFormat {
    static var blockBytes: Int { 20 }
    @inline(__always) static func codes(_ block: UnsafeRawPointer) -> SIMD32<UInt8> {
        LegacyKernels.nibbles(block + 4)
    }
    @inline(__always)
    static func contribution(_ block: UnsafeRawPointer, dot: Int32, _ x: QuantizedActivations, _ i: Int) -> Float {
        (Dequantize.half(block, 0) * x.scales[i]) * Float(dot) + Dequantize.half(block, 2) * x.offsets[i]
    }
}

enum Q5_0Block: LegacyBlockFormat {
    static var blockBytes: Int { 22 }
    @inline(__always) static func codes(_ block: UnsafeRawPointer) -> SIMD32<UInt8> {
        LegacyKernels.nibbles(block + 6) | LegacyKernels.fifthBits(block.loadUnaligned(fromByteOffset: 2, as: UInt32.self))
    }
    @inline(__always)
    static func contribution(_ block: UnsafeRawPointer, dot: Int32, _ x: QuantizedActivations, _ i: Int) -> Float {
        (Dequantize.half(block, 0) * x.scales[i]) * Float(dot &- 16 &* x.groupSums[i])
    }
}

enum Q5_1Block: LegacyBlockFormat {
    static var blockBytes: Int { 24 }
    @inline(__always) static func codes(_ block: UnsafeRawPointer) -> SIMD32<UInt8> {
        LegacyKernels.nibbles(block + 8) | LegacyKernels.fifthBits(block.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
    }
    @inline(__always)
    static func contribution(_ block: UnsafeRawPointer, dot: Int32, _ x: QuantizedActivations, _ i: Int) -> Float {
        (Dequantize.half(block, 0) * x.scales[i]) * Float(dot) + Dequantize.half(block, 2) * x.offsets[i]
    }
}

enum Q8_0Block: LegacyBlockFormat {
    static var blockBytes: Int { 34 }
    @inline(__always) static func codes(_ block: UnsafeRawPointer) -> SIMD32<UInt8> {
        block.loadUnaligned(fromByteOffset: 2, as: SIMD32<UInt8>.self) ^ 0x80
    }
    @inline(__always)
    static func contribution(_ block: UnsafeRawPointer, dot: Int32, _ x: QuantizedActivations, _ i: Int) -> Float {
        Float(dot &- 128 &* x.groupSums[i]) * (Dequantize.half(block, 0) * x.scales[i])
    }
}
