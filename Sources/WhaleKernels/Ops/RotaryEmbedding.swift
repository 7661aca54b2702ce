#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Rotary position embedding (RoPE) with precomputed inverse frequencies.
///
/// Two layouts pair the dimensions differently: `.halves` rotates `(x[i], x[i + d/2])` (Hugging Face's
/// `rotate_half`, and llama.cpp's NEOX mode used for Qwen2), `.interleaved` rotates `(x[2i], x[2i+1])`
/// (llama.cpp's normal mode for Llama, whose converter permutes the Q/K weights to match).
public struct RotaryEmbedding: Sendable {
    public enum Layout: Sendable {
        case halves
        case interleaved
    }

    /// How the angle of pair i at position p is rounded: the two reference implementations agree to a few
    /// ulp, and GGUF models follow llama.cpp's rule so that their logits match it bit for bit.
    public enum AngleRule: Sendable {
        /// `Float(p) · inverseFrequencies[i]` (transformers).
        case product
        /// ggml's `rope_cache_init`: θ₀ = p, θᵢ₊₁ = θᵢ · thetaScale in float32, angle =
        /// frequencyScale · (θᵢ / divisors[i]) (Llama 3.1's `rope_freqs`; none: 1). `inverseFrequencies`
        /// still holds the same frequencies for other uses.
        case ggml(thetaScale: Float, divisors: [Float]?, frequencyScale: Float)
    }

    public let dimensions: Int
    public let layout: Layout
    /// θ_i for i in 0..<dimensions/2.
    public let inverseFrequencies: [Float]
    /// Multiplies cos and sin (YaRN's attention factor; 1 otherwise).
    public let scale: Float
    public let angleRule: AngleRule

    public init(
        dimensions: Int, layout: Layout, inverseFrequencies: [Float], scale: Float = 1, angleRule: AngleRule = .product
    ) {
        precondition(dimensions % 2 == 0 && inverseFrequencies.count == dimensions / 2)
        if case .ggml(_, let divisors?, _) = angleRule { precondition(divisors.count == dimensions / 2) }
        self.dimensions = dimensions
        self.layout = layout
        self.inverseFrequencies = inverseFrequencies
        self.scale = scale
        self.angleRule = angleRule
    }

    /// llama.cpp's rope for a GGUF model with base `base`, optional per-pair divisors and linear scaling:
    /// the ggml angle rule, and the matching inverse frequencies.
    public static func ggml(
        dimensions: Int, layout: Layout, base: Double, divisors: [Float]?, frequencyScale: Float
    ) -> RotaryEmbedding {
        let thetaScale = powf(Float(base), -2 / Float(dimensions))
        var frequencies = standardFrequencies(dimensions: dimensions, base: base).map { $0 * frequencyScale }
        if let divisors { frequencies = zip(frequencies, divisors).map { $0 / $1 } }
        return RotaryEmbedding(
            dimensions: dimensions, layout: layout, inverseFrequencies: frequencies,
            angleRule: .ggml(thetaScale: thetaScale, divisors: divisors, frequencyScale: frequencyScale))
    }

    /// Standard frequencies `1 / base^(2i/d)`, in float32 arithmetic as transformers computes them.
    public static func standardFrequencies(dimensions: Int, base: Double) -> [Float] {
        (0..<(dimensions / 2)).map { i in 1 / powf(Float(base), Float(2 * i) / Float(dimensions)) }
    }

    /// Llama 3's frequency scaling (`rope_type: llama3`): long wavelengths are divided by `factor`, short ones
    /// kept, and the band between smoothly interpolated.
    public static func llama3Frequencies(
        _ frequencies: [Float], factor: Double, lowFrequencyFactor: Double, highFrequencyFactor: Double,
        originalContext: Double
    ) -> [Float] {
        let lowWavelength = originalContext / lowFrequencyFactor
        let highWavelength = originalContext / highFrequencyFactor
        return frequencies.map { f in
            let frequency = Double(f)
            let wavelength = 2 * Double.pi / frequency
            if wavelength < highWavelength { return f }
            if wavelength > lowWavelength { return Float(frequency / factor) }
            let smooth =
                (originalContext / wavelength - lowFrequencyFactor) / (highFrequencyFactor - lowFrequencyFactor)
            return Float((1 - smooth) * frequency / factor + smooth * frequency)
        }
    }

    /// Rotates the first `dimensions` values of each of `heads` heads of `headDim` values, at `position`
    /// (cos and sin multiplied by `scale`).
    public func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, headDim: Int, position: Int) {
        rotate(x, heads: heads, headDim: headDim, angleSteps: position, scale: scale)
    }

    /// Turns already-rotated values by `positions` more (negative: back), without the YaRN scale: rotations
    /// compose, so this moves cached keys to new positions (context shift).
    public func rotate(_ x: UnsafeMutablePointer<Float>, heads: Int, headDim: Int, by positions: Int) {
        rotate(x, heads: heads, headDim: headDim, angleSteps: positions, scale: 1)
    }

    private func rotate(_ x: UnsafeMutablePointer<Float>, heads: Int, headDim: Int, angleSteps: Int, scale: Float) {
        let half = dimensions / 2
        var theta = Float(angleSteps)
        var fused = false
        if case .ggml = angleRule { fused = true }
        for i in 0..<half {
            let angle: Float
            switch angleRule {
            case .product:
                angle = Float(angleSteps) * inverseFrequencies[i]
            case .ggml(let thetaScale, let divisors, let frequencyScale):
                angle = frequencyScale * (theta / (divisors?[i] ?? 1))
                theta *= thetaScale
            }
            let c = cosf(angle) * scale
            let s = sinf(angle) * scale
            for h in 0..<heads {
                let head = x + h * headDim
                let (a, b) = layout == .halves ? (i, i + half) : (2 * i, 2 * i + 1)
                let x0 = head[a]
                let x1 = head[b]
                if fused {
                    // As GCC compiles ggml's rotate_pairs for x86: x0·c − x1·s and x0·s + x1·c, each with
                    // its x0 product fused (FMA contraction; fmaddsub in the vectorized interleaved loop).
                    head[a] = (-(x1 * s)).addingProduct(x0, c)
                    head[b] = (x1 * c).addingProduct(x0, s)
                } else {
                    head[a] = x0 * c - x1 * s
                    head[b] = x0 * s + x1 * c
                }
            }
        }
    }
}
