import Foundation
import Testing
import WhaleCore
import WhaleKernels
import WhaleModels

@testable import WhaleEngine

private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("WhaleModelsTests/Fixtures").path

/// Context shift: generation goes past the context by dropping old tokens, or stops without a policy.
@Suite struct ContextShiftTests {
    func generator(_ model: String, contextSize: Int) throws -> Generator {
        Generator(
            model: try ModelRegistry.load(fixtures + "/" + model), tokenizer: nil,
            context: ForwardContext(pool: ThreadPool(threads: 2)), contextSize: contextSize)
    }

    @Test(arguments: ["tiny-llama", "deepseek/v3-no-qlora-yarn"])
    func generationOutgrowsTheContext(model: String) throws {
        let request = GenerationRequest(promptTokens: [1, 20, 30, 40, 50], maxTokens: 40, sampling: .greedy)
        let stopping = try generator(model, contextSize: 16)
        let stopped = try stopping.generate(request)
        #expect(stopped.finishReason == .contextFull)
        #expect(stopped.tokens.count == 12)

        let shifting = try generator(model, contextSize: 16)
        shifting.contextShift = Generator.ContextShift(keep: 1)
        let shifted = try shifting.generate(request)
        #expect(shifted.finishReason == .length)
        #expect(shifted.tokens.count == 40)
        #expect(shifted.shiftedOutTokens > 0)
        // Until the first shift the two runs are the same computation.
        let shiftedStart: [Int] = Array(shifted.tokens.prefix(11))
        let stoppedStart: [Int] = Array(stopped.tokens.prefix(11))
        #expect(shiftedStart == stoppedStart)
        #expect(shifting.cache.count <= 16 && shifting.cachedTokens.first == 1)
        #expect(shifting.cachedTokens.count == shifting.cache.count)
    }

    @Test func promptLongerThanTheContextKeepsItsHeadAndTail() throws {
        let shifting = try generator("tiny-llama", contextSize: 16)
        shifting.contextShift = Generator.ContextShift(keep: 2)
        let prompt = Array(1...40)
        let result = try shifting.generate(GenerationRequest(promptTokens: prompt, maxTokens: 3, sampling: .greedy))
        #expect(result.tokens.count == 3)
        let headAndTail: [Int] = [1, 2] + Array(34...40)
        #expect(Array(shifting.cachedTokens.prefix(9)) == headAndTail)
        // Without a policy the prompt is an error naming the context.
        let strict = try generator("tiny-llama", contextSize: 16)
        #expect(throws: WhaleError.self) {
            try strict.generate(GenerationRequest(promptTokens: prompt, maxTokens: 3, sampling: .greedy))
        }
    }
}

/// Self-speculative decoding with DeepSeek-V3's MTP module gives exactly the plain greedy output.
@Suite struct SpeculativeDecodingTests {
    static let model = fixtures + "/deepseek/mtp"

    func generator(drafting: Bool, contextSize: Int = 96) throws -> Generator {
        let generator = Generator(
            model: try ModelRegistry.load(Self.model), tokenizer: nil,
            context: ForwardContext(pool: ThreadPool(threads: 2)), contextSize: contextSize)
        if drafting { try generator.enableDrafting() }
        return generator
    }

    @Test(arguments: [[5, 100, 200], [285, 17, 42, 42, 42, 9, 120, 77], [3]])
    func mtpGreedyEqualsPlainGreedy(prompt: [Int]) throws {
        let request = GenerationRequest(promptTokens: prompt, maxTokens: 40, sampling: .greedy)
        let plain = try generator(drafting: false).generate(request)
        let speculative = try generator(drafting: true).generate(request)
        #expect(speculative.tokens == plain.tokens)
        #expect(speculative.draftedTokens > 0)
        #expect(speculative.acceptedDraftTokens <= speculative.draftedTokens)
    }

    /// A second turn reuses the cached prefix (and the draft module's) and still matches plain decoding.
    @Test func secondTurnWithPrefixReuse() throws {
        let plain = try generator(drafting: false)
        let speculative = try generator(drafting: true)
        var prompt = [7, 8, 9, 10]
        for _ in 0..<2 {
            let request = GenerationRequest(promptTokens: prompt, maxTokens: 12, sampling: .greedy)
            let a = try plain.generate(request)
            let b = try speculative.generate(request)
            #expect(a.tokens == b.tokens)
            prompt += a.tokens + [11, 12]
        }
    }

    @Test func needsGreedySamplingAndAnMTPModule() throws {
        var sampling = SamplingParameters()
        sampling.temperature = 0.7
        #expect(throws: WhaleError.self) {
            try generator(drafting: true).generate(
                GenerationRequest(promptTokens: [1], maxTokens: 2, sampling: sampling))
        }
        let dense = Generator(
            model: try ModelRegistry.load(fixtures + "/tiny-llama"), tokenizer: nil,
            context: ForwardContext(pool: ThreadPool(threads: 1)), contextSize: 8)
        #expect(throws: WhaleError.self) { try dense.enableDrafting() }
    }
}
