/// Scratch memory for one forward pass (quantized activations); reused across calls, never shared by two
/// concurrent callers.
///
/// `Linear.apply` quantizes its input into this memory before the matrix product, as llama.cpp does, so
/// that a decode step allocates nothing. It grows to the largest `tokens × columns` it has seen and keeps
/// that size; one workspace per concurrently running forward pass.
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
            // Round up so that repeated small growth does not reallocate every call.
            let size = max(byteCount, capacity * 2, 4096)
            storage = .allocate(byteCount: size, alignment: 64)
            capacity = size
        }
        return storage!
    }

    /// Quantizes `tokens` rows of `columns` floats for a weight type's dot products and returns where the
    /// results live inside this workspace (valid until the next call).
    func quantize(
        _ input: UnsafePointer<Float>, tokens: Int, columns: Int, as format: ActivationFormat, pool: ThreadPool
    ) -> QuantizedActivations {
        let layout = QuantizedActivations.Layout(format: format, tokens: tokens, columns: columns)
        let activations = QuantizedActivations(base: reserve(layout.byteCount), layout: layout)
        // Quantizing is ~1 % of the product's work; spread it only when there are many tokens.
        if tokens >= 8 {
            pool.parallelFor(tokens) { token in
                activations.quantize(input + token * columns, token: token)
            }
        } else {
            for token in 0..<tokens { activations.quantize(input + token * columns, token: token) }
        }
        return activations
    }
}

/// How activations are quantized for a weight type (llama.cpp's `vec_dot_type`).
enum ActivationFormat {
    /// 32-element blocks, int8 values, float16 scale `d` (ggml's block_q8_0).
    case q8_0
    /// Like Q8_0 plus `s = d · Σq` rounded to float16 (block_q8_1), for weights with a minimum.
    case q8_1
    /// 256-element blocks, float32 scale, plus the sum of each 16 values (block_q8_K), for K-quants.
    case q8_K

    var blockSize: Int { self == .q8_K ? 256 : 32 }
    /// Elements per entry of `groupSums`: 32 for Q8_0/Q8_1 (one per block), 16 for Q8_K (`bsums`).
    var groupSize: Int { self == .q8_K ? 16 : 32 }
}

/// Quantized activations `[tokens, columns]` inside a `LinearWorkspace`, stored as separate arrays (not
/// ggml's interleaved blocks) so the kernels read 32 aligned int8 values with one load.
///
/// Every value is what llama.cpp's x86 CPU backend computes (`quantize_row_q8_0`, `quantize_row_q8_1`,
/// `quantize_row_q8_K_ref`); the float16 fields are widened back to Float once here.
struct QuantizedActivations {
    struct Layout {
        let format: ActivationFormat
        let tokens: Int
        let columns: Int
        let blocksPerToken: Int
        let groupsPerToken: Int
        let scalesOffset: Int
        let offsetsOffset: Int
        let groupSumsOffset: Int
        let byteCount: Int

        init(format: ActivationFormat, tokens: Int, columns: Int) {
            precondition(columns % format.blockSize == 0, "columns must be whole activation blocks")
            self.format = format
            self.tokens = tokens
            self.columns = columns
            blocksPerToken = columns / format.blockSize
            groupsPerToken = columns / format.groupSize
            func aligned(_ n: Int) -> Int { (n + 63) & ~63 }
            scalesOffset = aligned(tokens * columns)
            offsetsOffset = scalesOffset + aligned(tokens * blocksPerToken * 4)
            groupSumsOffset = offsetsOffset + aligned(tokens * blocksPerToken * 4)
            byteCount = groupSumsOffset + aligned(tokens * groupsPerToken * 4)
        }
    }

    let layout: Layout
    /// int8 values, `[tokens, columns]`, 64-byte aligned; each token's row starts at `token * columns`.
    let values: UnsafeMutablePointer<Int8>
    /// Block scales `d`, `[tokens, blocksPerToken]` (float16-rounded for Q8_0 / Q8_1, float32 for Q8_K).
    let scales: UnsafeMutablePointer<Float>
    /// Q8_1 only: `s = d · Σq` per block, float16-rounded.
    let offsets: UnsafeMutablePointer<Float>
    /// Σq per group of `format.groupSize` values, `[tokens, groupsPerToken]` — used to fold the weights'
    /// zero points (Q4_0's −8, Q8_0's +128 bias, Q6_K's −32) out of the integer dot products.
    let groupSums: UnsafeMutablePointer<Int32>

    init(base: UnsafeMutableRawPointer, layout: Layout) {
        self.layout = layout
        values = base.bindMemory(to: Int8.self, capacity: layout.tokens * layout.columns)
        let blocks = layout.tokens * layout.blocksPerToken
        scales = (base + layout.scalesOffset).bindMemory(to: Float.self, capacity: blocks)
        offsets = (base + layout.offsetsOffset).bindMemory(to: Float.self, capacity: blocks)
        groupSums = (base + layout.groupSumsOffset).bindMemory(
            to: Int32.self, capacity: layout.tokens * layout.groupsPerToken)
    }

    func quantize(_ x: UnsafePointer<Float>, token: Int) {
        let blocks = layout.blocksPerToken
        let q = values + token * layout.columns
        let d = scales + token * blocks
        switch layout.format {
        case .q8_0, .q8_1:
            let s = offsets + token * blocks
            let sums = groupSums + token * blocks
            for block in 0..<blocks {
                ActivationQuantizer.q8Block(
                    x + block &* 32, into: q + block &* 32, scale: d + block, offset: s + block, sum: sums + block)
            }
        case .q8_K:
            let sums = groupSums + token * layout.groupsPerToken
            for block in 0..<blocks {
                ActivationQuantizer.q8KBlock(
                    x + block &* 256, into: q + block &* 256, scale: d + block, groupSums: sums + block &* 16)
            }
        }
    }
}

/// The per-block activation quantizers, shared by `Linear.apply` (vectorized by the compiler) and
/// `Linear.reference`, so both see identical activations.
enum ActivationQuantizer {
    /// ggml's `nearest_int`: round to nearest, ties to even, for |v| < 2²², as a float add — the same
    /// result as x86's `_mm256_round_ps(_, _MM_ROUND_NEAREST)` used by `quantize_row_q8_0`.
    @inline(__always)
    static func nearestInt(_ v: Float) -> Int32 {
        Int32(bitPattern: (v + 12_582_912).bitPattern & 0x007F_FFFF) &- 0x0040_0000
    }

    @inline(__always)
    static func nearestInt(_ v: SIMD16<Float>) -> SIMD16<Int32> {
        let biased = v + SIMD16(repeating: 12_582_912)
        return SIMD16<Int32>(truncatingIfNeeded: unsafeBitCast(biased, to: SIMD16<UInt32>.self) & 0x007F_FFFF)
            &- 0x0040_0000
    }

    @inline(__always)
    static func magnitude(_ v: SIMD16<Float>) -> SIMD16<Float> {
        unsafeBitCast(unsafeBitCast(v, to: SIMD16<UInt32>.self) & 0x7FFF_FFFF, to: SIMD16<Float>.self)
    }

    @inline(__always)
    static func maximum(_ a: SIMD16<Float>, _ b: SIMD16<Float>) -> SIMD16<Float> {
        a.replacing(with: b, where: b .> a)
    }

    /// One 32-element block the way x86 llama.cpp's `quantize_row_q8_0` / `quantize_row_q8_1` do it:
    /// `d = amax / 127` (stored as float16), `q = round(x · 127 / amax)` ties to even, and for Q8_1
    /// `s = float16(d · Σq)` with the float32 `d`. Also stores Σq exactly.
    @inline(__always)
    static func q8Block(
        _ x: UnsafePointer<Float>, into q: UnsafeMutablePointer<Int8>, scale: UnsafeMutablePointer<Float>,
        offset: UnsafeMutablePointer<Float>, sum: UnsafeMutablePointer<Int32>
    ) {
        let raw = UnsafeRawPointer(x)
        let v0 = raw.loadUnaligned(as: SIMD16<Float>.self)
        let v1 = raw.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self)
        let m = maximum(magnitude(v0), magnitude(v1))
        let m8 = maximum16to8(m)
        let m4 = m8.lowHalf.replacing(with: m8.highHalf, where: m8.highHalf .> m8.lowHalf)
        let amax = max(max(m4[0], m4[1]), max(m4[2], m4[3]))
        let d = amax / 127
        let id: Float = amax != 0 ? 127 / amax : 0
        let q0 = nearestInt(v0 * id)
        let q1 = nearestInt(v1 * id)
        let raw8 = UnsafeMutableRawPointer(q)
        raw8.storeBytes(of: SIMD16<Int8>(truncatingIfNeeded: q0), as: SIMD16<Int8>.self)
        raw8.storeBytes(of: SIMD16<Int8>(truncatingIfNeeded: q1), toByteOffset: 16, as: SIMD16<Int8>.self)
        let total = (q0 &+ q1).wrappedSum()
        scale.pointee = Float(Float16(d))
        offset.pointee = Float(Float16(d * Float(total)))
        sum.pointee = total
    }

    @inline(__always)
    static func maximum16to8(_ m: SIMD16<Float>) -> SIMD8<Float> {
        m.lowHalf.replacing(with: m.highHalf, where: m.highHalf .> m.lowHalf)
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
        for j in 0..<256 {
            let ax = abs(x[j])
            if ax > amax {
                amax = ax
                signedMax = x[j]
            }
        }
        if amax == 0 {
            scale.pointee = 0
            UnsafeMutableRawPointer(q).initializeMemory(as: Int8.self, repeating: 0, count: 256)
            UnsafeMutableRawPointer(groupSums).initializeMemory(as: Int32.self, repeating: 0, count: 16)
            return
        }
        let iscale = -127 / signedMax
        let raw = UnsafeRawPointer(x)
        let raw8 = UnsafeMutableRawPointer(q)
        for group in 0..<16 {
            let v = raw.loadUnaligned(fromByteOffset: group &* 64, as: SIMD16<Float>.self)
            let n = nearestInt(v * iscale)
            let clamped = n.replacing(with: 127, where: n .> 127)
            raw8.storeBytes(of: SIMD16<Int8>(truncatingIfNeeded: clamped), toByteOffset: group &* 16, as: SIMD16<Int8>.self)
            groupSums[group] = clamped.wrappedSum()
        }
        scale.pointee = 1 / iscale
    }
}
