import Foundation
import Testing
import WhaleCore
import WhaleKernels
import WhaleModels
import WhaleTokenizer

@testable import WhaleEngine

/// `whale perplexity`'s algorithm against llama.cpp on SmolLM2 Q4_1 and the GPL-3 text, context 512
/// (Fixtures/smollm2/perplexity.json): within 1% of the native llama-perplexity (AVX-512 kernels, flash
/// attention), and every chunk's running perplexity within 1% of llama.cpp's x86 AVX2 build without flash
/// attention (the kernels' summation order is their own, so not to the fixture's 4 decimals; measured:
/// within 0.75%, the whole text 0.07%). Release builds only (debug kernels are far too slow for 7,000 tokens).
@Suite struct PerplexityTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("WhaleModelsTests/Fixtures/smollm2").path
    static let modelsDirectory =
        ProcessInfo.processInfo.environment["WHALE_MODELS_DIR"]
        ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("models").path
    static let model = modelsDirectory + "/SmolLM2-135M-Instruct.Q4_1.gguf"
    static var enabled: Bool {
        !_isDebugAssertConfiguration()
            && (FileManager.default.fileExists(atPath: model)
                || ProcessInfo.processInfo.environment["WHALE_REQUIRE_MODELS"] == "1")
    }

    @Test(.enabled(if: PerplexityTests.enabled, "release build and models/ needed"))
    func matchesLlamaPerplexity() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.fixtures + "/perplexity.json"))
        let reference = try #require(try data.withUnsafeBytes { try JSONValue.parse($0) }.object)
        let expected = try #require(reference["llama_perplexity"]?.object?["ppl"]?.double)
        let text = try String(contentsOfFile: Self.fixtures + "/perplexity.txt", encoding: .utf8)
        let tokenizer = try Tokenizer.load(Self.model)
        let model = try ModelRegistry.load(Self.model)
        let tokens = tokenizer.encode(text)
        #expect(tokens.count == reference["python_reimplementation"]?.object?["n_tokens"]?.integer)
        let result = try PerplexityEvaluation.evaluate(
            tokens: tokens, model: model, context: ForwardContext(pool: ThreadPool(threads: 2)), contextSize: 512,
            bos: nil)
        #expect(result.runningPerplexity.count == 14)
        #expect(
            abs(result.perplexity / expected - 1) < 0.01, "PPL \(result.perplexity) vs llama-perplexity \(expected)")
        let sameBuild = try #require(reference["python_reimplementation"]?.object)
        let chunks = try #require(sameBuild["chunks"]?.array?.compactMap { $0.object?["running_ppl"]?.double })
        #expect(chunks.count == result.runningPerplexity.count)
        for (i, (ours, theirs)) in zip(result.runningPerplexity, chunks).enumerated() {
            // Not bit for bit: the kernels' summation order is their own (SmolLM2Tests).
            #expect(abs(ours / theirs - 1) < 0.01, "chunk \(i + 1): running PPL \(ours) vs llama.cpp \(theirs)")
        }
    }

    /// The chunking on a tiny model: one chunk of 8 scores exactly tokens 5, 6, 7 given their prefixes.
    @Test func scoresTheSecondHalfOfEachChunk() throws {
        let directory = URL(fileURLWithPath: Self.fixtures).deletingLastPathComponent().appendingPathComponent(
            "tiny-llama"
        ).path
        let model = try ModelRegistry.load(directory)
        let context = ForwardContext(pool: ThreadPool(threads: 1))
        let tokens = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3]  // 10 tokens → one chunk of 8, remainder dropped
        let result = try PerplexityEvaluation.evaluate(
            tokens: tokens, model: model, context: context, contextSize: 8, bos: nil)
        let logits = try model.forward(
            [SequenceInput(tokens: Array(tokens.prefix(8)), cache: model.makeCache(capacity: 8), logits: .all)],
            context: context)[0]
        var nll = 0.0
        for j in 4..<7 {
            var row = [Double](repeating: 0, count: model.vocabularySize)
            logits.withUnsafeBufferPointer { b in
                row.withUnsafeMutableBufferPointer {
                    Ops.logSoftmax(
                        b.baseAddress! + j * model.vocabularySize, count: model.vocabularySize, output: $0.baseAddress!)
                }
            }
            nll -= row[tokens[j + 1]]
        }
        #expect(result.scoredTokens == 3)
        #expect(abs(result.perplexity - exp(nll / 3)) < 1e-9)
    }
}
