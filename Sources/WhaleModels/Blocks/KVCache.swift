import WhaleCore

/// How attention rounds what it reads: `f16` reproduces llama.cpp's default f16 K/V cache (keys, values,
/// the query and the attention weights rounded to half precision, as ggml's f16 matrix products do);
/// `f32` is transformers' float32 math.
public enum AttentionPrecision: String, Sendable {
    case f16
    case f32
}

/// Keys and values of one sequence for every layer: `[capacity, kvHeads * headDim]` per layer.
///
/// Owned by one sequence and used by one thread at a time (the generator or scheduler that owns it).
public final class KVCache {
    public let layers: Int
    public let capacity: Int
    /// Values per token per layer (for keys; values have `valueWidth`).
    public let keyWidth: Int
    public let valueWidth: Int
    /// Tokens stored.
    public private(set) var count = 0
    let keys: [UnsafeMutablePointer<Float>]
    let values: [UnsafeMutablePointer<Float>]

    public init(layers: Int, capacity: Int, keyWidth: Int, valueWidth: Int) {
        self.layers = layers
        self.capacity = capacity
        self.keyWidth = keyWidth
        self.valueWidth = valueWidth
        keys = (0..<layers).map { _ in .allocate(capacity: capacity * keyWidth) }
        values = (0..<layers).map { _ in .allocate(capacity: capacity * valueWidth) }
    }

    deinit {
        for pointer in keys { pointer.deallocate() }
        for pointer in values { pointer.deallocate() }
    }

    /// Bytes held per token across all layers.
    public var bytesPerToken: Int { layers * (keyWidth + valueWidth) * MemoryLayout<Float>.size }

    /// Room for `tokens` more, or an error saying how much context is left.
    func reserve(_ tokens: Int) throws {
        guard count + tokens <= capacity else {
            throw WhaleError(
                .tooLarge, field: "context",
                "\(count + tokens) tokens do not fit in the context of \(capacity) (\(count) already used)",
                hint: "shorten the prompt or raise --ctx")
        }
    }

    /// Marks `tokens` more as stored (after every layer wrote them).
    func advance(by tokens: Int) { count += tokens }

    /// Forgets everything after the first `length` tokens.
    public func truncate(to length: Int) {
        precondition(length >= 0 && length <= count)
        count = length
    }
}
