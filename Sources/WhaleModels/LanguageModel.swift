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
    func rows(start: Int, count: Int) -> Range<Int> {
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

/// Thread pool and scratch memory for forward passes; one per caller, reused across passes.
public final class ForwardContext {
    public let pool: ThreadPool
    let linear = LinearWorkspace()

    public init(pool: ThreadPool) { self.pool = pool }
}

/// A decoder-only language model: token ids in, next-token logits out.
public protocol LanguageModel: AnyObject, Sendable {
    /// Architecture name, as the file declares it.
    var architecture: String { get }
    var vocabularySize: Int { get }
    /// The context length the model was trained for.
    var contextLength: Int { get }
    /// Bytes the cache holds per token (all layers).
    var cacheBytesPerToken: Int { get }

    /// An empty cache for one sequence of up to `capacity` tokens.
    func makeCache(capacity: Int) -> KVCache

    /// Appends each sequence's tokens to its cache and returns, per sequence, the requested logit rows
    /// (`rows × vocabularySize` values, row-major).
    func forward(_ batch: [SequenceInput], context: ForwardContext) throws -> [[Float]]
}

/// A model that can draft its own next tokens (DeepSeek-V3's multi-token-prediction module), for
/// self-speculative decoding: the draft is checked by the model itself, so the output does not change.
public protocol DraftingLanguageModel: LanguageModel {
    /// Whether the loaded checkpoint has a draft module.
    var canDraft: Bool { get }
    var hiddenSize: Int { get }
    /// An empty cache for the draft module.
    func makeDraftCache(capacity: Int) -> KVCache
    /// `forward`, also returning every fed token's final hidden state (`tokens × hiddenSize` per sequence).
    func forwardKeepingHidden(_ batch: [SequenceInput], context: ForwardContext) throws -> (
        logits: [[Float]], hidden: [[Float]]
    )
    /// Feeds pairs (hidden state at position p, token at p + 1) to the draft module and returns its logits for
    /// the token after the last pair's token.
    func draft(hidden: [Float], tokens: [Int], cache: KVCache, context: ForwardContext) throws -> [Float]
}
