import WhaleCore
import WhaleKernels

/// What one sequence keeps per token and layer: the attention state later tokens read. The layout says
/// what the two per-token arrays (streams) hold and in which precision:
/// - `keysAndValues`: the rotated keys and the values (`kvHeads × headDim` each);
/// - `latent`: multi-head latent attention's normalised latent (`rank`) and its rotated rope key
///   (`ropeKeyWidth`) — the compressed cache, never expanded;
/// - each value as a 32-bit float, as llama.cpp's default cache a 16-bit half (`Element`): half the
///   memory and half the bytes attention reads per cached token — or as Q8_0 blocks (34 bytes per 32
///   values, llama.cpp's `q8_0` cache type): about half of a half cache again.
///
/// Owned by one sequence and used by one thread at a time (the generator or scheduler that owns it).
public final class KVCache {
    /// How each cached value is stored.
    public enum Element: String, Sendable, Equatable {
        case f32
        case f16
        case q8_0

        /// Bytes of a row of `width` values (for `q8_0` a multiple of 32: `Layout.check` makes sure).
        public func rowBytes(_ width: Int) -> Int {
            switch self {
            case .f32: width * 4
            case .f16: width * 2
            case .q8_0: Q8Rows.rowBytes(width)
            }
        }

        /// The storage each attention precision reads: floats, halves (llama.cpp's f16 cache) or Q8_0 blocks.
        public init(_ precision: AttentionPrecision) {
            switch precision {
            case .f32: self = .f32
            case .f16: self = .f16
            case .q8_0: self = .q8_0
            }
        }
    }

    public struct Layout: Sendable, Equatable {
        public enum Kind: Sendable, Equatable {
            case keysAndValues(width: Int)
            case latent(rank: Int, ropeKeyWidth: Int)
        }

        public var kind: Kind
        public var element: Element

        public static func keysAndValues(width: Int, element: Element) -> Layout {
            Layout(kind: .keysAndValues(width: width), element: element)
        }

        public static func latent(rank: Int, ropeKeyWidth: Int, element: Element) -> Layout {
            Layout(kind: .latent(rank: rank, ropeKeyWidth: ropeKeyWidth), element: element)
        }

        /// The streams' names and widths (values per token and layer), in storage order.
        public var streams: [(name: String, width: Int)] {
            switch kind {
            case .keysAndValues(let width): [("keys", width), ("values", width)]
            case .latent(let rank, let rope): [("latents", rank), ("rope keys", rope)]
            }
        }

        /// Bytes one token takes in one layer.
        public var bytesPerTokenAndLayer: Int { streams.reduce(0) { $0 + element.rowBytes($1.width) } }

        /// The option `check`'s errors name.
        public static let checkedField = "--cache-type"

        /// An error naming the stream when `element` cannot hold the layout: Q8_0 stores whole blocks of 32
        /// values, and attention reads each head from a block boundary, so every stream width and `headDim`
        /// must be a multiple of 32.
        public func check(headDim: Int, source: String) throws {
            guard element == .q8_0 else { return }
            let blocks = Q8Rows.blockValues
            for (name, width) in streams + [("head", headDim)] where width % blocks != 0 {
                throw WhaleError(
                    .invalidArgument, file: source, field: Self.checkedField,
                    "a q8_0 cache stores blocks of \(blocks) values, but this model's \(name) width is \(width)",
                    hint: "use --cache-type f16 (the default) or f32")
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
    /// Layers held (all of the model's, or a pipeline stage's).
    public let layers: Int
    public let capacity: Int
    public let rotated: RotatedPart?
    /// Tokens stored.
    public private(set) var count = 0
    /// Whatever mirrors this cache elsewhere, told of each context shift and released with the cache: a
    /// pipeline's other ranks (WhaleDistributed) hold the other layers of the same sequence.
    public var follower: (any CacheFollower)?
    private let widths: [Int]
    /// storage[stream][layer]: `capacity × widths[stream]` values of `layout.element`.
    private let storage: [[UnsafeMutableRawPointer]]

    public init(layout: Layout, layers: Int, capacity: Int, rotated: RotatedPart? = nil) {
        self.layout = layout
        self.layers = layers
        self.capacity = capacity
        self.rotated = rotated
        widths = layout.streams.map(\.width)
        let element = layout.element
        storage = widths.map { width in
            (0..<layers).map { _ in
                let count = max(capacity * width, 1)
                let rows = UnsafeMutableRawPointer.allocate(
                    byteCount: max(capacity * element.rowBytes(width), 1), alignment: 64)
                switch element {
                case .f32: rows.bindMemory(to: Float.self, capacity: count)
                case .f16: rows.bindMemory(to: UInt16.self, capacity: count)
                case .q8_0: break  // read and written as raw bytes only
                }
                return rows
            }
        }
    }

    deinit { for stream in storage { for pointer in stream { pointer.deallocate() } } }

    /// Bytes held per token across all layers.
    public var bytesPerToken: Int { layers * layout.bytesPerTokenAndLayer }

    /// Stream `stream`'s rows of `layer`: position p's `layout.streams[stream].width` values at
    /// `p × layout.element.rowBytes(width)` bytes.
    public func rows(stream: Int, layer: Int) -> UnsafeRawPointer { UnsafeRawPointer(storage[stream][layer]) }

    /// Writes position `position` of stream `stream` in `layer` (rounded to half precision for an f16 cache,
    /// quantized to Q8_0 blocks for a q8_0 cache).
    public func store(_ values: UnsafePointer<Float>, stream: Int, layer: Int, position: Int) {
        let width = widths[stream]
        let row = storage[stream][layer] + position * layout.element.rowBytes(width)
        switch layout.element {
        case .f32: row.assumingMemoryBound(to: Float.self).update(from: values, count: width)
        case .f16: HalfRows.narrow(values, count: width, into: row)
        case .q8_0: Q8Rows.narrow(values, count: width, into: row)
        }
    }

    /// Reads position `position` of stream `stream` in `layer` as floats.
    public func load(stream: Int, layer: Int, position: Int, into values: UnsafeMutablePointer<Float>) {
        let width = widths[stream]
        let row = UnsafeRawPointer(storage[stream][layer] + position * layout.element.rowBytes(width))
        switch layout.element {
        case .f32: values.update(from: row.assumingMemoryBound(to: Float.self), count: width)
        case .f16: HalfRows.widen(row, count: width, into: values)
        case .q8_0: Q8Rows.widen(row, count: width, into: values)
        }
    }

    /// Index of the keys (dense) or latents (MLA) stream.
    public static let firstStream = 0
    /// Index of the values (dense) or rope keys (MLA) stream.
    public static let secondStream = 1

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
        follower?.cacheDiscarded(range)
        let moved = count - range.upperBound
        let rotatedWidth = widths[rotated.stream]
        let row = UnsafeMutablePointer<Float>.allocate(capacity: rotatedWidth)
        defer { row.deallocate() }
        for layer in 0..<layers {
            for (stream, width) in widths.enumerated() {
                let rows = storage[stream][layer]
                let rowBytes = layout.element.rowBytes(width)
                (rows + range.lowerBound * rowBytes).copyMemory(
                    from: rows + range.upperBound * rowBytes, byteCount: moved * rowBytes)
            }
            for t in range.lowerBound..<(range.lowerBound + moved) {
                load(stream: rotated.stream, layer: layer, position: t, into: row)
                rotated.rope.rotate(row, heads: rotated.heads, headDim: rotated.headDim, by: -range.count)
                store(row, stream: rotated.stream, layer: layer, position: t)
            }
        }
        count -= range.count
    }
}

/// Mirrors a `KVCache` somewhere else (another process holding the sequence's other layers). Truncation needs
/// no notice — a mirror follows the count it is given with each pass — but a context shift moves tokens, so
/// the follower is told of it, to replay it before the next pass. The cache owns its follower: when the cache
/// goes, so does the follower, which can release the mirror then.
public protocol CacheFollower: AnyObject {
    func cacheDiscarded(_ range: Range<Int>)
}
