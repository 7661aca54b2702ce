// F8_E4M3 weights (DeepSeek-V3's FP8 checkpoints) times float32 activations.
//
// Dequantized on the fly, one row at a time, never stored: each row's codes are widened through a
// 256-entry table and multiplied by the row's 128-column block scales — exactly the float32 weight
// DeepSeek's reference computes (`fp8.float() * scale_inv`) — and then dotted with every token in float32.
// The model file stays one byte per weight in memory.

enum FP8Kernels {
    /// Every E4M3 code as a float (NaN codes included), computed once.
    static let table: [Float] = (0..<256).map { Dequantize.e4m3fn(UInt8($0)) }

    /// Rows `rows` of the product; `row` is room for one widened weight row (`job.columns` floats), private
    /// to the calling thread.
    static func rows(_ job: LinearJob, input: UnsafePointer<Float>, rows: Range<Int>, row: UnsafeMutablePointer<Float>)
    {
        let columns = job.columns
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
                    job.output[t * job.rows + r] = Vector.dot(row, input + t * columns, columns)
                }
            }
        }
    }
}
