import WhaleCore
import WhaleFormats
import WhaleKernels

/// One architecture's entry points: its folder or file supplies both from the model files alone.
protocol Architecture {
    /// The model, its weights read in place where possible.
    static func load(_ files: ModelFiles, options: LoadOptions) throws -> TransformerDecoder
    /// The number of decoder layers (without a draft module's) and the tensor names of this checkpoint's
    /// format, from the configuration alone: what a pipeline split needs before anything is loaded.
    static func layout(_ files: ModelFiles) throws -> (layers: Int, names: TensorNames)
    /// What its cache holds per token (for `whale inspect`) with `precision` (nil: the format's default),
    /// from the configuration alone.
    static func cache(_ files: ModelFiles, precision: AttentionPrecision?) throws -> ModelInspection.CacheDescription
}

/// Architecture name (GGUF `general.architecture` or config.json `model_type`) → implementation: one line
/// per architecture.
public enum ModelRegistry {
    static func architecture(named name: String) -> (any Architecture.Type)? {
        switch name {
        case "llama": Llama.self
        case "qwen2": Qwen2.self
        case "deepseek_v2", "deepseek_v3", "deepseek2": DeepSeek.self
        default: nil
        }
    }

    /// The architecture names `load` can run.
    public static let supported = ["deepseek2", "deepseek_v2", "deepseek_v3", "llama", "qwen2"]

    /// Loads the model at `path` (a .gguf file or a model directory).
    public static func load(_ path: String, options: LoadOptions = LoadOptions()) throws -> any LanguageModel {
        try load(ModelFiles.open(path), options: options)
    }

    /// Builds the model from files already opened (so the tokenizer can read the same mapping).
    public static func load(_ files: ModelFiles, options: LoadOptions = LoadOptions()) throws -> any LanguageModel {
        try loadStage(files, options: options)
    }

    /// The model in `files` as the decoder it is — all its layers, or with `options.layers` one stage of a
    /// pipeline (WhaleDistributed runs stages with `runStage`).
    public static func loadStage(_ files: ModelFiles, options: LoadOptions) throws -> TransformerDecoder {
        try architecture(of: files).load(files, options: options)
    }

    /// What the cache of the architecture that runs `files` holds per token with `precision` (nil: the
    /// format's default); nil when no architecture can run them (`whale inspect` still describes such
    /// files). Throws only when the model cannot have a cache of `precision` (`KVCache.Layout.check`).
    public static func cacheDescription(_ files: ModelFiles, precision: AttentionPrecision? = nil) throws
        -> ModelInspection.CacheDescription?
    {
        do {
            return try architecture(of: files).cache(files, precision: precision)
        } catch let error as WhaleError where error.field == KVCache.Layout.checkedField {
            throw error
        } catch {
            // Descriptive only: files whose configuration an architecture cannot read get no cache line.
            return nil
        }
    }

    /// The bytes of weights each decoder layer, the embedding and the output head read: how a model is
    /// split across the ranks of a pipeline (WhaleDistributed) before any of it is loaded.
    public static func weightBytes(_ files: ModelFiles) throws -> WeightBytes {
        let (layers, names) = try architecture(of: files).layout(files)
        var bytes = WeightBytes(layers: [Int](repeating: 0, count: layers), embedding: 0, head: 0)
        var output = 0
        for tensor in files.tensors {
            let name = tensor.name
            if name == names.embedding {
                bytes.embedding += tensor.byteCount
            } else if name == names.output {
                output += tensor.byteCount
            } else if name.hasPrefix(names.layerPrefix) {
                let index = name.dropFirst(names.layerPrefix.count).prefix { $0 != "." }
                // Layers past the decoder's (DeepSeek-V3's MTP module) are not loaded by a pipeline stage.
                if let layer = Int(index), layer >= 0, layer < layers { bytes.layers[layer] += tensor.byteCount }
            } else {
                bytes.head += tensor.byteCount  // the final norm and other small tensors
            }
        }
        // Tied embeddings: the head reads the embedding matrix whole.
        bytes.head += output > 0 ? output : bytes.embedding
        return bytes
    }

    static func architecture(of files: ModelFiles) throws -> any Architecture.Type {
        let name: String
        let field: String
        switch files {
        case .gguf(let model):
            guard let declared = model.metadata["general.architecture"]?.string else {
                throw WhaleError(
                    .missingKey, file: model.path, field: "general.architecture", "the GGUF file names no architecture")
            }
            (name, field) = (declared, "general.architecture")
        case .safetensors(_, let config):
            (name, field) = (config.modelType, "model_type")
        }
        guard let architecture = architecture(named: name) else {
            throw WhaleError(
                .unsupportedArchitecture, file: files.path, field: field, "architecture \"\(name)\" cannot be run yet",
                hint: "supported: \(supported.joined(separator: ", "))")
        }
        return architecture
    }
}

/// Choices that change how a model computes, with defaults that reproduce each format's reference.
public struct LoadOptions: Sendable {
    /// Attention rounding: nil picks the reference's — f16 for GGUF (llama.cpp's default cache type), f32 for
    /// safetensors (transformers).
    public var attentionPrecision: AttentionPrecision?
    /// DeepSeek's MLA: absorbed (the fast form, default) or expanded (the reference's form, for checks).
    public var latentAttention: LatentAttentionForm

    /// Only these decoder layers (a stage of a pipeline across processes, WhaleDistributed); nil: all. A
    /// stage keeps the embedding and output head as views of the mapped file — only the first stage reads
    /// the one, only the last the other — and has no draft module.
    public var layers: Range<Int>?

    public init(
        attentionPrecision: AttentionPrecision? = nil, latentAttention: LatentAttentionForm = .absorbed,
        layers: Range<Int>? = nil
    ) {
        self.attentionPrecision = attentionPrecision
        self.latentAttention = latentAttention
        self.layers = layers
    }

    /// The layers to load of a model with `count`, or an error when `layers` is not within them.
    func layerRange(count: Int, source: String) throws -> Range<Int> {
        guard let layers else { return 0..<count }
        guard layers.lowerBound >= 0, layers.upperBound <= count, !layers.isEmpty else {
            throw WhaleError(
                .invalidArgument, file: source, field: "layers",
                "layers \(layers.lowerBound)..<\(layers.upperBound) are not within the model's \(count)",
                hint: "give each rank at least one of layers 0..<\(count)")
        }
        return layers
    }
}

/// Bytes of weights per part of a model (`ModelRegistry.weightBytes`).
public struct WeightBytes: Sendable, Equatable {
    /// Per decoder layer.
    public var layers: [Int]
    /// The token embedding (the first stage reads only the rows of its tokens).
    public var embedding: Int
    /// The output head and final norm (the embedding again when tied).
    public var head: Int

    public init(layers: [Int], embedding: Int, head: Int) {
        self.layers = layers
        self.embedding = embedding
        self.head = head
    }
}
