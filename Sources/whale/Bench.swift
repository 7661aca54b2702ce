import ArgumentParser
import Foundation
import WhaleCore
import WhaleEngine
import WhaleFormats
import WhaleKernels
import WhaleModels

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure prompt and generation speed, as llama-bench does.",
        discussion: """
            Tests, as llama-bench names them: ppN feeds an N-token prompt (in 512-token passes), tgN decodes N \
            tokens one at a time; "@ dD" runs it after D tokens already in the cache (not timed). Each test runs \
            once untimed, then -r times; t/s is the mean ± standard deviation over those. Lists (-p 128,512) \
            run every combination. Beyond llama-bench: peak resident memory of the process, cache bytes per \
            token, and CPU seconds per token (all threads). On a shared machine compare with llama-bench side by \
            side, alternating, and read the ratios (scripts/bench-vs-llamacpp.sh does that).
            """)

    @Argument(help: modelHelp)
    var model: String

    @Option(name: .short, parsing: .unconditional, help: "Prompt lengths (0: none).")
    var p = "512"

    @Option(name: .short, parsing: .unconditional, help: "Generation lengths (0: none).")
    var n = "128"

    @Option(name: .short, parsing: .unconditional, help: "Depths: tokens in the cache before each test.")
    var d = "0"

    @Option(
        name: .short, parsing: .unconditional,
        help: "Thread counts, e.g. 1,2,4 for scaling (default: one per physical core).")
    var t: String?

    @Option(name: .short, parsing: .unconditional, help: "Timed repetitions per test.")
    var r = 3

    @Option(name: .short, help: "Output: md, json or csv.")
    var o = "md"

    @Option(
        name: .customLong("cache-type"),
        help: ArgumentHelp(
            "Cache precision: f16, f32 or q8_0 (default: f16 for GGUF as llama.cpp, f32 for safetensors).",
            valueName: "type"))
    var cacheType: String?

    @Option(
        name: .customLong("split-layers"),
        help: ArgumentHelp("Under mpirun: decoder layers per rank, e.g. 7,5.", valueName: "counts"))
    var splitLayers: String?

    @OptionGroup var hub: HubOptions

    func run() throws {
        try reportingErrors {
            func list(_ text: String, _ option: String, minimum: Int) throws -> [Int] {
                let values = text.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
                guard !values.isEmpty, values.allSatisfy({ ($0 ?? -1) >= minimum }) else {
                    throw WhaleError(
                        .invalidArgument, field: option, "\"\(text)\"",
                        hint: "give numbers ≥ \(minimum), separated by commas")
                }
                return values.compactMap { $0 }
            }
            let prompts = try list(p, "-p", minimum: 0)
            let generations = try list(n, "-n", minimum: 0)
            let depths = try list(d, "-d", minimum: 0)
            let threads = try list(t ?? "\(CPUTopology.physicalCoreCount)", "-t", minimum: 1)
            guard r >= 1 else { throw WhaleError(.invalidArgument, field: "-r", "\(r)", hint: "give 1 or more") }
            guard ["md", "json", "csv"].contains(o) else {
                throw WhaleError(.invalidArgument, field: "-o", "\"\(o)\"", hint: "use md, json or csv")
            }
            var options = LoadOptions()
            if let cacheType { options.attentionPrecision = try AttentionPrecision(cacheType: cacheType) }
            let longest = prompts.max()! + generations.max()! + depths.max()!
            let (loaded, files) = try loadModel(
                model, pull: !hub.noPull, options: options, threads: threads.max()!, cacheTokens: longest,
                split: splitLayers)
            let size = files.tensors.reduce(0) { $0 + $1.byteCount }
            let parameters = files.tensors.reduce(0) { $0 + $1.elementCount }
            var tests: [Benchmark.Test] = []
            for threadCount in threads {
                for depth in depths {
                    tests += prompts.filter { $0 > 0 }.map {
                        .init(kind: .prompt($0), depth: depth, threads: threadCount)
                    }
                    tests += generations.filter { $0 > 0 }.map {
                        .init(kind: .generation($0), depth: depth, threads: threadCount)
                    }
                }
            }
            var out = StandardOutput()
            let name = URL(fileURLWithPath: model).lastPathComponent
            let header = [
                "model", "size", "params", "threads", "test", "t/s", "peak RSS", "cache/token", "CPU s/token",
            ]
            var rows: [[String]] = []
            var objects: [JSONValue] = []
            if o == "md" {
                print("| " + header.joined(separator: " | ") + " |", to: &out)
                print("|" + header.map { _ in "---" }.joined(separator: "|") + "|", to: &out)
            } else if o == "csv" {
                print(header.joined(separator: ","), to: &out)
            }
            for test in tests {
                let result = try Benchmark.run(test, model: loaded, repetitions: r)
                let rss = Benchmark.peakResidentBytes()
                let row = [
                    name, String(format: "%.2f MiB", Double(size) / 1_048_576),
                    String(format: "%.2f M", Double(parameters) / 1e6), "\(test.threads)", test.name,
                    String(format: "%.2f ± %.2f", result.meanRate, result.rateDeviation),
                    String(format: "%.1f MiB", Double(rss) / 1_048_576), "\(loaded.cacheBytesPerToken)",
                    String(format: "%.5f", result.cpuSecondsPerToken),
                ]
                rows.append(row)
                switch o {
                case "md": print("| " + row.joined(separator: " | ") + " |", to: &out)
                case "csv": print(row.map { $0.contains(",") ? "\"\($0)\"" : $0 }.joined(separator: ","), to: &out)
                default:
                    objects.append(
                        .object(
                            JSONObject([
                                "model": .string(name), "size_bytes": .integer(Int64(size)),
                                "parameters": .integer(Int64(parameters)), "threads": .integer(Int64(test.threads)),
                                "test": .string(test.name), "tokens": .integer(Int64(test.tokens)),
                                "depth": .integer(Int64(test.depth)),
                                "tokens_per_second": .number(result.meanRate),
                                "tokens_per_second_stddev": .number(result.rateDeviation),
                                "samples_seconds": .array(result.seconds.map { .number($0) }),
                                "peak_rss_bytes": .integer(Int64(rss)),
                                "cache_bytes_per_token": .integer(Int64(loaded.cacheBytesPerToken)),
                                "cpu_seconds_per_token": .number(result.cpuSecondsPerToken),
                            ])))
                }
            }
            if o == "json" { print(JSONValue.array(objects).serialized(pretty: true), to: &out) }
        }
    }
}
