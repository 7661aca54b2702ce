#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Element-wise and per-row operations of a transformer block, over raw pointers.
///
/// These are the simple reference forms; they are a small share of the work next to the linear layers.
/// Summations run in Float in index order, as PyTorch's CPU kernels do for short rows closely enough for
/// the 1e-4 logprob tolerance of the tests.
public enum Ops {
    /// RMSNorm of each of `rows` rows of length `n`: `y = x / sqrt(mean(x²) + eps) * weight`.
    public static func rmsNorm(
        _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, rows: Int, n: Int, eps: Float,
        output y: UnsafeMutablePointer<Float>
    ) {
        for r in 0..<rows {
            let row = x + r * n
            var sum: Double = 0
            for i in 0..<n { sum += Double(row[i]) * Double(row[i]) }
            let scale = Float(1 / (sum / Double(n) + Double(eps)).squareRoot())
            let out = y + r * n
            for i in 0..<n { out[i] = row[i] * scale * weight[i] }
        }
    }

    /// `y[i] += x[i]`.
    public static func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { y[i] += x[i] }
    }

    /// SwiGLU: `gate[i] = silu(gate[i]) * up[i]`.
    public static func swiGLU(gate: UnsafeMutablePointer<Float>, up: UnsafePointer<Float>, count: Int) {
        for i in 0..<count {
            let g = gate[i]
            gate[i] = g / (1 + expf(-g)) * up[i]
        }
    }

    /// Adds `bias` (length `n`) to each of `rows` rows.
    public static func addBias(_ bias: UnsafePointer<Float>, to y: UnsafeMutablePointer<Float>, rows: Int, n: Int) {
        for r in 0..<rows {
            let row = y + r * n
            for i in 0..<n { row[i] += bias[i] }
        }
    }

    /// In-place softmax of `count` values; returns nothing, leaves probabilities.
    public static func softmax(_ x: UnsafeMutablePointer<Float>, count: Int) {
        guard count > 0 else { return }
        var maximum = x[0]
        for i in 1..<count where x[i] > maximum { maximum = x[i] }
        var sum: Float = 0
        for i in 0..<count {
            let e = expf(x[i] - maximum)
            x[i] = e
            sum += e
        }
        let inverse = 1 / sum
        for i in 0..<count { x[i] *= inverse }
    }

    /// `log_softmax` of `count` logits into `output`, computed in Double.
    public static func logSoftmax(_ x: UnsafePointer<Float>, count: Int, output: UnsafeMutablePointer<Double>) {
        var maximum = x[0]
        for i in 1..<count where x[i] > maximum { maximum = x[i] }
        var sum: Double = 0
        for i in 0..<count { sum += exp(Double(x[i] - maximum)) }
        let logSum = log(sum) + Double(maximum)
        for i in 0..<count { output[i] = Double(x[i]) - logSum }
    }
}
