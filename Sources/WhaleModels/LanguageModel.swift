import WhaleCore
import WhaleKernels

/// What a forward pass returns logits for, per sequence.
public enum LogitRows: Sendable, Equatable {
    /// None (pure prefill of a prefix).
    case none
    /// The last token's only (generation).
    case last
    /// Every token fed (scoring, perplexity).
    case all
}

extension LogitRows {
    /// The rows of a sequence whose tokens start at `start` in the batch.
    public func rows(start: Int, count: Int) -> Range<Int> {
        switch self {
        case .none: start..<start
        case .last: (start + count - 1)..<(start + count)
        case .all: start..<(start + count)
        }
    }
}

/// The tokens one sequence adds in a forward pass. A batch holds several sequences, each with its own
/// cache, so a server can run many conversations in one pass (continuous batching).
public struct SequenceInput {
    public var tokens: [Int]
    public var cache: KVCache
    public var logits: LogitRows

    public init(tokens: [Int], cache: KVCache, logits: LogitRows) {
        self.tokens = tokens
        self.cache = cache
        self.logits = logits
    }
}

/// Threads, scratch memory and (optionally) a tap recorder for forward passes; one per caller, reused
/// across passes, never used by two passes at once.
///
/// Every buffer a pass needs comes from `arena`, which stops growing once it has seen a pass of each
/// shape: a decode step allocates no scratch memory.
public final class ForwardContext {
    public let pool: ThreadPool
    let linear = LinearWorkspace()
    public let arena = ScratchArena()
    /// When set, each named step of a pass is copied here (`whale score --dump-taps`).
    public var taps: TapRecorder?

    public init(pool: ThreadPool, taps: TapRecorder? = nil) {
        self.pool = pool
        self.taps = taps
    }

    /// `output[t] = weight · input[t]` for `tokens` rows (`Linear.apply` with this context's threads).
    func linear(
        _ weight: WeightMatrix, _ input: UnsafePointer<Float>, tokens: Int, into output: UnsafeMutablePointer<Float>
    ) {
        Linear.apply(weight, input: input, tokens: tokens, output: output, pool: pool, workspace: linear)
    }

    /// Several independent products as one parallel job (`Linear.apply(_:pool:workspace:)`): each output is
    /// what `linear` on it alone writes.
    func linear(_ products: [Linear.Product]) {
        products.withUnsafeBufferPointer { Linear.apply($0, pool: pool, workspace: linear) }
    }

    /// Records `values` (`shape`, outermost first) as tap `name` of `layer`, when taps are on.
    @inline(__always)
    func tap(_ name: String, _ layer: Int?, _ values: UnsafePointer<Float>, _ shape: @autoclosure () -> [Int]) {
        if let taps { taps.record(name, layer: layer, values, shape: shape()) }
    }
}

/// A decoder-only language model: token ids in, next-token logits out.
public protocol LanguageModel: AnyObject, Sendable {
    /// Architecture name, as the file declares it.
    var architecture: String { get }
    var vocabularySize: Int { get }
    var hiddenSize: Int { get }
    /// The context length the model was trained for.
    var contextLength: Int { get }
    /// Bytes the cache holds per token (all layers).
    var cacheBytesPerToken: Int { get }

    /// An empty cache for one sequence of up to `capacity` tokens.
    func makeCache(capacity: Int) -> KVCache

    /// Appends each sequence's tokens to its cache and returns, per sequence, the requested logit rows
    /// (`rows × vocabularySize` values, row-major).
    func forward(_ batch: [SequenceInput], context: ForwardContext) throws -> [[Float]]

    /// `forward`, also returning every fed token's final normed hidden state (`tokens × hiddenSize` per
    /// sequence) — what a draft module reads.
    func forwardKeepingHidden(_ batch: [SequenceInput], context: ForwardContext) throws -> (
        logits: [[Float]], hidden: [[Float]]
    )
}

/// A model whose forward passes run in stages on different processors (a pipeline across the ranks of an MPI
/// job, WhaleDistributed). A caller with independent batches — the server's sequences, in groups — begins a
/// pass while earlier ones are still in later stages, so every stage works at once (micro-batches).
public protocol PipelinedLanguageModel: LanguageModel {
    /// The stages a pass goes through: how many passes are worth having in flight.
    var stageCount: Int { get }
    /// Starts a pass over `batch` (this process's stage runs now); `finishPass` returns its logits. The
    /// batch's caches must not be used by another pass until this one is finished.
    func beginPass(_ batch: [SequenceInput], context: ForwardContext) throws
    /// The logits of the oldest pass begun and not finished yet (as `forward` returns them); a pass that
    /// failed on another stage throws here, its caches left as they were before it.
    func finishPass() throws -> [[Float]]
    /// Passes begun and not finished.
    var passesInFlight: Int { get }
}

/// A model that can draft its own next tokens (DeepSeek-V3's multi-token-prediction module), for
/// self-speculative decoding: the draft is checked by the model itself, so the output does not change.
public protocol DraftingLanguageModel: LanguageModel {
    /// Whether the loaded checkpoint has a draft module.
    var canDraft: Bool { get }
    /// An empty cache for the draft module.
    func makeDraftCache(capacity: Int) -> KVCache
    /// Feeds pairs (hidden state at position p, token at p + 1) to the draft module and returns its logits for
    /// the token after the last pair's token.
    func draft(hidden: [Float], tokens: [Int], cache: KVCache, context: ForwardContext) throws -> [Float]
}
