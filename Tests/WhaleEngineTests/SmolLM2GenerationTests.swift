import Foundation
import Testing
import WhaleCore
import WhaleKernels
import WhaleModels

@testable import WhaleEngine

/// What `whale run --temp 0` does (Generator: the prompt in one pass, then one token per pass, greedy) on
/// SmolLM2-135M-Instruct Q4_1 gives exactly llama.cpp's 64 greedy tokens for each of the five prompts of
/// Fixtures/smollm2/greedy.json. Release builds only.
@Suite struct SmolLM2GenerationTests {
    @Test(.enabled(if: PerplexityTests.enabled, "release build and models/ needed"))
    func greedyGenerationEqualsLlamaCpp() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: PerplexityTests.fixtures + "/greedy.json"))
        let golden = try #require(try data.withUnsafeBytes { try JSONValue.parse($0) }.object)
        let model = try ModelRegistry.load(PerplexityTests.model)
        let generator = Generator(
            model: model, tokenizer: nil, context: ForwardContext(pool: ThreadPool(threads: 2)), contextSize: 512)
        for prompt in try #require(golden["prompts"]?.array?.compactMap { $0.object }) {
            let ids = try #require(prompt["ids"]?.array?.compactMap { $0.integer })
            let expected = try #require(prompt["generated"]?.array?.compactMap { $0.integer })
            generator.reset()
            let result = try generator.generate(
                GenerationRequest(promptTokens: ids, maxTokens: expected.count, sampling: .greedy))
            #expect(result.tokens == expected, "\(prompt["name"]?.string ?? "?")")
        }
    }
}
