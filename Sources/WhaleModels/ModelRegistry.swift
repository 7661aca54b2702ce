import WhaleCore
import WhaleFormats
import WhaleKernels

/// One architecture's entry points: its folder or file supplies both from the model files alone.
protocol Architecture {
    /// The model, its weights read in place where possible.
    static func load(_ files: ModelFiles, options: LoadOptions) throws -> TransformerDecoder
    /// What its cache holds per token (for `whale inspect`), from the configuration alone.
    static func cache(_ files: ModelFiles) throws -> ModelInspection.CacheDescription
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
        try architecture(of: files).load(files, options: options)
    }

    /// What the cache of the architecture that runs `files` holds per token; nil when no architecture can
    /// run them (`whale inspect` still describes such files).
    public static func cacheDescription(_ files: ModelFiles) -> ModelInspection.CacheDescription? {
        // Descriptive only: files whose configuration an architecture cannot read get no cache line.
        try? architecture(of: files).cache(files)
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

    public init(attentionPrecision: AttentionPrecision? = nil, latentAttention: LatentAttentionForm = .absorbed) {
        self.attentionPrecision = attentionPrecision
        self.latentAttention = latentAttention
    }
}
