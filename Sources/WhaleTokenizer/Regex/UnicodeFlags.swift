/// The Unicode facts pre-tokenizer patterns ask about a code point, packed in one byte.
///
/// `\p{L}` is any letter category (Lu Ll Lt Lm Lo), `\p{N}` any number (Nd Nl No), `\p{P}` any
/// punctuation (Pc Pd Ps Pe Pi Pf Po), `\p{S}` any symbol (Sm Sc Sk So), `\p{M}` any mark (Mn Mc Me), and
/// `\s` the White_Space property — the definitions Oniguruma (Hugging Face `tokenizers`) and llama.cpp use.
struct UnicodeFlags: OptionSet, Sendable, Hashable {
    let rawValue: UInt8

    static let letter = UnicodeFlags(rawValue: 1 << 0)
    static let number = UnicodeFlags(rawValue: 1 << 1)
    static let punctuation = UnicodeFlags(rawValue: 1 << 2)
    static let symbol = UnicodeFlags(rawValue: 1 << 3)
    static let mark = UnicodeFlags(rawValue: 1 << 4)
    static let whitespace = UnicodeFlags(rawValue: 1 << 5)
    static let separator = UnicodeFlags(rawValue: 1 << 6)
    static let other = UnicodeFlags(rawValue: 1 << 7)

    /// The flags of `scalar`, from the Swift standard library's Unicode data.
    static func compute(_ scalar: Unicode.Scalar) -> UnicodeFlags {
        var flags: UnicodeFlags = []
        switch scalar.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: flags.insert(.letter)
        case .decimalNumber, .letterNumber, .otherNumber: flags.insert(.number)
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation, .initialPunctuation,
            .finalPunctuation, .otherPunctuation:
            flags.insert(.punctuation)
        case .mathSymbol, .currencySymbol, .modifierSymbol, .otherSymbol: flags.insert(.symbol)
        case .nonspacingMark, .spacingMark, .enclosingMark: flags.insert(.mark)
        case .spaceSeparator, .lineSeparator, .paragraphSeparator: flags.insert(.separator)
        default: flags.insert(.other)
        }
        if scalar.properties.isWhitespace { flags.insert(.whitespace) }
        return flags
    }

    /// Flags of every code point of the Basic Multilingual Plane, computed once; others are computed on
    /// demand (they are rare in text, and a full table would cost 1 MB).
    private static let basicPlane: [UInt8] = (0..<0x10000).map { value in
        guard let scalar = Unicode.Scalar(UInt32(value)) else { return UnicodeFlags.other.rawValue }
        return compute(scalar).rawValue
    }

    @inline(__always)
    static func of(_ value: UInt32) -> UnicodeFlags {
        if value < 0x10000 { return UnicodeFlags(rawValue: basicPlane[Int(value)]) }
        guard let scalar = Unicode.Scalar(value) else { return .other }
        return compute(scalar)
    }
}
