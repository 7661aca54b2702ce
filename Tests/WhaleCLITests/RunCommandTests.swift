import Foundation
import Testing
import WhaleCore

/// `whale run`, `score` and `perplexity` on the tiny random Llama (WhaleModelsTests' fixture), as a user
/// runs them.
@Suite struct RunCommandTests {
    static let tiny = Whale.packageRoot.appendingPathComponent("Tests/WhaleModelsTests/Fixtures/tiny-llama").path

    @Test func scoreMatchesTransformers() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.tiny + "/reference.json"))
        let reference = try #require(try data.withUnsafeBytes { try JSONValue.parse($0) }.object)
        let ids = try #require(reference["ids"]?.array?.compactMap { $0.integer })
        let result = try Whale.run(
            ["score", Self.tiny, "--tokens", ids.map(String.init).joined(separator: ","), "--top", "3", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let json = try #require(try JSONValue.parse(result.stdout).object)
        let logprobs = try #require(json["logprobs"]?.array)
        #expect(logprobs.count == ids.count)
        #expect(logprobs[0] == .null)
        for position in reference["positions"]?.array ?? [] {
            let p = try #require(position.object)
            let i = try #require(p["pos"]?.integer)
            let expected = try #require(p["logprob"]?.double)
            let logprob = logprobs[i + 1].double ?? .nan
            #expect(abs(logprob - expected) < 1e-4)
        }
        let topCount: Int? = json["top"]?.array?.count
        #expect(topCount == ids.count)
    }

    @Test func runWithTokensAndSeed() throws {
        let args = ["run", Self.tiny, "--tokens", "1,2,3", "-n", "6", "--temp", "1", "--seed", "42", "--json"]
        let first = try Whale.run(args)
        let second = try Whale.run(args)
        #expect(first.status == 0, "\(first.stderr)")
        let a = try #require(try JSONValue.parse(first.stdout).object)
        let b = try #require(try JSONValue.parse(second.stdout).object)
        #expect(a["tokens"]?.array?.count == 6)
        #expect(a["tokens"] == b["tokens"])
        #expect(a["timings"]?.object?["generation_tokens_per_second"] != nil)
        #expect(first.stderr.contains("generation: 6 tokens"))
    }

    @Test func runStreamsTextFromAPrompt() throws {
        let result = try Whale.run(["run", Self.tiny, "-p", "the", "-n", "5", "--temp", "0"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(!result.stdout.isEmpty)
        #expect(result.stderr.contains("prompt:"))
    }

    /// `--mtp` on the tiny DeepSeek-V3 model with an MTP layer: the same greedy tokens as without it, and the
    /// draft counts and the compressed cache size in the JSON timings.
    @Test func mtpGivesTheSameTokensAndReportsDrafts() throws {
        let model = Whale.packageRoot.appendingPathComponent("Tests/WhaleModelsTests/Fixtures/deepseek/mtp").path
        let args = ["run", model, "--tokens", "5,100,200,7", "-n", "24", "--temp", "0", "--json"]
        let plain = try Whale.run(args)
        let drafted = try Whale.run(args + ["--mtp"])
        #expect(plain.status == 0 && drafted.status == 0, "\(plain.stderr) \(drafted.stderr)")
        let a = try #require(try JSONValue.parse(plain.stdout).object)
        let b = try #require(try JSONValue.parse(drafted.stdout).object)
        #expect(a["tokens"] == b["tokens"])
        let timings = try #require(b["timings"]?.object)
        #expect((timings["draft_tokens"]?.integer ?? 0) > 0)
        // Outside #expect, typed: comparing an optional with literal arithmetic takes Swift 6.0 seconds.
        let cacheBytesPerToken: Int = 2 * (32 + 8) * 4
        #expect(timings["cache_bytes_per_token"]?.integer == cacheBytesPerToken)
        #expect(drafted.stderr.contains("mtp:") && drafted.stderr.contains("accepted"))
        let dense = try Whale.run(["run", Self.tiny, "--tokens", "1", "-n", "2", "--temp", "0", "--mtp"])
        #expect(dense.status == 1 && dense.stderr.contains("multi-token-prediction"), "\(dense.stderr)")
    }

    @Test func badInvocations() throws {
        let both = try Whale.run(["run", Self.tiny, "-p", "x", "--tokens", "1"])
        #expect(both.status != 0)
        #expect(both.stderr.contains("exactly one of"))
        let outside = try Whale.run(["score", Self.tiny, "--tokens", "1,99999"])
        #expect(outside.status == 1)
        #expect(outside.stderr.contains("outside the vocabulary"), "\(outside.stderr)")
        let tooLong = try Whale.run(
            ["run", Self.tiny, "--tokens", "1,2,3,4,5", "--ctx", "3", "-n", "1", "--no-context-shift"])
        #expect(tooLong.status == 1)
        #expect(tooLong.stderr.contains("context"), "\(tooLong.stderr)")
        // With the default context shift the prompt keeps its head and tail and generation goes on.
        let shifted = try Whale.run(["run", Self.tiny, "--tokens", "1,2,3,4,5", "--ctx", "4", "-n", "6", "--json"])
        #expect(shifted.status == 0, "\(shifted.stderr)")
        #expect(try JSONValue.parse(shifted.stdout).object?["tokens"]?.array?.count == 6)
        let notAModel = try Whale.run(["run", Whale.fixture("gguf/no-tensors.gguf"), "--tokens", "1"])
        #expect(notAModel.status == 1)
    }

    /// Options a new user gets wrong: one clear line naming the option, exit code 1, nothing allocated.
    @Test(arguments: [
        (["--ctx", "100000000"], "--ctx"), (["--ctx", "0"], "--ctx"), (["--top-k", "-3"], "--top-k"),
        (["--temp", "-1"], "--temp"), (["--top-p", "0"], "--top-p"), (["--threads", "0"], "--threads"),
    ])
    func badOptionsAreRefusedByName(arguments: [String], option: String) throws {
        let result = try Whale.run(["run", Self.tiny, "--tokens", "1,2", "-n", "2"] + arguments)
        #expect(result.status == 1, "\(result.stderr)")
        #expect(result.stderr.hasPrefix("error: ") && result.stderr.contains(option), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
    }

    /// `score --dump-taps`: a manifest and one .npy file per tap and layer, in the format scripts/diff-taps.py
    /// reads.
    @Test func scoreDumpsTaps() throws {
        let directory = NSTemporaryDirectory() + "whale-taps-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let model = Whale.packageRoot.appendingPathComponent(
            "Tests/WhaleModelsTests/Fixtures/deepseek/v3-sigmoid-noaux"
        ).path
        let result = try Whale.run(["score", model, "--tokens", "1,5,9,20", "--json", "--dump-taps", directory])
        #expect(result.status == 0, "\(result.stderr)")
        let data = try Data(contentsOf: URL(fileURLWithPath: directory + "/manifest.json"))
        let manifest = try #require(try data.withUnsafeBytes { try JSONValue.parse($0) }.object)
        #expect(manifest["tokens"] == .array([1, 5, 9, 20].map { .integer($0) }))
        let taps = (manifest["taps"]?.array ?? []).compactMap { $0.object }
        let kvLatent = try #require(taps.first { $0["name"]?.string == "kv_latent" && $0["layer"]?.integer == 1 })
        #expect(kvLatent["shape"] == .array([.integer(4), .integer(32)]))
        let file = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + (kvLatent["file"]?.string ?? "")))
        // NumPy 1.0 header (magic, version, header length) then 4 × 32 float32 values, header padded to 64.
        let magic: [UInt8] = [0x93] + Array("NUMPY".utf8)
        #expect(Array(file.prefix(6)) == magic)
        #expect(file.count % 64 == (4 * 32 * 4) % 64 && file.count > 4 * 32 * 4)
        #expect(taps.contains { $0["name"]?.string == "result_output" && $0["layer"] == .null })
    }

    /// Taps against llama.cpp's (scripts/make-tap-fixtures.sh: llama-dump-taps on the same GGUF, f32 cache):
    /// with an f32 cache every tap agrees within 1e-4 according to scripts/diff-taps.py; with the f16 cache
    /// (GGUF's default) the differ names where the rounding first shows.
    @Test(arguments: ["deepseek/v3-sigmoid-noaux", "tiny-llama"])
    func tapsEqualLlamaCpp(model: String) throws {
        let fixture = Whale.packageRoot.appendingPathComponent("Tests/WhaleModelsTests/Fixtures/" + model).path
        let reference = fixture + "/taps-llamacpp"
        let data = try Data(contentsOf: URL(fileURLWithPath: reference + "/manifest.json"))
        let manifest = try #require(try data.withUnsafeBytes { try JSONValue.parse($0) }.object)
        let ids = (manifest["tokens"]?.array ?? []).compactMap { $0.integer }.map(String.init).joined(separator: ",")
        let directory = NSTemporaryDirectory() + "whale-taps-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        func diff(cacheType: String) throws -> Whale.Result {
            try? FileManager.default.removeItem(atPath: directory)
            let dump = try Whale.run(
                [
                    "score", fixture + "/model-f32.gguf", "--tokens", ids, "--cache-type", cacheType, "--dump-taps",
                    directory,
                ])
            #expect(dump.status == 0, "\(dump.stderr)")
            let script = Whale.packageRoot.appendingPathComponent("scripts/diff-taps.py").path
            return try Whale.run(
                ["python3", script, directory, reference, "--tolerance", "1e-4"], executable: "/usr/bin/env")
        }
        let exact = try diff(cacheType: "f32")
        #expect(exact.status == 0 && exact.stdout.contains("no divergence"), "\(exact.stdout)\(exact.stderr)")
        #expect(exact.stdout.contains("0 missing in B"), "\(exact.stdout)")
        let rounded = try diff(cacheType: "f16")
        #expect(
            rounded.status == 1 && rounded.stdout.contains("first divergence:"), "\(rounded.stdout)\(rounded.stderr)")
    }

    /// `whale bench`: llama-bench's tests and names, the extra columns, and the three output formats.
    @Test func benchReportsEveryTest() throws {
        let json = try Whale.run([
            "bench", Self.tiny, "-p", "16", "-n", "4", "-d", "0,8", "-t", "1", "-r", "2", "-o", "json",
        ])
        #expect(json.status == 0, "\(json.stderr)")
        let tests = (try JSONValue.parse(json.stdout).array ?? []).compactMap { $0.object }
        let testNames: [String] = tests.map { (test: JSONObject) -> String in test["test"]?.string ?? "" }
        #expect(testNames == ["pp16", "tg4", "pp16 @ d8", "tg4 @ d8"])
        for test in tests {
            #expect((test["tokens_per_second"]?.double ?? 0) > 0)
            #expect(test["samples_seconds"]?.array?.count == 2)
            #expect((test["peak_rss_bytes"]?.integer ?? 0) > 0)
            #expect((test["cache_bytes_per_token"]?.integer ?? 0) > 0)
        }
        let markdown = try Whale.run(["bench", Self.tiny, "-p", "8", "-n", "0", "-r", "1"])
        let lines = markdown.stdout.split(separator: "\n")
        #expect(markdown.status == 0 && lines.count == 3, "\(markdown.stdout)\(markdown.stderr)")
        #expect(lines.first?.hasPrefix("| model | size | params | threads | test | t/s") == true)
        #expect(lines.last?.contains("| pp8 |") == true)
        let csv = try Whale.run(["bench", Self.tiny, "-p", "0", "-n", "2", "-r", "1", "-o", "csv"])
        #expect(csv.status == 0 && csv.stdout.split(separator: "\n").count == 2)
        let tooDeep = try Whale.run(["bench", Self.tiny, "-p", "8", "-n", "0", "-d", "100000"])
        #expect(tooDeep.status == 1 && tooDeep.stderr.contains("context"), "\(tooDeep.stderr)")
    }

    /// With R1's template the output starts inside the reasoning: on a terminal (`script` gives the command
    /// one) it is printed dimmed; piped, the text is exactly the generated text.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/script")))
    func reasoningIsDimmedOnATerminal() throws {
        let model = Whale.packageRoot.appendingPathComponent("Tests/WhaleModelsTests/Fixtures/deepseek/bf16").path
        let args = ["run", model, "--chat", "--chat-template", "deepseek-r1", "-p", "hi", "-n", "6", "--temp", "0"]
        let piped = try Whale.run(args)
        #expect(piped.status == 0, "\(piped.stderr)")
        #expect(!piped.stdout.contains("\u{1B}["))
        let json = try Whale.run(args + ["--json"])
        let text = try #require(try JSONValue.parse(json.stdout).object?["text"]?.string)
        #expect(piped.stdout == text + "\n")
        let quoted: [String] = ([Whale.binary] + args).map { "'\($0)'" }
        let command = quoted.joined(separator: " ")
        let terminal = try Whale.run(["-qec", command, "/dev/null"], executable: "/usr/bin/script")
        #expect(terminal.status == 0, "\(terminal.stderr)")
        #expect(
            terminal.stdout.contains("\u{1B}[2m") && terminal.stdout.contains("\u{1B}[0m"),
            "\(terminal.stdout.debugDescription)")
    }

    @Test(arguments: ["run", "score", "perplexity", "chat"])
    func helpSnapshot(command: String) throws {
        let result = try Whale.run([command, "--help"])
        #expect(result.status == 0)
        let snapshot = Whale.packageRoot.appendingPathComponent("Tests/WhaleCLITests/Snapshots/\(command)-help.txt")
        if ProcessInfo.processInfo.environment["WHALE_UPDATE_SNAPSHOTS"] == "1" {
            try result.stdout.write(to: snapshot, atomically: true, encoding: .utf8)
        }
        // Read before #expect: Swift 6.0's #expect cannot contain `try` ("call can throw, but it is executed in a
        // non-throwing autoclosure").
        let expected = try String(contentsOf: snapshot, encoding: .utf8)
        #expect(result.stdout == expected)
    }
}
