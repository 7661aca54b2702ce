import Foundation
import Testing
import WhaleKernels

/// The element-wise ops that reproduce llama.cpp's x86 rounding: they must still be accurate math. (That
/// they are llama.cpp's bit for bit is checked end to end by SmolLM2Tests and PerplexityTests.)
struct OpsTests {
    static func exp8(_ values: [Float]) -> [Float] {
        var out: [Float] = []
        var i = 0
        while i < values.count {
            var chunk = SIMD8<Float>(repeating: 0)
            for k in 0..<8 where i + k < values.count { chunk[k] = values[i + k] }
            let e = Ops.exp8(chunk)
            for k in 0..<8 where i + k < values.count { out.append(e[k]) }
            i += 8
        }
        return out
    }

    @Test func exp8IsWithinTwoUlpsOfTheTrueValue() {
        let xs = stride(from: -87.0 as Float, through: 88.5, by: 0.0137).map { $0 }
        for (x, e) in zip(xs, Self.exp8(xs)) {
            let truth = Foundation.exp(Double(x))
            #expect(abs(Double(e) - truth) <= 2 * Double(Float(truth).ulp), "exp8(\(x)) = \(e), exp = \(truth)")
        }
    }

    @Test func exp8EdgeCases() {
        let e = Self.exp8([0, -.infinity, 100, -100, -104, -200, .infinity, 1])
        #expect(e[0] == 1)
        #expect(e[1] == 0)
        #expect(e[2] == .infinity)
        // Subnormal range (the second path): within two of the smallest subnormal steps.
        #expect(abs(Double(e[3]) - Foundation.exp(-100.0)) <= 2 * Double(Float.leastNonzeroMagnitude))
        #expect(e[4] >= 0 && e[4] < 1e-44)
        #expect(e[5] == 0)
        #expect(e[6] == .infinity)
        #expect(abs(e[7] - Float(M_E)) <= Float(M_E).ulp)
    }

    @Test func softmaxX86MatchesSoftmaxAndIgnoresMaskedScores() {
        var state: UInt64 = 0x5EED
        for count in [1, 7, 8, 13, 64, 100] {
            let scores = (0..<count).map { _ -> Float in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                let high: UInt64 = state >> 40
                let unit: Float = Float(high) / Float(1 << 24)
                return unit * 40 - 20
            }
            var plain = scores
            Ops.softmax(&plain, count: count)
            // Padded to a multiple of eight with −∞, as attention does.
            let padded = (count + 7) & ~7
            var x86 = scores + [Float](repeating: -.infinity, count: padded - count)
            Ops.softmaxX86(&x86, count: padded)
            for i in 0..<count { #expect(abs(x86[i] - plain[i]) <= 1e-6, "count \(count) index \(i)") }
            for i in count..<padded { #expect(x86[i] == 0) }
            let total: Float = x86.reduce(0, +)
            #expect(abs(total - 1) < 1e-5)
        }
    }

    /// ggml's iterated angles drift from the exact product by a few ulp per pair; the rotation agrees with
    /// the product rule to float accuracy at the positions models use.
    @Test func ggmlAnglesRotateLikeTheProductRule() {
        let ggml = RotaryEmbedding.ggml(
            dimensions: 64, layout: .interleaved, base: 100_000, divisors: nil, frequencyScale: 1)
        let product = RotaryEmbedding(dimensions: 64, layout: .interleaved, inverseFrequencies: ggml.inverseFrequencies)
        for position in [0, 1, 17, 511, 2047] {
            var a = (0..<64).map { Float(sin(Double($0) * 0.7)) }
            var b = a
            ggml.apply(&a, heads: 1, headDim: 64, position: position)
            product.apply(&b, heads: 1, headDim: 64, position: position)
            let worst = zip(a, b).map { abs($0 - $1) }.max()!
            #expect(worst < 1e-3 * Float(max(position, 1)).squareRoot(), "position \(position): \(worst)")
            if position == 0 { #expect(a == b) }
        }
    }
}
