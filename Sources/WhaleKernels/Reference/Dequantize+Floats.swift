// Plain float element types: F32, F16, BF16 and DeepSeek's F8_E4M3 (with its block-scaled form).

extension Dequantize {
    /// F32 is stored as-is; the copy keeps every bit, NaN payloads included. (GGUF and safetensors are
    /// little-endian, as is every host BlueWhale runs on.)
    static func copyF32(_ source: UnsafeRawPointer, count: Int, into destination: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(destination).copyMemory(from: source, byteCount: count * MemoryLayout<Float>.size)
    }

    static func convertF16(_ source: UnsafeRawPointer, count: Int, into destination: UnsafeMutablePointer<Float>) {
        for i in 0..<count {
            destination[i] = half(source, 2 &* i)
        }
    }

    /// BF16 is the high half of a float32.
    static func convertBF16(_ source: UnsafeRawPointer, count: Int, into destination: UnsafeMutablePointer<Float>) {
        for i in 0..<count {
            let bits = UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 &* i, as: UInt16.self))
            destination[i] = Float(bitPattern: UInt32(bits) &<< 16)
        }
    }

    static func convertF8E4M3(_ source: UnsafeRawPointer, count: Int, into destination: UnsafeMutablePointer<Float>) {
        for i in 0..<count {
            destination[i] = e4m3fn(byte(source, i))
        }
    }

    /// float8_e4m3fn ("fn": finite, no infinities): 1 sign, 4 exponent bits (bias 7), 3 mantissa bits.
    /// S.1111.111 is NaN, returned as the quiet NaN 0x7FC00000 carrying the code's sign, as ml_dtypes does.
    @inline(__always)
    static func e4m3fn(_ code: UInt8) -> Float {
        let sign = UInt32(code & 0x80) &<< 24
        let magnitude = code & 0x7F
        if magnitude == 0x7F { return Float(bitPattern: sign | 0x7FC0_0000) }
        let exponent = UInt32(magnitude &>> 3)
        let mantissa = UInt32(magnitude & 0x07)
        if exponent == 0 {
            // Subnormal: mantissa · 2^-9, exact in float32.
            return Float(bitPattern: sign | (Float(mantissa) * 0x1p-9).bitPattern)
        }
        // Rebias the exponent from 7 to 127 and move the 3 mantissa bits to the top of float32's 23.
        return Float(bitPattern: sign | (exponent &+ 120) &<< 23 | mantissa &<< 20)
    }

    /// The validated core of `blockScaledFP8(weight:scaleInv:...)`: `scaleInv` is float32
    /// `[ceil(rows / blockSize), ceil(cols / blockSize)]`, possibly unaligned.
    static func blockScaledFP8(
        _ codes: UnsafeRawPointer, scaleInv: UnsafeRawPointer, rows: Int, cols: Int, blockSize: Int,
        into destination: UnsafeMutablePointer<Float>
    ) {
        let scaleCols = blockCount(cols, blockSize)
        for row in 0..<rows {
            let scaleRow = (row / blockSize) &* scaleCols
            let rowStart = row &* cols
            for blockColumn in 0..<scaleCols {
                let scaleBits = UInt32(
                    littleEndian: scaleInv.loadUnaligned(
                        fromByteOffset: (scaleRow &+ blockColumn) &* 4, as: UInt32.self))
                let scale = Float(bitPattern: scaleBits)
                let start = rowStart &+ blockColumn &* blockSize
                let end = rowStart &+ min((blockColumn &+ 1) &* blockSize, cols)
                for i in start..<end {
                    destination[i] = e4m3fn(byte(codes, i)) * scale
                }
            }
        }
    }
}
