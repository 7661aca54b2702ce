import Foundation
import Testing
import WhaleCore
import WhaleTokenizer

/// Tokenizer files that are broken or of a kind BlueWhale does not run get an error naming the problem.
@Suite struct TokenizerBadInputTests {
    func write(_ json: String) throws -> String {
        let directory = NSTemporaryDirectory() + "whale-tok-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/tokenizer.json"
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// A minimal complete byte-level BPE: the 256 byte tokens, one merge.
    static func minimalJSON(
        pre: String = #"{"type":"ByteLevel","add_prefix_space":false,"use_regex":true}"#,
        model extra: String = "", merges: String = #"["h e"]"#
    ) -> String {
        var vocab: [String] = []
        for byte in 0..<256 {
            let scalar = byteLevelCharacter(byte)
            let escaped = JSONValue.string(String(Character(scalar))).serialized()
            vocab.append("\(escaped):\(byte)")
        }
        vocab.append(#""he":256"#)
        return #"{"model":{"type":"BPE","vocab":{"# + vocab.joined(separator: ",") + #"},"merges":"# + merges + extra
            + #"},"pre_tokenizer":"# + pre + #","decoder":{"type":"ByteLevel"},"added_tokens":[]}"#
    }

    static func byteLevelCharacter(_ byte: Int) -> Unicode.Scalar {
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            if b == byte { return printable ? Unicode.Scalar(UInt8(b)) : Unicode.Scalar(next)! }
            if !printable { next += 1 }
        }
        fatalError("byte out of range")
    }

    @Test func minimalTokenizerWorks() throws {
        let tokenizer = try Tokenizer.load(try write(Self.minimalJSON()))
        #expect(tokenizer.encode("hehe") == [256, 256])
        #expect(tokenizer.encode("h") == [Int(UInt8(ascii: "h"))])
        #expect(try tokenizer.decode([256, 32, 256]) == "he he")
    }

    @Test func notJSON() throws {
        let path = try write("{\"model\": ")
        #expect(throws: WhaleError.self) { try Tokenizer.load(path) }
    }

    @Test func unsupportedModel() throws {
        let path = try write(#"{"model":{"type":"Unigram","vocab":[]}}"#)
        do {
            _ = try Tokenizer.load(path)
            Issue.record("loaded a Unigram model")
        } catch let error as WhaleError {
            #expect(error.field == "model.type")
            #expect(error.problem.contains("Unigram"))
        }
    }

    @Test func unsupportedRegexIsNamed() throws {
        let pre =
            #"{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"\\p{Han}+"},"behavior":"Isolated","invert":false},{"type":"ByteLevel","add_prefix_space":false,"use_regex":false}]}"#
        do {
            _ = try Tokenizer.load(try write(Self.minimalJSON(pre: pre)))
            Issue.record("accepted \\p{Han}")
        } catch let error as WhaleError {
            #expect(error.problem.contains("Han"), "\(error)")
        }
    }

    @Test func mergeOfUnknownToken() throws {
        do {
            _ = try Tokenizer.load(try write(Self.minimalJSON(merges: #"["h e","x yz"]"#)))
            Issue.record("accepted a merge of unknown tokens")
        } catch let error as WhaleError {
            #expect(error.field == "merges[1]")
        }
    }

    /// A GGUF file holding only tokenizer metadata: 256 byte-level tokens and the given model/pre names.
    func ggufVocabulary(model: String, pre: String) throws -> String {
        var bytes: [UInt8] = Array("GGUF".utf8)
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
        func string(_ s: String) {
            u64(UInt64(s.utf8.count))
            bytes += Array(s.utf8)
        }
        u32(3)
        u64(0)
        u64(3)
        for (key, value) in [("tokenizer.ggml.model", model), ("tokenizer.ggml.pre", pre)] {
            string(key)
            u32(8)
            string(value)
        }
        string("tokenizer.ggml.tokens")
        u32(9)
        u32(8)
        u64(256)
        for byte in 0..<256 { string(String(Character(Self.byteLevelCharacter(byte)))) }
        let path = NSTemporaryDirectory() + "whale-vocab-" + UUID().uuidString + ".gguf"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func ggufVocabularyLoads() throws {
        let tokenizer = try Tokenizer.load(try ggufVocabulary(model: "gpt2", pre: "smollm"))
        #expect(tokenizer.encode("a1") == [Int(UInt8(ascii: "a")), Int(UInt8(ascii: "1"))])
    }

    /// "joyai-llm" is what llama.cpp's converter now writes for DeepSeek-V3's tokenizer.
    @Test func joyaiLLMIsDeepSeekV3() throws {
        let joyai = try Tokenizer.load(try ggufVocabulary(model: "gpt2", pre: "joyai-llm"))
        let deepseek = try Tokenizer.load(try ggufVocabulary(model: "gpt2", pre: "deepseek-v3"))
        let text = "DeepSeek-V3: 12345 tokens!\n"
        #expect(joyai.encode(text) == deepseek.encode(text))
        #expect(joyai.encode(text).count == text.utf8.count)
    }

    @Test func unknownGGUFPreTokenizerIsNamed() throws {
        do {
            _ = try Tokenizer.load(try ggufVocabulary(model: "gpt2", pre: "chameleon"))
            Issue.record("accepted an unknown pre-tokenizer")
        } catch let error as WhaleError {
            #expect(error.field == "tokenizer.ggml.pre")
            #expect(error.problem.contains("chameleon"))
            #expect(error.hint?.contains("deepseek-v3") == true)
        }
    }

    @Test func unknownGGUFTokenizerModelIsNamed() throws {
        do {
            _ = try Tokenizer.load(try ggufVocabulary(model: "rwkv", pre: "default"))
            Issue.record("accepted an unknown tokenizer model")
        } catch let error as WhaleError {
            #expect(error.field == "tokenizer.ggml.model")
            #expect(error.problem.contains("rwkv"))
        }
    }

    @Test func outOfRangeIdOnDecode() throws {
        let tokenizer = try Tokenizer.load(try write(Self.minimalJSON()))
        #expect(throws: WhaleError.self) { try tokenizer.decode([9999]) }
        #expect(throws: WhaleError.self) { try tokenizer.decode([-1]) }
    }

    @Test func missingFile() {
        #expect(throws: WhaleError.self) { try Tokenizer.load("/nonexistent/tokenizer.json") }
    }
}
