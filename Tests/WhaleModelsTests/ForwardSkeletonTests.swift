import Foundation
import Testing
import WhaleCore
import WhaleKernels

@testable import WhaleModels

/// The shared forward skeleton: scratch memory stops growing once decoding is under way, and taps record
/// every named step without changing the result.
@Suite struct ForwardSkeletonTests {
    static let models = ["tiny-llama", "deepseek/v3-sigmoid-noaux", "deepseek/v2-group-limited"]

    /// A decode step allocates no scratch memory: after the first decode step the arena and the activation
    /// workspace keep their size for the rest of the context.
    @Test(arguments: models)
    func decodingDoesNotGrowScratchMemory(path: String) throws {
        let model = try ModelRegistry.load(Fixtures.path(path))
        let context = ForwardContext(pool: ThreadPool(threads: 2))
        let cache = model.makeCache(capacity: 32)
        _ = try model.forward(
            [SequenceInput(tokens: [1, 5, 9, 20, 33, 7, 2, 11], cache: cache, logits: .last)], context: context)
        _ = try model.forward([SequenceInput(tokens: [3], cache: cache, logits: .last)], context: context)
        let growth = context.arena.growthCount
        let arenaBytes = context.arena.reservedBytes
        let workspaceBytes = context.linear.reservedBytes
        for token in 0..<20 {
            _ = try model.forward([SequenceInput(tokens: [token + 4], cache: cache, logits: .last)], context: context)
        }
        #expect(cache.count == 29)
        #expect(context.arena.growthCount == growth)
        #expect(context.arena.reservedBytes == arenaBytes)
        #expect(context.linear.reservedBytes == workspaceBytes)
    }

    /// Taps see every step, in order, with shapes; recording them changes no logit; the residual taps add up.
    @Test(arguments: models)
    func tapsRecordEveryStepWithoutChangingTheResult(path: String) throws {
        let model = try ModelRegistry.load(Fixtures.path(path))
        let ids = [1, 5, 9, 20, 33, 7]
        let plain = try model.forward(
            [SequenceInput(tokens: ids, cache: model.makeCache(capacity: 8), logits: .all)],
            context: ForwardContext(pool: ThreadPool(threads: 2)))
        let recorder = TapRecorder()
        let tapped = try model.forward(
            [SequenceInput(tokens: ids, cache: model.makeCache(capacity: 8), logits: .all)],
            context: ForwardContext(pool: ThreadPool(threads: 2), taps: recorder))
        #expect(plain == tapped)
        let taps = recorder.taps
        #expect(taps.first?.name == "inp_embd" && taps.first?.shape == [ids.count, model.hiddenSize])
        #expect(taps.last?.name == "result_output" && taps.last?.shape == [ids.count, model.vocabularySize])
        #expect(taps.last?.values == tapped[0])
        func tap(_ name: String, _ layer: Int) throws -> TapRecorder.Tap {
            try #require(taps.first { $0.name == name && $0.layer == layer }, "\(name) \(layer)")
        }
        let layers = (taps.compactMap(\.layer).max() ?? -1) + 1
        #expect(layers >= 2)
        for l in 0..<layers {
            let input = try tap("ffn_inp", l).values
            let delta = try tap("ffn_out", l).values
            let output = try tap("l_out", l).values
            let residualSums: [Float] = zip(input, delta).map { (a: Float, b: Float) -> Float in a + b }
            #expect(residualSums == output)
            let weights = try tap("attn_weights", l)
            #expect(weights.shape.count == 3 && weights.shape[1] == ids.count && weights.shape[2] == ids.count)
            for row in 0..<(weights.shape[0] * ids.count) {
                let sum = weights.values[(row * ids.count)..<((row + 1) * ids.count)].reduce(0, +)
                #expect(abs(sum - 1) < 1e-3)
            }
        }
        let names = Set(taps.map(\.name))
        if model.architecture.hasPrefix("deepseek") {
            #expect(
                names.isSuperset(of: ["q", "q_rope", "kv_latent", "k_rope", "router_logits", "expert_ids", "moe_out"]))
        } else {
            #expect(names.isSuperset(of: ["q", "k", "v", "attn_out", "ffn_norm"]))
        }
    }
}
