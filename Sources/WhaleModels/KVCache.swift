import WhaleCore
import WhaleKernels

/// What one sequence keeps per token and layer: the attention state later tokens read. The layout says
/// what the two per-token arrays (streams) hold:
/// - `keysAndValues`: the rotated keys and the values (`kvHeads × headDim` floats each);
/// - `latent`: multi-head latent attention's normalised latent (`rank` floats) and its rotated rope key
///   (`ropeKeyWidth`) — the compressed cache, never expanded.
///
/// Owned by one sequence and used by one thread at a time (the generator or scheduler that owns it).
public final class KVCache {
    public enum Layout: Sendable, Equatable {
        case keysAndValues(width: Int)
        case latent(rank: Int, ropeKeyWidth: Int)

        /// The streams' names and widths (floats per token and layer), in storage order.
        public var streams: [(name: String, width: Int)] {
            switch self {
            case .keysAndValues(let width): [("keys", width), ("values", width)]
            case .latent(let rank, let rope): [("latents", rank), ("rope keys", rope)]
            }
        }
    }

    /// Which stream carries a rotary position, so that a context shift can turn it back.
    public struct RotatedPart: Sendable {
        /// Index into `layout.streams`.
        public var stream: Int
        public var heads: Int
        public var headDim: Int
        public var rope: RotaryEmbedding

        public init(stream: Int, heads: Int, headDim: Int, rope: RotaryEmbedding) {
            self.stream = stream
            self.heads = heads
            self.headDim = headDim
            self.rope = rope
        }
    }

    public let layout: Layout
    public let layers: Int
    public let capacity: Int
    public let rotated: RotatedPart?
    /// Tokens stored.
    public private(set) var count = 0
    private let widths: [Int]
    /// storage[stream][layer]: `capacity × widths[stream]` floats.
    private let storage: [[UnsafeMutablePointer<Float>]]

    public init(layout: Layout, layers: Int, capacity: Int, rotated: RotatedPart? = nil) {
        self.layout = layout
        self.layers = layers
        self.capacity = capacity
        self.rotated = rotated
        widths = layout.streams.map(\.width)
        storage = widths.map { width in (0..<layers).map { _ in .allocate(capacity: max(capacity * width, 1)) } }
    }

    deinit { for stream in storage { for pointer in stream { pointer.deallocate() } } }

    /// Bytes held per token across all layers.
    public var bytesPerToken: Int { layers * widths.reduce(0, +) * MemoryLayout<Float>.size }

    /// Stream `stream`'s rows of `layer`: position p at `p × layout.streams[stream].width`.
    public func rows(stream: Int, layer: Int) -> UnsafeMutablePointer<Float> { storage[stream][layer] }

    /// Dense layout: `[capacity, kvHeads·headDim]` rotated keys of `layer`.
    public func keys(_ layer: Int) -> UnsafeMutablePointer<Float> { rows(denseStream: 0, layer) }
    /// Dense layout: `[capacity, kvHeads·headDim]` values of `layer`.
    public func values(_ layer: Int) -> UnsafeMutablePointer<Float> { rows(denseStream: 1, layer) }
    /// Latent layout: `[capacity, rank]` normalised latents of `layer`.
    public func latents(_ layer: Int) -> UnsafeMutablePointer<Float> { rows(latentStream: 0, layer) }
    /// Latent layout: `[capacity, ropeKeyWidth]` rotated rope keys of `layer`.
    public func ropeKeys(_ layer: Int) -> UnsafeMutablePointer<Float> { rows(latentStream: 1, layer) }

    private func rows(denseStream stream: Int, _ layer: Int) -> UnsafeMutablePointer<Float> {
        guard case .keysAndValues = layout else { preconditionFailure("KVCache: a latent cache has no keys/values") }
        return storage[stream][layer]
    }

    private func rows(latentStream stream: Int, _ layer: Int) -> UnsafeMutablePointer<Float> {
        guard case .latent = layout else { preconditionFailure("KVCache: a key/value cache has no latents") }
        return storage[stream][layer]
    }

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
            for (stream, width) in widths.enumerated() {
                let rows = storage[stream][layer]
                (rows + range.lowerBound * width).update(from: rows + range.upperBound * width, count: moved * width)
            }
            let rows = storage[rotated.stream][layer]
            let width = widths[rotated.stream]
            for t in range.lowerBound..<(range.lowerBound + moved) {
                rotated.rope.rotate(rows + t * width, heads: rotated.heads, headDim: rotated.headDim, by: -range.count)
            }
        }
        count -= range.count
    }
}
