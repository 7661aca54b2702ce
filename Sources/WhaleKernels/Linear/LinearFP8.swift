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

/// Q5_K, Q3_K and Q2_K weights (the K-quants of Q5_K_M, Q3_K_M and the low-bit DeepSeek-R1 files) times float32
/// activations: each row dequantized into a per-thread float row (exactly `Dequantize`'s values, as gguf-py's
/// `gguf.quants` computes them) and dotted with every token in float32, as the FP8 kernel does.
///
/// Correct, and as precise as float activations make it (llama.cpp quantizes the activations to Q8_K), but
/// not fast: the dequantization runs per row and call, a few GB/s of weights where the byte kernels of Q4_K /
/// Q6_K stream at memory speed. Byte-dot-product kernels for these types are still to be written.
enum DequantizingKernels {
    static func rows(_ job: LinearJob, input: UnsafePointer<Float>, rows: Range<Int>, row: UnsafeMutablePointer<Float>)
    {
        let columns = job.columns
        for r in rows {
            Dequantize.run(job.type, from: job.weights + r * job.rowBytes, count: columns, into: row)
            for t in 0..<job.tokens {
                job.output[t * job.rows + r] = Vector.dot(row, input + t * columns, columns)
            }
        }
    }
}
