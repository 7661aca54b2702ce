import WhaleCore
import WhaleFormats
import WhaleKernels

/// Looks up a model's tensors by checkpoint name, checks their shapes, and hands them out as in-place
/// `WeightMatrix` views (large matrices) or `[Float]` copies (norm weights, biases). What a name means is
/// the architecture's business (its weight map); this only reads.
struct WeightLoader {
    let files: ModelFiles
    /// Memory for weights that are not read in place (rearranged or converted at load); the model keeps it.
    let owned = OwnedMemory()
    /// The block-scale tensor that goes with a weight, if the architecture's checkpoints have such pairs
    /// (FP8 weights with `weight_scale_inv`); nil for none.
    let blockScaleName: (@Sendable (String) -> String?)?
    private let index: [String: TensorInfo]

    init(_ files: ModelFiles, blockScaleName: (@Sendable (String) -> String?)? = nil) {
        self.files = files
        self.blockScaleName = blockScaleName
        var index: [String: TensorInfo] = [:]
        for tensor in files.tensors { index[tensor.name] = tensor }
        self.index = index
    }

    var source: String { files.path }

    func has(_ name: String) -> Bool { index[name] != nil }

    func tensor(_ name: String) throws -> TensorInfo {
        guard let tensor = index[name] else {
            throw WhaleError(
                .missingTensor, file: source, field: name, "the model has no tensor with this name",
                hint: "the file is incomplete, or it is a different architecture than it declares")
        }
        return tensor
    }

    /// A `[rows, columns]` matrix, read in place (with its block scales, when `blockScaleName` names some),
    /// or repacked for the matrix kernels (see `stackedMatrices`).
    func matrix(_ name: String, rows: Int, columns: Int, forProducts: Bool = true) throws -> WeightMatrix {
        try stackedMatrices(name, count: nil, rows: rows, columns: columns, forProducts: forProducts)[0]
    }

    /// The `count` matrices `[rows, columns]` of a 3-D tensor `[count, rows, columns]` (stacked experts,
    /// per-head projections); with `count` nil, a 2-D tensor as one matrix.
    ///
    /// Read in place from the file, except where the matrix kernels are faster on a repacked layout
    /// (`InterleavedRows.isPreferred`) and the matrix is used in products (`forProducts`; an embedding
    /// that is only looked up row by row is not): then repacked into memory the model owns, releasing the
    /// file's pages as it goes, so the model never holds both copies ([INTERLEAVED_ROWS]).
    func stackedMatrices(
        _ name: String, count: Int?, rows: Int, columns: Int, forProducts: Bool = true
    ) throws -> [WeightMatrix] {
        let tensor = try self.tensor(name)
        let expected = count.map { [$0, rows, columns] } ?? [rows, columns]
        guard tensor.shape == expected else {
            throw WhaleError(.invalidShape, file: source, field: name, "shape is \(tensor.shape), expected \(expected)")
        }
        guard Linear.supports(tensor.type), columns % tensor.type.blockSize == 0 else {
            throw WhaleError(
                .unsupportedTensorType, file: source, field: name,
                "weight type \(tensor.type) has no matrix kernel yet",
                hint: "supported: " + Linear.supportedTypes.map(\.rawValue).joined(separator: ", "))
        }
        let data = files.data(of: tensor).baseAddress!
        if case .safetensors(let model, _) = files, let scaleName = blockScaleName?(name) {
            let scaleTensor = try self.tensor(scaleName)
            let scales = owned.floats(scaleTensor.elementCount)
            Dequantize.run(
                scaleTensor.type, from: files.data(of: scaleTensor).baseAddress!, count: scaleTensor.elementCount,
                into: scales)
            return [
                WeightMatrix(
                    fp8: data, rows: rows, columns: columns, blockScales: scales, blockSize: model.scaleBlockSize)
            ]
        }
        var full = WeightMatrix(type: tensor.type, rows: rows * (count ?? 1), columns: columns, data: data)
        if forProducts, InterleavedRows.isPreferred(tensor.type, rows: rows) {
            let source = full
            full = source.interleaved(into: owned.bytes(source.byteCount)) { rowsRead in
                files.releasePages(
                    UnsafeRawBufferPointer(start: data, count: rowsRead * source.rowBytes), of: tensor)
            }
        }
        return (0..<(count ?? 1)).map { full.rows(($0 * rows)..<(($0 + 1) * rows)) }
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

/// Heap memory owned by a loaded model, for weights rearranged at load time; freed with the model.
final class OwnedMemory: @unchecked Sendable {
    private var buffers: [UnsafeMutableRawPointer] = []

    /// Uninitialized room for `count` floats, alive as long as this object.
    func floats(_ count: Int) -> UnsafeMutablePointer<Float> {
        bytes(max(count, 1) * MemoryLayout<Float>.size).bindMemory(to: Float.self, capacity: max(count, 1))
    }

    /// Uninitialized room for `count` bytes, 64-byte aligned (a cache line: the matrix kernels' loads),
    /// alive as long as this object.
    func bytes(_ count: Int) -> UnsafeMutableRawPointer {
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 64)
        buffers.append(buffer)
        byteCount += max(count, 1)
        return buffer
    }

    /// Bytes held.
    private(set) var byteCount = 0

    deinit { for buffer in buffers { buffer.deallocate() } }
}
