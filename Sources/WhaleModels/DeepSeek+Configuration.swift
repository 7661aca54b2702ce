import WhaleCore
import WhaleFormats
import WhaleKernels

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

// Reading a DeepSeek model's shape from config.json (transformers' semantics) or GGUF metadata (llama.cpp's
// `deepseek2.*` keys).

extension DeepSeekDecoder {
    static func load(_ files: ModelFiles, options: LoadOptions) throws -> DeepSeekDecoder {
        let configuration: Configuration
        switch files {
        case .gguf(let model): configuration = try ggufConfiguration(model)
        case .safetensors(let model, let config):
            configuration = try huggingFaceConfiguration(config, source: model.directory)
        }
        return try DeepSeekDecoder(configuration: configuration, files: files, options: options)
    }

    static func huggingFaceConfiguration(_ config: ModelConfig, source: String) throws -> Configuration {
        guard let d = config.deepseek else {
            throw WhaleError(.missingKey, file: source, field: "kv_lora_rank", "not a DeepSeek V2/V3 configuration")
        }
        let isV3 = config.architecture == .deepseekV3
        let dr = d.qkRopeHeadDim
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
                // DeepseekV3TopkRouter ignores scoring_func / topk_method: always sigmoid + bias + groups.
                routing = ExpertRouter(
                    scoring: .sigmoid, experts: experts, expertsPerToken: perToken, groups: d.nGroup ?? 1,
                    keptGroups: d.topkGroup ?? d.nGroup ?? 1, normalize: d.normTopkProb,
                    scale: Float(d.routedScalingFactor))
            } else {
                // DeepseekV2TopkRouter: always softmax, never renormalised.
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
            architecture: config.architecture.modelType, vocabularySize: config.vocabSize,
            hiddenSize: config.hiddenSize, intermediateSize: config.intermediateSize, layers: config.numHiddenLayers,
            queryLoraRank: d.qLoraRank, contextLength: config.maxPositionEmbeddings,
            rmsNormEps: Float(config.rmsNormEps),
            attention: LatentAttentionShape(
                heads: config.numAttentionHeads, nopeDim: d.qkNopeHeadDim, ropeDim: dr, valueDim: d.vHeadDim,
                latentRank: d.kvLoraRank, latentNormEps: 1e-6,
                rope: RotaryEmbedding(
                    dimensions: dr, layout: isV3 && !d.ropeInterleave ? .halves : .interleaved,
                    inverseFrequencies: frequencies, scale: Float(attentionFactor)),
                softmaxScale: Float(softmaxScale), precision: .f32, form: .absorbed),
            routing: routing, expertSize: d.moeIntermediateSize, sharedExperts: d.nSharedExperts ?? 0,
            leadingDenseLayers: d.firstKDenseReplace, moeLayerFrequency: max(1, d.moeLayerFreq),
            nextTokenLayers: d.numNextnPredictLayers)
    }

    /// YaRN's attention temperature: `0.1·m·ln(s) + 1` for scale factors above 1.
    static func yarnMscale(_ scale: Double, _ m: Double) -> Double { scale <= 1 ? 1 : 0.1 * m * log(scale) + 1 }

    static func ggufConfiguration(_ model: GGUFModel) throws -> Configuration {
        let arch = "deepseek2"
        let metadata = model.metadata
        func optional(_ key: String) -> Int? { metadata["\(arch).\(key)"]?.int }
        func int(_ key: String, default value: Int? = nil) throws -> Int {
            if let found = optional(key), found > 0 { return found }
            if let value { return value }
            throw WhaleError(.missingKey, file: model.path, field: "\(arch).\(key)", "required metadata is missing")
        }
        func double(_ key: String) -> Double? { metadata["\(arch).\(key)"]?.double }
        guard let embedding = model.tensor(named: "token_embd.weight"), embedding.shape.count == 2 else {
            throw WhaleError(.missingTensor, file: model.path, field: "token_embd.weight", "the model has no embedding")
        }
        let dr = try int("rope.dimension_count")
        // Current converters write the MLA head widths as *_mla (key_length = kv_lora + dr then); older ones
        // wrote them as key_length / value_length.
        let keyLength = try optional("attention.key_length_mla") ?? int("attention.key_length")
        let valueLength = try optional("attention.value_length_mla") ?? int("attention.value_length")
        guard keyLength > dr else {
            throw WhaleError(
                .invalidValue, file: model.path, field: "\(arch).attention.key_length",
                "key width \(keyLength) is not larger than the rope width \(dr)")
        }
        var softmaxScale = pow(Double(keyLength), -0.5)
        let base = double("rope.freq_base") ?? 10000
        var frequencies = RotaryEmbedding.standardFrequencies(dimensions: dr, base: base)
        if let type = metadata["\(arch).rope.scaling.type"]?.string, type != "none" {
            guard type == "yarn", let factor = double("rope.scaling.factor"),
                let original = optional("rope.scaling.original_context_length")
            else {
                throw WhaleError(
                    .invalidValue, file: model.path, field: "\(arch).rope.scaling.type",
                    "RoPE scaling \"\(type)\" (with its factor and original context) is not supported for deepseek2",
                    hint: "supported: yarn")
            }
            frequencies = RotaryEmbedding.yarnFrequencies(
                dimensions: dr, base: base, factor: factor, originalContext: Double(original),
                betaFast: double("rope.scaling.yarn_beta_fast") ?? 32,
                betaSlow: double("rope.scaling.yarn_beta_slow") ?? 1)
            // llama.cpp: kq_scale = (1 + yarn_log_multiplier·ln factor)² / √key_length; cos/sin unscaled.
            let mscale = 1 + (double("rope.scaling.yarn_log_multiplier") ?? 0) * log(factor)
            softmaxScale *= mscale * mscale
        }
        var routing: ExpertRouter? = nil
        let experts = optional("expert_count") ?? 0
        if experts > 0 {
            let gating = optional("expert_gating_func") ?? 1
            guard gating == 1 || gating == 2 else {
                throw WhaleError(
                    .invalidValue, file: model.path, field: "\(arch).expert_gating_func",
                    "expert gating function \(gating) is not supported", hint: "supported: 1 (softmax), 2 (sigmoid)")
            }
            let groups = optional("expert_group_count") ?? 1
            routing = ExpertRouter(
                scoring: gating == 2 ? .sigmoid : .softmax, experts: experts,
                expertsPerToken: try int("expert_used_count"), groups: max(1, groups),
                keptGroups: optional("expert_group_used_count") ?? max(1, groups),
                normalize: metadata["\(arch).expert_weights_norm"]?.bool ?? false,
                scale: Float(double("expert_weights_scale") ?? 1))
            try routing!.validate(source: model.path)
        }
        let eps = Float(double("attention.layer_norm_rms_epsilon") ?? 1e-6)
        let qLora = optional("attention.q_lora_rank").flatMap { $0 > 0 ? $0 : nil }
        return Configuration(
            architecture: arch, vocabularySize: embedding.shape[0], hiddenSize: try int("embedding_length"),
            intermediateSize: try int("feed_forward_length"),
            layers: try int("block_count") - (optional("nextn_predict_layers") ?? 0), queryLoraRank: qLora,
            contextLength: try int("context_length", default: 4096), rmsNormEps: eps,
            attention: LatentAttentionShape(
                heads: try int("attention.head_count"), nopeDim: keyLength - dr, ropeDim: dr, valueDim: valueLength,
                latentRank: try int("attention.kv_lora_rank"), latentNormEps: eps,
                rope: RotaryEmbedding(dimensions: dr, layout: .interleaved, inverseFrequencies: frequencies),
                softmaxScale: Float(softmaxScale), precision: .f16, form: .absorbed),
            routing: routing, expertSize: experts > 0 ? try int("expert_feed_forward_length") : 0,
            sharedExperts: optional("expert_shared_count") ?? 0,
            leadingDenseLayers: optional("leading_dense_block_count") ?? 0, moeLayerFrequency: 1,
            nextTokenLayers: optional("nextn_predict_layers") ?? 0)
    }
}

extension ExpertRouter {
    func validate(source: String) throws {
        guard expertsPerToken >= 1, expertsPerToken <= experts, groups >= 1, experts % groups == 0,
            keptGroups >= 1, keptGroups <= groups, expertsPerToken <= keptGroups * (experts / groups)
        else {
            throw WhaleError(
                .invalidValue, file: source, field: "experts",
                "inconsistent routing: \(experts) experts, \(expertsPerToken) per token, \(groups) groups, "
                    + "\(keptGroups) kept")
        }
    }
}

extension RotaryEmbedding {
    /// YaRN's frequencies (transformers' `_compute_yarn_parameters`, float32 like it; llama.cpp's
    /// `ggml_rope_yarn_corr_dims` ramp is the same): fast-rotating dims keep their frequency, slow ones are
    /// divided by `factor`, with a linear ramp between the correction dims of `betaFast` and `betaSlow`.
    public static func yarnFrequencies(
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
