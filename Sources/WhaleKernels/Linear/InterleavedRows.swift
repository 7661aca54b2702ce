import WhaleCore

#if arch(x86_64)
    import _Builtin_intrinsics.intel
#endif

// [INTERLEAVED_ROWS] Q4_0, Q4_1, Q5_0, Q8_0, Q4_K and Q6_K weights repacked at load into groups of 16 rows, so that
// one 512-bit byte dot product (`vpdpbusd`) multiplies four columns of sixteen rows by the same four
// activation values (broadcast): its sixteen 32-bit lanes are sixteen rows' partial sums, and a block's
// products leave each lane holding its row's whole integer dot product for the block (or, for the K-quants,
// for one 32- or 16-element group, then multiplied by the group's scale, all in 32-bit integers). The float
// work — converting the sum, scaling it by the weight's and the activation's d, the minimum term of Q4_1 and
// Q4_K — is then done once per block for sixteen rows, instead of once per eight four-element lanes of one
// row in the file layout (which spent five float instructions per byte product, measured: 80 % of a SmolLM2
// prompt's time in the Q4_1 kernel). This is ik_llama.cpp's and llama.cpp's "repack" idea; the layout and
// kernels here are our own.
//
// Layout: the 16 rows of group g, block b (32 columns, or a 256-column K-quant super-block) are one "group
// block", the group's blocks in order (so group g starts at g · 16 · rowBytes and the matrix keeps its
// size). A file block is split into float16 values and 32-bit words (`InterleavedRows.BlockForm`); in the
// group block each float16 value is 16 rows side by side (32 bytes), each word 16 rows side by side (64
// bytes, row r at 4r), so one load is one part of the block for all 16 rows:
// - Q4_0 / Q8_0: d, then the codes' words; Q4_1: d, m, then the words. Q8_0's codes are stored + 128
//   (unsigned: `vpdpbusd` multiplies unsigned weights by signed activations; the activations' block sums
//   take the 128 back off). A Q4_0 / Q4_1 word k (0…3) holds elements 4k…4k+3 in its low nibbles and
//   16+4k…16+4k+3 in its high ones, so one 64-byte load unpacks into two products' weights.
// - Q5_0: d, the word of fifth bits (qh), then the four words of nibbles as Q4_0's. The 32 bits of qh are
//   transposed at packing (`Q5HighBits`) so that each of the eight four-element chunks finds its four fifth
//   bits one per byte at the same bit position: one shift and one mask per chunk put them at bit 4 of the
//   bytes (DeepSeek Q4_K_M files store `attn_k_b` in Q5_0: 128-column rows that the file layout's kernel
//   multiplied at a quarter of the memory's speed).
// - Q4_K: the file's 36 words in order — (d, dmin), the three words of 6-bit scales and mins, 32 of codes.
// - Q6_K: its 52 words (ql, qh, scales) in the order the kernel reads them (`InterleavedRows.Q6KSlots`),
//   then d: in file order a decode step read each block out of order and ran at a third of the memory's speed.
//
// Summation: each block's (or group's) integer sum is exact; per token the float steps are
// acc += (d_w·d_x)·sum (+ the minimum term), block after block, the same steps whatever else is in the batch —
// a token's result never depends on the token tile or thread split it was computed in (batch invariance). The
// order is not llama.cpp's, so results differ from it in the last bits (quality is judged by KL divergence,
// see the README's "Weight types").

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
        case .q4_0, .q4_1, .q5_0, .q8_0, .q4_K, .q6_K: true
        default: false
        }
    }

    /// How a file-layout block is split for interleaving: `leadingHalves` float16 values first (d, and m
    /// for Q4_1), then `words` 32-bit words, then `trailingHalves` float16 values (Q6_K's d). In a group
    /// block, half h of row r is at 32h + 2r, word k of row r at 32 · leadingHalves + 64k + 4r, and the
    /// trailing half after the words: one 64-byte load is one part of the block for all 16 rows.
    struct BlockForm {
        let leadingHalves: Int
        let words: Int
        let trailingHalves: Int
        /// XOR-ed into every word (Q8_0's int8 codes become unsigned, + 128).
        let flip: UInt32

        init(_ type: DType) {
            self.type = type
            switch type {
            case .q4_0: (leadingHalves, words, trailingHalves, flip) = (1, 4, 0, 0)
            case .q4_1: (leadingHalves, words, trailingHalves, flip) = (2, 4, 0, 0)
            // qh (transposed, `Q5HighBits`), then the four words of nibbles.
            case .q5_0: (leadingHalves, words, trailingHalves, flip) = (1, 5, 0, 0)
            case .q8_0: (leadingHalves, words, trailingHalves, flip) = (1, 8, 0, 0x8080_8080)
            // d and dmin are one word; then the 12 bytes of scales and mins, then the 128 code bytes.
            case .q4_K: (leadingHalves, words, trailingHalves, flip) = (0, 36, 0, 0)
            // ql (32 words), qh (16), the 16 int8 scales (4), then d.
            case .q6_K: (leadingHalves, words, trailingHalves, flip) = (0, 52, 1, 0)
            default: preconditionFailure("InterleavedRows: \(type) has no interleaved layout")
            }
        }

        /// Where word 0 starts in a group block.
        var wordsStart: Int { 32 * leadingHalves }
        let type: DType

        /// The 64-byte slot of file word `k` among the group block's words: `k` itself, except for Q6_K,
        /// whose words are stored in the order its kernel first reads them (`Q6KSlots`), so that a decode
        /// step streams each group block front to back — out of order, the CPU's prefetchers fell behind
        /// (measured: 9 GB/s per core instead of 25 for Q4_K's in-order blocks).
        @inline(__always)
        func slot(_ k: Int) -> Int {
            guard type == .q6_K else { return k }
            switch k {
            case 0..<8: return Q6KSlots.low(half: 0, part: 0, word: k)
            case 8..<16: return Q6KSlots.low(half: 0, part: 1, word: k - 8)
            case 16..<24: return Q6KSlots.low(half: 1, part: 0, word: k - 16)
            case 24..<32: return Q6KSlots.low(half: 1, part: 1, word: k - 24)
            case 32..<48: return Q6KSlots.high(half: (k - 32) / 8, word: (k - 32) % 8)
            default: return Q6KSlots.scales(word: k - 48)
            }
        }
    }

    /// Where Q6_K's words are in a group block: per half h of the super-block (26 slots each), its two scale
    /// words, then ql word j of the first part beside qh word j (j < 8), then ql word j of the second part —
    /// the order the kernel reads them. d follows the 52 slots.
    enum Q6KSlots {
        /// ql word `word` of part `part` (file word 16 · half + 8 · part + word).
        @inline(__always) static func low(half: Int, part: Int, word: Int) -> Int {
            26 &* half &+ (part == 0 ? 2 &+ 2 &* word : 18 &+ word)
        }
        /// qh word `word` of `half` (file word 32 + 8 · half + word).
        @inline(__always) static func high(half: Int, word: Int) -> Int { 26 &* half &+ 3 &+ 2 &* word }
        /// Scale word `word` (file word 48 + word: the int8 scales 4 · word …): half word / 2's.
        @inline(__always) static func scales(word: Int) -> Int { 26 &* (word &>> 1) &+ (word & 1) }
    }

    /// Q5_0's fifth bits in a group block: file bit 4v + i of qh (the fifth bit of element 4v + i, chunk v's
    /// byte i in the kernel's order: chunks 0–3 the low nibbles of code words 0–3, chunks 4–7 their high
    /// nibbles) is stored at bit 8i + v, so chunk v's four bits are bit v of each byte.
    enum Q5HighBits {
        /// The file's qh word in the group block's bit order.
        static func transposed(_ qh: UInt32) -> UInt32 {
            var result: UInt32 = 0
            for v in 0..<8 {
                for i in 0..<4 where qh >> (4 * v + i) & 1 != 0 { result |= 1 << (8 * i + v) }
            }
            return result
        }

        /// The inverse of `transposed`.
        static func file(_ stored: UInt32) -> UInt32 {
            var result: UInt32 = 0
            for v in 0..<8 {
                for i in 0..<4 where stored >> (8 * i + v) & 1 != 0 { result |= 1 << (4 * v + i) }
            }
            return result
        }
    }

    /// Bytes of one group block (16 rows × one block).
    static func groupBlockBytes(_ type: DType) -> Int { groupRows * type.bytesPerBlock }

    /// Writes the interleaved form of `rows` file-layout rows (`rowBytes` each) from `source` to
    /// `destination` (same size). `groups` limits the work to those groups (for repacking in slices).
    static func pack(
        _ type: DType, rowBytes: Int, from source: UnsafeRawPointer, to destination: UnsafeMutableRawPointer,
        groups: Range<Int>
    ) {
        let blockBytes = type.bytesPerBlock
        let blocks = rowBytes / blockBytes
        let groupBlock = groupBlockBytes(type)
        for g in groups {
            let rows = source + g * groupRows * rowBytes
            let out = destination + g * groupRows * rowBytes
            for b in 0..<blocks {
                for r in 0..<groupRows {
                    copy(
                        type, fileBlock: UnsafeMutableRawPointer(mutating: rows + r * rowBytes + b * blockBytes),
                        groupBlock: out + b * groupBlock, row: r, toGroup: true)
                }
            }
        }
    }

    /// Copies one row's block between the file layout and a group block, in the direction `toGroup` says.
    private static func copy(
        _ type: DType, fileBlock: UnsafeMutableRawPointer, groupBlock: UnsafeMutableRawPointer, row r: Int,
        toGroup: Bool
    ) {
        let form = BlockForm(type)
        @inline(__always) func move<T>(_: T.Type, file: Int, group: Int) {
            if toGroup {
                groupBlock.storeBytes(
                    of: fileBlock.loadUnaligned(fromByteOffset: file, as: T.self), toByteOffset: group, as: T.self)
            } else {
                fileBlock.storeBytes(
                    of: groupBlock.loadUnaligned(fromByteOffset: group, as: T.self), toByteOffset: file, as: T.self)
            }
        }
        for h in 0..<form.leadingHalves { move(UInt16.self, file: 2 * h, group: 32 * h + 2 * r) }
        let wordsFile = 2 * form.leadingHalves
        for k in 0..<form.words {
            let file = wordsFile + 4 * k
            let group = form.wordsStart + 64 * form.slot(k) + 4 * r
            let isHighBits = type == .q5_0 && k == 0
            if toGroup {
                let word = fileBlock.loadUnaligned(fromByteOffset: file, as: UInt32.self) ^ form.flip
                groupBlock.storeBytes(
                    of: isHighBits ? Q5HighBits.transposed(word) : word, toByteOffset: group, as: UInt32.self)
            } else {
                let word = groupBlock.loadUnaligned(fromByteOffset: group, as: UInt32.self) ^ form.flip
                fileBlock.storeBytes(of: isHighBits ? Q5HighBits.file(word) : word, toByteOffset: file, as: UInt32.self)
            }
        }
        let trailingFile = wordsFile + 4 * form.words
        let trailingGroup = form.wordsStart + 64 * form.words
        for h in 0..<form.trailingHalves {
            move(UInt16.self, file: trailingFile + 2 * h, group: trailingGroup + 32 * h + 2 * r)
        }
    }

    /// Row `r`'s block `b` in the file layout (`type.bytesPerBlock` bytes into `block`), read from an
    /// interleaved matrix at `data`.
    static func unpackBlock(
        _ type: DType, rowBytes: Int, data: UnsafeRawPointer, row r: Int, block b: Int,
        into block: UnsafeMutableRawPointer
    ) {
        let group = data + (r / groupRows) * groupRows * rowBytes + b * groupBlockBytes(type)
        copy(
            type, fileBlock: block, groupBlock: UnsafeMutableRawPointer(mutating: group), row: r % groupRows,
            toGroup: false)
    }

    /// Row `r` in the file layout (`rowBytes` bytes into `row`).
    static func unpackRow(
        _ type: DType, rowBytes: Int, data: UnsafeRawPointer, row r: Int, into row: UnsafeMutableRawPointer
    ) {
        let blockBytes = type.bytesPerBlock
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
        case .q5_0: q5_0(job, x, rows)
        case .q8_0: q8_0(job, x, rows)
        case .q4_K: q4_K(job, x, rows)
        case .q6_K: q6_K(job, x, rows)
        default: preconditionFailure("InterleavedKernels: \(job.type) has no interleaved layout")
        }
    }

    // One non-generic entry point per type, so each gets its own fully specialized loop.
    @inline(never) static func q4_0(_ job: LinearJob, _ x: QuantizedActivations, _ rows: Range<Int>) {
        groups(job, x, rows, nibbles: true, hasMinimum: false, highBits: false, groupBlock: 288)
    }
    @inline(never) static func q4_1(_ job: LinearJob, _ x: QuantizedActivations, _ rows: Range<Int>) {
        groups(job, x, rows, nibbles: true, hasMinimum: true, highBits: false, groupBlock: 320)
    }
    @inline(never) static func q5_0(_ job: LinearJob, _ x: QuantizedActivations, _ rows: Range<Int>) {
        groups(job, x, rows, nibbles: true, hasMinimum: false, highBits: true, groupBlock: 352)
    }
    @inline(never) static func q8_0(_ job: LinearJob, _ x: QuantizedActivations, _ rows: Range<Int>) {
        groups(job, x, rows, nibbles: false, hasMinimum: false, highBits: false, groupBlock: 544)
    }

    /// Every group of `rows` for every token: tiles of four tokens share each group block's unpacked codes,
    /// then the remaining tokens one at a time (constant counts, so each copy drops its per-token branches).
    @inline(__always)
    static func groups(
        _ job: LinearJob, _ x: QuantizedActivations, _ rows: Range<Int>, nibbles: Bool, hasMinimum: Bool,
        highBits: Bool, groupBlock: Int
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
                    highBits: highBits, groupBlock: groupBlock)
                t &+= 4
            }
            while t < job.tokens {
                tile(
                    w, x, token: t, count: 1, out: out, stride: job.rows, nibbles: nibbles, hasMinimum: hasMinimum,
                    highBits: highBits, groupBlock: groupBlock)
                t &+= 1
            }
            r &+= groupRows
        }
    }

    /// One group (16 rows at `w`) for tokens `token ..< token + count` (count ≤ 4): writes 16 floats per
    /// token at `out + t · stride`. `highBits`: Q5_0, whose nibbles get a fifth bit each (`Q5HighBits`).
    @inline(__always)
    static func tile(
        _ w: UnsafeRawPointer, _ x: QuantizedActivations, token: Int, count: Int, out: UnsafeMutablePointer<Float>,
        stride: Int, nibbles: Bool, hasMinimum: Bool, highBits: Bool, groupBlock: Int
    ) {
        var accs = (SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>())
        let hasOffset = x.sizes.codeOffset != 0
        let scaleStride = hasMinimum || nibbles ? 8 : 4
        let codesStart = hasMinimum ? 64 : highBits ? 96 : 32  // after d (and m, or qh)
        let blocks = x.sizes.blocks
        let prefetching = StreamPrefetch.streams(token: token, count: count)
        for b in 0..<blocks {
            let block = w + b &* groupBlock
            if prefetching { StreamPrefetch.ahead(of: block, bytes: groupBlock) }
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
                let nibbleCodes = (
                    p0 & mask, p1 & mask, p2 & mask, p3 & mask, (p0 &>> 4) & mask, (p1 &>> 4) & mask,
                    (p2 &>> 4) & mask, (p3 &>> 4) & mask
                )
                if highBits {
                    // Chunk v's fifth bits are bit v of each byte of the stored qh word: move them to bit 4.
                    let qh = block.loadUnaligned(fromByteOffset: 32, as: SIMD16<UInt32>.self)
                    let fifth = SIMD16<UInt32>(repeating: 0x1010_1010)
                    codes = (
                        nibbleCodes.0 | ((qh &<< 4) & fifth), nibbleCodes.1 | ((qh &<< 3) & fifth),
                        nibbleCodes.2 | ((qh &<< 2) & fifth), nibbleCodes.3 | ((qh &<< 1) & fifth),
                        nibbleCodes.4 | (qh & fifth), nibbleCodes.5 | ((qh &>> 1) & fifth),
                        nibbleCodes.6 | ((qh &>> 2) & fifth), nibbleCodes.7 | ((qh &>> 3) & fifth)
                    )
                } else {
                    codes = nibbleCodes
                }
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

    /// Every group of `rows` for every token, tiles of four tokens then one at a time; `tile(weights, token,
    /// count, output)` does one group for `count` tokens (a constant in each inlined copy).
    @inline(__always)
    static func tiles(
        _ job: LinearJob, _ rows: Range<Int>,
        _ tile: (UnsafeRawPointer, Int, Int, UnsafeMutablePointer<Float>) -> Void
    ) {
        var r = rows.lowerBound
        while r < rows.upperBound {
            let w = job.weights + r &* job.rowBytes
            let out = job.output + r
            var t = 0
            while job.tokens &- t >= 4 {
                tile(w, t, 4, out)
                t &+= 4
            }
            while t < job.tokens {
                tile(w, t, 1, out)
                t &+= 1
            }
            r &+= InterleavedRows.groupRows
        }
    }

    /// Sixteen lanes of `v`'s 32-bit word at `offset`, the activations' side of a byte dot product.
    @inline(__always)
    static func broadcast(_ v: UnsafeRawPointer, _ offset: Int) -> SIMD16<UInt32> {
        SIMD16(repeating: v.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    // MARK: Q4_K

    /// Q4_K: a group block (2,304 bytes) holds word 0 (d | dmin << 16), words 1–3 (the 6-bit scales and
    /// mins, packed as in the file) and 32 words of codes — word 4 + 8c + j holds code bytes 4j…4j+3 of
    /// chunk c, whose low nibbles are elements 64c + 4j… (group 2c) and high nibbles 64c + 32 + 4j… (group
    /// 2c + 1). Per token, each group's integer sum (eight products, |Σ| ≤ 32 · 15 · 128) is multiplied by
    /// the group's scale and summed over the super-block in 32 bits (|Σ| < 2³¹); the minimum term
    /// Σ_g m_g · Σq_g (16-bit pairs, `vpdpwssd`) is exact. Two float multiply-adds per super-block remain.
    @inline(never) static func q4_K(_ job: LinearJob, _ x: QuantizedActivations, _ rows: Range<Int>) {
        tiles(job, rows) { w, token, count, out in
            q4KTile(w, x, token: token, count: count, out: out, stride: job.rows)
        }
    }

    /// Eight words of 16 rows' codes (one per lane).
    typealias Words8 = (
        SIMD16<UInt32>, SIMD16<UInt32>, SIMD16<UInt32>, SIMD16<UInt32>, SIMD16<UInt32>, SIMD16<UInt32>,
        SIMD16<UInt32>, SIMD16<UInt32>
    )

    /// The eight code words at `codes` (64 bytes apart), shifted right by `shift` and masked to their nibbles.
    /// Built from calls, not one tuple of operator expressions, so Swift 6.0's type checker stays fast.
    @inline(__always)
    static func nibbles(_ codes: UnsafeRawPointer, shift: UInt32) -> Words8 {
        @inline(__always) func at(_ j: Int) -> SIMD16<UInt32> {
            let word: SIMD16<UInt32> = codes.loadUnaligned(fromByteOffset: 64 &* j, as: SIMD16<UInt32>.self)
            let shifted: SIMD16<UInt32> = word &>> shift
            return shifted & 0x0F0F_0F0F
        }
        return (at(0), at(1), at(2), at(3), at(4), at(5), at(6), at(7))
    }

    /// A Q4_K group block's 16 rows of super-block scales (d, dmin), 6-bit group scales and mins.
    struct Q4KScales {
        let d: SIMD16<Float>
        let dmin: SIMD16<Float>
        /// Byte g of `low` / `high` is the scale of group g / g + 4 (ggml's unpacking, per lane).
        let low: SIMD16<UInt32>
        let high: SIMD16<UInt32>
        /// The mins as 16-bit pairs: groups (0, 2), (1, 3), (4, 6), (5, 7).
        let mins02: SIMD16<UInt32>
        let mins13: SIMD16<UInt32>
        let mins46: SIMD16<UInt32>
        let mins57: SIMD16<UInt32>

        @inline(__always)
        init(_ block: UnsafeRawPointer) {
            let dm: SIMD16<UInt32> = block.loadUnaligned(as: SIMD16<UInt32>.self)
            d = ByteDotProduct.halfToFloat(SIMD16<UInt16>(truncatingIfNeeded: dm))
            let dminBits: SIMD16<UInt32> = dm &>> 16
            dmin = ByteDotProduct.halfToFloat(SIMD16<UInt16>(truncatingIfNeeded: dminBits))
            let u0: SIMD16<UInt32> = block.loadUnaligned(fromByteOffset: 64, as: SIMD16<UInt32>.self)
            let u1: SIMD16<UInt32> = block.loadUnaligned(fromByteOffset: 128, as: SIMD16<UInt32>.self)
            let u2: SIMD16<UInt32> = block.loadUnaligned(fromByteOffset: 192, as: SIMD16<UInt32>.self)
            let scaleTops: SIMD16<UInt32> = ((u0 &>> 6) & 0x0303_0303) &<< 4
            let minTops: SIMD16<UInt32> = ((u1 &>> 6) & 0x0303_0303) &<< 4
            low = u0 & 0x3F3F_3F3F
            high = (u2 & 0x0F0F_0F0F) | scaleTops
            let minsLow: SIMD16<UInt32> = u1 & 0x3F3F_3F3F
            let minsHigh: SIMD16<UInt32> = ((u2 &>> 4) & 0x0F0F_0F0F) | minTops
            mins02 = minsLow & 0x00FF_00FF
            mins13 = (minsLow &>> 8) & 0x00FF_00FF
            mins46 = minsHigh & 0x00FF_00FF
            mins57 = (minsHigh &>> 8) & 0x00FF_00FF
        }

        /// Group scales of chunk c's low (group 2c) and high (group 2c + 1) nibbles.
        @inline(__always)
        func chunk(_ c: Int) -> (low: SIMD16<Int32>, high: SIMD16<Int32>) {
            let word: SIMD16<UInt32> = c < 2 ? low : high
            let shift = UInt32(16 &* (c & 1))
            let lowScale: SIMD16<UInt32> = (word &>> shift) & 0xFF
            let highScale: SIMD16<UInt32> = (word &>> (shift &+ 8)) & 0xFF
            return (unsafeBitCast(lowScale, to: SIMD16<Int32>.self), unsafeBitCast(highScale, to: SIMD16<Int32>.self))
        }
    }

    @inline(__always)
    static func q4KTile(
        _ w: UnsafeRawPointer, _ x: QuantizedActivations, token: Int, count: Int, out: UnsafeMutablePointer<Float>,
        stride: Int
    ) {
        var accs = (SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>())
        let blocks = x.sizes.blocks
        let prefetching = StreamPrefetch.streams(token: token, count: count)
        for b in 0..<blocks {
            let block = w + b &* 2304
            if prefetching { StreamPrefetch.ahead(of: block, bytes: 2304) }
            let scales = Q4KScales(block)
            var sums = (SIMD16<Int32>(), SIMD16<Int32>(), SIMD16<Int32>(), SIMD16<Int32>())
            for c in 0..<4 {
                let codes = block + (256 &+ 512 &* c)
                let low = nibbles(codes, shift: 0)
                let high = nibbles(codes, shift: 4)
                let chunkScales = scales.chunk(c)
                // Where the chunk's elements are in the activations' Q4_K order (see QuantizedActivations).
                let lowAt: Int = (c &>> 1) &* 128 &+ (c & 1) &* 32
                @inline(__always) func accumulate(_ k: Int, _ sum: inout SIMD16<Int32>) {
                    let y = x.bytes(token: token &+ k) + b &* 256
                    sum &+= q4KChunkSum(low, high, y + lowAt, y + (lowAt &+ 64), chunkScales)
                }
                accumulate(0, &sums.0)
                if count > 1 { accumulate(1, &sums.1) }
                if count > 2 { accumulate(2, &sums.2) }
                if count > 3 { accumulate(3, &sums.3) }
            }
            @inline(__always) func finish(_ k: Int, _ sum: SIMD16<Int32>, _ acc: inout SIMD16<Float>) {
                q4KFinish(scales, sum, x, token: token &+ k, block: b, &acc)
            }
            finish(0, sums.0, &accs.0)
            if count > 1 { finish(1, sums.1, &accs.1) }
            if count > 2 { finish(2, sums.2, &accs.2) }
            if count > 3 { finish(3, sums.3, &accs.3) }
        }
        store(accs, token: token, count: count, out: out, stride: stride)
    }

    /// One token's scaled sum over a Q4_K chunk: the low nibbles against the activations at `lowY`, the high
    /// ones against `highY`, each 32-element sum times its group's scale.
    @inline(__always)
    static func q4KChunkSum(
        _ low: Words8, _ high: Words8, _ lowY: UnsafeRawPointer, _ highY: UnsafeRawPointer,
        _ scales: (low: SIMD16<Int32>, high: SIMD16<Int32>)
    ) -> SIMD16<Int32> {
        // Four independent chains; integer sums, so their split changes nothing.
        var low0 = ByteDotProduct.accumulate(.zero, low.0, broadcast(lowY, 0))
        var low1 = ByteDotProduct.accumulate(.zero, low.1, broadcast(lowY, 4))
        var high0 = ByteDotProduct.accumulate(.zero, high.0, broadcast(highY, 0))
        var high1 = ByteDotProduct.accumulate(.zero, high.1, broadcast(highY, 4))
        low0 = ByteDotProduct.accumulate(low0, low.2, broadcast(lowY, 8))
        low1 = ByteDotProduct.accumulate(low1, low.3, broadcast(lowY, 12))
        high0 = ByteDotProduct.accumulate(high0, high.2, broadcast(highY, 8))
        high1 = ByteDotProduct.accumulate(high1, high.3, broadcast(highY, 12))
        low0 = ByteDotProduct.accumulate(low0, low.4, broadcast(lowY, 16))
        low1 = ByteDotProduct.accumulate(low1, low.5, broadcast(lowY, 20))
        high0 = ByteDotProduct.accumulate(high0, high.4, broadcast(highY, 16))
        high1 = ByteDotProduct.accumulate(high1, high.5, broadcast(highY, 20))
        low0 = ByteDotProduct.accumulate(low0, low.6, broadcast(lowY, 24))
        low1 = ByteDotProduct.accumulate(low1, low.7, broadcast(lowY, 28))
        high0 = ByteDotProduct.accumulate(high0, high.6, broadcast(highY, 24))
        high1 = ByteDotProduct.accumulate(high1, high.7, broadcast(highY, 28))
        let lowSum: SIMD16<Int32> = (low0 &+ low1) &* scales.low
        let highSum: SIMD16<Int32> = (high0 &+ high1) &* scales.high
        return lowSum &+ highSum
    }

    /// Adds one token's super-block to its accumulator: d · yd · Σ (scaled group sums) − dmin · yd · Σ_g m_g Σq_g.
    @inline(__always)
    static func q4KFinish(
        _ scales: Q4KScales, _ sum: SIMD16<Int32>, _ x: QuantizedActivations, token t: Int, block b: Int,
        _ acc: inout SIMD16<Float>
    ) {
        let yd = x.scales(token: t).load(fromByteOffset: b &* 4, as: Float.self)
        let groupSums = x.groupSums32 + (t &* x.sizes.blocks &+ b) &* 8
        @inline(__always) func pair(_ g: Int) -> SIMD16<UInt32> {
            let first = UInt32(UInt16(truncatingIfNeeded: groupSums[g]))
            let second = UInt32(UInt16(truncatingIfNeeded: groupSums[g &+ 2]))
            let both: UInt32 = first | second &<< 16
            return SIMD16(repeating: both)
        }
        var minimum = ByteDotProduct.accumulatePairs(.zero, scales.mins02, pair(0))
        minimum = ByteDotProduct.accumulatePairs(minimum, scales.mins13, pair(1))
        minimum = ByteDotProduct.accumulatePairs(minimum, scales.mins46, pair(4))
        minimum = ByteDotProduct.accumulatePairs(minimum, scales.mins57, pair(5))
        let scale: SIMD16<Float> = scales.d * SIMD16(repeating: yd)
        let minScale: SIMD16<Float> = scales.dmin * SIMD16(repeating: -yd)
        acc.addProduct(scale, ByteDotProduct.toFloat(sum))
        acc.addProduct(minScale, ByteDotProduct.exactFloat(minimum))
    }

    // MARK: Q6_K

    /// Q6_K: a group block (3,360 bytes) holds the file's 32 words of low nibbles (ql), 16 of high bit pairs
    /// (qh) and 4 of int8 scales in the order this kernel reads them (`InterleavedRows.Q6KSlots`), then the
    /// 16 rows' d. In half h of the super-block, ql word 16h + 8m + j and qh word 8h + j make the codes of
    /// elements 128h + 32m + 4j… (low nibbles, qh bits 2m) and 128h + 64 + 32m + 4j… (high nibbles, qh bits
    /// 2m + 4), as ggml's dequantization reads them. Each 16-element group's chain of four products starts
    /// from −32 · Σq of the group (the −32 offset), is multiplied by the group's scale and summed over the
    /// super-block in 32 bits (|Σ| ≤ 16 · 32 · 128 · 128 per group, < 2³¹ in all); one float multiply-add
    /// per super-block remains.
    @inline(never) static func q6_K(_ job: LinearJob, _ x: QuantizedActivations, _ rows: Range<Int>) {
        tiles(job, rows) { w, token, count, out in
            q6KTile(w, x, token: token, count: count, out: out, stride: job.rows)
        }
    }

    @inline(__always)
    static func q6KTile(
        _ w: UnsafeRawPointer, _ x: QuantizedActivations, token: Int, count: Int, out: UnsafeMutablePointer<Float>,
        stride: Int
    ) {
        var accs = (SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>())
        let blocks = x.sizes.blocks
        let prefetching = StreamPrefetch.streams(token: token, count: count)
        for b in 0..<blocks {
            let block = w + b &* 3360
            if prefetching { StreamPrefetch.ahead(of: block, bytes: 3360) }
            let dBits: SIMD16<UInt16> = block.loadUnaligned(fromByteOffset: 3328, as: SIMD16<UInt16>.self)
            let d = ByteDotProduct.halfToFloat(dBits)
            var sums = (SIMD16<Int32>(), SIMD16<Int32>(), SIMD16<Int32>(), SIMD16<Int32>())
            for h in 0..<2 {
                for m in 0..<2 {
                    let codes = q6KCodes(block, half: h, part: m)
                    // The four 16-element groups: 8h + 2m, + 1 (first codes), 8h + 2m + 4, + 5 (second).
                    let group = 8 &* h &+ 2 &* m
                    let scales = q6KScales(block, group: group)
                    let firstAt: Int = 128 &* h &+ 32 &* m
                    @inline(__always) func accumulate(_ k: Int, _ sum: inout SIMD16<Int32>) {
                        let t = token &+ k
                        let y = x.bytes(token: t) + b &* 256
                        let firstGroup: Int = t &* x.sizes.groupsPerToken &+ b &* 16 &+ group
                        let groupSums = x.groupSums + firstGroup
                        sum &+= q6KPartSum(codes, y + firstAt, y + (firstAt &+ 64), groupSums, scales)
                    }
                    accumulate(0, &sums.0)
                    if count > 1 { accumulate(1, &sums.1) }
                    if count > 2 { accumulate(2, &sums.2) }
                    if count > 3 { accumulate(3, &sums.3) }
                }
            }
            @inline(__always) func finish(_ k: Int, _ sum: SIMD16<Int32>, _ acc: inout SIMD16<Float>) {
                let yd = x.scales(token: token &+ k).load(fromByteOffset: b &* 4, as: Float.self)
                let scale: SIMD16<Float> = d * SIMD16(repeating: yd)
                acc.addProduct(scale, ByteDotProduct.toFloat(sum))
            }
            finish(0, sums.0, &accs.0)
            if count > 1 { finish(1, sums.1, &accs.1) }
            if count > 2 { finish(2, sums.2, &accs.2) }
            if count > 3 { finish(3, sums.3, &accs.3) }
        }
        store(accs, token: token, count: count, out: out, stride: stride)
    }

    /// The 6-bit codes of part m of half h of a Q6_K group block: `first` word j holds elements
    /// 128h + 32m + 4j… (low nibbles, qh bits 2m), `second` word j elements 64 further (high nibbles, qh
    /// bits 2m + 4).
    @inline(__always)
    static func q6KCodes(_ block: UnsafeRawPointer, half h: Int, part m: Int) -> (first: Words8, second: Words8) {
        // Word j of the codes whose low nibbles are ql >> nibbleShift and whose top bits are qh >> pairShift.
        @inline(__always) func code(_ j: Int, nibbleShift: UInt32, pairShift: UInt32) -> SIMD16<UInt32> {
            let ql: SIMD16<UInt32> = block.loadUnaligned(
                fromByteOffset: 64 &* InterleavedRows.Q6KSlots.low(half: h, part: m, word: j), as: SIMD16<UInt32>.self)
            let qh: SIMD16<UInt32> = block.loadUnaligned(
                fromByteOffset: 64 &* InterleavedRows.Q6KSlots.high(half: h, word: j), as: SIMD16<UInt32>.self)
            let top: SIMD16<UInt32> = ((qh &>> pairShift) & 0x0303_0303) &<< 4
            return ((ql &>> nibbleShift) & 0x0F0F_0F0F) | top
        }
        let firstShift = UInt32(2 &* m)
        let secondShift = UInt32(2 &* m &+ 4)
        @inline(__always) func first(_ j: Int) -> SIMD16<UInt32> { code(j, nibbleShift: 0, pairShift: firstShift) }
        @inline(__always) func second(_ j: Int) -> SIMD16<UInt32> { code(j, nibbleShift: 4, pairShift: secondShift) }
        let firsts: Words8 = (first(0), first(1), first(2), first(3), first(4), first(5), first(6), first(7))
        let seconds: Words8 = (second(0), second(1), second(2), second(3), second(4), second(5), second(6), second(7))
        return (firsts, seconds)
    }

    /// The int8 scales of Q6_K groups g, g + 1, g + 4 and g + 5, sign-extended per lane.
    @inline(__always)
    static func q6KScales(_ block: UnsafeRawPointer, group: Int) -> Words4 {
        @inline(__always) func scale(_ g: Int) -> SIMD16<Int32> {
            let word: SIMD16<UInt32> = block.loadUnaligned(
                fromByteOffset: 64 &* InterleavedRows.Q6KSlots.scales(word: g &>> 2), as: SIMD16<UInt32>.self)
            let byte: Int = g & 3
            let shift = UInt32(truncatingIfNeeded: 24 &- 8 &* byte)
            let shifted: SIMD16<UInt32> = word &<< shift
            let top = unsafeBitCast(shifted, to: SIMD16<Int32>.self)
            return top &>> 24
        }
        return (scale(group), scale(group &+ 1), scale(group &+ 4), scale(group &+ 5))
    }

    /// Four lanes-of-16 integer vectors.
    typealias Words4 = (SIMD16<Int32>, SIMD16<Int32>, SIMD16<Int32>, SIMD16<Int32>)

    /// One token's scaled sum over four Q6_K groups: each chain of four products starts from −32 · Σq of its
    /// group (the codes' offset) and is multiplied by the group's scale.
    @inline(__always)
    static func q6KPartSum(
        _ codes: (first: Words8, second: Words8), _ firstY: UnsafeRawPointer, _ secondY: UnsafeRawPointer,
        _ groupSums: UnsafePointer<Int32>, _ scales: Words4
    ) -> SIMD16<Int32> {
        @inline(__always) func start(_ g: Int) -> SIMD16<Int32> {
            SIMD16(repeating: 0 &- (groupSums[g] &<< 5))
        }
        let (c, e) = codes
        var s0 = ByteDotProduct.accumulate(start(0), c.0, broadcast(firstY, 0))
        var s1 = ByteDotProduct.accumulate(start(1), c.4, broadcast(firstY, 16))
        var s2 = ByteDotProduct.accumulate(start(4), e.0, broadcast(secondY, 0))
        var s3 = ByteDotProduct.accumulate(start(5), e.4, broadcast(secondY, 16))
        s0 = ByteDotProduct.accumulate(s0, c.1, broadcast(firstY, 4))
        s1 = ByteDotProduct.accumulate(s1, c.5, broadcast(firstY, 20))
        s2 = ByteDotProduct.accumulate(s2, e.1, broadcast(secondY, 4))
        s3 = ByteDotProduct.accumulate(s3, e.5, broadcast(secondY, 20))
        s0 = ByteDotProduct.accumulate(s0, c.2, broadcast(firstY, 8))
        s1 = ByteDotProduct.accumulate(s1, c.6, broadcast(firstY, 24))
        s2 = ByteDotProduct.accumulate(s2, e.2, broadcast(secondY, 8))
        s3 = ByteDotProduct.accumulate(s3, e.6, broadcast(secondY, 24))
        s0 = ByteDotProduct.accumulate(s0, c.3, broadcast(firstY, 12))
        s1 = ByteDotProduct.accumulate(s1, c.7, broadcast(firstY, 28))
        s2 = ByteDotProduct.accumulate(s2, e.3, broadcast(secondY, 12))
        s3 = ByteDotProduct.accumulate(s3, e.7, broadcast(secondY, 28))
        let firstSum: SIMD16<Int32> = s0 &* scales.0 &+ s1 &* scales.1
        let secondSum: SIMD16<Int32> = s2 &* scales.2 &+ s3 &* scales.3
        return firstSum &+ secondSum
    }

    /// Writes the first `count` accumulators: 16 floats for token `token + k` at `out + (token + k) · stride`.
    @inline(__always)
    static func store(
        _ accs: (SIMD16<Float>, SIMD16<Float>, SIMD16<Float>, SIMD16<Float>), token: Int, count: Int,
        out: UnsafeMutablePointer<Float>, stride: Int
    ) {
        @inline(__always) func store(_ k: Int, _ acc: SIMD16<Float>) {
            UnsafeMutableRawPointer(out + (token &+ k) &* stride).storeBytes(of: acc, as: SIMD16<Float>.self)
        }
        store(0, accs.0)
        if count > 1 { store(1, accs.1) }
        if count > 2 { store(2, accs.2) }
        if count > 3 { store(3, accs.3) }
    }
}
