// ggml's 32-element "legacy" blocks: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (layouts from ggml-common.h).
//
// In the 4- and 5-bit blocks byte j of qs holds element j in its low nibble and element j + 16 in its
// high nibble; Q5's qh is a little-endian UInt32 whose bit i is the fifth bit of element i.
//
// [DEQUANT_ORDER] Like gguf-py (and ggml): d and m are widened from float16 first; the symmetric types
// compute d * q, the ones with a minimum (d * q) + m, each rounded to float32 separately.

extension Dequantize {
    /// block_q4_0 (18 bytes): d: f16, qs: 16 bytes. y = d · (q − 8).
    static func q4_0(_ source: UnsafeRawPointer, blocks: Int, into destination: UnsafeMutablePointer<Float>) {
        var block = source
        var y = destination
        for _ in 0..<blocks {
            let d = half(block, 0)
            for j in 0..<16 {
                let packed = byte(block, 2 &+ j)
                y[j] = d * Float(Int32(packed & 0x0F) &- 8)
                y[j &+ 16] = d * Float(Int32(packed &>> 4) &- 8)
            }
            block += 18
            y += 32
        }
    }

    /// block_q4_1 (20 bytes): d: f16, m: f16, qs: 16 bytes. y = (d · q) + m.
    static func q4_1(_ source: UnsafeRawPointer, blocks: Int, into destination: UnsafeMutablePointer<Float>) {
        var block = source
        var y = destination
        for _ in 0..<blocks {
            let d = half(block, 0)
            let m = half(block, 2)
            for j in 0..<16 {
                let packed = byte(block, 4 &+ j)
                y[j] = d * Float(packed & 0x0F) + m
                y[j &+ 16] = d * Float(packed &>> 4) + m
            }
            block += 20
            y += 32
        }
    }

    /// block_q5_0 (22 bytes): d: f16, qh: 4 bytes, qs: 16 bytes. y = d · (q − 16).
    static func q5_0(_ source: UnsafeRawPointer, blocks: Int, into destination: UnsafeMutablePointer<Float>) {
        var block = source
        var y = destination
        for _ in 0..<blocks {
            let d = half(block, 0)
            let qh = UInt32(littleEndian: block.loadUnaligned(fromByteOffset: 2, as: UInt32.self))
            for j in 0..<16 {
                let packed = byte(block, 6 &+ j)
                let lowBit: UInt32 = (qh &>> UInt32(j)) & 1
                let highBit: UInt32 = (qh &>> UInt32(j &+ 16)) & 1
                let low: Int32 = Int32(packed & 0x0F) | Int32(lowBit) &<< 4
                let high: Int32 = Int32(packed &>> 4) | Int32(highBit) &<< 4
                y[j] = d * Float(low &- 16)
                y[j &+ 16] = d * Float(high &- 16)
            }
            block += 22
            y += 32
        }
    }

    /// block_q5_1 (24 bytes): d: f16, m: f16, qh: 4 bytes, qs: 16 bytes. y = (d · q) + m.
    static func q5_1(_ source: UnsafeRawPointer, blocks: Int, into destination: UnsafeMutablePointer<Float>) {
        var block = source
        var y = destination
        for _ in 0..<blocks {
            let d = half(block, 0)
            let m = half(block, 2)
            let qh = UInt32(littleEndian: block.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
            for j in 0..<16 {
                let packed = byte(block, 8 &+ j)
                let lowBit: UInt32 = (qh &>> UInt32(j)) & 1
                let highBit: UInt32 = (qh &>> UInt32(j &+ 16)) & 1
                let low: UInt32 = UInt32(packed & 0x0F) | lowBit &<< 4
                let high: UInt32 = UInt32(packed &>> 4) | highBit &<< 4
                y[j] = d * Float(low) + m
                y[j &+ 16] = d * Float(high) + m
            }
            block += 24
            y += 32
        }
    }

    /// block_q8_0 (34 bytes): d: f16, qs: 32 × int8. y = q · d.
    static func q8_0(_ source: UnsafeRawPointer, blocks: Int, into destination: UnsafeMutablePointer<Float>) {
        var block = source
        var y = destination
        for _ in 0..<blocks {
            let d = half(block, 0)
            for j in 0..<32 {
                y[j] = Float(block.load(fromByteOffset: 2 &+ j, as: Int8.self)) * d
            }
            block += 34
            y += 32
        }
    }
}
