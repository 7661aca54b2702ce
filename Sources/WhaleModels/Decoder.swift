import WhaleCore
import WhaleFormats
import WhaleKernels

// The forward skeleton every architecture shares:
//
//   h = embed(tokens)                                   // [T, hidden], every token of every sequence
//   for each layer l:  layer_l.apply(h)                 // the architecture's block: attention + FFN, residuals
//   logits = rmsnorm(h[rows]) · output_norm · Woutᵀ     // only the rows each sequence asked for
//
// An architecture (Llama/, DeepSeek/) supplies its configuration, its layers (`DecoderLayer`) and its cache
// layout; this file does the rest: checking ids and room, flattening the batch, the layer loop, the final
// norm and logit rows, hidden-state capture for a draft module, and the taps around them.

/// The tokens of one forward pass: every token of every sequence of the batch, in batch order.
struct ForwardPass {
    let batch: [SequenceInput]
    /// Tokens in the pass.
    let count: Int
    /// `[T]` each token's sequence (index into `batch`).
    let sequence: UnsafePointer<Int>
    /// `[T]` each token's position in its sequence.
    let positions: UnsafePointer<Int>
    /// The largest cache capacity in the batch: the longest score row attention can need.
    let longestContext: Int

    func cache(_ t: Int) -> KVCache { batch[sequence[t]].cache }
    /// How many tokens token t's sequence feeds in this pass.
    func passTokens(_ t: Int) -> Int { batch[sequence[t]].tokens.count }

    /// The pass of `batch`: each sequence's tokens at the positions after what its cache holds; the index
    /// arrays live in `arena`.
    init(_ batch: [SequenceInput], arena: ScratchArena) {
        self.batch = batch
        count = batch.reduce(0) { $0 + $1.tokens.count }
        let sequence = arena.buffer(Int.self, count: count)
        let positions = arena.buffer(Int.self, count: count)
        var t = 0
        var longest = 0
        for (s, input) in batch.enumerated() {
            longest = max(longest, input.cache.capacity)
            for k in input.tokens.indices {
                sequence[t] = s
                positions[t] = input.cache.count + k
                t += 1
            }
        }
        self.sequence = UnsafePointer(sequence)
        self.positions = UnsafePointer(positions)
        longestContext = longest
    }
}

/// `0..<count` split into the fewest chunks of at most `limit` tokens, their sizes differing by at most one, so
/// that no chunk is a lone token when `count` > 1 (a one-token product takes a kernel's decode path, whose sums
/// round differently). Blocks with wide per-token intermediates run a prompt pass chunk by chunk to bound its
/// scratch memory.
func tokenChunks(_ count: Int, atMost limit: Int) -> [Range<Int>] {
    guard count > 0 else { return [] }
    let chunks = (count + limit - 1) / limit
    return (0..<chunks).map { c in (c * count / chunks)..<((c + 1) * count / chunks) }
}

/// One decoder layer of an architecture: reads the residual stream of every token of a pass and adds its
/// attention and feed-forward outputs in place, writing each token's attention state to `cacheLayer` of its
/// sequence's cache. `layer` names the layer in taps.
protocol DecoderLayer {
    func apply(
        _ hidden: UnsafeMutablePointer<Float>, pass: ForwardPass, cacheLayer: Int, layer: Int, context: ForwardContext)
}

/// A module that drafts tokens for self-speculative decoding (DeepSeek-V3's MTP), attached to a decoder.
protocol DraftModule {
    func makeCache(capacity: Int) -> KVCache
    func draft(
        hidden: [Float], tokens: [Int], cache: KVCache, decoder: TransformerDecoder, context: ForwardContext
    ) throws -> [Float]
}

/// A decoder-only transformer: an embedding, an architecture's layers, a final RMSNorm and an output head.
public final class TransformerDecoder: DraftingLanguageModel, @unchecked Sendable {
    public let architecture: String
    public let vocabularySize: Int
    public let hiddenSize: Int
    public let contextLength: Int
    let rmsNormEps: Float
    let embedding: WeightMatrix
    let layers: [any DecoderLayer]
    /// The model's index of `layers[0]`: 0, or where a pipeline stage starts (taps name layers by it).
    public let firstLayer: Int
    let finalNorm: [Float]
    let output: WeightMatrix
    let cacheLayout: KVCache.Layout
    let rotated: KVCache.RotatedPart?
    let drafter: (any DraftModule)?
    /// Keep the mapped files (which the matrices point into) and the weights converted at load alive.
    let files: ModelFiles
    let owned: OwnedMemory

    init(
        architecture: String, vocabularySize: Int, hiddenSize: Int, contextLength: Int, rmsNormEps: Float,
        embedding: WeightMatrix, layers: [any DecoderLayer], firstLayer: Int = 0, finalNorm: [Float],
        output: WeightMatrix,
        cacheLayout: KVCache.Layout, rotated: KVCache.RotatedPart?, drafter: (any DraftModule)? = nil,
        files: ModelFiles, owned: OwnedMemory
    ) {
        self.architecture = architecture
        self.vocabularySize = vocabularySize
        self.hiddenSize = hiddenSize
        self.contextLength = contextLength
        self.rmsNormEps = rmsNormEps
        self.embedding = embedding
        self.layers = layers
        self.firstLayer = firstLayer
        self.finalNorm = finalNorm
        self.output = output
        self.cacheLayout = cacheLayout
        self.rotated = rotated
        self.drafter = drafter
        self.files = files
        self.owned = owned
    }

    public var cacheBytesPerToken: Int { layers.count * cacheLayout.bytesPerTokenAndLayer }

    /// The decoder layers this object runs (all of the model's, or a pipeline stage's).
    public var layerCount: Int { layers.count }

    /// Cache bytes per token and layer.
    public var cacheBytesPerTokenAndLayer: Int { cacheLayout.bytesPerTokenAndLayer }

    public func makeCache(capacity: Int) -> KVCache {
        KVCache(layout: cacheLayout, layers: layers.count, capacity: capacity, rotated: rotated)
    }

    public func forward(_ batch: [SequenceInput], context: ForwardContext) throws -> [[Float]] {
        try run(batch, context: context, keepHidden: false).logits
    }

    public func forwardKeepingHidden(_ batch: [SequenceInput], context: ForwardContext) throws -> (
        logits: [[Float]], hidden: [[Float]]
    ) {
        try run(batch, context: context, keepHidden: true)
    }

    /// What a pipeline stage hands on: the residual stream for the next stage, or the last stage's logits.
    public enum StageOutput {
        /// `[T, hidden]` after this stage's layers, in the context's arena (valid until its next pass).
        case hidden(UnsafeBufferPointer<Float>)
        /// Per sequence, the requested logit rows (as `forward`).
        case logits([[Float]])
    }

    /// One stage of a pipeline split across processes (WhaleDistributed): embeds the tokens (`incoming` nil:
    /// the first stage) or takes the previous stage's residual stream `[T, hidden]`, runs this object's
    /// layers over the batch, and returns the residual stream — or, with `producesLogits` (the last stage),
    /// the logits `forward` returns.
    public func runStage(
        _ batch: [SequenceInput], incoming: UnsafeBufferPointer<Float>?, producesLogits: Bool, context: ForwardContext
    ) throws -> StageOutput {
        let (pass, hidden) = try prepare(batch, context: context)
        let size = pass.count * hiddenSize
        guard let hidden else {
            return producesLogits ? .logits(batch.map { _ in [] }) : .hidden(UnsafeBufferPointer(start: nil, count: 0))
        }
        if let incoming {
            guard incoming.count == size else {
                throw WhaleError(
                    .invalidShape, field: "hidden states",
                    "the previous stage sent \(incoming.count) values for \(pass.count) tokens × \(hiddenSize)")
            }
            hidden.update(from: incoming.baseAddress!, count: size)
        } else {
            embed(batch, into: hidden, context: context)
        }
        applyLayers(hidden, pass: pass, context: context)
        if producesLogits { return .logits(try head(hidden, batch: batch, keepHidden: false, context: context).logits) }
        return .hidden(UnsafeBufferPointer(start: hidden, count: size))
    }

    func run(_ batch: [SequenceInput], context: ForwardContext, keepHidden: Bool) throws -> (
        logits: [[Float]], hidden: [[Float]]
    ) {
        let (pass, hidden) = try prepare(batch, context: context)
        guard let hidden else { return (batch.map { _ in [] }, batch.map { _ in [] }) }
        embed(batch, into: hidden, context: context)
        applyLayers(hidden, pass: pass, context: context)
        return try head(hidden, batch: batch, keepHidden: keepHidden, context: context)
    }

    /// Checks the batch (ids, room in each cache) and lays out the pass; the residual stream `[T, hidden]`
    /// comes from the arena (nil for a pass without tokens).
    func prepare(_ batch: [SequenceInput], context: ForwardContext) throws -> (
        ForwardPass, UnsafeMutablePointer<Float>?
    ) {
        for input in batch {
            try input.cache.reserve(input.tokens.count)
            try checkTokens(input.tokens)
        }
        let arena = context.arena
        arena.reset()
        let pass = ForwardPass(batch, arena: arena)
        return (pass, pass.count == 0 ? nil : arena.floats(pass.count * hiddenSize))
    }

    /// Each token's embedding row.
    func embed(_ batch: [SequenceInput], into hidden: UnsafeMutablePointer<Float>, context: ForwardContext) {
        let d = hiddenSize
        var t = 0
        for input in batch {
            for token in input.tokens {
                embedding.dequantizeRow(token, into: hidden + t * d)
                t += 1
            }
        }
        context.tap("inp_embd", nil, hidden, [t, d])
    }

    /// This object's layers over the residual stream, then each cache marked as holding the pass's tokens.
    func applyLayers(_ hidden: UnsafeMutablePointer<Float>, pass: ForwardPass, context: ForwardContext) {
        let count = pass.count
        let d = hiddenSize
        for (l, layer) in layers.enumerated() {
            layer.apply(hidden, pass: pass, cacheLayer: l, layer: firstLayer + l, context: context)
            context.tap("l_out", firstLayer + l, hidden, [count, d])
        }
        for input in pass.batch { input.cache.advance(by: input.tokens.count) }
    }

    /// The final norm and output head over the rows each sequence asked for (and, with `keepHidden`, every
    /// token's normed state).
    func head(
        _ hidden: UnsafeMutablePointer<Float>, batch: [SequenceInput], keepHidden: Bool, context: ForwardContext
    ) throws -> (logits: [[Float]], hidden: [[Float]]) {
        let arena = context.arena
        let count = batch.reduce(0) { $0 + $1.tokens.count }
        let d = hiddenSize

        // The final norm of the rows each sequence asked for (all its tokens when hidden states are kept),
        // then one product with the output head for the rows of every sequence, so its weights are read
        // once per pass however many sequences decode together.
        let requested = batch.reduce(0) { $0 + $1.logits.rows(start: 0, count: $1.tokens.count).count }
        let selected = arena.floats(requested * d)  // [rows of all sequences, hidden]
        let normed = keepHidden ? arena.floats(count * d) : selected  // [T, hidden] when kept
        var states: [[Float]] = []
        var rowRanges: [Range<Int>] = []
        var start = 0
        var row = 0
        for input in batch {
            let tokens = start..<(start + input.tokens.count)
            let rows = input.logits.rows(start: start, count: input.tokens.count)
            start += input.tokens.count
            if keepHidden {
                let states0 = normed + tokens.lowerBound * d
                Ops.rmsNorm(
                    hidden + tokens.lowerBound * d, weight: finalNorm, rows: tokens.count, n: d, eps: rmsNormEps,
                    output: states0)
                states.append(Array(UnsafeBufferPointer(start: states0, count: tokens.count * d)))
                (selected + row * d).update(from: normed + rows.lowerBound * d, count: rows.count * d)
            } else {
                Ops.rmsNorm(
                    hidden + rows.lowerBound * d, weight: finalNorm, rows: rows.count, n: d, eps: rmsNormEps,
                    output: selected + row * d)
                states.append([])
            }
            rowRanges.append(row..<(row + rows.count))
            row += rows.count
        }
        context.tap("result_norm", nil, selected, [requested, d])
        let all = project(selected, rows: requested, through: output, context: context)
        // One sequence (every decode step of `whale run`) takes the product's array itself, not a copy.
        if rowRanges.count == 1 { return ([all], states) }
        let v = vocabularySize
        let logits = rowRanges.map { Array(all[($0.lowerBound * v)..<($0.upperBound * v)]) }
        return (logits, states)
    }

    /// Logits `[rows, vocabulary]` of `rows` normed hidden states through `head`.
    func project(_ normed: UnsafePointer<Float>, rows: Int, through head: WeightMatrix, context: ForwardContext)
        -> [Float]
    {
        if rows == 0 { return [] }
        var logits = [Float](repeating: 0, count: rows * vocabularySize)
        logits.withUnsafeMutableBufferPointer { buffer in
            context.linear(head, normed, tokens: rows, into: buffer.baseAddress!)
            context.tap("result_output", nil, buffer.baseAddress!, [rows, vocabularySize])
        }
        return logits
    }

    func checkTokens(_ tokens: [Int]) throws {
        for token in tokens where token < 0 || token >= vocabularySize {
            throw WhaleError(
                .invalidArgument, field: "token id", "\(token) is outside the vocabulary (0..<\(vocabularySize))")
        }
    }

    public var canDraft: Bool { drafter != nil }

    /// An empty cache for the draft module (a one-layer cache of this model's layout without one).
    public func makeDraftCache(capacity: Int) -> KVCache {
        drafter?.makeCache(capacity: capacity)
            ?? KVCache(layout: cacheLayout, layers: 1, capacity: capacity, rotated: rotated)
    }

    public func draft(hidden: [Float], tokens: [Int], cache: KVCache, context: ForwardContext) throws -> [Float] {
        guard let drafter else {
            throw WhaleError(
                .invalidArgument, field: "mtp", "this model has no multi-token-prediction module",
                hint: "run without --mtp; only checkpoints with num_nextn_predict_layers and the stored layer have one")
        }
        precondition(hidden.count == tokens.count * hiddenSize)
        if tokens.isEmpty { return [] }
        try cache.reserve(tokens.count)
        try checkTokens(tokens)
        context.arena.reset()
        return try drafter.draft(hidden: hidden, tokens: tokens, cache: cache, decoder: self, context: context)
    }
}
