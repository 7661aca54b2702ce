import WhaleCore

/// The keys of a Hugging Face `config.json` (+ `generation_config.json`'s token ids) that every decoder-only
/// transformer shares, typed; an architecture reads its own keys from `fields` (its weight map and
/// configuration live in WhaleModels, one place per architecture).
///
/// Keys keep their Hugging Face names in the decoder below so each field can be traced to the file.
/// Optional fields are nil when the file leaves them out; defaults are those transformers applies.
public struct ModelConfig: Sendable {
    public struct RopeScaling: Sendable, Equatable {
        /// `rope_type` (or legacy `type`): "linear", "dynamic", "yarn", "llama3", "default", …
        public var type: String
        public var factor: Double?
        public var originalMaxPositionEmbeddings: Int?
        public var betaFast: Double?
        public var betaSlow: Double?
        public var mscale: Double?
        public var mscaleAllDim: Double?
        public var lowFreqFactor: Double?
        public var highFreqFactor: Double?
    }

    /// `quantization_config` of an FP8 checkpoint.
    public struct Quantization: Sendable, Equatable {
        public var method: String
        public var format: String?
        public var weightBlockSize: [Int]?
    }

    /// `model_type`, as written (which architectures can run is the model registry's answer).
    public var modelType: String
    /// The whole `config.json`, for the keys only one architecture has.
    public var fields: JSONFields
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int
    public var headDim: Int?
    public var maxPositionEmbeddings: Int
    public var rmsNormEps: Double
    public var ropeTheta: Double
    public var ropeScaling: RopeScaling?
    public var tieWordEmbeddings: Bool
    /// `attention_bias` (an architecture whose projections always have biases ignores it).
    public var attentionBias: Bool
    public var bosTokenId: Int?
    public var eosTokenIds: [Int]
    public var quantization: Quantization?
    /// Reads `config.json` and, if present, `generation_config.json` from `directory`.
    public static func load(directory: String) throws -> ModelConfig {
        let configPath = FileSystem.join(directory, "config.json")
        guard FileSystem.isFile(configPath) else {
            throw WhaleError(
                .fileNotFound, file: configPath, "the model directory has no config.json",
                hint: "download the model's config.json next to its safetensors files")
        }
        var config = try ModelConfig(fields: FileSystem.readJSONObject(configPath))
        let generationPath = FileSystem.join(directory, "generation_config.json")
        if FileSystem.isFile(generationPath) {
            try config.applyGeneration(FileSystem.readJSONObject(generationPath))
        }
        return config
    }

    /// Decodes a parsed `config.json`.
    public init(fields json: JSONFields) throws {
        fields = json
        modelType = try json.required("model_type", json.string)
        vocabSize = try json.required("vocab_size", json.int)
        hiddenSize = try json.required("hidden_size", json.int)
        intermediateSize = try json.required("intermediate_size", json.int)
        numHiddenLayers = try json.required("num_hidden_layers", json.int)
        numAttentionHeads = try json.required("num_attention_heads", json.int)
        numKeyValueHeads = try json.int("num_key_value_heads") ?? numAttentionHeads
        headDim = try json.int("head_dim")
        maxPositionEmbeddings = try json.required("max_position_embeddings", json.int)
        rmsNormEps = try json.double("rms_norm_eps") ?? 1e-6
        ropeTheta = try json.double("rope_theta") ?? 10000
        tieWordEmbeddings = try json.bool("tie_word_embeddings") ?? false
        attentionBias = try json.bool("attention_bias") ?? false
        bosTokenId = try json.int("bos_token_id")
        eosTokenIds = try json.ints("eos_token_id") ?? []

        // transformers ≥ 5 writes `rope_parameters` (rope_theta + rope_type + scaling fields) instead of
        // `rope_theta` and `rope_scaling`.
        let ropeParameters = try json.object("rope_parameters")
        if let theta = try ropeParameters?.double("rope_theta") { ropeTheta = theta }
        let scalingFields: JSONFields?
        if let parameters = ropeParameters, let type = try parameters.string("rope_type"), type != "default" {
            scalingFields = parameters
        } else {
            scalingFields = try json.object("rope_scaling")
        }
        if let scaling = scalingFields {
            guard let type = try scaling.string("rope_type") ?? scaling.string("type") else {
                throw WhaleError(
                    .missingKey, file: json.file, field: "rope_scaling.rope_type", "rope scaling has no type")
            }
            ropeScaling = RopeScaling(
                type: type, factor: try scaling.double("factor"),
                originalMaxPositionEmbeddings: try scaling.int("original_max_position_embeddings"),
                betaFast: try scaling.double("beta_fast"), betaSlow: try scaling.double("beta_slow"),
                mscale: try scaling.double("mscale"), mscaleAllDim: try scaling.double("mscale_all_dim"),
                lowFreqFactor: try scaling.double("low_freq_factor"),
                highFreqFactor: try scaling.double("high_freq_factor"))
        }

        if let quant = try json.object("quantization_config") {
            var blockSize: [Int]? = nil
            if let value = quant.value("weight_block_size") {
                guard let sizes = value.array?.compactMap(\.integer), sizes.count == 2, sizes.allSatisfy({ $0 > 0 })
                else {
                    throw WhaleError(
                        .invalidValue, file: json.file, field: "quantization_config.weight_block_size",
                        "expected two positive integers")
                }
                blockSize = sizes
            }
            quantization = Quantization(
                method: try quant.required("quant_method", quant.string), format: try quant.string("fmt"),
                weightBlockSize: blockSize)
        }

        try validate(file: json.file)
    }

    private func validate(file: String?) throws {
        func positive(_ value: Int, _ key: String) throws {
            guard value > 0 else {
                throw WhaleError(.invalidValue, file: file, field: key, "must be positive, found \(value)")
            }
        }
        try positive(vocabSize, "vocab_size")
        try positive(hiddenSize, "hidden_size")
        try positive(numHiddenLayers, "num_hidden_layers")
        try positive(numAttentionHeads, "num_attention_heads")
        try positive(numKeyValueHeads, "num_key_value_heads")
        try positive(maxPositionEmbeddings, "max_position_embeddings")
        guard numAttentionHeads % numKeyValueHeads == 0 else {
            throw WhaleError(
                .invalidValue, file: file, field: "num_key_value_heads",
                "\(numKeyValueHeads) does not divide num_attention_heads \(numAttentionHeads)")
        }
    }

    /// generation_config.json's token ids override config.json's (its sampling values are not used: the
    /// command line's defaults are llama.cpp's).
    mutating func applyGeneration(_ json: JSONFields) throws {
        if let bos = try json.int("bos_token_id") { bosTokenId = bos }
        if let eos = try json.ints("eos_token_id") { eosTokenIds = eos }
    }
}
