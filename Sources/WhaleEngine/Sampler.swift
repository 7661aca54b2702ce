#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// How the next token is chosen: a chain of logit processors ending in a draw, as llama.cpp orders them
/// (penalties → top-k → top-p → min-p → temperature → draw). Temperature 0 is greedy (argmax after
/// penalties).
public struct SamplingParameters: Sendable, Equatable {
    public var temperature: Double = 0.8
    public var topK: Int = 40
    public var topP: Double = 0.95
    public var minP: Double = 0.05
    /// Divides positive logits (multiplies negative ones) of tokens seen in the last `penaltyWindow`.
    public var repeatPenalty: Double = 1.0
    public var frequencyPenalty: Double = 0
    public var presencePenalty: Double = 0
    public var penaltyWindow: Int = 64
    public var seed: UInt64 = 0

    public init() {}

    /// Greedy decoding: always the most likely token.
    public static var greedy: SamplingParameters {
        var parameters = SamplingParameters()
        parameters.temperature = 0
        return parameters
    }
}

/// A small, fast, seedable generator (xoshiro256**), so a seed gives the same text on every run and
/// machine — no global random state.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var state: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        // SplitMix64 expands the seed into the state.
        var x = seed
        func next() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476C_E5B9_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        state = (next(), next(), next(), next())
    }

    public mutating func next() -> UInt64 {
        let times5: UInt64 = state.1 &* 5
        let result: UInt64 = (times5 << 7 | times5 >> 57) &* 9
        let t = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = state.3 << 45 | state.3 >> 19
        return result
    }
}

/// Applies `SamplingParameters` to logits and draws tokens.
public struct Sampler {
    public let parameters: SamplingParameters
    private var random: SeededGenerator

    public init(_ parameters: SamplingParameters) {
        self.parameters = parameters
        random = SeededGenerator(seed: parameters.seed)
    }

    /// The next token given `logits` (one row) and the tokens so far (for penalties).
    public mutating func sample(_ logits: [Float], history: [Int]) -> Int {
        var values = logits
        applyPenalties(&values, history: history)
        if parameters.temperature <= 0 { return argmax(values) }

        // Candidates sorted by logit, best first, cut by top-k.
        let k = parameters.topK > 0 ? min(parameters.topK, values.count) : values.count
        var candidates = values.withUnsafeBufferPointer {
            k < values.count ? largestIndices($0, count: k) : descendingOrder($0)
        }
        // Probabilities for top-p and min-p (before temperature, as llama.cpp's chain applies them); not
        // needed, so not computed over the whole vocabulary, when neither is on.
        let filtering = parameters.topP < 1 || parameters.minP > 0
        var probabilities = filtering ? softmax(candidates.map { Double(values[$0]) }) : []
        if parameters.topP < 1 {
            var cumulative = 0.0
            var keep = candidates.count
            for (i, p) in probabilities.enumerated() {
                cumulative += p
                if cumulative >= parameters.topP {
                    keep = i + 1
                    break
                }
            }
            candidates = Array(candidates.prefix(keep))
            probabilities = softmax(candidates.map { Double(values[$0]) })
        }
        if parameters.minP > 0, let best = probabilities.first {
            let threshold = best * parameters.minP
            let keep = max(1, probabilities.prefix { $0 >= threshold }.count)
            candidates = Array(candidates.prefix(keep))
        }
        let tempered = softmax(candidates.map { Double(values[$0]) / parameters.temperature })
        let u = Double(random.next() >> 11) * 0x1p-53
        var cumulative = 0.0
        for (i, p) in tempered.enumerated() {
            cumulative += p
            if u < cumulative { return candidates[i] }
        }
        return candidates[candidates.count - 1]
    }

    /// Repetition, frequency and presence penalties over the last `penaltyWindow` tokens.
    func applyPenalties(_ values: inout [Float], history: [Int]) {
        let p = parameters
        guard p.repeatPenalty != 1 || p.frequencyPenalty != 0 || p.presencePenalty != 0, p.penaltyWindow != 0 else {
            return
        }
        let window = p.penaltyWindow < 0 ? history[...] : history.suffix(p.penaltyWindow)
        var counts: [Int: Int] = [:]
        for token in window { counts[token, default: 0] += 1 }
        for (token, count) in counts where token >= 0 && token < values.count {
            var logit = values[token]
            if p.repeatPenalty != 1 {
                logit = logit <= 0 ? logit * Float(p.repeatPenalty) : logit / Float(p.repeatPenalty)
            }
            logit -= Float(Double(count) * p.frequencyPenalty + p.presencePenalty)
            values[token] = logit
        }
    }
}

/// Index of the largest value (the lowest index on ties, as llama.cpp's greedy sampler).
public func argmax(_ values: [Float]) -> Int {
    var best = 0
    for i in 1..<values.count where values[i] > values[best] { best = i }
    return best
}

func softmax(_ values: [Double]) -> [Double] {
    guard let maximum = values.max() else { return [] }
    let exps = values.map { exp($0 - maximum) }
    let sum = exps.reduce(0, +)
    return exps.map { $0 / sum }
}
