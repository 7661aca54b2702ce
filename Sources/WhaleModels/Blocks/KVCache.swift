import WhaleCore
import WhaleKernels

/// How attention rounds what it reads: `f16` reproduces llama.cpp's default f16 K/V cache (keys, values,
/// the query and the attention weights rounded to half precision, as ggml's f16 matrix products do);
/// `f32` is transformers' float32 math.
public enum AttentionPrecision: String, Sendable {
    case f16
    case f32
}

/// What one sequence keeps per token and layer, in two streams:
/// - dense models: `keys` (`kvHeads × headDim`, rotated) and `values`;
/// - DeepSeek's MLA: `keys` holds the normalised latent (`kv_lora_rank`) and `values` the rotated rope key
///   (`qk_rope_head_dim`) — the compressed cache, never expanded.
///
/// Owned by one sequence and used by one thread at a time (the generator or scheduler that owns it).
public final class KVCache {
    /// Which values carry a rotary position, so that a context shift can turn them back.
    public struct RotatedPart: Sendable {
        public enum Stream: Sendable {
            case keys
            case values
        }
        public var stream: Stream
        public var heads: Int
        public var headDim: Int
        public var rope: RotaryEmbedding

        public init(stream: Stream, heads: Int, headDim: Int, rope: RotaryEmbedding) {
            self.stream = stream
            self.heads = heads
            self.headDim = headDim
            self.rope = rope
        }
    }

    public let layers: Int
    public let capacity: Int
    /// Values per token per layer in each stream.
    public let keyWidth: Int
    public let valueWidth: Int
    public let rotated: RotatedPart?
    /// Tokens stored.
    public private(set) var count = 0
    let keys: [UnsafeMutablePointer<Float>]
    let values: [UnsafeMutablePointer<Float>]

    public init(layers: Int, capacity: Int, keyWidth: Int, valueWidth: Int, rotated: RotatedPart? = nil) {
        self.layers = layers
        self.capacity = capacity
        self.keyWidth = keyWidth
        self.valueWidth = valueWidth
        self.rotated = rotated
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

    /// Context shift: forgets the tokens in `range` and moves the later ones down by `range.count` positions,
    /// turning their rotary parts back by as many positions, so the cache equals (up to rounding) one that
    /// never saw the dropped tokens — the model keeps going where it would otherwise run out of context.
    ///
    /// - Precondition: the cache knows its rotated part; `range` lies within the stored tokens.
    public func discard(_ range: Range<Int>) {
        precondition(range.lowerBound >= 0 && range.upperBound <= count)
        guard let rotated, !range.isEmpty else { return }
        let moved = count - range.upperBound
        for layer in 0..<layers {
            for (stream, width) in [(keys[layer], keyWidth), (values[layer], valueWidth)] {
                (stream + range.lowerBound * width).update(
                    from: stream + range.upperBound * width, count: moved * width)
            }
            let stream = rotated.stream == .keys ? keys[layer] : values[layer]
            let width = rotated.stream == .keys ? keyWidth : valueWidth
            for t in range.lowerBound..<(range.lowerBound + moved) {
                rotated.rope.rotate(
                    stream + t * width, heads: rotated.heads, headDim: rotated.headDim, by: -range.count)
            }
        }
        count -= range.count
    }
}
