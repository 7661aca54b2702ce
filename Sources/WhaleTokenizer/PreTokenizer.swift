import WhaleCore

/// Splits normalized text into the pieces a tokenizer model encodes one at a time.
///
/// Text arrives as Unicode scalars with their category flags; each step refines the current pieces
/// (ranges into that text), the way a Hugging Face `Sequence` pre-tokenizer or llama.cpp's list of
/// `regex_exprs` does: the matches of a pattern and the gaps between them both become pieces.
struct PreTokenizer: Sendable {
    enum Step: Sendable {
        /// Pieces are the pattern's matches and the gaps between them (HF `Split`, behavior `Isolated`).
        case isolate(PatternRegex)
        /// Matches are dropped, gaps kept (HF `Split`, behavior `Removed`).
        case remove(PatternRegex)
    }

    var steps: [Step]
    /// HF ByteLevel `add_prefix_space`: a space is put before text that does not start with one.
    var addPrefixSpace = false

    /// GPT-2's pattern, as Hugging Face's ByteLevel pre-tokenizer applies it with `use_regex: true`.
    static let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#

    /// The pieces of `range`, in order.
    func split(_ text: UnsafeBufferPointer<UInt32>, _ flags: UnsafeBufferPointer<UInt8>, _ range: Range<Int>)
        -> [Range<Int>]
    {
        var pieces = range.isEmpty ? [] : [range]
        var stack: [Int] = []
        stack.reserveCapacity(64)
        for step in steps {
            var next: [Range<Int>] = []
            next.reserveCapacity(pieces.count * 2)
            for piece in pieces {
                switch step {
                case .isolate(let regex), .remove(let regex):
                    var cursor = piece.lowerBound
                    var keepMatches = true
                    if case .remove = step { keepMatches = false }
                    for match in regex.matches(in: text, flags: flags, range: piece, stack: &stack) {
                        if match.lowerBound > cursor { next.append(cursor..<match.lowerBound) }
                        if keepMatches { next.append(match) }
                        cursor = match.upperBound
                    }
                    if cursor < piece.upperBound { next.append(cursor..<piece.upperBound) }
                }
            }
            pieces = next
        }
        return pieces
    }
}

/// The pre-tokenizers llama.cpp applies to GGUF byte-level vocabularies, by `tokenizer.ggml.pre` name.
/// The patterns are llama.cpp's (`llama-vocab.cpp`), which are the models' own tokenizer.json patterns.
enum GGUFPreTokenizer {
    static let llama3 =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2 =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    /// llama.cpp's GPT-2 pattern lacks the final `|\s+`; the unmatched gaps become pieces of their own.
    static let gpt2 = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"#
    static let deepseekV3 = [
        #"\p{N}{1,3}"#,
        #"[一-龥぀-ゟ゠-ヿ]+"#,
        ##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
    ]
    /// The cased-letter class of DeepSeek-LLM / V2's second split, by code point: its published text is not
    /// NFC (U+212A KELVIN SIGN, U+2126 OHM SIGN, …), and a normalized copy would change the ranges.
    static let deepseekLetters =
        "\u{41}-\u{5A}\u{61}-\u{7A}\u{B5}\u{C0}-\u{D6}\u{D8}-\u{F6}\u{F8}-\u{1BA}\u{1BC}-\u{1BF}"
        + "\u{1C4}-\u{293}\u{295}-\u{2AF}\u{370}-\u{373}\u{376}\u{377}\u{37B}-\u{37D}\u{37F}\u{386}"
        + "\u{388}-\u{38A}\u{38C}\u{38E}-\u{3A1}\u{3A3}-\u{3F5}\u{3F7}-\u{481}\u{48A}-\u{52F}"
        + "\u{531}-\u{556}\u{10A0}-\u{10C5}\u{13A0}-\u{13F5}\u{13F8}-\u{13FD}\u{1C90}-\u{1CBA}"
        + "\u{1CBD}-\u{1CBF}\u{1D00}-\u{1D2B}\u{1D6B}-\u{1D77}\u{1D79}-\u{1D9A}\u{1E00}-\u{1F15}"
        + "\u{1F18}-\u{1F1D}\u{1F20}-\u{1F45}\u{1F48}-\u{1F4D}\u{1F50}-\u{1F57}\u{1F59}\u{1F5B}"
        + "\u{1F5D}\u{1F5F}-\u{1F7D}\u{1F80}-\u{1FB4}\u{1FB6}-\u{1FBC}\u{1FBE}\u{1FC2}-\u{1FC4}"
        + "\u{1FC6}-\u{1FCC}\u{1FD0}-\u{1FD3}\u{1FD6}-\u{1FDB}\u{1FE0}-\u{1FEC}\u{1FF2}-\u{1FF4}"
        + "\u{1FF6}-\u{1FFC}\u{2102}\u{2107}\u{210A}-\u{2113}\u{2115}\u{2119}-\u{211D}\u{2124}"
        + "\u{2126}\u{2128}\u{212A}-\u{212D}\u{212F}-\u{2134}\u{2139}\u{213C}-\u{213F}"
        + "\u{2145}-\u{2149}\u{214E}\u{2183}\u{2184}\u{2C00}-\u{2C7B}\u{2C7E}-\u{2CE4}"
        + "\u{2CEB}-\u{2CEE}\u{2CF2}\u{2CF3}\u{A640}-\u{A66D}\u{A680}-\u{A69B}\u{A722}-\u{A76F}"
        + "\u{A771}-\u{A787}\u{A78B}-\u{A78E}\u{AB70}-\u{ABBF}\u{FB00}-\u{FB06}\u{FB13}-\u{FB17}"
        + "\u{FF21}-\u{FF3A}\u{FF41}-\u{FF5A}\u{10400}-\u{1044F}\u{104B0}-\u{104D3}"
        + "\u{104D8}-\u{104FB}\u{10C80}-\u{10CB2}\u{10CC0}-\u{10CF2}\u{118A0}-\u{118DF}" + "\u{1E900}-\u{1E943}"
    static let deepseekLLM = [
        "[\r\n]",
        #"\s?["# + deepseekLetters + "]+",
        "\\s?[!-/:-~\u{FF01}-\u{FF0F}\u{FF1A}-\u{FF5E}\u{2018}-\u{201F}\u{3000}-\u{3002}]+",
        #"\s+$"#,
        "[\u{4E00}-\u{9FA5}\u{0800}-\u{4E00}\u{AC00}-\u{D7FF}]+",
        #"\p{N}+"#,
    ]
    static let deepseekCoder = [
        "[\r\n]", #"\s?\p{L}+"#, #"\s?\p{P}+"#, #"[一-龥ࠀ-一가-퟿]+"#, #"\p{N}"#,
    ]

    /// Pre-tokenizer name → (patterns, ignore merges). Names as llama.cpp's converter writes them.
    static func patterns(for name: String) -> (patterns: [String], ignoreMerges: Bool)? {
        switch name {
        case "llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral": ([llama3], true)
        case "deepseek-llm": (deepseekLLM, false)
        case "deepseek-coder": (deepseekCoder, false)
        // llama.cpp's converter names DeepSeek-V3's tokenizer "joyai-llm" since JoyAI-LLM shipped the same
        // one (same hash; llama.cpp gives both the same pre-tokenizer): recent DeepSeek-V3-family GGUFs carry it.
        case "deepseek-v3", "joyai-llm": (deepseekV3, false)
        case "gpt-2", "phi-2": ([gpt2], false)
        case "qwen2", "deepseek-r1-qwen", "stablelm2", "megrez": ([qwen2], false)
        case "smollm", "starcoder", "refact", "command-r", "codeshell": ([#"\p{N}"#, gpt2], false)
        default: nil
        }
    }

    static let supportedNames = [
        "llama3", "llama-bpe", "deepseek-llm", "deepseek-coder", "deepseek-v3", "gpt-2", "qwen2", "deepseek-r1-qwen",
        "smollm",
    ]
}
