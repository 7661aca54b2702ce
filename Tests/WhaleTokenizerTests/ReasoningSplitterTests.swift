import Testing
import WhaleTokenizer

/// A reasoning model's output splits at `</think>` into reasoning and answer, the same whether the text
/// arrives at once or piece by piece, and text without markers passes through unchanged.
@Suite struct ReasoningSplitterTests {
    typealias Piece = ReasoningSplitter.Piece

    /// (output, whether the prompt opened the reasoning, expected reasoning, expected answer)
    static let cases: [(String, Bool, String, String)] = [
        // R1: the template ends with "<think>\n", the model writes the rest.
        (
            "Let me think.\n2 + 2 = 4.\n</think>\n\nThe answer is 4.", true, "Let me think.\n2 + 2 = 4.",
            "The answer is 4."
        ),
        // The model opens its reasoning itself (templates that do not).
        ("<think>\nhmm, fine\n</think>\n\nHi there", false, "hmm, fine", "Hi there"),
        ("  \n<think>x</think>y", false, "x", "y"),
        // No reasoning: unchanged, whitespace and all.
        ("  Hello, world!\n", false, "", "  Hello, world!\n"),
        ("<thinking> is not the marker", false, "", "<thinking> is not the marker"),
        ("a < b and </think> later", false, "", "a < b and </think> later"),
        // An empty reasoning, and a reasoning that never closes (stopped at the length limit).
        ("</think>\n\nJust the answer", true, "", "Just the answer"),
        ("<think>\n\n</think>\n\nAnswer", false, "", "Answer"),
        ("still thinking about </thi", true, "still thinking about </thi", ""),
        // Markers inside the answer are the answer's.
        ("r</think>a <think>b</think> c", true, "r", "a <think>b</think> c"),
        ("", true, "", ""),
        ("", false, "", ""),
    ]

    @Test(arguments: cases.indices)
    func splitsAtTheClosingMarker(index: Int) {
        let (output, opens, reasoning, content) = Self.cases[index]
        #expect(
            ReasoningSplitter.split(output, startsInReasoning: opens) == Piece(reasoning: reasoning, content: content))
    }

    /// Streamed one character at a time, or in chunks of every size, the pieces add up to the whole split.
    @Test(arguments: cases.indices)
    func streamingEqualsWhole(index: Int) {
        let (output, opens, _, _) = Self.cases[index]
        let whole = ReasoningSplitter.split(output, startsInReasoning: opens)
        let characters = Array(output)
        for size in 1...max(1, characters.count) {
            var splitter = ReasoningSplitter(startsInReasoning: opens)
            var joined = Piece()
            for start in stride(from: 0, to: characters.count, by: size) {
                let piece = splitter.feed(String(characters[start..<min(start + size, characters.count)]))
                joined.reasoning += piece.reasoning
                joined.content += piece.content
            }
            let rest = splitter.finish()
            joined.reasoning += rest.reasoning
            joined.content += rest.content
            #expect(joined == whole, "chunks of \(size)")
        }
    }

    /// Reasoning is released as it comes, not held to the end: only a possible marker start waits.
    @Test func releasesReasoningEarly() {
        var splitter = ReasoningSplitter(startsInReasoning: true)
        #expect(splitter.feed("First, ") == Piece(reasoning: "First,"))
        #expect(splitter.feed("consider </th") == Piece(reasoning: " consider"))
        #expect(!splitter.isAnswering)
        #expect(splitter.feed("ink>\n\nDone") == Piece(content: "Done"))
        #expect(splitter.isAnswering)
    }

    @Test func r1TemplateOpensReasoning() throws {
        #expect(try ChatTemplate.named("deepseek-r1").opensReasoning)
        #expect(try !ChatTemplate.named("deepseek-v3").opensReasoning)
        #expect(try !ChatTemplate.named("smollm2").opensReasoning)
        #expect(try ChatTemplate.named("deepseek-v3.1-thinking").opensReasoning)
        #expect(try !ChatTemplate.named("deepseek-v3.1").opensReasoning)
    }
}
