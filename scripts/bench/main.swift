import WhaleCore
import WhaleKernels

// Matrix kernel benchmark: GB/s of weight bytes read by `Linear.apply` for SmolLM2-135M's shapes, and the
// matmul-only speed of a whole decode step and a 64-token prompt chunk. Built and run by
// scripts/bench-kernels.sh in a throwaway package that depends on BlueWhale by path (timing never lives in
// unit tests). Arguments: [seconds per measurement (default 0.3)] [weight types to measure, comma-separated
// (default all)].
//
// "cold" cycles through enough copies of a matrix to overflow the 32 MiB L3, as decode does (96 MB of
// weights per token); "hot" repeats one matrix, which stays in L2 when it fits.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

func seconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}

struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform() -> Float { Float(next() >> 40) / Float(1 << 23) - 1 }
}

/// Random weights with sane float16 scales (random bits could be NaN), kept alive for the whole run.
func makeMatrix(_ type: DType, rows: Int, columns: Int, seed: UInt64) -> WeightMatrix {
    let rowBytes = type.byteCount(elements: columns)!
    let bytes = UnsafeMutableRawPointer.allocate(byteCount: rows * rowBytes, alignment: 64)
    var random = SplitMix64(state: seed)
    let words = rows * rowBytes / 8
    let w = bytes.bindMemory(to: UInt64.self, capacity: words)
    for i in 0..<words { w[i] = random.next() }
    for i in (words * 8)..<(rows * rowBytes) { bytes.storeBytes(of: UInt8(i & 0xFF), toByteOffset: i, as: UInt8.self) }
    func setHalf(_ offset: Int, _ value: Float) {
        bytes.storeBytes(of: Float16(value).bitPattern, toByteOffset: offset, as: UInt16.self)
    }
    switch type {
    case .f32:
        for i in 0..<(rows * columns) { bytes.storeBytes(of: random.uniform(), toByteOffset: 4 * i, as: Float.self) }
    case .f16:
        for i in 0..<(rows * columns) { setHalf(2 * i, random.uniform()) }
    case .bf16:
        for i in 0..<(rows * columns) {
            bytes.storeBytes(of: UInt16(random.uniform().bitPattern >> 16), toByteOffset: 2 * i, as: UInt16.self)
        }
    default:
        for b in 0..<(rows * columns / type.blockSize) {
            let block = b * type.bytesPerBlock
            switch type {
            case .q4_K:
                setHalf(block, 0.01)
                setHalf(block + 2, 0.01)
            case .q6_K: setHalf(block + 208, 0.001)
            case .q4_1, .q5_1:
                setHalf(block, 0.01)
                setHalf(block + 2, -0.05)
            default: setHalf(block, 0.01)
            }
        }
    }
    let matrix = WeightMatrix(type: type, rows: rows, columns: columns, data: UnsafeRawPointer(bytes))
    // Repacked where the model loader would repack it ([INTERLEAVED_ROWS]).
    guard InterleavedRows.isPreferred(type, rows: rows) else { return matrix }
    let packed = matrix.interleaved(into: .allocate(byteCount: matrix.byteCount, alignment: 64))
    bytes.deallocate()
    return packed
}

func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

/// Median seconds per call of `body`, over rounds of about `budget / 7` seconds each.
func measure(budget: Double, _ body: () -> Void) -> Double {
    for _ in 0..<3 { body() }
    var calls = 1
    var start = seconds()
    body()
    while seconds() - start < budget / 20 {
        calls *= 2
        start = seconds()
        for _ in 0..<calls { body() }
    }
    let perCall = (seconds() - start) / Double(calls)
    let perRound = max(1, Int(budget / 7 / max(perCall, 1e-9)))
    var rounds: [Double] = []
    for _ in 0..<7 {
        let t0 = seconds()
        for _ in 0..<perRound { body() }
        rounds.append((seconds() - t0) / Double(perRound))
    }
    return median(rounds)
}

let budget = CommandLine.arguments.count > 1 ? Double(CommandLine.arguments[1])! : 0.3
let onlyTypes =
    CommandLine.arguments.count > 2 ? Set(CommandLine.arguments[2].split(separator: ",").map(String.init)) : nil
let pools = [1, 2].map { ThreadPool(threads: $0) }
let workspace = LinearWorkspace()
let l3Bytes = 32 << 20

func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
func fmt(_ x: Double, _ digits: Int = 1) -> String {
    var scaled = (x * pow(10, Double(digits))).rounded() / pow(10, Double(digits))
    if scaled == -0 { scaled = 0 }
    return "\(scaled)"
}

// MARK: - Single matrices

let shapes: [(name: String, type: DType, rows: Int, columns: Int)] = [
    ("q/o 576×576", .q4_1, 576, 576),
    ("gate/up 1536×576", .q4_1, 1536, 576),
    ("down 576×1536", .q4_1, 576, 1536),
    ("output 49152×576", .q8_0, 49152, 576),
    ("576×576", .q4_0, 576, 576),
    ("1536×576", .q8_0, 1536, 576),
    ("1536×576", .q4_K, 1536, 768),
    ("1536×576", .q6_K, 1536, 768),
    ("dsv3 head", .q6_K, 129280, 1024),
    ("dsv3 expert", .q4_K, 512, 1024),
    ("1536×576", .f16, 1536, 576),
    ("1536×576", .bf16, 1536, 576),
    ("1536×576", .f32, 1536, 576),
]

print("weights GB/s = bytes of the matrix / time per call; cold = cycling through copies larger than L3")
print(
    pad("shape", 18) + pad("type", 6) + pad("tokens", 8) + pad("threads", 9) + pad("µs/call", 10)
        + pad("cold GB/s", 11) + pad("hot GB/s", 10) + "GOP/s")
for (index, shape) in shapes.enumerated() where onlyTypes?.contains(shape.type.rawValue) ?? true {
    let bytes = shape.rows * shape.type.byteCount(elements: shape.columns)!
    let copies = max(1, (4 * l3Bytes) / bytes)
    let matrices = (0..<copies).map {
        makeMatrix(shape.type, rows: shape.rows, columns: shape.columns, seed: UInt64(index * 1000 + $0))
    }
    for tokens in [1, 64] {
        if tokens > 1 && shape.rows > 4096 { continue }
        var random = SplitMix64(state: 42)
        let input = (0..<(tokens * shape.columns)).map { _ in random.uniform() }
        var output = [Float](repeating: 0, count: tokens * shape.rows)
        for pool in pools {
            var next = 0
            let cold = input.withUnsafeBufferPointer { x in
                output.withUnsafeMutableBufferPointer { y in
                    measure(budget: budget) {
                        Linear.apply(
                            matrices[next], input: x.baseAddress!, tokens: tokens, output: y.baseAddress!,
                            pool: pool, workspace: workspace)
                        next = next + 1 == matrices.count ? 0 : next + 1
                    }
                }
            }
            let hot = input.withUnsafeBufferPointer { x in
                output.withUnsafeMutableBufferPointer { y in
                    measure(budget: budget) {
                        Linear.apply(
                            matrices[0], input: x.baseAddress!, tokens: tokens, output: y.baseAddress!, pool: pool,
                            workspace: workspace)
                    }
                }
            }
            let ops = 2 * Double(shape.rows * shape.columns * tokens)
            print(
                pad(shape.name, 18) + pad(shape.type.rawValue, 6) + pad("\(tokens)", 8) + pad("\(pool.threadCount)", 9)
                    + pad(fmt(cold * 1e6), 10) + pad(fmt(Double(bytes) / cold / 1e9, 2), 11)
                    + pad(fmt(Double(bytes) / hot / 1e9, 2), 10) + fmt(ops / cold / 1e9))
        }
    }
}

// MARK: - Thread pool

print("\nthread pool: cost of one parallelFor with one chunk per thread and an empty body")
for pool in pools {
    let perCall = measure(budget: budget) { pool.parallelFor(pool.threadCount) { _ in } }
    print("\(pool.threadCount) thread(s): \(fmt(perCall * 1e6, 2)) µs per call")
}

print("\nfixed cost of one Linear.apply (a 1-row matrix: activation quantization + dispatch), 1 token")
for (type, columns) in [(DType.q4_1, 576), (.q4_1, 1536), (.q8_0, 576), (.f16, 576)] {
    let matrix = makeMatrix(type, rows: 1, columns: columns, seed: 99)
    let input = [Float](repeating: 0.5, count: columns)
    var output: Float = 0
    for pool in pools {
        let perCall = input.withUnsafeBufferPointer { x in
            measure(budget: budget) {
                Linear.apply(
                    matrix, input: x.baseAddress!, tokens: 1, output: &output, pool: pool, workspace: workspace)
            }
        }
        print("\(type) \(columns) columns, \(pool.threadCount) thread(s): \(fmt(perCall * 1e6, 2)) µs")
    }
}

// MARK: - A whole model's matrices (SmolLM2-135M-Instruct.Q4_1: 30 layers + Q8_0 output head)

let layerShapes: [(rows: Int, columns: Int)] = [
    (576, 576), (192, 576), (192, 576), (576, 576), (1536, 576), (1536, 576), (576, 1536),
]
let model: [WeightMatrix] =
    (0..<30).flatMap { layer in
        layerShapes.enumerated().map { i, s in
            makeMatrix(.q4_1, rows: s.rows, columns: s.columns, seed: UInt64(100_000 + layer * 10 + i))
        }
    } + [makeMatrix(.q8_0, rows: 49152, columns: 576, seed: 7)]
let modelBytes = model.reduce(0) { $0 + $1.rows * $1.rowBytes }
print("\nSmolLM2-135M matrices (\(fmt(Double(modelBytes) / 1e6)) MB): matmul time only, no attention or norms")
for tokens in [1, 64] {
    var random = SplitMix64(state: 43)
    let input = (0..<(tokens * 1536)).map { _ in random.uniform() }
    var output = [Float](repeating: 0, count: tokens * 49152)
    for pool in pools {
        let perPass = input.withUnsafeBufferPointer { x in
            output.withUnsafeMutableBufferPointer { y in
                measure(budget: budget * 4) {
                    for matrix in model {
                        Linear.apply(
                            matrix, input: x.baseAddress!, tokens: tokens, output: y.baseAddress!, pool: pool,
                            workspace: workspace)
                    }
                }
            }
        }
        let label = tokens == 1 ? "decode" : "prompt (\(tokens) tokens per pass)"
        print(
            "\(label), \(pool.threadCount) thread(s): \(fmt(perPass * 1e3, 2)) ms per pass, "
                + "\(fmt(Double(tokens) / perPass)) tokens/s, \(fmt(Double(modelBytes) / perPass / 1e9, 2)) GB/s")
    }
}
