import Foundation
import Testing
import WhaleCore
import WhaleTokenizer

/// Identical ids to Hugging Face `tokenizers` (tokenizer.json) and llama.cpp (GGUF vocabularies) on the
/// corpus of hard strings (Fixtures/corpus.jsonl; goldens made by scripts/make-tokenizer-fixtures.py).
@Suite struct GoldenTokenizationTests {
    static let names = [
        "deepseek-v3", "qwen2", "smollm2-gguf", "gemma3-gguf", "llama3-style", "deepseek-llm-style",
        "gemma3-space-prefix",
    ]

    struct Mismatch: CustomStringConvertible {
        var line: Int
        var text: String
        var expected: [Int]
        var got: [Int]
        var description: String {
            "line \(line + 1) \(text.debugDescription.prefix(60)): expected \(expected), got \(got)"
        }
    }

    @Test(arguments: names)
    func idsAndDecodingMatchTheReference(name: String) throws {
        guard ReferenceTokenizers.available(name) || ReferenceTokenizers.required else { return }
        let goldens = try Fixtures.jsonLines("golden/\(name).jsonl")
        let corpus = Fixtures.corpus
        #expect(corpus.count >= 300)
        #expect(goldens.count == corpus.count, "golden/\(name).jsonl has \(goldens.count) lines")
        let tokenizer = try ReferenceTokenizers.tokenizer(name)
        var plain: [Mismatch] = []
        var special: [Mismatch] = []
        var decoded: [Mismatch] = []
        for (line, (text, golden)) in zip(corpus, goldens).enumerated() {
            let object = try #require(golden.object)
            let ids = object["ids"]?.array?.compactMap(\.integer) ?? []
            let idsSpecial = object["ids_special"]?.array?.compactMap(\.integer) ?? []
            let got = tokenizer.encode(text)
            if got != ids { plain.append(Mismatch(line: line, text: text, expected: ids, got: got)) }
            let gotSpecial = tokenizer.encode(text, parseSpecial: true)
            if gotSpecial != idsSpecial {
                special.append(Mismatch(line: line, text: text, expected: idsSpecial, got: gotSpecial))
            }
            if let expectedText = object["decoded"]?.string,
                try tokenizer.decode(ids).utf8Bytes != expectedText.utf8Bytes
            {
                decoded.append(Mismatch(line: line, text: expectedText, expected: ids, got: []))
            }
        }
        #expect(plain.isEmpty, "\(plain.count) plain mismatches: \(plain.prefix(3))")
        #expect(special.isEmpty, "\(special.count) --special mismatches: \(special.prefix(3))")
        #expect(decoded.isEmpty, "\(decoded.count) decode mismatches: \(decoded.prefix(3))")
    }

    /// Decoding what we encoded gives the text back (byte-level vocabularies are lossless for text they
    /// can represent; SmolLM2 lacks a few control bytes).
    @Test(arguments: ["deepseek-v3", "qwen2"])
    func roundTrip(name: String) throws {
        guard ReferenceTokenizers.available(name) || ReferenceTokenizers.required else { return }
        let tokenizer = try ReferenceTokenizers.tokenizer(name)
        for text in Fixtures.corpus {
            // Qwen2 normalizes to NFC.
            let expected = name == "qwen2" ? text.precomposedStringWithCanonicalMapping : text
            #expect(
                try tokenizer.decode(tokenizer.encode(text)).utf8Bytes == expected.utf8Bytes, "\(text.debugDescription)"
            )
            #expect(try tokenizer.decode(tokenizer.encode(text, parseSpecial: true)).utf8Bytes == expected.utf8Bytes)
        }
    }

    /// Streaming decoding emits each character once it is complete, and never U+FFFD for valid text.
    @Test(arguments: ["deepseek-v3", "smollm2-gguf", "gemma3-gguf"])
    func streamingEqualsWholeDecode(name: String) throws {
        guard ReferenceTokenizers.available(name) || ReferenceTokenizers.required else { return }
        let tokenizer = try ReferenceTokenizers.tokenizer(name)
        for text in Fixtures.corpus {
            let ids = tokenizer.encode(text)
            let whole = try tokenizer.decode(ids)
            var stream = StreamingDecoder(tokenizer: tokenizer)
            var pieces: [String] = []
            for id in ids { pieces.append(try stream.append(id)) }
            pieces.append(stream.finish())
            #expect(pieces.joined().utf8Bytes == whole.utf8Bytes, "\(text.debugDescription)")
            if !whole.contains("\u{FFFD}") {
                #expect(!pieces.contains { $0.contains("\u{FFFD}") }, "\(text.debugDescription)")
            }
        }
    }
}

extension String {
    /// Swift's `==` treats canonically equivalent strings as equal; tokenizers must agree byte for byte.
    var utf8Bytes: [UInt8] { Array(utf8) }
}
