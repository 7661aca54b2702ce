/// How the attention kernels read a cache row's values as floats: 32-bit floats (`.f32` attention), IEEE
/// halves (`HalfRows`, `.f16`) or Q8_0 blocks (`Q8Rows`, `.q8_0`). Generic parameters, so each kernel is
/// specialized per format; every format widens to floats exactly, so the products below give what they give
/// over the widened values held as floats.
protocol CacheRowFormat {
    /// Bytes of a row of `width` values (for Q8_0, a multiple of 32).
    static func rowBytes(_ width: Int) -> Int
    /// Sixteen values from `index` (a multiple of 16).
    static func load16(_ row: UnsafeRawPointer, _ index: Int) -> SIMD16<Float>
    /// The value at `index`.
    static func load1(_ row: UnsafeRawPointer, _ index: Int) -> Float
}

extension CacheRowFormat {
    /// Σ query[i]·row[i]: one 16-lane accumulator of multiply-adds, a halving-tree sum, a scalar tail.
    @inline(__always)
    static func dot(_ query: UnsafePointer<Float>, _ row: UnsafeRawPointer, _ n: Int) -> Float {
        let q = UnsafeRawPointer(query)
        var accumulator = SIMD16<Float>()
        var i = 0
        let vectorEnd = n & ~15
        while i < vectorEnd {
            accumulator.addProduct(q.loadUnaligned(fromByteOffset: i &* 4, as: SIMD16<Float>.self), load16(row, i))
            i &+= 16
        }
        var total = Vector.halvingSum(accumulator)
        while i < n {
            total += query[i] * load1(row, i)
            i &+= 1
        }
        return total
    }

    /// out[i] += w · row[i], one multiply-add per value.
    @inline(__always)
    static func accumulate(_ w: Float, _ row: UnsafeRawPointer, into out: UnsafeMutablePointer<Float>, _ n: Int) {
        let o = UnsafeMutableRawPointer(out)
        let weight = SIMD16<Float>(repeating: w)
        var i = 0
        let vectorEnd = n & ~15
        while i < vectorEnd {
            var sum = o.loadUnaligned(fromByteOffset: i &* 4, as: SIMD16<Float>.self)
            sum.addProduct(weight, load16(row, i))
            o.storeBytes(of: sum, toByteOffset: i &* 4, as: SIMD16<Float>.self)
            i &+= 16
        }
        while i < n {
            out[i] += w * load1(row, i)
            i &+= 1
        }
    }
}

enum FloatRows: CacheRowFormat {
    @inline(__always)
    static func rowBytes(_ width: Int) -> Int { width &* 4 }

    @inline(__always)
    static func load16(_ row: UnsafeRawPointer, _ index: Int) -> SIMD16<Float> {
        row.loadUnaligned(fromByteOffset: index &* 4, as: SIMD16<Float>.self)
    }

    @inline(__always)
    static func load1(_ row: UnsafeRawPointer, _ index: Int) -> Float {
        row.loadUnaligned(fromByteOffset: index &* 4, as: Float.self)
    }
}

enum HalfCacheRows: CacheRowFormat {
    @inline(__always)
    static func rowBytes(_ width: Int) -> Int { width &* 2 }

    @inline(__always)
    static func load16(_ row: UnsafeRawPointer, _ index: Int) -> SIMD16<Float> { HalfRows.load16(row, index) }

    @inline(__always)
    static func load1(_ row: UnsafeRawPointer, _ index: Int) -> Float { HalfRows.load1(row, index) }
}

enum Q8CacheRows: CacheRowFormat {
    @inline(__always)
    static func rowBytes(_ width: Int) -> Int { Q8Rows.rowBytes(width) }

    @inline(__always)
    static func load16(_ row: UnsafeRawPointer, _ index: Int) -> SIMD16<Float> { Q8Rows.load16(row, index) }

    @inline(__always)
    static func load1(_ row: UnsafeRawPointer, _ index: Int) -> Float { Q8Rows.load1(row, index) }
}
