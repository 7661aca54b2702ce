import Foundation
import Testing
import WhaleCore
import WhaleKernels

@testable import WhaleModels

/// DeepSeek V2/V3 (MLA + MoE) on the tiny random models of scripts/make-deepseek-fixtures.py: per-token
/// logprobs within 1e-3 of transformers' eager float32 forward (safetensors in f32 and bf16, and the GGUF
/// written by llama.cpp's converter, which also matches llama.cpp's own logprobs).
@Suite struct DeepSeekModelTests {
    static let tolerance = 1e-3
    static let variants = [
        "v3-sigmoid-noaux", "v3-no-qlora-yarn", "v2-softmax-greedy", "v2-group-limited", "bf16", "fp8",
    ]

    @Test(arguments: variants)
    func safetensorsMatchesTransformers(variant: String) throws {
        let model = try ModelRegistry.load(Fixtures.path("deepseek/\(variant)"))
        let worst = try maximumLogprobDifference(model, reference: "deepseek/\(variant)/reference.json")
        #expect(worst < Self.tolerance, "\(variant): max |Δ logprob| = \(worst)")
    }

    /// The GGUF llama.cpp's converter writes (split `attn_k_b` / `attn_v_b`; for `mtp` the converter drops the
    /// MTP layer), with llama.cpp's reference run with an f32 cache, so BlueWhale uses f32 attention here.
    /// V2's group_limited_greedy is compared with transformers only: llama.cpp (0c1e570) routes V2's groups
    /// differently, and its own logprobs differ from transformers' by up to 2.95 on that model
    /// (reference-llamacpp.json records it); BlueWhale follows transformers.
    @Test(arguments: ["v3-sigmoid-noaux", "v3-no-qlora-yarn", "v2-group-limited", "mtp"])
    func ggufMatchesTransformersAndLlamaCpp(variant: String) throws {
        let directory = "deepseek/\(variant)"
        let model = try ModelRegistry.load(
            Fixtures.path("\(directory)/model-f32.gguf"), options: LoadOptions(attentionPrecision: .f32))
        let references =
            variant == "v2-group-limited" ? ["reference.json"] : ["reference.json", "reference-llamacpp.json"]
        for reference in references {
            let worst = try maximumLogprobDifference(model, reference: "\(directory)/\(reference)")
            #expect(worst < Self.tolerance, "\(variant) \(reference): max |Δ logprob| = \(worst)")
        }
    }

    /// The older deepseek2 GGUF layout: one fused `attn_kv_b`, split per head at load.
    @Test func fusedKeyValueGGUFMatchesTransformers() throws {
        let model = try ModelRegistry.load(
            Fixtures.path("deepseek/v3-sigmoid-noaux/model-fused-kv-f32.gguf"),
            options: LoadOptions(attentionPrecision: .f32))
        let worst = try maximumLogprobDifference(model, reference: "deepseek/v3-sigmoid-noaux/reference.json")
        #expect(worst < Self.tolerance, "max |Δ logprob| = \(worst)")
    }

    /// Q8_0 weights (llama.cpp's converter): on a random model this small, quantization moves logprobs by up to
    /// 0.31 in llama.cpp (vs transformers' float model, recorded in the reference). BlueWhale must stay within
    /// that quantization error of llama.cpp's own logprobs, and of the float model.
    @Test func q8GGUFAgreesWithLlamaCppWithinQuantizationError() throws {
        let model = try ModelRegistry.load(
            Fixtures.path("deepseek/v3-sigmoid-noaux/model-q8_0.gguf"), options: LoadOptions(attentionPrecision: .f32))
        let reference = "deepseek/v3-sigmoid-noaux/reference-llamacpp-q8_0.json"
        let quantizationError = try #require(
            Fixtures.json(reference)["max_abs_diff_vs_transformers"]?.object?["all_logprobs"]?.double)
        let versusLlamaCpp = try maximumLogprobDifference(model, reference: reference)
        let versusFloat = try maximumLogprobDifference(model, reference: "deepseek/v3-sigmoid-noaux/reference.json")
        #expect(versusLlamaCpp < quantizationError, "max |Δ logprob| vs llama.cpp = \(versusLlamaCpp)")
        #expect(versusFloat < quantizationError, "max |Δ logprob| vs transformers = \(versusFloat)")
    }
}

/// Invariants of MLA and the compressed cache.
@Suite struct LatentAttentionInvariantTests {
    static let ids = [275, 19, 176, 161, 223, 93, 270, 16, 71, 0, 283, 169, 82, 42, 31, 28, 111, 221, 13, 131]

    func logits(_ model: any LanguageModel, _ tokens: [Int], cache: KVCache, _ context: ForwardContext) throws
        -> [Float]
    {
        try model.forward([SequenceInput(tokens: tokens, cache: cache, logits: .all)], context: context)[0]
    }

    func maxDifference(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count)
        return zip(a, b).map { abs($0 - $1) }.max() ?? 0
    }

    @Test(arguments: ["v3-sigmoid-noaux", "v3-no-qlora-yarn", "v2-group-limited"])
    func absorbedEqualsExpanded(variant: String) throws {
        let context = ForwardContext(pool: ThreadPool(threads: 2))
        let absorbed = try ModelRegistry.load(Fixtures.path("deepseek/\(variant)"))
        let expanded = try ModelRegistry.load(
            Fixtures.path("deepseek/\(variant)"), options: LoadOptions(latentAttention: .expanded))
        let a = try logits(absorbed, Self.ids, cache: absorbed.makeCache(capacity: 32), context)
        let b = try logits(expanded, Self.ids, cache: expanded.makeCache(capacity: 32), context)
        #expect(maxDifference(a, b) < 1e-4)
    }

    @Test func prefillEqualsTokenByTokenDecode() throws {
        let model = try ModelRegistry.load(Fixtures.path("deepseek/v3-sigmoid-noaux"))
        let context = ForwardContext(pool: ThreadPool(threads: 2))
        let prefill = try logits(model, Self.ids, cache: model.makeCache(capacity: 32), context)
        let cache = model.makeCache(capacity: 32)
        var stepwise: [Float] = []
        for token in Self.ids { stepwise += try logits(model, [token], cache: cache, context) }
        #expect(maxDifference(prefill, stepwise) < 1e-4)
    }

    /// A long prompt pass runs its absorbed attention and its MLPs in token chunks (`tokenChunks`); the same
    /// tokens fed as passes short enough to need no chunks give the same logits.
    @Test func chunkedPromptPassEqualsShortPasses() throws {
        let model = try ModelRegistry.load(Fixtures.path("deepseek/v3-sigmoid-noaux"))
        let context = ForwardContext(pool: ThreadPool(threads: 2))
        let ids = (0..<300).map { ($0 * 37 + 11) % 256 }
        #expect(ids.count > LatentAttention.absorbedChunkTokens && ids.count > FeedForward.chunkTokens)
        let whole = try logits(model, ids, cache: model.makeCache(capacity: 320), context)
        let cache = model.makeCache(capacity: 320)
        var passes: [Float] = []
        for start in stride(from: 0, to: ids.count, by: 100) {
            passes += try logits(model, Array(ids[start..<(start + 100)]), cache: cache, context)
        }
        #expect(maxDifference(whole, passes) < 1e-5)
    }

    @Test func tokenChunksSplitEvenly() {
        #expect(tokenChunks(0, atMost: 128).isEmpty)
        #expect(tokenChunks(1, atMost: 128) == [0..<1])
        #expect(tokenChunks(128, atMost: 128) == [0..<128])
        #expect(tokenChunks(129, atMost: 128) == [0..<64, 64..<129])
        for count in 1...600 {
            let chunks = tokenChunks(count, atMost: 128)
            #expect(chunks.first?.lowerBound == 0 && chunks.last?.upperBound == count)
            #expect(zip(chunks, chunks.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound })
            let sizes = chunks.map(\.count)
            #expect(sizes.max()! <= 128 && sizes.max()! - sizes.min()! <= 1)
            #expect(chunks.count == (count + 127) / 128)
        }
    }

    @Test func cacheHoldsOnlyTheLatentAndTheRopeKey() throws {
        let model = try ModelRegistry.load(Fixtures.path("deepseek/v3-sigmoid-noaux"))
        let cache = model.makeCache(capacity: 8)
        // kv_lora_rank 32 + qk_rope_head_dim 8 floats per token per layer, 2 layers (safetensors: f32).
        #expect(cache.layout == .latent(rank: 32, ropeKeyWidth: 8, element: .f32) && cache.layers == 2)
        #expect(model.cacheBytesPerToken == 2 * (32 + 8) * 4)
        #expect(cache.bytesPerToken == model.cacheBytesPerToken)
        // A GGUF runs with llama.cpp's default f16 cache: half the bytes.
        let gguf = try ModelRegistry.load(Fixtures.path("deepseek/v3-sigmoid-noaux/model-f32.gguf"))
        let halfCache = gguf.makeCache(capacity: 8)
        #expect(halfCache.layout == .latent(rank: 32, ropeKeyWidth: 8, element: .f16))
        #expect(gguf.cacheBytesPerToken == 2 * (32 + 8) * 2 && halfCache.bytesPerToken == gguf.cacheBytesPerToken)
    }

    /// The f16 cache stores what f16 attention computes with: values rounded to half, read back exactly.
    @Test func halfCacheRoundTrips() {
        let cache = KVCache(layout: .keysAndValues(width: 11, element: .f16), layers: 1, capacity: 3)
        let values: [Float] = [0, -0, 1, -2.5, 65504, 1e-7, 3.14159, -1e5, .infinity, 6e-5, 0.1]
        var back = [Float](repeating: .nan, count: 11)
        values.withUnsafeBufferPointer { cache.store($0.baseAddress!, stream: 1, layer: 0, position: 2) }
        back.withUnsafeMutableBufferPointer { cache.load(stream: 1, layer: 0, position: 2, into: $0.baseAddress!) }
        let expected = values.map { Float(Float16($0)) }
        #expect(back.map(\.bitPattern) == expected.map(\.bitPattern))
    }

    /// A q8_0 cache stores Q8_0 blocks: 34 bytes per 32 values, each value within half a quantization step
    /// (plus the half-precision scale's rounding) of what was stored; context shift re-quantizes the turned
    /// rope keys.
    @Test func q8CacheStoresBlocks() throws {
        let layout = KVCache.Layout.latent(rank: 64, ropeKeyWidth: 32, element: .q8_0)
        #expect(layout.bytesPerTokenAndLayer == 3 * 34)
        let rope = RotaryEmbedding.ggml(
            dimensions: 32, layout: .interleaved, base: 10000, divisors: nil, frequencyScale: 1)
        let cache = KVCache(
            layout: layout, layers: 1, capacity: 4, rotated: .init(stream: 1, heads: 1, headDim: 32, rope: rope))
        #expect(cache.bytesPerToken == 102)
        let latent = [Float](repeating: 0.5, count: 64)
        let rows = (0..<3).map { p in (0..<32).map { Float($0 - 16) * 0.37 + Float(p) } }
        for p in 0..<3 {
            latent.withUnsafeBufferPointer { cache.store($0.baseAddress!, stream: 0, layer: 0, position: p) }
            rows[p].withUnsafeBufferPointer { cache.store($0.baseAddress!, stream: 1, layer: 0, position: p) }
        }
        cache.advance(by: 3)
        func load(_ position: Int) -> [Float] {
            var back = [Float](repeating: .nan, count: 32)
            back.withUnsafeMutableBufferPointer {
                cache.load(stream: 1, layer: 0, position: position, into: $0.baseAddress!)
            }
            return back
        }
        let step = rows[2].map { abs($0) }.max()! / 127
        #expect(zip(rows[2], load(2)).allSatisfy { abs($0 - $1) <= step * 0.56 }, "\(load(2))")
        // Dropping position 1 moves position 2 down and turns its rope key back by one position.
        var turned = rows[2]
        turned.withUnsafeMutableBufferPointer { rope.rotate($0.baseAddress!, heads: 1, headDim: 32, by: -1) }
        cache.discard(1..<2)
        #expect(cache.count == 2)
        // Quantized twice (stored, then re-stored after turning): within two steps.
        #expect(zip(turned, load(1)).allSatisfy { abs($0 - $1) <= step * 1.2 }, "\(load(1)) vs \(turned)")
    }

    /// Q8_0 stores whole blocks of 32 values: a model whose cached rows are not (these fixtures: rope keys
    /// of 8, heads of 16) gets an error naming the option and what to use instead, not a wrong cache.
    @Test(arguments: ["deepseek/v3-sigmoid-noaux/model-f32.gguf", "tiny-llama/model-f32.gguf"])
    func q8CacheNeedsWholeBlocks(path: String) throws {
        #expect {
            try ModelRegistry.load(Fixtures.path(path), options: LoadOptions(attentionPrecision: .q8_0))
        } throws: { error in
            let error = error as? WhaleError
            return error?.field == "--cache-type" && error?.hint?.contains("f16") == true
        }
    }

    @Test func batchOfTwoEqualsTwoSingleRuns() throws {
        let model = try ModelRegistry.load(Fixtures.path("deepseek/v2-softmax-greedy"))
        let context = ForwardContext(pool: ThreadPool(threads: 2))
        let a = Array(Self.ids.prefix(11))
        let b = Array(Self.ids.suffix(6))
        let singleA = try logits(model, a, cache: model.makeCache(capacity: 16), context)
        let singleB = try logits(model, b, cache: model.makeCache(capacity: 16), context)
        let batched = try model.forward(
            [
                SequenceInput(tokens: a, cache: model.makeCache(capacity: 16), logits: .all),
                SequenceInput(tokens: b, cache: model.makeCache(capacity: 16), logits: .all),
            ], context: context)
        #expect(maxDifference(batched[0], singleA) < 1e-5)
        #expect(maxDifference(batched[1], singleB) < 1e-5)
    }

    /// Context shift: dropping tokens 4..<8 moves the later tokens down and turns their rope keys back by four
    /// positions. Layer 0's entries depend on their own token only, so there the shifted cache must equal a
    /// fresh cache that never saw the dropped tokens (deeper layers legitimately remember them); YaRN's scaled
    /// cos/sin and both rope layouts included. Decoding then goes on from the shorter cache.
    /// A GGUF (f16 cache) re-rounds each turned-back rope key to half: within a half-precision step.
    @Test(arguments: [
        "deepseek/v3-no-qlora-yarn", "deepseek/v2-group-limited", "tiny-llama3-rope", "tiny-qwen2",
        "deepseek/v3-no-qlora-yarn/model-f32.gguf", "tiny-qwen2/model-f32.gguf",
    ])
    func contextShiftTurnsRopeKeysBack(path: String) throws {
        let model = try ModelRegistry.load(Fixtures.path(path))
        let context = ForwardContext(pool: ThreadPool(threads: 2))
        let cache = model.makeCache(capacity: 32)
        _ = try logits(model, Array(Self.ids.prefix(12)), cache: cache, context)
        cache.discard(4..<8)
        #expect(cache.count == 8)
        let fresh = model.makeCache(capacity: 32)
        _ = try logits(model, Array(Self.ids[0..<4] + Self.ids[8..<12]), cache: fresh, context)
        var worst: Float = 0
        for (stream, width) in cache.layout.streams.map(\.width).enumerated() {
            var shifted = [Float](repeating: 0, count: width)
            var expected = [Float](repeating: 0, count: width)
            for position in 0..<8 {
                shifted.withUnsafeMutableBufferPointer {
                    cache.load(stream: stream, layer: 0, position: position, into: $0.baseAddress!)
                }
                expected.withUnsafeMutableBufferPointer {
                    fresh.load(stream: stream, layer: 0, position: position, into: $0.baseAddress!)
                }
                for i in 0..<width { worst = max(worst, abs(shifted[i] - expected[i]) / max(abs(expected[i]), 1)) }
            }
        }
        #expect(worst < (cache.layout.element == .f16 ? 2e-3 : 1e-5), "\(worst)")
        let next = try logits(model, Array(Self.ids[12...]), cache: cache, context)
        #expect(cache.count == 16 && next.allSatisfy { $0.isFinite })
    }

    @Test func badRoutingConfigurationIsNamed() throws {
        // 3 experts per token cannot come from 1 kept group of 2 experts.
        let directory = try TemporaryModel.copy(Fixtures.path("deepseek/v3-sigmoid-noaux"))
        try TemporaryModel.edit(directory) {
            $0.replacingOccurrences(of: "\"num_experts_per_tok\": 2", with: "\"num_experts_per_tok\": 5")
        }
        #expect {
            try ModelRegistry.load(directory)
        } throws: { error in
            (error as? WhaleError)?.problem.contains("inconsistent routing") == true
        }
    }
}

/// V3's multi-token-prediction module against transformers' DeepseekV3DecoderLayer driven as vLLM / SGLang
/// drive it (scripts/make-deepseek-fixtures.py, mtp-reference.json): row i, from the main model's normed
/// final hidden state at i and token i + 1, predicts token i + 2. Pairs are fed one at a time, so the MTP
/// module's own cache is exercised too.
@Suite struct MultiTokenPredictionTests {
    @Test func draftLogprobsMatchTheReference() throws {
        let model = try #require(try ModelRegistry.load(Fixtures.path("deepseek/mtp")) as? any DraftingLanguageModel)
        #expect(model.canDraft)
        let reference = try Fixtures.json("deepseek/mtp/mtp-reference.json")
        let ids = try #require(reference["ids"]?.array?.compactMap { $0.integer })
        let context = ForwardContext(pool: ThreadPool(threads: 2))
        let cache = model.makeCache(capacity: ids.count)
        let hidden = try model.forwardKeepingHidden(
            [SequenceInput(tokens: ids, cache: cache, logits: .none)], context: context
        ).hidden[0]
        let width = model.hiddenSize
        let draftCache = model.makeDraftCache(capacity: ids.count)
        var rows: [[Double]] = []
        for i in 0..<(ids.count - 1) {
            let logits = try model.draft(
                hidden: Array(hidden[(i * width)..<((i + 1) * width)]), tokens: [ids[i + 1]], cache: draftCache,
                context: context)
            var row = [Double](repeating: 0, count: logits.count)
            logits.withUnsafeBufferPointer { input in
                row.withUnsafeMutableBufferPointer {
                    Ops.logSoftmax(input.baseAddress!, count: logits.count, output: $0.baseAddress!)
                }
            }
            rows.append(row)
        }
        var worst = 0.0
        for entry in try #require(reference["positions"]?.array) {
            let position = try #require(entry.object)
            let i = try #require(position["pos"]?.integer)
            let next = try #require(position["next"]?.integer)
            worst = max(worst, abs(rows[i][next] - (position["logprob"]?.double ?? .nan)))
            for candidate in position["top"]?.array ?? [] {
                let pair = try #require(candidate.array)
                worst = max(worst, abs(rows[i][try #require(pair[0].integer)] - (pair[1].double ?? .nan)))
            }
        }
        let last = try #require(reference["last_position_logprobs"]?.array?.compactMap { $0.double })
        for (id, value) in last.enumerated() { worst = max(worst, abs(rows[ids.count - 2][id] - value)) }
        #expect(worst < 1e-3, "max |Δ logprob| = \(worst)")
        #expect(draftCache.count == ids.count - 1)
    }

    @Test func mainModelIgnoresTheMTPLayer() throws {
        let model = try ModelRegistry.load(Fixtures.path("deepseek/mtp"))
        let worst = try maximumLogprobDifference(model, reference: "deepseek/mtp/reference.json")
        #expect(worst < 1e-3, "max |Δ logprob| = \(worst)")
    }
}
