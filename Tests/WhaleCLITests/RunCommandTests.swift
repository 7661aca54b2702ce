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
            #expect(abs((logprobs[i + 1].double ?? .nan) - expected) < 1e-4)
        }
        #expect(json["top"]?.array?.count == ids.count)
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

    @Test func badInvocations() throws {
        let both = try Whale.run(["run", Self.tiny, "-p", "x", "--tokens", "1"])
        #expect(both.status != 0)
        #expect(both.stderr.contains("exactly one of"))
        let outside = try Whale.run(["score", Self.tiny, "--tokens", "1,99999"])
        #expect(outside.status == 1)
        #expect(outside.stderr.contains("outside the vocabulary"), "\(outside.stderr)")
        let tooLong = try Whale.run(["run", Self.tiny, "--tokens", "1,2,3,4,5", "--ctx", "3", "-n", "1"])
        #expect(tooLong.status == 1)
        #expect(tooLong.stderr.contains("context"), "\(tooLong.stderr)")
        let notAModel = try Whale.run(["run", Whale.fixture("gguf/no-tensors.gguf"), "--tokens", "1"])
        #expect(notAModel.status == 1)
    }

    @Test(arguments: ["run", "score", "perplexity", "chat"])
    func helpSnapshot(command: String) throws {
        let result = try Whale.run([command, "--help"])
        #expect(result.status == 0)
        let snapshot = Whale.packageRoot.appendingPathComponent("Tests/WhaleCLITests/Snapshots/\(command)-help.txt")
        if ProcessInfo.processInfo.environment["WHALE_UPDATE_SNAPSHOTS"] == "1" {
            try result.stdout.write(to: snapshot, atomically: true, encoding: .utf8)
        }
        #expect(result.stdout == (try String(contentsOf: snapshot, encoding: .utf8)))
    }
}
