import Foundation
import Testing
import WhaleCore
import WhaleKernels
import WhaleModels

@testable import WhaleEngine

/// What `whale run --temp 0` does (Generator: the prompt in one pass, then one token per pass, greedy) on
/// SmolLM2-135M-Instruct Q4_1 follows llama.cpp's 64 greedy tokens for each of the five prompts of
/// Fixtures/smollm2/greedy.json: identical, or identical up to a step where llama.cpp's top two choices
/// were a near tie (under 0.5 apart, twice the largest disagreement between llama.cpp's own builds; the
/// kernels' summation order is not llama.cpp's, see SmolLM2Tests). Release builds only.
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
            let name = prompt["name"]?.string ?? "?"
            #expect(result.tokens.count == expected.count, "\(name)")
            guard
                let divergence = expected.indices.first(where: {
                    $0 >= result.tokens.count || result.tokens[$0] != expected[$0]
                })
            else { continue }
            let steps = try #require(prompt["steps"]?.array?.compactMap { $0.object })
            let gap = try #require(steps[divergence]["gap"]?.double)
            #expect(gap < SmolLM2NearTie.gap, "\(name): differs from llama.cpp at step \(divergence), gap \(gap)")
        }
    }
}

/// llama.cpp's top-1 − top-2 logprob gap below which a greedy choice may go either way.
enum SmolLM2NearTie {
    static let gap = 0.5
}
