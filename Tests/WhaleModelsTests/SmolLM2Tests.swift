import Foundation
import Testing
import WhaleCore
import WhaleKernels
import WhaleModels

/// SmolLM2-135M-Instruct Q4_1 against llama.cpp (Fixtures/smollm2/greedy.json, made by
/// scripts/make-dense-fixtures.py with llama-cpp-python 0.3.36), along llama.cpp's greedy continuation of
/// five prompts, evaluated as llama.cpp did: the prompt in one pass, then one token per pass.
///
/// BlueWhale computes GGUF models with llama.cpp's x86 float operations in llama.cpp's order (Q8_1
/// activations and the AVX2 block dot, f16 attention with the product order of each batch shape, ggml's
/// exp, RMSNorm and RoPE rounding), so the logits are meant to be bit-identical: the test allows 1e-3 per
/// logprob — far below the 0.05, and far below what any real deviation gives on this model (one
/// summation-order change in attention moves logprobs by up to 0.5 here). BlueWhale's own greedy choice
/// must equal llama.cpp's at every one of the 64 steps. Release builds only.
@Suite(.enabled(if: RealModels.runSmolLM2, "release build and models/ needed")) struct SmolLM2Tests {
    static let tolerance = 1e-3

    /// Log-softmax rows for `prompt` (one pass, every row) followed by `continuation` (one pass per token).
    static func scoreLikeLlamaCpp(_ model: any LanguageModel, prompt: [Int], continuation: [Int]) throws -> [[Double]] {
        let context = ForwardContext(pool: ThreadPool(threads: 2))
        let cache = model.makeCache(capacity: prompt.count + continuation.count)
        let vocabulary = model.vocabularySize
        func logSoftmaxRows(_ logits: [Float]) -> [[Double]] {
            (0..<(logits.count / vocabulary)).map { i in
                var row = [Double](repeating: 0, count: vocabulary)
                logits.withUnsafeBufferPointer { buffer in
                    row.withUnsafeMutableBufferPointer { out in
                        Ops.logSoftmax(
                            buffer.baseAddress! + i * vocabulary, count: vocabulary, output: out.baseAddress!)
                    }
                }
                return row
            }
        }
        var rows = logSoftmaxRows(
            try model.forward([SequenceInput(tokens: prompt, cache: cache, logits: .all)], context: context)[0])
        for token in continuation {
            rows += logSoftmaxRows(
                try model.forward([SequenceInput(tokens: [token], cache: cache, logits: .all)], context: context)[0])
        }
        return rows
    }

    @Test func logprobsAndGreedyMatchLlamaCpp() throws {
        let model = try ModelRegistry.load(RealModels.smollm2)
        let golden = try Fixtures.json("smollm2/greedy.json")
        var worst = 0.0
        var compared = 0
        for prompt in try #require(golden["prompts"]?.array) {
            let p = try #require(prompt.object)
            let name = p["name"]?.string ?? "?"
            let promptIDs = try #require(p["ids"]?.array?.compactMap { $0.integer })
            let steps = try #require(p["steps"]?.array?.compactMap { $0.object })
            let generated = steps.compactMap { $0["id"]?.integer }
            // The last generated token was never fed to llama.cpp.
            let rows = try Self.scoreLikeLlamaCpp(model, prompt: promptIDs, continuation: Array(generated.dropLast()))
            let promptLogprobs = try #require(p["prompt_logprobs"]?.array?.compactMap { $0.double })
            for i in 1..<promptIDs.count {
                let difference = abs(rows[i - 1][promptIDs[i]] - promptLogprobs[i - 1])
                worst = max(worst, difference)
                #expect(difference <= Self.tolerance, "\(name) prompt token \(i): |Δ logprob| = \(difference)")
            }
            for (k, step) in steps.enumerated() {
                let row = rows[promptIDs.count - 1 + k]
                let difference = abs(row[generated[k]] - (step["logprob"]?.double ?? .nan))
                worst = max(worst, difference)
                compared += 1
                #expect(difference <= Self.tolerance, "\(name) step \(k): |Δ logprob| = \(difference)")
                let ours = row.indices.max { (row[$0], -$0) < (row[$1], -$1) }!
                #expect(ours == generated[k], "\(name) step \(k): chose \(ours), llama.cpp \(generated[k])")
            }
        }
        print("SmolLM2 vs llama.cpp: \(compared) generated tokens, max |Δ logprob| \(worst)")
    }
}
