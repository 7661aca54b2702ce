import WhaleCore

/// Matrix products with a stored weight matrix: the linear layers of every model.
///
/// One entry point for every weight type so that model code reads like the math (`Linear.apply(wq, …)`).
/// Quantized weights are multiplied by activations quantized to 8 bits the way llama.cpp's CPU backend
/// does it, so that BlueWhale's logits track llama.cpp's closely; float weights use float32 activations
/// and float32 sums, as transformers does.
public enum Linear {
    /// Weight types `apply` can multiply, in the order error messages list them.
    public static let supportedTypes: [DType] = [
        .f32, .f16, .bf16, .f8E4M3, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q6_K, .q5_K, .q3_K, .q2_K,
    ]

    /// Whether `apply` (and `reference`) accept weights of this type; check before loading a model so that
    /// an unsupported file fails with an error that lists `supportedTypes` instead of a crash.
    public static func supports(_ type: DType) -> Bool {
        switch type {
        case .f32, .f16, .bf16, .f8E4M3, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q6_K, .q5_K, .q3_K, .q2_K: true
        default: false
        }
    }

    /// output[t * weight.rows + r] = Σ_c W[r, c] · input[t * weight.columns + c]  for t in 0..<tokens.
    ///
    /// For quantized weights the activations are first quantized the way llama.cpp's CPU backend does for
    /// that weight type (Q4_0/Q8_0/Q5_0 → Q8_0 activations; Q4_1/Q5_1 → Q8_1; the K-quants → Q8_K), each
    /// block's dot product is exact in integers as in ggml, and the float32 sums follow ggml's AVX2 order for
    /// the legacy types in the file's layout (bit-identical to `reference`, see [X86_BLOCK_DOT]), their own
    /// order for weights repacked at load (`WeightMatrix.layout == .interleaved`, [INTERLEAVED_ROWS]) and for
    /// the K-quants (within each type's tolerance of `reference`).
    /// F32/F16/BF16 weights use f32 activations (exact f32 math, as transformers does); F8_E4M3 rows are
    /// widened and multiplied by their block scales first (the dequantized weight of DeepSeek's reference).
    ///
    /// Output rows are split into chunks claimed by the pool's threads; with several tokens each weight
    /// block is unpacked once for four tokens. Weights may have any alignment (they are read in place from
    /// the mapped file); `input` and `output` need only Float alignment and must not overlap. `workspace`
    /// holds the rearranged activations (about 2 bytes per input element, 4 for F16/BF16 weights) and must
    /// not be used by another call at the same time.
    ///
    /// - Precondition: `supports(weight.type)`; `input` holds `tokens * weight.columns` floats and
    ///   `output` room for `tokens * weight.rows`.
    // Never inlined: with -cross-module-optimization the kernels would otherwise be compiled into the
    // caller's module, with that module's flags.
    @inline(never)
    public static func apply(
        _ weight: WeightMatrix, input: UnsafePointer<Float>, tokens: Int, output: UnsafeMutablePointer<Float>,
        pool: ThreadPool, workspace: LinearWorkspace
    ) {
        precondition(supports(weight.type), unsupportedMessage(weight.type))
        precondition(tokens >= 0, "Linear.apply: negative token count \(tokens)")
        if tokens == 0 || weight.rows == 0 { return }
        if weight.columns == 0 {
            output.initialize(repeating: 0, count: tokens * weight.rows)
            return
        }
        let job = LinearJob(weight: weight, tokens: tokens, output: output)
        let rowsPerChunk = chunkRows(job, threads: pool.threadCount)
        let chunks = (weight.rows + rowsPerChunk - 1) / rowsPerChunk
        func rowRange(_ chunk: Int) -> Range<Int> {
            chunk * rowsPerChunk..<min(weight.rows, (chunk + 1) * rowsPerChunk)
        }
        switch weight.type {
        case .f32:
            pool.parallelFor(chunks) { chunk in FloatKernels.rows(job, input: input, rows: rowRange(chunk)) }
        case .f8E4M3:
            let rows = workspace.widenedRows(columns: weight.columns, workers: pool.threadCount)
            pool.parallelFor(chunks) { chunk, worker in
                FP8Kernels.rows(job, input: input, rows: rowRange(chunk), row: rows + worker * weight.columns)
            }
        case .f16, .bf16:
            let x = workspace.deinterleave(input, tokens: tokens, columns: weight.columns)
            pool.parallelFor(chunks) { chunk in FloatKernels.rows(job, input: x, rows: rowRange(chunk)) }
        default:
            let x = workspace.quantize(input, tokens: tokens, columns: weight.columns, for: weight.type, pool: pool)
            pool.parallelFor(chunks) { chunk in quantizedRows(job, x, rows: rowRange(chunk)) }
        }
    }

    /// One product of several given to `apply(_:pool:workspace:)`: `output = weight · input` for `tokens`
    /// rows of input, as in `apply(_:input:tokens:output:pool:workspace:)`.
    public struct Product {
        public let weight: WeightMatrix
        public let input: UnsafePointer<Float>
        public let tokens: Int
        public let output: UnsafeMutablePointer<Float>

        public init(
            _ weight: WeightMatrix, input: UnsafePointer<Float>, tokens: Int, output: UnsafeMutablePointer<Float>
        ) {
            self.weight = weight
            self.input = input
            self.tokens = tokens
            self.output = output
        }
    }

    /// Several independent products as one parallel job: every product's rows are split into chunks as a
    /// single product's are, and the pool's threads claim chunks from all of them — so that small products
    /// (a decode step's experts: a few hundred kilobytes each) do not each pay a dispatch and a wait for
    /// the slowest thread. Products with the same input and weight type share its quantization (an
    /// expert's gate and up). Each output is exactly what `apply` on that product alone writes.
    ///
    /// - Precondition: as for each product alone; no output overlaps an input or another output.
    @inline(never)
    public static func apply(_ products: UnsafeBufferPointer<Product>, pool: ThreadPool, workspace: LinearWorkspace) {
        let isBatchable = products.allSatisfy { product in
            switch product.weight.type {
            case .f32, .f16, .bf16, .f8E4M3: false
            default:
                supports(product.weight.type) && product.tokens > 0 && product.weight.rows > 0
                    && product.weight.columns > 0
            }
        }
        guard isBatchable, products.count > 1 else {
            for product in products {
                apply(
                    product.weight, input: product.input, tokens: product.tokens, output: product.output, pool: pool,
                    workspace: workspace)
            }
            return
        }
        let activations = workspace.quantize(products, pool: pool)
        withUnsafeTemporaryAllocation(
            of: (job: LinearJob, rowsPerChunk: Int, firstChunk: Int).self, capacity: products.count
        ) {
            parts in
            var chunks = 0
            for (index, product) in products.enumerated() {
                let job = LinearJob(weight: product.weight, tokens: product.tokens, output: product.output)
                let rowsPerChunk = chunkRows(job, threads: pool.threadCount, products: products.count)
                (parts.baseAddress! + index).initialize(to: (job, rowsPerChunk, chunks))
                chunks += (product.weight.rows + rowsPerChunk - 1) / rowsPerChunk
            }
            let parts = UnsafeBufferPointer(parts)
            pool.parallelFor(chunks) { chunk in
                var index = 0
                while index + 1 < parts.count && parts[index + 1].firstChunk <= chunk { index += 1 }
                let part = parts[index]
                let first = (chunk - part.firstChunk) * part.rowsPerChunk
                quantizedRows(
                    part.job, activations[index], rows: first..<min(part.job.rows, first + part.rowsPerChunk))
            }
        }
    }

    /// Rows `rows` of a quantized product, with the kernel for its type and layout.
    @inline(__always)
    static func quantizedRows(_ job: LinearJob, _ x: QuantizedActivations, rows: Range<Int>) {
        if job.layout == .interleaved {
            precondition(InterleavedRows.hasKernels, "Linear: this build has no kernels for interleaved weights")
            InterleavedKernels.rows(job, x, rows: rows)
            return
        }
        switch job.type {
        case .q4_K, .q5_K, .q6_K, .q3_K, .q2_K: KQuantKernels.rows(job, x, rows: rows)
        default: LegacyKernels.rows(job, x, rows: rows)
        }
    }

    /// Rows per parallel chunk: about 4096 block dot products (a few microseconds) so that claiming is
    /// noise, and about four chunks per thread: enough to even out a thread that starts late, few enough
    /// that each thread streams long runs of weights (measured: eight or sixteen chunks per thread lost
    /// 10–40 % on decode-sized products, as every chunk start waits for memory again). For one of `products`
    /// products run as one job, the four chunks per thread are counted over the job: a decode step's small
    /// per-head products (8 × 512 rows of 128 columns) each in one or two chunks, not eight.
    static func chunkRows(_ job: LinearJob, threads: Int, products: Int = 1) -> Int {
        let workPerRow = max(1, (job.columns + 31) / 32) * job.tokens
        let byWork = max(1, 4096 / workPerRow)
        let byBalance = max(1, job.rows * products / (threads * 4))
        let rows = min(byWork, byBalance)
        // Interleaved matrices go by whole groups ([INTERLEAVED_ROWS]).
        if job.layout == .interleaved {
            let group = InterleavedRows.groupRows
            return max(group, (rows + group / 2) / group * group)
        }
        // Whole groups of four rows keep the kernels on their unrolled path.
        return rows >= 8 ? rows & ~3 : rows
    }

    static func unsupportedMessage(_ type: DType) -> String {
        "Linear: weight type \(type) is not supported (supported: "
            + supportedTypes.map(\.rawValue).joined(separator: ", ") + "); check Linear.supports first"
    }
}

/// Everything a chunk of rows needs, as plain values and pointers (no class references in kernels).
struct LinearJob {
    let type: DType
    let weights: UnsafeRawPointer
    let rowBytes: Int
    let rows: Int
    let columns: Int
    let tokens: Int
    let output: UnsafeMutablePointer<Float>
    /// FP8 block scales (see `WeightMatrix.blockScales`).
    let blockScales: UnsafePointer<Float>?
    let scaleBlockSize: Int
    let layout: WeightLayout

    init(weight: WeightMatrix, tokens: Int, output: UnsafeMutablePointer<Float>) {
        type = weight.type
        weights = weight.data
        rowBytes = weight.rowBytes
        rows = weight.rows
        columns = weight.columns
        self.tokens = tokens
        self.output = output
        blockScales = weight.blockScales
        scaleBlockSize = weight.scaleBlockSize
        layout = weight.layout
    }
}
