import Testing
import WhaleCore
import WhaleKernels

/// The row-interleaved layout ([INTERLEAVED_ROWS]): repacking keeps every row's values, and the kernels on
/// it agree with the scalar specification on the file layout and give a token the same result whatever
/// batch it is in.
struct InterleavedRowsTests {
    static let types: [DType] = [.q4_0, .q4_1, .q5_0, .q8_0, .q4_K, .q6_K]

    /// A copy of `matrix` in the interleaved layout, alive as long as the returned buffer.
    static func interleaved(_ matrix: TestMatrix) -> (WeightMatrix, UnsafeMutableRawBufferPointer) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: matrix.weight.byteCount, alignment: 64)
        var stretches: [Int] = []
        let weight = matrix.weight.interleaved(into: buffer.baseAddress!) { stretches.append($0) }
        #expect(stretches.last == matrix.rows, "afterRows ends at the last row")
        #expect(stretches == stretches.sorted(), "afterRows only moves forward")
        return (weight, buffer)
    }

    @Test("repacking keeps every row", arguments: types)
    func roundTrip(type: DType) {
        let matrix = TestMatrix(type: type, rows: 48, columns: 3 * type.blockSize, seed: 11)
        let (packed, buffer) = Self.interleaved(matrix)
        defer { buffer.deallocate() }
        #expect(packed.layout == .interleaved && packed.byteCount == matrix.weight.byteCount)
        var expected = [Float](repeating: 0, count: matrix.columns)
        var actual = [Float](repeating: .nan, count: matrix.columns)
        for r in 0..<matrix.rows {
            matrix.weight.dequantizeRow(r, into: &expected)
            packed.dequantizeRow(r, into: &actual)
            #expect(actual == expected, "\(type) row \(r)")
        }
        // A slice of whole groups is the same rows.
        let slice = packed.rows(16..<48)
        slice.dequantizeRow(5, into: &actual)
        matrix.weight.dequantizeRow(21, into: &expected)
        #expect(actual == expected)
    }

    @Test(
        "apply on interleaved rows matches reference", .enabled(if: InterleavedRows.hasKernels),
        arguments: types, [1, 2])
    func applyMatchesReference(type: DType, threads: Int) {
        let pool = ThreadPool(threads: threads)
        let workspace = LinearWorkspace()
        for (index, shape) in [(16, 1, 1), (32, 3, 5), (64, 8, 7), (48, 2, 16)].enumerated() {
            let (rows, blocks, tokens) = shape
            let matrix = TestMatrix(
                type: type, rows: rows, columns: blocks * type.blockSize, seed: UInt64(index) &+ 101)
            let (packed, buffer) = Self.interleaved(matrix)
            defer { buffer.deallocate() }
            let input = TestMatrix.activations(tokens: tokens, columns: matrix.columns, seed: UInt64(index) &+ 7)
            let expected = matrix.reference(input, tokens: tokens)
            let actual = TestMatrix.apply(packed, input, tokens: tokens, pool: pool, workspace: workspace)
            let scale = matrix.magnitudes(input, tokens: tokens)
            // Same integer block sums as the reference; only the float32 order of the blocks differs.
            let worst = zip(zip(actual, expected), scale).map { pair, s in abs(pair.0 - pair.1) / max(s, 1e-30) }
                .max()!
            #expect(worst <= 1e-5, "\(type) \(rows)×\(matrix.columns), \(tokens) tokens: \(worst)")
        }
    }

    @Test("a token's result does not depend on its batch", .enabled(if: InterleavedRows.hasKernels), arguments: types)
    func batchInvariance(type: DType) {
        let pool = ThreadPool(threads: 2)
        let workspace = LinearWorkspace()
        let matrix = TestMatrix(type: type, rows: 64, columns: 2 * type.blockSize, seed: 5)
        let (packed, buffer) = Self.interleaved(matrix)
        defer { buffer.deallocate() }
        let tokens = 7
        let input = TestMatrix.activations(tokens: tokens, columns: matrix.columns, seed: 9)
        let batch = TestMatrix.apply(packed, input, tokens: tokens, pool: pool, workspace: workspace)
        for t in 0..<tokens {
            let alone = TestMatrix.apply(
                packed, Array(input[(t * matrix.columns)..<((t + 1) * matrix.columns)]), tokens: 1, pool: pool,
                workspace: workspace)
            #expect(alone == Array(batch[(t * matrix.rows)..<((t + 1) * matrix.rows)]), "\(type) token \(t)")
        }
    }
}
