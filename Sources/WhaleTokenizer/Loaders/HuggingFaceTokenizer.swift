import WhaleCore
import WhaleFormats

/// Builds a `Tokenizer` from a Hugging Face `tokenizer.json` (+ `tokenizer_config.json` beside it).
///
/// Supported, each as `tokenizers` defines it: model `BPE` over a byte-level alphabet (no byte fallback,
/// no subword prefixes, optional `ignore_merges`); normalizers none / `NFC`; pre-tokenizers `Split`
/// (Isolated or Removed), `Digits`, `ByteLevel`, in a `Sequence`; decoder `ByteLevel`; post-processors
/// `ByteLevel` / `TemplateProcessing` (only its BOS is used). Anything else is refused by name.
enum HuggingFaceTokenizer {
    static func load(path: String) throws -> Tokenizer {
        let file = try MappedFile(path: path)
        guard file.size <= 512 << 20 else {
            throw WhaleError(.tooLarge, file: path, "tokenizer.json of \(file.size) bytes is over 512 MiB")
        }
        guard let root = try JSONValue.parse(file.bytes, file: path).object else {
            throw WhaleError(.invalidJSON, file: path, "expected a JSON object")
        }
        let json = JSONFields(root, file: path)
        let directory = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        let configPath = (directory.isEmpty ? "." : directory) + "/tokenizer_config.json"
        let config = FileSystem.isFile(configPath) ? try FileSystem.readJSONObject(configPath) : nil
        return try build(json, config: config, source: path)
    }

    static func unsupported(_ field: String, _ found: String, source: String) -> WhaleError {
        WhaleError(
            .invalidValue, file: source, field: field, "\(found) is not supported",
            hint: "BlueWhale reads byte-level BPE tokenizers (DeepSeek, Llama 3, Qwen2, SmolLM2, GPT-2 style)")
    }

    static func build(_ json: JSONFields, config: JSONFields?, source: String) throws -> Tokenizer {
        guard let model = try json.object("model") else {
            throw WhaleError(.missingKey, file: source, field: "model", "tokenizer.json has no model")
        }
        let modelType = try model.string("type") ?? "BPE"
        guard modelType == "BPE" else { throw unsupported("model.type", "model \"\(modelType)\"", source: source) }
        if try model.bool("byte_fallback") == true {
            throw unsupported(
                "model.byte_fallback", "a BPE with byte fallback (SentencePiece-converted)", source: source)
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] where model.value(key) != nil {
            if let value = try model.string(key), !value.isEmpty {
                throw unsupported("model.\(key)", "\"\(value)\"", source: source)
            }
        }
        guard let vocab = try model.object("vocab") else {
            throw WhaleError(.missingKey, file: source, field: "model.vocab", "the BPE model has no vocabulary")
        }
        var tokenIDs: [String: Int32] = [:]
        tokenIDs.reserveCapacity(vocab.object.count)
        var maxID = -1
        for token in vocab.object.keys {
            guard let id = vocab.object[token]?.integer, id >= 0, id < 1 << 24 else {
                throw WhaleError(
                    .invalidValue, file: source, field: "model.vocab.\(token)", "id is not a valid token id")
            }
            tokenIDs[token] = Int32(id)
            maxID = max(maxID, id)
        }
        let merges = try readMerges(model, source: source)

        // Added tokens.
        var added: [(id: Int, content: String, special: Bool)] = []
        for (index, entry) in (json.object["added_tokens"]?.array ?? []).enumerated() {
            guard let object = entry.object else {
                throw WhaleError(.typeMismatch, file: source, field: "added_tokens[\(index)]", "expected an object")
            }
            let fields = JSONFields(object, file: source, path: "added_tokens[\(index)]")
            let id = try fields.required("id", fields.int)
            let content = try fields.required("content", fields.string)
            guard id >= 0, id < 1 << 24 else {
                throw WhaleError(.invalidValue, file: source, field: "added_tokens[\(index)].id", "bad id \(id)")
            }
            for flag in ["lstrip", "rstrip", "single_word"] where try fields.bool(flag) == true {
                throw unsupported("added_tokens[\(index)].\(flag)", "\(flag) on \"\(content)\"", source: source)
            }
            added.append((id, content, try fields.bool("special") ?? false))
            maxID = max(maxID, id)
        }

        let (preTokenizer, byteLevel) = try readPreTokenizer(json.object["pre_tokenizer"], source: source)
        guard byteLevel else {
            throw unsupported("pre_tokenizer", "a tokenizer without a ByteLevel step", source: source)
        }
        let normalizeNFC = try readNormalizer(json.object["normalizer"], source: source)
        try checkDecoder(json.object["decoder"], source: source)
        let bosFromTemplate = try readPostProcessor(json.object["post_processor"], source: source)

        // Tables by id.
        let count = maxID + 1
        var tokens = [String](repeating: "", count: count)
        var types = [Tokenizer.TokenType](repeating: .unused, count: count)
        var bytes = [[UInt8]](repeating: [], count: count)
        for (token, id) in tokenIDs {
            tokens[Int(id)] = token
            types[Int(id)] = .normal
            // HF's ByteLevel decoder: a token with a character outside the byte map decodes to its UTF-8.
            bytes[Int(id)] = ByteLevel.bytes(of: token) ?? Array(token.utf8)
        }
        var entries: [AddedTokenMatcher.Entry] = []
        for token in added {
            tokens[token.id] = token.content
            types[token.id] = token.special ? .control : .userDefined
            bytes[token.id] = ByteLevel.bytes(of: token.content) ?? Array(token.content.utf8)
            entries.append(.init(bytes: Array(token.content.utf8), id: Int32(token.id), special: token.special))
        }
        let bpe = try BytePairEncoding(
            tokenIDs: tokenIDs, merges: merges, ignoreMerges: try model.bool("ignore_merges") ?? false, source: source)

        // Special tokens and chat template from tokenizer_config.json.
        func tokenID(named key: String) throws -> Int? {
            guard let config, let value = config.value(key) else { return nil }
            let content: String?
            if let string = value.string {
                content = string
            } else if let object = value.object {
                content = object["content"]?.string
            } else {
                content = nil
            }
            guard let content else { return nil }
            guard
                let entry = added.first(where: { $0.content == content })
                    ?? tokenIDs[content].map({ (Int($0), content, false) })
            else {
                throw WhaleError(
                    .invalidValue, file: config.file, field: key, "\"\(content)\" is not a token of the vocabulary")
            }
            return entry.id
        }
        let bos =
            try tokenID(named: "bos_token")
            ?? bosFromTemplate.flatMap { name in added.first { $0.content == name }?.id }
        let eos = try tokenID(named: "eos_token")
        let addsBOS = try config?.bool("add_bos_token") ?? (bosFromTemplate != nil)
        var template: String? = nil
        if let value = config?.value("chat_template") {
            if let string = value.string {
                template = string
            } else if let list = value.array {
                // [{"name": "default", "template": "..."}, ...]
                template = list.compactMap(\.object).first { $0["name"]?.string == "default" }?["template"]?.string
            }
        }

        return Tokenizer(
            kind: .byteLevelBPE, source: source, tokens: tokens, tokenTypes: types, tokenBytes: bytes,
            model: .byteLevel(bpe), preTokenizer: preTokenizer, normalizeNFC: normalizeNFC,
            addedTokens: AddedTokenMatcher(entries, rule: .leftmostLongest), bosTokenID: bos,
            eosTokenIDs: eos.map { [$0] } ?? [], addsBOS: addsBOS, chatTemplate: template)
    }

    static func readMerges(_ model: JSONFields, source: String) throws -> [(String, String)] {
        guard let list = model.object["merges"]?.array else { return [] }
        var merges: [(String, String)] = []
        merges.reserveCapacity(list.count)
        for (index, entry) in list.enumerated() {
            if let text = entry.string {
                // "left right": tokens never contain a space in a byte-level vocabulary.
                let parts = text.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
                guard parts.count == 2 else {
                    throw WhaleError(.invalidValue, file: source, field: "model.merges[\(index)]", "expected \"a b\"")
                }
                merges.append((String(parts[0]), String(parts[1])))
            } else if let pair = entry.array, pair.count == 2, let left = pair[0].string, let right = pair[1].string {
                merges.append((left, right))
            } else {
                throw WhaleError(
                    .invalidValue, file: source, field: "model.merges[\(index)]", "expected \"a b\" or [\"a\", \"b\"]")
            }
        }
        return merges
    }

    /// The pre-tokenizer steps, and whether a ByteLevel step was present.
    static func readPreTokenizer(_ value: JSONValue?, source: String) throws -> (PreTokenizer, Bool) {
        var pre = PreTokenizer(steps: [])
        var byteLevel = false
        func visit(_ value: JSONValue, path: String) throws {
            guard let object = value.object else {
                throw unsupported(path, "a non-object pre-tokenizer", source: source)
            }
            let fields = JSONFields(object, file: source, path: path)
            let type = try fields.required("type", fields.string)
            switch type {
            case "Sequence":
                for (i, item) in (object["pretokenizers"]?.array ?? []).enumerated() {
                    try visit(item, path: "\(path).pretokenizers[\(i)]")
                }
            case "Split":
                guard let pattern = try fields.object("pattern") else {
                    throw WhaleError(.missingKey, file: source, field: "\(path).pattern", "Split has no pattern")
                }
                guard let regexText = try pattern.string("Regex") else {
                    throw unsupported("\(path).pattern", "a non-regex split pattern", source: source)
                }
                if try fields.bool("invert") == true {
                    throw unsupported("\(path).invert", "invert: true", source: source)
                }
                let regex: PatternRegex
                do { regex = try PatternRegex(regexText) } catch let error as WhaleError { throw error.inFile(source) }
                switch try fields.string("behavior") ?? "Isolated" {
                case "Isolated": pre.steps.append(.isolate(regex))
                case "Removed": pre.steps.append(.remove(regex))
                case let other: throw unsupported("\(path).behavior", "behavior \(other)", source: source)
                }
            case "Digits":
                let individual = try fields.bool("individual_digits") ?? false
                pre.steps.append(.isolate(try PatternRegex(individual ? #"\p{N}"# : #"\p{N}+"#)))
            case "ByteLevel":
                byteLevel = true
                if try fields.bool("add_prefix_space") == true { pre.addPrefixSpace = true }
                if try fields.bool("use_regex") ?? true {
                    pre.steps.append(.isolate(try PatternRegex(PreTokenizer.gpt2Pattern)))
                }
            default:
                throw unsupported(path, "pre-tokenizer \(type)", source: source)
            }
        }
        if let value, !value.isNull { try visit(value, path: "pre_tokenizer") }
        return (pre, byteLevel)
    }

    static func readNormalizer(_ value: JSONValue?, source: String) throws -> Bool {
        guard let value, !value.isNull else { return false }
        var nfc = false
        func visit(_ value: JSONValue, path: String) throws {
            guard let type = value.object?["type"]?.string else {
                throw unsupported(path, "this normalizer", source: source)
            }
            switch type {
            case "Sequence":
                for (i, item) in (value.object?["normalizers"]?.array ?? []).enumerated() {
                    try visit(item, path: "\(path).normalizers[\(i)]")
                }
            case "NFC": nfc = true
            default: throw unsupported(path, "normalizer \(type)", source: source)
            }
        }
        try visit(value, path: "normalizer")
        return nfc
    }

    static func checkDecoder(_ value: JSONValue?, source: String) throws {
        guard let value, !value.isNull else { return }
        guard let type = value.object?["type"]?.string else {
            throw unsupported("decoder", "this decoder", source: source)
        }
        switch type {
        case "ByteLevel": return
        case "Sequence":
            for (i, item) in (value.object?["decoders"]?.array ?? []).enumerated() {
                guard item.object?["type"]?.string == "ByteLevel" else {
                    throw unsupported(
                        "decoder.decoders[\(i)]", "decoder \(item.object?["type"]?.string ?? "?")", source: source)
                }
            }
        default: throw unsupported("decoder", "decoder \(type)", source: source)
        }
    }

    /// The BOS token a TemplateProcessing post-processor puts first, if any.
    static func readPostProcessor(_ value: JSONValue?, source: String) throws -> String? {
        guard let object = value?.object, let type = object["type"]?.string else { return nil }
        switch type {
        case "ByteLevel": return nil
        case "TemplateProcessing":
            guard let first = object["single"]?.array?.first?.object?["SpecialToken"]?.object?["id"]?.string else {
                return nil
            }
            return first
        case "Sequence":
            for item in object["processors"]?.array ?? [] {
                if let bos = try readPostProcessor(item, source: source) { return bos }
            }
            return nil
        default: throw unsupported("post_processor", "post-processor \(type)", source: source)
        }
    }
}
