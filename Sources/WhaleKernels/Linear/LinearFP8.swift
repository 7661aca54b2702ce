// F8_E4M3 weights (DeepSeek-V3's FP8 checkpoints) times float32 activations.
//
// Dequantized on the fly, one row at a time, never stored: each row's codes are widened through a
// 256-entry table and multiplied by the row's 128-column block scales — exactly the float32 weight
// DeepSeek's reference computes (`fp8.float() * scale_inv`) — and then dotted with every token in float32.
// The model file stays one byte per weight in memory.

enum FP8Kernels {
    /// Every E4M3 code as a float (NaN codes included), computed once.
    static let table: [Float] = (0..<256).map { Dequantize.e4m3fn(UInt8($0)) }

    static func rows(_ job: LinearJob, input: UnsafePointer<Float>, rows: Range<Int>) {
        let columns = job.columns
        let row = UnsafeMutablePointer<Float>.allocate(capacity: columns)
        defer { row.deallocate() }
        let blockSize = job.blockScales == nil ? columns : job.scaleBlockSize
        let scaleColumns = (columns + blockSize - 1) / blockSize
        table.withUnsafeBufferPointer { table in
            for r in rows {
                let codes = job.weights.assumingMemoryBound(to: UInt8.self) + r * job.rowBytes
                for c in 0..<columns { row[c] = table[Int(codes[c])] }
                if let scales = job.blockScales {
                    let scaleRow = scales + (r / blockSize) * scaleColumns
                    for block in 0..<scaleColumns {
                        let scale = scaleRow[block]
                        for c in (block * blockSize)..<min(columns, (block + 1) * blockSize) { row[c] *= scale }
                    }
                }
                for t in 0..<job.tokens {
                    job.output[t * job.rows + r] = dot(row, input + t * columns, columns)
                }
            }
        }
    }

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
        var total = accumulator.sum()
        while i < n {
            total += a[i] * b[i]
            i &+= 1
        }
        return total
    }
}
