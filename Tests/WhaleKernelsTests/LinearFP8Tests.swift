import Testing
import WhaleCore
import WhaleKernels

/// FP8 (E4M3) weights with DeepSeek's 128×128 block scales: `Linear.apply` equals the product with the weight
/// dequantized by `Dequantize.blockScaledFP8` (bit-exact vs ml_dtypes, see DequantizeTests), summed in Double.
@Suite struct LinearFP8Tests {
    @Test(arguments: [(rows: 300, columns: 200, tokens: 1), (rows: 130, columns: 257, tokens: 5)])
    func blockScaledProductEqualsDequantizedProduct(rows: Int, columns: Int, tokens: Int) throws {
        var random = SplitMix(seed: UInt64(rows * 1000 + columns))
        // Codes without the two NaN encodings (0x7F, 0xFF).
        let codes: [UInt8] = (0..<(rows * columns)).map { _ in
            let code = UInt8(truncatingIfNeeded: random.next())
            return code & 0x7F == 0x7F ? code ^ 1 : code
        }
        let blockSize = 128
        let scaleRows = (rows + blockSize - 1) / blockSize
        let scaleColumns = (columns + blockSize - 1) / blockSize
        let scales: [Float] = (0..<(scaleRows * scaleColumns)).map { _ in Float(random.next() % 1000 + 1) * 1e-4 }
        let input: [Float] = (0..<(tokens * columns)).map { _ in Float(Int(random.next() % 2001) - 1000) * 1e-3 }
        let dense = try codes.withUnsafeBytes { weight in
            try scales.withUnsafeBytes { scale in
                try Dequantize.blockScaledFP8(
                    weight: weight, scaleInv: scale, rows: rows, cols: columns, blockSize: blockSize, tensorName: "w")
            }
        }
        var output = [Float](repeating: .nan, count: tokens * rows)
        codes.withUnsafeBytes { weight in
            scales.withUnsafeBufferPointer { scale in
                let matrix = WeightMatrix(
                    fp8: weight.baseAddress!, rows: rows, columns: columns, blockScales: scale.baseAddress!,
                    blockSize: blockSize)
                Linear.apply(
                    matrix, input: input, tokens: tokens, output: &output, pool: ThreadPool(threads: 2),
                    workspace: LinearWorkspace())
                // A row slice starting on a scale block is the same rows.
                var sliced = [Float](repeating: .nan, count: tokens * (rows - blockSize))
                Linear.apply(
                    matrix.rows(blockSize..<rows), input: input, tokens: tokens, output: &sliced,
                    pool: ThreadPool(threads: 1), workspace: LinearWorkspace())
                for t in 0..<tokens {
                    for r in blockSize..<rows {
                        let slicedIndex = t * (rows - blockSize) + r - blockSize
                        #expect(sliced[slicedIndex] == output[t * rows + r])
                    }
                }
            }
        }
        for t in 0..<tokens {
            for r in 0..<rows {
                var expected = 0.0
                var magnitude = 0.0
                for c in 0..<columns {
                    let product = Double(dense[r * columns + c]) * Double(input[t * columns + c])
                    expected += product
                    magnitude += abs(product)
                }
                #expect(abs(Double(output[t * rows + r]) - expected) <= 1e-5 * magnitude + 1e-12)
            }
        }
    }
}

/// SplitMix64, for reproducible test data.
private struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
