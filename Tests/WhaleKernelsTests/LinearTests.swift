import Testing
import WhaleCore
import WhaleKernels

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// `Linear.apply` against its scalar specification `Linear.reference`, and the reference against plain
/// float32 math on dequantized weights. Shapes are small and awkward (debug builds are 100–2000× slower
/// than release); every quantized case uses random blocks with sane float16 scales.
struct LinearTests {
    /// apply vs reference, relative to Σ|w·x| of the row: the two use identical activations and integer
    /// block sums, so only float32 summation order can differ — and for the legacy types it may not: both
    /// follow llama.cpp's x86 float steps, so they must agree bit for bit ([X86_BLOCK_DOT]).
    static let orderTolerance: [DType: Float] = [
        .f32: 1e-5, .f16: 1e-5, .bf16: 1e-5,
        .q8_0: 0, .q4_0: 0, .q4_1: 0, .q5_0: 0, .q5_1: 0,
        .q4_K: 1e-5, .q5_K: 1e-5, .q6_K: 1e-5, .q3_K: 1e-5, .q2_K: 1e-5,
    ]

    /// F8_E4M3 has its own tests (LinearFP8Tests): random bytes include its NaN codes, and its block scales
    /// need their own setup.
    static let types = Linear.supportedTypes.filter { $0 != .f8E4M3 }

    /// (rows, blocks per row, tokens); columns = blocks × the type's block size (32 for float types).
    static let shapes: [(rows: Int, blocks: Int, tokens: Int)] = [
        (1, 1, 1), (3, 2, 2), (17, 3, 3), (33, 18, 7), (257, 1, 16), (5, 48, 1), (17, 8, 5), (3, 3, 4),
    ]

    @Test("supports lists exactly supportedTypes")
    func supportedTypes() {
        for type in DType.allCases {
            #expect(Linear.supports(type) == Linear.supportedTypes.contains(type), "\(type)")
        }
        #expect(Linear.supports(.q4_1) && Linear.supports(.q8_0) && !Linear.supports(.iq2_XXS))
    }

    @Test("apply matches reference", arguments: types, [1, 2])
    func applyMatchesReference(type: DType, threads: Int) {
        let pool = ThreadPool(threads: threads)
        let workspace = LinearWorkspace()
        for (index, shape) in Self.shapes.enumerated() {
            let columns = shape.blocks * max(32, type.blockSize)
            let seed = UInt64(index) &* 7919 &+ UInt64(type.ggmlTypeID ?? 0)
            let matrix = TestMatrix(type: type, rows: shape.rows, columns: columns, seed: seed)
            let input = TestMatrix.activations(tokens: shape.tokens, columns: columns, seed: seed &+ 1)
            let expected = matrix.reference(input, tokens: shape.tokens)
            let actual = matrix.apply(input, tokens: shape.tokens, pool: pool, workspace: workspace)
            let scale = matrix.magnitudes(input, tokens: shape.tokens)
            let tolerance = Self.orderTolerance[type]!
            let label = "\(type) \(shape.rows)×\(columns), \(shape.tokens) tokens, \(threads) threads"
            let worst = zip(zip(actual, expected), scale).map { pair, s in abs(pair.0 - pair.1) / max(s, 1e-30) }
                .max()!
            #expect(worst <= tolerance, "\(label): relative difference \(worst)")
        }
    }

    /// Columns that are not a multiple of the SIMD width exercise the float kernels' tails.
    @Test("float weights with ragged columns", arguments: [DType.f32, .f16, .bf16], [1, 3, 17, 33, 100])
    func raggedFloatColumns(type: DType, columns: Int) {
        let pool = ThreadPool(threads: 2)
        let matrix = TestMatrix(type: type, rows: 5, columns: columns, seed: UInt64(columns))
        for tokens in [1, 2, 5] {
            let input = TestMatrix.activations(tokens: tokens, columns: columns, seed: 3)
            let expected = matrix.reference(input, tokens: tokens)
            let actual = matrix.apply(input, tokens: tokens, pool: pool, workspace: LinearWorkspace())
            let scale = matrix.magnitudes(input, tokens: tokens)
            for i in actual.indices {
                #expect(abs(actual[i] - expected[i]) <= 1e-5 * scale[i], "\(type) columns \(columns) at \(i)")
            }
        }
    }

    /// The F16 / BF16 kernels widen with integer tricks instead of the hardware conversion; times a one-hot
    /// input (the identity as 64 tokens) each output is one weight, so every finite bit pattern — zeros,
    /// subnormals, the largest values — must come out exactly as `Dequantize` has it.
    @Test("F16 and BF16 weights convert exactly", arguments: [DType.f16, .bf16])
    func exactHalfConversion(type: DType) {
        let columns = 64
        let rows = 1024
        let matrix = TestMatrix(type: type, rows: rows, columns: columns, seed: 0)
        let data = matrix.bytes.baseAddress!
        for i in 0..<(rows * columns) {
            let bits = UInt16(truncatingIfNeeded: i)
            let exponentAllOnes = type == .f16 ? bits & 0x7C00 == 0x7C00 : bits & 0x7F80 == 0x7F80
            data.storeBytes(of: exponentAllOnes ? 0 : bits, toByteOffset: 2 * i, as: UInt16.self)
        }
        var identity = [Float](repeating: 0, count: columns * columns)
        for c in 0..<columns { identity[c * columns + c] = 1 }
        let actual = matrix.apply(identity, tokens: columns, pool: ThreadPool(threads: 2), workspace: LinearWorkspace())
        let weights = matrix.dequantized()
        var mismatches = 0
        for r in 0..<rows {
            // Compared as values: a sum that starts at +0 turns the weight −0 into +0.
            for c in 0..<columns where actual[c * rows + r] != weights[r * columns + c] {
                mismatches += 1
            }
        }
        #expect(mismatches == 0, "\(type): \(mismatches) values differ")
    }

    @Test("F16 infinities and NaN stay infinite and NaN")
    func halfSpecialValues() {
        let matrix = TestMatrix(type: .f16, rows: 3, columns: 16, seed: 0)
        let data = matrix.bytes.baseAddress!
        for i in 0..<48 { data.storeBytes(of: UInt16(0), toByteOffset: 2 * i, as: UInt16.self) }
        for (row, bits) in [(0, UInt16(0x7C00)), (1, 0xFC00), (2, 0x7E01)] {
            data.storeBytes(of: bits, toByteOffset: 2 * (row * 16 + 5), as: UInt16.self)
        }
        var input = [Float](repeating: 0, count: 16)
        input[5] = 1
        let output = matrix.apply(input, tokens: 1, pool: ThreadPool(threads: 1), workspace: LinearWorkspace())
        #expect(output[0] == .infinity && output[1] == -.infinity && output[2].isNaN)
    }

    /// The reference quantizes activations to 8 bits; against float32 math on the dequantized weights it
    /// may differ by what that rounding allows: per element half a step (amax / 254) plus the float16
    /// rounding of the block scale (2⁻¹¹ relative), and for Q4_1 / Q5_1 the float16 rounding of `s`.
    @Test("reference is float math within the activation quantization error", arguments: types)
    func referenceMatchesFloatMath(type: DType) {
        let columns = 2 * max(32, type.blockSize)
        let matrix = TestMatrix(type: type, rows: 9, columns: columns, seed: 11)
        let tokens = 3
        let input = TestMatrix.activations(tokens: tokens, columns: columns, seed: 12)
        let quantized = matrix.reference(input, tokens: tokens)
        let dequantized = matrix.dequantized()
        let block = type.isQuantized ? max(32, type.blockSize) : columns
        let scaleRounding: Float = type.isQuantized && type.blockSize == 32 ? 1.0 / 1024 : 0
        for t in 0..<tokens {
            for r in 0..<matrix.rows {
                var exact: Double = 0
                var bound: Double = 0
                for start in stride(from: 0, to: columns, by: block) {
                    let x = input[(t * columns + start)..<(t * columns + start + block)]
                    let amax = Double(x.map { abs($0) }.max()!)
                    var absX: Double = 0
                    for c in start..<(start + block) {
                        let w = Double(dequantized[r * columns + c])
                        let xc = Double(input[t * columns + c])
                        exact += w * xc
                        absX += abs(xc)
                        if type.isQuantized { bound += abs(w) * (amax / 254 + amax * Double(scaleRounding)) }
                        bound += abs(w * xc) * 1e-5
                    }
                    if type == .q4_1 || type == .q5_1 {
                        let m = Double(matrix.blockMinimum(row: r, block: start / 32))
                        bound += abs(m) * (absX + Double(block) * amax) * Double(scaleRounding)
                    }
                }
                let actual = Double(quantized[t * matrix.rows + r])
                #expect(
                    abs(actual - exact) <= bound, "\(type) token \(t) row \(r): \(actual) vs \(exact), bound \(bound)")
            }
        }
    }

    /// An all-zero token takes the `amax == 0` path (scale 0, all codes 0) and must give exact zeros.
    @Test("zero activations give zero output", arguments: types)
    func zeroActivations(type: DType) {
        let columns = max(32, type.blockSize)
        let matrix = TestMatrix(type: type, rows: 4, columns: columns, seed: 5)
        let input = [Float](repeating: 0, count: 2 * columns)
        let pool = ThreadPool(threads: 2)
        #expect(
            matrix.apply(input, tokens: 2, pool: pool, workspace: LinearWorkspace()) == [Float](repeating: 0, count: 8))
        #expect(matrix.reference(input, tokens: 2) == [Float](repeating: 0, count: 8))
    }

    /// Weights come from a memory-mapped file at whatever offset the tensor has.
    @Test("unaligned weights", arguments: [DType.q4_1, .q8_0, .q4_K, .f16])
    func unalignedWeights(type: DType) {
        let columns = 2 * max(32, type.blockSize)
        let matrix = TestMatrix(type: type, rows: 6, columns: columns, seed: 9, misalignment: 3)
        let input = TestMatrix.activations(tokens: 5, columns: columns, seed: 10)
        let pool = ThreadPool(threads: 2)
        let expected = matrix.reference(input, tokens: 5)
        let actual = matrix.apply(input, tokens: 5, pool: pool, workspace: LinearWorkspace())
        let scale = matrix.magnitudes(input, tokens: 5)
        for i in actual.indices { #expect(abs(actual[i] - expected[i]) <= 1e-5 * scale[i], "\(type) at \(i)") }
    }

    /// One workspace serves calls of growing and shrinking sizes and different activation formats.
    @Test("workspace is reused across shapes and formats")
    func workspaceReuse() {
        let pool = ThreadPool(threads: 2)
        let workspace = LinearWorkspace()
        for (type, tokens) in [(DType.q4_1, 9), (.q8_0, 1), (.q6_K, 3), (.q4_1, 2), (.q4_0, 12)] {
            let columns = 2 * type.blockSize
            let matrix = TestMatrix(type: type, rows: 7, columns: columns, seed: UInt64(tokens))
            let input = TestMatrix.activations(tokens: tokens, columns: columns, seed: 4)
            let expected = matrix.reference(input, tokens: tokens)
            let actual = matrix.apply(input, tokens: tokens, pool: pool, workspace: workspace)
            let scale = matrix.magnitudes(input, tokens: tokens)
            for i in actual.indices { #expect(abs(actual[i] - expected[i]) <= 1e-5 * scale[i], "\(type) at \(i)") }
        }
        #expect(workspace.reservedBytes > 0)
    }

    @Test("several products as one job write what each writes alone", arguments: [1, 2], [1, 3, 9])
    func productsAsOneJob(threads: Int, tokens: Int) {
        let pool = ThreadPool(threads: threads)
        let workspace = LinearWorkspace()
        // Two products share an input and a type (one quantization); the others differ in type or input.
        let matrices = [
            TestMatrix(type: .q4_K, rows: 32, columns: 512, seed: 1),
            TestMatrix(type: .q4_K, rows: 48, columns: 512, seed: 2),
            TestMatrix(type: .q6_K, rows: 16, columns: 512, seed: 3),
            TestMatrix(type: .q4_1, rows: 7, columns: 64, seed: 4),
            TestMatrix(type: .q8_0, rows: 64, columns: 512, seed: 5),
            TestMatrix(type: .q5_K, rows: 20, columns: 512, seed: 8),
            TestMatrix(type: .q3_K, rows: 12, columns: 512, seed: 9),
            TestMatrix(type: .q2_K, rows: 9, columns: 512, seed: 10),
        ]
        let shared = TestMatrix.activations(tokens: tokens, columns: 512, seed: 6)
        let small = TestMatrix.activations(tokens: tokens, columns: 64, seed: 7)
        var weights = matrices.map(\.weight)
        var buffers: [UnsafeMutableRawBufferPointer] = []
        defer { buffers.forEach { $0.deallocate() } }
        // Where the build repacks, the repacked layout too, as the model loader would.
        for (i, weight) in weights.enumerated() where InterleavedRows.isPreferred(weight.type, rows: weight.rows) {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: weight.byteCount, alignment: 64)
            buffers.append(buffer)
            weights[i] = weight.interleaved(into: buffer.baseAddress!)
        }
        let inputs = [shared, shared, shared, small, shared, shared, shared, shared]
        let alone = zip(weights, inputs).map { weight, input in
            TestMatrix.apply(weight, input, tokens: tokens, pool: pool, workspace: workspace)
        }
        let outputs = weights.map { UnsafeMutableBufferPointer<Float>.allocate(capacity: tokens * $0.rows) }
        defer { outputs.forEach { $0.deallocate() } }
        for output in outputs { output.initialize(repeating: .nan) }
        shared.withUnsafeBufferPointer { x in
            small.withUnsafeBufferPointer { y in
                let products = weights.indices.map { i in
                    Linear.Product(
                        weights[i], input: i == 3 ? y.baseAddress! : x.baseAddress!, tokens: tokens,
                        output: outputs[i].baseAddress!)
                }
                products.withUnsafeBufferPointer { Linear.apply($0, pool: pool, workspace: workspace) }
            }
        }
        withExtendedLifetime(matrices) {}  // the weights point into them
        for i in weights.indices {
            #expect(outputs[i].map(\.bitPattern) == alone[i].map(\.bitPattern), "product \(i) (\(weights[i].type))")
            #expect(alone[i].allSatisfy { $0.isFinite })
        }
    }

    /// The kernels ask for weights ahead of the block they multiply ([STREAM_PREFETCH]), also past the end
    /// of the matrix; that must never fault, even when the next page cannot be read. Each matrix (and its
    /// repacked copy, where the build repacks) ends exactly where an unreadable page begins. The prefetch is
    /// off by default on AMD CPUs: scripts/test.sh runs the release matrix tests with WHALE_STREAM_PREFETCH=1.
    @Test("weights that end at an unreadable page", arguments: types)
    func weightsBeforeUnreadablePage(type: DType) throws {
        let rows = 32
        let columns = 4 * max(32, type.blockSize)
        let source = TestMatrix(type: type, rows: rows, columns: columns, seed: 77)
        let fileCopy = try GuardedBytes(count: source.weight.byteCount)
        fileCopy.start.copyMemory(from: source.weight.data, byteCount: source.weight.byteCount)
        var weight = WeightMatrix(type: type, rows: rows, columns: columns, data: UnsafeRawPointer(fileCopy.start))
        var tolerance = Self.orderTolerance[type]!
        let repacked = try GuardedBytes(count: weight.byteCount)
        if InterleavedRows.isPreferred(type, rows: rows) {
            weight = weight.interleaved(into: repacked.start)
            tolerance = max(tolerance, 1e-5)
        }
        let pool = ThreadPool(threads: 2)
        for tokens in [1, 2, 5] {
            let input = TestMatrix.activations(tokens: tokens, columns: columns, seed: UInt64(tokens))
            let actual = TestMatrix.apply(weight, input, tokens: tokens, pool: pool, workspace: LinearWorkspace())
            let expected = source.reference(input, tokens: tokens)
            let scale = source.magnitudes(input, tokens: tokens)
            for i in actual.indices {
                #expect(abs(actual[i] - expected[i]) <= tolerance * scale[i], "\(type), \(tokens) tokens, at \(i)")
            }
        }
    }

    @Test("no tokens writes nothing")
    func noTokens() {
        let matrix = TestMatrix(type: .q4_1, rows: 3, columns: 32, seed: 1)
        var input: [Float] = [1]
        var output: [Float] = [42]
        Linear.apply(
            matrix.weight, input: &input, tokens: 0, output: &output, pool: ThreadPool(threads: 2),
            workspace: LinearWorkspace())
        #expect(output == [42])
    }
}

/// A random weight matrix of one type with its bytes, for tests.
final class TestMatrix {
    let type: DType
    let rows: Int
    let columns: Int
    let misalignment: Int
    let bytes: UnsafeMutableRawBufferPointer

    init(type: DType, rows: Int, columns: Int, seed: UInt64, misalignment: Int = 0) {
        self.type = type
        self.rows = rows
        self.columns = columns
        self.misalignment = misalignment
        let rowBytes = type.byteCount(elements: columns)!
        bytes = .allocate(byteCount: rows * rowBytes + misalignment, alignment: 64)
        var random = SplitMix64(seed: seed)
        for i in 0..<bytes.count { bytes[i] = UInt8(truncatingIfNeeded: random.next()) }
        let data = bytes.baseAddress! + misalignment
        func setHalf(_ offset: Int, _ value: Float) {
            data.storeBytes(of: Float16(value).bitPattern, toByteOffset: offset, as: UInt16.self)
        }
        switch type {
        case .f32:
            for i in 0..<(rows * columns) { data.storeBytes(of: random.uniform(), toByteOffset: 4 * i, as: Float.self) }
        case .f16:
            for i in 0..<(rows * columns) { setHalf(2 * i, random.uniform()) }
        case .bf16:
            for i in 0..<(rows * columns) {
                let bits = UInt16(truncatingIfNeeded: random.uniform().bitPattern >> 16)
                data.storeBytes(of: bits, toByteOffset: 2 * i, as: UInt16.self)
            }
        default:
            // Random codes; scales in a range like real models' (and no NaN or infinity from random bits).
            let blocks = rows * columns / type.blockSize
            for b in 0..<blocks {
                let block = b * type.bytesPerBlock
                switch type {
                case .q4_K:
                    setHalf(block, 0.002 + 0.01 * abs(random.uniform()))
                    setHalf(block + 2, 0.002 + 0.01 * abs(random.uniform()))
                case .q6_K: setHalf(block + 208, 0.0005 + 0.002 * abs(random.uniform()))
                case .q5_K:
                    setHalf(block, 0.002 + 0.01 * abs(random.uniform()))
                    setHalf(block + 2, 0.002 + 0.01 * abs(random.uniform()))
                case .q3_K: setHalf(block + 108, 0.002 + 0.01 * abs(random.uniform()))
                case .q2_K:
                    setHalf(block + 80, 0.002 + 0.01 * abs(random.uniform()))
                    setHalf(block + 82, 0.002 + 0.01 * abs(random.uniform()))
                case .q4_1, .q5_1:
                    setHalf(block, 0.002 + 0.02 * abs(random.uniform()))
                    setHalf(block + 2, 0.1 * random.uniform())
                default: setHalf(block, 0.002 + 0.02 * abs(random.uniform()))
                }
            }
        }
    }

    deinit { bytes.deallocate() }

    var weight: WeightMatrix {
        WeightMatrix(
            type: type, rows: rows, columns: columns, data: UnsafeRawPointer(bytes.baseAddress! + misalignment))
    }

    /// Activations in [−1, 1) with an outlier per token, like a residual stream after a norm.
    static func activations(tokens: Int, columns: Int, seed: UInt64) -> [Float] {
        var random = SplitMix64(seed: seed)
        var x = (0..<(tokens * columns)).map { _ in random.uniform() }
        for t in 0..<tokens { x[t * columns + Int(random.next() % UInt64(columns))] *= 8 }
        return x
    }

    func apply(_ input: [Float], tokens: Int, pool: ThreadPool, workspace: LinearWorkspace) -> [Float] {
        Self.apply(weight, input, tokens: tokens, pool: pool, workspace: workspace)
    }

    /// `Linear.apply` of any weight matrix (this one, or a repacked copy of it) to `tokens` rows of `input`.
    static func apply(
        _ weight: WeightMatrix, _ input: [Float], tokens: Int, pool: ThreadPool, workspace: LinearWorkspace
    ) -> [Float] {
        var output = [Float](repeating: .nan, count: tokens * weight.rows)
        input.withUnsafeBufferPointer { x in
            output.withUnsafeMutableBufferPointer { y in
                Linear.apply(
                    weight, input: x.baseAddress!, tokens: tokens, output: y.baseAddress!, pool: pool,
                    workspace: workspace)
            }
        }
        return output
    }

    func reference(_ input: [Float], tokens: Int) -> [Float] {
        var output = [Float](repeating: .nan, count: tokens * rows)
        input.withUnsafeBufferPointer { x in
            output.withUnsafeMutableBufferPointer { y in
                Linear.reference(weight, input: x.baseAddress!, tokens: tokens, output: y.baseAddress!)
            }
        }
        return output
    }

    func dequantized() -> [Float] {
        var values = [Float](repeating: 0, count: rows * columns)
        values.withUnsafeMutableBufferPointer { out in
            for r in 0..<rows { weight.dequantizeRow(r, into: out.baseAddress! + r * columns) }
        }
        return values
    }

    /// Σ_c |W[r, c] · x[t, c]| for every output: the scale a float32 summation error is relative to.
    func magnitudes(_ input: [Float], tokens: Int) -> [Float] {
        let w = dequantized()
        var scale = [Float](repeating: 0, count: tokens * rows)
        for t in 0..<tokens {
            for r in 0..<rows {
                var sum: Float = 0
                for c in 0..<columns { sum += abs(w[r * columns + c] * input[t * columns + c]) }
                scale[t * rows + r] = sum
            }
        }
        return scale
    }

    /// The float16 minimum `m` of a Q4_1 / Q5_1 block.
    func blockMinimum(row: Int, block: Int) -> Float {
        let offset = misalignment + row * weight.rowBytes + block * type.bytesPerBlock + 2
        return Float(Float16(bitPattern: UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8))
    }
}

/// A small seeded generator so every run sees the same matrices.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [−1, 1).
    mutating func uniform() -> Float { Float(next() >> 40) / Float(1 << 23) - 1 }
}

/// `count` writable bytes that end exactly where a page the process cannot read begins (an anonymous
/// mapping with its last page `PROT_NONE`): a read past the end faults.
final class GuardedBytes {
    let start: UnsafeMutableRawPointer
    private let region: UnsafeMutableRawPointer
    private let mappedBytes: Int

    init(count: Int) throws {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        mappedBytes = (count + page - 1) / page * page + page
        let address = mmap(nil, mappedBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let address, address != MAP_FAILED else { throw GuardedBytesError.mapFailed }
        region = address
        guard mprotect(region + (mappedBytes - page), page, PROT_NONE) == 0 else {
            munmap(region, mappedBytes)
            throw GuardedBytesError.mapFailed
        }
        start = region + (mappedBytes - page - count)
    }

    deinit { munmap(region, mappedBytes) }
}

enum GuardedBytesError: Error { case mapFailed }
