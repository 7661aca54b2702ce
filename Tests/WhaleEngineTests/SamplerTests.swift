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
