import Foundation
import Testing
import WhaleCore
import WhaleKernels
import WhaleModels

/// Small random Llama and Qwen2 models (transformers, f32; scripts/make-dense-fixtures.py): per-token
/// logprobs within 1e-4 of transformers' eager float32 forward, from safetensors and from the GGUF that
/// llama.cpp's converter wrote (which also agrees with llama.cpp's own logprobs).
@Suite struct TinyModelTests {
    static let models = ["tiny-llama", "tiny-qwen2", "tiny-llama3-rope"]
    static let tolerance = 1e-4

    func expectMatches(_ model: any LanguageModel, reference: String) throws {
        let worst = try maximumLogprobDifference(model, reference: reference)
        #expect(worst < Self.tolerance, "\(reference): max |Δ logprob| = \(worst)")
    }

    @Test(arguments: models)
    func safetensorsMatchesTransformers(name: String) throws {
        let model = try ModelRegistry.load(Fixtures.path(name))
        try expectMatches(model, reference: "\(name)/reference.json")
    }

    /// llama.cpp's reference ran with an f32 cache (type_k/type_v F32), so BlueWhale does too here.
    @Test(arguments: models)
    func ggufMatchesTransformersAndLlamaCpp(name: String) throws {
        let model = try ModelRegistry.load(
            Fixtures.path("\(name)/model-f32.gguf"), options: LoadOptions(attentionPrecision: .f32))
        try expectMatches(model, reference: "\(name)/reference.json")
        try expectMatches(model, reference: "\(name)/reference-llamacpp.json")
    }

    /// The converter's Q8_0 GGUF with BlueWhale's GGUF defaults (f16 cache) against llama.cpp with its
    /// defaults: the same float operations in the same order (docs/ARCHITECTURE.md, "Numerics"), so equal up
    /// to the fixture's 1e-6 rounding — covering Qwen2's biases and half-split RoPE and Llama 3 rope_freqs.
    @Test(arguments: models)
    func q8GGUFEqualsLlamaCpp(name: String) throws {
        let model = try ModelRegistry.load(Fixtures.path("\(name)/model-q8_0.gguf"))
        let worst = try maximumLogprobDifference(model, reference: "\(name)/reference-llamacpp-q8_0.json")
        #expect(worst <= 2e-6, "\(name): max |Δ logprob| = \(worst)")
    }
}

/// Invariants of the forward pass and the cache, on a tiny model.
@Suite struct ForwardInvariantTests {
    static let ids = [5, 17, 200, 3, 99, 42, 7, 250, 11, 64, 128, 9]

    func logits(_ model: any LanguageModel, _ tokens: [Int], cache: KVCache, _ context: ForwardContext) throws
        -> [Float]
    {
        try model.forward([SequenceInput(tokens: tokens, cache: cache, logits: .all)], context: context)[0]
    }

    @Test func prefillEqualsTokenByTokenDecode() throws {
        let model = try ModelRegistry.load(Fixtures.path("tiny-qwen2"))
        let context = ForwardContext(pool: ThreadPool(threads: 2))
        let batched = try logits(model, Self.ids, cache: model.makeCache(capacity: 32), context)
        let cache = model.makeCache(capacity: 32)
        var stepped: [Float] = []
        for id in Self.ids { stepped += try logits(model, [id], cache: cache, context) }
        #expect(batched.count == stepped.count)
        let worst = zip(batched, stepped).map { abs($0 - $1) }.max() ?? 0
        #expect(worst < 1e-4, "max |Δ logit| = \(worst)")
    }

    @Test func cacheAdvancesByExactlyTheTokensFed() throws {
        let model = try ModelRegistry.load(Fixtures.path("tiny-llama"))
        let context = ForwardContext(pool: ThreadPool(threads: 1))
        let cache = model.makeCache(capacity: 16)
        #expect(cache.count == 0)
        _ = try logits(model, [1, 2, 3], cache: cache, context)
        #expect(cache.count == 3)
        _ = try model.forward([SequenceInput(tokens: [4], cache: cache, logits: .last)], context: context)
        #expect(cache.count == 4)
        _ = try model.forward([SequenceInput(tokens: [], cache: cache, logits: .none)], context: context)
        #expect(cache.count == 4)
        // Overflowing the context is an error, and leaves the cache as it was.
        #expect(throws: WhaleError.self) { try logits(model, Array(repeating: 1, count: 13), cache: cache, context) }
        #expect(cache.count == 4)
    }

    @Test func batchOfTwoEqualsTwoSingleRuns() throws {
        let model = try ModelRegistry.load(Fixtures.path("tiny-llama"))
        let context = ForwardContext(pool: ThreadPool(threads: 2))
        let a = Array(Self.ids.prefix(7))
        let b = Array(Self.ids.suffix(5))
        let singleA = try logits(model, a, cache: model.makeCache(capacity: 16), context)
        let singleB = try logits(model, b, cache: model.makeCache(capacity: 16), context)
        let batched = try model.forward(
            [
                SequenceInput(tokens: a, cache: model.makeCache(capacity: 16), logits: .all),
                SequenceInput(tokens: b, cache: model.makeCache(capacity: 16), logits: .all),
            ], context: context)
        #expect(zip(batched[0], singleA).allSatisfy { abs($0 - $1) < 1e-5 })
        #expect(zip(batched[1], singleB).allSatisfy { abs($0 - $1) < 1e-5 })
    }

    @Test func truncatedCacheRecomputesTheSame() throws {
        let model = try ModelRegistry.load(Fixtures.path("tiny-llama3-rope"))
        let context = ForwardContext(pool: ThreadPool(threads: 2))
        let cache = model.makeCache(capacity: 32)
        let full = try logits(model, Self.ids, cache: cache, context)
        cache.truncate(to: 5)
        let rest = try logits(model, Array(Self.ids.dropFirst(5)), cache: cache, context)
        let vocabulary = model.vocabularySize
        let tail: [Float] = Array(full.suffix(rest.count))
        let largestDifference: Float = zip(tail, rest).map { (a: Float, b: Float) -> Float in abs(a - b) }.max() ?? 0
        #expect(largestDifference < 1e-5)
        #expect(rest.count == (Self.ids.count - 5) * vocabulary)
    }

    @Test func tokenOutsideTheVocabularyIsAnError() throws {
        let model = try ModelRegistry.load(Fixtures.path("tiny-llama"))
        let context = ForwardContext(pool: ThreadPool(threads: 1))
        #expect(throws: WhaleError.self) {
            try logits(model, [model.vocabularySize], cache: model.makeCache(capacity: 4), context)
        }
    }

    @Test func unsupportedArchitectureIsNamed() throws {
        // A GGUF file whose only metadata says it is a Mamba model.
        var bytes: [UInt8] = Array("GGUF".utf8)
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
        func string(_ s: String) {
            u64(UInt64(s.utf8.count))
            bytes += Array(s.utf8)
        }
        u32(3)
        u64(0)
        u64(1)
        string("general.architecture")
        u32(8)
        string("mamba")
        let path = NSTemporaryDirectory() + "whale-mamba-\(UUID().uuidString).gguf"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        do {
            _ = try ModelRegistry.load(path)
            Issue.record("loaded an unsupported architecture")
        } catch let error as WhaleError {
            #expect(error.code == .unsupportedArchitecture)
            #expect(error.problem.contains("mamba"))
            #expect(error.hint?.contains("llama") == true)
        }
    }
}
