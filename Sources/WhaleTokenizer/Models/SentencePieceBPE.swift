/// SentencePiece-style BPE as llama.cpp runs it for GGUF vocabularies with `tokenizer.ggml.model = llama`
/// (Llama 2, Gemma): spaces become `▁`, the text starts as UTF-8 characters, and the adjacent pair whose
/// concatenation is the highest-scoring token is merged (leftmost on ties) until none is a token;
/// characters that never form a token are emitted as byte tokens `<0xXX>`.
struct SentencePieceBPE: Sendable {
    /// Token text (UTF-8) → id, every token type.
    let tokenIDs: [[UInt8]: Int32]
    let scores: [Float]
    /// Id of `<0xXX>` for each byte (or of the single-byte token), -1 if none.
    let byteTokens: [Int32]

    /// Appends the tokens of `text`, whose spaces are already `▁`.
    func encode(_ text: [UInt8], into output: inout [Int32]) {
        if text.isEmpty { return }
        // Symbols: byte ranges of UTF-8 characters, linked left to right.
        var starts: [Int] = []
        var lengths: [Int] = []
        var offset = 0
        while offset < text.count {
            let lead = text[offset]
            let length = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1
            let n = min(length, text.count - offset)
            starts.append(offset)
            lengths.append(n)
            offset += n
        }
        let count = starts.count
        var previous = Array(-1..<(count - 1))
        var next = Array(1...count)
        next[count - 1] = -1

        var queue = BigramQueue()
        func tryAdd(_ left: Int, _ right: Int) {
            guard left >= 0, right >= 0 else { return }
            let slice = Array(text[starts[left]..<(starts[left] + lengths[left] + lengths[right])])
            guard let id = tokenIDs[slice] else { return }
            queue.push(Bigram(score: scores[Int(id)], left: left, right: right, size: slice.count))
        }
        for i in 1..<max(count, 1) { tryAdd(i - 1, i) }
        while let bigram = queue.pop() {
            let left = bigram.left
            let right = bigram.right
            guard lengths[left] > 0, lengths[right] > 0, lengths[left] + lengths[right] == bigram.size else { continue }
            lengths[left] += lengths[right]
            lengths[right] = 0
            next[left] = next[right]
            if next[right] >= 0 { previous[next[right]] = left }
            tryAdd(previous[left], left)
            tryAdd(left, next[left])
        }
        var i = 0
        while i != -1 {
            let piece = Array(text[starts[i]..<(starts[i] + lengths[i])])
            if let id = tokenIDs[piece] {
                output.append(id)
            } else {
                for byte in piece where byteTokens[Int(byte)] >= 0 { output.append(byteTokens[Int(byte)]) }
            }
            i = next[i]
        }
    }
}

/// A candidate merge: the highest score first, then the leftmost (llama.cpp's `llm_bigram_spm` order).
struct Bigram {
    var score: Float
    var left: Int
    var right: Int
    var size: Int

    func precedes(_ other: Bigram) -> Bool {
        score > other.score || (score == other.score && left < other.left)
    }
}

/// A binary max-heap of bigrams.
struct BigramQueue {
    private var heap: [Bigram] = []

    mutating func push(_ item: Bigram) {
        heap.append(item)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].precedes(heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> Bigram? {
        guard let top = heap.first else { return nil }
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var best = parent
                if left < heap.count && heap[left].precedes(heap[best]) { best = left }
                if right < heap.count && heap[right].precedes(heap[best]) { best = right }
                if best == parent { break }
                heap.swapAt(parent, best)
                parent = best
            }
        }
        return top
    }
}
