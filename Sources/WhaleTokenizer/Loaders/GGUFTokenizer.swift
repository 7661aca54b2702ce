import WhaleCore
import WhaleFormats

/// Builds a `Tokenizer` from the `tokenizer.ggml.*` metadata of a GGUF file, as llama.cpp reads it.
///
/// `tokenizer.ggml.model = gpt2` is byte-level BPE with the pre-tokenizer named by `tokenizer.ggml.pre`;
/// `llama` is SentencePiece BPE (scores, `<0xXX>` byte tokens, `▁` for spaces). Token types: 1 normal,
/// 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
enum GGUFTokenizer {
    /// - Parameter addSpacePrefix: overrides `tokenizer.ggml.add_space_prefix` (tests use it to check the
    ///   SentencePiece space-prefix path against llama.cpp on a vocabulary that turns it off).
    static func load(_ model: GGUFModel, addSpacePrefix: Bool? = nil) throws -> Tokenizer {
        let source = model.path
        let metadata = model.metadata
        func fail(_ key: String, _ problem: String, hint: String? = nil) -> WhaleError {
            WhaleError(.invalidValue, file: source, field: key, problem, hint: hint)
        }
        guard let kindName = metadata["tokenizer.ggml.model"]?.string else {
            throw WhaleError(
                .missingKey, file: source, field: "tokenizer.ggml.model", "the GGUF file has no tokenizer",
                hint: "pass a tokenizer.json, or use --tokens")
        }
        guard let tokenValues = metadata["tokenizer.ggml.tokens"]?.array else {
            throw WhaleError(
                .missingKey, file: source, field: "tokenizer.ggml.tokens", "the GGUF file has no token list")
        }
        guard tokenValues.count < 1 << 24 else { throw fail("tokenizer.ggml.tokens", "\(tokenValues.count) tokens") }
        let tokens = try tokenValues.enumerated().map { index, value in
            guard let text = value.string else { throw fail("tokenizer.ggml.tokens", "entry \(index) is not a string") }
            return text
        }
        let count = tokens.count
        var types = [Tokenizer.TokenType](repeating: .normal, count: count)
        if let typeValues = metadata["tokenizer.ggml.token_type"]?.array {
            guard typeValues.count == count else {
                throw fail("tokenizer.ggml.token_type", "\(typeValues.count) types for \(count) tokens")
            }
            for (index, value) in typeValues.enumerated() {
                switch value.int {
                case 1: types[index] = .normal
                case 2: types[index] = .unknown
                case 3: types[index] = .control
                case 4: types[index] = .userDefined
                case 5: types[index] = .unused
                case 6: types[index] = .byte
                default: types[index] = .unused  // undefined: llama.cpp renders it as nothing
                }
            }
        }
        // llama.cpp treats tokens spelled like end-of-turn or fill-in-the-middle markers as control
        // tokens whatever type the file gives them (it warns "control-looking token"); so must we, or
        // Gemma's user-defined `</s>` would match in plain text where llama.cpp's does not.
        for (id, token) in tokens.enumerated() where controlLooking.contains(token) && types[id] != .control {
            types[id] = .control
        }
        func tokenID(_ key: String) throws -> Int? {
            guard let value = metadata[key] else { return nil }
            guard let id = value.int, id >= 0, id < count else { throw fail(key, "\(value.summary) is not a token id") }
            return id
        }
        let bos = try tokenID("tokenizer.ggml.bos_token_id")
        let eos = try tokenID("tokenizer.ggml.eos_token_id")
        let eot = try tokenID("tokenizer.ggml.eot_token_id")
        let template = metadata["tokenizer.chat_template"]?.string

        var entries: [AddedTokenMatcher.Entry] = []
        for (id, type) in types.enumerated() where [.control, .userDefined, .unknown].contains(type) {
            entries.append(.init(bytes: Array(tokens[id].utf8), id: Int32(id), special: type != .userDefined))
        }
        let matcher = AddedTokenMatcher(entries, rule: .longestTokenFirst)

        switch kindName {
        case "gpt2":
            let preName = metadata["tokenizer.ggml.pre"]?.string ?? "default"
            guard let (patterns, ignoreMerges) = GGUFPreTokenizer.patterns(for: preName) else {
                throw fail(
                    "tokenizer.ggml.pre", "pre-tokenizer \"\(preName)\" is not supported",
                    hint: "supported: \(GGUFPreTokenizer.supportedNames.joined(separator: ", "))")
            }
            var tokenIDs: [String: Int32] = [:]
            tokenIDs.reserveCapacity(count)
            for (id, token) in tokens.enumerated() { tokenIDs[token] = Int32(id) }
            let merges = try (metadata["tokenizer.ggml.merges"]?.array ?? []).enumerated().map { index, value in
                guard let text = value.string, let space = text.dropFirst().firstIndex(of: " ") else {
                    throw fail("tokenizer.ggml.merges", "entry \(index) is not \"a b\"")
                }
                return (String(text[..<space]), String(text[text.index(after: space)...]))
            }
            let bpe = try BytePairEncoding(
                tokenIDs: tokenIDs, merges: merges, ignoreMerges: ignoreMerges, source: source)
            let bytes = tokens.enumerated().map { id, token -> [UInt8] in
                switch types[id] {
                case .normal: return llamaDecodeText(token)
                case .unused: return []
                default: return Array(token.utf8)
                }
            }
            let steps = try patterns.map { PreTokenizer.Step.isolate(try PatternRegex($0)) }
            return Tokenizer(
                kind: .byteLevelBPE, source: source, tokens: tokens, tokenTypes: types, tokenBytes: bytes,
                model: .byteLevel(bpe), preTokenizer: PreTokenizer(steps: steps), normalizeNFC: false,
                addedTokens: matcher, bosTokenID: bos, eosTokenIDs: [eos, eot].compactMap { $0 },
                addsBOS: metadata["tokenizer.ggml.add_bos_token"]?.bool ?? ignoreMerges, chatTemplate: template)
        case "llama":
            var scores = [Float](repeating: 0, count: count)
            if let scoreValues = metadata["tokenizer.ggml.scores"]?.array {
                guard scoreValues.count == count else {
                    throw fail("tokenizer.ggml.scores", "\(scoreValues.count) scores for \(count) tokens")
                }
                for (index, value) in scoreValues.enumerated() { scores[index] = Float(value.double ?? 0) }
            }
            var ids: [[UInt8]: Int32] = [:]
            ids.reserveCapacity(count)
            for (id, token) in tokens.enumerated() { ids[Array(token.utf8)] = Int32(id) }
            var byteTokens = [Int32](repeating: -1, count: 256)
            for byte in 0..<256 {
                let hex = String(byte, radix: 16, uppercase: true)
                let name = "<0x" + (hex.count == 1 ? "0" : "") + hex + ">"
                byteTokens[byte] = ids[Array(name.utf8)] ?? (byte < 0x80 ? ids[[UInt8(byte)]] ?? -1 : -1)
            }
            let bytes = tokens.enumerated().map { id, token -> [UInt8] in
                switch types[id] {
                case .normal: return Array(token.replacingSentencePieceSpaces().utf8)
                case .byte: return byteValue(token).map { [$0] } ?? []
                case .unused: return []
                default: return Array(token.utf8)
                }
            }
            let spm = SentencePieceBPE(tokenIDs: ids, scores: scores, byteTokens: byteTokens)
            return Tokenizer(
                kind: .sentencePieceBPE, source: source, tokens: tokens, tokenTypes: types, tokenBytes: bytes,
                model: .sentencePiece(
                    spm, addSpacePrefix: addSpacePrefix ?? metadata["tokenizer.ggml.add_space_prefix"]?.bool ?? true),
                preTokenizer: PreTokenizer(steps: []), normalizeNFC: false, addedTokens: matcher, bosTokenID: bos,
                eosTokenIDs: [eos, eot].compactMap { $0 },
                addsBOS: metadata["tokenizer.ggml.add_bos_token"]?.bool ?? true,
                chatTemplate: template)
        default:
            throw fail(
                "tokenizer.ggml.model", "tokenizer model \"\(kindName)\" is not supported",
                hint: "supported: gpt2 (byte-level BPE), llama (SentencePiece BPE)")
        }
    }

    /// The spellings llama.cpp (llama-vocab.cpp, as vendored by llama-cpp-python 0.3.36) turns into control
    /// tokens: end-of-generation, end-of-turn, end-of-message and fill-in-the-middle markers.
    static let controlLooking: Set<String> = [
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
        "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
        "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>",
        "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>",
        "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>",
        "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>",
        "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>",
        "<reponame>", "<|file_sep|>",
    ]

    /// llama.cpp's `llama_decode_text`: byte-level characters back to bytes; a character outside the map
    /// is written as `[UNK_BYTE_0x…]` followed by the character.
    static func llamaDecodeText(_ token: String) -> [UInt8] {
        if let bytes = ByteLevel.bytes(of: token) { return bytes }
        var out: [UInt8] = []
        for scalar in token.unicodeScalars {
            if let byte = ByteLevel.byte(for: scalar) {
                out.append(byte)
            } else {
                var utf8: [UInt8] = []
                appendUTF8(scalar.value, to: &utf8)
                let hex = utf8.map { byte in
                    let digits = String(byte, radix: 16)
                    return digits.count == 1 ? "0" + digits : digits
                }.joined()
                out += Array("[UNK_BYTE_0x\(hex)".utf8) + utf8 + Array("]".utf8)
            }
        }
        return out
    }

    /// `<0x0A>` → 10.
    static func byteValue(_ token: String) -> UInt8? {
        guard token.hasPrefix("<0x"), token.hasSuffix(">"), token.utf8.count == 6 else { return nil }
        return UInt8(token.dropFirst(3).dropLast(), radix: 16)
    }
}

extension String {
    /// SentencePiece's `▁` (U+2581) back to spaces.
    func replacingSentencePieceSpaces() -> String {
        String(String.UnicodeScalarView(unicodeScalars.map { $0 == "\u{2581}" ? " " : $0 }))
    }
}
