import WhaleCore
import WhaleFormats
import WhaleKernels

// Llama-family dense decoder: Llama 2 / 3, SmolLM2, DeepSeek-R1-Distill-Llama — and, with q/k/v biases
// and half-split RoPE, Qwen2 / R1-Distill-Qwen (Qwen2.swift).
//
// References: transformers' modeling_llama.py / modeling_qwen2.py (eager attention), llama.cpp's
// llama-model.cpp (`llm_build_llama`, `llm_build_qwen2`) and convert_hf_to_gguf.py (Q/K permutation).
//
//   h = embed(tokens)                                          // [T, hidden]
//   for each layer:                                            // ResidualLayer
//     x = rmsnorm(h) · attn_norm
//     h += GroupedQueryAttention(x)                            // q/k/v (+bias), RoPE, cache, softmax, Wo
//     x = rmsnorm(h) · ffn_norm
//     h += (silu(x·Wgateᵀ) ⊙ x·Wupᵀ) · Wdownᵀ                 // FeedForward
//   logits = rmsnorm(h) · output_norm · Woutᵀ                  // TransformerDecoder

enum Llama: Architecture {
    /// The shape of a Llama-family model.
    struct Configuration {
        var architecture: String
        var vocabularySize: Int
        var hiddenSize: Int
        var intermediateSize: Int
        var layers: Int
        var contextLength: Int
        var rmsNormEps: Float
        var qkvBias: Bool
        var attention: GroupedQueryAttention.Shape

        var cacheLayout: KVCache.Layout {
            .keysAndValues(width: attention.keyWidth, element: .init(attention.precision))
        }
    }

    static func load(_ files: ModelFiles, options: LoadOptions) throws -> TransformerDecoder {
        // llama.cpp's converter permutes Llama's Q/K rows so RoPE rotates adjacent pairs.
        try build(configuration(files, ggufRope: .interleaved, qkvBias: nil), files: files, options: options)
    }

    static func cache(_ files: ModelFiles, precision: AttentionPrecision?) throws -> ModelInspection.CacheDescription {
        try describeCache(
            configuration(files, ggufRope: .interleaved, qkvBias: nil), precision: precision, source: files.path)
    }

    static func layout(_ files: ModelFiles) throws -> (layers: Int, names: TensorNames) {
        let layers = try configuration(files, ggufRope: .interleaved, qkvBias: nil).layers
        return (layers, names(files))
    }

    static func names(_ files: ModelFiles) -> TensorNames {
        if case .gguf = files { ggufNames } else { huggingFaceNames }
    }

    static func describeCache(_ configuration: Configuration, precision: AttentionPrecision?, source: String) throws
        -> ModelInspection.CacheDescription
    {
        var c = configuration
        if let precision { c.attention.precision = precision }
        try c.cacheLayout.check(headDim: c.attention.headDim, source: source)
        let a = c.attention
        return ModelInspection.CacheDescription(
            bytesPerToken: c.layers * c.cacheLayout.bytesPerTokenAndLayer,
            layout: "\(c.cacheLayout.element.rawValue): \(c.layers) layers × \(a.kvHeads) kv heads × "
                + "(\(a.headDim) key + \(a.headDim) value)")
    }

    /// The configuration from GGUF metadata or config.json. `qkvBias` nil: config.json's `attention_bias`
    /// (GGUF: none); an architecture that always has biases passes true.
    static func configuration(_ files: ModelFiles, ggufRope: RotaryEmbedding.Layout, qkvBias: Bool?) throws
        -> Configuration
    {
        switch files {
        case .gguf(let model):
            return try ggufConfiguration(model, rope: ggufRope, qkvBias: qkvBias ?? false)
        case .safetensors(_, let config):
            return try huggingFaceConfiguration(config, qkvBias: qkvBias ?? config.attentionBias)
        }
    }

    /// Refuses head shapes the attention cannot run (RoPE rotates pairs of dimensions).
    static func checkHeads(heads: Int, kvHeads: Int, headDim: Int, ropeDims: Int, source: String) throws {
        guard heads > 0, kvHeads > 0, heads % kvHeads == 0, headDim > 0, ropeDims > 0, ropeDims % 2 == 0,
            ropeDims <= headDim
        else {
            throw WhaleError(
                .invalidValue, file: source, field: "attention heads",
                "\(heads) heads, \(kvHeads) kv heads, head width \(headDim), rope width \(ropeDims): the heads must "
                    + "divide evenly and the rope width must be even and at most the head width",
                hint: "the model's configuration is inconsistent; check head_dim / hidden_size / num_attention_heads")
        }
    }

    /// The model: this configuration's layers over the checkpoint's tensors.
    static func build(_ configuration: Configuration, files: ModelFiles, options: LoadOptions) throws
        -> TransformerDecoder
    {
        var c = configuration
        if let precision = options.attentionPrecision { c.attention.precision = precision }
        try c.cacheLayout.check(headDim: c.attention.headDim, source: files.path)
        let names = names(files)
        let weights = WeightLoader(files)
        // Tied embeddings (no separate output matrix) also serve as the output head's products.
        let tied = !weights.has(names.output)
        let embedding = try weights.matrix(
            names.embedding, rows: c.vocabularySize, columns: c.hiddenSize, forProducts: tied)
        let a = c.attention
        let stage = try options.layerRange(count: c.layers, source: files.path)
        let layers: [any DecoderLayer] = try stage.map { i in
            func matrix(_ part: String, rows: Int, columns: Int) throws -> WeightMatrix {
                try weights.matrix(names.layer(i, part), rows: rows, columns: columns)
            }
            func vector(_ part: String, count: Int) throws -> [Float] {
                try weights.vector(names.layer(i, part), count: count)
            }
            func bias(_ part: String, _ count: Int) throws -> [Float]? {
                c.qkvBias ? try vector(part + "_bias", count: count) : nil
            }
            let attention = GroupedQueryAttention(
                query: try matrix("q", rows: a.queryWidth, columns: c.hiddenSize),
                key: try matrix("k", rows: a.keyWidth, columns: c.hiddenSize),
                value: try matrix("v", rows: a.keyWidth, columns: c.hiddenSize),
                output: try matrix("o", rows: c.hiddenSize, columns: a.queryWidth),
                queryBias: try bias("q", a.queryWidth), keyBias: try bias("k", a.keyWidth),
                valueBias: try bias("v", a.keyWidth), shape: a)
            let mlp = FeedForward(
                gate: try matrix("gate", rows: c.intermediateSize, columns: c.hiddenSize),
                up: try matrix("up", rows: c.intermediateSize, columns: c.hiddenSize),
                down: try matrix("down", rows: c.hiddenSize, columns: c.intermediateSize))
            return ResidualLayer(
                attentionNorm: try vector("attention_norm", count: c.hiddenSize), attention: attention,
                feedForwardNorm: try vector("ffn_norm", count: c.hiddenSize), feedForward: mlp,
                eps: c.rmsNormEps)
        }
        return TransformerDecoder(
            architecture: c.architecture, vocabularySize: c.vocabularySize, hiddenSize: c.hiddenSize,
            contextLength: c.contextLength, rmsNormEps: c.rmsNormEps, embedding: embedding, layers: layers,
            firstLayer: stage.lowerBound, finalNorm: try weights.vector(names.finalNorm, count: c.hiddenSize),
            output: tied ? embedding : try weights.matrix(names.output, rows: c.vocabularySize, columns: c.hiddenSize),
            cacheLayout: c.cacheLayout,
            rotated: .init(stream: 0, heads: a.kvHeads, headDim: a.headDim, rope: a.rope),
            files: files, owned: weights.owned)
    }

    /// Checkpoint tensor names, GGUF (llama.cpp) and Hugging Face, verbatim.
    static let ggufNames = TensorNames(
        embedding: "token_embd.weight", finalNorm: "output_norm.weight", output: "output.weight", layerPrefix: "blk.",
        parts: [
            "attention_norm": "attn_norm.weight", "q": "attn_q.weight", "k": "attn_k.weight", "v": "attn_v.weight",
            "q_bias": "attn_q.bias", "k_bias": "attn_k.bias", "v_bias": "attn_v.bias", "o": "attn_output.weight",
            "ffn_norm": "ffn_norm.weight", "gate": "ffn_gate.weight", "up": "ffn_up.weight", "down": "ffn_down.weight",
        ])

    static let huggingFaceNames = TensorNames(
        embedding: "model.embed_tokens.weight", finalNorm: "model.norm.weight", output: "lm_head.weight",
        layerPrefix: "model.layers.",
        parts: [
            "attention_norm": "input_layernorm.weight", "q": "self_attn.q_proj.weight",
            "k": "self_attn.k_proj.weight", "v": "self_attn.v_proj.weight", "q_bias": "self_attn.q_proj.bias",
            "k_bias": "self_attn.k_proj.bias", "v_bias": "self_attn.v_proj.bias", "o": "self_attn.o_proj.weight",
            "ffn_norm": "post_attention_layernorm.weight", "gate": "mlp.gate_proj.weight",
            "up": "mlp.up_proj.weight", "down": "mlp.down_proj.weight",
        ])

    /// From llama.cpp's `ARCH.*` keys (ARCH = `general.architecture`).
    static func ggufConfiguration(_ model: GGUFModel, rope layout: RotaryEmbedding.Layout, qkvBias: Bool) throws
        -> Configuration
    {
        let arch = model.metadata["general.architecture"]?.string ?? "llama"
        let keys = GGUFKeys(model: model, architecture: arch)
        let hidden = try keys.int("embedding_length")
        let heads = try keys.int("attention.head_count")
        let kvHeads = try keys.int("attention.head_count_kv", default: heads)
        let headDim = try keys.int("attention.key_length", default: hidden / heads)
        let ropeDims = try keys.int("rope.dimension_count", default: headDim)
        try checkHeads(heads: heads, kvHeads: kvHeads, headDim: headDim, ropeDims: ropeDims, source: model.path)
        let base = keys.double("rope.freq_base") ?? 10000
        var frequencyScale: Float = 1
        if let scaling = keys.string("rope.scaling.type"), scaling != "none" {
            guard scaling == "linear", let factor = keys.double("rope.scaling.factor") else {
                throw WhaleError(
                    .invalidValue, file: model.path, field: "\(arch).rope.scaling.type",
                    "RoPE scaling \"\(scaling)\" is not supported for dense models yet", hint: "supported: linear")
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
            architecture: arch, vocabularySize: try keys.vocabularySize(), hiddenSize: hidden,
            intermediateSize: try keys.int("feed_forward_length"), layers: try keys.int("block_count"),
            contextLength: try keys.int("context_length", default: 2048),
            rmsNormEps: Float(keys.double("attention.layer_norm_rms_epsilon") ?? 1e-5), qkvBias: qkvBias,
            // f16: llama.cpp's default cache.
            attention: .init(heads: heads, kvHeads: kvHeads, headDim: headDim, rope: rope, precision: .f16))
    }

    /// From config.json (transformers' semantics).
    static func huggingFaceConfiguration(_ config: ModelConfig, qkvBias: Bool) throws -> Configuration {
        let headDim = config.headDim ?? config.hiddenSize / config.numAttentionHeads
        try checkHeads(
            heads: config.numAttentionHeads, kvHeads: config.numKeyValueHeads, headDim: headDim, ropeDims: headDim,
            source: config.fields.file ?? "config.json")
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
                    "RoPE scaling \"\(scaling.type)\" is not supported for \(config.modelType) yet",
                    hint: "supported: default, linear, llama3")
            }
        }
        return Configuration(
            architecture: config.modelType, vocabularySize: config.vocabSize, hiddenSize: config.hiddenSize,
            intermediateSize: config.intermediateSize, layers: config.numHiddenLayers,
            contextLength: config.maxPositionEmbeddings, rmsNormEps: Float(config.rmsNormEps), qkvBias: qkvBias,
            // f32: transformers' math.
            attention: .init(
                heads: config.numAttentionHeads, kvHeads: config.numKeyValueHeads, headDim: headDim,
                rope: RotaryEmbedding(dimensions: headDim, layout: .halves, inverseFrequencies: frequencies),
                precision: .f32))
    }
}
