import WhaleCore
import WhaleFormats

/// Architecture name → loader: one line per architecture.
public enum ModelRegistry {
    static let loaders: [String: @Sendable (ModelFiles, LoadOptions) throws -> any LanguageModel] = [
        "llama": { try DenseDecoder.llama($0, options: $1) },
        "qwen2": { try DenseDecoder.qwen2($0, options: $1) },
        "deepseek_v2": { try DeepSeekDecoder.load($0, options: $1) },
        "deepseek_v3": { try DeepSeekDecoder.load($0, options: $1) },
        "deepseek2": { try DeepSeekDecoder.load($0, options: $1) },
    ]

    /// The architectures `load` can run.
    public static var architectures: [String] { loaders.keys.sorted() }

    /// Loads the model at `path` (a .gguf file or a model directory).
    public static func load(_ path: String, options: LoadOptions = LoadOptions()) throws -> any LanguageModel {
        let files = try ModelFiles.open(path)
        let architecture: String
        switch files {
        case .gguf(let model):
            guard let name = model.metadata["general.architecture"]?.string else {
                throw WhaleError(
                    .missingKey, file: path, field: "general.architecture", "the GGUF file names no architecture")
            }
            architecture = name
        case .safetensors(_, let config):
            architecture = config.architecture.modelType
        }
        guard let loader = loaders[architecture] else {
            throw WhaleError(
                .unsupportedArchitecture, file: path, field: "architecture",
                "architecture \"\(architecture)\" cannot be run yet",
                hint: "supported: \(architectures.joined(separator: ", "))")
        }
        return try loader(files, options)
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
