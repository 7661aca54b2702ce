import Foundation
import Testing
import WhaleCore
import WhaleKernels
import WhaleModels

/// SmolLM2-135M-Instruct Q4_1 against llama.cpp (Fixtures/smollm2/greedy.json, made by
/// scripts/make-dense-fixtures.py with llama-cpp-python 0.3.36): along llama.cpp's greedy continuation of
/// each prompt, BlueWhale's logprobs are within 0.05 of llama.cpp's, and BlueWhale's own greedy choice
/// equals llama.cpp's for the first 32 tokens except where llama.cpp's own top two are a near-tie.
/// Release builds only (see `BuildMode`).
@Suite(.enabled(if: RealModels.runSmolLM2, "release build and models/ needed")) struct SmolLM2Tests {
    static let tolerance = 0.05

    @Test func logprobsAndGreedyMatchLlamaCpp() throws {
        let model = try ModelRegistry.load(RealModels.smollm2)
        let golden = try Fixtures.json("smollm2/greedy.json")
        for prompt in try #require(golden["prompts"]?.array) {
            let p = try #require(prompt.object)
            let name = p["name"]?.string ?? "?"
            let promptIDs = try #require(p["ids"]?.array?.compactMap { $0.integer })
            let steps = try #require(p["steps"]?.array?.compactMap { $0.object })
            let generated = steps.compactMap { $0["id"]?.integer }
            let sequence = promptIDs + generated
            let scores = try score(model, sequence)
            // Prompt tokens.
            var worst = 0.0
            for (i, expected) in (p["prompt_logprobs"]?.array ?? []).enumerated() {
                worst = max(worst, abs(scores.logprobs[i] - (expected.double ?? .nan)))
            }
            // Generated tokens, and our own greedy choice at each of the first 32 steps.
            for (k, step) in steps.enumerated() {
                let position = promptIDs.count - 1 + k
                worst = max(worst, abs(scores.logprobs[position] - (step["logprob"]?.double ?? .nan)))
                if k < 32 {
                    let row = scores.rows[position]
                    let ours = row.indices.max { (row[$0], -$0) < (row[$1], -$1) }!
                    let gap = step["gap"]?.double ?? 0
                    if ours != generated[k] {
                        #expect(
                            gap < 2 * Self.tolerance,
                            "\(name) step \(k): chose \(ours), llama.cpp \(generated[k]) (gap \(gap))")
                    }
                }
            }
            #expect(worst < Self.tolerance, "\(name): max |Δ logprob| = \(worst)")
        }
    }
}
