import WhaleCore

/// What `whale inspect` reports about a model: the figures a user checks before running it.
public struct ModelInspection: Sendable {
    public struct WeightTypeShare: Sendable, Equatable {
        public var type: DType
        public var tensors: Int
        public var elements: Int
        public var bytes: Int
    }

    public var path: String
    /// "GGUF v3" or "safetensors".
    public var format: String
    public var fileCount: Int
    public var fileSize: Int
    /// `general.architecture` for GGUF, `model_type` for safetensors.
    public var architecture: String
    public var name: String?
    /// Total elements of all tensors.
    public var parameterCount: Int
    /// Per stored type, most bytes first.
    public var weightTypes: [WeightTypeShare]
    public var contextLength: Int?
    /// What the attention cache holds per token, as the architecture that runs the model says (nil when no
    /// architecture can run it).
    public var cache: CacheDescription?
    public var cacheBytesPerToken: Int? { cache?.bytesPerToken }
    public var vocabularySize: Int?
    /// The tokenizer model: GGUF `tokenizer.ggml.model` (`gpt2`, `llama`, …) or tokenizer.json's `model.type`.
    public var tokenizerKind: String?
    /// GGUF `tokenizer.ggml.pre` (the pre-tokenizer), when given.
    public var preTokenizer: String?
    public var hasChatTemplate: Bool
    /// FP8 weights paired with block scales (safetensors only).
    public var blockScaledWeights: Int
    public var tensors: [TensorInfo]
    /// GGUF metadata in file order, rendered short (arrays show their type, count and first items);
    /// empty for safetensors, whose configuration is config.json.
    public var metadata: [(key: String, summary: String)]

    /// What an architecture's cache holds per token: bytes (all layers) and how they are made up, e.g.
    /// "f16: 27 layers × (512 latent + 64 rope key)".
    public struct CacheDescription: Sendable {
        public var bytesPerToken: Int
        public var layout: String

        public init(bytesPerToken: Int, layout: String) {
            self.bytesPerToken = bytesPerToken
            self.layout = layout
        }
    }

    /// - Parameter cache: the cache of the architecture that runs the model (the model registry knows it).
    public init(_ files: ModelFiles, path: String, cache: CacheDescription?) throws {
        self.path = path
        self.cache = cache
        tensors = files.tensors
        parameterCount = tensors.reduce(0) { $0 + $1.elementCount }
        var shares: [DType: WeightTypeShare] = [:]
        for tensor in tensors {
            shares[tensor.type, default: WeightTypeShare(type: tensor.type, tensors: 0, elements: 0, bytes: 0)]
                .tensors += 1
            shares[tensor.type]!.elements += tensor.elementCount
            shares[tensor.type]!.bytes += tensor.byteCount
        }
        weightTypes = shares.values.sorted { ($0.bytes, $1.type.rawValue) > ($1.bytes, $0.type.rawValue) }

        switch files {
        case .gguf(let model):
            let metadata = model.metadata
            format = "GGUF v\(model.files[0].version)"
            fileCount = model.files.count
            fileSize = model.fileSize
            let arch = metadata["general.architecture"]?.string ?? "unknown"
            architecture = arch
            name = metadata["general.name"]?.string
            contextLength = metadata["\(arch).context_length"]?.int
            vocabularySize = metadata["tokenizer.ggml.tokens"]?.array?.count ?? metadata["\(arch).vocab_size"]?.int
            tokenizerKind = metadata["tokenizer.ggml.model"]?.string
            preTokenizer = metadata["tokenizer.ggml.pre"]?.string
            hasChatTemplate = metadata["tokenizer.chat_template"]?.string != nil
            blockScaledWeights = 0
            self.metadata = model.metadataKeys.map { ($0, metadata[$0]!.summary) }
        case .safetensors(let model, let config):
            format = "safetensors"
            fileCount = model.files.count
            fileSize = model.fileSize
            architecture = config.modelType
            name = nil
            contextLength = config.maxPositionEmbeddings
            vocabularySize = config.vocabSize
            blockScaledWeights = model.blockScales.count
            let tokenizer = try TokenizerFiles(directory: model.directory)
            tokenizerKind = tokenizer.kind
            preTokenizer = nil
            hasChatTemplate = tokenizer.hasChatTemplate
            metadata = []
        }
    }

    /// The report as JSON (`whale inspect --json`); the flags add the tensor list and the metadata.
    public func json(includeTensors: Bool, includeMetadata: Bool = false) -> JSONValue {
        var object = JSONObject([
            "path": .string(path),
            "format": .string(format),
            "files": .integer(Int64(fileCount)),
            "file_size": .integer(Int64(fileSize)),
            "architecture": .string(architecture),
            "name": name.map(JSONValue.string) ?? .null,
            "parameters": .integer(Int64(parameterCount)),
            "context_length": contextLength.map { .integer(Int64($0)) } ?? .null,
            "cache_bytes_per_token": cacheBytesPerToken.map { .integer(Int64($0)) } ?? .null,
            "vocab_size": vocabularySize.map { .integer(Int64($0)) } ?? .null,
            "tokenizer": tokenizerKind.map(JSONValue.string) ?? .null,
            "pre_tokenizer": preTokenizer.map(JSONValue.string) ?? .null,
            "chat_template": .bool(hasChatTemplate),
            "block_scaled_fp8_weights": .integer(Int64(blockScaledWeights)),
            "tensor_count": .integer(Int64(tensors.count)),
            "weight_types": .array(
                weightTypes.map {
                    .object(
                        JSONObject([
                            "type": .string($0.type.rawValue), "tensors": .integer(Int64($0.tensors)),
                            "elements": .integer(Int64($0.elements)), "bytes": .integer(Int64($0.bytes)),
                        ]))
                }),
        ])
        if includeMetadata {
            var entries = JSONObject()
            for entry in metadata { entries.set(entry.key, .string(entry.summary)) }
            object.set("metadata", .object(entries))
        }
        if includeTensors {
            object.set(
                "tensors",
                .array(
                    tensors.map {
                        .object(
                            JSONObject([
                                "name": .string($0.name), "type": .string($0.type.rawValue),
                                "shape": .array($0.shape.map { .integer(Int64($0)) }),
                                "offset": .integer(Int64($0.offset)), "bytes": .integer(Int64($0.byteCount)),
                                "file": .integer(Int64($0.fileIndex)),
                            ]))
                    }))
        }
        return .object(object)
    }

    /// The report as aligned text lines; the flags add the tensor list and the metadata.
    public func text(includeTensors: Bool, includeMetadata: Bool = false) -> String {
        var lines: [String] = []
        func row(_ label: String, _ value: String) { lines.append(label.padded(to: 15) + value) }
        row("model", path)
        if let name { row("name", name) }
        row("format", "\(format), \(fileCount) file\(fileCount == 1 ? "" : "s")")
        row("architecture", architecture)
        row("parameters", "\(formatCount(parameterCount)) (\(parameterCount))")
        row("file size", "\(formatBytes(fileSize)) (\(fileSize) bytes)")
        row("context", contextLength.map(String.init) ?? "unknown")
        if let bytes = cacheBytesPerToken, let layout = cache?.layout {
            row("cache/token", "\(formatBytes(bytes)) (\(bytes) bytes, \(layout))")
        }
        row("vocabulary", vocabularySize.map(String.init) ?? "unknown")
        row(
            "tokenizer",
            (tokenizerKind ?? "none") + (preTokenizer.map { " (pre-tokenizer \($0))" } ?? ""))
        row("chat template", hasChatTemplate ? "yes" : "no")
        if blockScaledWeights > 0 { row("FP8 weights", "\(blockScaledWeights) with 128×128 block scales") }
        row("tensors", "\(tensors.count)")
        for (index, share) in weightTypes.enumerated() {
            let percent = fileSize > 0 ? Double(share.bytes) * 100 / Double(max(1, totalTensorBytes)) : 0
            row(
                index == 0 ? "weight types" : "",
                share.type.rawValue.padded(to: 8)
                    + "\(share.tensors) tensor\(share.tensors == 1 ? "" : "s")".padded(to: 14)
                    + formatCount(share.elements).padded(to: 10) + " params  " + formatBytes(share.bytes).padded(to: 11)
                    + " \(formatFixed(percent, digits: 1))%")
        }
        if includeMetadata && !metadata.isEmpty {
            lines.append("")
            for entry in metadata { lines.append(entry.key.padded(to: 40) + entry.summary) }
        }
        if includeTensors {
            lines.append("")
            lines.append("name".padded(to: 48) + "type".padded(to: 9) + "shape".padded(to: 22) + "offset")
            for tensor in tensors {
                let shape = "[" + tensor.shape.map(String.init).joined(separator: ", ") + "]"
                let file = fileCount > 1 ? " (file \(tensor.fileIndex + 1))" : ""
                lines.append(
                    tensor.name.padded(to: 48) + tensor.type.rawValue.padded(to: 9) + shape.padded(to: 22)
                        + "\(tensor.offset)\(file)")
            }
        }
        return lines.joined(separator: "\n")
    }

    private var totalTensorBytes: Int { weightTypes.reduce(0) { $0 + $1.bytes } }
}

/// What a Hugging Face model directory says about its tokenizer, read without building it.
struct TokenizerFiles {
    var kind: String?
    var hasChatTemplate: Bool

    init(directory: String) throws {
        let tokenizerPath = FileSystem.join(directory, "tokenizer.json")
        if FileSystem.isFile(tokenizerPath) {
            let json = try FileSystem.readJSONObject(tokenizerPath)
            kind = try json.object("model")?.string("type") ?? "unknown"
        }
        var template =
            FileSystem.isFile(FileSystem.join(directory, "chat_template.jinja"))
            || FileSystem.isFile(FileSystem.join(directory, "chat_template.json"))
        let configPath = FileSystem.join(directory, "tokenizer_config.json")
        if !template, FileSystem.isFile(configPath) {
            let json = try FileSystem.readJSONObject(configPath)
            template = json.value("chat_template") != nil
        }
        hasChatTemplate = template
    }
}

extension String {
    func padded(to width: Int) -> String {
        count >= width ? self + " " : self + String(repeating: " ", count: width - count)
    }
}

/// `134515008` → `134.5M`.
func formatCount(_ value: Int) -> String {
    let units: [(Double, String)] = [(1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")]
    for (scale, suffix) in units where Double(value) >= scale {
        return formatFixed(Double(value) / scale, digits: 2) + suffix
    }
    return String(value)
}

/// `98362432` → `93.80 MiB`.
func formatBytes(_ value: Int) -> String {
    let units: [(Double, String)] = [(0x1p40, "TiB"), (0x1p30, "GiB"), (0x1p20, "MiB"), (0x1p10, "KiB")]
    for (scale, suffix) in units where Double(value) >= scale {
        return formatFixed(Double(value) / scale, digits: 2) + " " + suffix
    }
    return "\(value) B"
}

/// Fixed-point rendering without Foundation's `String(format:)`.
func formatFixed(_ value: Double, digits: Int) -> String {
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let scaled = (abs(value) * scale).rounded()
    let whole = Int(scaled / scale)
    var fraction = String(Int(scaled.truncatingRemainder(dividingBy: scale)))
    fraction = String(repeating: "0", count: max(0, digits - fraction.count)) + fraction
    return (value < 0 ? "-" : "") + String(whole) + (digits > 0 ? "." + fraction : "")
}
