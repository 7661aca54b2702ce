/// Rows of IEEE half-precision values, as an f16 cache stores them: widened to float exactly when read
/// (every half is a float, so attention over a half cache gives the results it gave over the same values
/// held as floats), rounded to nearest-even when written.
public enum HalfRows {
    /// Eight halves at `row + 2·index` bytes, as floats.
    @inline(__always)
    static func load8(_ row: UnsafeRawPointer, _ index: Int) -> SIMD8<Float> {
        // One instruction with F16C (x86-64 since Haswell: `vcvtph2ps`) or on ARM (`fcvtl`). Lane by lane
        // ([PURE_SIMD_OPS]): the standard library's generic `SIMD8<Float>(SIMD8<Float16>)` was left as a call
        // inside the batched attention kernel's loops (8 % of decoding at depth).
        let halves = row.loadUnaligned(fromByteOffset: index &* 2, as: SIMD8<Float16>.self)
        var floats = SIMD8<Float>()
        for k in 0..<8 { floats[k] = Float(halves[k]) }
        return floats
    }

    /// Sixteen halves at `row + 2·index` bytes, as floats.
    @inline(__always)
    static func load16(_ row: UnsafeRawPointer, _ index: Int) -> SIMD16<Float> {
        SIMD16(lowHalf: load8(row, index), highHalf: load8(row, index &+ 8))
    }

    /// The half at `row + 2·index` bytes, as a float.
    @inline(__always)
    static func load1(_ row: UnsafeRawPointer, _ index: Int) -> Float {
        Float(Float16(bitPattern: row.loadUnaligned(fromByteOffset: index &* 2, as: UInt16.self)))
    }

    /// `count` halves as floats.
    public static func widen(_ row: UnsafeRawPointer, count: Int, into values: UnsafeMutablePointer<Float>) {
        var i = 0
        while i &+ 8 <= count {
            UnsafeMutableRawPointer(values + i).storeBytes(of: load8(row, i), as: SIMD8<Float>.self)
            i &+= 8
        }
        while i < count {
            values[i] = load1(row, i)
            i &+= 1
        }
    }

    /// `count` floats rounded to halves (nearest, ties to even: what `Float16(x)` and F16C do).
    public static func narrow(_ values: UnsafePointer<Float>, count: Int, into row: UnsafeMutableRawPointer) {
        let halves = row.assumingMemoryBound(to: UInt16.self)
        for i in 0..<count { halves[i] = Float16(values[i]).bitPattern }
    }
}
