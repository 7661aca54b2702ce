import Foundation
import WhaleCore

/// Text to token ids and back, exactly as the model's reference tokenizer does it.
///
/// Built from a Hugging Face `tokenizer.json` (reference: `tokenizers`) or from GGUF metadata (reference:
/// llama.cpp). The pipeline is: find added/special tokens in the text → normalize (NFC when the file says
/// so) → pre-tokenize into pieces → encode each piece with the model (byte-level BPE or SentencePiece BPE).
/// Immutable and `Sendable`: one tokenizer serves every request.
public final class Tokenizer: Sendable {
    /// The tokenizer algorithm.
    public enum Kind: String, Sendable {
        case byteLevelBPE = "byte-level BPE"
        case sentencePieceBPE = "SentencePiece BPE"
    }

    /// What a token is, which decides how it is matched in text and rendered back.
    public enum TokenType: Sendable, Equatable {
        case normal
        /// Control tokens (HF `special: true`, GGUF type 3): matched in text only when asked; skippable.
        case control
        /// Added tokens that are not control tokens (HF `special: false`, GGUF type 4): always matched.
        case userDefined
        case unknown
        /// SentencePiece byte-fallback tokens `<0xXX>`.
        case byte
        case unused
    }

    enum Model: Sendable {
        case byteLevel(BytePairEncoding)
        case sentencePiece(SentencePieceBPE, addSpacePrefix: Bool)
    }

    public let kind: Kind
    /// Where the tokenizer came from, for error messages.
    public let source: String
    /// Token text as the file stores it, by id.
    public let tokens: [String]
    public let tokenTypes: [TokenType]
    /// The bytes each token stands for when decoded, by id.
    let tokenBytes: [[UInt8]]
    let model: Model
    let preTokenizer: PreTokenizer
    let normalizeNFC: Bool
    let addedTokens: AddedTokenMatcher
    public let bosTokenID: Int?
    public let eosTokenIDs: [Int]
    /// Whether a BOS token is added when the caller asks for the model's own special tokens.
    public let addsBOS: Bool
    /// The chat template the model carries, if any.
    public let chatTemplate: String?

    init(
        kind: Kind, source: String, tokens: [String], tokenTypes: [TokenType], tokenBytes: [[UInt8]], model: Model,
        preTokenizer: PreTokenizer, normalizeNFC: Bool, addedTokens: AddedTokenMatcher, bosTokenID: Int?,
        eosTokenIDs: [Int], addsBOS: Bool, chatTemplate: String?
    ) {
        self.kind = kind
        self.source = source
        self.tokens = tokens
        self.tokenTypes = tokenTypes
        self.tokenBytes = tokenBytes
        self.model = model
        self.preTokenizer = preTokenizer
        self.normalizeNFC = normalizeNFC
        self.addedTokens = addedTokens
        self.bosTokenID = bosTokenID
        self.eosTokenIDs = eosTokenIDs
        self.addsBOS = addsBOS
        self.chatTemplate = chatTemplate
    }

    /// Tokens that end generation: the end-of-sequence ids the files declare, and the control tokens spelled
    /// like end-of-turn markers (`<|im_end|>`, `<|eot_id|>`, `<end_of_turn>`, …) that llama.cpp also stops on.
    public var endOfGenerationTokenIDs: Set<Int> {
        var ids = Set(eosTokenIDs)
        for (id, token) in tokens.enumerated()
        where tokenTypes[id] == .control && Tokenizer.endOfGenerationSpellings.contains(token) {
            ids.insert(id)
        }
        return ids
    }

    static let endOfGenerationSpellings: Set<String> = [
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>",
        "<|end_of_text|>", "<｜end▁of▁sentence｜>", "<eos>",
    ]

    /// Number of token ids (the largest id + 1).
    public var vocabularySize: Int { tokens.count }

    /// Token ids of `text`.
    ///
    /// - Parameter parseSpecial: match control tokens written in the text (`<|im_start|>`,
    ///   `<｜User｜>`…) as single tokens — Hugging Face's default `encode(text, add_special_tokens=False)`
    ///   and llama.cpp's `parse_special`. When false (the default), they are tokenized as plain text, so
    ///   user content cannot forge control tokens. Added tokens that are not control tokens are matched
    ///   either way, as in both references.
    public func encode(_ text: String, parseSpecial: Bool = false) -> [Int] {
        let utf8 = Array(text.utf8)
        var output: [Int32] = []
        output.reserveCapacity(utf8.count / 3 + 4)
        var previousWasToken = true  // SentencePiece: a space prefix goes before the first text
        for segment in addedTokens.split(utf8, includeSpecial: parseSpecial) {
            switch segment {
            case .token(let id):
                output.append(id)
                previousWasToken = true
            case .text(let range):
                encodeText(utf8[range], afterToken: previousWasToken, into: &output)
                previousWasToken = false
            }
        }
        return output.map(Int.init)
    }

    private func encodeText(_ bytes: ArraySlice<UInt8>, afterToken: Bool, into output: inout [Int32]) {
        switch model {
        case .sentencePiece(let spm, let addSpacePrefix):
            var text: [UInt8] = []
            text.reserveCapacity(bytes.count + 3)
            if addSpacePrefix && afterToken { text += [0xE2, 0x96, 0x81] }
            for byte in bytes {
                if byte == 0x20 { text += [0xE2, 0x96, 0x81] } else { text.append(byte) }
            }
            spm.encode(text, into: &output)
        case .byteLevel(let bpe):
            var string = String(decoding: bytes, as: UTF8.self)
            if normalizeNFC { string = string.precomposedStringWithCanonicalMapping }
            if preTokenizer.addPrefixSpace, let first = string.unicodeScalars.first, first != " " {
                string = " " + string
            }
            let scalars = string.unicodeScalars.map(\.value)
            let flags = scalars.map { UnicodeFlags.of($0).rawValue }
            scalars.withUnsafeBufferPointer { text in
                flags.withUnsafeBufferPointer { flags in
                    var piece: [UInt8] = []
                    for range in preTokenizer.split(text, flags, 0..<text.count) {
                        piece.removeAll(keepingCapacity: true)
                        for index in range { appendUTF8(text[index], to: &piece) }
                        bpe.encode(piece, into: &output)
                    }
                }
            }
        }
    }

    /// Whether `id` is a control token (skipped by `decode(_:skipSpecial:)`).
    public func isControl(_ id: Int) -> Bool {
        id >= 0 && id < tokenTypes.count && tokenTypes[id] == .control
    }

    /// The bytes token `id` stands for (a token may hold part of a UTF-8 character).
    public func bytes(of id: Int) throws -> [UInt8] {
        guard id >= 0, id < tokenBytes.count else {
            throw WhaleError(
                .invalidArgument, file: source, field: "token id",
                "\(id) is not a token id (the vocabulary has \(tokenBytes.count))")
        }
        return tokenBytes[id]
    }

    /// The text of `ids`. Bytes that are not valid UTF-8 become U+FFFD, as in both references.
    /// - Parameter skipSpecial: leave out control tokens.
    public func decode(_ ids: [Int], skipSpecial: Bool = false) throws -> String {
        var bytes: [UInt8] = []
        for (index, id) in ids.enumerated() {
            bytes += try renderedBytes(of: id, isFirst: index == 0, skipSpecial: skipSpecial)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The bytes token `id` contributes to decoded text at its place in a sequence.
    func renderedBytes(of id: Int, isFirst: Bool, skipSpecial: Bool) throws -> ArraySlice<UInt8> {
        let piece = try bytes(of: id)
        if skipSpecial && tokenTypes[id] == .control { return [] }
        // llama.cpp strips the space prefix it added before the text (SentencePiece).
        if isFirst, case .sentencePiece(_, let addSpacePrefix) = model, addSpacePrefix, piece.first == 0x20 {
            return piece.dropFirst()
        }
        return piece[...]
    }
}

@inline(__always)
func appendUTF8(_ value: UInt32, to bytes: inout [UInt8]) {
    // Each byte computed as a UInt32 first: Swift 6.0's type checker takes ~100 ms per `UInt8(0x80 | …)` if
    // it has to find the operand type itself.
    @inline(__always) func append(_ byte: UInt32) { bytes.append(UInt8(byte)) }
    switch value {
    case 0..<0x80: append(value)
    case 0x80..<0x800:
        append(0xC0 | value >> 6)
        append(0x80 | value & 0x3F)
    case 0x800..<0x10000:
        append(0xE0 | value >> 12)
        append(0x80 | value >> 6 & 0x3F)
        append(0x80 | value & 0x3F)
    default:
        append(0xF0 | value >> 18)
        append(0x80 | value >> 12 & 0x3F)
        append(0x80 | value >> 6 & 0x3F)
        append(0x80 | value & 0x3F)
    }
}
