#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Element-wise and per-row operations of a transformer block, over raw pointers.
///
/// They are a small share of the work next to the linear layers, and they round exactly as llama.cpp's x86
/// CPU backend does (same operations in the same order; see [X86_BLOCK_DOT] for why that matters). Against
/// transformers' float32 math the difference is a few ulp, far inside its tests' tolerance.
public enum Ops {
    /// RMSNorm of each of `rows` rows of length `n`: `y = x / sqrt(mean(x²) + eps) * weight`, as ggml's
    /// `rms_norm` + `mul`: Σ of float squares in Double, mean rounded to Float, `(x · scale) · weight`.
    public static func rmsNorm(
        _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, rows: Int, n: Int, eps: Float,
        output y: UnsafeMutablePointer<Float>
    ) {
        for r in 0..<rows {
            let row = x + r * n
            var sum: Double = 0
            for i in 0..<n { sum += Double(row[i] * row[i]) }
            let mean = Float(sum / Double(n))
            let scale = 1 / (mean + eps).squareRoot()
            let out = y + r * n
            for i in 0..<n { out[i] = row[i] * scale * weight[i] }
        }
    }

    /// `y[i] += x[i]`.
    public static func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { y[i] += x[i] }
    }

    /// SwiGLU over `rows` rows of `n`: `gate[i] = silu(gate[i]) * up[i]`, as ggml's `swiglu` on x86 does
    /// each row: eight at a time with `exp8`, the row's tail with `expf`.
    public static func swiGLU(gate: UnsafeMutablePointer<Float>, up: UnsafePointer<Float>, rows: Int, n: Int) {
        for r in 0..<rows { swiGLURow(gate: gate + r * n, up: up + r * n, count: n) }
    }

    private static func swiGLURow(gate: UnsafeMutablePointer<Float>, up: UnsafePointer<Float>, count: Int) {
        var i = 0
        while i + 8 <= count {
            let g = UnsafeRawPointer(gate + i).loadUnaligned(as: SIMD8<Float>.self)
            let u = UnsafeRawPointer(up + i).loadUnaligned(as: SIMD8<Float>.self)
            let silu = g / (1 + exp8(0 - g))
            UnsafeMutableRawPointer(gate + i).storeBytes(of: silu * u, as: SIMD8<Float>.self)
            i += 8
        }
        while i < count {
            let g = gate[i]
            gate[i] = g / (1 + expf(-g)) * up[i]
            i += 1
        }
    }

    /// Adds `bias` (length `n`) to each of `rows` rows.
    public static func addBias(_ bias: UnsafePointer<Float>, to y: UnsafeMutablePointer<Float>, rows: Int, n: Int) {
        for r in 0..<rows {
            let row = y + r * n
            for i in 0..<n { row[i] += bias[i] }
        }
    }

    /// In-place softmax of `count` values as ggml's `soft_max` on x86: e^(x − max) eight at a time with
    /// `exp8` (the tail with `expf`), each eight's float sum added to a Double total, then every value times
    /// Float(1 / total). Masked scores may be −∞ (they become 0).
    public static func softmaxX86(_ x: UnsafeMutablePointer<Float>, count: Int) {
        guard count > 0 else { return }
        var maximum = -Float.infinity
        for i in 0..<count where x[i] > maximum { maximum = x[i] }
        var total: Double = 0
        var i = 0
        while i + 8 <= count {
            let e = exp8(UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self) - SIMD8(repeating: maximum))
            UnsafeMutableRawPointer(x + i).storeBytes(of: e, as: SIMD8<Float>.self)
            total += Double(horizontalSum(e))
            i += 8
        }
        while i < count {
            let e = expf(x[i] - maximum)
            x[i] = e
            total += Double(e)
            i += 1
        }
        let inverse = Float(1 / total)
        for i in 0..<count { x[i] *= inverse }
    }

    /// Σ of eight lanes in x86's SSE order (`hsum_float_8`): (v₀+v₄ + v₂+v₆) + (v₁+v₅ + v₃+v₇).
    @inline(__always)
    public static func horizontalSum(_ v: SIMD8<Float>) -> Float {
        let v4 = v.highHalf + v.lowHalf
        return (v4[0] + v4[2]) + (v4[1] + v4[3])
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
