import Foundation
import Testing
import WhaleCore
import WhaleKernels
import WhaleModels

/// SmolLM2-135M-Instruct Q4_1 against llama.cpp (Fixtures/smollm2/greedy.json, made by
/// scripts/make-dense-fixtures.py with llama-cpp-python 0.3.36), along llama.cpp's greedy continuation of
/// five prompts, evaluated as llama.cpp did: the prompt in one pass, then one token per pass.
///
/// BlueWhale's kernels choose their own summation order ([INTERLEAVED_ROWS]), so the logits are not
/// llama.cpp's bit for bit; a 4-bit model amplifies any last-bit change layer by layer (each layer
/// re-quantizes its input to 8 bits). llama.cpp's own builds disagree with each other on this file by mean
/// 0.03, p99 0.2, max 0.25 per logprob (issue 11); BlueWhale measured mean 0.04, max 0.82 (a prompt token
/// the model finds unlikely). The test allows mean 0.1 and max 1.5 — a wrong kernel (a lost scale, a
/// swapped block) moves every logprob by whole units —
/// and BlueWhale's greedy choice must equal llama.cpp's wherever llama.cpp's top two are 0.5 or more apart
/// (twice its builds' largest disagreement). Quality proper is judged by KL divergence against the float
/// model (`whale perplexity --kl-divergence`, README "Weight types"). Release builds only.
@Suite(.enabled(if: RealModels.runSmolLM2, "release build and models/ needed")) struct SmolLM2Tests {
    static let meanTolerance = 0.1
    static let maxTolerance = 1.5
    /// llama.cpp's top-1 − top-2 logprob gap at or above which the greedy choices must agree.
    static let clearGap = 0.5

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

    @Test func logprobsAndGreedyTrackLlamaCpp() throws {
        let model = try ModelRegistry.load(RealModels.smollm2)
        let golden = try Fixtures.json("smollm2/greedy.json")
        var worst = 0.0
        var total = 0.0
        var count = 0
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
                total += difference
                count += 1
                #expect(difference <= Self.maxTolerance, "\(name) prompt token \(i): |Δ logprob| = \(difference)")
            }
            for (k, step) in steps.enumerated() {
                let row = rows[promptIDs.count - 1 + k]
                let difference = abs(row[generated[k]] - (step["logprob"]?.double ?? .nan))
                worst = max(worst, difference)
                total += difference
                count += 1
                compared += 1
                #expect(difference <= Self.maxTolerance, "\(name) step \(k): |Δ logprob| = \(difference)")
                let ours = row.indices.max { (row[$0], -$0) < (row[$1], -$1) }!
                let gap = try #require(step["gap"]?.double)
                #expect(
                    ours == generated[k] || gap < Self.clearGap,
                    "\(name) step \(k): chose \(ours), llama.cpp \(generated[k]) by a gap of \(gap)")
            }
        }
        let mean = total / Double(max(count, 1))
        #expect(mean <= Self.meanTolerance, "mean |Δ logprob| \(mean)")
        print("SmolLM2 vs llama.cpp: \(compared) generated tokens, mean |Δ logprob| \(mean), max \(worst)")
    }

    /// `--cache-type q8_0`: 34 bytes per 32 cached values instead of 64, and the logprobs along llama.cpp's
    /// greedy continuations stay close to the f16 cache's. Q8_0 rounds each value to 1/254 of its block's
    /// largest, and this 4-bit model amplifies any change layer by layer (measured: mean 0.049, max 0.67 —
    /// the size of llama.cpp's own build-to-build spread); the bounds are this file's llama.cpp ones, which
    /// a wrong block (a lost scale, a shifted row) exceeds by whole units. The README's KL divergences
    /// measure the quality on whole texts.
    @Test func q8CacheTracksTheHalfCache() throws {
        let half = try ModelRegistry.load(RealModels.smollm2)
        let q8 = try ModelRegistry.load(RealModels.smollm2, options: LoadOptions(attentionPrecision: .q8_0))
        // 30 layers × (keys + values) × 3 kv heads × 64: halves, then two Q8_0 blocks per head.
        #expect(half.cacheBytesPerToken == 30 * 2 * 192 * 2)
        #expect(q8.cacheBytesPerToken == 30 * 2 * 6 * 34)
        let golden = try Fixtures.json("smollm2/greedy.json")
        var worst = 0.0
        var total = 0.0
        var count = 0
        for prompt in try #require(golden["prompts"]?.array) {
            let p = try #require(prompt.object)
            let promptIDs = try #require(p["ids"]?.array?.compactMap { $0.integer })
            let generated = try #require(p["steps"]?.array?.compactMap { $0.object?["id"]?.integer })
            let tokens = promptIDs + generated.dropLast()
            let halfRows = try Self.scoreLikeLlamaCpp(
                half, prompt: promptIDs, continuation: Array(generated.dropLast()))
            let q8Rows = try Self.scoreLikeLlamaCpp(q8, prompt: promptIDs, continuation: Array(generated.dropLast()))
            for i in 1..<tokens.count {
                let difference = abs(halfRows[i - 1][tokens[i]] - q8Rows[i - 1][tokens[i]])
                worst = max(worst, difference)
                total += difference
                count += 1
            }
        }
        let mean = total / Double(max(count, 1))
        print("SmolLM2 q8_0 cache vs f16 cache: \(count) tokens, mean |Δ logprob| \(mean), max \(worst)")
        #expect(mean <= Self.meanTolerance && worst <= Self.maxTolerance, "mean \(mean), max \(worst)")
    }
}
