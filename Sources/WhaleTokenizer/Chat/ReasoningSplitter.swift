/// Splits a reasoning model's output (DeepSeek R1, the R1 distills, V3.1 in thinking mode) into its
/// reasoning — the text up to `</think>` — and its answer, as the text streams in.
///
/// R1's template ends the prompt with `<think>\n`, so the output starts inside the reasoning
/// (`startsInReasoning`); other models may open it themselves with `<think>` as their first text. Text that
/// could still turn out to be (part of) a marker is held back until it is decided, and the whitespace around
/// the markers is dropped, as DeepSeek's API returns `reasoning_content` and `content`. Text without any
/// marker passes through unchanged as content.
public struct ReasoningSplitter: Sendable {
    /// Text released by one step, split by where it belongs.
    public struct Piece: Sendable, Equatable {
        public var reasoning = ""
        public var content = ""

        public init(reasoning: String = "", content: String = "") {
            self.reasoning = reasoning
            self.content = content
        }

        public var isEmpty: Bool { reasoning.isEmpty && content.isEmpty }
    }

    enum Phase {
        /// Before any text: the model may still open its reasoning with `<think>`.
        case undecided
        /// Inside the reasoning, before its first non-space character.
        case reasoningStart
        case reasoning
        /// After `</think>`, before the answer's first non-space character.
        case answerStart
        case answer
    }

    static let open = "<think>"
    static let close = "</think>"

    var phase: Phase
    /// Text received but not released yet.
    var pending = ""

    public init(startsInReasoning: Bool) {
        phase = startsInReasoning ? .reasoningStart : .undecided
    }

    /// Whether the output has reached the answer (everything from now on is content).
    public var isAnswering: Bool { phase == .answer || phase == .answerStart }

    /// Adds generated text; returns what is now decided.
    public mutating func feed(_ text: String) -> Piece {
        pending += text
        return release(final: false)
    }

    /// Releases everything held back; call once at the end of the output. A reasoning never closed stays
    /// reasoning (the answer is empty), as when generation stops at its length limit while thinking.
    public mutating func finish() -> Piece { release(final: true) }

    private mutating func release(final: Bool) -> Piece {
        var out = Piece()
        while true {
            switch phase {
            case .undecided:
                let text = pending.drop(while: \.isWhitespace)
                if text.hasPrefix(Self.open) {
                    pending = String(text.dropFirst(Self.open.count))
                    phase = .reasoningStart
                } else if !final && Self.open.hasPrefix(text) {
                    return out  // still could be the opening marker
                } else {
                    phase = .answer
                }
            case .reasoningStart, .answerStart:
                let text = pending.drop(while: \.isWhitespace)
                if text.isEmpty && !final {
                    pending = ""
                    return out
                }
                pending = String(text)
                phase = phase == .reasoningStart ? .reasoning : .answer
            case .reasoning:
                if let marker = pending.range(of: Self.close) {
                    out.reasoning += Self.droppingTrailingWhitespace(pending[..<marker.lowerBound])
                    pending = String(pending[marker.upperBound...])
                    phase = .answerStart
                    continue
                }
                if final {
                    out.reasoning += Self.droppingTrailingWhitespace(pending[...])
                    pending = ""
                    return out
                }
                // Hold back a possible start of `</think>` and the whitespace before it.
                var keep = pending.endIndex
                for length in stride(from: min(Self.close.count - 1, pending.count), to: 0, by: -1)
                where pending.hasSuffix(Self.close.prefix(length)) {
                    keep = pending.index(pending.endIndex, offsetBy: -length)
                    break
                }
                while keep > pending.startIndex, pending[pending.index(before: keep)].isWhitespace {
                    keep = pending.index(before: keep)
                }
                out.reasoning += pending[..<keep]
                pending = String(pending[keep...])
                return out
            case .answer:
                out.content += pending
                pending = ""
                return out
            }
        }
    }

    static func droppingTrailingWhitespace(_ text: Substring) -> String {
        var end = text.endIndex
        while end > text.startIndex, text[text.index(before: end)].isWhitespace { end = text.index(before: end) }
        return String(text[..<end])
    }

    /// Splits a whole output at once.
    public static func split(_ text: String, startsInReasoning: Bool) -> Piece {
        var splitter = ReasoningSplitter(startsInReasoning: startsInReasoning)
        var piece = splitter.feed(text)
        let rest = splitter.finish()
        piece.reasoning += rest.reasoning
        piece.content += rest.content
        return piece
    }
}

extension ChatTemplate {
    /// Whether the generation prompt opens the model's reasoning (R1's `<｜Assistant｜><think>\n`, V3.1's
    /// `<think>` in thinking mode), so the output starts inside it.
    public var opensReasoning: Bool {
        switch family {
        case .deepseek(_, let suffix): suffix.contains("<think>")
        case .deepseekV31(let thinking): thinking
        default: false
        }
    }
}
