import WhaleCore

/// One `.safetensors` file, parsed and validated, its tensor data memory-mapped in place.
///
/// Layout: u64 little-endian header length N, N bytes of JSON
/// `{"NAME": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}`,
/// then the data; offsets are relative to the first byte after the header. A header that is not JSON,
/// names an unknown dtype, or whose offsets disagree with dtype × shape, reach past the file or overlap
/// is refused with the tensor's name.
public final class SafetensorsFile: Sendable {
    /// The reference implementation refuses headers over 100 MB; so do we (and never allocate more).
    public static let maximumHeaderSize = 100_000_000

    public let path: String
    /// `__metadata__`: free-form string pairs.
    public let metadata: [String: String]
    /// Tensors in data order; `offset` is absolute within this file.
    public let tensors: [TensorInfo]
    public let mapped: MappedFile

    public convenience init(path: String, fileIndex: Int = 0) throws {
        try self.init(mapped: MappedFile(path: path), fileIndex: fileIndex)
    }

    public init(mapped: MappedFile, fileIndex: Int = 0) throws {
        let path = mapped.path
        self.path = path
        self.mapped = mapped
        var reader = ByteReader(mapped.bytes, file: path)
        let headerSize = try reader.read(UInt64.self, for: "header length")
        guard headerSize <= UInt64(SafetensorsFile.maximumHeaderSize) else {
            throw WhaleError(
                .tooLarge, file: path, field: "header length",
                "header length \(headerSize) is over the \(SafetensorsFile.maximumHeaderSize)-byte limit",
                hint: "this is not a safetensors file, or it is corrupt")
        }
        guard headerSize <= UInt64(reader.remaining) else {
            throw WhaleError(
                .truncated, file: path, field: "header length",
                "header length \(headerSize) is past the end of the file (\(reader.remaining) bytes follow)",
                hint: "the file is truncated or not a safetensors file")
        }
        let headerBytes = try reader.readBytes(Int(headerSize), for: "header")
        let dataStart = reader.offset
        let dataSize = mapped.size - dataStart
        guard headerBytes.first == UInt8(ascii: "{") else {
            throw WhaleError(
                .invalidJSON, file: path, field: "header", "the header does not start with '{'",
                hint: "this is not a safetensors file")
        }
        let header: JSONValue
        do {
            header = try JSONValue.parse(headerBytes, file: path)
        } catch let error as WhaleError {
            throw WhaleError(.invalidJSON, file: path, field: "header", error.problem, hint: "the file is corrupt")
        }
        guard let object = header.object else {
            throw WhaleError(.invalidJSON, file: path, field: "header", "the header is not a JSON object")
        }

        var metadata: [String: String] = [:]
        var tensors: [TensorInfo] = []
        for name in object.keys {
            let entry = object[name]!
            if name == "__metadata__" {
                guard let fields = entry.object else {
                    throw WhaleError(.typeMismatch, file: path, field: name, "expected an object of strings")
                }
                for key in fields.keys {
                    guard let value = fields[key]?.string else {
                        throw WhaleError(.typeMismatch, file: path, field: "__metadata__.\(key)", "expected a string")
                    }
                    metadata[key] = value
                }
                continue
            }
            tensors.append(
                try SafetensorsFile.tensor(
                    name, entry, dataStart: dataStart, dataSize: dataSize, fileIndex: fileIndex, file: path))
        }

        tensors.sort { $0.offset < $1.offset }
        var previousEnd = dataStart
        var previousName = ""
        for tensor in tensors {
            let end = tensor.offset + tensor.byteCount
            guard tensor.byteCount == 0 || tensor.offset >= previousEnd else {
                throw WhaleError(
                    .overlap, file: path, field: tensor.name,
                    "data at \(tensor.offset - dataStart) overlaps tensor \(previousName)")
            }
            if tensor.byteCount > 0 {
                previousEnd = end
                previousName = tensor.name
            }
        }
        self.metadata = metadata
        self.tensors = tensors
    }

    private static func tensor(
        _ name: String, _ entry: JSONValue, dataStart: Int, dataSize: Int, fileIndex: Int, file: String
    ) throws -> TensorInfo {
        guard let object = entry.object else {
            throw WhaleError(
                .typeMismatch, file: file, field: name, "expected a tensor entry object, found \(entry.kindName)")
        }
        let fields = JSONFields(object, file: file, path: name)
        let dtypeName = try fields.required("dtype", fields.string)
        guard let type = DType(safetensorsName: dtypeName) else {
            throw WhaleError(
                .unknownTensorType, file: file, field: name, "unknown dtype \"\(dtypeName)\"",
                hint: "supported dtypes: F32 F16 BF16 F64 I8 I16 I32 I64 U8 BOOL F8_E4M3 F8_E5M2")
        }
        guard let shapeValues = object["shape"]?.array else {
            throw WhaleError(.missingKey, file: file, field: "\(name).shape", "expected an array of dimensions")
        }
        let shape = try shapeValues.map { value -> Int in
            guard let dimension = value.integer, dimension >= 0 else {
                throw WhaleError(
                    .invalidShape, file: file, field: name,
                    "shape entry \(value) is not a non-negative integer")
            }
            return dimension
        }
        guard let elements = CheckedSize.product(shape),
            let expectedBytes = type.byteCount(elements: elements)
        else {
            throw WhaleError(.tooLarge, file: file, field: name, "shape \(shape) has more than 2^62 elements")
        }
        guard let offsets = object["data_offsets"]?.array, offsets.count == 2,
            let begin = offsets[0].integer, let end = offsets[1].integer, begin >= 0, end >= begin
        else {
            throw WhaleError(
                .invalidValue, file: file, field: "\(name).data_offsets",
                "expected [begin, end] with 0 ≤ begin ≤ end")
        }
        guard end - begin == expectedBytes else {
            throw WhaleError(
                .invalidValue, file: file, field: "\(name).data_offsets",
                "spans \(end - begin) bytes but \(dtypeName) \(shape) needs \(expectedBytes)",
                hint: "the header lies about the tensor's size; the file is corrupt")
        }
        guard end <= dataSize else {
            throw WhaleError(
                .outOfBounds, file: file, field: name,
                "data ends at byte \(end) of the data section, which has \(dataSize) bytes",
                hint: "the file is truncated; download it again")
        }
        return TensorInfo(
            name: name, type: type, shape: shape, offset: dataStart + begin, byteCount: expectedBytes,
            fileIndex: fileIndex)
    }

    /// The bytes of `tensor`, read in place from the mapping.
    public func data(of tensor: TensorInfo) -> UnsafeRawBufferPointer {
        mapped.bytes(at: tensor.offset, count: tensor.byteCount)
    }
}
