import Foundation
import Synchronization
import WhaleCore
import WhaleEngine
import WhaleKernels
import WhaleModels
import WhaleTokenizer

/// One generation request as the scheduler runs it.
public struct GenerationJob: Sendable {
    public var request: GenerationRequest
    /// Log-probabilities to report per generated token: nil none, 0 the chosen token's, k also the k best.
    public var logprobs: Int?
    /// Token id → bias added to its logit before sampling (−100 bans, +100 forces).
    public var logitBias: [Int: Float]

    public init(request: GenerationRequest, logprobs: Int? = nil, logitBias: [Int: Float] = [:]) {
        self.request = request
        self.logprobs = logprobs
        self.logitBias = logitBias
    }
}

/// A generated token with its log-probability and the most likely alternatives (when asked for).
public struct TokenChoice: Sendable {
    public var id: Int
    public var logprob: Double?
    public var top: [(id: Int, logprob: Double)]
    /// The stop token that ended generation: reported with completions' logprobs, as OpenAI and vLLM do (a
    /// client scoring with `max_tokens: 1` counts on one generated entry), but not part of the text.
    public var endsGeneration = false
}

/// What a running job reports, in order: text and tokens as they become final, then one `finished`.
public enum GenerationEvent: Sendable {
    case tokens(text: String, tokens: [TokenChoice])
    case finished(GenerationResult)
    case failed(WhaleError)
}

/// Continuous batching: one thread owns the model and runs one forward pass per step over every active
/// sequence — one token for each decoding sequence, plus prompt chunks of newly admitted ones under a
/// per-step token budget, so a long prompt does not freeze the others. Requests join between steps and
/// leave when they finish (or their client goes away), freeing their slot.
///
/// Each slot is a `Generator` (its own cache, kept between requests), so a request that shares a prefix
/// with what a free slot last held (a growing conversation, a common system prompt) reuses it. Every
/// sequence's tokens depend on its own inputs only (attention, sampling and rounding are per sequence), so
/// a request gives the same output alone or among others.
public final class Scheduler: @unchecked Sendable {
    public struct Configuration: Sendable {
        /// Sequences decoded together.
        public var parallel: Int
        /// Context per sequence.
        public var contextSize: Int
        /// Requests waiting for a slot before new ones are refused.
        public var maxQueue: Int
        /// Tokens fed per step, decoding tokens first, then prompt chunks.
        public var stepTokens: Int

        public init(parallel: Int = 4, contextSize: Int = 4096, maxQueue: Int = 64, stepTokens: Int = 512) {
            self.parallel = parallel
            self.contextSize = contextSize
            self.maxQueue = maxQueue
            self.stepTokens = stepTokens
        }
    }

    /// A submitted job: its events go out through `continuation`; `cancelled` is set when the client leaves.
    final class Ticket: Sendable {
        let job: GenerationJob
        let continuation: AsyncStream<GenerationEvent>.Continuation
        let cancelled = Atomic<Bool>(false)
        let submitted = ContinuousClock.now

        init(job: GenerationJob, continuation: AsyncStream<GenerationEvent>.Continuation) {
            self.job = job
            self.continuation = continuation
        }
    }

    /// A slot: a sequence and the job it runs, if any.
    final class Slot {
        let generator: Generator
        var ticket: Ticket?
        var state: GenerationState?
        /// When the job's last token came (for the inter-token latency).
        var lastToken: ContinuousClock.Instant?

        init(generator: Generator) { self.generator = generator }
    }

    public let model: any LanguageModel
    public let tokenizer: Tokenizer?
    public let configuration: Configuration
    let context: ForwardContext
    let slots: [Slot]
    /// Guards `queue`, `exclusive`, `stopping` and `active`; signalled when work arrives.
    private let condition = NSCondition()
    private var queue: [Ticket] = []
    /// Work that needs a pass of its own (scoring), run between steps.
    private var exclusive: [() -> Void] = []
    private var stopping = false
    /// Slots running a job (read by `activeSequences` from other threads).
    private var active = 0
    private var thread: Thread?
    public let metrics: ServerMetrics
    /// A model split across the ranks of an MPI job: the slots form one group per stage (slot i in group
    /// i mod stages), and each step begins one group's pass while the others' are in later stages, so every
    /// rank computes at once (micro-batches). Nil for a model in one process: one pass over all slots per step.
    private let pipeline: (any PipelinedLanguageModel)?
    private let groups: [[Slot]]
    /// Groups with a pass in flight, oldest first (the order the pipeline answers in), and their inputs.
    private var inFlight: [(group: Int, inputs: [(slot: Slot, input: SequenceInput)])] = []
    private var nextGroup = 0

    public init(
        model: any LanguageModel, tokenizer: Tokenizer?, pool: ThreadPool, configuration: Configuration,
        metrics: ServerMetrics = ServerMetrics()
    ) {
        self.model = model
        self.tokenizer = tokenizer
        self.configuration = configuration
        self.metrics = metrics
        let context = ForwardContext(pool: pool)
        self.context = context
        // One context for every pass: they all run on the scheduler's thread, one at a time.
        let slots = (0..<max(1, configuration.parallel)).map { _ in
            Slot(
                generator: Generator(
                    model: model, tokenizer: tokenizer, context: context, contextSize: configuration.contextSize))
        }
        self.slots = slots
        let pipelined = (model as? any PipelinedLanguageModel).flatMap { $0.stageCount > 1 ? $0 : nil }
        pipeline = pipelined
        let groupCount = min(pipelined?.stageCount ?? 1, slots.count)
        groups = (0..<groupCount).map { g in slots.indices.filter { $0 % groupCount == g }.map { slots[$0] } }
        // The thread holds the scheduler until `shutdown` ends its loop.
        let thread = Thread { self.run() }
        thread.name = "whale-scheduler"
        thread.stackSize = 8 << 20
        self.thread = thread
        thread.start()
    }

    /// Queues `job`; its events arrive on the returned stream. Throws when the queue is full. Ending the
    /// stream's iteration (a client that disconnects) stops the job within one step.
    public func submit(_ job: GenerationJob) throws -> AsyncStream<GenerationEvent> {
        var ticket: Ticket!
        let stream = AsyncStream<GenerationEvent> { continuation in
            ticket = Ticket(job: job, continuation: continuation)
        }
        ticket.continuation.onTermination = { [weak ticket] _ in ticket?.cancelled.store(true, ordering: .relaxed) }
        condition.lock()
        defer { condition.unlock() }
        guard !stopping else {
            throw WhaleError(.invalidArgument, field: "server", "the server is shutting down", hint: "retry later")
        }
        // Requests beyond the free slots wait; at most maxQueue of them.
        guard queue.count < configuration.maxQueue + max(0, slots.count - active) else {
            throw WhaleError(
                .tooLarge, field: "queue", "\(queue.count) requests are already waiting",
                hint: "retry after a moment")
        }
        queue.append(ticket)
        metrics.queueDepth(queue.count)
        condition.signal()
        return stream
    }

    /// Runs `work` on the scheduler's thread between steps, with the model and a context of its own: for a
    /// request that needs a forward pass outside generation (scoring a prompt).
    public func perform<T: Sendable>(
        _ work: @escaping @Sendable (any LanguageModel, ForwardContext) throws -> T
    ) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            condition.lock()
            defer { condition.unlock() }
            guard !stopping else {
                continuation.resume(
                    throwing: WhaleError(.invalidArgument, field: "server", "the server is shutting down"))
                return
            }
            exclusive.append { [model, context] in continuation.resume(with: Result { try work(model, context) }) }
            condition.signal()
        }
    }

    /// Stops taking work; running jobs end with `cancelled` after the current step.
    public func shutdown() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
    }

    // MARK: The loop (scheduler thread only)

    private func run() {
        while true {
            condition.lock()
            while !stopping && queue.isEmpty && exclusive.isEmpty && slots.allSatisfy({ $0.ticket == nil }) {
                condition.wait()
            }
            let work = exclusive
            exclusive.removeAll()
            if stopping {
                let waiting = queue
                queue.removeAll()
                condition.unlock()
                drainPipeline()
                for job in work { job() }
                for ticket in waiting { ticket.continuation.finish() }
                for slot in slots where slot.ticket != nil { finish(slot, reason: .cancelled) }
                return
            }
            let free = slots.filter { $0.ticket == nil }.count
            var admitted: [Ticket] = []
            while admitted.count < free && !queue.isEmpty { admitted.append(queue.removeFirst()) }
            metrics.queueDepth(queue.count)
            condition.unlock()
            // Exclusive work runs its own passes (`forward`), which must not overtake the pipeline's.
            if !work.isEmpty { drainPipeline() }
            for job in work { job() }
            for ticket in admitted { admit(ticket) }
            if pipeline != nil {
                stepPipelined(group: nextGroup)
                nextGroup = (nextGroup + 1) % groups.count
            } else {
                step()
            }
        }
    }

    /// Starts `ticket` in the free slot whose cache shares the longest prefix with its prompt.
    private func admit(_ ticket: Ticket) {
        let prompt = ticket.job.request.promptTokens
        let free = slots.filter { $0.ticket == nil }
        guard
            let slot = free.max(by: {
                commonPrefix($0.generator.cachedTokens, prompt) < commonPrefix($1.generator.cachedTokens, prompt)
            })
        else { return }
        do {
            slot.state = try slot.generator.start(ticket.job.request)
            slot.ticket = ticket
            slot.lastToken = nil
            condition.lock()
            active += 1
            condition.unlock()
            metrics.activeSequences(active)
        } catch let error as WhaleError {
            ticket.continuation.yield(.failed(error))
            ticket.continuation.finish()
        } catch {
            ticket.continuation.yield(.failed(WhaleError(.invalidArgument, field: "request", "\(error)")))
            ticket.continuation.finish()
        }
    }

    /// One forward pass over every running sequence.
    private func step() {
        guard let inputs = nextInputs(slots) else { return }
        let logits: [[Float]]
        do {
            logits = try model.forward(inputs.map(\.input), context: context)
        } catch {
            fail(inputs, error)
            return
        }
        for ((slot, input), row) in zip(inputs, logits) {
            absorb(slot, input: input, logits: row)
        }
    }

    /// A pipelined step for `group`: the logits of its pass in flight (if any) are taken in, then its next
    /// pass begins — while the other groups' passes are on other ranks.
    private func stepPipelined(group: Int) {
        guard let pipeline else { return }
        if inFlight.first?.group == group { finishOldestPass(pipeline) }
        guard let inputs = nextInputs(groups[group]) else { return }
        do {
            try pipeline.beginPass(inputs.map(\.input), context: context)
            inFlight.append((group, inputs))
        } catch {
            fail(inputs, error)
        }
    }

    /// Takes in the logits of the oldest pass in flight.
    private func finishOldestPass(_ pipeline: any PipelinedLanguageModel) {
        let (_, inputs) = inFlight.removeFirst()
        let logits: [[Float]]
        do {
            logits = try pipeline.finishPass()
        } catch {
            fail(inputs, error)
            return
        }
        for ((slot, input), row) in zip(inputs, logits) {
            absorb(slot, input: input, logits: row)
        }
    }

    /// Finishes every pass in flight (before exclusive work or shutdown).
    private func drainPipeline() {
        guard let pipeline else { return }
        while !inFlight.isEmpty { finishOldestPass(pipeline) }
    }

    private func fail(_ inputs: [(slot: Slot, input: SequenceInput)], _ error: any Error) {
        let problem = (error as? WhaleError) ?? WhaleError(.invalidArgument, field: "forward", "\(error)")
        for (slot, _) in inputs { fail(slot, problem) }
    }

    /// The inputs of the next pass over `slots`: decoding sequences first (one token each), then prompt
    /// chunks within the step's token budget; nil when there is nothing to run (finished jobs are closed).
    private func nextInputs(_ slots: [Slot]) -> [(slot: Slot, input: SequenceInput)]? {
        var inputs: [(slot: Slot, input: SequenceInput)] = []
        var budget = configuration.stepTokens
        for slot in slots {
            guard let ticket = slot.ticket, let state = slot.state else { continue }
            if ticket.cancelled.load(ordering: .relaxed) {
                finish(slot, reason: .cancelled)
                continue
            }
            if state.isPrompting { continue }
            if let input = slot.generator.nextInput(for: state) {
                inputs.append((slot, input))
                budget -= input.tokens.count
            }
        }
        for slot in slots where slot.ticket != nil && slot.state?.isPrompting == true && budget > 0 {
            if let input = slot.generator.nextInput(for: slot.state!, limit: budget) {
                inputs.append((slot, input))
                budget -= input.tokens.count
            }
        }
        if inputs.isEmpty {
            for slot in slots where slot.ticket != nil && slot.state?.isFinished == true {
                finish(slot, reason: nil)
            }
            return nil
        }
        metrics.cacheUse(self.slots.reduce(0) { $0 + ($1.ticket == nil ? 0 : $1.generator.cache.count) })
        return inputs
    }

    private func absorb(_ slot: Slot, input: SequenceInput, logits: [Float]) {
        guard let ticket = slot.ticket, var state = slot.state else { return }
        var row = logits
        for (token, bias) in ticket.job.logitBias where token >= 0 && token < row.count { row[token] += bias }
        let before = state.tokens.count
        do {
            let text = try slot.generator.absorb(input, logits: row, into: &state)
            slot.state = state
            var choices: [TokenChoice] = []
            if state.tokens.count > before {
                let token = state.tokens[before]
                choices.append(choice(token, logits: row, top: ticket.job.logprobs))
                let now = ContinuousClock.now
                if let last = slot.lastToken {
                    metrics.nextToken(after: now - last)
                } else {
                    metrics.firstToken(after: now - ticket.submitted)
                }
                slot.lastToken = now
                metrics.generated(tokens: 1)
            } else if let end = state.endToken, ticket.job.logprobs != nil {
                var last = choice(end, logits: row, top: ticket.job.logprobs)
                last.endsGeneration = true
                choices.append(last)
            }
            if !text.isEmpty || !choices.isEmpty { ticket.continuation.yield(.tokens(text: text, tokens: choices)) }
            if state.isFinished { finish(slot, reason: nil) }
        } catch let error as WhaleError {
            fail(slot, error)
        } catch {
            fail(slot, WhaleError(.invalidArgument, field: "generation", "\(error)"))
        }
    }

    private func choice(_ token: Int, logits: [Float], top: Int?) -> TokenChoice {
        guard let top else { return TokenChoice(id: token, logprob: nil, top: []) }
        var row = [Double](repeating: 0, count: logits.count)
        logits.withUnsafeBufferPointer { input in
            row.withUnsafeMutableBufferPointer {
                Ops.logSoftmax(input.baseAddress!, count: logits.count, output: $0.baseAddress!)
            }
        }
        let best = row.withUnsafeBufferPointer { largestIndices($0, count: top) }.map { ($0, row[$0]) }
        return TokenChoice(id: token, logprob: row[token], top: best)
    }

    /// Ends the slot's job (`reason` overrides the state's own when the job is cut short) and frees the slot.
    private func finish(_ slot: Slot, reason: FinishReason?) {
        guard let ticket = slot.ticket, var state = slot.state else { return }
        if let reason, !state.isFinished { state.finish(reason) }
        let tail = state.complete()
        if !tail.isEmpty { ticket.continuation.yield(.tokens(text: tail, tokens: [])) }
        let result = state.result
        ticket.continuation.yield(.finished(result))
        ticket.continuation.finish()
        metrics.finished(result)
        release(slot)
    }

    private func fail(_ slot: Slot, _ error: WhaleError) {
        slot.ticket?.continuation.yield(.failed(error))
        slot.ticket?.continuation.finish()
        release(slot)
    }

    private func release(_ slot: Slot) {
        slot.ticket = nil
        slot.state = nil
        condition.lock()
        active -= 1
        condition.unlock()
        metrics.activeSequences(active)
    }
}

/// Length of the common prefix of two token lists.
func commonPrefix(_ a: [Int], _ b: [Int]) -> Int {
    var n = 0
    while n < min(a.count, b.count) && a[n] == b[n] { n += 1 }
    return n
}
