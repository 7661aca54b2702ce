import Testing
import WhaleCore
import WhaleKernels

/// The q8_0 cache's rows (`Q8Rows`): GGUF's Q8_0 block layout, llama.cpp's rounding, and attention over them
/// equal to float attention over the dequantized values.
struct CacheRowsTests {
    /// Deterministic values in [-scale, scale).
    static func values(_ count: Int, seed: UInt64, scale: Float = 1) -> [Float] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(Int64(bitPattern: state) >> 40) / Float(1 << 23) * scale
        }
    }

    static func narrow(_ values: [Float]) -> [UInt8] {
        var row = [UInt8](repeating: 0xAA, count: Q8Rows.rowBytes(values.count))
        row.withUnsafeMutableBytes { Q8Rows.narrow(values, count: values.count, into: $0.baseAddress!) }
        return row
    }

    @Test func q8RowsAreGGUFBlocksWithinHalfAStep() {
        // Blocks of very different magnitudes, one all zero. (Not below ~1e-2: there the scale, amax / 127, is
        // a subnormal half with few significant bits — Q8_0's own limit, llama.cpp's cache has it too.)
        var x = Self.values(32 * 6, seed: 7)
        for i in 32..<64 { x[i] *= 1000 }
        for i in 64..<96 { x[i] *= 1e-2 }
        for i in 96..<128 { x[i] = 0 }
        let row = Self.narrow(x)
        #expect(row.count == 6 * 34)
        var widened = [Float](repeating: .nan, count: x.count)
        row.withUnsafeBytes { Q8Rows.widen($0.baseAddress!, count: x.count, into: &widened) }
        var reference = [Float](repeating: .nan, count: x.count)
        row.withUnsafeBytes { Dequantize.run(.q8_0, from: $0.baseAddress!, count: x.count, into: &reference) }
        #expect(zip(widened, reference).allSatisfy { $0.bitPattern == $1.bitPattern }, "widen = GGUF's Q8_0 reading")
        for b in 0..<6 {
            let block = x[(b * 32)..<(b * 32 + 32)]
            let step = block.map { abs($0) }.max()! / 127
            for i in block.indices {
                // Half a step, plus the scale's own rounding to half precision (2⁻¹¹ relative) on up to 127 steps.
                #expect(abs(widened[i] - x[i]) <= step * (0.5 + 127.0 / 2048) + 1e-30, "element \(i)")
            }
        }
        #expect(widened[96..<128].allSatisfy { $0 == 0 })
    }

    /// Grouped-query attention over a q8_0 cache equals f32 attention over the dequantized rows, bit for bit.
    @Test(arguments: [(lengths: [70], threads: 2), (lengths: [3, 33, 64], threads: 2), (lengths: [20], threads: 1)])
    func groupedQueryOverQ8EqualsFloatOverDequantized(lengths: [Int], threads: Int) {
        let heads = 6
        let kvHeads = 2
        let headDim = 64
        let kvWidth = kvHeads * headDim
        let count = lengths.count
        let longest = lengths.max()!
        let keys = (0..<count).map { Self.values(lengths[$0] * kvWidth, seed: UInt64(10 + $0), scale: 3) }
        let values = (0..<count).map { Self.values(lengths[$0] * kvWidth, seed: UInt64(20 + $0)) }
        let queries = Self.values(count * heads * headDim, seed: 3, scale: 2)

        func run(_ precision: AttentionPrecision, keys: [[UInt8]], values: [[UInt8]]) -> [Float] {
            var q = queries
            var out = [Float](repeating: .nan, count: count * heads * headDim)
            let pointers = (keys + values).map { bytes in
                let pointer = UnsafeMutableRawPointer.allocate(byteCount: bytes.count, alignment: 64)
                bytes.withUnsafeBytes { pointer.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
                return pointer
            }
            defer { for pointer in pointers { pointer.deallocate() } }
            let views = (0..<count).map { t in
                Attention.TokenView(
                    keys: pointers[t], values: pointers[count + t], length: lengths[t], passTokens: count)
            }
            Attention.groupedQuery(
                queries: &q, tokens: views, count: count, heads: heads, kvHeads: kvHeads, headDim: headDim,
                precision: precision, rowCapacity: longest, output: &out, pool: ThreadPool(threads: threads),
                arena: ScratchArena())
            return out
        }
        let q8Keys = keys.map(Self.narrow)
        let q8Values = values.map(Self.narrow)
        func dequantized(_ rows: [UInt8], _ n: Int) -> [UInt8] {
            var floats = [Float](repeating: 0, count: n)
            rows.withUnsafeBytes { Q8Rows.widen($0.baseAddress!, count: n, into: &floats) }
            return floats.withUnsafeBytes { Array($0) }
        }
        let overQ8 = run(.q8_0, keys: q8Keys, values: q8Values)
        let overFloats = run(
            .f32, keys: (0..<count).map { dequantized(q8Keys[$0], keys[$0].count) },
            values: (0..<count).map { dequantized(q8Values[$0], values[$0].count) })
        let mismatches = zip(overQ8, overFloats).filter { $0.bitPattern != $1.bitPattern }.count
        #expect(mismatches == 0, "\(mismatches) of \(overQ8.count) outputs differ")
        #expect(overQ8.allSatisfy { $0.isFinite })
    }
}
