import Foundation
import WhaleCore
import WhaleModels
import WhaleTokenizer

/// Why generation stopped.
public enum FinishReason: String, Sendable {
    /// The model produced an end-of-generation token.
    case endOfSequence = "stop"
    /// `maxTokens` were generated.
    case length
    /// A stop string appeared (it is not part of the text).
    case stopString = "stop_string"
    /// The caller asked to stop.
    case cancelled
    /// The context is full.
    case contextFull = "context_full"
}

public struct GenerationRequest: Sendable {
    public var promptTokens: [Int]
    public var maxTokens: Int
    public var sampling: SamplingParameters
    /// Generation stops before the first occurrence of any of these in the text.
    public var stopStrings: [String]
    /// Generation stops after any of these tokens (not included in the text).
    public var stopTokens: Set<Int>

    public init(
        promptTokens: [Int], maxTokens: Int, sampling: SamplingParameters, stopStrings: [String] = [],
        stopTokens: Set<Int> = []
    ) {
        self.promptTokens = promptTokens
        self.maxTokens = maxTokens
        self.sampling = sampling
        self.stopStrings = stopStrings
        self.stopTokens = stopTokens
    }
}

public struct GenerationResult: Sendable {
    public var tokens: [Int]
    public var text: String
    public var finishReason: FinishReason
    /// The stop string that ended generation (finish reason `stopString`).
    public var stopString: String?
    public var promptTokens: Int
    /// Prompt tokens actually computed (the rest were reused from the cache).
    public var promptTokensEvaluated: Int
    public var promptSeconds: Double
    public var generationSeconds: Double
    /// Self-speculative decoding: tokens the draft module proposed, and how many of them the model confirmed.
    public var draftedTokens = 0
    public var acceptedDraftTokens = 0
    /// Tokens dropped from the cache by context shifts.
    public var shiftedOutTokens = 0

    public var draftAcceptanceRate: Double { Double(acceptedDraftTokens) / Double(max(draftedTokens, 1)) }

    public var promptTokensPerSecond: Double { Double(promptTokensEvaluated) / max(promptSeconds, 1e-9) }
    public var generationTokensPerSecond: Double { Double(tokens.count) / max(generationSeconds, 1e-9) }
}

/// One conversation's sequence: its cache (kept across requests, so a growing conversation reuses its
/// prefix), its context-shift policy and its draft module. A request is `start`ed (the prompt fitted to the
/// context and fed after the reused prefix) and then `step`ped one token (or an accepted draft pair) at a
/// time; `generate` is that loop, as `whale run` and `chat` use it.
public final class Generator {
    public let model: any LanguageModel
    public let tokenizer: Tokenizer?
    public let context: ForwardContext
    public let cache: KVCache
    /// The tokens the cache holds, in order.
    public private(set) var cachedTokens: [Int] = []
    /// Prompt tokens fed per forward pass: llama.cpp's default micro-batch, so that a prompt is split where
    /// llama.cpp splits it (attention sums a one-token pass in a different order; see Attention.groupedQuery).
    public var batchSize = 512
    /// What to do when the context is full: with a policy, drop old tokens and go on; without, stop
    /// (`contextFull`, or an error for a prompt that does not fit).
    public var contextShift: ContextShift?
    /// The draft module's state when self-speculative decoding is on (`enableDrafting`).
    private var drafter: Drafter?

    /// Context shift: keep the first `keep` tokens (the system prompt, BOS) and drop the older half of the rest,
    /// turning the cached rope keys of what remains back to their new positions.
    public struct ContextShift: Sendable {
        public var keep: Int
        public init(keep: Int) { self.keep = max(0, keep) }
    }

    /// The MTP module's cache and the pairs (hidden state, next token) it has not seen yet.
    struct Drafter {
        let model: any DraftingLanguageModel
        let cache: KVCache
        var pendingHidden: [Float] = []
        var pendingTokens: [Int] = []
        /// The final hidden state of the last token in the main cache.
        var lastHidden: [Float] = []
    }

    public init(model: any LanguageModel, tokenizer: Tokenizer?, context: ForwardContext, contextSize: Int) {
        self.model = model
        self.tokenizer = tokenizer
        self.context = context
        cache = model.makeCache(capacity: contextSize)
    }

    /// Turns on self-speculative decoding with the model's multi-token-prediction module: each step the module
    /// drafts the token after next and one forward pass checks both, so the output stays exactly that of plain
    /// greedy decoding. Requires deterministic (temperature 0) sampling.
    public func enableDrafting() throws {
        guard let drafting = model as? any DraftingLanguageModel, drafting.canDraft else {
            throw WhaleError(
                .invalidArgument, field: "mtp", "\(model.architecture) model has no multi-token-prediction module",
                hint: "--mtp needs a DeepSeek-V3-style checkpoint with its MTP layer (num_nextn_predict_layers)")
        }
        drafter = Drafter(model: drafting, cache: drafting.makeDraftCache(capacity: cache.capacity))
        reset()
    }

    /// Empties the cache.
    public func reset() {
        cache.truncate(to: 0)
        cachedTokens = []
        if let drafter { self.drafter = Drafter(model: drafter.model, cache: drafter.cache) }
        drafter?.cache.truncate(to: 0)
    }

    /// Makes room for `tokens` more by a context shift, if there is a policy; returns how many old tokens it
    /// dropped (0 when they already fit or there is no policy).
    func makeRoom(for tokens: Int) -> Int {
        guard cache.count + tokens > cache.capacity, let shift = contextShift else { return 0 }
        let keep = min(shift.keep, cache.count)
        let drop = min(cache.count - keep, max((cache.count - keep) / 2, cache.count + tokens - cache.capacity))
        guard drop > 0 else { return 0 }
        cache.discard(keep..<(keep + drop))
        cachedTokens.removeSubrange(keep..<(keep + drop))
        if let drafter {
            let entries = drafter.cache.count
            drafter.cache.discard(min(keep, entries)..<min(keep + drop, entries))
        }
        return drop
    }

    /// Generates from `request`: `start`, then `step` until the state is finished. `onText` receives text as
    /// it becomes final; `shouldContinue` is polled before each forward pass (return false to stop, e.g. on
    /// Ctrl-C).
    public func generate(
        _ request: GenerationRequest, onText: (String) -> Void = { _ in }, shouldContinue: () -> Bool = { true }
    ) throws -> GenerationResult {
        var state = try start(request)
        while !state.isFinished {
            guard shouldContinue() else {
                state.finish(.cancelled)
                break
            }
            let text = try step(&state)
            if !text.isEmpty { onText(text) }
        }
        let tail = state.complete()
        if !tail.isEmpty { onText(tail) }
        return state.result
    }

    /// Begins `request`: fits the prompt to the context (keeping its head and latest half-context when a
    /// context shift is allowed) and keeps the longest cached prefix (always recomputing the last prompt
    /// token); the rest of the prompt is what the state feeds first.
    public func start(_ request: GenerationRequest) throws -> GenerationState {
        guard !request.promptTokens.isEmpty else {
            throw WhaleError(.invalidArgument, field: "prompt", "the prompt is empty", hint: "give at least one token")
        }
        if drafter != nil, request.sampling.temperature != 0 {
            throw WhaleError(
                .invalidArgument, field: "mtp", "speculative decoding with the MTP module needs greedy sampling",
                hint: "use --temp 0 with --mtp")
        }
        var prompt = request.promptTokens
        if let shift = contextShift, prompt.count >= cache.capacity {
            let keep = min(shift.keep, cache.capacity / 2)
            prompt = Array(prompt[..<keep] + prompt.suffix((cache.capacity - keep) / 2))
        }
        // Reuse the cached prefix, but feed at least the prompt's last two tokens again: attention sums in
        // one order for a pass of one token and another for two or more (llama.cpp's choice, `Attention`),
        // so a prompt fed again as one token would not give the logits it gave when fed whole.
        var common = 0
        while common < min(cachedTokens.count, prompt.count - 2) && cachedTokens[common] == prompt[common] {
            common += 1
        }
        if let drafter {
            // The draft module holds one (hidden, next token) pair per position; recompute from the first
            // position it lacks, so its pairs can be rebuilt.
            common = min(common, drafter.cache.count)
            drafter.cache.truncate(to: common)
            self.drafter = Drafter(model: drafter.model, cache: drafter.cache)
        }
        cache.truncate(to: common)
        cachedTokens.removeSubrange(common...)
        return GenerationState(request: request, tokenizer: tokenizer, pendingPrompt: Array(prompt[common...]))
    }

    /// What `state` needs fed in its next forward pass: the next chunk of its prompt (at most `limit` tokens,
    /// default `batchSize`; logits only after the prompt's last token) or the token it sampled last; nil once
    /// it has finished. A scheduler puts the inputs of many sequences into one pass and hands each its
    /// logits with `absorb`.
    public func nextInput(for state: GenerationState, limit: Int? = nil) -> SequenceInput? {
        if state.isFinished { return nil }
        if !state.pendingPrompt.isEmpty {
            let count = min(max(limit ?? batchSize, 1), state.pendingPrompt.count)
            return SequenceInput(
                tokens: Array(state.pendingPrompt.prefix(count)), cache: cache,
                logits: count == state.pendingPrompt.count ? .last : .none)
        }
        return state.nextToken.map { SequenceInput(tokens: [$0], cache: cache, logits: .last) }
    }

    /// Takes the outcome of the pass that fed `input` (from `nextInput`): once the prompt is in, samples the
    /// next token from `logits`, takes it (stop tokens, stop strings, `maxTokens`) and makes room for it in
    /// the context. Returns the text that became final.
    public func absorb(_ input: SequenceInput, logits: [Float], into state: inout GenerationState) throws -> String {
        cachedTokens += input.tokens
        if !state.pendingPrompt.isEmpty {
            state.pendingPrompt.removeFirst(input.tokens.count)
            if !state.pendingPrompt.isEmpty { return "" }
            state.promptFinished()
            if state.isFinished { return "" }
        }
        state.nextToken = nil
        state.logits = logits
        return try takeNext(&state)
    }

    /// One forward pass of `state` (a prompt chunk, or the last token), then `absorb`. With a draft module,
    /// a decoding step feeds the last token together with the module's guess at the token after it, and
    /// keeps the guess when the model agrees: the output is that of plain greedy decoding.
    public func step(_ state: inout GenerationState) throws -> String {
        guard let input = nextInput(for: state) else { return "" }
        guard var drafter else {
            return try absorb(input, logits: try model.forward([input], context: context)[0], into: &state)
        }
        guard input.tokens.count == 1, state.pendingPrompt.isEmpty, cache.count + 2 <= cache.capacity else {
            let (rows, hidden) = try model.forwardKeepingHidden([input], context: context)
            drafter.record(hidden: hidden[0], tokens: input.tokens)
            self.drafter = drafter
            return try absorb(input, logits: rows[0], into: &state)
        }
        // Draft the token after `token`, then check both in one pass.
        let token = input.tokens[0]
        drafter.pendingHidden += drafter.lastHidden
        drafter.pendingTokens.append(token)
        let draftLogits = try drafter.model.draft(
            hidden: drafter.pendingHidden, tokens: drafter.pendingTokens, cache: drafter.cache, context: context)
        let guess = argmax(draftLogits)
        let (rows, hidden) = try model.forwardKeepingHidden(
            [SequenceInput(tokens: [token, guess], cache: cache, logits: .all)], context: context)
        cachedTokens += [token, guess]
        let vocabulary = model.vocabularySize
        let width = model.hiddenSize
        state.nextToken = nil
        state.draftedTokens += 1
        state.logits = Array(rows[0][..<vocabulary])
        var text = ""
        if state.sample() == guess {
            state.acceptedDraftTokens += 1
            drafter.pendingHidden = Array(hidden[0][..<width])
            drafter.pendingTokens = [guess]
            drafter.lastHidden = Array(hidden[0][width...])
            self.drafter = drafter
            text = try state.take(guess)
            if state.isFinished { return text }
            state.logits = Array(rows[0][vocabulary...])
        } else {
            cache.truncate(to: cache.count - 1)
            cachedTokens.removeLast()
            drafter.pendingHidden = []
            drafter.pendingTokens = []
            drafter.lastHidden = Array(hidden[0][..<width])
            self.drafter = drafter
        }
        return text + (try takeNext(&state))
    }

    /// Samples and takes the next token from `state.logits`, then makes room for feeding it (and a draft)
    /// — or ends the generation when the context is full and nothing may be dropped.
    private func takeNext(_ state: inout GenerationState) throws -> String {
        let token = state.sample()
        let text = try state.take(token)
        if state.isFinished { return text }
        state.shiftedOutTokens += makeRoom(for: drafter == nil ? 1 : 2)
        if cache.count >= cache.capacity {
            state.finish(.contextFull)
        } else {
            state.nextToken = token
        }
        return text
    }

    /// How many trailing UTF-8 bytes might be the start of a stop string, and so must not be shown yet.
    static func heldBack(_ text: String, stops: [String]) -> Int { TextStream.heldBack(text, stops: stops) }
}

/// One request being generated by a `Generator`: the prompt still to feed, its sampler and the tokens it has
/// seen, the token to feed next, the tokens and text generated so far, why it ended, and its timings.
public struct GenerationState {
    public let request: GenerationRequest
    var sampler: Sampler
    /// Prompt and generated tokens: what the penalties look at.
    var history: [Int]
    /// Prompt tokens not fed yet.
    var pendingPrompt: [Int]
    /// The sampled token that the next pass feeds.
    var nextToken: Int?
    /// The logits to sample the next token from.
    var logits: [Float] = []
    var text: TextStream
    public private(set) var tokens: [Int] = []
    /// Nil while generating.
    public private(set) var finishReason: FinishReason?
    /// The stop token that ended generation (not in `tokens`: it is not text).
    public private(set) var endToken: Int?
    let promptTokensEvaluated: Int
    let started = ContinuousClock.now
    var promptSeconds = 0.0
    var generationStart = ContinuousClock.now
    var draftedTokens = 0
    var acceptedDraftTokens = 0
    var shiftedOutTokens = 0

    init(request: GenerationRequest, tokenizer: Tokenizer?, pendingPrompt: [Int]) {
        self.request = request
        sampler = Sampler(request.sampling)
        history = request.promptTokens
        self.pendingPrompt = pendingPrompt
        promptTokensEvaluated = pendingPrompt.count
        text = TextStream(tokenizer: tokenizer, stops: request.stopStrings)
    }

    /// The prompt is in: generation (and its clock) starts; `maxTokens` 0 ends it here.
    mutating func promptFinished() {
        generationStart = ContinuousClock.now
        promptSeconds = (generationStart - started).seconds
        if request.maxTokens <= 0 { finishReason = .length }
    }

    public var isFinished: Bool { finishReason != nil }
    /// Whether prompt tokens are still to be fed.
    public var isPrompting: Bool { !pendingPrompt.isEmpty }

    /// The next token from `logits`.
    mutating func sample() -> Int { sampler.sample(logits, history: history) }

    /// Takes `token` as generated: ends at a stop token (not kept), a stop string (cut from the text) or
    /// `maxTokens`. Returns the text that became final.
    mutating func take(_ token: Int) throws -> String {
        if request.stopTokens.contains(token) {
            finishReason = .endOfSequence
            endToken = token
            return ""
        }
        tokens.append(token)
        history.append(token)
        let (delta, stopped) = try text.append(token)
        if stopped {
            finishReason = .stopString
        } else if tokens.count == request.maxTokens {
            finishReason = .length
        }
        return delta
    }

    /// Ends the generation early (cancelled, context full).
    public mutating func finish(_ reason: FinishReason) { finishReason = reason }

    /// Flushes what the text stream held back; call once at the end.
    public mutating func complete() -> String {
        if finishReason == nil { finishReason = .length }
        return text.finish(cutAtStop: finishReason == .stopString)
    }

    public var result: GenerationResult {
        GenerationResult(
            tokens: tokens, text: text.text, finishReason: finishReason ?? .length, stopString: text.matchedStop,
            promptTokens: request.promptTokens.count, promptTokensEvaluated: promptTokensEvaluated,
            promptSeconds: promptSeconds, generationSeconds: (ContinuousClock.now - generationStart).seconds,
            draftedTokens: draftedTokens, acceptedDraftTokens: acceptedDraftTokens, shiftedOutTokens: shiftedOutTokens)
    }
}

/// Generated ids → text: complete characters only (a character split over tokens waits for its last
/// piece), cut before the first stop string, and holding back an ending that may still become one.
struct TextStream {
    var decoder: StreamingDecoder?
    let stops: [String]
    private(set) var text = ""
    /// The stop string found, once one is.
    private(set) var matchedStop: String?
    /// UTF-8 bytes of `text` already handed out (bytes, not Characters: a later scalar may join the last
    /// Character, as a skin tone joins an emoji).
    private var emitted = 0

    init(tokenizer: Tokenizer?, stops: [String]) {
        decoder = tokenizer.map { StreamingDecoder(tokenizer: $0) }
        self.stops = stops
    }

    /// Adds `token`; returns the text now safe to show and whether a stop string appeared.
    mutating func append(_ token: Int) throws -> (String, stopped: Bool) {
        guard var decoder else { return ("", false) }
        text += try decoder.append(token)
        self.decoder = decoder
        if let (cut, stop) = Self.firstStop(in: text, stops: stops) {
            text = String(text[..<cut])
            matchedStop = stop
            return ("", true)
        }
        return (release(upTo: text.utf8.count - Self.heldBack(text, stops: stops)), false)
    }

    /// The rest of the text: what the decoder still held (unless generation stopped at a stop string) and
    /// what was held back.
    mutating func finish(cutAtStop: Bool) -> String {
        if var decoder, !cutAtStop {
            text += decoder.finish()
            self.decoder = decoder
        }
        return release(upTo: text.utf8.count)
    }

    private mutating func release(upTo end: Int) -> String {
        guard end > emitted else { return "" }
        let piece = String(decoding: Array(text.utf8)[emitted..<end], as: UTF8.self)
        emitted = end
        return piece
    }

    /// Where the first stop string begins, and which it is, if any occurs.
    static func firstStop(in text: String, stops: [String]) -> (String.Index, String)? {
        var first: (String.Index, String)?
        for stop in stops where !stop.isEmpty {
            if let start = text.range(of: stop)?.lowerBound, first.map({ start < $0.0 }) ?? true {
                first = (start, stop)
            }
        }
        return first
    }

    /// How many trailing UTF-8 bytes might be the start of a stop string, and so must not be shown yet.
    static func heldBack(_ text: String, stops: [String]) -> Int {
        let bytes = Array(text.utf8)
        var longest = 0
        for stop in stops where !stop.isEmpty {
            let prefix = Array(stop.utf8)
            for length in stride(from: min(prefix.count - 1, bytes.count), to: longest, by: -1)
            where bytes[(bytes.count - length)...].elementsEqual(prefix[..<length]) {
                longest = length
                break
            }
        }
        return longest
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}

extension Generator.Drafter {
    /// Queues the pairs (hidden state of token i, token i + 1) of newly fed tokens; the last token's hidden state
    /// waits for the token that will follow it.
    mutating func record(hidden: [Float], tokens: [Int]) {
        let width = model.hiddenSize
        guard !tokens.isEmpty else { return }
        if !lastHidden.isEmpty {
            pendingHidden += lastHidden
            pendingTokens.append(tokens[0])
        }
        for i in 0..<(tokens.count - 1) {
            pendingHidden += hidden[(i * width)..<((i + 1) * width)]
            pendingTokens.append(tokens[i + 1])
        }
        lastHidden = Array(hidden[((tokens.count - 1) * width)...])
    }
}
