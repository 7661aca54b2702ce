/// Rows of Q8_0 blocks, as a `q8_0` cache stores them (llama.cpp's `--cache-type-k q8_0`): each 32 values
/// are an IEEE half scale d and 32 signed bytes q, value = d · q — 34 bytes per 32 values, 53 % of a half
/// row. Written with llama.cpp's `quantize_row_q8_0` rounding (d = amax / 127, q = round(x / d)); read by
/// widening to floats (d · q, one rounding-free product per value), so attention over a Q8_0 row gives
/// exactly what it gives over the same dequantized values held as floats.
///
/// Every row width must be a multiple of 32 (`blockValues`), so rows and heads start on whole blocks.
public enum Q8Rows {
    public static let blockValues = 32
    public static let blockBytes = 34

    /// Bytes of a row of `width` values (a multiple of 32).
    @inline(__always)
    public static func rowBytes(_ width: Int) -> Int { (width &>> 5) &* blockBytes }

    /// Sixteen values at `index` (a multiple of 16) as floats.
    @inline(__always)
    static func load16(_ row: UnsafeRawPointer, _ index: Int) -> SIMD16<Float> {
        let block = row + (index &>> 5) &* blockBytes
        let scale = Float(Float16(bitPattern: block.loadUnaligned(as: UInt16.self)))
        let codes = block.loadUnaligned(fromByteOffset: 2 &+ (index & 31), as: SIMD16<Int8>.self)
        // Lane by lane, not the generic SIMD conversions ([PURE_SIMD_OPS]): `vpmovsxbd` + `vcvtdq2ps`.
        var floats = SIMD16<Float>()
        for k in 0..<16 { floats[k] = Float(codes[k]) }
        return floats * scale
    }

    /// The value at `index` as a float.
    @inline(__always)
    static func load1(_ row: UnsafeRawPointer, _ index: Int) -> Float {
        let block = row + (index &>> 5) &* blockBytes
        let scale = Float(Float16(bitPattern: block.loadUnaligned(as: UInt16.self)))
        return Float(block.loadUnaligned(fromByteOffset: 2 &+ (index & 31), as: Int8.self)) * scale
    }

    /// `count` values (a multiple of 32) as floats.
    public static func widen(_ row: UnsafeRawPointer, count: Int, into values: UnsafeMutablePointer<Float>) {
        precondition(count % blockValues == 0, "a Q8_0 row holds whole blocks of 32")
        var i = 0
        while i < count {
            UnsafeMutableRawPointer(values + i).storeBytes(of: load16(row, i), as: SIMD16<Float>.self)
            i &+= 16
        }
    }

    /// `count` floats (a multiple of 32) quantized to Q8_0 blocks.
    public static func narrow(_ values: UnsafePointer<Float>, count: Int, into row: UnsafeMutableRawPointer) {
        precondition(count % blockValues == 0, "a Q8_0 row holds whole blocks of 32")
        for b in 0..<(count &>> 5) {
            let quantized = ActivationQuantizer.q8Block(values + b &* 32)
            let block = row + b &* blockBytes
            block.storeBytes(of: Float16(quantized.d).bitPattern, as: UInt16.self)
            block.storeBytes(
                of: SIMD16<Int8>(truncatingIfNeeded: quantized.low), toByteOffset: 2, as: SIMD16<Int8>.self)
            block.storeBytes(
                of: SIMD16<Int8>(truncatingIfNeeded: quantized.high), toByteOffset: 18, as: SIMD16<Int8>.self)
        }
    }
}
