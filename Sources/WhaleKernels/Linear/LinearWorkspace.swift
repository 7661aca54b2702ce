import WhaleCore

/// Scratch memory for one forward pass (quantized activations); reused across calls, never shared by two
/// concurrent callers.
///
/// `Linear.apply` quantizes its input into this memory before the matrix product, as llama.cpp does, so
/// that a decode step allocates nothing. It grows to the largest `tokens × columns` it has seen and keeps
/// that size (about 3 bytes per input element); use one workspace per concurrently running forward pass.
public final class LinearWorkspace {
    private var storage: UnsafeMutableRawPointer?
    private var capacity = 0
    /// One widened FP8 weight row per worker thread.
    private var rowStorage: UnsafeMutablePointer<Float>?
    private var rowCapacity = 0

    public init() {}

    deinit {
        storage?.deallocate()
        rowStorage?.deallocate()
    }

    /// Bytes currently reserved (for tests and memory accounting).
    public var reservedBytes: Int { capacity + rowCapacity * MemoryLayout<Float>.stride }

    /// Room for `workers` rows of `columns` floats (worker w's row at `w * columns`), kept across calls.
    func widenedRows(columns: Int, workers: Int) -> UnsafeMutablePointer<Float> {
        let count = columns * workers
        if count > rowCapacity || rowStorage == nil {
            rowStorage?.deallocate()
            rowCapacity = max(count, 1)
            rowStorage = .allocate(capacity: rowCapacity)
        }
        return rowStorage!
    }

    /// At least `byteCount` bytes, 64-byte aligned; the contents are unspecified.
    func reserve(_ byteCount: Int) -> UnsafeMutableRawPointer {
        if byteCount > capacity || storage == nil {
            storage?.deallocate()
            // Grow geometrically so that slowly growing prompts do not reallocate every call.
            let size = max(byteCount, capacity * 2, 4096)
            storage = .allocate(byteCount: size, alignment: 64)
            capacity = size
        }
        return storage!
    }

    /// The input with each 16 columns reordered as 0, 2, …, 14, 1, 3, …, 15 (a last partial group as is),
    /// to match how the F16 / BF16 kernels widen their weights ([PURE_SIMD_OPS]).
    func deinterleave(_ input: UnsafePointer<Float>, tokens: Int, columns: Int) -> UnsafePointer<Float> {
        let out = reserve(tokens * columns * 4).bindMemory(to: Float.self, capacity: tokens * columns)
        let groups = columns / 16
        for t in 0..<tokens {
            let x = input + t * columns
            let y = out + t * columns
            for g in 0..<groups {
                for k in 0..<8 {
                    y[16 * g + k] = x[16 * g + 2 * k]
                    y[16 * g + 8 + k] = x[16 * g + 2 * k + 1]
                }
            }
            for c in (16 * groups)..<columns { y[c] = x[c] }
        }
        return UnsafePointer(out)
    }

    /// The activations of each product, quantized for its weight type, in one region of this workspace
    /// (valid until the next call); products with the same input, token count and weight type share one.
    func quantize(_ products: UnsafeBufferPointer<Linear.Product>, pool: ThreadPool) -> [QuantizedActivations] {
        var sizes: [QuantizedActivations.Sizes] = []
        var offsets: [Int] = []
        var sources: [Int] = []  // per product: the earlier product whose activations it shares, or itself
        var total = 0
        for (index, product) in products.enumerated() {
            let type = product.weight.type
            if let earlier = products.indices.prefix(index).first(where: {
                products[$0].input == product.input && products[$0].tokens == product.tokens
                    && products[$0].weight.type == type && products[$0].weight.columns == product.weight.columns
            }) {
                sizes.append(sizes[earlier])
                offsets.append(offsets[earlier])
                sources.append(earlier)
                continue
            }
            let size = QuantizedActivations.Sizes(
                layout: ActivationLayout(type), tokens: product.tokens, columns: product.weight.columns,
                codeOffset: ActivationLayout.codeOffset(type))
            sizes.append(size)
            offsets.append(total)
            sources.append(index)
            total += (size.byteCount + 63) & ~63
        }
        let base = reserve(total)
        var activations: [QuantizedActivations] = []
        activations.reserveCapacity(products.count)
        for (index, product) in products.enumerated() {
            let x = QuantizedActivations(base: base + offsets[index], sizes: sizes[index])
            activations.append(x)
            guard sources[index] == index else { continue }
            let columns = product.weight.columns
            if product.tokens >= 8 {
                pool.parallelFor(product.tokens) { token in x.quantize(product.input + token * columns, token: token) }
            } else {
                for token in 0..<product.tokens { x.quantize(product.input + token * columns, token: token) }
            }
        }
        return activations
    }

    /// Quantizes `tokens` rows of `columns` floats for `weightType`'s kernel and returns where the results
    /// live inside this workspace (valid until the next call).
    func quantize(
        _ input: UnsafePointer<Float>, tokens: Int, columns: Int, for weightType: DType, pool: ThreadPool
    ) -> QuantizedActivations {
        let layout = ActivationLayout(weightType)
        let sizes = QuantizedActivations.Sizes(
            layout: layout, tokens: tokens, columns: columns, codeOffset: ActivationLayout.codeOffset(weightType))
        let activations = QuantizedActivations(base: reserve(sizes.byteCount), sizes: sizes)
        // Quantizing is ~1 % of the product's work; spread it only when there are many tokens.
        if tokens >= 8 {
            pool.parallelFor(tokens) { token in activations.quantize(input + token * columns, token: token) }
        } else {
            for token in 0..<tokens { activations.quantize(input + token * columns, token: token) }
        }
        return activations
    }
}

/// How a weight type wants its activations: llama.cpp's `vec_dot_type` for the values, and an order of
/// the int16 values that lets the kernel multiply them with unpacked weight codes lane by lane.
enum ActivationLayout {
    /// Q8_0 values (Q4_0 / Q5_0) or Q8_1 values (Q4_1 / Q5_1, whose s = fp16(d · Σq) is kept too) in the
    /// nibble-quad order below.
    case nibbleQuads(q8_1: Bool)
    /// Q8_0 values (Q8_0 weights) in the even/odd order.
    case evenOdd
    /// Q8_K values in the Q4_K nibble order, with per-16 sums (`bsums`): Q4_K and Q5_K weights.
    case q4K
    /// Q8_K values in the even/odd order, with per-16 sums: Q6_K, Q3_K and Q2_K weights.
    case q6K

    init(_ weightType: DType) {
        switch weightType {
        case .q4_0, .q5_0: self = .nibbleQuads(q8_1: false)
        case .q4_1, .q5_1: self = .nibbleQuads(q8_1: true)
        case .q8_0: self = .evenOdd
        case .q4_K, .q5_K: self = .q4K
        case .q6_K, .q3_K, .q2_K: self = .q6K
        default: preconditionFailure(Linear.unsupportedMessage(weightType))
        }
    }

    /// What the byte kernels subtract from their unsigned codes: the weight's value is `code − offset`
    /// (Q8_0's signed bytes are read as unsigned with their top bit flipped, +128).
    static func codeOffset(_ weightType: DType) -> Int32 {
        switch weightType {
        case .q8_0: 128
        case .q4_0: 8
        case .q5_0: 16
        case .q6_K: 32
        default: 0
        }
    }

    var blockSize: Int {
        switch self {
        case .nibbleQuads, .evenOdd: 32
        case .q4K, .q6K: 256
        }
    }
}

/// Quantized activations `[tokens, columns]` inside a `LinearWorkspace`.
///
/// The int8 values are what llama.cpp's x86 CPU backend computes (`quantize_row_q8_0`, `quantize_row_q8_1`,
/// `quantize_row_q8_K_ref`, see `ActivationQuantizer`), widened to int16 and reordered:
///
/// - nibble quads (per 32-element block): two vectors of 16 lanes; lane k of the first holds element 2k
///   (k < 8) or 16 + 2(k − 8), of the second the element after it, so the products of lanes 2g and 2g + 1
///   of both vectors together are ggml's four-element lane g.
/// - even/odd (per 32 elements): 16 lanes of elements 0, 2, …, 30, then 16 lanes of elements 1, 3, …, 31.
/// - Q4_K (per 64 elements of a super-block, chunk c, whose 32 packed bytes hold elements 64c + j in their
///   low nibbles and 64c + 32 + j in their high ones): four vectors of 16 lanes; lane k of vector 0 holds
///   element 64c + 2k, of vector 1 64c + 32 + 2k, of vector 2 64c + 2k + 1, of vector 3 64c + 33 + 2k.
///
/// Where the target has byte dot products (`ByteDotProduct.isAvailable`), the values stay int8 instead
/// (`byteValues`), in natural order except for Q4_K, in the order its byte kernel reads 64 packed bytes at a
/// time: each 128 elements as 0–31, 64–95, 32–63, 96–127 (a 64-byte load of Q4_K codes holds elements 0–31
/// and 64–95 in its low nibbles, 32–63 and 96–127 in its high ones). The byte kernels multiply unsigned codes
/// whose value is `code − offset` (`ActivationLayout.codeOffset`); for a nonzero offset `laneSums` holds
/// −offset · Σ of each 4 values, the start of each 4-product sum.
struct QuantizedActivations {
    struct Sizes {
        let layout: ActivationLayout
        let tokens: Int
        let columns: Int
        let blocks: Int
        /// int16 values per token.
        let valuesPerToken: Int
        /// Floats of scales per token: d and s per block for nibble quads, else d per block.
        let scalesPerToken: Int
        let groupsPerToken: Int
        let scalesOffset: Int
        let groupSumsOffset: Int
        /// Values stored as int8 for the byte kernels (see the type's comment): a compile-time constant, so
        /// the kernels' branches on it fold away.
        var byteValues: Bool { ByteDotProduct.isAvailable }
        /// The weight type's code offset (`ActivationLayout.codeOffset`), for `laneSums`.
        let codeOffset: Int32
        let laneSumsOffset: Int
        let groupSums32Offset: Int
        let blockSumsOffset: Int
        let byteCount: Int

        init(layout: ActivationLayout, tokens: Int, columns: Int, codeOffset: Int32) {
            precondition(columns % layout.blockSize == 0, "columns must be whole activation blocks")
            self.layout = layout
            self.tokens = tokens
            self.columns = columns
            blocks = columns / layout.blockSize
            switch layout {
            case .nibbleQuads:
                valuesPerToken = columns
                scalesPerToken = blocks * 2
            case .evenOdd, .q4K, .q6K:
                valuesPerToken = columns
                scalesPerToken = blocks
            }
            groupsPerToken = columns / 16
            self.codeOffset = codeOffset
            let laneSumsPerToken = ByteDotProduct.isAvailable && codeOffset != 0 ? columns / 4 : 0
            func aligned(_ n: Int) -> Int { (n + 63) & ~63 }
            scalesOffset = aligned(tokens * valuesPerToken * 2)
            groupSumsOffset = scalesOffset + aligned(tokens * scalesPerToken * 4)
            laneSumsOffset = groupSumsOffset + aligned(tokens * groupsPerToken * 4)
            var groupSums32PerToken = 0
            if case .q4K = layout, ByteDotProduct.isAvailable { groupSums32PerToken = columns / 32 }
            groupSums32Offset = laneSumsOffset + aligned(tokens * laneSumsPerToken * 4)
            blockSumsOffset = groupSums32Offset + aligned(tokens * groupSums32PerToken * 4)
            let blockSumsPerToken = laneSumsPerToken > 0 && layout.blockSize == 32 ? blocks : 0
            byteCount = blockSumsOffset + aligned(tokens * blockSumsPerToken * 4)
        }
    }

    let sizes: Sizes
    /// The int16 values in the layout's order, `[tokens, valuesPerToken]`, 64-byte aligned.
    let values: UnsafeMutablePointer<Int16>
    let scales: UnsafeMutablePointer<Float>
    /// Q8_K only: Σq of each 16 values, natural order, `[tokens, columns / 16]`.
    let groupSums: UnsafeMutablePointer<Int32>
    /// Byte values with a code offset only: −offset · Σq of each 4 values, natural order, `[tokens, columns / 4]`.
    let laneSums: UnsafeMutablePointer<Int32>
    /// Q4_K-order byte values only: Σq of each 32 values (one Q4_K group; the activations' part of its minimum
    /// term), `[tokens, columns / 32]`.
    let groupSums32: UnsafeMutablePointer<Int32>
    /// Byte values of 32-element blocks with a code offset only: −offset · Σq of each block (the start of the
    /// interleaved kernels' block sums, [INTERLEAVED_ROWS]), `[tokens, blocks]`.
    let blockSums: UnsafeMutablePointer<Int32>

    init(base: UnsafeMutableRawPointer, sizes: Sizes) {
        self.sizes = sizes
        values = base.bindMemory(to: Int16.self, capacity: sizes.tokens * sizes.valuesPerToken)
        scales = (base + sizes.scalesOffset).bindMemory(to: Float.self, capacity: sizes.tokens * sizes.scalesPerToken)
        groupSums = (base + sizes.groupSumsOffset).bindMemory(
            to: Int32.self, capacity: sizes.tokens * sizes.groupsPerToken)
        laneSums = (base + sizes.laneSumsOffset).bindMemory(to: Int32.self, capacity: sizes.tokens * sizes.columns / 4)
        groupSums32 = (base + sizes.groupSums32Offset).bindMemory(
            to: Int32.self, capacity: sizes.tokens * sizes.columns / 32)
        blockSums = (base + sizes.blockSumsOffset).bindMemory(to: Int32.self, capacity: sizes.tokens * sizes.blocks)
    }

    /// The values of token `t` (64-byte aligned when columns are a multiple of 32).
    @inline(__always) func values(token t: Int) -> UnsafeRawPointer {
        UnsafeRawPointer(values + t &* sizes.valuesPerToken)
    }

    /// The int8 values of token `t` (`byteValues`), 64-byte aligned when columns are a multiple of 32.
    @inline(__always) func bytes(token t: Int) -> UnsafeRawPointer {
        UnsafeRawPointer(values) + t &* sizes.valuesPerToken
    }

    @inline(__always) func laneSums(token t: Int) -> UnsafeRawPointer {
        UnsafeRawPointer(laneSums + t &* (sizes.columns &>> 2))
    }

    @inline(__always) func blockSums(token t: Int) -> UnsafePointer<Int32> {
        UnsafePointer(blockSums + t &* sizes.blocks)
    }

    @inline(__always) func scales(token t: Int) -> UnsafeRawPointer {
        UnsafeRawPointer(scales + t &* sizes.scalesPerToken)
    }

    func quantize(_ x: UnsafePointer<Float>, token: Int) {
        let out = values + token &* sizes.valuesPerToken
        let s = scales + token &* sizes.scalesPerToken
        let blocks = sizes.blocks
        if sizes.byteValues {
            quantizeBytes(x, token: token)
            return
        }
        switch sizes.layout {
        case .nibbleQuads(let q8_1):
            for b in 0..<blocks {
                let block = ActivationQuantizer.q8Block(x + b &* 32)
                let v = out + b &* 32
                for k in 0..<8 {
                    v[k] = Int16(truncatingIfNeeded: block.low[2 &* k])
                    v[8 &+ k] = Int16(truncatingIfNeeded: block.high[2 &* k])
                    v[16 &+ k] = Int16(truncatingIfNeeded: block.low[2 &* k &+ 1])
                    v[24 &+ k] = Int16(truncatingIfNeeded: block.high[2 &* k &+ 1])
                }
                s[2 &* b] = block.d
                s[2 &* b &+ 1] = q8_1 ? Float(Float16(block.dFloat32 * Float(block.sum))) : 0
            }
        case .evenOdd:
            for b in 0..<blocks {
                let block = ActivationQuantizer.q8Block(x + b &* 32)
                s[b] = block.d
                Self.storeEvenOdd(block.low, block.high, into: out + b &* 32)
            }
        case .q4K, .q6K:
            let sums = groupSums + token &* sizes.groupsPerToken
            for b in 0..<blocks {
                // Sixteen groups of 16 values, in the layout's order.
                let v = out + b &* 256
                let isQ4K: Bool
                if case .q4K = sizes.layout { isQ4K = true } else { isQ4K = false }
                ActivationQuantizer.q8KBlock(x + b &* 256, scale: s + b, groupSums: sums + b &* 16) { group, q in
                    if isQ4K {
                        // Chunk c = group / 4 holds groups 4c…4c+3; lanes k of its four vectors are elements
                        // 64c + 2k, 64c + 32 + 2k, 64c + 2k + 1, 64c + 33 + 2k.
                        let chunk = v + (group &>> 2) &* 64
                        let lane = (group & 1) &* 8
                        let vector = (group &>> 1) & 1  // groups 4c, 4c+1 → vectors 0/2; 4c+2, 4c+3 → 1/3
                        for k in 0..<8 {
                            chunk[vector &* 16 &+ lane &+ k] = Int16(truncatingIfNeeded: q[2 &* k])
                            chunk[32 &+ vector &* 16 &+ lane &+ k] = Int16(truncatingIfNeeded: q[2 &* k &+ 1])
                        }
                    } else {
                        let pairOffset: Int = (group &>> 1) &* 32 &+ (group & 1) &* 8
                        let pairBase = v + pairOffset
                        for k in 0..<8 {
                            pairBase[k] = Int16(truncatingIfNeeded: q[2 &* k])
                            pairBase[16 &+ k] = Int16(truncatingIfNeeded: q[2 &* k &+ 1])
                        }
                    }
                }
            }
        }
    }

    /// The values as int8 for the byte kernels, in their order, with `laneSums` for a nonzero code offset.
    private func quantizeBytes(_ x: UnsafePointer<Float>, token: Int) {
        let s = scales + token &* sizes.scalesPerToken
        let bytes = UnsafeMutableRawPointer(mutating: self.bytes(token: token))
        let fours = laneSums + token &* (sizes.columns &>> 2)
        let offset = sizes.codeOffset
        /// Sixteen values from `element` on, stored at `position`.
        @inline(__always) func store(_ q: SIMD16<Int32>, element: Int, position: Int) {
            for k in 0..<16 {
                bytes.storeBytes(of: Int8(truncatingIfNeeded: q[k]), toByteOffset: position &+ k, as: Int8.self)
            }
            if offset != 0 {
                for lane in 0..<4 {
                    let first: Int = 4 &* lane
                    let pair0: Int32 = q[first] &+ q[first &+ 1]
                    let pair1: Int32 = q[first &+ 2] &+ q[first &+ 3]
                    fours[(element &>> 2) &+ lane] = (0 &- offset) &* (pair0 &+ pair1)
                }
            }
        }
        switch sizes.layout {
        case .nibbleQuads, .evenOdd:
            let isQ8_1: Bool
            if case .nibbleQuads(q8_1: true) = sizes.layout { isQ8_1 = true } else { isQ8_1 = false }
            let perBlock = sizes.scalesPerToken / sizes.blocks
            for b in 0..<sizes.blocks {
                let block = ActivationQuantizer.q8Block(x + b &* 32)
                store(block.low, element: b &* 32, position: b &* 32)
                store(block.high, element: b &* 32 &+ 16, position: b &* 32 &+ 16)
                s[perBlock &* b] = block.d
                if offset != 0 { blockSums[token &* sizes.blocks &+ b] = (0 &- offset) &* block.sum }
                if perBlock == 2 { s[2 &* b &+ 1] = isQ8_1 ? Float(Float16(block.dFloat32 * Float(block.sum))) : 0 }
            }
        case .q4K, .q6K:
            let sums = groupSums + token &* sizes.groupsPerToken
            let isQ4K: Bool
            if case .q4K = sizes.layout { isQ4K = true } else { isQ4K = false }
            for b in 0..<sizes.blocks {
                ActivationQuantizer.q8KBlock(x + b &* 256, scale: s + b, groupSums: sums + b &* 16) { group, q in
                    let element = b &* 256 &+ group &* 16
                    // Q4_K: the second and third 32-element quarters of each 128 trade places.
                    let quarter = (element &>> 5) & 3
                    let swapped = quarter == 1 ? 2 : quarter == 2 ? 1 : quarter
                    store(q, element: element, position: isQ4K ? element &+ (swapped &- quarter) &* 32 : element)
                }
                if isQ4K {
                    let sums32 = groupSums32 + (token &* sizes.blocks &+ b) &* 8
                    let blockSums = sums + b &* 16
                    for g in 0..<8 { sums32[g] = blockSums[2 &* g] &+ blockSums[2 &* g &+ 1] }
                }
            }
        }
    }

    /// Elements 0, 2, …, 30 then 1, 3, …, 31 of a 32-element block (`low` holds 0–15, `high` 16–31).
    @inline(__always)
    static func storeEvenOdd(_ low: SIMD16<Int32>, _ high: SIMD16<Int32>, into v: UnsafeMutablePointer<Int16>) {
        for k in 0..<8 {
            v[k] = Int16(truncatingIfNeeded: low[2 &* k])
            v[8 &+ k] = Int16(truncatingIfNeeded: high[2 &* k])
            v[16 &+ k] = Int16(truncatingIfNeeded: low[2 &* k &+ 1])
            v[24 &+ k] = Int16(truncatingIfNeeded: high[2 &* k &+ 1])
        }
    }
}

/// The per-block activation quantizers of `Linear.apply` (vectorized), bit-identical to the scalar ones
/// in `Linear.reference` ([ACTIVATION_QUANT]).
enum ActivationQuantizer {
    /// ggml's `nearest_int`: round to nearest, ties to even, for |v| < 2²², as a float add — the same
    /// result as x86's `_mm256_round_ps(_, _MM_ROUND_NEAREST)` used by `quantize_row_q8_0`.
    @inline(__always)
    static func nearestInt(_ v: Float) -> Int32 {
        Int32(bitPattern: (v + 12_582_912).bitPattern & 0x007F_FFFF) &- 0x0040_0000
    }

    @inline(__always)
    static func nearestInt(_ v: SIMD16<Float>) -> SIMD16<Int32> {
        let biased = unsafeBitCast(v + SIMD16(repeating: 12_582_912), to: SIMD16<Int32>.self)
        return (biased & 0x007F_FFFF) &- 0x0040_0000
    }

    /// |v| as float bits: non-negative floats order like their bit patterns as integers.
    @inline(__always)
    static func magnitudeBits(_ v: SIMD16<Float>) -> SIMD16<Int32> {
        unsafeBitCast(v, to: SIMD16<Int32>.self) & 0x7FFF_FFFF
    }

    /// Lane-wise maximum of non-negative integers (a − b cannot overflow), without a select.
    @inline(__always)
    static func maximum(_ a: SIMD16<Int32>, _ b: SIMD16<Int32>) -> SIMD16<Int32> {
        let difference: SIMD16<Int32> = a ^ b
        let bIsLarger: SIMD16<Int32> = (a &- b) &>> 31
        return a ^ (difference & bIsLarger)
    }

    /// The largest |x| of 32 floats (amax), exactly.
    @inline(__always)
    static func absoluteMaximum(_ v0: SIMD16<Float>, _ v1: SIMD16<Float>) -> Float {
        let m16 = maximum(magnitudeBits(v0), magnitudeBits(v1))
        let m8 = maximum(
            SIMD16(lowHalf: m16.lowHalf, highHalf: .zero), SIMD16(lowHalf: m16.highHalf, highHalf: .zero)
        ).lowHalf
        let m4 = SIMD4(max(m8[0], m8[4]), max(m8[1], m8[5]), max(m8[2], m8[6]), max(m8[3], m8[7]))
        return Float(bitPattern: UInt32(bitPattern: max(max(m4[0], m4[1]), max(m4[2], m4[3]))))
    }

    /// One 32-element block the way x86 llama.cpp's `quantize_row_q8_0` / `quantize_row_q8_1` do it:
    /// `d = amax / 127`, `q = round(x · 127 / amax)` ties to even. Returns the values (elements 0–15, 16–31),
    /// d rounded to float16 (as stored), Σq, and the float32 d (Q8_1's `s` is `fp16(d · Σq)` with it).
    @inline(__always)
    static func q8Block(_ x: UnsafePointer<Float>) -> (
        low: SIMD16<Int32>, high: SIMD16<Int32>, d: Float, sum: Int32, dFloat32: Float
    ) {
        let raw = UnsafeRawPointer(x)
        let v0 = raw.loadUnaligned(as: SIMD16<Float>.self)
        let v1 = raw.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self)
        let amax = absoluteMaximum(v0, v1)
        let d = amax / 127
        let id: Float = amax != 0 ? 127 / amax : 0
        let q0 = nearestInt(v0 * id)
        let q1 = nearestInt(v1 * id)
        return (q0, q1, Float(Float16(d)), (q0 &+ q1).wrappedSum(), d)
    }

    /// One 256-element block as ggml's `quantize_row_q8_K_ref` (used by llama.cpp's x86 backend too):
    /// `iscale = −127 / x_max` where `x_max` is the first value of largest magnitude,
    /// `q = min(127, nearest_int(iscale · x))`, `d = 1 / iscale` in float32, and the sum of each 16 values.
    /// `store(group, values)` receives each group of 16 values.
    @inline(__always)
    static func q8KBlock(
        _ x: UnsafePointer<Float>, scale: UnsafeMutablePointer<Float>, groupSums: UnsafeMutablePointer<Int32>,
        store: (Int, SIMD16<Int32>) -> Void
    ) {
        var amax: Float = 0
        var signedMax: Float = 0
        for j in 0..<256 where abs(x[j]) > amax {
            amax = abs(x[j])
            signedMax = x[j]
        }
        let iscale: Float = amax == 0 ? 0 : -127 / signedMax
        let raw = UnsafeRawPointer(x)
        for group in 0..<16 {
            let n = nearestInt(raw.loadUnaligned(fromByteOffset: group &* 64, as: SIMD16<Float>.self) * iscale)
            // min(127, n) without a select: n − 127 is positive only above 127.
            let excess = n &- 127
            let clamped = n &- (excess & ~(excess &>> 31))
            store(group, clamped)
            groupSums[group] = clamped.wrappedSum()
        }
        scale.pointee = amax == 0 ? 0 : 1 / iscale
    }
}
