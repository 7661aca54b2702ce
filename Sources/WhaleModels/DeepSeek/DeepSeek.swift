import WhaleCore
import WhaleFormats
import WhaleKernels

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

// DeepSeek V2 / V2-Lite / V3 / V3.1 / R1 (and Moonlight-style models): multi-head latent attention with a
// compressed cache, DeepSeekMoE feed-forward layers, and V3's multi-token-prediction (MTP) module. Everything
// DeepSeek-specific lives in this folder, read top to bottom:
//
//   DeepSeek.swift              configuration: config.json keys and GGUF `deepseek2.*` keys → Configuration
//   LatentAttention.swift       MLA (absorbed and expanded forms) over the latent cache
//   MixtureOfExperts.swift      the V2 / V3 routers and the MoE layer
//   MultiTokenPrediction.swift  the MTP draft module
//   DeepSeekWeights.swift       the weight map: tensor names, FP8 block scales, the fused kv_b split, stacked
//                               experts, the MTP layer
//
// References: transformers 5.23 modeling_deepseek_v2.py / modeling_deepseek_v3.py (eager, float32), whose
// semantics — traps included — docs/DEEPSEEK.md writes down (cited below by section), and llama.cpp's
// `llm_build_deepseek2` and convert_hf_to_gguf.py for the GGUF layout (arch `deepseek2`).
//
//   h = embed(tokens)
//   for each layer l:                               // ResidualLayer
//     h += MLA(rmsnorm(h) · attn_norm)              // cache: rmsnorm(c_kv) and rope(k_rope) per token
//     h += FFN_l(rmsnorm(h) · ffn_norm)             // dense SwiGLU for the first layers, then DeepSeekMoE
//   logits = rmsnorm(h) · output_norm · Woutᵀ       // TransformerDecoder

enum DeepSeek: Architecture {
    /// The shape of a DeepSeek V2/V3 model.
    struct Configuration: Sendable {
        var architecture: String
        var vocabularySize: Int
        var hiddenSize: Int
        /// The dense layers' MLP width.
        var intermediateSize: Int
        var layers: Int
        var queryLoraRank: Int?
        var contextLength: Int
        var rmsNormEps: Float
        var attention: LatentAttention.Shape
        /// Nil for a model without routed experts.
        var routing: ExpertRouter?
        var expertSize: Int
        var sharedExperts: Int
        /// Layers before this one are dense; after it every `moeLayerFrequency`-th layer is MoE (§1).
        var leadingDenseLayers: Int
        var moeLayerFrequency: Int
        /// MTP modules stored after the main layers (0 when the checkpoint has none).
        var nextTokenLayers: Int

        func isMixtureOfExperts(_ layer: Int) -> Bool {
            routing != nil && layer >= leadingDenseLayers && layer % moeLayerFrequency == 0
        }

        var cacheLayout: KVCache.Layout {
            .latent(rank: attention.latentRank, ropeKeyWidth: attention.ropeDim, element: .init(attention.precision))
        }
        /// Context shift turns the rope keys (one head of `ropeDim`) back.
        var rotatedPart: KVCache.RotatedPart {
            .init(stream: 1, heads: 1, headDim: attention.ropeDim, rope: attention.rope)
        }
    }

    /// config.json's DeepSeek keys (§2), with transformers' defaults.
    struct Hyperparameters: Sendable, Equatable {
        var qLoraRank: Int?
        var kvLoraRank: Int
        var qkNopeHeadDim: Int
        var qkRopeHeadDim: Int
        var vHeadDim: Int
        var moeIntermediateSize: Int
        var nRoutedExperts: Int?
        var nSharedExperts: Int?
        var numExpertsPerTok: Int?
        var firstKDenseReplace: Int
        var moeLayerFreq: Int
        var scoringFunc: String
        var topkMethod: String
        var nGroup: Int?
        var topkGroup: Int?
        var normTopkProb: Bool
        var routedScalingFactor: Double
        var numNextnPredictLayers: Int
        /// V3: rope pairs adjacent dims (true, the default) or rotate-half (false). V2 is always interleaved.
        var ropeInterleave: Bool

        init(_ config: ModelConfig) throws {
            let json = config.fields
            let isV3 = config.modelType == "deepseek_v3"
            qLoraRank = try json.int("q_lora_rank")
            kvLoraRank = try json.required("kv_lora_rank", json.int)
            qkNopeHeadDim = try json.required("qk_nope_head_dim", json.int)
            qkRopeHeadDim = try json.required("qk_rope_head_dim", json.int)
            vHeadDim = try json.required("v_head_dim", json.int)
            moeIntermediateSize = try json.required("moe_intermediate_size", json.int)
            nRoutedExperts = try json.int("n_routed_experts")
            nSharedExperts = try json.int("n_shared_experts")
            numExpertsPerTok = try json.int("num_experts_per_tok")
            firstKDenseReplace = try json.int("first_k_dense_replace") ?? 0
            moeLayerFreq = try json.int("moe_layer_freq") ?? 1
            scoringFunc = try json.string("scoring_func") ?? (isV3 ? "sigmoid" : "softmax")
            topkMethod = try json.string("topk_method") ?? (isV3 ? "noaux_tc" : "greedy")
            nGroup = try json.int("n_group")
            topkGroup = try json.int("topk_group")
            normTopkProb = try json.bool("norm_topk_prob") ?? isV3
            routedScalingFactor = try json.double("routed_scaling_factor") ?? 1
            numNextnPredictLayers = try json.int("num_nextn_predict_layers") ?? 0
            ropeInterleave = isV3 ? (try json.bool("rope_interleave") ?? true) : true
        }
    }

    static func load(_ files: ModelFiles, options: LoadOptions) throws -> TransformerDecoder {
        var c = try configuration(files)
        if let precision = options.attentionPrecision { c.attention.precision = precision }
        // MLA reads whole latent and rope-key rows: the streams' widths are what Q8_0 must divide.
        try c.cacheLayout.check(headDim: c.attention.ropeDim, source: files.path)
        c.attention.form = options.latentAttention
        return try DeepSeekWeights(files, c).decoder(
            layers: try options.layerRange(count: c.layers, source: files.path), stage: options.layers != nil)
    }

    static func layout(_ files: ModelFiles) throws -> (layers: Int, names: TensorNames) {
        let c = try configuration(files)
        return (c.layers, DeepSeekWeights.names(files))
    }

    static func cache(_ files: ModelFiles, precision: AttentionPrecision?) throws -> ModelInspection.CacheDescription {
        var c = try configuration(files)
        if let precision { c.attention.precision = precision }
        try c.cacheLayout.check(headDim: c.attention.ropeDim, source: files.path)
        let a = c.attention
        return ModelInspection.CacheDescription(
            bytesPerToken: c.layers * c.cacheLayout.bytesPerTokenAndLayer,
            layout:
                "\(c.cacheLayout.element.rawValue): \(c.layers) layers × (\(a.latentRank) latent + \(a.ropeDim) rope key), "
                + "MLA compressed")
    }

    static func configuration(_ files: ModelFiles) throws -> Configuration {
        switch files {
        case .gguf(let model): try ggufConfiguration(model)
        case .safetensors(let model, let config): try huggingFaceConfiguration(config, source: model.directory)
        }
    }

    /// From config.json, with transformers' semantics (§2–§6).
    static func huggingFaceConfiguration(_ config: ModelConfig, source: String) throws -> Configuration {
        let d = try Hyperparameters(config)
        let isV3 = config.modelType == "deepseek_v3"
        let dr = d.qkRopeHeadDim
        try checkAttention(
            heads: config.numAttentionHeads, nope: d.qkNopeHeadDim, rope: dr, value: d.vHeadDim, rank: d.kvLoraRank,
            source: source)
        // transformers: qk_head_dim ** -0.5, times mscale(factor, mscale_all_dim)² under YaRN (Python floats).
        var softmaxScale = pow(Double(d.qkNopeHeadDim + dr), -0.5)
        var frequencies = RotaryEmbedding.standardFrequencies(dimensions: dr, base: config.ropeTheta)
        var attentionFactor = 1.0
        if let scaling = config.ropeScaling, scaling.type != "default" {
            guard scaling.type == "yarn" else {
                throw WhaleError(
                    .invalidValue, file: source, field: "rope_scaling.type",
                    "RoPE scaling \"\(scaling.type)\" is not supported for DeepSeek models", hint: "supported: yarn")
            }
            guard let original = scaling.originalMaxPositionEmbeddings, original > 0 else {
                throw WhaleError(
                    .missingKey, file: source, field: "rope_scaling.original_max_position_embeddings",
                    "YaRN needs the original context length")
            }
            // [YARN_MSCALE] §5: the attention factor scales cos/sin; mscale_all_dim² goes into the softmax scale.
            let factor = scaling.factor ?? Double(config.maxPositionEmbeddings) / Double(original)
            frequencies = RotaryEmbedding.yarnFrequencies(
                dimensions: dr, base: config.ropeTheta, factor: factor, originalContext: Double(original),
                betaFast: scaling.betaFast ?? 32, betaSlow: scaling.betaSlow ?? 1)
            let mscale = scaling.mscale ?? 0
            let mscaleAllDim = scaling.mscaleAllDim ?? 0
            attentionFactor =
                mscale != 0 && mscaleAllDim != 0
                ? yarnMscale(factor, mscale) / yarnMscale(factor, mscaleAllDim) : yarnMscale(factor, 1)
            if mscaleAllDim != 0 { softmaxScale *= yarnMscale(factor, mscaleAllDim) * yarnMscale(factor, mscaleAllDim) }
        }
        var routing: ExpertRouter? = nil
        if let experts = d.nRoutedExperts, experts > 0 {
            let perToken = d.numExpertsPerTok ?? 1
            if isV3 {
                // §6a: DeepseekV3TopkRouter ignores scoring_func / topk_method: always sigmoid + bias + groups.
                routing = ExpertRouter(
                    scoring: .sigmoid, experts: experts, expertsPerToken: perToken, groups: d.nGroup ?? 1,
                    keptGroups: d.topkGroup ?? d.nGroup ?? 1, normalize: d.normTopkProb,
                    scale: Float(d.routedScalingFactor))
            } else {
                // §6b: DeepseekV2TopkRouter: always softmax, never renormalised.
                let grouped: Bool
                switch d.topkMethod {
                case "greedy": grouped = false
                case "group_limited_greedy": grouped = true
                default:
                    throw WhaleError(
                        .invalidValue, file: source, field: "topk_method",
                        "DeepSeek V2 routing \"\(d.topkMethod)\" is not supported",
                        hint: "supported: greedy, group_limited_greedy")
                }
                routing = ExpertRouter(
                    scoring: .softmax, experts: experts, expertsPerToken: perToken,
                    groups: grouped ? d.nGroup ?? 1 : 1, keptGroups: grouped ? d.topkGroup ?? 1 : 1, normalize: false,
                    scale: Float(d.routedScalingFactor))
            }
            try routing!.validate(source: source)
        }
        return Configuration(
            architecture: config.modelType, vocabularySize: config.vocabSize, hiddenSize: config.hiddenSize,
            intermediateSize: config.intermediateSize, layers: config.numHiddenLayers, queryLoraRank: d.qLoraRank,
            contextLength: config.maxPositionEmbeddings, rmsNormEps: Float(config.rmsNormEps),
            attention: LatentAttention.Shape(
                heads: config.numAttentionHeads, nopeDim: d.qkNopeHeadDim, ropeDim: dr, valueDim: d.vHeadDim,
                latentRank: d.kvLoraRank, latentNormEps: 1e-6,
                // §4: V2 always pairs adjacent dims; V3 unless rope_interleave is false.
                rope: RotaryEmbedding(
                    dimensions: dr, layout: isV3 && !d.ropeInterleave ? .halves : .interleaved,
                    inverseFrequencies: frequencies, scale: Float(attentionFactor)),
                softmaxScale: Float(softmaxScale), precision: .f32, form: .absorbed),
            routing: routing, expertSize: d.moeIntermediateSize, sharedExperts: d.nSharedExperts ?? 0,
            leadingDenseLayers: d.firstKDenseReplace, moeLayerFrequency: max(1, d.moeLayerFreq),
            nextTokenLayers: d.numNextnPredictLayers)
    }

    /// Refuses MLA shapes that cannot run (RoPE rotates pairs of dimensions).
    static func checkAttention(heads: Int, nope: Int, rope: Int, value: Int, rank: Int, source: String) throws {
        guard heads > 0, nope > 0, rope > 0, rope % 2 == 0, value > 0, rank > 0 else {
            throw WhaleError(
                .invalidValue, file: source, field: "attention",
                "\(heads) heads, no-rope width \(nope), rope width \(rope), value width \(value), latent rank \(rank): "
                    + "all must be positive and the rope width even",
                hint: "the model's configuration is inconsistent")
        }
    }

    /// YaRN's attention temperature: `0.1·m·ln(s) + 1` for scale factors above 1.
    static func yarnMscale(_ scale: Double, _ m: Double) -> Double { scale <= 1 ? 1 : 0.1 * m * log(scale) + 1 }

    /// From llama.cpp's `deepseek2.*` keys (§2).
    static func ggufConfiguration(_ model: GGUFModel) throws -> Configuration {
        let arch = "deepseek2"
        let keys = GGUFKeys(model: model, architecture: arch)
        let dr = try keys.int("rope.dimension_count")
        // Current converters write the MLA head widths as *_mla (key_length = kv_lora + dr then); older ones
        // wrote them as key_length / value_length.
        let keyLength = try keys.optionalInt("attention.key_length_mla") ?? keys.int("attention.key_length")
        let valueLength = try keys.optionalInt("attention.value_length_mla") ?? keys.int("attention.value_length")
        guard keyLength > dr else {
            throw WhaleError(
                .invalidValue, file: model.path, field: "\(arch).attention.key_length",
                "key width \(keyLength) is not larger than the rope width \(dr)")
        }
        try checkAttention(
            heads: try keys.int("attention.head_count"), nope: keyLength - dr, rope: dr, value: valueLength,
            rank: try keys.int("attention.kv_lora_rank"), source: model.path)
        var softmaxScale = pow(Double(keyLength), -0.5)
        let base = keys.double("rope.freq_base") ?? 10000
        var frequencies = RotaryEmbedding.standardFrequencies(dimensions: dr, base: base)
        if let type = keys.string("rope.scaling.type"), type != "none" {
            guard type == "yarn", let factor = keys.double("rope.scaling.factor"),
                let original = keys.optionalInt("rope.scaling.original_context_length")
            else {
                throw WhaleError(
                    .invalidValue, file: model.path, field: "\(arch).rope.scaling.type",
                    "RoPE scaling \"\(type)\" (with its factor and original context) is not supported for deepseek2",
                    hint: "supported: yarn")
            }
            frequencies = RotaryEmbedding.yarnFrequencies(
                dimensions: dr, base: base, factor: factor, originalContext: Double(original),
                betaFast: keys.double("rope.scaling.yarn_beta_fast") ?? 32,
                betaSlow: keys.double("rope.scaling.yarn_beta_slow") ?? 1)
            // [YARN_MSCALE] llama.cpp: kq_scale = (1 + yarn_log_multiplier·ln factor)² / √key_length; cos/sin
            // unscaled — the same product as transformers' (§5).
            let mscale = 1 + (keys.double("rope.scaling.yarn_log_multiplier") ?? 0) * log(factor)
            softmaxScale *= mscale * mscale
        }
        var routing: ExpertRouter? = nil
        let experts = keys.optionalInt("expert_count") ?? 0
        if experts > 0 {
            let gating = keys.optionalInt("expert_gating_func") ?? 1
            guard gating == 1 || gating == 2 else {
                throw WhaleError(
                    .invalidValue, file: model.path, field: "\(arch).expert_gating_func",
                    "expert gating function \(gating) is not supported", hint: "supported: 1 (softmax), 2 (sigmoid)")
            }
            let groups = keys.optionalInt("expert_group_count") ?? 1
            routing = ExpertRouter(
                scoring: gating == 2 ? .sigmoid : .softmax, experts: experts,
                expertsPerToken: try keys.int("expert_used_count"), groups: max(1, groups),
                keptGroups: keys.optionalInt("expert_group_used_count") ?? max(1, groups),
                normalize: keys.bool("expert_weights_norm") ?? false,
                scale: Float(keys.double("expert_weights_scale") ?? 1))
            try routing!.validate(source: model.path)
        }
        let eps = Float(keys.double("attention.layer_norm_rms_epsilon") ?? 1e-6)
        let qLora = keys.optionalInt("attention.q_lora_rank").flatMap { $0 > 0 ? $0 : nil }
        let nextTokenLayers = keys.optionalInt("nextn_predict_layers") ?? 0
        return Configuration(
            architecture: arch, vocabularySize: try keys.vocabularySize(), hiddenSize: try keys.int("embedding_length"),
            intermediateSize: try keys.int("feed_forward_length"),
            // block_count includes the MTP layers.
            layers: try keys.int("block_count") - nextTokenLayers, queryLoraRank: qLora,
            contextLength: try keys.int("context_length", default: 4096), rmsNormEps: eps,
            attention: LatentAttention.Shape(
                heads: try keys.int("attention.head_count"), nopeDim: keyLength - dr, ropeDim: dr,
                valueDim: valueLength,
                latentRank: try keys.int("attention.kv_lora_rank"), latentNormEps: eps,
                rope: RotaryEmbedding(dimensions: dr, layout: .interleaved, inverseFrequencies: frequencies),
                softmaxScale: Float(softmaxScale), precision: .f16, form: .absorbed),
            routing: routing, expertSize: experts > 0 ? try keys.int("expert_feed_forward_length") : 0,
            sharedExperts: keys.optionalInt("expert_shared_count") ?? 0,
            leadingDenseLayers: keys.optionalInt("leading_dense_block_count") ?? 0, moeLayerFrequency: 1,
            nextTokenLayers: nextTokenLayers)
    }
}

extension RotaryEmbedding {
    /// YaRN's frequencies (§5; transformers' `_compute_yarn_parameters`, float32 like it; llama.cpp's
    /// `ggml_rope_yarn_corr_dims` ramp is the same): fast-rotating dims keep their frequency, slow ones are
    /// divided by `factor`, with a linear ramp between the correction dims of `betaFast` and `betaSlow`.
    static func yarnFrequencies(
        dimensions d: Int, base: Double, factor: Double, originalContext: Double, betaFast: Double, betaSlow: Double
    ) -> [Float] {
        func correctionDim(_ rotations: Double) -> Double {
            Double(d) * log(originalContext / (rotations * 2 * Double.pi)) / (2 * log(base))
        }
        let low = max(floor(correctionDim(betaFast)), 0)
        var high = min(ceil(correctionDim(betaSlow)), Double(d - 1))
        if low == high { high += 0.001 }
        return (0..<(d / 2)).map { i in
            let wavelengthFactor = powf(Float(base), Float(2 * i) / Float(d))
            let ramp = min(max((Float(i) - Float(low)) / Float(high - low), 0), 1)
            let extrapolation = 1 - ramp
            return 1 / (Float(factor) * wavelengthFactor) * (1 - extrapolation) + 1 / wavelengthFactor * extrapolation
        }
    }
}
