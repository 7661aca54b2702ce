import Testing

@testable import WhaleEngine

@Suite struct SamplerTests {
    static let logits: [Float] = [1.0, 3.0, 2.5, -1.0, 0.0, 2.9]

    @Test func greedyIsArgmax() {
        var sampler = Sampler(.greedy)
        #expect(sampler.sample(Self.logits, history: []) == 1)
        #expect(argmax([0, 2, 2, 1]) == 1)  // first index on ties, as llama.cpp
    }

    @Test func sameSeedSameTokens() {
        var parameters = SamplingParameters()
        parameters.temperature = 1.5
        parameters.topK = 0
        parameters.topP = 1
        parameters.minP = 0
        parameters.seed = 1234
        var a = Sampler(parameters)
        var b = Sampler(parameters)
        let drawsA = (0..<200).map { _ in a.sample(Self.logits, history: []) }
        let drawsB = (0..<200).map { _ in b.sample(Self.logits, history: []) }
        #expect(drawsA == drawsB)
        #expect(Set(drawsA).count > 2, "temperature 1.5 over 6 tokens should draw several")
        parameters.seed = 1235
        var c = Sampler(parameters)
        #expect((0..<200).map { _ in c.sample(Self.logits, history: []) } != drawsA)
    }

    /// The heap selection equals sorting every index by (value, −index) and keeping k — ties (many here: values
    /// on a coarse grid) going to the lower index — for every k, so top-k sampling and top logprobs are unchanged.
    @Test func largestIndicesEqualSortedPrefix() {
        var random = SeededGenerator(seed: 7)
        for count in [1, 2, 5, 100, 4097] {
            let values = (0..<count).map { _ in Float(Int(random.next() % 17)) * 0.25 - 2 }
            let sorted = values.indices.sorted { (values[$0], -$0) > (values[$1], -$1) }
            for k in [0, 1, 2, 3, 40, count - 1, count, count + 5] where k >= 0 {
                let chosen = values.withUnsafeBufferPointer { largestIndices($0, count: k) }
                #expect(chosen == Array(sorted.prefix(k)), "count \(count), k \(k)")
            }
            let doubles = values.map(Double.init)
            #expect(doubles.withUnsafeBufferPointer { largestIndices($0, count: 20) } == Array(sorted.prefix(20)))
        }
    }

    /// The radix order equals sorting every index by (value, −index): negative, positive, both zeros, ties,
    /// infinities, denormals.
    @Test func descendingOrderEqualsSort() {
        var random = SeededGenerator(seed: 11)
        for count in [0, 1, 3, 2049, 49152] {
            var values = (0..<count).map { _ in Float(Int64(bitPattern: random.next()) % 4000) * 0.01 }
            if count > 10 {
                values[1] = -0.0
                values[2] = 0.0
                values[3] = .infinity
                values[4] = -.infinity
                values[5] = .leastNonzeroMagnitude
                values[6] = -.leastNonzeroMagnitude
                values[7] = values[8]
            }
            let sorted = values.indices.sorted { (values[$0], -$0) > (values[$1], -$1) }
            #expect(values.withUnsafeBufferPointer { descendingOrder($0) } == sorted, "count \(count)")
        }
    }

    @Test func topKOneIsGreedy() {
        var parameters = SamplingParameters()
        parameters.topK = 1
        parameters.temperature = 5
        var sampler = Sampler(parameters)
        for _ in 0..<50 { #expect(sampler.sample(Self.logits, history: []) == 1) }
    }

    @Test func minPKeepsOnlyCloseTokens() {
        var parameters = SamplingParameters()
        parameters.topK = 0
        parameters.topP = 1
        parameters.minP = 0.8  // keeps tokens with p ≥ 0.8 · p(best): 3.0 and 2.9
        parameters.temperature = 1
        parameters.seed = 7
        var sampler = Sampler(parameters)
        let draws = Set((0..<300).map { _ in sampler.sample(Self.logits, history: []) })
        #expect(draws == [1, 5])
    }

    @Test func topPKeepsTheSmallestSufficientSet() {
        var parameters = SamplingParameters()
        parameters.topK = 0
        parameters.minP = 0
        parameters.topP = 0.3  // the best token alone has p ≈ 0.35
        parameters.temperature = 1
        var sampler = Sampler(parameters)
        for _ in 0..<50 { #expect(sampler.sample(Self.logits, history: []) == 1) }
    }

    /// llama.cpp's penalties: positive logits divided, negative multiplied; frequency × count and presence
    /// subtracted.
    @Test func penalties() {
        var parameters = SamplingParameters.greedy
        parameters.repeatPenalty = 2
        parameters.frequencyPenalty = 0.5
        parameters.presencePenalty = 0.25
        let sampler = Sampler(parameters)
        var values: [Float] = [4, -2, 1]
        sampler.applyPenalties(&values, history: [0, 0, 1])
        let expected: [Float] = [0.75, -4.75, 1]  // 4/2 − 2·0.5 − 0.25, −2·2 − 0.5 − 0.25, untouched
        #expect(values == expected)
    }
}
