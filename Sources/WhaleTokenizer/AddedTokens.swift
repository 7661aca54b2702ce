/// Finds added and special tokens written in text, so they become single ids instead of being split.
///
/// Two references, two rules: Hugging Face `tokenizers` takes the leftmost match, longest first among
/// those starting there; llama.cpp takes each token in turn, longest token first, and splits every
/// occurrence of it out of the text still unmatched. Special (control) tokens are only looked for when
/// the caller asks; the others (HF `special: false`, GGUF user-defined) always are, in both references.
struct AddedTokenMatcher: Sendable {
    enum Rule: Sendable {
        case leftmostLongest
        case longestTokenFirst
    }

    struct Entry: Sendable {
        var bytes: [UInt8]
        var id: Int32
        var special: Bool
    }

    enum Segment: Equatable {
        case text(Range<Int>)
        case token(Int32)
    }

    let rule: Rule
    /// Entries by first byte, longest first (for `leftmostLongest`).
    private let byFirstByte: [[Entry]]
    /// All entries, longest first (for `longestTokenFirst`).
    private let longestFirst: [Entry]

    init(_ entries: [Entry], rule: Rule) {
        self.rule = rule
        let usable = entries.filter { !$0.bytes.isEmpty }
        // Longest first; equal lengths by id, so the order never depends on hashing.
        let sorted = usable.sorted { ($0.bytes.count, -Int($0.id)) > ($1.bytes.count, -Int($1.id)) }
        longestFirst = sorted
        var table = [[Entry]](repeating: [], count: 256)
        for entry in sorted { table[Int(entry.bytes[0])].append(entry) }
        byFirstByte = table
    }

    var isEmpty: Bool { longestFirst.isEmpty }

    /// Splits UTF-8 `text` into plain-text ranges and matched tokens.
    func split(_ text: [UInt8], includeSpecial: Bool) -> [Segment] {
        if longestFirst.isEmpty || text.isEmpty { return text.isEmpty ? [] : [.text(0..<text.count)] }
        switch rule {
        case .leftmostLongest: return splitLeftmostLongest(text, includeSpecial: includeSpecial)
        case .longestTokenFirst: return splitLongestTokenFirst(text, includeSpecial: includeSpecial)
        }
    }

    private func matches(_ entry: Entry, _ text: [UInt8], at position: Int) -> Bool {
        guard position + entry.bytes.count <= text.count else { return false }
        for k in 0..<entry.bytes.count where text[position + k] != entry.bytes[k] { return false }
        return true
    }

    private func splitLeftmostLongest(_ text: [UInt8], includeSpecial: Bool) -> [Segment] {
        var segments: [Segment] = []
        var plainStart = 0
        var position = 0
        while position < text.count {
            var matched: Entry?
            for entry in byFirstByte[Int(text[position])] where (includeSpecial || !entry.special) {
                if matches(entry, text, at: position) {
                    matched = entry
                    break
                }
            }
            if let matched {
                if position > plainStart { segments.append(.text(plainStart..<position)) }
                segments.append(.token(matched.id))
                position += matched.bytes.count
                plainStart = position
            } else {
                position += 1
            }
        }
        if plainStart < text.count { segments.append(.text(plainStart..<text.count)) }
        return segments
    }

    private func splitLongestTokenFirst(_ text: [UInt8], includeSpecial: Bool) -> [Segment] {
        var segments: [Segment] = [.text(0..<text.count)]
        for entry in longestFirst where includeSpecial || !entry.special {
            var next: [Segment] = []
            next.reserveCapacity(segments.count)
            for segment in segments {
                guard case .text(let range) = segment else {
                    next.append(segment)
                    continue
                }
                var start = range.lowerBound
                var position = range.lowerBound
                while position + entry.bytes.count <= range.upperBound {
                    if text[position] == entry.bytes[0] && matches(entry, text, at: position) {
                        if position > start { next.append(.text(start..<position)) }
                        next.append(.token(entry.id))
                        position += entry.bytes.count
                        start = position
                    } else {
                        position += 1
                    }
                }
                if start < range.upperBound { next.append(.text(start..<range.upperBound)) }
            }
            segments = next
        }
        return segments
    }
}
