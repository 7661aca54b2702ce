/// Where a tensor's bytes are and how to read them, independent of the file format that holds it.
public struct TensorInfo: Sendable, Hashable {
    /// The checkpoint's own name, verbatim (`blk.0.attn_q.weight`, `model.layers.0.self_attn.q_proj.weight`).
    public var name: String
    public var type: DType
    /// Dimensions outermost first, as PyTorch and safetensors write them: a `[rows, columns]` matrix
    /// stores each row contiguously. (GGUF writes them the other way round, innermost first; the GGUF
    /// reader reverses them.)
    public var shape: [Int]
    /// Byte offset of the first element within its file.
    public var offset: Int
    /// Bytes the tensor occupies.
    public var byteCount: Int
    /// Index of the file (shard) holding the tensor, in the order the model's files were opened.
    public var fileIndex: Int

    public init(name: String, type: DType, shape: [Int], offset: Int, byteCount: Int, fileIndex: Int) {
        self.name = name
        self.type = type
        self.shape = shape
        self.offset = offset
        self.byteCount = byteCount
        self.fileIndex = fileIndex
    }

    /// Number of elements (the product of the shape; 1 for a scalar).
    public var elementCount: Int { shape.reduce(1, *) }
}

/// Checked arithmetic for sizes read from untrusted files.
public enum CheckedSize {
    /// Largest element count accepted for one tensor: 2^62 elements would be exabytes, so anything that
    /// large is a corrupt or hostile file.
    public static let maximumElements = (1 << 62) - 1

    /// The product of `dimensions`, or nil if any is negative or the product passes `limit`.
    public static func product(_ dimensions: [Int], limit: Int = maximumElements) -> Int? {
        var total = 1
        for dimension in dimensions {
            guard dimension >= 0 else { return nil }
            let (next, overflow) = total.multipliedReportingOverflow(by: dimension)
            guard !overflow, next <= limit else { return nil }
            total = next
        }
        return total
    }
}
