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
    /// Prompt tokens fed per forward pass.
    public var batchSize = 256

    public init(model: any LanguageModel, tokenizer: Tokenizer?, context: ForwardContext, contextSize: Int) {
        self.model = model
        self.tokenizer = tokenizer
        self.context = context
        cache = model.makeCache(capacity: contextSize)
    }

    /// Empties the cache.
    public func reset() {
        cache.truncate(to: 0)
        cachedTokens = []
    }

    /// Feeds `tokens` after the cached ones, returning the logits of the last one.
    func feed(_ tokens: [Int]) throws -> [Float] {
        var logits: [Float] = []
        var start = 0
        while start < tokens.count {
            let end = min(start + batchSize, tokens.count)
            let chunk = Array(tokens[start..<end])
            let rows = try model.forward(
                [SequenceInput(tokens: chunk, cache: cache, logits: end == tokens.count ? .last : .none)],
                context: context)
            cachedTokens += chunk
            logits = rows[0]
            start = end
        }
        return logits
    }

    /// Generates from `request`. `onText` receives text as it becomes final; `shouldContinue` is polled
    /// before each token (return false to stop, e.g. on Ctrl-C).
    public func generate(
        _ request: GenerationRequest, onText: (String) -> Void = { _ in }, shouldContinue: () -> Bool = { true }
    ) throws -> GenerationResult {
        guard !request.promptTokens.isEmpty else {
            throw WhaleError(.invalidArgument, field: "prompt", "the prompt is empty", hint: "give at least one token")
        }
        // Reuse the longest common prefix, but always recompute at least the last prompt token.
        var common = 0
        while common < min(cachedTokens.count, request.promptTokens.count - 1)
            && cachedTokens[common] == request.promptTokens[common]
        {
            common += 1
        }
        cache.truncate(to: common)
        cachedTokens.removeSubrange(common...)

        let promptStart = ContinuousClock.now
        var logits = try feed(Array(request.promptTokens[common...]))
        let promptTime = ContinuousClock.now - promptStart

        var sampler = Sampler(request.sampling)
        var history = request.promptTokens
        var generated: [Int] = []
        var stream = tokenizer.map { StreamingDecoder(tokenizer: $0) }
        var text = ""
        var emitted = 0  // UTF-8 bytes of `text` already passed to onText (bytes, not Characters: a later
        // scalar may join the last Character, as a skin tone joins an emoji)
        var finish = FinishReason.length
        let generationStart = ContinuousClock.now

        generation: while generated.count < request.maxTokens {
            guard shouldContinue() else {
                finish = .cancelled
                break
            }
            let token = sampler.sample(logits, history: history)
            if request.stopTokens.contains(token) {
                finish = .endOfSequence
                break
            }
            generated.append(token)
            history.append(token)
            if var decoder = stream {
                text += try decoder.append(token)
                stream = decoder
                if let cut = Self.firstStop(in: text, stops: request.stopStrings) {
                    text = String(text[..<cut])
                    finish = .stopString
                    break generation
                }
                let safe = text.utf8.count - Self.heldBack(text, stops: request.stopStrings)
                if safe > emitted {
                    onText(String(decoding: Array(text.utf8)[emitted..<safe], as: UTF8.self))
                    emitted = safe
                }
            }
            if generated.count == request.maxTokens { break }
            if cache.count >= cache.capacity {
                finish = .contextFull
                break
            }
            logits = try feed([token])
        }
        if var decoder = stream, finish != .stopString {
            text += decoder.finish()
        }
        if text.utf8.count > emitted { onText(String(decoding: Array(text.utf8)[emitted...], as: UTF8.self)) }
        let generationTime = ContinuousClock.now - generationStart
        return GenerationResult(
            tokens: generated, text: text, finishReason: finish, promptTokens: request.promptTokens.count,
            promptTokensEvaluated: request.promptTokens.count - common, promptSeconds: promptTime.seconds,
            generationSeconds: generationTime.seconds)
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
