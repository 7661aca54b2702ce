import WhaleCore

#if arch(x86_64)
    import _Builtin_intrinsics.intel
#endif

// [INTERLEAVED_ROWS] Q4_0, Q4_1 and Q8_0 weights repacked at load into groups of 16 rows, so that one 512-bit
// byte dot product (`vpdpbusd`) multiplies four columns of sixteen rows by the same four activation values
// (broadcast): its sixteen 32-bit lanes are sixteen rows' partial sums, and a block's eight such products
// leave each lane holding its row's whole 32-element integer dot product. The float work — converting the
// sum, scaling it by the weight's and the activation's d, adding Q4_1's minimum term — is then done once per
// block for sixteen rows, instead of once per eight four-element lanes of one row in the file layout (which
// spent five float instructions per byte product, measured: 80 % of a SmolLM2 prompt's time in the Q4_1
// kernel). This is ik_llama.cpp's and llama.cpp's "repack" idea; the layout and kernels here are our own.
//
// Layout: the 16 rows of group g, block b (32 columns) are one "group block", the group's blocks in order
// (so group g starts at g · 16 · rowBytes and the matrix keeps its size):
// - d of rows 0…15 as float16 (32 bytes); Q4_1 then m of rows 0…15 (32 bytes);
// - codes: for chunk k, 64 bytes holding, for row r, four bytes at 4r.
//   Q8_0: chunk k (0…7) is the row's codes 4k…4k+3, stored + 128 (unsigned: `vpdpbusd` multiplies unsigned
//   weights by signed activations; the activations' block sums take the 128 back off).
//   Q4_0 / Q4_1: chunk k (0…3) is the row's packed bytes 4k…4k+3, whose low nibbles are elements 4k…4k+3
//   and high nibbles elements 16+4k…16+4k+3, so one 64-byte load unpacks into two products' weights.
//
// Summation: each block's integer sum is exact; per token the float steps are acc += (d_w·d_x)·sum
// (+ m_w·s_x for Q4_1), block after block, the same steps whatever else is in the batch — a token's result
// never depends on the token tile or thread split it was computed in (batch invariance). The order is not
// llama.cpp's, so results differ from it in the last bits (quality is judged by KL divergence, see the
// README's "Weight types").

/// How a `WeightMatrix` stores its rows.
public enum WeightLayout: Sendable, Equatable {
    /// The file's layout: row after row.
    case rows
    /// Groups of `InterleavedRows.groupRows` rows interleaved block by block ([INTERLEAVED_ROWS]).
    case interleaved
}

/// The row-interleaved layout of [INTERLEAVED_ROWS]: which matrices use it, repacking into it and reading
/// rows back out of it.
public enum InterleavedRows {
    /// Rows per interleaved group: one 32-bit lane each of a 512-bit product.
    public static let groupRows = 16

    /// Whether `Linear.apply` multiplies `type` faster in the interleaved layout on this build's CPU (its
    /// kernels need byte dot products, `ByteDotProduct`), for a matrix of `rows` rows (whole groups only).
    public static func isPreferred(_ type: DType, rows: Int) -> Bool {
        hasKernels && supports(type) && rows > 0 && rows % groupRows == 0
    }

    /// Whether this build has the interleaved kernels (x86-64 with AVX-512 VNNI, release builds).
    public static var hasKernels: Bool { ByteDotProduct.isAvailable }

    /// Types with an interleaved layout.
    public static func supports(_ type: DType) -> Bool {
        switch type {
        case .q4_0, .q4_1, .q8_0: true
        default: false
        }
    }

    /// Bytes before the codes in a group block: the float16 d (and m) of the 16 rows.
    static func scaleBytes(_ type: DType) -> Int { type == .q4_1 ? 64 : 32 }

    /// Bytes of one group block (16 rows × one block).
    static func groupBlockBytes(_ type: DType) -> Int { groupRows * type.byteCount(elements: 32)! }

    /// Where each part of a file-layout block is: its scales, then its code bytes.
    private static func blockParts(_ type: DType) -> (scales: Int, codes: Int) {
        switch type {
        case .q4_0: (2, 16)
        case .q4_1: (4, 16)
        case .q8_0: (2, 32)
        default: preconditionFailure("InterleavedRows: \(type) has no interleaved layout")
        }
    }

    /// Writes the interleaved form of `rows` file-layout rows (`rowBytes` each) from `source` to
    /// `destination` (same size). `groups` limits the work to those groups (for repacking in slices).
    static func pack(
        _ type: DType, rowBytes: Int, from source: UnsafeRawPointer, to destination: UnsafeMutableRawPointer,
        groups: Range<Int>
    ) {
        let blockBytes = type.byteCount(elements: 32)!
        let blocks = rowBytes / blockBytes
        let (scaleSize, codeSize) = blockParts(type)
        let groupBlock = groupBlockBytes(type)
        let codesStart = scaleBytes(type)
        let flip: UInt32 = type == .q8_0 ? 0x8080_8080 : 0
        for g in groups {
            let rows = source + g * groupRows * rowBytes
            let out = destination + g * groupRows * rowBytes
            for b in 0..<blocks {
                let target = out + b * groupBlock
                for r in 0..<groupRows {
                    let block = rows + r * rowBytes + b * blockBytes
                    for half in 0..<(scaleSize / 2) {
                        let value = block.loadUnaligned(fromByteOffset: 2 * half, as: UInt16.self)
                        target.storeBytes(of: value, toByteOffset: 32 * half + 2 * r, as: UInt16.self)
                    }
                    for k in 0..<(codeSize / 4) {
                        let word = block.loadUnaligned(fromByteOffset: scaleSize + 4 * k, as: UInt32.self) ^ flip
                        target.storeBytes(of: word, toByteOffset: codesStart + 64 * k + 4 * r, as: UInt32.self)
                    }
                }
            }
        }
    }

    /// Row `r`'s block `b` in the file layout (`type.byteCount(elements: 32)` bytes into `block`), read from
    /// an interleaved matrix at `data`.
    static func unpackBlock(
        _ type: DType, rowBytes: Int, data: UnsafeRawPointer, row r: Int, block b: Int,
        into block: UnsafeMutableRawPointer
    ) {
        let (scaleSize, codeSize) = blockParts(type)
        let group = data + (r / groupRows) * groupRows * rowBytes + b * groupBlockBytes(type)
        let lane = r % groupRows
        let codesStart = scaleBytes(type)
        let flip: UInt32 = type == .q8_0 ? 0x8080_8080 : 0
        for half in 0..<(scaleSize / 2) {
            let value = group.loadUnaligned(fromByteOffset: 32 * half + 2 * lane, as: UInt16.self)
            block.storeBytes(of: value, toByteOffset: 2 * half, as: UInt16.self)
        }
        for k in 0..<(codeSize / 4) {
            let word = group.loadUnaligned(fromByteOffset: codesStart + 64 * k + 4 * lane, as: UInt32.self) ^ flip
            block.storeBytes(of: word, toByteOffset: scaleSize + 4 * k, as: UInt32.self)
        }
    }

    /// Row `r` in the file layout (`rowBytes` bytes into `row`).
    static func unpackRow(
        _ type: DType, rowBytes: Int, data: UnsafeRawPointer, row r: Int, into row: UnsafeMutableRawPointer
    ) {
        let blockBytes = type.byteCount(elements: 32)!
        for b in 0..<(rowBytes / blockBytes) {
            unpackBlock(type, rowBytes: rowBytes, data: data, row: r, block: b, into: row + b * blockBytes)
        }
    }
}

// MARK: Kernels

/// `Linear.apply` for interleaved matrices ([INTERLEAVED_ROWS]); x86-64 with AVX-512 VNNI only.
enum InterleavedKernels {
    /// Rows `rows` (whole groups) for every token.
    static func rows(_ job: LinearJob, _ x: QuantizedActivations, rows: Range<Int>) {
        switch job.type {
        case .q4_0: q4_0(job, x, rows)
        case .q4_1: q4_1(job, x, rows)
        case .q8_0: q8_0(job, x, rows)
        default: preconditionFailure("InterleavedKernels: \(job.type) has no interleaved layout")
        }
    }

    // One non-generic entry point per type, so each gets its own fully specialized loop.
    @inline(never) static func q4_0(_ job: LinearJob, _ x: QuantizedActivations, _ rows: Range<Int>) {
        groups(job, x, rows, nibbles: true, hasMinimum: false, groupBlock: 288)
    }
    @inline(never) static func q4_1(_ job: LinearJob, _ x: QuantizedActivations, _ rows: Range<Int>) {
        groups(job, x, rows, nibbles: true, hasMinimum: true, groupBlock: 320)
    }
    @inline(never) static func q8_0(_ job: LinearJob, _ x: QuantizedActivations, _ rows: Range<Int>) {
        groups(job, x, rows, nibbles: false, hasMinimum: false, groupBlock: 544)
    }

    /// Every group of `rows` for every token: tiles of four tokens share each group block's unpacked codes,
    /// then the remaining tokens one at a time (constant counts, so each copy drops its per-token branches).
    @inline(__always)
    static func groups(
        _ job: LinearJob, _ x: QuantizedActivations, _ rows: Range<Int>, nibbles: Bool, hasMinimum: Bool,
        groupBlock: Int
    ) {
        let groupRows = InterleavedRows.groupRows
        var r = rows.lowerBound
        while r < rows.upperBound {
            let w = job.weights + r &* job.rowBytes
            let out = job.output + r
            var t = 0
            while job.tokens &- t >= 4 {
                tile(
                    w, x, token: t, count: 4, out: out, stride: job.rows, nibbles: nibbles, hasMinimum: hasMinimum,
                    groupBlock: groupBlock)
                t &+= 4
            }
            while t < job.tokens {
                tile(
                    w, x, token: t, count: 1, out: out, stride: job.rows, nibbles: nibbles, hasMinimum: hasMinimum,
                    groupBlock: groupBlock)
                t &+= 1
            }
            r &+= groupRows
        }
    }

    /// One group (16 rows at `w`) for tokens `token ..< token + count` (count ≤ 4): writes 16 floats per
    /// token at `out + t · stride`.
    @inline(__always)
    static func tile(
        _ w: UnsafeRawPointer, _ x: QuantizedActivations, token: Int, count: Int, out: UnsafeMutablePointer<Float>,
        stride: Int, nibbles: Bool, hasMinimum: Bool, groupBlock: Int
    ) {
        var accs = (SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>())
        let hasOffset = x.sizes.codeOffset != 0
        let scaleStride = hasMinimum || nibbles ? 8 : 4
        let codesStart = hasMinimum ? 64 : 32
        let blocks = x.sizes.blocks
        for b in 0..<blocks {
            let block = w + b &* groupBlock
            let c = block + codesStart
            // Chunk k's weights: sixteen rows × four columns (4k … 4k + 3).
            let codes:
                (
                    SIMD16<UInt32>, SIMD16<UInt32>, SIMD16<UInt32>, SIMD16<UInt32>, SIMD16<UInt32>, SIMD16<UInt32>,
                    SIMD16<UInt32>, SIMD16<UInt32>
                )
            if nibbles {
                let p0 = c.loadUnaligned(as: SIMD16<UInt32>.self)
                let p1 = c.loadUnaligned(fromByteOffset: 64, as: SIMD16<UInt32>.self)
                let p2 = c.loadUnaligned(fromByteOffset: 128, as: SIMD16<UInt32>.self)
                let p3 = c.loadUnaligned(fromByteOffset: 192, as: SIMD16<UInt32>.self)
                let mask = SIMD16<UInt32>(repeating: 0x0F0F_0F0F)
                codes = (
                    p0 & mask, p1 & mask, p2 & mask, p3 & mask, (p0 &>> 4) & mask, (p1 &>> 4) & mask,
                    (p2 &>> 4) & mask, (p3 &>> 4) & mask
                )
            } else {
                codes = (
                    c.loadUnaligned(as: SIMD16<UInt32>.self),
                    c.loadUnaligned(fromByteOffset: 64, as: SIMD16<UInt32>.self),
                    c.loadUnaligned(fromByteOffset: 128, as: SIMD16<UInt32>.self),
                    c.loadUnaligned(fromByteOffset: 192, as: SIMD16<UInt32>.self),
                    c.loadUnaligned(fromByteOffset: 256, as: SIMD16<UInt32>.self),
                    c.loadUnaligned(fromByteOffset: 320, as: SIMD16<UInt32>.self),
                    c.loadUnaligned(fromByteOffset: 384, as: SIMD16<UInt32>.self),
                    c.loadUnaligned(fromByteOffset: 448, as: SIMD16<UInt32>.self)
                )
            }
            let d = ByteDotProduct.halfToFloat(block.loadUnaligned(as: SIMD16<UInt16>.self))
            let m =
                hasMinimum
                ? ByteDotProduct.halfToFloat(block.loadUnaligned(fromByteOffset: 32, as: SIMD16<UInt16>.self)) : .zero
            @inline(__always) func accumulate(_ k: Int, _ acc: inout SIMD16<Float>) {
                let t = token &+ k
                let v = x.bytes(token: t) + b &* 32
                @inline(__always) func values(_ chunk: Int) -> SIMD16<UInt32> {
                    SIMD16(repeating: v.loadUnaligned(fromByteOffset: 4 &* chunk, as: UInt32.self))
                }
                // Two independent chains of four products; integer sums, so their split changes nothing.
                var even = SIMD16<Int32>(repeating: hasOffset ? x.blockSums(token: t)[b] : 0)
                var odd = SIMD16<Int32>()
                even = ByteDotProduct.accumulate(even, codes.0, values(0))
                odd = ByteDotProduct.accumulate(odd, codes.1, values(1))
                even = ByteDotProduct.accumulate(even, codes.2, values(2))
                odd = ByteDotProduct.accumulate(odd, codes.3, values(3))
                even = ByteDotProduct.accumulate(even, codes.4, values(4))
                odd = ByteDotProduct.accumulate(odd, codes.5, values(5))
                even = ByteDotProduct.accumulate(even, codes.6, values(6))
                odd = ByteDotProduct.accumulate(odd, codes.7, values(7))
                let s = x.scales(token: t) + b &* scaleStride
                let sum = ByteDotProduct.toFloat(even &+ odd)
                acc.addProduct(d * SIMD16(repeating: s.load(as: Float.self)), sum)
                if hasMinimum { acc.addProduct(m, SIMD16(repeating: s.load(fromByteOffset: 4, as: Float.self))) }
            }
            accumulate(0, &accs.0)
            if count > 1 { accumulate(1, &accs.1) }
            if count > 2 { accumulate(2, &accs.2) }
            if count > 3 { accumulate(3, &accs.3) }
        }
        @inline(__always) func store(_ k: Int, _ acc: SIMD16<Float>) {
            UnsafeMutableRawPointer(out + (token &+ k) &* stride).storeBytes(of: acc, as: SIMD16<Float>.self)
        }
        store(0, accs.0)
        if count > 1 { store(1, accs.1) }
        if count > 2 { store(2, accs.2) }
        if count > 3 { store(3, accs.3) }
    }
}
