import Testing
import WhaleKernels

/// `Attention.latent` batches heads (tiles of heads × positions, columns split between threads), but each
/// score, weight and output must be exactly what one dot product and one weighted sum at a time give —
/// the order `CacheRowFormat.dot` / `.accumulate` state: one 16-lane accumulator with multiply-adds, a
/// halving-tree sum, a scalar tail; positions in order. This reference computes it that way, one head and
/// one token at a time, and the kernel must match it bit for bit.
struct LatentAttentionTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var heads: Int
        var rank: Int
        var ropeDim: Int
        /// Cached positions each token attends to (one token: the decoding path; several: a prompt).
        var lengths: [Int]
        var precision: AttentionPrecision
        var threads: Int

        var testDescription: String {
            "\(heads) heads, rank \(rank) + \(ropeDim), lengths \(lengths), \(precision), \(threads) thread(s)"
        }
    }

    static let cases: [Case] = [
        // Decoding at depth, DeepSeek-V3-like shape: positions, heads and columns split between threads.
        Case(heads: 16, rank: 256, ropeDim: 32, lengths: [300], precision: .f16, threads: 2),
        Case(heads: 8, rank: 512, ropeDim: 64, lengths: [257], precision: .f32, threads: 2),
        // Heads not a multiple of the tiles, ranks with tails, an odd number of positions.
        Case(heads: 5, rank: 40, ropeDim: 8, lengths: [201], precision: .f32, threads: 2),
        Case(heads: 13, rank: 72, ropeDim: 24, lengths: [129], precision: .f16, threads: 2),
        // Short caches: heads shared between threads in groups of four (fewer than four: one thread does
        // it all; 13: 4 + 9, the second share with a tail of heads and columns), and a one-thread pool.
        Case(heads: 3, rank: 32, ropeDim: 8, lengths: [5], precision: .f32, threads: 2),
        Case(heads: 16, rank: 256, ropeDim: 32, lengths: [60], precision: .f16, threads: 2),
        Case(heads: 13, rank: 72, ropeDim: 24, lengths: [50], precision: .f32, threads: 2),
        Case(heads: 8, rank: 256, ropeDim: 32, lengths: [33], precision: .q8_0, threads: 2),
        Case(heads: 16, rank: 64, ropeDim: 16, lengths: [130], precision: .f16, threads: 1),
        // A prompt: several tokens, each its own length (a token per work item).
        Case(heads: 9, rank: 48, ropeDim: 16, lengths: [7, 150, 33, 1], precision: .f16, threads: 2),
        Case(heads: 16, rank: 256, ropeDim: 32, lengths: [40, 41, 42], precision: .f32, threads: 2),
        // A Q8_0 cache (widths multiple of 32): decoding split between threads, and a prompt.
        Case(heads: 16, rank: 256, ropeDim: 32, lengths: [300], precision: .q8_0, threads: 2),
        Case(heads: 5, rank: 96, ropeDim: 32, lengths: [7, 130, 1], precision: .q8_0, threads: 2),
    ]

    /// Deterministic values in [-1, 1).
    struct Values {
        var state: UInt64

        mutating func next() -> Float {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(Int64(bitPattern: state) >> 40) / Float(1 << 23)
        }

        mutating func array(_ count: Int) -> [Float] { (0..<count).map { _ in next() } }
    }

    static func halfRounded(_ x: Float) -> Float { Float(Float16(x)) }

    /// Values through a Q8_0 row and back: what a q8_0 cache holds (Q8Rows, checked against the reference
    /// dequantizer in CacheRowsTests).
    static func q8Rounded(_ values: [Float]) -> [Float] {
        var row = [UInt8](repeating: 0, count: Q8Rows.rowBytes(values.count))
        var widened = [Float](repeating: 0, count: values.count)
        row.withUnsafeMutableBytes { Q8Rows.narrow(values, count: values.count, into: $0.baseAddress!) }
        row.withUnsafeBytes { Q8Rows.widen($0.baseAddress!, count: values.count, into: &widened) }
        return widened
    }

    static func dot(_ a: [Float], _ aStart: Int, _ b: [Float], _ bStart: Int, _ n: Int) -> Float {
        var accumulator = SIMD16<Float>()
        var i = 0
        while i + 16 <= n {
            var x = SIMD16<Float>()
            var y = SIMD16<Float>()
            for k in 0..<16 {
                x[k] = a[aStart + i + k]
                y[k] = b[bStart + i + k]
            }
            accumulator.addProduct(x, y)
            i += 16
        }
        let half = accumulator.lowHalf + accumulator.highHalf
        let quarter = half.lowHalf + half.highHalf
        let pair = quarter.lowHalf + quarter.highHalf
        var total = pair[0] + pair[1]
        while i < n {
            total += a[aStart + i] * b[bStart + i]
            i += 1
        }
        return total
    }

    @Test(arguments: cases)
    func batchedOverHeadsEqualsOneHeadAtATime(_ c: Case) {
        var values = Values(state: UInt64(c.heads * 1000 + c.rank + c.lengths.count))
        let count = c.lengths.count
        let ropeStride = c.heads * c.ropeDim  // rope queries: [T, heads, ropeDim]
        let longest = c.lengths.max()!
        let scale: Float = 0.37
        // The cache rows each token reads, as the values attention sees (halves: exactly representable).
        var latents = (0..<count).map { t in values.array(c.lengths[t] * c.rank) }
        var ropeKeys = (0..<count).map { t in values.array(c.lengths[t] * c.ropeDim) }
        switch c.precision {
        case .f16:
            latents = latents.map { $0.map(Self.halfRounded) }
            ropeKeys = ropeKeys.map { $0.map(Self.halfRounded) }
        case .q8_0:
            latents = latents.map(Self.q8Rounded)
            ropeKeys = ropeKeys.map(Self.q8Rounded)
        case .f32: break
        }
        var latentQueries = values.array(c.heads * count * c.rank).map { $0 * 3 }
        var ropeQueries = values.array(count * ropeStride).map { $0 * 3 }

        // The reference, one head and one token at a time.
        var expectedOut = [Float](repeating: 0, count: c.heads * count * c.rank)
        var expectedWeights = [Float](repeating: 0, count: c.heads * count * longest)
        var referenceLatentQueries = latentQueries
        var referenceRopeQueries = ropeQueries
        if c.precision == .f16 {
            referenceLatentQueries = referenceLatentQueries.map(Self.halfRounded)
            referenceRopeQueries = referenceRopeQueries.map(Self.halfRounded)
        }
        for t in 0..<count {
            for h in 0..<c.heads {
                let length = c.lengths[t]
                var row = [Float](repeating: 0, count: length)
                let queryStart = (h * count + t) * c.rank
                let ropeStart = t * ropeStride + h * c.ropeDim
                for j in 0..<length {
                    let latentDot = Self.dot(referenceLatentQueries, queryStart, latents[t], j * c.rank, c.rank)
                    let ropeDot = Self.dot(referenceRopeQueries, ropeStart, ropeKeys[t], j * c.ropeDim, c.ropeDim)
                    row[j] = (latentDot + ropeDot) * scale
                }
                // `.f16` (GGUF models): ggml's softmax, rounded to half; otherwise transformers'.
                if c.precision == .f16 {
                    row.withUnsafeMutableBufferPointer { Ops.softmaxX86($0.baseAddress!, count: length) }
                    row = row.map(Self.halfRounded)
                } else {
                    row.withUnsafeMutableBufferPointer { Ops.softmax($0.baseAddress!, count: length) }
                }
                for j in 0..<length {
                    expectedWeights[(h * count + t) * longest + j] = row[j]
                    for i in 0..<c.rank {
                        let product: Float = row[j] * latents[t][j * c.rank + i]
                        if i < c.rank & ~15 {
                            expectedOut[queryStart + i].addProduct(row[j], latents[t][j * c.rank + i])
                        } else {
                            expectedOut[queryStart + i] += product
                        }
                    }
                }
            }
        }

        // The kernel, over caches in the precision's storage.
        func rows(_ values: [Float]) -> [UInt8] {
            switch c.precision {
            case .f32: return values.withUnsafeBytes { Array($0) }
            case .f16: return values.map { Float16($0).bitPattern }.withUnsafeBytes { Array($0) }
            case .q8_0:
                // Requantizing dequantized values gives the same blocks back (each block's largest code is ±127).
                var bytes = [UInt8](repeating: 0, count: Q8Rows.rowBytes(values.count))
                bytes.withUnsafeMutableBytes { Q8Rows.narrow(values, count: values.count, into: $0.baseAddress!) }
                return bytes
            }
        }
        // Each token's rows in memory the kernel reads, freed at the end.
        func copy(_ bytes: [UInt8]) -> UnsafeMutableRawPointer {
            let pointer = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 64)
            bytes.withUnsafeBytes { pointer.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
            return pointer
        }
        let latentRows = latents.map { copy(rows($0)) }
        let ropeRows = ropeKeys.map { copy(rows($0)) }
        defer { for pointer in latentRows + ropeRows { pointer.deallocate() } }
        let views = (0..<count).map { t in
            Attention.TokenView(keys: latentRows[t], values: ropeRows[t], length: c.lengths[t], passTokens: count)
        }
        var out = [Float](repeating: .nan, count: c.heads * count * c.rank)
        var weights = [Float](repeating: 0, count: c.heads * count * longest)
        Attention.latent(
            latentQueries: &latentQueries, ropeQueries: &ropeQueries, ropeQueryTokenStride: ropeStride,
            ropeQueryHeadStride: c.ropeDim, tokens: views, count: count, heads: c.heads, rank: c.rank,
            ropeDim: c.ropeDim, softmaxScale: scale, precision: c.precision, rowCapacity: longest, output: &out,
            weights: &weights, weightsStride: longest, pool: ThreadPool(threads: c.threads), arena: ScratchArena())
        let outMismatches = zip(out, expectedOut).filter { $0.bitPattern != $1.bitPattern }.count
        let weightMismatches = zip(weights, expectedWeights).filter { $0.bitPattern != $1.bitPattern }.count
        #expect(outMismatches == 0, "\(outMismatches) of \(out.count) outputs differ from one head at a time")
        #expect(weightMismatches == 0, "\(weightMismatches) of \(weights.count) weights differ")
        let allFinite = out.allSatisfy { $0.isFinite }
        #expect(allFinite)
    }
}
