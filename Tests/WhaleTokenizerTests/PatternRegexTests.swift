import Testing
import WhaleCore

@testable import WhaleTokenizer

/// The regex engine on the constructs tokenizer patterns use; expected splits are Python `regex`'s
/// `findall` (the same leftmost-first semantics as Oniguruma) plus the gaps between matches.
@Suite struct PatternRegexTests {
    func split(_ pattern: String, _ text: String) throws -> [String] {
        let regex = try PatternRegex(pattern)
        let scalars = text.unicodeScalars.map(\.value)
        let flags = scalars.map { UnicodeFlags.of($0).rawValue }
        let pre = PreTokenizer(steps: [.isolate(regex)])
        return scalars.withUnsafeBufferPointer { s in
            flags.withUnsafeBufferPointer { f in
                pre.split(s, f, 0..<s.count).map { range in
                    String(String.UnicodeScalarView(range.map { Unicode.Scalar(scalars[$0])! }))
                }
            }
        }
    }

    @Test func gpt2Pattern() throws {
        #expect(
            try split(PreTokenizer.gpt2Pattern, "Hello world's  12 3!!  \n\tx")
                == ["Hello", " world", "'s", " ", " 12", " 3", "!!", "  \n", "\t", "x"])
    }

    @Test func whitespaceLookahead() throws {
        // \s+(?!\S) leaves the last space; as the first alternative, \s+ then takes it alone.
        #expect(try split(#"\s+(?!\S)|\s+| ?\p{L}+"#, "a   b") == ["a", "  ", " ", "b"])
        #expect(try split(#" ?\p{L}+|\s+(?!\S)|\s+"#, "a   b") == ["a", "  ", " b"])
        #expect(try split(#"\s+(?!\S)|\s+"#, "   ") == ["   "])
    }

    @Test func caseInsensitiveGroup() throws {
        #expect(try split(#"(?i:'s|'ll)|\p{L}+"#, "IT'S WE'LL") == ["IT", "'S", " ", "WE", "'LL"])
    }

    @Test func countedRepeat() throws {
        #expect(try split(#"\p{N}{1,3}"#, "1234567") == ["123", "456", "7"])
    }

    @Test func classesWithRangesAndCategories() throws {
        #expect(try split("[一-龥぀-ゟ]+", "ab日本語ひらがなc") == ["ab", "日本語ひらがな", "c"])
        #expect(try split(#"[^\r\n\p{L}\p{N}]?\p{L}+"#, "¿Qué?\nsí") == ["¿Qué", "?\n", "sí"])
        #expect(try split(#"[\p{P}\p{S}]+"#, "a+b=c.") == ["a", "+", "b", "=", "c", "."])
    }

    @Test func endAnchor() throws {
        #expect(try split(#"\s+$"#, "a  b  ") == ["a  b", "  "])
    }

    @Test(arguments: [#"\p{Han}"#, "(?<name>a)", "a++", "[[a]]", #"\d"#, "(a", "a)", "[a", #"\"#, "a{3,1}"])
    func unsupportedSyntaxIsAnError(pattern: String) {
        #expect(throws: WhaleError.self) { try PatternRegex(pattern) }
    }

    @Test func noCatastrophicBacktrackingOnLongRuns() throws {
        let text = String(repeating: " ", count: 20_000) + "x"
        let pieces = try split(#"\s*[\r\n]+|\s+(?!\S)|\s+| ?\p{L}+"#, text)
        #expect(pieces.joined() == text)
    }
}
