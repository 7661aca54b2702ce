import Synchronization
import WhaleCore
import WhaleKernels
import WhaleModels

/// Rank 0's view of a model split across the ranks of an MPI job (pipeline parallelism): a `LanguageModel`
/// like any other, so generation, scoring, perplexity, benchmarks and the server run on it unchanged.
///
/// A forward pass embeds the tokens and runs rank 0's layers here, sends the residual stream with a
/// `PassMessage` to rank 1, which runs its layers and hands on, and so on; the last rank applies the final
/// norm and output head and sends the logits back to rank 0. Each rank holds its layers' cache of every
/// sequence: rank 0's `KVCache` objects carry a `RemoteSequence` follower naming the sequence to the others.
/// The arithmetic of every layer is the single-process one, so the results are the same.
public final class PipelineModel: PipelinedLanguageModel, @unchecked Sendable {
    let stage: TransformerDecoder
    let communicator: Communicator
    public let plan: PipelinePlan
    /// Ids of sequences whose caches are gone, told to the workers with the next pass.
    let released = ReleasedSequences()
    private let nextID = Atomic<Int>(0)

    public init(stage: TransformerDecoder, communicator: Communicator, plan: PipelinePlan) {
        precondition(communicator.rank == 0 && communicator.size > 1)
        self.stage = stage
        self.communicator = communicator
        self.plan = plan
    }

    public var architecture: String { stage.architecture }
    public var vocabularySize: Int { stage.vocabularySize }
    public var hiddenSize: Int { stage.hiddenSize }
    public var contextLength: Int { stage.contextLength }
    /// All layers' cache, across the ranks.
    public var cacheBytesPerToken: Int { plan.layers.last!.upperBound * stage.cacheBytesPerTokenAndLayer }

    public func makeCache(capacity: Int) -> KVCache {
        let cache = stage.makeCache(capacity: capacity)
        let id = nextID.add(1, ordering: .relaxed).newValue
        cache.follower = RemoteSequence(id: id, released: released)
        return cache
    }

    public func forward(_ batch: [SequenceInput], context: ForwardContext) throws -> [[Float]] {
        precondition(inFlight.isEmpty, "PipelineModel.forward with passes in flight")
        try beginPass(batch, context: context)
        return try finishPass()
    }

    public var stageCount: Int { communicator.size }
    public var passesInFlight: Int { inFlight.count }

    /// A pass sent on and not yet answered: what is needed to split its logits, or to undo it on rank 0.
    private struct PassInFlight {
        var message: PassMessage
        var caches: [KVCache]
        var positions: [Int]
        /// The pass on its way to rank 1 (delivered by the time its answer comes).
        var send: Communicator.PendingSend
    }

    /// Passes in the order they began (the last rank answers in that order). Scheduler thread only.
    private var inFlight: [PassInFlight] = []

    public func beginPass(_ batch: [SequenceInput], context: ForwardContext) throws {
        guard context.taps == nil else {
            throw WhaleError(
                .invalidArgument, field: "--dump-taps", "taps are not recorded across MPI ranks",
                hint: "record taps in a single process (without mpirun)")
        }
        var sequences: [PassMessage.Sequence] = []
        for input in batch {
            guard let remote = input.cache.follower as? RemoteSequence else {
                preconditionFailure("PipelineModel: a cache not made by this model's makeCache")
            }
            sequences.append(
                PassMessage.Sequence(
                    id: remote.id, capacity: input.cache.capacity, position: input.cache.count, logits: input.logits,
                    tokens: input.tokens, discards: remote.takeDiscards()))
        }
        let message = PassMessage(released: released.take(), sequences: sequences)
        let positions = batch.map { $0.cache.count }
        do {
            guard
                case .hidden(let hidden) = try stage.runStage(
                    batch, incoming: nil, producesLogits: false, context: context)
            else { preconditionFailure("rank 0 of a pipeline returned logits") }
            let send = try message.encode(hidden: hidden).withUnsafeBytes {
                try communicator.startSend($0, to: 1, tag: .pass)
            }
            inFlight.append(
                PassInFlight(message: message, caches: batch.map(\.cache), positions: positions, send: send))
        } catch {
            Self.undo(batch.map(\.cache), positions)
            throw error
        }
    }

    public func finishPass() throws -> [[Float]] {
        precondition(!inFlight.isEmpty, "PipelineModel.finishPass without a pass in flight")
        let pass = inFlight.removeFirst()
        let last = communicator.size - 1
        do {
            // Everything for rank 0 comes from the last rank (a failure is handed down the chain), so passes
            // are answered in the order they began.
            let arrival = try communicator.wait(from: last, tags: [.logits, .failure])
            // Any answer means rank 1 has received the pass: its bytes can go.
            try communicator.complete(pass.send)
            if arrival.tag == .failure {
                let text = String(decoding: try communicator.receiveBytes(arrival), as: UTF8.self)
                throw WhaleError(.distributedError, field: "pipeline", text, hint: "the pass was not applied")
            }
            let logits = try communicator.receiveFloats(arrival)
            let v = vocabularySize
            guard logits.count == pass.message.logitRows * v else {
                throw WhaleError(
                    .distributedError, field: "rank \(last)",
                    "sent \(logits.count) logits for \(pass.message.logitRows) rows of \(v)")
            }
            var result: [[Float]] = []
            var start = 0
            for s in pass.message.sequences {
                let rows = s.logits.rows(start: 0, count: s.tokens.count).count
                result.append(Array(logits[(start * v)..<((start + rows) * v)]))
                start += rows
            }
            return result
        } catch {
            Self.undo(pass.caches, pass.positions)
            throw error
        }
    }

    /// The other ranks did not apply a failed pass: neither does rank 0.
    private static func undo(_ caches: [KVCache], _ positions: [Int]) {
        for (cache, position) in zip(caches, positions) where cache.count > position { cache.truncate(to: position) }
    }

    public func forwardKeepingHidden(_ batch: [SequenceInput], context: ForwardContext) throws -> (
        logits: [[Float]], hidden: [[Float]]
    ) {
        throw WhaleError(
            .invalidArgument, field: "mtp", "self-speculative decoding (--mtp) does not run across MPI ranks yet",
            hint: "run without --mtp")
    }
}

/// A rank-0 cache's link to its mirrors on the other ranks: the sequence id, the context shifts not yet
/// replayed there, and — when the cache is freed — the release of the mirrors.
final class RemoteSequence: CacheFollower, @unchecked Sendable {
    let id: Int
    let released: ReleasedSequences
    /// Touched only by the thread running the cache's passes.
    private var discards: [Range<Int>] = []

    init(id: Int, released: ReleasedSequences) {
        self.id = id
        self.released = released
    }

    func cacheDiscarded(_ range: Range<Int>) { discards.append(range) }

    func takeDiscards() -> [Range<Int>] {
        defer { discards = [] }
        return discards
    }

    deinit { released.add(id) }
}

/// Sequence ids whose caches were freed (from any thread) and not yet told to the workers.
final class ReleasedSequences: Sendable {
    private let ids = Mutex<[Int]>([])

    func add(_ id: Int) { ids.withLock { $0.append(id) } }

    func take() -> [Int] {
        ids.withLock { ids in
            defer { ids = [] }
            return ids
        }
    }
}

/// A rank after 0: runs its layers for every pass until rank 0 says stop. Passes, and a failed pass's
/// error, go down the chain in order; the last rank sends the logits (or the error) to rank 0.
public struct PipelineWorker {
    let stage: TransformerDecoder
    let communicator: Communicator
    let context: ForwardContext

    public init(stage: TransformerDecoder, communicator: Communicator, context: ForwardContext) {
        precondition(communicator.rank > 0)
        self.stage = stage
        self.communicator = communicator
        self.context = context
    }

    var isLast: Bool { communicator.rank == communicator.size - 1 }
    /// Where this rank's results go: the next rank, or rank 0 from the last.
    var next: Int { isLast ? 0 : communicator.rank + 1 }

    /// Serves passes until the stop message, then reports `peakResidentBytes()` to rank 0.
    public func run(peakResidentBytes: () -> Int) throws {
        var caches: [Int: KVCache] = [:]
        while true {
            let arrival = try communicator.wait(from: nil, tags: [.pass, .stop, .failure])
            let bytes = try communicator.receiveBytes(arrival)
            if arrival.tag == .failure {
                try bytes.withUnsafeBytes { try communicator.send($0, to: next, tag: .failure) }
                continue
            }
            if arrival.tag == .stop {
                var report = Int64(peakResidentBytes()).littleEndian
                try withUnsafeBytes(of: &report) { try communicator.send($0, to: 0, tag: .report) }
                return
            }
            do {
                let (message, offset) = try PassMessage.decode(bytes)
                for id in message.released { caches[id] = nil }
                var batch: [SequenceInput] = []
                for s in message.sequences {
                    let cache = caches[s.id] ?? stage.makeCache(capacity: s.capacity)
                    caches[s.id] = cache
                    guard cache.capacity == s.capacity else {
                        throw WhaleError(
                            .distributedError, field: "sequence \(s.id)",
                            "capacity \(s.capacity) differs from this rank's \(cache.capacity)")
                    }
                    for range in s.discards {
                        guard range.upperBound <= cache.count else {
                            throw WhaleError(
                                .distributedError, field: "sequence \(s.id)",
                                "a context shift of \(range) beyond this rank's \(cache.count) cached tokens",
                                hint: "the ranks' caches disagree; restart the job")
                        }
                        cache.discard(range)
                    }
                    if cache.count > s.position { cache.truncate(to: s.position) }
                    guard cache.count == s.position else {
                        throw WhaleError(
                            .distributedError, field: "sequence \(s.id)",
                            "rank 0 is at position \(s.position), this rank's cache holds \(cache.count) tokens",
                            hint: "the ranks' caches disagree; restart the job")
                    }
                    batch.append(SequenceInput(tokens: s.tokens, cache: cache, logits: s.logits))
                }
                let output = try bytes.withUnsafeBytes { buffer in
                    let floats = UnsafeBufferPointer(
                        start: (buffer.baseAddress! + offset).assumingMemoryBound(to: Float.self),
                        count: (buffer.count - offset) / 4)
                    return try stage.runStage(batch, incoming: floats, producesLogits: isLast, context: context)
                }
                switch output {
                case .hidden(let hidden):
                    try message.encode(hidden: hidden).withUnsafeBytes {
                        try communicator.send($0, to: next, tag: .pass)
                    }
                case .logits(let rows):
                    let all = rows.flatMap { $0 }
                    try all.withUnsafeBufferPointer { try communicator.send(floats: $0, to: 0, tag: .logits) }
                }
            } catch let error as WhaleError {
                // Handed down the chain to the last rank, which tells rank 0 in the order of the passes.
                let text = "rank \(communicator.rank): \(error)"
                try Array(text.utf8).withUnsafeBytes { try communicator.send($0, to: next, tag: .failure) }
            }
        }
    }
}
