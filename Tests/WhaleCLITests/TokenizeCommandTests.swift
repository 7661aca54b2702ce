import Foundation
import Testing
import WhaleCore

/// `whale tokenize`, `detokenize` and `chat-template` as a user runs them, on the committed minimal
/// fixtures and (when fetched) DeepSeek-V3's tokenizer.
@Suite struct TokenizeCommandTests {
    static let deepseek = Whale.packageRoot.appendingPathComponent("models/tokenizers/deepseek-v3/tokenizer.json").path
    static var haveDeepSeek: Bool {
        FileManager.default.fileExists(atPath: deepseek)
            || ProcessInfo.processInfo.environment["WHALE_REQUIRE_MODELS"] == "1"
    }

    func temporaryFile(_ name: String, _ contents: String) throws -> String {
        let path = NSTemporaryDirectory() + "whale-cli-" + UUID().uuidString + "-" + name
        try contents.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test(.enabled(if: TokenizeCommandTests.haveDeepSeek)) func textAndSpecial() throws {
        let plain = try Whale.run(["tokenize", Self.deepseek, "<｜begin▁of▁sentence｜>Hi"])
        #expect(plain.status == 0, "\(plain.stderr)")
        let special = try Whale.run(["tokenize", Self.deepseek, "--special", "<｜begin▁of▁sentence｜>Hi"])
        let plainIDs = try #require(try JSONValue.parse(plain.stdout).array)
        let specialIDs = try #require(try JSONValue.parse(special.stdout).array)
        #expect(specialIDs.first == .integer(0))  // the BOS token, matched only with --special
        #expect(!plainIDs.contains(.integer(0)))
        #expect(plainIDs.count > specialIDs.count)
    }

    @Test(.enabled(if: TokenizeCommandTests.haveDeepSeek)) func jsonlOneLinePerInput() throws {
        let input = try temporaryFile("in.jsonl", "{\"text\": \"Hello\"}\n{\"text\": \"\"}\n{\"text\": \"世界\"}\n")
        let result = try Whale.run(["tokenize", Self.deepseek, "--jsonl", input])
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.count == 3)
        #expect(lines[1] == "[]")
        // And back.
        let ids = String(lines[2])
        let back = try Whale.run(["detokenize", Self.deepseek, ids])
        #expect(back.stdout == "世界")
    }

    @Test(.enabled(if: TokenizeCommandTests.haveDeepSeek)) func malformedJSONLNamesTheLine() throws {
        let input = try temporaryFile("bad.jsonl", "{\"text\": \"ok\"}\n{\"txt\": 1}\n")
        let result = try Whale.run(["tokenize", Self.deepseek, "--jsonl", input])
        #expect(result.status == 1)
        #expect(result.stderr.contains("line 2"), "\(result.stderr)")
    }

    @Test(.enabled(if: TokenizeCommandTests.haveDeepSeek)) func chatTemplateRendersTheModelsTemplate() throws {
        let messages = try temporaryFile("m.json", #"[{"role":"user","content":"Hi"}]"#)
        let result = try Whale.run(["chat-template", Self.deepseek, messages])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout == "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜>")
        let r1 = try Whale.run(["chat-template", Self.deepseek, messages, "--chat-template", "deepseek-r1"])
        #expect(r1.stdout == "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜><think>\n")
        let unknown = try Whale.run(["chat-template", Self.deepseek, messages, "--chat-template", "nope"])
        #expect(unknown.status == 1)
        #expect(unknown.stderr.contains("deepseek-v3"))
    }

    @Test func badInputs() throws {
        let missing = try Whale.run(["tokenize", "/nonexistent/tokenizer.json", "x"])
        #expect(missing.status == 1)
        #expect(missing.stderr.hasPrefix("error: /nonexistent/tokenizer.json"))
        let noText = try Whale.run(["tokenize", "/nonexistent/tokenizer.json"])
        #expect(noText.status != 0)
        #expect(noText.stderr.contains("exactly one of"))
        let badIDs = try Whale.run(["detokenize", "/nonexistent/tokenizer.json", "1,x"])
        #expect(badIDs.status == 1)
        #expect(badIDs.stderr.contains("\"x\" is not an integer"), "\(badIDs.stderr)")
    }

    @Test(.enabled(if: TokenizeCommandTests.haveDeepSeek)) func detokenizeOutOfRangeID() throws {
        let result = try Whale.run(["detokenize", Self.deepseek, "[1, 99999999]"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("99999999 is not a token id"), "\(result.stderr)")
    }

    @Test(arguments: ["tokenize", "detokenize", "chat-template"])
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
