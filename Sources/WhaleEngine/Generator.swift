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

/// Runs one sequence: prefill the prompt (reusing whatever prefix the cache already holds), then sample
/// token by token, streaming text as complete characters and holding back what may become a stop string.
public final class Generator {
    public let model: any LanguageModel
    public let tokenizer: Tokenizer?
    public let context: ForwardContext
    public let cache: KVCache
    /// The tokens the cache holds, in order.
    public private(set) var cachedTokens: [Int] = []
    /// Prompt tokens fed per forward pass: llama.cpp's default micro-batch, so that a prompt is split where
    /// llama.cpp splits it (attention sums a one-token pass in a different order; see GroupedQueryAttention).
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

    /// Feeds `tokens` after the cached ones, returning the logits of the last one (and, when drafting, queueing
    /// each token's hidden state for the draft module).
    func feed(_ tokens: [Int]) throws -> [Float] {
        var logits: [Float] = []
        var start = 0
        while start < tokens.count {
            let end = min(start + batchSize, tokens.count)
            let chunk = Array(tokens[start..<end])
            let batch = [SequenceInput(tokens: chunk, cache: cache, logits: end == tokens.count ? .last : .none)]
            if var drafter {
                let (rows, hidden) = try drafter.model.forwardKeepingHidden(batch, context: context)
                logits = rows[0]
                drafter.record(hidden: hidden[0], tokens: chunk)
                self.drafter = drafter
            } else {
                logits = try model.forward(batch, context: context)[0]
            }
            cachedTokens += chunk
            start = end
        }
        return logits
    }

    /// Makes room for `tokens` more by a context shift, if there is a policy; returns whether they fit.
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

    /// Generates from `request`. `onText` receives text as it becomes final; `shouldContinue` is polled
    /// before each token (return false to stop, e.g. on Ctrl-C).
    public func generate(
        _ request: GenerationRequest, onText: (String) -> Void = { _ in }, shouldContinue: () -> Bool = { true }
    ) throws -> GenerationResult {
        guard !request.promptTokens.isEmpty else {
            throw WhaleError(.invalidArgument, field: "prompt", "the prompt is empty", hint: "give at least one token")
        }
        var prompt = request.promptTokens
        if let shift = contextShift, prompt.count >= cache.capacity {
            // The prompt alone outgrows the context: keep its head and its most recent half-context.
            let keep = min(shift.keep, cache.capacity / 2)
            prompt = Array(prompt[..<keep] + prompt.suffix((cache.capacity - keep) / 2))
        }
        // Reuse the longest common prefix, but always recompute at least the last prompt token.
        var common = 0
        while common < min(cachedTokens.count, prompt.count - 1) && cachedTokens[common] == prompt[common] {
            common += 1
        }
        if let drafter {
            // The draft module holds one (hidden, next token) pair per position; recompute from the first
            // position it lacks, so its pairs can be rebuilt.
            common = min(common, drafter.cache.count)
            drafter.cache.truncate(to: common)
            self.drafter = Drafter(model: drafter.model, cache: drafter.cache)
            guard request.sampling.temperature == 0 else {
                throw WhaleError(
                    .invalidArgument, field: "mtp", "speculative decoding with the MTP module needs greedy sampling",
                    hint: "use --temp 0 with --mtp")
            }
        }
        cache.truncate(to: common)
        cachedTokens.removeSubrange(common...)

        let promptStart = ContinuousClock.now
        var logits = try feed(Array(prompt[common...]))
        let promptTime = ContinuousClock.now - promptStart

        var sampler = Sampler(request.sampling)
        var history = request.promptTokens
        var generated: [Int] = []
        var drafted = 0
        var accepted = 0
        var shiftedOut = 0
        var stream = tokenizer.map { StreamingDecoder(tokenizer: $0) }
        var text = ""
        var emitted = 0  // UTF-8 bytes of `text` already passed to onText (bytes, not Characters: a later
        // scalar may join the last Character, as a skin tone joins an emoji)
        var finish = FinishReason.length
        let generationStart = ContinuousClock.now

        /// Takes `token` as generated; returns true when generation must stop there.
        func emit(_ token: Int) throws -> Bool {
            if request.stopTokens.contains(token) {
                finish = .endOfSequence
                return true
            }
            generated.append(token)
            history.append(token)
            if var decoder = stream {
                text += try decoder.append(token)
                stream = decoder
                if let cut = Self.firstStop(in: text, stops: request.stopStrings) {
                    text = String(text[..<cut])
                    finish = .stopString
                    return true
                }
                let safe = text.utf8.count - Self.heldBack(text, stops: request.stopStrings)
                if safe > emitted {
                    onText(String(decoding: Array(text.utf8)[emitted..<safe], as: UTF8.self))
                    emitted = safe
                }
            }
            return generated.count == request.maxTokens
        }

        generation: while generated.count < request.maxTokens {
            guard shouldContinue() else {
                finish = .cancelled
                break
            }
            let token = sampler.sample(logits, history: history)
            if try emit(token) { break }
            shiftedOut += makeRoom(for: drafter == nil ? 1 : 2)
            guard var drafter, cache.count + 2 <= cache.capacity else {
                if cache.count >= cache.capacity {
                    finish = .contextFull
                    break
                }
                logits = try feed([token])
                continue
            }
            // Draft the token after `token`, then check both in one pass.
            drafter.pendingHidden += drafter.lastHidden
            drafter.pendingTokens.append(token)
            let draftLogits = try drafter.model.draft(
                hidden: drafter.pendingHidden, tokens: drafter.pendingTokens, cache: drafter.cache, context: context)
            let guess = argmax(draftLogits)
            let (rows, hidden) = try drafter.model.forwardKeepingHidden(
                [SequenceInput(tokens: [token, guess], cache: cache, logits: .all)], context: context)
            cachedTokens += [token, guess]
            let vocabulary = model.vocabularySize
            let width = drafter.model.hiddenSize
            let afterToken = Array(rows[0][..<vocabulary])
            drafted += 1
            if sampler.sample(afterToken, history: history) == guess {
                accepted += 1
                drafter.pendingHidden = Array(hidden[0][..<width])
                drafter.pendingTokens = [guess]
                drafter.lastHidden = Array(hidden[0][width...])
                self.drafter = drafter
                logits = Array(rows[0][vocabulary...])
                if try emit(guess) { break }
            } else {
                cache.truncate(to: cache.count - 1)
                cachedTokens.removeLast()
                drafter.pendingHidden = []
                drafter.pendingTokens = []
                drafter.lastHidden = Array(hidden[0][..<width])
                self.drafter = drafter
                logits = afterToken
            }
        }
        if var decoder = stream, finish != .stopString {
            text += decoder.finish()
        }
        if text.utf8.count > emitted { onText(String(decoding: Array(text.utf8)[emitted...], as: UTF8.self)) }
        let generationTime = ContinuousClock.now - generationStart
        return GenerationResult(
            tokens: generated, text: text, finishReason: finish, promptTokens: request.promptTokens.count,
            promptTokensEvaluated: prompt.count - common, promptSeconds: promptTime.seconds,
            generationSeconds: generationTime.seconds, draftedTokens: drafted, acceptedDraftTokens: accepted,
            shiftedOutTokens: shiftedOut)
    }

    /// Index where the first stop string begins, if any occurs.
    static func firstStop(in text: String, stops: [String]) -> String.Index? {
        stops.compactMap { stop in stop.isEmpty ? nil : text.range(of: stop)?.lowerBound }.min()
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
