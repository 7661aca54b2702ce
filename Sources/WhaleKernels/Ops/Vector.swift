/// The two loops every attention form and the FP8 kernel are built from, for kernels in this module.
enum Vector {
    /// Σ a[i]·b[i] with 16-wide vectors (one accumulator, reduced as a halving tree) and a scalar tail.
    @inline(__always)
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        let ra = UnsafeRawPointer(a)
        let rb = UnsafeRawPointer(b)
        var accumulator = SIMD16<Float>()
        var i = 0
        let vectorEnd = n & ~15
        while i < vectorEnd {
            accumulator.addProduct(
                ra.loadUnaligned(fromByteOffset: i &* 4, as: SIMD16<Float>.self),
                rb.loadUnaligned(fromByteOffset: i &* 4, as: SIMD16<Float>.self))
            i &+= 16
        }
        var total = halvingSum(accumulator)
        while i < n {
            total += a[i] * b[i]
            i &+= 1
        }
        return total
    }

    /// The 16 lanes summed as a halving tree (the order `dot` states).
    @inline(__always)
    static func halvingSum(_ accumulator: SIMD16<Float>) -> Float {
        let half = accumulator.lowHalf + accumulator.highHalf
        let quarter = half.lowHalf + half.highHalf
        let pair = quarter.lowHalf + quarter.highHalf
        return pair[0] + pair[1]
    }

    /// out[i] += w · v[i].
    @inline(__always)
    static func accumulate(_ w: Float, _ v: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, _ n: Int) {
        let rv = UnsafeRawPointer(v)
        let ro = UnsafeMutableRawPointer(out)
        let weight = SIMD16<Float>(repeating: w)
        var i = 0
        let vectorEnd = n & ~15
        while i < vectorEnd {
            var o = ro.loadUnaligned(fromByteOffset: i &* 4, as: SIMD16<Float>.self)
            o.addProduct(weight, rv.loadUnaligned(fromByteOffset: i &* 4, as: SIMD16<Float>.self))
            ro.storeBytes(of: o, toByteOffset: i &* 4, as: SIMD16<Float>.self)
            i &+= 16
        }
        while i < n {
            out[i] += w * v[i]
            i &+= 1
        }
    }

    /// `dot` with `b` a row of halves (`HalfRows`), in the same order.
    @inline(__always)
    static func dot(_ a: UnsafePointer<Float>, halves b: UnsafeRawPointer, _ n: Int) -> Float {
        let ra = UnsafeRawPointer(a)
        var accumulator = SIMD16<Float>()
        var i = 0
        let vectorEnd = n & ~15
        while i < vectorEnd {
            accumulator.addProduct(
                ra.loadUnaligned(fromByteOffset: i &* 4, as: SIMD16<Float>.self), HalfRows.load16(b, i))
            i &+= 16
        }
        var total = halvingSum(accumulator)
        while i < n {
            total += a[i] * HalfRows.load1(b, i)
            i &+= 1
        }
        return total
    }

    /// `accumulate` with `v` a row of halves (`HalfRows`).
    @inline(__always)
    static func accumulate(
        _ w: Float, halves v: UnsafeRawPointer, into out: UnsafeMutablePointer<Float>, _ n: Int
    ) {
        let ro = UnsafeMutableRawPointer(out)
        let weight = SIMD16<Float>(repeating: w)
        var i = 0
        let vectorEnd = n & ~15
        while i < vectorEnd {
            var o = ro.loadUnaligned(fromByteOffset: i &* 4, as: SIMD16<Float>.self)
            o.addProduct(weight, HalfRows.load16(v, i))
            ro.storeBytes(of: o, toByteOffset: i &* 4, as: SIMD16<Float>.self)
            i &+= 16
        }
        while i < n {
            out[i] += w * HalfRows.load1(v, i)
            i &+= 1
        }
    }
}
