import Foundation
import Testing
import WhaleKernels

/// `Attention.latent` batches heads, cuts a token's cached positions into chunks with a running softmax
/// (flash attention's), and splits the work between threads. Checked against softmax attention in double
/// precision over the values the cache holds, and for invariances that make results reproducible: the same
/// bits whatever the thread count, whether a token decodes alone or in a prompt, and whether a head is
/// computed with others or alone.
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
        // Decoding at depth, DeepSeek-V3-like shape: chunks of positions split between threads, several
        // spans per chunk (2,100 positions: 33 spans in 16 chunks, the last span short).
        Case(heads: 16, rank: 256, ropeDim: 32, lengths: [300], precision: .f16, threads: 2),
        Case(heads: 8, rank: 512, ropeDim: 64, lengths: [2100], precision: .f16, threads: 2),
        Case(heads: 8, rank: 512, ropeDim: 64, lengths: [257], precision: .f32, threads: 2),
        // Heads not a multiple of the tiles, ranks with tails, an odd number of positions.
        Case(heads: 5, rank: 40, ropeDim: 8, lengths: [201], precision: .f32, threads: 2),
        Case(heads: 13, rank: 72, ropeDim: 24, lengths: [129], precision: .f16, threads: 2),
        // Short caches (fewer chunks than threads): heads shared between threads in groups of four (fewer
        // than four: one thread does it all; 13: 4 + 9, the second share with a tail of heads and columns),
        // and a one-thread pool.
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

    /// The kernel's outputs and weights for one call.
    struct Result {
        var out: [Float]
        var weights: [Float]
    }

    /// Runs `Attention.latent` over rows holding `latents` / `ropeKeys` (already rounded to the precision).
    static func run(
        _ c: Case, heads: Int, latents: [[Float]], ropeKeys: [[Float]], latentQueries: [Float], ropeQueries: [Float],
        lengths: [Int], threads: Int
    ) -> Result {
        let count = lengths.count
        let longest = lengths.max()!
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
            Attention.TokenView(keys: latentRows[t], values: ropeRows[t], length: lengths[t], passTokens: count)
        }
        var queries = latentQueries
        var ropes = ropeQueries
        var result = Result(
            out: [Float](repeating: .nan, count: heads * count * c.rank),
            weights: [Float](repeating: 0, count: heads * count * longest))
        Attention.latent(
            latentQueries: &queries, ropeQueries: &ropes, ropeQueryTokenStride: heads * c.ropeDim,
            ropeQueryHeadStride: c.ropeDim, tokens: views, count: count, heads: heads, rank: c.rank,
            ropeDim: c.ropeDim, softmaxScale: scale, precision: c.precision, rowCapacity: longest,
            output: &result.out, weights: &result.weights, weightsStride: longest,
            pool: ThreadPool(threads: threads), arena: ScratchArena())
        return result
    }

    static let scale: Float = 0.37

    static func same(_ a: [Float], _ b: [Float]) -> Bool { a.map(\.bitPattern) == b.map(\.bitPattern) }

    /// values[s ..< s + length] for each start s, one after another.
    static func pieces(_ values: [Float], starts: [Int], length: Int) -> [Float] {
        var joined: [Float] = []
        for start in starts { joined += values[start..<(start + length)] }
        return joined
    }

    /// One case's inputs: the cache rows each token reads (as the values attention sees) and the queries.
    struct Inputs {
        var latents: [[Float]]
        var ropeKeys: [[Float]]
        var latentQueries: [Float]
        var ropeQueries: [Float]

        init(_ c: Case) {
            var values = Values(state: UInt64(c.heads * 1000 + c.rank + c.lengths.count))
            let count = c.lengths.count
            latents = (0..<count).map { t in values.array(c.lengths[t] * c.rank) }
            ropeKeys = (0..<count).map { t in values.array(c.lengths[t] * c.ropeDim) }
            switch c.precision {
            case .f16:
                latents = latents.map { $0.map(LatentAttentionTests.halfRounded) }
                ropeKeys = ropeKeys.map { $0.map(LatentAttentionTests.halfRounded) }
            case .q8_0:
                latents = latents.map(LatentAttentionTests.q8Rounded)
                ropeKeys = ropeKeys.map(LatentAttentionTests.q8Rounded)
            case .f32: break
            }
            latentQueries = values.array(c.heads * count * c.rank).map { $0 * 3 }
            ropeQueries = values.array(count * c.heads * c.ropeDim).map { $0 * 3 }
        }
    }

    /// The largest differences of the kernel's outputs and weights from softmax attention in double
    /// precision, one head and one token at a time.
    static func worstDifferences(_ c: Case, _ inputs: Inputs, _ result: Result) -> (out: Double, weight: Double) {
        let count = c.lengths.count
        let longest = c.lengths.max()!
        var worstOut = 0.0
        var worstWeight = 0.0
        for t in 0..<count {
            let length = c.lengths[t]
            let latents: [Float] = inputs.latents[t]
            let ropeKeys: [Float] = inputs.ropeKeys[t]
            for h in 0..<c.heads {
                let queryStart = (h * count + t) * c.rank
                let ropeStart = (t * c.heads + h) * c.ropeDim
                var scores = [Double](repeating: 0, count: length)
                for j in 0..<length {
                    var dot = 0.0
                    for i in 0..<c.rank {
                        dot += Double(inputs.latentQueries[queryStart + i]) * Double(latents[j * c.rank + i])
                    }
                    for i in 0..<c.ropeDim {
                        dot += Double(inputs.ropeQueries[ropeStart + i]) * Double(ropeKeys[j * c.ropeDim + i])
                    }
                    scores[j] = dot * Double(scale)
                }
                let largest: Double = scores.max()!
                scores = scores.map { Foundation.exp($0 - largest) }
                let total: Double = scores.reduce(0, +)
                for j in 0..<length {
                    let kernelWeight = Double(result.weights[(h * count + t) * longest + j])
                    worstWeight = max(worstWeight, abs(kernelWeight - scores[j] / total))
                }
                for i in 0..<c.rank {
                    var sum = 0.0
                    for j in 0..<length { sum += scores[j] / total * Double(latents[j * c.rank + i]) }
                    worstOut = max(worstOut, abs(Double(result.out[queryStart + i]) - sum))
                }
            }
        }
        return (worstOut, worstWeight)
    }

    @Test(arguments: cases)
    func equalsSoftmaxAttentionAndIsReproducible(_ c: Case) {
        let inputs = Inputs(c)
        let count = c.lengths.count
        let ropeStride = c.heads * c.ropeDim  // rope queries: [T, heads, ropeDim]
        let result = Self.run(
            c, heads: c.heads, latents: inputs.latents, ropeKeys: inputs.ropeKeys,
            latentQueries: inputs.latentQueries, ropeQueries: inputs.ropeQueries, lengths: c.lengths,
            threads: c.threads)

        // Float32 sums over up to ~2,000 positions of values in [-1, 1].
        let worst = Self.worstDifferences(c, inputs, result)
        #expect(worst.out < 2e-6, "max |Δ output| vs double-precision softmax attention = \(worst.out)")
        #expect(worst.weight < 1e-6, "max |Δ weight| = \(worst.weight)")

        // The same bits with another thread count.
        let otherThreads = Self.run(
            c, heads: c.heads, latents: inputs.latents, ropeKeys: inputs.ropeKeys,
            latentQueries: inputs.latentQueries, ropeQueries: inputs.ropeQueries, lengths: c.lengths,
            threads: c.threads == 1 ? 3 : 1)
        #expect(Self.same(otherThreads.out, result.out), "the thread count changed the outputs")
        #expect(Self.same(otherThreads.weights, result.weights), "the thread count changed the weights")

        // The same bits for each token alone (decoding) as in the prompt, and for head 1 alone.
        for t in 0..<count where count > 1 {
            let headStarts: [Int] = (0..<c.heads).map { h in (h * count + t) * c.rank }
            let alone = Self.run(
                c, heads: c.heads, latents: [inputs.latents[t]], ropeKeys: [inputs.ropeKeys[t]],
                latentQueries: Self.pieces(inputs.latentQueries, starts: headStarts, length: c.rank),
                ropeQueries: Self.pieces(inputs.ropeQueries, starts: [t * ropeStride], length: ropeStride),
                lengths: [c.lengths[t]], threads: c.threads)
            let inPrompt = Self.pieces(result.out, starts: headStarts, length: c.rank)
            #expect(Self.same(alone.out, inPrompt), "token \(t) alone differs from token \(t) in the prompt")
        }
        if c.heads > 1 {
            let h = 1
            let tokenStarts: [Int] = (0..<count).map { t in t * ropeStride + h * c.ropeDim }
            let single = Self.run(
                c, heads: 1, latents: inputs.latents, ropeKeys: inputs.ropeKeys,
                latentQueries: Self.pieces(inputs.latentQueries, starts: [h * count * c.rank], length: count * c.rank),
                ropeQueries: Self.pieces(inputs.ropeQueries, starts: tokenStarts, length: c.ropeDim),
                lengths: c.lengths, threads: c.threads)
            let amongOthers = Self.pieces(result.out, starts: [h * count * c.rank], length: count * c.rank)
            #expect(Self.same(single.out, amongOthers), "head 1 alone differs from head 1 among \(c.heads)")
        }
        let allFinite = result.out.allSatisfy { $0.isFinite }
        #expect(allFinite)
    }
}
