import WhaleCore

/// Byte-level BPE (GPT-2 style), working on token ids rather than strings.
///
/// A piece of text becomes its UTF-8 bytes, each byte the id of its one-character token; then the
/// adjacent pair with the lowest merge rank is merged, leftmost first on ties, until no pair has a merge.
/// This is the algorithm of Hugging Face `tokenizers` and llama.cpp; `ignoreMerges` (Llama 3) first emits
/// a piece whole when the vocabulary holds it.
struct BytePairEncoding: Sendable {
    /// Token id of each byte's one-character token, -1 where the vocabulary has none.
    let byteTokens: [Int32]
    /// `(left << 32 | right)` → `(rank << 32 | merged id)`.
    let merges: [UInt64: UInt64]
    /// Pieces emitted whole (only with `ignoreMerges`), keyed by their bytes.
    let wholeTokens: [[UInt8]: Int32]?

    /// - Parameters:
    ///   - tokenIDs: byte-level token string → id.
    ///   - merges: pairs of token strings, in rank order.
    init(tokenIDs: [String: Int32], merges mergePairs: [(String, String)], ignoreMerges: Bool, source: String) throws {
        // A vocabulary may lack some bytes (SmolLM2 has no token for 0x04): both references drop such
        // bytes from the output, so we do too.
        let byteTokens = (0..<256).map { tokenIDs[String(Character(ByteLevel.character[$0]))] ?? -1 }
        var merges: [UInt64: UInt64] = [:]
        merges.reserveCapacity(mergePairs.count)
        for (rank, pair) in mergePairs.enumerated() {
            guard let left = tokenIDs[pair.0], let right = tokenIDs[pair.1], let merged = tokenIDs[pair.0 + pair.1]
            else {
                throw WhaleError(
                    .invalidValue, file: source, field: "merges[\(rank)]",
                    "merge \"\(pair.0) \(pair.1)\" names a token that is not in the vocabulary")
            }
            let key = UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
            // The first (lowest-rank) occurrence of a pair wins, as in both references.
            if merges[key] == nil { merges[key] = UInt64(rank) << 32 | UInt64(UInt32(bitPattern: merged)) }
        }
        self.byteTokens = byteTokens
        self.merges = merges
        if ignoreMerges {
            var whole: [[UInt8]: Int32] = [:]
            for (token, id) in tokenIDs {
                if let bytes = ByteLevel.bytes(of: token) { whole[bytes] = id }
            }
            wholeTokens = whole
        } else {
            wholeTokens = nil
        }
    }

    /// Appends the tokens of one pre-tokenized piece, given as UTF-8 bytes.
    func encode(_ bytes: [UInt8], into output: inout [Int32]) {
        if bytes.isEmpty { return }
        if let wholeTokens, let id = wholeTokens[bytes] {
            output.append(id)
            return
        }
        if bytes.count == 1 {
            if byteTokens[Int(bytes[0])] >= 0 { output.append(byteTokens[Int(bytes[0])]) }
            return
        }
        var symbols = bytes.map { byteTokens[Int($0)] }
        // ranks[i]: merge of symbols[i] and symbols[i + 1] (rank << 32 | merged), or .max for none.
        var ranks = [UInt64](repeating: .max, count: symbols.count - 1)
        for i in 0..<ranks.count { ranks[i] = merge(symbols[i], symbols[i + 1]) }
        while !ranks.isEmpty {
            var best = 0
            var bestValue = ranks[0]
            for i in 1..<ranks.count where ranks[i] >> 32 < bestValue >> 32 {
                best = i
                bestValue = ranks[i]
            }
            if bestValue == .max { break }
            symbols[best] = Int32(bitPattern: UInt32(truncatingIfNeeded: bestValue))
            symbols.remove(at: best + 1)
            ranks.remove(at: best)
            if best < ranks.count { ranks[best] = merge(symbols[best], symbols[best + 1]) }
            if best > 0 { ranks[best - 1] = merge(symbols[best - 1], symbols[best]) }
        }
        for symbol in symbols where symbol >= 0 { output.append(symbol) }
    }

    @inline(__always)
    private func merge(_ left: Int32, _ right: Int32) -> UInt64 {
        merges[UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))] ?? .max
    }
}
