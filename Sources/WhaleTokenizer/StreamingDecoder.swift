/// Turns tokens into text as they are generated, never splitting a UTF-8 character: bytes of an
/// incomplete character are held until the token that completes it arrives.
///
/// A stream whose whole text is valid UTF-8 therefore never shows U+FFFD; bytes that can never become
/// valid are emitted as U+FFFD right away, as `String(decoding:as:)` would.
public struct StreamingDecoder {
    private let tokenizer: Tokenizer
    private let skipSpecial: Bool
    private var pending: [UInt8] = []
    private var isFirst = true

    public init(tokenizer: Tokenizer, skipSpecial: Bool = false) {
        self.tokenizer = tokenizer
        self.skipSpecial = skipSpecial
    }

    /// The text that `id` completes (possibly empty).
    public mutating func append(_ id: Int) throws -> String {
        pending += try tokenizer.renderedBytes(of: id, isFirst: isFirst, skipSpecial: skipSpecial)
        isFirst = false
        let complete = Self.completePrefixLength(pending)
        let out = String(decoding: pending[..<complete], as: UTF8.self)
        pending.removeFirst(complete)
        return out
    }

    /// Whatever is still held, with incomplete bytes as U+FFFD; call at the end of the stream.
    public mutating func finish() -> String {
        defer { pending.removeAll() }
        return String(decoding: pending, as: UTF8.self)
    }

    /// Length of the longest prefix that does not end inside a character that could still be completed.
    static func completePrefixLength(_ bytes: [UInt8]) -> Int {
        let n = bytes.count
        // Look back at most 3 bytes for the start of an unfinished sequence.
        var i = n - 1
        var continuation = 0
        while i >= 0 && n - i <= 4 {
            let byte = bytes[i]
            if byte & 0xC0 == 0x80 {
                continuation += 1
                i -= 1
                continue
            }
            let needed =
                byte >= 0xF0 && byte <= 0xF4 ? 3 : byte >= 0xE0 && byte < 0xF0 ? 2 : byte >= 0xC2 && byte < 0xE0 ? 1 : 0
            if needed > continuation { return i }  // unfinished: hold it back
            return n
        }
        return n
    }
}
