import Testing
import WhaleCore
import WhaleFormats
import WhaleKernels

@testable import WhaleModels

/// A model split into pipeline stages (`LoadOptions.layers`, `runStage`) computes exactly what the whole
/// model computes: the stages run the same layers in the same order over the same residual stream.
@Suite struct PipelineStageTests {
    static let models = [
        "tiny-llama", "tiny-llama/model-q8_0.gguf", "tiny-qwen2", "deepseek/v3-sigmoid-noaux",
        "deepseek/v2-group-limited", "deepseek/mtp",
    ]

    /// The stages of `path` at `bounds` (each stage runs bounds[i]..<bounds[i + 1]).
    func stages(_ path: String, bounds: [Int]) throws -> [TransformerDecoder] {
        let files = try ModelFiles.open(Fixtures.path(path))
        return try (0..<(bounds.count - 1)).map {
            try ModelRegistry.loadStage(files, options: LoadOptions(layers: bounds[$0]..<bounds[$0 + 1]))
        }
    }

    /// Runs `batch` (tokens, logit rows per sequence) through `stages` in order, each with its own caches.
    func runChain(
        _ stages: [TransformerDecoder], caches: [[KVCache]], _ batch: [(tokens: [Int], logits: LogitRows)],
        context: ForwardContext
    ) throws -> [[Float]] {
        var hidden: [Float]? = nil
        for (i, stage) in stages.enumerated() {
            let inputs = batch.enumerated().map {
                SequenceInput(tokens: $1.tokens, cache: caches[i][$0], logits: $1.logits)
            }
            let output =
                try hidden.map { values in
                    try values.withUnsafeBufferPointer {
                        try stage.runStage(
                            inputs, incoming: $0, producesLogits: i == stages.count - 1, context: context)
                    }
                } ?? stage.runStage(inputs, incoming: nil, producesLogits: i == stages.count - 1, context: context)
            switch output {
            case .hidden(let values): hidden = Array(values)
            case .logits(let logits): return logits
            }
        }
        Issue.record("the last stage returned no logits")
        return []
    }

    @Test(arguments: models)
    func stagesComputeWhatTheWholeModelComputes(path: String) throws {
        let whole = try #require(try ModelRegistry.load(Fixtures.path(path)) as? TransformerDecoder)
        let layers = whole.layerCount
        #expect(layers >= 2)
        let splits = [[0, 1, layers], [0, layers - 1, layers]] + (layers >= 3 ? [[0, 1, 2, layers]] : [])
        for bounds in splits {
            let chain = try stages(path, bounds: bounds)
            let counts: [Int] = (1..<bounds.count).map { (i: Int) -> Int in bounds[i] - bounds[i - 1] }
            #expect(chain.map(\.layerCount) == counts)
            #expect(chain.map(\.firstLayer) == Array(bounds.dropLast()))
            let context = ForwardContext(pool: ThreadPool(threads: 2))
            let wholeCaches = [whole.makeCache(capacity: 24), whole.makeCache(capacity: 24)]
            let caches = chain.map { stage in [stage.makeCache(capacity: 24), stage.makeCache(capacity: 24)] }
            // A prompt of each of two sequences (all rows, last row), then decode steps together.
            let steps: [[(tokens: [Int], logits: LogitRows)]] = [
                [([1, 5, 9, 20, 33, 7], .all), ([4, 8, 15, 16], .last)],
                [([2], .last), ([23], .last)],
                [([42], .last), ([3, 11], .all)],
            ]
            for step in steps {
                let expected = try whole.forward(
                    zip(step, wholeCaches).map { SequenceInput(tokens: $0.tokens, cache: $1, logits: $0.logits) },
                    context: context)
                let got = try runChain(chain, caches: caches, step, context: context)
                #expect(got == expected, "\(path) split at \(bounds)")
            }
            // A truncation and a context shift, done on each stage's caches, keep them equal to the whole.
            for cache in wholeCaches + caches.flatMap({ $0 }) { cache.truncate(to: cache.count - 1) }
            for cache in [wholeCaches[0]] + caches.map({ $0[0] }) { cache.discard(1..<3) }
            let step: [(tokens: [Int], logits: LogitRows)] = [([9, 10], .all), ([12], .last)]
            let expected = try whole.forward(
                zip(step, wholeCaches).map { SequenceInput(tokens: $0.tokens, cache: $1, logits: $0.logits) },
                context: context)
            #expect(try runChain(chain, caches: caches, step, context: context) == expected)
        }
    }

    /// Stages hold only their layers' cache; a stage has no draft module.
    @Test func stagesHoldTheirShareOfTheCache() throws {
        let whole = try #require(try ModelRegistry.load(Fixtures.path("deepseek/mtp")) as? TransformerDecoder)
        let chain = try stages("deepseek/mtp", bounds: [0, 1, whole.layerCount])
        #expect(chain.map(\.cacheBytesPerToken).reduce(0, +) == whole.cacheBytesPerToken)
        #expect(whole.canDraft)
        #expect(chain.allSatisfy { !$0.canDraft })
    }

    /// Every byte of a model's weights is counted once in `weightBytes` (the head counts a tied embedding
    /// again), and layer ranges outside the model are refused.
    @Test(arguments: ["tiny-llama", "tiny-llama/model-q8_0.gguf", "deepseek/v3-sigmoid-noaux"])
    func weightBytesCoverTheModel(path: String) throws {
        let files = try ModelFiles.open(Fixtures.path(path))
        let bytes = try ModelRegistry.weightBytes(files)
        let total = files.tensors.reduce(0) { $0 + $1.byteCount }
        let counted = bytes.layers.reduce(0, +) + bytes.embedding + bytes.head
        let tied = files.tensors.allSatisfy { $0.name != "output.weight" && $0.name != "lm_head.weight" }
        #expect(counted == total + (tied ? bytes.embedding : 0))
        #expect(bytes.layers.allSatisfy { $0 > 0 })
        #expect(Set(bytes.layers).count == 1 || path.hasPrefix("deepseek"))  // dense layers are alike
        for bad in [0..<0, -1..<1, 0..<(bytes.layers.count + 1)] {
            #expect(throws: WhaleError.self) { try ModelRegistry.loadStage(files, options: LoadOptions(layers: bad)) }
        }
    }
}
