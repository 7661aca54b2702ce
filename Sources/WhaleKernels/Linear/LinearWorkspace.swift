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

    public init() {}

    deinit { storage?.deallocate() }

    /// Bytes currently reserved (for tests and memory accounting).
    public var reservedBytes: Int { capacity }

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

    /// Quantizes `tokens` rows of `columns` floats for `weightType`'s kernel and returns where the results
    /// live inside this workspace (valid until the next call).
    func quantize(
        _ input: UnsafePointer<Float>, tokens: Int, columns: Int, for weightType: DType, pool: ThreadPool
    ) -> QuantizedActivations {
        let layout = ActivationLayout(weightType)
        let sizes = QuantizedActivations.Sizes(layout: layout, tokens: tokens, columns: columns)
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
    /// Q8_0 values (Q4_0 / Q5_0) or Q8_1 values (Q4_1 / Q5_1) in the nibble-pair order below. The
    /// per-block pair (d, s) holds s = fp16(d · Σq) for Q8_1 and s = −zeroPoint · d · Σq for Q8_0, so every
    /// one of these kernels computes d_w · d · Σ code·q + m_w · s with m_w = the weights' m or d.
    case nibblePairs(q8_1: Bool, zeroPoint: Int32)
    /// Q8_0 values (Q8_0 weights) in the even/odd order.
    case evenOdd
    /// Q8_K values in the Q4_K nibble order, with per-16 sums (`bsums`).
    case q4K
    /// Q8_K values in the even/odd order, with per-16 sums.
    case q6K

    init(_ weightType: DType) {
        switch weightType {
        case .q4_0: self = .nibblePairs(q8_1: false, zeroPoint: 8)
        case .q5_0: self = .nibblePairs(q8_1: false, zeroPoint: 16)
        case .q4_1, .q5_1: self = .nibblePairs(q8_1: true, zeroPoint: 0)
        case .q8_0: self = .evenOdd
        case .q4_K: self = .q4K
        case .q6_K: self = .q6K
        default: preconditionFailure(Linear.unsupportedMessage(weightType))
        }
    }

    var blockSize: Int {
        switch self {
        case .nibblePairs, .evenOdd: 32
        case .q4K, .q6K: 256
        }
    }
}

/// Quantized activations `[tokens, columns]` inside a `LinearWorkspace`.
///
/// The int8 values are what llama.cpp's x86 CPU backend computes (`quantize_row_q8_0`, `quantize_row_q8_1`,
/// `quantize_row_q8_K_ref`, see `ActivationQuantizer`), widened to int16 and reordered:
///
/// - nibble pairs (per two 32-element blocks A, B; 64 values): four vectors of 16 lanes; lane k < 8 belongs
///   to A and uses bytes 2k and 2k+1 of A's packed nibbles, lane 8 + k likewise for B. Vector 0 holds the
///   value for the low nibble of byte 2k (element 2k), vector 1 the high nibble (element 2k + 16), vector 2
///   the low nibble of byte 2k + 1 (element 2k + 1), vector 3 its high nibble (element 2k + 17). A missing
///   last B is zero.
/// - even/odd (per 32 elements): 16 lanes of elements 0, 2, …, 30, then 16 lanes of elements 1, 3, …, 31.
/// - Q4_K (per 64 elements of a super-block, chunk c): as nibble pairs but for the 32 packed bytes of chunk
///   c, whose low nibbles are elements 64c + j and high nibbles 64c + 32 + j.
struct QuantizedActivations {
    struct Sizes {
        let layout: ActivationLayout
        let tokens: Int
        let columns: Int
        let blocks: Int
        /// int16 values per token (blocks rounded up to pairs for nibble pairs).
        let valuesPerToken: Int
        /// Floats of scales per token: 16 per pair of blocks for nibble pairs (see `quantize`), else d per block.
        let scalesPerToken: Int
        let groupsPerToken: Int
        let values8Offset: Int
        let values16Offset: Int
        let scalesOffset: Int
        let groupSumsOffset: Int
        let byteCount: Int

        init(layout: ActivationLayout, tokens: Int, columns: Int) {
            precondition(columns % layout.blockSize == 0, "columns must be whole activation blocks")
            self.layout = layout
            self.tokens = tokens
            self.columns = columns
            blocks = columns / layout.blockSize
            switch layout {
            case .nibblePairs:
                valuesPerToken = (blocks + 1) / 2 * 64
                scalesPerToken = (blocks + 1) / 2 * 16
            case .evenOdd, .q4K, .q6K:
                valuesPerToken = columns
                scalesPerToken = blocks
            }
            groupsPerToken = columns / 16
            func aligned(_ n: Int) -> Int { (n + 63) & ~63 }
            values8Offset = 0
            values16Offset = aligned(tokens * columns)
            scalesOffset = values16Offset + aligned(tokens * valuesPerToken * 2)
            groupSumsOffset = scalesOffset + aligned(tokens * scalesPerToken * 4)
            byteCount = groupSumsOffset + aligned(tokens * groupsPerToken * 4)
        }
    }

    let sizes: Sizes
    /// The int8 values in natural order, `[tokens, columns]` (an intermediate).
    let values8: UnsafeMutablePointer<Int8>
    /// The int16 values in the layout's order, `[tokens, valuesPerToken]`, 64-byte aligned.
    let values: UnsafeMutablePointer<Int16>
    let scales: UnsafeMutablePointer<Float>
    /// Q8_K only: Σq of each 16 values, natural order, `[tokens, columns / 16]`.
    let groupSums: UnsafeMutablePointer<Int32>

    init(base: UnsafeMutableRawPointer, sizes: Sizes) {
        self.sizes = sizes
        values8 = base.bindMemory(to: Int8.self, capacity: sizes.tokens * sizes.columns)
        values = (base + sizes.values16Offset).bindMemory(to: Int16.self, capacity: sizes.tokens * sizes.valuesPerToken)
        scales = (base + sizes.scalesOffset).bindMemory(to: Float.self, capacity: sizes.tokens * sizes.scalesPerToken)
        groupSums = (base + sizes.groupSumsOffset).bindMemory(
            to: Int32.self, capacity: sizes.tokens * sizes.groupsPerToken)
    }

    /// The values of token `t` (64-byte aligned when columns are a multiple of 32).
    @inline(__always) func values(token t: Int) -> UnsafeRawPointer {
        UnsafeRawPointer(values + t &* sizes.valuesPerToken)
    }

    @inline(__always) func scales(token t: Int) -> UnsafeRawPointer {
        UnsafeRawPointer(scales + t &* sizes.scalesPerToken)
    }

    func quantize(_ x: UnsafePointer<Float>, token: Int) {
        let q = values8 + token * sizes.columns
        let out = values + token * sizes.valuesPerToken
        let s = scales + token * sizes.scalesPerToken
        switch sizes.layout {
        case .nibblePairs(let q8_1, let zeroPoint):
            // Per pair of blocks A, B: 16 floats (d_A ×4, d_B ×4, 0, s_A, 0, s_B, 0 ×4); a missing B has 0s.
            for b in 0..<sizes.blocks {
                let (d, sum, dFloat32) = ActivationQuantizer.q8Block(x + b * 32, into: q + b * 32)
                let pairScales = s + (b / 2) * 16
                let side = b % 2
                for lane in 0..<4 { pairScales[side * 4 + lane] = d }
                pairScales[8 + 2 * side] = 0
                pairScales[12 + 2 * side] = 0
                pairScales[13 + 2 * side] = 0
                pairScales[9 + 2 * side] = q8_1 ? Float(Float16(dFloat32 * Float(sum))) : Float(-zeroPoint * sum) * d
            }
            if sizes.blocks % 2 == 1 {
                let pairScales = s + (sizes.blocks / 2) * 16
                for i in [4, 5, 6, 7, 10, 11] { pairScales[i] = 0 }
            }
            for pair in 0..<((sizes.blocks + 1) / 2) {
                let a = q + pair * 64
                let hasB = 2 * pair + 1 < sizes.blocks
                let v = out + pair * 64
                for k in 0..<16 {
                    let block = k < 8 ? a : a + 32
                    let j = 2 * (k & 7)
                    let present = k < 8 || hasB
                    v[k] = present ? Int16(block[j]) : 0
                    v[16 + k] = present ? Int16(block[j + 16]) : 0
                    v[32 + k] = present ? Int16(block[j + 1]) : 0
                    v[48 + k] = present ? Int16(block[j + 17]) : 0
                }
            }
        case .evenOdd:
            for b in 0..<sizes.blocks {
                s[b] = ActivationQuantizer.q8Block(x + b * 32, into: q + b * 32).d
                Self.scatterEvenOdd(q + b * 32, into: out + b * 32)
            }
        case .q4K, .q6K:
            let sums = groupSums + token * sizes.groupsPerToken
            for b in 0..<sizes.blocks {
                ActivationQuantizer.q8KBlock(x + b * 256, into: q + b * 256, scale: s + b, groupSums: sums + b * 16)
                for chunk in 0..<4 {
                    let c = q + b * 256 + chunk * 64
                    let v = out + b * 256 + chunk * 64
                    if case .q4K = sizes.layout {
                        for k in 0..<16 {
                            v[k] = Int16(c[2 * k])
                            v[16 + k] = Int16(c[32 + 2 * k])
                            v[32 + k] = Int16(c[2 * k + 1])
                            v[48 + k] = Int16(c[33 + 2 * k])
                        }
                    } else {
                        Self.scatterEvenOdd(c, into: v)
                        Self.scatterEvenOdd(c + 32, into: v + 32)
                    }
                }
            }
        }
    }

    @inline(__always)
    static func scatterEvenOdd(_ q: UnsafePointer<Int8>, into v: UnsafeMutablePointer<Int16>) {
        for k in 0..<16 {
            v[k] = Int16(q[2 * k])
            v[16 + k] = Int16(q[2 * k + 1])
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

    @inline(__always)
    static func magnitude(_ v: SIMD16<Float>) -> SIMD16<Float> {
        unsafeBitCast(unsafeBitCast(v, to: SIMD16<UInt32>.self) & 0x7FFF_FFFF, to: SIMD16<Float>.self)
    }

    /// One 32-element block the way x86 llama.cpp's `quantize_row_q8_0` / `quantize_row_q8_1` do it:
    /// `d = amax / 127`, `q = round(x · 127 / amax)` ties to even. Returns d rounded to float16 (as
    /// stored), Σq, and the float32 d (Q8_1's `s` is `fp16(d · Σq)` with it).
    @inline(__always)
    static func q8Block(_ x: UnsafePointer<Float>, into q: UnsafeMutablePointer<Int8>) -> (
        d: Float, sum: Int32, dFloat32: Float
    ) {
        let raw = UnsafeRawPointer(x)
        let v0 = raw.loadUnaligned(as: SIMD16<Float>.self)
        let v1 = raw.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self)
        let m = magnitude(v0).replacing(with: magnitude(v1), where: magnitude(v1) .> magnitude(v0))
        var amax: Float = 0
        for i in 0..<16 { amax = max(amax, m[i]) }
        let d = amax / 127
        let id: Float = amax != 0 ? 127 / amax : 0
        let q0 = nearestInt(v0 * id)
        let q1 = nearestInt(v1 * id)
        for i in 0..<16 {
            q[i] = Int8(truncatingIfNeeded: q0[i])
            q[16 + i] = Int8(truncatingIfNeeded: q1[i])
        }
        return (Float(Float16(d)), (q0 &+ q1).wrappedSum(), d)
    }

    /// One 256-element block as ggml's `quantize_row_q8_K_ref` (used by llama.cpp's x86 backend too):
    /// `iscale = −127 / x_max` where `x_max` is the first value of largest magnitude,
    /// `q = min(127, nearest_int(iscale · x))`, `d = 1 / iscale` in float32, and the sum of each 16 values.
    @inline(__always)
    static func q8KBlock(
        _ x: UnsafePointer<Float>, into q: UnsafeMutablePointer<Int8>, scale: UnsafeMutablePointer<Float>,
        groupSums: UnsafeMutablePointer<Int32>
    ) {
        var amax: Float = 0
        var signedMax: Float = 0
        for j in 0..<256 where abs(x[j]) > amax {
            amax = abs(x[j])
            signedMax = x[j]
        }
        if amax == 0 {
            scale.pointee = 0
            q.initialize(repeating: 0, count: 256)
            groupSums.initialize(repeating: 0, count: 16)
            return
        }
        let iscale = -127 / signedMax
        let raw = UnsafeRawPointer(x)
        for group in 0..<16 {
            let n = nearestInt(raw.loadUnaligned(fromByteOffset: group &* 64, as: SIMD16<Float>.self) * iscale)
            let clamped = n.replacing(with: 127, where: n .> 127)
            for i in 0..<16 { q[group &* 16 &+ i] = Int8(truncatingIfNeeded: clamped[i]) }
            groupSums[group] = clamped.wrappedSum()
        }
        scale.pointee = 1 / iscale
    }
}
