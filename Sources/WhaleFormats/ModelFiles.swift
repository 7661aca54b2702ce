import WhaleCore

/// A model as the user points at it: a GGUF file (the first shard of a split set) or a Hugging Face
/// directory holding `config.json` and safetensors.
public enum ModelFiles: Sendable {
    case gguf(GGUFModel)
    case safetensors(SafetensorsModel, ModelConfig)

    /// Opens the model at `path`, deciding the format from what is there.
    public static func open(_ path: String) throws -> ModelFiles {
        if FileSystem.isDirectory(path) {
            let config = try ModelConfig.load(directory: path)
            let blockSize = config.quantization?.weightBlockSize?.first ?? 128
            return .safetensors(try SafetensorsModel(directory: path, scaleBlockSize: blockSize), config)
        }
        guard FileSystem.isFile(path) else {
            throw WhaleError(
                .fileNotFound, file: path, "no such file or directory",
                hint: "pass a .gguf file or a model directory with config.json")
        }
        if path.hasSuffix(".safetensors") {
            throw WhaleError(
                .invalidArgument, file: path, "a lone .safetensors file has no model configuration",
                hint: "pass the directory that holds it together with config.json")
        }
        return .gguf(try GGUFModel(path: path))
    }

    /// The path the model was opened from: the GGUF file (first shard) or the directory.
    public var path: String {
        switch self {
        case .gguf(let model): model.path
        case .safetensors(let model, _): model.directory
        }
    }

    public var tensors: [TensorInfo] {
        switch self {
        case .gguf(let model): model.tensors
        case .safetensors(let model, _): model.tensors
        }
    }

    /// The bytes of `tensor`, in place.
    public func data(of tensor: TensorInfo) -> UnsafeRawBufferPointer {
        switch self {
        case .gguf(let model): model.data(of: tensor)
        case .safetensors(let model, _): model.data(of: tensor)
        }
    }

    /// Releases the resident pages of `range`, a part of `tensor`'s data, after it has been copied into a
    /// layout of its own (`MappedFile.releasePages`).
    public func releasePages(_ range: UnsafeRawBufferPointer, of tensor: TensorInfo) {
        switch self {
        case .gguf(let model): model.releasePages(range, of: tensor)
        case .safetensors(let model, _): model.releasePages(range, of: tensor)
        }
    }
}
