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
    static let deepseekLLM = [
        "[\r\n]",
        #"\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+"#,
        #"\s?[!-/:-~！-／：-～‘-‟　-。]+"#,
        #"\s+$"#,
        #"[一-龥ࠀ-一가-퟿]+"#,
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
        case "deepseek-v3": (deepseekV3, false)
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
