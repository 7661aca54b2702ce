/// GPT-2's reversible map between bytes and printable characters, used by byte-level BPE vocabularies:
/// every token is a string of these characters, one per byte.
///
/// Printable Latin-1 bytes (`!`–`~`, `¡`–`¬`, `®`–`ÿ`) stand for themselves; the other 68 bytes are
/// shifted to U+0100 onwards in byte order (so a space is `Ġ`, U+0120, and a newline `Ċ`, U+010A).
enum ByteLevel {
    /// `character[b]` is the character standing for byte `b`.
    static let character: [Unicode.Scalar] = {
        var map = [Unicode.Scalar](repeating: "\0", count: 256)
        var next: UInt32 = 256
        for byte in 0..<256 {
            let printable = (0x21...0x7E).contains(byte) || (0xA1...0xAC).contains(byte) || (0xAE...0xFF).contains(byte)
            if printable {
                map[byte] = Unicode.Scalar(UInt8(byte))
            } else {
                map[byte] = Unicode.Scalar(next)!
                next += 1
            }
        }
        return map
    }()

    /// The byte a character stands for, or nil if it is not one of the 256.
    static func byte(for scalar: Unicode.Scalar) -> UInt8? {
        let value = scalar.value
        if value < 256 {
            let printable =
                (0x21...0x7E).contains(value) || (0xA1...0xAC).contains(value) || (0xAE...0xFF).contains(value)
            return printable ? UInt8(value) : nil
        }
        guard value < 256 + 68 else { return nil }
        return reverse[Int(value - 256)]
    }

    private static let reverse: [UInt8] = {
        var table = [UInt8](repeating: 0, count: 68)
        for byte in 0..<256 where character[byte].value >= 256 { table[Int(character[byte].value) - 256] = UInt8(byte) }
        return table
    }()

    /// The bytes a byte-level token string stands for, or nil if a character is outside the map (as in
    /// added tokens such as `<｜User｜>`, which decode to their own UTF-8 — the rule of Hugging Face's
    /// ByteLevel decoder).
    static func bytes(of token: String) -> [UInt8]? {
        var result: [UInt8] = []
        result.reserveCapacity(token.unicodeScalars.count)
        for scalar in token.unicodeScalars {
            guard let byte = byte(for: scalar) else { return nil }
            result.append(byte)
        }
        return result
    }

    /// The byte-level string for raw bytes.
    static func string(of bytes: some Sequence<UInt8>) -> String {
        var text = String.UnicodeScalarView()
        for byte in bytes { text.append(character[Int(byte)]) }
        return String(text)
    }
}
