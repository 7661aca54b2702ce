import WhaleCore

/// A GGUF model: one file, or a split set `NAME-00001-of-0000N.gguf` opened from its first shard.
///
/// llama.cpp's gguf-split writes `split.no` (0-based), `split.count` and `split.tensors.count` into every
/// shard; the first shard carries the model's metadata, each shard its own tensors and data section.
public final class GGUFModel: Sendable {
    /// The shards in order (one for an unsplit file).
    public let files: [GGUFFile]
    /// All tensors of all shards; `fileIndex` says which shard holds each.
    public let tensors: [TensorInfo]
    private let tensorIndex: [String: Int]

    public var path: String { files[0].path }
    /// The model's metadata (the first shard's).
    public var metadata: [String: GGUFValue] { files[0].metadata }
    public var metadataKeys: [String] { files[0].metadataKeys }

    public init(path: String) throws {
        let first = try GGUFFile(path: path)
        let splitCount = first.metadata["split.count"]?.int ?? 1
        let shardName = GGUFModel.parseShardName(path)
        if splitCount > 1, let shardName, shardName.index != 1 {
            throw WhaleError(
                .invalidArgument, file: path,
                "this is shard \(shardName.index) of \(shardName.count) of a split model",
                hint:
                    "pass the first shard, \(GGUFModel.shardPath(prefix: shardName.prefix, index: 1, count: shardName.count))"
            )
        }
        var files = [first]
        if splitCount > 1 {
            guard splitCount <= 9999 else {
                throw WhaleError(.invalidValue, file: path, field: "split.count", "split count \(splitCount) is absurd")
            }
            guard let shardName, shardName.count == splitCount else {
                throw WhaleError(
                    .invalidArgument, file: path, field: "split.count",
                    "the file says it is split into \(splitCount) shards but its name is not NAME-00001-of-"
                        + "\(pad5(splitCount)).gguf",
                    hint: "keep the shards' original file names")
            }
            if let number = first.metadata["split.no"]?.int, number != 0 {
                throw WhaleError(.invalidValue, file: path, field: "split.no", "first shard says split.no = \(number)")
            }
            for index in 2...splitCount {
                let shardPath = GGUFModel.shardPath(prefix: shardName.prefix, index: index, count: splitCount)
                let shard: GGUFFile
                do {
                    shard = try GGUFFile(path: shardPath, fileIndex: index - 1)
                } catch let error as WhaleError where error.code == .fileNotFound {
                    throw WhaleError(
                        .fileNotFound, file: shardPath,
                        "shard \(index) of \(splitCount) is missing", hint: "download every shard into one directory")
                }
                let number = shard.metadata["split.no"]?.int
                guard number == index - 1 else {
                    throw WhaleError(
                        .invalidValue, file: shardPath, field: "split.no",
                        "expected \(index - 1), found \(number.map(String.init) ?? "none")")
                }
                files.append(shard)
            }
        }
        var tensors: [TensorInfo] = []
        var tensorIndex: [String: Int] = [:]
        for file in files {
            for tensor in file.tensors {
                guard tensorIndex.updateValue(tensors.count, forKey: tensor.name) == nil else {
                    throw WhaleError(.duplicate, file: file.path, field: tensor.name, "tensor appears in two shards")
                }
                tensors.append(tensor)
            }
        }
        if splitCount > 1, let expected = first.metadata["split.tensors.count"]?.int, expected != tensors.count {
            throw WhaleError(
                .invalidValue, file: path, field: "split.tensors.count",
                "the shards hold \(tensors.count) tensors but the first shard says \(expected)")
        }
        self.files = files
        self.tensors = tensors
        self.tensorIndex = tensorIndex
    }

    public func tensor(named name: String) -> TensorInfo? { tensorIndex[name].map { tensors[$0] } }

    /// The bytes of `tensor`, read in place from its shard's mapping.
    public func data(of tensor: TensorInfo) -> UnsafeRawBufferPointer { files[tensor.fileIndex].data(of: tensor) }

    /// Releases the resident pages of `range`, a part of `tensor`'s data (`MappedFile.releasePages`).
    public func releasePages(_ range: UnsafeRawBufferPointer, of tensor: TensorInfo) {
        files[tensor.fileIndex].mapped.releasePages(range)
    }

    /// Total bytes of all shards.
    public var fileSize: Int { files.reduce(0) { $0 + $1.mapped.size } }

    /// `NAME-00001-of-00003.gguf` → ("NAME", 1, 3).
    static func parseShardName(_ path: String) -> (prefix: String, index: Int, count: Int)? {
        guard path.hasSuffix(".gguf") else { return nil }
        let stem = Array(path.dropLast(5))
        // "-DDDDD-of-DDDDD" is 15 characters.
        guard stem.count > 15 else { return nil }
        let tail = stem[(stem.count - 15)...]
        let text = String(tail)
        let parts = Array(text.utf8)
        guard parts[0] == UInt8(ascii: "-"), String(decoding: parts[6..<10], as: UTF8.self) == "-of-",
            let index = Int(String(decoding: parts[1..<6], as: UTF8.self)),
            let count = Int(String(decoding: parts[10..<15], as: UTF8.self)), index >= 1, count >= 1
        else { return nil }
        return (String(stem[..<(stem.count - 15)]), index, count)
    }

    static func shardPath(prefix: String, index: Int, count: Int) -> String {
        "\(prefix)-\(pad5(index))-of-\(pad5(count)).gguf"
    }
}

private func pad5(_ value: Int) -> String {
    let digits = String(value)
    return String(repeating: "0", count: max(0, 5 - digits.count)) + digits
}
