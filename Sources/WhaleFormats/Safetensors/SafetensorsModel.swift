import WhaleCore

/// A Hugging Face model directory's weights: one `.safetensors` file or a sharded set listed by
/// `model.safetensors.index.json`, memory-mapped.
///
/// Block-scaled FP8 checkpoints store each FP8 (`F8_E4M3`) matrix `W.weight` with a float32
/// `W.weight_scale_inv` holding one scale per 128×128 block (`[ceil(rows/128), ceil(cols/128)]`); the
/// real weight is `fp8 × scale_inv` blockwise. Those pairs are recognised here (`blockScales`), their
/// shapes checked, so loaders never mistake a scale for a weight.
public final class SafetensorsModel: Sendable {
    public let directory: String
    public let files: [SafetensorsFile]
    /// All tensors of all files, sorted by name; `fileIndex` says which file holds each.
    public let tensors: [TensorInfo]
    private let tensorIndex: [String: Int]
    /// FP8 weight name → name of its `weight_scale_inv` tensor.
    public let blockScales: [String: String]
    /// Side of the square FP8 scale blocks (`quantization_config.weight_block_size`, 128 by default).
    public let scaleBlockSize: Int

    public init(directory: String, scaleBlockSize: Int = 128) throws {
        self.directory = directory
        self.scaleBlockSize = scaleBlockSize
        let indexPath = FileSystem.join(directory, "model.safetensors.index.json")
        var fileNames: [String]
        var weightMap: [String: String]? = nil
        if FileSystem.isFile(indexPath) {
            let index = try FileSystem.readJSONObject(indexPath)
            guard let map = try index.object("weight_map") else {
                throw WhaleError(.missingKey, file: indexPath, field: "weight_map", "the index has no weight_map")
            }
            var mapping: [String: String] = [:]
            for name in map.object.keys {
                guard let file = map.object[name]?.string else {
                    throw WhaleError(
                        .typeMismatch, file: indexPath, field: "weight_map.\(name)", "expected a file name")
                }
                guard !file.contains("/"), file != "..", file.hasSuffix(".safetensors") else {
                    throw WhaleError(
                        .invalidValue, file: indexPath, field: "weight_map.\(name)",
                        "\"\(file)\" is not a .safetensors file name in the model directory")
                }
                mapping[name] = file
            }
            weightMap = mapping
            fileNames = Array(Set(mapping.values)).sorted()
        } else {
            fileNames = try FileSystem.list(directory).filter { $0.hasSuffix(".safetensors") }
        }
        guard !fileNames.isEmpty else {
            throw WhaleError(
                .fileNotFound, file: directory, "no .safetensors files in the directory",
                hint: "download the model's *.safetensors files next to its config.json")
        }

        var files: [SafetensorsFile] = []
        var tensors: [TensorInfo] = []
        var tensorIndex: [String: Int] = [:]
        for (fileIndex, name) in fileNames.enumerated() {
            let path = FileSystem.join(directory, name)
            let file: SafetensorsFile
            do {
                file = try SafetensorsFile(path: path, fileIndex: fileIndex)
            } catch let error as WhaleError where error.code == .fileNotFound && weightMap != nil {
                throw WhaleError(
                    .fileNotFound, file: path, "shard listed in model.safetensors.index.json is missing",
                    hint: "download every shard of the model")
            }
            for tensor in file.tensors {
                guard tensorIndex[tensor.name] == nil else {
                    throw WhaleError(.duplicate, file: path, field: tensor.name, "tensor appears in two files")
                }
                if let weightMap, weightMap[tensor.name] != name {
                    throw WhaleError(
                        .invalidValue, file: indexPath, field: tensor.name,
                        "tensor is in \(name) but the index says \(weightMap[tensor.name] ?? "nothing")")
                }
                tensorIndex[tensor.name] = 0
                tensors.append(tensor)
            }
            files.append(file)
        }
        if let weightMap {
            for name in weightMap.keys.sorted() where tensorIndex[name] == nil {
                throw WhaleError(
                    .missingTensor, file: FileSystem.join(directory, weightMap[name]!), field: name,
                    "the index lists this tensor but the file does not hold it")
            }
        }
        tensors.sort { $0.name < $1.name }
        for (index, tensor) in tensors.enumerated() { tensorIndex[tensor.name] = index }

        var blockScales: [String: String] = [:]
        for tensor in tensors where tensor.name.hasSuffix("_scale_inv") {
            let weightName = String(tensor.name.dropLast("_scale_inv".count))
            guard let weight = tensorIndex[weightName].map({ tensors[$0] }) else {
                throw WhaleError(
                    .missingTensor, file: directory, field: weightName, "\(tensor.name) has no weight to scale")
            }
            guard weight.type == .f8E4M3, weight.shape.count == 2 else {
                throw WhaleError(
                    .typeMismatch, file: directory, field: weightName,
                    "has a block scale but is \(weight.type) \(weight.shape), expected a 2-D F8_E4M3 matrix")
            }
            let expected = weight.shape.map { ($0 + scaleBlockSize - 1) / scaleBlockSize }
            guard tensor.shape == expected, tensor.type == .f32 || tensor.type == .bf16 else {
                throw WhaleError(
                    .invalidShape, file: directory, field: tensor.name,
                    "is \(tensor.type) \(tensor.shape), expected F32 \(expected) (one scale per "
                        + "\(scaleBlockSize)×\(scaleBlockSize) block of \(weight.shape))")
            }
            blockScales[weightName] = tensor.name
        }

        self.files = files
        self.tensors = tensors
        self.tensorIndex = tensorIndex
        self.blockScales = blockScales
    }

    public func tensor(named name: String) -> TensorInfo? { tensorIndex[name].map { tensors[$0] } }

    /// The bytes of `tensor`, read in place from its file's mapping.
    public func data(of tensor: TensorInfo) -> UnsafeRawBufferPointer { files[tensor.fileIndex].data(of: tensor) }

    /// Releases the resident pages of `range`, a part of `tensor`'s data (`MappedFile.releasePages`).
    public func releasePages(_ range: UnsafeRawBufferPointer, of tensor: TensorInfo) {
        files[tensor.fileIndex].mapped.releasePages(range)
    }

    /// Total bytes of all files.
    public var fileSize: Int { files.reduce(0) { $0 + $1.mapped.size } }
}
