import WhaleCore
import WhaleFormats
import WhaleKernels

/// Looks up a model's tensors by checkpoint name, checks their shapes, and hands them out as in-place
/// `WeightMatrix` views (large matrices) or `[Float]` copies (norm weights, biases).
struct WeightLoader {
    let files: ModelFiles
    private let index: [String: TensorInfo]

    init(_ files: ModelFiles) {
        self.files = files
        var index: [String: TensorInfo] = [:]
        for tensor in files.tensors { index[tensor.name] = tensor }
        self.index = index
    }

    var source: String {
        switch files {
        case .gguf(let model): model.path
        case .safetensors(let model, _): model.directory
        }
    }

    func has(_ name: String) -> Bool { index[name] != nil }

    func tensor(_ name: String) throws -> TensorInfo {
        guard let tensor = index[name] else {
            throw WhaleError(
                .missingTensor, file: source, field: name, "the model has no tensor with this name",
                hint: "the file is incomplete, or it is a different architecture than it declares")
        }
        return tensor
    }

    /// A `[rows, columns]` matrix, read in place.
    func matrix(_ name: String, rows: Int, columns: Int) throws -> WeightMatrix {
        let tensor = try self.tensor(name)
        guard tensor.shape == [rows, columns] else {
            throw WhaleError(
                .invalidShape, file: source, field: name, "shape is \(tensor.shape), expected [\(rows), \(columns)]")
        }
        guard Linear.supports(tensor.type) else {
            throw WhaleError(
                .unsupportedTensorType, file: source, field: name,
                "weight type \(tensor.type) has no matrix kernel yet",
                hint: "use a model quantized to F32, F16, BF16, Q8_0, Q4_0 or Q4_1")
        }
        return WeightMatrix(type: tensor.type, rows: rows, columns: columns, data: files.data(of: tensor).baseAddress!)
    }

    /// A vector of `count` values as Float.
    func vector(_ name: String, count: Int) throws -> [Float] {
        let tensor = try self.tensor(name)
        guard tensor.elementCount == count,
            tensor.shape.count == 1 || tensor.shape.allSatisfy({ $0 == 1 || $0 == count })
        else {
            throw WhaleError(.invalidShape, file: source, field: name, "shape is \(tensor.shape), expected [\(count)]")
        }
        return try Dequantize.toFloats(tensor.type, bytes: files.data(of: tensor), count: count, tensorName: name)
    }
}
