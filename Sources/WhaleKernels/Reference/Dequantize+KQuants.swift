// ggml's 256-element "K" super-blocks: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (layouts from ggml-common.h).
//
// Each super-block has a float16 d (and dmin) and small per-group scales (16 groups of 16 elements, or
// 8 groups of 32). Element i of the super-block sits in group i / 16 (or i / 32).
//
// [DEQUANT_ORDER] gguf-py (like ggml) forms the group's float32 scale dl = d · sc (and offset ml = dmin · m),
// then computes dl · q (− ml). The products are exact in float32 (11 + 7 + 5 significant bits at most), so
// only the final subtraction rounds; what bit-exactness needs is that every step stays in float32 (rounding
// d · sc to float16, as some C kernels do, changes results). We keep gguf-py's order anyway, once per group.

extension Dequantize {
    /// block_q2_K (84 bytes): scales: 16 bytes (low nibble scale, high nibble min), qs: 64 bytes (2 bits
    /// each), d: f16, dmin: f16. Element h·128 + j·32 + l (h < 2, j < 4, l < 32) is bits 2j…2j+1 of
    /// qs[h·32 + l]. y = (d · sc) · q − (dmin · m).
    static func q2_K(_ source: UnsafeRawPointer, blocks: Int, into destination: UnsafeMutablePointer<Float>) {
        var block = source
        var y = destination
        for _ in 0..<blocks {
            let d = half(block, 80)
            let dmin = half(block, 82)
            for group in 0..<16 {
                let scales = byte(block, group)
                let dl = d * Float(scales & 0x0F)
                let ml = dmin * Float(scales &>> 4)
                let halfIndex = group &>> 3  // which 128-element half
                let shift = UInt8((group &>> 1) & 3) &* 2
                let qs = 16 &+ halfIndex &* 32 &+ (group & 1) &* 16
                let out = y + group &* 16
                for l in 0..<16 {
                    let q = (byte(block, qs &+ l) &>> shift) & 3
                    out[l] = dl * Float(q) - ml
                }
            }
            block += 84
            y += 256
        }
    }

    /// block_q3_K (110 bytes): hmask: 32 bytes, qs: 64 bytes (low 2 bits, placed as in Q2_K), scales:
    /// 12 bytes (16 six-bit scales), d: f16. The third bit of element i is bit i / 32 of hmask[i % 32];
    /// when it is clear the value is 4 lower. y = (d · (sc − 32)) · q.
    static func q3_K(_ source: UnsafeRawPointer, blocks: Int, into destination: UnsafeMutablePointer<Float>) {
        var block = source
        var y = destination
        for _ in 0..<blocks {
            let d = half(block, 108)
            for group in 0..<16 {
                // Scale bits 0–3: nibble `group / 8` of scales[group % 8]; bits 4–5: bits 2·(group / 4)
                // of scales[8 + group % 4].
                let lowShift: Int = (group &>> 3) &* 4
                let highShift: Int = (group &>> 2) &* 2
                let low: UInt8 = (byte(block, 96 &+ (group & 7)) &>> UInt8(lowShift)) & 0x0F
                let high: UInt8 = (byte(block, 104 &+ (group & 3)) &>> UInt8(highShift)) & 0x03
                let scale: UInt8 = low | high &<< 4
                let dl = d * Float(Int32(scale) &- 32)
                let halfIndex = group &>> 3
                let shift = UInt8((group &>> 1) & 3) &* 2
                let qs = 32 &+ halfIndex &* 32 &+ (group & 1) &* 16
                let hmaskBit = UInt8(group &>> 1)  // element / 32
                let hmask = (group & 1) &* 16  // element % 32, less l
                let out = y + group &* 16
                for l in 0..<16 {
                    let q = Int32((byte(block, qs &+ l) &>> shift) & 3)
                    let isHigh = (byte(block, hmask &+ l) &>> hmaskBit) & 1
                    out[l] = dl * Float(isHigh == 0 ? q &- 4 : q)
                }
            }
            block += 110
            y += 256
        }
    }

    /// The 6-bit scale and min of group `group` (< 8) from the 12 packed bytes shared by Q4_K and Q5_K
    /// (ggml's `get_scale_min_k4`).
    @inline(__always)
    static func scaleMinK4(_ scales: UnsafeRawPointer, _ group: Int) -> (scale: UInt8, min: UInt8) {
        if group < 4 {
            return (byte(scales, group) & 0x3F, byte(scales, group &+ 4) & 0x3F)
        }
        let packed = byte(scales, group &+ 4)
        let scale = (packed & 0x0F) | (byte(scales, group &- 4) &>> 6) &<< 4
        let min = (packed &>> 4) | (byte(scales, group) &>> 6) &<< 4
        return (scale, min)
    }

    /// block_q4_K (144 bytes): d: f16, dmin: f16, scales: 12 bytes, qs: 128 bytes. Element c·64 + s·32 + l
    /// (c < 4, s < 2, l < 32) is nibble s of qs[c·32 + l], in group 2c + s. y = (d · sc) · q − (dmin · m).
    static func q4_K(_ source: UnsafeRawPointer, blocks: Int, into destination: UnsafeMutablePointer<Float>) {
        var block = source
        var y = destination
        for _ in 0..<blocks {
            let d = half(block, 0)
            let dmin = half(block, 2)
            for group in 0..<8 {
                let (scale, min) = scaleMinK4(block + 4, group)
                let dl = d * Float(scale)
                let ml = dmin * Float(min)
                let shift = UInt8(group & 1) &* 4
                let qs = 16 &+ (group &>> 1) &* 32
                let out = y + group &* 32
                for l in 0..<32 {
                    let q = (byte(block, qs &+ l) &>> shift) & 0x0F
                    out[l] = dl * Float(q) - ml
                }
            }
            block += 144
            y += 256
        }
    }

    /// block_q5_K (176 bytes): d: f16, dmin: f16, scales: 12 bytes, qh: 32 bytes, qs: 128 bytes. Low four
    /// bits as in Q4_K; the fifth bit of element i is bit i / 32 of qh[i % 32].
    /// y = (d · sc) · q − (dmin · m).
    static func q5_K(_ source: UnsafeRawPointer, blocks: Int, into destination: UnsafeMutablePointer<Float>) {
        var block = source
        var y = destination
        for _ in 0..<blocks {
            let d = half(block, 0)
            let dmin = half(block, 2)
            for group in 0..<8 {
                let (scale, min) = scaleMinK4(block + 4, group)
                let dl = d * Float(scale)
                let ml = dmin * Float(min)
                let shift = UInt8(group & 1) &* 4
                let qs = 48 &+ (group &>> 1) &* 32
                let qhBit = UInt8(group)
                let out = y + group &* 32
                for l in 0..<32 {
                    let low = (byte(block, qs &+ l) &>> shift) & 0x0F
                    let high = (byte(block, 16 &+ l) &>> qhBit) & 1
                    out[l] = dl * Float(low | high &<< 4) - ml
                }
            }
            block += 176
            y += 256
        }
    }

    /// block_q6_K (210 bytes): ql: 128 bytes (low 4 bits), qh: 64 bytes (high 2 bits), scales: 16 × int8,
    /// d: f16. Within each 128-element half h, element s·64 + l (s < 2, l < 64) takes nibble s of
    /// ql[h·64 + l], and element j·32 + l (j < 4, l < 32) takes bits 2j…2j+1 of qh[h·32 + l].
    /// y = (d · sc) · (q − 32).
    static func q6_K(_ source: UnsafeRawPointer, blocks: Int, into destination: UnsafeMutablePointer<Float>) {
        var block = source
        var y = destination
        for _ in 0..<blocks {
            let d = half(block, 208)
            for group in 0..<16 {
                let dl = d * Float(block.load(fromByteOffset: 192 &+ group, as: Int8.self))
                let halfIndex = group &>> 3
                let inHalf = (group & 7) &* 16  // first element's index within its half
                let ql = halfIndex &* 64 &+ (inHalf & 63)
                let qlShift = UInt8(inHalf &>> 6) &* 4
                let qh = 128 &+ halfIndex &* 32 &+ (inHalf & 31)
                let qhShift = UInt8(inHalf &>> 5) &* 2
                let out = y + group &* 16
                for l in 0..<16 {
                    let low = (byte(block, ql &+ l) &>> qlShift) & 0x0F
                    let high = (byte(block, qh &+ l) &>> qhShift) & 0x03
                    out[l] = dl * Float(Int32(low | high &<< 4) &- 32)
                }
            }
            block += 210
            y += 256
        }
    }
}
