import WhaleCore
import WhaleKernels
import WhaleModels

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// llama-bench's tests, run on BlueWhale's engine: `pp N` feeds an N-token prompt in one go (in 512-token
/// passes, as generation does), `tg N` decodes N tokens one pass at a time; each optionally after `depth`
/// tokens already in the cache (not timed). Token ids are fixed, ordinary ids; nothing is sampled.
public enum Benchmark {
    public struct Test: Sendable, Equatable {
        public enum Kind: Sendable, Equatable {
            case prompt(Int)
            case generation(Int)
        }
        public var kind: Kind
        public var depth: Int
        public var threads: Int

        public init(kind: Kind, depth: Int, threads: Int) {
            self.kind = kind
            self.depth = depth
            self.threads = threads
        }

        /// llama-bench's name: `pp512`, `tg128`, `tg128 @ d2048`.
        public var name: String {
            let base: String
            switch kind {
            case .prompt(let n): base = "pp\(n)"
            case .generation(let n): base = "tg\(n)"
            }
            return depth > 0 ? "\(base) @ d\(depth)" : base
        }

        public var tokens: Int {
            switch kind {
            case .prompt(let n), .generation(let n): n
            }
        }
    }

    public struct Result: Sendable {
        public var test: Test
        /// Wall seconds of each timed repetition.
        public var seconds: [Double]
        /// CPU seconds (user + system, all threads) per token, over the timed repetitions.
        public var cpuSecondsPerToken: Double

        /// Tokens per second of each repetition.
        public var rates: [Double] { seconds.map { Double(test.tokens) / max($0, 1e-12) } }
        public var meanRate: Double { rates.reduce(0, +) / Double(max(rates.count, 1)) }
        /// Sample standard deviation of the rates (0 for one repetition), as llama-bench reports it.
        public var rateDeviation: Double {
            guard rates.count > 1 else { return 0 }
            let mean = meanRate
            return (rates.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(rates.count - 1)).squareRoot()
        }
    }

    /// Runs `test` `repetitions` times after one untimed warm-up run.
    public static func run(_ test: Test, model: any LanguageModel, repetitions: Int) throws -> Result {
        let context = ForwardContext(pool: ThreadPool(threads: test.threads))
        let capacity = test.depth + test.tokens + 1
        guard capacity <= model.contextLength else {
            throw WhaleError(
                .invalidArgument, field: "test", "\(test.name) needs \(capacity) tokens of context",
                hint: "the model was trained for \(model.contextLength); use a smaller -p, -n or -d")
        }
        let ids = (0..<capacity).map { 100 + ($0 * 37) % max(1, model.vocabularySize - 100) }
        let cache = model.makeCache(capacity: capacity)
        var seconds: [Double] = []
        var cpu = 0.0
        for repetition in 0...max(1, repetitions) {
            cache.truncate(to: 0)
            try feed(Array(ids[0..<test.depth]), cache: cache, model: model, context: context)
            let cpuStart = cpuSeconds()
            let start = ContinuousClock.now
            switch test.kind {
            case .prompt(let n):
                try feed(Array(ids[test.depth..<(test.depth + n)]), cache: cache, model: model, context: context)
            case .generation(let n):
                for i in 0..<n {
                    _ = try model.forward(
                        [SequenceInput(tokens: [ids[test.depth + i]], cache: cache, logits: .last)], context: context)
                }
            }
            let elapsed = ContinuousClock.now - start
            if repetition > 0 {  // the first run warms caches and the arena
                seconds.append(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18)
                cpu += cpuSeconds() - cpuStart
            }
        }
        return Result(test: test, seconds: seconds, cpuSecondsPerToken: cpu / Double(seconds.count * test.tokens))
    }

    /// Feeds `tokens` in passes of at most 512 (llama.cpp's micro-batch), logits for the last only.
    static func feed(_ tokens: [Int], cache: KVCache, model: any LanguageModel, context: ForwardContext) throws {
        var start = 0
        while start < tokens.count {
            let end = min(start + 512, tokens.count)
            _ = try model.forward(
                [
                    SequenceInput(
                        tokens: Array(tokens[start..<end]), cache: cache, logits: end == tokens.count ? .last : .none)
                ],
                context: context)
            start = end
        }
    }

    /// The process's resource use so far.
    static func usage() -> rusage {
        var usage = rusage()
        #if canImport(Glibc)
            getrusage(RUSAGE_SELF.rawValue, &usage)
        #else
            getrusage(RUSAGE_SELF, &usage)
        #endif
        return usage
    }

    /// CPU time of the whole process so far (user + system).
    static func cpuSeconds() -> Double {
        let usage = usage()
        func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) * 1e-6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    /// The process's peak resident memory so far, in bytes.
    public static func peakResidentBytes() -> Int {
        let usage = usage()
        #if canImport(Darwin)
            return Int(usage.ru_maxrss)  // bytes on Darwin
        #else
            return Int(usage.ru_maxrss) * 1024  // KiB on Linux
        #endif
    }
}
