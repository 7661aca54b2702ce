import WhaleCore

/// One GGUF file (v2 or v3), parsed and validated, its tensor data memory-mapped in place.
///
/// Layout (all little-endian): magic `GGUF`, u32 version, u64 tensor count, u64 metadata count, the
/// metadata entries, the tensor infos, padding to `general.alignment` (default 32), then the data
/// section. Everything read from the file is bounds-checked before use: counts are weighed against the
/// bytes left before anything is allocated, every tensor must lie inside the data section, aligned,
/// and not overlap another. See the GGUF spec (ggml/docs/gguf.md).
public final class GGUFFile: Sendable {
    public static let magic: UInt32 = 0x4655_4747  // "GGUF" read as little-endian u32
    public static let defaultAlignment = 32
    /// ggml's GGML_MAX_DIMS.
    public static let maximumDimensions = 4
    /// Nesting limit for arrays of arrays; deeper nesting is refused instead of exhausting the stack.
    public static let maximumArrayDepth = 8
    /// Longest metadata array accepted. The largest real ones are vocabularies and merge lists of a few
    /// hundred thousand entries; a longer one is hostile, and decoding it would cost ~30 bytes per element.
    public static let maximumArrayLength = 1 << 24

    public let path: String
    public let version: UInt32
    /// Metadata keys in file order.
    public let metadataKeys: [String]
    public let metadata: [String: GGUFValue]
    /// Tensors in file order; `offset` is absolute within this file, `shape` outermost first.
    public let tensors: [TensorInfo]
    public let alignment: Int
    /// Absolute offset of the data section.
    public let dataOffset: Int
    public let mapped: MappedFile

    /// Opens and validates the GGUF file at `path`. `fileIndex` is stored in each tensor's info.
    public convenience init(path: String, fileIndex: Int = 0) throws {
        try self.init(mapped: MappedFile(path: path), fileIndex: fileIndex)
    }

    public init(mapped: MappedFile, fileIndex: Int = 0) throws {
        let path = mapped.path
        self.path = path
        self.mapped = mapped
        var reader = ByteReader(mapped.bytes, file: path)

        let magic = try reader.read(UInt32.self, for: "magic")
        guard magic == GGUFFile.magic else {
            throw WhaleError(
                .badMagic, file: path, field: "magic",
                "not a GGUF file (first bytes are \(hexBytes(mapped.bytes.prefix(4))), expected \"GGUF\")",
                hint: "pass a .gguf model file, or a directory holding config.json and safetensors")
        }
        version = try reader.read(UInt32.self, for: "version")
        guard version == 2 || version == 3 else {
            let hint: String
            if version == 1 {
                hint = "GGUF v1 files are no longer supported; convert the model again with a current llama.cpp"
            } else if version.byteSwapped == 2 || version.byteSwapped == 3 {
                hint = "this is a big-endian GGUF file; use a little-endian one"
            } else {
                hint = "supported versions are 2 and 3"
            }
            throw WhaleError(.unsupportedVersion, file: path, field: "version", "GGUF version \(version)", hint: hint)
        }
        let tensorCount = try reader.read(UInt64.self, for: "tensor_count")
        let metadataCount = try reader.read(UInt64.self, for: "metadata_kv_count")
        // Each metadata entry needs at least a key length, a value type and one byte; each tensor info
        // needs a name length, n_dims, a type and an offset.
        try checkCount(
            metadataCount, minimumSize: 13, remaining: reader.remaining, field: "metadata_kv_count", file: path)
        try checkCount(tensorCount, minimumSize: 24, remaining: reader.remaining, field: "tensor_count", file: path)

        var keys: [String] = []
        var metadata: [String: GGUFValue] = [:]
        for index in 0..<Int(metadataCount) {
            let key = try GGUFFile.readString(&reader, field: "metadata key #\(index)")
            let rawType = try reader.read(UInt32.self, for: key)
            let value = try GGUFFile.readValue(&reader, rawType: rawType, key: key, depth: 0)
            guard metadata.updateValue(value, forKey: key) == nil else {
                throw WhaleError(.duplicate, file: path, field: key, "metadata key appears twice")
            }
            keys.append(key)
        }
        metadataKeys = keys
        self.metadata = metadata

        var alignment = GGUFFile.defaultAlignment
        if let value = metadata["general.alignment"] {
            guard case .uint32(let raw) = value, raw > 0, raw.nonzeroBitCount == 1 else {
                throw WhaleError(
                    .invalidValue, file: path, field: "general.alignment",
                    "expected a u32 power of two, found \(value.type) \(value.summary)")
            }
            alignment = Int(raw)
        }
        self.alignment = alignment

        struct RawTensor {
            var name: String
            var type: DType
            var shape: [Int]
            var relativeOffset: Int
            var byteCount: Int
        }
        var rawTensors: [RawTensor] = []
        rawTensors.reserveCapacity(min(Int(tensorCount), 1 << 16))
        var names = Set<String>()
        for index in 0..<Int(tensorCount) {
            let name = try GGUFFile.readString(&reader, field: "tensor #\(index) name")
            guard names.insert(name).inserted else {
                throw WhaleError(.duplicate, file: path, field: name, "two tensors have this name")
            }
            let dimensionCount = try reader.read(UInt32.self, for: "\(name) n_dims")
            guard dimensionCount <= GGUFFile.maximumDimensions else {
                throw WhaleError(
                    .invalidShape, file: path, field: name,
                    "tensor has \(dimensionCount) dimensions; at most \(GGUFFile.maximumDimensions) are allowed")
            }
            var dimensions: [Int] = []  // innermost first, as GGUF stores them
            for axis in 0..<Int(dimensionCount) {
                let raw = try reader.read(UInt64.self, for: "\(name) ne[\(axis)]")
                guard raw > 0, raw <= UInt64(Int64.max) else {
                    let shown = raw > UInt64(Int64.max) ? "\(Int64(bitPattern: raw))" : "\(raw)"
                    throw WhaleError(
                        .invalidShape, file: path, field: name,
                        "dimension \(axis) is \(shown); dimensions must be positive")
                }
                dimensions.append(Int(raw))
            }
            guard let elements = CheckedSize.product(dimensions) else {
                throw WhaleError(
                    .tooLarge, file: path, field: name,
                    "shape \(dimensions) (innermost first) has more than 2^62 elements")
            }
            let rawType = try reader.read(UInt32.self, for: "\(name) type")
            guard let type = DType(ggmlTypeID: rawType) else {
                throw WhaleError(
                    .unknownTensorType, file: path, field: name,
                    "unknown ggml type id \(rawType)",
                    hint: "the file may need a newer BlueWhale, or it is corrupt")
            }
            let innermost = dimensions.first ?? 1
            guard innermost % type.blockSize == 0 else {
                throw WhaleError(
                    .invalidShape, file: path, field: name,
                    "row length \(innermost) is not a multiple of the \(type) block size \(type.blockSize)")
            }
            guard let byteCount = type.byteCount(elements: elements) else {
                throw WhaleError(
                    .tooLarge, file: path, field: name, "\(elements) \(type) elements overflow a byte count")
            }
            let offset = try reader.read(UInt64.self, for: "\(name) offset")
            guard offset <= UInt64(Int.max) else {
                throw WhaleError(
                    .outOfBounds, file: path, field: name, "data offset \(offset) is past any possible file end",
                    hint: "the file is corrupt")
            }
            guard Int(offset) % alignment == 0 else {
                throw WhaleError(
                    .misaligned, file: path, field: name,
                    "data offset \(offset) is not a multiple of the alignment \(alignment)")
            }
            rawTensors.append(
                RawTensor(
                    name: name, type: type, shape: dimensions.reversed(), relativeOffset: Int(offset),
                    byteCount: byteCount))
        }

        let headerEnd = reader.offset
        let padded = (headerEnd + alignment - 1) / alignment * alignment
        dataOffset = padded
        let dataSize = mapped.size - padded
        if !rawTensors.isEmpty && dataSize < 0 {
            throw WhaleError(
                .truncated, file: path, field: "data section",
                "the file ends at byte \(mapped.size), before its data section at \(padded)",
                hint: "the file is truncated; download it again")
        }

        // Every tensor inside the data section, none overlapping another.
        var byOffset = rawTensors.indices.sorted { rawTensors[$0].relativeOffset < rawTensors[$1].relativeOffset }
        byOffset.removeAll { rawTensors[$0].byteCount == 0 }
        var previousEnd = 0
        var previousName = ""
        for index in byOffset {
            let tensor = rawTensors[index]
            let (end, overflow) = tensor.relativeOffset.addingReportingOverflow(tensor.byteCount)
            guard !overflow, end <= dataSize else {
                throw WhaleError(
                    .outOfBounds, file: path, field: tensor.name,
                    "data [\(tensor.relativeOffset), +\(tensor.byteCount)) reaches past the end of the data section "
                        + "(\(max(dataSize, 0)) bytes)",
                    hint: "the file is truncated or corrupt; download it again")
            }
            guard tensor.relativeOffset >= previousEnd else {
                throw WhaleError(
                    .overlap, file: path, field: tensor.name,
                    "data at offset \(tensor.relativeOffset) overlaps tensor \(previousName) (which ends at \(previousEnd))"
                )
            }
            previousEnd = end
            previousName = tensor.name
        }

        tensors = rawTensors.map {
            TensorInfo(
                name: $0.name, type: $0.type, shape: $0.shape, offset: padded + $0.relativeOffset,
                byteCount: $0.byteCount, fileIndex: fileIndex)
        }
    }

    /// The bytes of `tensor`, read in place from the mapping.
    public func data(of tensor: TensorInfo) -> UnsafeRawBufferPointer {
        mapped.bytes(at: tensor.offset, count: tensor.byteCount)
    }

    // MARK: - Reading values

    static func readString(_ reader: inout ByteReader, field: @autoclosure () -> String) throws -> String {
        let length = try reader.read(UInt64.self, for: field())
        guard length <= UInt64(reader.remaining) else {
            throw WhaleError(
                .truncated, file: reader.file, field: field(),
                "string length \(length) reaches past the end of the file (\(reader.remaining) bytes left)",
                hint: "the file is truncated or corrupt")
        }
        let bytes = try reader.readBytes(Int(length), for: field())
        guard let string = validUTF8(bytes) else {
            throw WhaleError(.invalidUTF8, file: reader.file, field: field(), "string is not valid UTF-8")
        }
        return string
    }

    static func readValue(_ reader: inout ByteReader, rawType: UInt32, key: String, depth: Int) throws -> GGUFValue {
        guard let type = GGUFValueType(rawValue: rawType) else {
            throw WhaleError(
                .unknownValueType, file: reader.file, field: key, "unknown metadata value type \(rawType)",
                hint: "known types are 0–12; the file is corrupt or from a newer GGUF version")
        }
        switch type {
        case .uint8: return .uint8(try reader.read(UInt8.self, for: key))
        case .int8: return .int8(try reader.read(Int8.self, for: key))
        case .uint16: return .uint16(try reader.read(UInt16.self, for: key))
        case .int16: return .int16(try reader.read(Int16.self, for: key))
        case .uint32: return .uint32(try reader.read(UInt32.self, for: key))
        case .int32: return .int32(try reader.read(Int32.self, for: key))
        case .uint64: return .uint64(try reader.read(UInt64.self, for: key))
        case .int64: return .int64(try reader.read(Int64.self, for: key))
        case .float32: return .float32(Float(bitPattern: try reader.read(UInt32.self, for: key)))
        case .float64: return .float64(Double(bitPattern: try reader.read(UInt64.self, for: key)))
        case .bool:
            let byte = try reader.read(UInt8.self, for: key)
            guard byte <= 1 else {
                throw WhaleError(.invalidValue, file: reader.file, field: key, "bool value is \(byte), expected 0 or 1")
            }
            return .bool(byte == 1)
        case .string: return .string(try readString(&reader, field: key))
        case .array:
            guard depth < maximumArrayDepth else {
                throw WhaleError(
                    .invalidValue, file: reader.file, field: key,
                    "arrays nested more than \(maximumArrayDepth) deep")
            }
            let rawElementType = try reader.read(UInt32.self, for: key)
            guard let elementType = GGUFValueType(rawValue: rawElementType) else {
                throw WhaleError(
                    .unknownValueType, file: reader.file, field: key,
                    "unknown array element type \(rawElementType)",
                    hint: "known types are 0–12; the file is corrupt or from a newer GGUF version")
            }
            let count = try reader.read(UInt64.self, for: key)
            try checkCount(
                count, minimumSize: elementType.minimumSize, remaining: reader.remaining, field: key, file: reader.file)
            guard count <= maximumArrayLength else {
                throw WhaleError(
                    .tooLarge, file: reader.file, field: key,
                    "array of \(count) elements is longer than the \(maximumArrayLength) BlueWhale accepts",
                    hint: "no real model has metadata this large; the file is corrupt or hostile")
            }
            var values: [GGUFValue] = []
            values.reserveCapacity(min(Int(count), 1 << 16))
            for _ in 0..<Int(count) {
                values.append(try readValue(&reader, rawType: rawElementType, key: key, depth: depth + 1))
            }
            return .array(elementType: elementType, values)
        }
    }
}

/// Refuses a count that could not fit in the bytes left even at `minimumSize` bytes per item, before
/// anything is allocated for it.
func checkCount(_ count: UInt64, minimumSize: Int, remaining: Int, field: String, file: String) throws {
    guard count <= UInt64(max(remaining, 0) / minimumSize) else {
        throw WhaleError(
            .tooLarge, file: file, field: field,
            "count \(count) cannot fit in the \(max(remaining, 0)) bytes left in the file",
            hint: "the file is truncated or corrupt")
    }
}

func hexBytes(_ bytes: some Sequence<UInt8>) -> String {
    bytes.map { byte in
        let digits = Array("0123456789abcdef")
        return String([digits[Int(byte >> 4)], digits[Int(byte & 15)]])
    }.joined(separator: " ")
}
