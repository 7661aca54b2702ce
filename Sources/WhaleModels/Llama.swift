import WhaleCore
import WhaleFormats
import WhaleKernels

// Llama-family dense decoder: Llama 2 / 3, SmolLM2, DeepSeek-R1-Distill-Llama — and, with q/k/v biases
// and half-split RoPE, Qwen2 / R1-Distill-Qwen (see Qwen2.swift).
//
// References: transformers' modeling_llama.py / modeling_qwen2.py (eager attention), llama.cpp's
// llama-model.cpp (`llm_build_llama`, `llm_build_qwen2`) and convert_hf_to_gguf.py (Q/K permutation).
//
//   h = embed(tokens)                                          // [T, hidden]
//   for each layer:
//     x = rmsnorm(h) · attn_norm
//     q, k, v = x·Wqᵀ (+bq), x·Wkᵀ (+bk), x·Wvᵀ (+bv)           // [T, heads·hd], [T, kvHeads·hd] ×2
//     rope(q, k) at each token's position; append k, v to the sequence's cache
//     h += softmax(q·kᵀ / √hd, causal) · v · Woᵀ                // grouped-query attention
//     x = rmsnorm(h) · ffn_norm
//     h += (silu(x·Wgateᵀ) ⊙ x·Wupᵀ) · Wdownᵀ
//   logits = rmsnorm(h) · output_norm · Woutᵀ

/// A dense decoder-only transformer with grouped-query attention, RoPE, RMSNorm and a SwiGLU MLP.
public final class DenseDecoder: LanguageModel, @unchecked Sendable {
    public struct Configuration: Sendable {
        public var architecture: String
        public var vocabularySize: Int
        public var hiddenSize: Int
        public var intermediateSize: Int
        public var layers: Int
        public var heads: Int
        public var kvHeads: Int
        public var headDim: Int
        public var contextLength: Int
        public var rmsNormEps: Float
        public var rope: RotaryEmbedding
        public var qkvBias: Bool
        /// f16 for GGUF models (llama.cpp's default cache), f32 for safetensors (transformers' math).
        public var attentionPrecision: AttentionPrecision
    }

    struct Layer {
        var attentionNorm: [Float]
        var query: WeightMatrix
        var key: WeightMatrix
        var value: WeightMatrix
        var attentionOutput: WeightMatrix
        var queryBias: [Float]?
        var keyBias: [Float]?
        var valueBias: [Float]?
        var feedForwardNorm: [Float]
        var gate: WeightMatrix
        var up: WeightMatrix
        var down: WeightMatrix
    }

    public let configuration: Configuration
    let embedding: WeightMatrix
    let layerWeights: [Layer]
    let finalNorm: [Float]
    let output: WeightMatrix
    /// Keeps the memory-mapped files (which the matrices point into) alive.
    let files: ModelFiles

    public var architecture: String { configuration.architecture }
    public var vocabularySize: Int { configuration.vocabularySize }
    public var contextLength: Int { configuration.contextLength }
    public var cacheBytesPerToken: Int { configuration.layers * 2 * configuration.kvHeads * configuration.headDim * 4 }

    /// Checkpoint tensor names: GGUF (llama.cpp) and Hugging Face spellings, verbatim.
    struct TensorNames: Sendable {
        var embedding: String
        var finalNorm: String
        var output: String
        /// Layer i's tensors are `layerPrefix + i + "." + parts[part]`.
        var layerPrefix: String
        var parts: [String: String]

        func layer(_ i: Int, _ part: String) -> String { layerPrefix + "\(i)." + parts[part]! }

        static let gguf = TensorNames(
            embedding: "token_embd.weight", finalNorm: "output_norm.weight", output: "output.weight",
            layerPrefix: "blk.",
            parts: [
                "attention_norm": "attn_norm", "q": "attn_q", "k": "attn_k", "v": "attn_v", "o": "attn_output",
                "ffn_norm": "ffn_norm", "gate": "ffn_gate", "up": "ffn_up", "down": "ffn_down",
            ])

        static let huggingFace = TensorNames(
            embedding: "model.embed_tokens.weight", finalNorm: "model.norm.weight", output: "lm_head.weight",
            layerPrefix: "model.layers.",
            parts: [
                "attention_norm": "input_layernorm", "q": "self_attn.q_proj", "k": "self_attn.k_proj",
                "v": "self_attn.v_proj", "o": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
                "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj",
            ])
    }

    init(configuration: Configuration, files: ModelFiles, options: LoadOptions) throws {
        var c = configuration
        if let precision = options.attentionPrecision { c.attentionPrecision = precision }
        let names: TensorNames
        if case .gguf = files { names = .gguf } else { names = .huggingFace }
        let weights = WeightLoader(files)
        self.configuration = c
        self.files = files
        embedding = try weights.matrix(names.embedding, rows: c.vocabularySize, columns: c.hiddenSize)
        finalNorm = try weights.vector(names.finalNorm, count: c.hiddenSize)
        // Tied embeddings: no separate output matrix.
        output =
            weights.has(names.output)
            ? try weights.matrix(names.output, rows: c.vocabularySize, columns: c.hiddenSize) : embedding
        let qWidth = c.heads * c.headDim
        let kvWidth = c.kvHeads * c.headDim
        layerWeights = try (0..<c.layers).map { i in
            func name(_ part: String) -> String { names.layer(i, part) + ".weight" }
            func bias(_ part: String, _ count: Int) throws -> [Float]? {
                c.qkvBias ? try weights.vector(names.layer(i, part) + ".bias", count: count) : nil
            }
            return Layer(
                attentionNorm: try weights.vector(name("attention_norm"), count: c.hiddenSize),
                query: try weights.matrix(name("q"), rows: qWidth, columns: c.hiddenSize),
                key: try weights.matrix(name("k"), rows: kvWidth, columns: c.hiddenSize),
                value: try weights.matrix(name("v"), rows: kvWidth, columns: c.hiddenSize),
                attentionOutput: try weights.matrix(name("o"), rows: c.hiddenSize, columns: qWidth),
                queryBias: try bias("q", qWidth), keyBias: try bias("k", kvWidth), valueBias: try bias("v", kvWidth),
                feedForwardNorm: try weights.vector(name("ffn_norm"), count: c.hiddenSize),
                gate: try weights.matrix(name("gate"), rows: c.intermediateSize, columns: c.hiddenSize),
                up: try weights.matrix(name("up"), rows: c.intermediateSize, columns: c.hiddenSize),
                down: try weights.matrix(name("down"), rows: c.hiddenSize, columns: c.intermediateSize))
        }
    }

    public func makeCache(capacity: Int) -> KVCache {
        let width = configuration.kvHeads * configuration.headDim
        return KVCache(
            layers: configuration.layers, capacity: capacity, keyWidth: width, valueWidth: width,
            rotated: .init(
                stream: .keys, heads: configuration.kvHeads, headDim: configuration.headDim, rope: configuration.rope))
    }

    public func forward(_ batch: [SequenceInput], context: ForwardContext) throws -> [[Float]] {
        let c = configuration
        for input in batch {
            try input.cache.reserve(input.tokens.count)
            for token in input.tokens where token < 0 || token >= c.vocabularySize {
                throw WhaleError(
                    .invalidArgument, field: "token id", "\(token) is outside the vocabulary (0..<\(c.vocabularySize))")
            }
        }
        // Every token of every sequence, with its sequence and position.
        var tokenSequence: [Int] = []
        var tokenPosition: [Int] = []
        var tokenIDs: [Int] = []
        var tokenPassCount: [Int] = []
        for (s, input) in batch.enumerated() {
            for (k, token) in input.tokens.enumerated() {
                tokenIDs.append(token)
                tokenSequence.append(s)
                tokenPosition.append(input.cache.count + k)
                tokenPassCount.append(input.tokens.count)
            }
        }
        let count = tokenIDs.count
        if count == 0 { return batch.map { _ in [] } }

        let qWidth = c.heads * c.headDim
        let kvWidth = c.kvHeads * c.headDim
        var scratch = Scratch()
        defer { scratch.release() }
        let hidden = scratch.floats(count * c.hiddenSize)  // [T, hidden]
        let normed = scratch.floats(count * c.hiddenSize)
        let q = scratch.floats(count * qWidth)
        let k = scratch.floats(count * kvWidth)
        let v = scratch.floats(count * kvWidth)
        let attention = scratch.floats(count * qWidth)
        let projected = scratch.floats(count * c.hiddenSize)
        let gate = scratch.floats(count * c.intermediateSize)
        let up = scratch.floats(count * c.intermediateSize)

        for (t, token) in tokenIDs.enumerated() { embedding.dequantizeRow(token, into: hidden + t * c.hiddenSize) }

        let pool = context.pool
        let workspace = context.linear
        let tokenCaches = tokenSequence.map { batch[$0].cache }  // each token's sequence cache, for attention
        for (l, layer) in layerWeights.enumerated() {
            Ops.rmsNorm(
                hidden, weight: layer.attentionNorm, rows: count, n: c.hiddenSize, eps: c.rmsNormEps, output: normed)
            Linear.apply(layer.query, input: normed, tokens: count, output: q, pool: pool, workspace: workspace)
            Linear.apply(layer.key, input: normed, tokens: count, output: k, pool: pool, workspace: workspace)
            Linear.apply(layer.value, input: normed, tokens: count, output: v, pool: pool, workspace: workspace)
            if let bias = layer.queryBias { Ops.addBias(bias, to: q, rows: count, n: qWidth) }
            if let bias = layer.keyBias { Ops.addBias(bias, to: k, rows: count, n: kvWidth) }
            if let bias = layer.valueBias { Ops.addBias(bias, to: v, rows: count, n: kvWidth) }
            for t in 0..<count {
                c.rope.apply(q + t * qWidth, heads: c.heads, headDim: c.headDim, position: tokenPosition[t])
                c.rope.apply(k + t * kvWidth, heads: c.kvHeads, headDim: c.headDim, position: tokenPosition[t])
                let cache = batch[tokenSequence[t]].cache
                if c.attentionPrecision == .f16 {
                    roundToHalf(k + t * kvWidth, count: kvWidth)
                    roundToHalf(v + t * kvWidth, count: kvWidth)
                }
                (cache.keys[l] + tokenPosition[t] * kvWidth).update(from: k + t * kvWidth, count: kvWidth)
                (cache.values[l] + tokenPosition[t] * kvWidth).update(from: v + t * kvWidth, count: kvWidth)
            }
            GroupedQueryAttention.run(
                queries: q, count: count, positions: tokenPosition, passTokens: tokenPassCount, caches: tokenCaches,
                layer: l, heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, precision: c.attentionPrecision,
                output: attention, pool: pool)
            Linear.apply(
                layer.attentionOutput, input: attention, tokens: count, output: projected, pool: pool,
                workspace: workspace)
            Ops.add(projected, into: hidden, count: count * c.hiddenSize)

            Ops.rmsNorm(
                hidden, weight: layer.feedForwardNorm, rows: count, n: c.hiddenSize, eps: c.rmsNormEps, output: normed)
            Linear.apply(layer.gate, input: normed, tokens: count, output: gate, pool: pool, workspace: workspace)
            Linear.apply(layer.up, input: normed, tokens: count, output: up, pool: pool, workspace: workspace)
            Ops.swiGLU(gate: gate, up: up, rows: count, n: c.intermediateSize)
            Linear.apply(layer.down, input: gate, tokens: count, output: projected, pool: pool, workspace: workspace)
            Ops.add(projected, into: hidden, count: count * c.hiddenSize)
        }
        for input in batch { input.cache.advance(by: input.tokens.count) }

        // Logits for the requested rows only.
        var results: [[Float]] = []
        var start = 0
        for input in batch {
            let rows = input.logits.rows(start: start, count: input.tokens.count)
            start += input.tokens.count
            if rows.isEmpty {
                results.append([])
                continue
            }
            Ops.rmsNorm(
                hidden + rows.lowerBound * c.hiddenSize, weight: finalNorm, rows: rows.count, n: c.hiddenSize,
                eps: c.rmsNormEps, output: normed)
            var logits = [Float](repeating: 0, count: rows.count * c.vocabularySize)
            logits.withUnsafeMutableBufferPointer { buffer in
                Linear.apply(
                    output, input: normed, tokens: rows.count, output: buffer.baseAddress!, pool: pool,
                    workspace: workspace)
            }
            results.append(logits)
        }
        return results
    }
}

/// Scratch buffers for one forward pass, freed together. Not zeroed: every buffer is written in full
/// before it is read.
struct Scratch {
    private var buffers: [UnsafeMutablePointer<Float>] = []

    mutating func floats(_ count: Int) -> UnsafeMutablePointer<Float> {
        let pointer = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
        buffers.append(pointer)
        return pointer
    }

    mutating func release() {
        for pointer in buffers { pointer.deallocate() }
        buffers.removeAll()
    }
}

extension DenseDecoder {
    /// A Llama-architecture model from GGUF metadata (`llama.*` keys) or config.json.
    static func llama(_ files: ModelFiles, options: LoadOptions) throws -> DenseDecoder {
        var configuration: Configuration
        switch files {
        case .gguf(let model):
            // llama.cpp's converter permutes Q/K rows so RoPE rotates adjacent pairs.
            configuration = try ggufConfiguration(model, architecture: "llama", layout: .interleaved, qkvBias: false)
        case .safetensors(_, let config):
            configuration = try huggingFaceConfiguration(config, files: files, qkvBias: config.attentionBias)
        }
        return try DenseDecoder(configuration: configuration, files: files, options: options)
    }

    static func ggufConfiguration(
        _ model: GGUFModel, architecture arch: String, layout: RotaryEmbedding.Layout, qkvBias: Bool
    ) throws -> Configuration {
        let metadata = model.metadata
        func int(_ key: String, default value: Int? = nil) throws -> Int {
            if let found = metadata["\(arch).\(key)"]?.int, found > 0 { return found }
            if let value { return value }
            throw WhaleError(.missingKey, file: model.path, field: "\(arch).\(key)", "required metadata is missing")
        }
        let hidden = try int("embedding_length")
        let heads = try int("attention.head_count")
        let kvHeads = try int("attention.head_count_kv", default: heads)
        let headDim = try int("attention.key_length", default: hidden / heads)
        let ropeDims = try int("rope.dimension_count", default: headDim)
        guard let embedding = model.tensor(named: "token_embd.weight"), embedding.shape.count == 2 else {
            throw WhaleError(.missingTensor, file: model.path, field: "token_embd.weight", "the model has no embedding")
        }
        let base = metadata["\(arch).rope.freq_base"]?.double ?? 10000
        var frequencyScale: Float = 1
        if let scaling = metadata["\(arch).rope.scaling.type"]?.string, scaling != "none" {
            guard scaling == "linear", let factor = metadata["\(arch).rope.scaling.factor"]?.double else {
                throw WhaleError(
                    .invalidValue, file: model.path, field: "\(arch).rope.scaling.type",
                    "RoPE scaling \"\(scaling)\" is not supported for dense models yet")
            }
            frequencyScale = 1 / Float(factor)
        }
        var divisors: [Float]?
        if let factors = model.tensor(named: "rope_freqs.weight") {
            // Llama 3.1: per-dimension divisors, stored by the converter.
            let values = try Dequantize.toFloats(
                factors.type, bytes: model.data(of: factors), count: factors.elementCount, tensorName: factors.name)
            guard values.count == ropeDims / 2 else {
                throw WhaleError(
                    .invalidShape, file: model.path, field: factors.name, "expected \(ropeDims / 2) values")
            }
            divisors = values
        }
        let rope = RotaryEmbedding.ggml(
            dimensions: ropeDims, layout: layout, base: base, divisors: divisors, frequencyScale: frequencyScale)
        return Configuration(
            architecture: arch, vocabularySize: embedding.shape[0], hiddenSize: hidden,
            intermediateSize: try int("feed_forward_length"), layers: try int("block_count"), heads: heads,
            kvHeads: kvHeads, headDim: headDim, contextLength: try int("context_length", default: 2048),
            rmsNormEps: Float(metadata["\(arch).attention.layer_norm_rms_epsilon"]?.double ?? 1e-5),
            rope: rope, qkvBias: qkvBias, attentionPrecision: .f16)
    }

    static func huggingFaceConfiguration(_ config: ModelConfig, files: ModelFiles, qkvBias: Bool) throws
        -> Configuration
    {
        let headDim = config.headDim ?? config.hiddenSize / config.numAttentionHeads
        var frequencies = RotaryEmbedding.standardFrequencies(dimensions: headDim, base: config.ropeTheta)
        if let scaling = config.ropeScaling, scaling.type != "default" {
            switch scaling.type {
            case "linear":
                frequencies = frequencies.map { $0 / Float(scaling.factor ?? 1) }
            case "llama3":
                frequencies = RotaryEmbedding.llama3Frequencies(
                    frequencies, factor: scaling.factor ?? 8, lowFrequencyFactor: scaling.lowFreqFactor ?? 1,
                    highFrequencyFactor: scaling.highFreqFactor ?? 4,
                    originalContext: Double(scaling.originalMaxPositionEmbeddings ?? 8192))
            default:
                throw WhaleError(
                    .invalidValue, field: "rope_scaling.rope_type",
                    "RoPE scaling \"\(scaling.type)\" is not supported for \(config.architecture.modelType) yet",
                    hint: "supported: default, linear, llama3")
            }
        }
        return Configuration(
            architecture: config.architecture.modelType, vocabularySize: config.vocabSize,
            hiddenSize: config.hiddenSize, intermediateSize: config.intermediateSize, layers: config.numHiddenLayers,
            heads: config.numAttentionHeads, kvHeads: config.numKeyValueHeads, headDim: headDim,
            contextLength: config.maxPositionEmbeddings, rmsNormEps: Float(config.rmsNormEps),
            rope: RotaryEmbedding(dimensions: headDim, layout: .halves, inverseFrequencies: frequencies),
            qkvBias: qkvBias,
            attentionPrecision: .f32)
    }
}
