import WhaleCore

// The scalar specification of `Linear.apply`, written to be read next to ggml's `quants.c`.
//
// [ACTIVATION_QUANT] Activations are quantized as llama.cpp's CPU backend does on x86 (the machine it is
// compared with): Q8_0 / Q8_1 with `d = amax / 127`, `id = 127 / amax` and round-half-even
// (`quantize_row_q8_0` / `quantize_row_q8_1`, AVX2 path); Q8_K with `quantize_row_q8_K_ref`. ggml's scalar
// and ARM paths compute `id = 1 / d` (and round half away from zero in the scalar one), which changes a
// rare value by one step.
//
// [BLOCK_DOT_ORDER] Each block's integer dot product is exact, so only the float steps matter. Legacy
// types follow llama.cpp's x86 (AVX2) dot products, which `apply` reproduces bit for bit ([X86_BLOCK_DOT]);
// K-quants follow the 8 float lanes `sums[l]` of `ggml_vec_dot_q4_K_q8_K_generic` / `…_q5_K_…` / `…_q6_K_…` /
// `…_q3_K_…`, and Q2_K's one float step per block.

extension Linear {
    /// The scalar specification of `apply` (same quantization of activations, same block order), used by tests.
    ///
    /// Slow by design (scalar loops, allocations); float weights are dequantized row by row and summed
    /// left to right in float32.
    public static func reference(
        _ weight: WeightMatrix, input: UnsafePointer<Float>, tokens: Int, output: UnsafeMutablePointer<Float>
    ) {
        precondition(supports(weight.type), unsupportedMessage(weight.type))
        let rows = weight.rows
        let columns = weight.columns
        switch weight.type {
        case .f32, .f16, .bf16, .f8E4M3:
            var row = [Float](repeating: 0, count: columns)
            for r in 0..<rows {
                row.withUnsafeMutableBufferPointer { weight.dequantizeRow(r, into: $0.baseAddress!) }
                for t in 0..<tokens {
                    var sum: Float = 0
                    for c in 0..<columns { sum += row[c] * input[t * columns + c] }
                    output[t * rows + r] = sum
                }
            }
        default:
            let superBlocks = weight.type.blockSize == 256
            for t in 0..<tokens {
                let x = ReferenceActivations(input + t * columns, count: columns, superBlocks: superBlocks)
                for r in 0..<rows {
                    output[t * rows + r] = weight.withFileRow(r) { w in
                        ReferenceDot.row(weight.type, w, x, blocks: columns / weight.type.blockSize)
                    }
                }
            }
        }
    }
}

/// One token's activations quantized by the scalar reference quantizers: Q8_0 / Q8_1 (32-element blocks;
/// `offsets` holds Q8_1's `s`, `groupSums` Σq per block) or Q8_K (`superBlocks`; `groupSums` per 16).
struct ReferenceActivations {
    var values: [Int8]
    var scales: [Float]
    var offsets: [Float]
    var groupSums: [Int32]

    init(_ x: UnsafePointer<Float>, count: Int, superBlocks: Bool) {
        values = [Int8](repeating: 0, count: count)
        let blocks = count / (superBlocks ? 256 : 32)
        scales = [Float](repeating: 0, count: blocks)
        offsets = [Float](repeating: 0, count: blocks)
        groupSums = [Int32](repeating: 0, count: count / (superBlocks ? 16 : 32))
        for b in 0..<blocks {
            if superBlocks {
                quantizeQ8K(x + b * 256, block: b)
            } else {
                quantizeQ8(x + b * 32, block: b)
            }
        }
    }

    /// x86 `quantize_row_q8_0` / `quantize_row_q8_1` for one block (see [ACTIVATION_QUANT]).
    private mutating func quantizeQ8(_ x: UnsafePointer<Float>, block b: Int) {
        var amax: Float = 0
        for j in 0..<32 { amax = max(amax, abs(x[j])) }
        let d = amax / 127
        let id: Float = amax != 0 ? 127 / amax : 0
        var sum: Int32 = 0
        for j in 0..<32 {
            let q = ActivationQuantizer.nearestInt(x[j] * id)
            values[b * 32 + j] = Int8(q)
            sum += q
        }
        scales[b] = Float(Float16(d))
        offsets[b] = Float(Float16(d * Float(sum)))
        groupSums[b] = sum
    }

    /// `quantize_row_q8_K_ref` for one block.
    private mutating func quantizeQ8K(_ x: UnsafePointer<Float>, block b: Int) {
        var amax: Float = 0
        var signedMax: Float = 0
        for j in 0..<256 where abs(x[j]) > amax {
            amax = abs(x[j])
            signedMax = x[j]
        }
        if amax == 0 { return }  // d = 0, values and sums stay 0
        let iscale = -127 / signedMax
        for j in 0..<256 {
            values[b * 256 + j] = Int8(min(127, ActivationQuantizer.nearestInt(iscale * x[j])))
        }
        for group in 0..<16 {
            var sum: Int32 = 0
            for l in 0..<16 { sum += Int32(values[b * 256 + group * 16 + l]) }
            groupSums[b * 16 + group] = sum
        }
        scales[b] = 1 / iscale
    }
}

/// ggml's scalar block dot products, one weight row against one token.
enum ReferenceDot {
    static func row(_ type: DType, _ w: UnsafeRawPointer, _ x: ReferenceActivations, blocks: Int) -> Float {
        switch type {
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0:
            // Eight float lanes, each fed one four-element integer sum per block; the offset term apart.
            var lanes = [Float](repeating: 0, count: 8)
            var summs: Float = 0
            for b in 0..<blocks {
                legacyBlock(type, w + b * type.bytesPerBlock, x, block: b, lanes: &lanes, summs: &summs)
            }
            let half: [Float] = (0..<4).map { (i: Int) -> Float in lanes[i + 4] + lanes[i] }
            return ((half[0] + half[2]) + (half[1] + half[3])) + summs
        case .q4_K, .q5_K: return q4_K(w, x, blocks: blocks, hasFifthBit: type == .q5_K)
        case .q6_K: return q6_K(w, x, blocks: blocks)
        case .q3_K: return q3_K(w, x, blocks: blocks)
        case .q2_K: return q2_K(w, x, blocks: blocks)
        default: preconditionFailure(Linear.unsupportedMessage(type))
        }
    }

    /// One 32-element block's contribution, in the float order of x86 `ggml_vec_dot_<type>_q8_<0|1>`:
    /// `lanes[l] = fma(d_w·d_x, Σ of products 4l…4l+3, lanes[l])`, and for Q4_1 / Q5_1 `summs = fma(m, s, summs)`.
    static func legacyBlock(
        _ type: DType, _ block: UnsafeRawPointer, _ x: ReferenceActivations, block b: Int, lanes: inout [Float],
        summs: inout Float
    ) {
        let dx = Dequantize.half(block, 0)
        let dy = x.scales[b]
        var weights = [Int32](repeating: 0, count: 32)
        switch type {
        case .q8_0:
            for j in 0..<32 { weights[j] = Int32(block.load(fromByteOffset: 2 + j, as: Int8.self)) }
        case .q4_0, .q4_1:
            let qs = type == .q4_0 ? 2 : 4
            let zero: Int32 = type == .q4_0 ? 8 : 0
            for j in 0..<16 {
                let packed = Dequantize.byte(block, qs + j)
                weights[j] = Int32(packed & 0x0F) - zero
                weights[j + 16] = Int32(packed >> 4) - zero
            }
        case .q5_0, .q5_1:
            let qhOffset = type == .q5_0 ? 2 : 4
            let qh = UInt32(littleEndian: block.loadUnaligned(fromByteOffset: qhOffset, as: UInt32.self))
            let zero: Int32 = type == .q5_0 ? 16 : 0
            for j in 0..<16 {
                let packed = Dequantize.byte(block, qhOffset + 4 + j)
                let lowBit: UInt32 = (qh >> UInt32(j)) & 1
                let highBit: UInt32 = (qh >> UInt32(j + 16)) & 1
                weights[j] = (Int32(packed & 0x0F) | Int32(lowBit) << 4) - zero
                weights[j + 16] = (Int32(packed >> 4) | Int32(highBit) << 4) - zero
            }
        default: preconditionFailure(Linear.unsupportedMessage(type))
        }
        let scale = dx * dy
        for l in 0..<8 {
            var sumi: Int32 = 0
            for j in (4 * l)..<(4 * l + 4) { sumi += weights[j] * Int32(x.values[b * 32 + j]) }
            lanes[l] = lanes[l].addingProduct(scale, Float(sumi))
        }
        if type == .q4_1 || type == .q5_1 { summs = summs.addingProduct(Dequantize.half(block, 2), x.offsets[b]) }
    }

    /// `ggml_vec_dot_q4_K_q8_K_generic`, and with `hasFifthBit` `ggml_vec_dot_q5_K_q8_K_generic` (the same
    /// steps with 5-bit codes).
    static func q4_K(_ w: UnsafeRawPointer, _ x: ReferenceActivations, blocks: Int, hasFifthBit: Bool) -> Float {
        var sums = [Float](repeating: 0, count: 8)
        var sumf: Float = 0
        let codes = hasFifthBit ? 48 : 16
        for i in 0..<blocks {
            let block = w + i * (hasFifthBit ? 176 : 144)
            var a = [Int32](repeating: 0, count: 256)
            for chunk in 0..<4 {
                for l in 0..<32 {
                    let packed = Dequantize.byte(block, codes + chunk * 32 + l)
                    a[chunk * 64 + l] = Int32(packed & 0x0F)
                    a[chunk * 64 + 32 + l] = Int32(packed >> 4)
                    if hasFifthBit {
                        let high = Int32(Dequantize.byte(block, 16 + l))
                        a[chunk * 64 + l] |= ((high >> (2 * chunk)) & 1) << 4
                        a[chunk * 64 + 32 + l] |= ((high >> (2 * chunk + 1)) & 1) << 4
                    }
                }
            }
            var sumi: Int32 = 0
            for j in 0..<16 { sumi += x.groupSums[i * 16 + j] * Int32(Dequantize.scaleMinK4(block + 4, j / 2).min) }
            var aux32 = [Int32](repeating: 0, count: 8)
            for group in 0..<8 {
                let scale = Int32(Dequantize.scaleMinK4(block + 4, group).scale)
                for k in 0..<32 {
                    let index = group * 32 + k
                    aux32[k % 8] += scale * (Int32(x.values[i * 256 + index]) * a[index])
                }
            }
            let d = Dequantize.half(block, 0) * x.scales[i]
            for l in 0..<8 { sums[l] += d * Float(aux32[l]) }
            let dmin = Dequantize.half(block, 2) * x.scales[i]
            sumf -= dmin * Float(sumi)
        }
        for l in 0..<8 { sumf += sums[l] }
        return sumf
    }

    /// `ggml_vec_dot_q6_K_q8_K_generic`.
    static func q6_K(_ w: UnsafeRawPointer, _ x: ReferenceActivations, blocks: Int) -> Float {
        var sums = [Float](repeating: 0, count: 8)
        for i in 0..<blocks {
            let block = w + i * 210
            var a = [Int32](repeating: 0, count: 256)
            for half in 0..<2 {
                let ql = 64 * half
                let qh = 128 + 32 * half
                for l in 0..<32 {
                    let h = Int32(Dequantize.byte(block, qh + l))
                    let low = Int32(Dequantize.byte(block, ql + l))
                    let high = Int32(Dequantize.byte(block, ql + l + 32))
                    a[half * 128 + l] = ((low & 0x0F) | ((h >> 0) & 3) << 4) - 32
                    a[half * 128 + l + 32] = ((high & 0x0F) | ((h >> 2) & 3) << 4) - 32
                    a[half * 128 + l + 64] = ((low >> 4) | ((h >> 4) & 3) << 4) - 32
                    a[half * 128 + l + 96] = ((high >> 4) | ((h >> 6) & 3) << 4) - 32
                }
            }
            var aux32 = [Int32](repeating: 0, count: 8)
            for group in 0..<16 {
                let scale = Int32(block.load(fromByteOffset: 192 + group, as: Int8.self))
                for k in 0..<16 {
                    let index = group * 16 + k
                    aux32[k % 8] += scale * (Int32(x.values[i * 256 + index]) * a[index])
                }
            }
            let d = Dequantize.half(block, 208) * x.scales[i]
            for l in 0..<8 { sums[l] += d * Float(aux32[l]) }
        }
        var sumf: Float = 0
        for l in 0..<8 { sumf += sums[l] }
        return sumf
    }

    /// `ggml_vec_dot_q3_K_q8_K_generic`: codes q − 4·[hmask bit clear] times values, per group of 16 times
    /// the scale − 32, into eight integer lanes, then eight float lanes.
    static func q3_K(_ w: UnsafeRawPointer, _ x: ReferenceActivations, blocks: Int) -> Float {
        var sums = [Float](repeating: 0, count: 8)
        for i in 0..<blocks {
            let block = w + i * 110
            var a = [Int32](repeating: 0, count: 256)
            for half in 0..<2 {
                for j in 0..<4 {
                    for l in 0..<32 {
                        let q = Int32((Dequantize.byte(block, 32 + 32 * half + l) >> (2 * j)) & 3)
                        let isHigh = (Dequantize.byte(block, l) >> (4 * half + j)) & 1 == 1
                        a[128 * half + 32 * j + l] = isHigh ? q : q - 4
                    }
                }
            }
            var aux32 = [Int32](repeating: 0, count: 8)
            for group in 0..<16 {
                let low = Int32((Dequantize.byte(block, 96 + group % 8) >> (4 * (group / 8))) & 0x0F)
                let high = Int32((Dequantize.byte(block, 104 + group % 4) >> (2 * (group / 4))) & 0x03)
                let scale = (low | high << 4) - 32
                for k in 0..<16 {
                    let index = group * 16 + k
                    aux32[k % 8] += scale * (Int32(x.values[i * 256 + index]) * a[index])
                }
            }
            let d = Dequantize.half(block, 108) * x.scales[i]
            for l in 0..<8 { sums[l] += d * Float(aux32[l]) }
        }
        var sumf: Float = 0
        for l in 0..<8 { sumf += sums[l] }
        return sumf
    }

    /// `ggml_vec_dot_q2_K_q8_K_generic`: one integer sum of codes × values × scale per block, the mins
    /// with the per-16 sums, one float step per block.
    static func q2_K(_ w: UnsafeRawPointer, _ x: ReferenceActivations, blocks: Int) -> Float {
        var sumf: Float = 0
        for i in 0..<blocks {
            let block = w + i * 84
            var summs: Int32 = 0
            for group in 0..<16 { summs += x.groupSums[i * 16 + group] * Int32(Dequantize.byte(block, group) >> 4) }
            var isum: Int32 = 0
            for half in 0..<2 {
                for j in 0..<4 {
                    for l in 0..<32 {
                        let q = Int32((Dequantize.byte(block, 16 + 32 * half + l) >> (2 * j)) & 3)
                        let scale = Int32(Dequantize.byte(block, 8 * half + 2 * j + l / 16) & 0x0F)
                        isum += scale * q * Int32(x.values[i * 256 + 128 * half + 32 * j + l])
                    }
                }
            }
            let dall = x.scales[i] * Dequantize.half(block, 80)
            let dmin = x.scales[i] * Dequantize.half(block, 82)
            sumf += dall * Float(isum) - dmin * Float(summs)
        }
        return sumf
    }
}
