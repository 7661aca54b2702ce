import WhaleCore
import WhaleModels

/// What every stage needs to know about one forward pass besides the residual stream: per sequence, which
/// cache (an id rank 0 gave it), its capacity, the position its tokens start at, the tokens, the logit rows
/// rank 0 wants, and the context shifts rank 0's cache went through since the last pass; and which
/// sequences are gone. The workers' caches follow rank 0's from these alone: a cache longer than the
/// position is cut back to it (a truncation on rank 0), a shift is replayed.
///
/// On the wire: `[header length n][n Int64 header][hidden floats]`, little-endian as the machines are.
struct PassMessage: Equatable {
    struct Sequence: Equatable {
        var id: Int
        var capacity: Int
        var position: Int
        var logits: LogitRows
        var tokens: [Int]
        var discards: [Range<Int>]
    }

    var released: [Int]
    var sequences: [Sequence]

    var tokenCount: Int { sequences.reduce(0) { $0 + $1.tokens.count } }

    /// The logit rows the last stage returns, in all.
    var logitRows: Int {
        sequences.reduce(0) { $0 + $1.logits.rows(start: 0, count: $1.tokens.count).count }
    }

    func header() -> [Int64] {
        var words: [Int64] = [Int64(released.count)] + released.map { Int64($0) }
        words.append(Int64(sequences.count))
        for s in sequences {
            let kind: Int64 =
                switch s.logits {
                case .none: 0
                case .last: 1
                case .all: 2
                }
            words += [Int64(s.id), Int64(s.capacity), Int64(s.position), kind, Int64(s.tokens.count)]
            words += s.tokens.map { Int64($0) }
            words.append(Int64(s.discards.count))
            for range in s.discards { words += [Int64(range.lowerBound), Int64(range.upperBound)] }
        }
        return words
    }

    /// The message with `hidden` (`[tokens, hidden size]`) after the header.
    func encode(hidden: UnsafeBufferPointer<Float>) -> [UInt8] {
        let words = header()
        var bytes = [UInt8](repeating: 0, count: 8 + words.count * 8 + hidden.count * 4)
        bytes.withUnsafeMutableBytes { buffer in
            buffer.storeBytes(of: Int64(words.count).littleEndian, as: Int64.self)
            for (i, word) in words.enumerated() {
                buffer.storeBytes(of: word.littleEndian, toByteOffset: 8 + i * 8, as: Int64.self)
            }
            if hidden.count > 0 {
                (buffer.baseAddress! + 8 + words.count * 8).copyMemory(
                    from: hidden.baseAddress!, byteCount: hidden.count * 4)
            }
        }
        return bytes
    }

    /// The message of `bytes` and where its hidden floats start.
    static func decode(_ bytes: [UInt8]) throws -> (PassMessage, hiddenOffset: Int) {
        func bad(_ what: String) -> WhaleError {
            WhaleError(
                .distributedError, field: "pass message", what,
                hint: "every rank must run the same whale version with the same arguments")
        }
        return try bytes.withUnsafeBytes { buffer in
            guard buffer.count >= 8 else { throw bad("\(buffer.count) bytes, shorter than its header length") }
            let n = Int(Int64(littleEndian: buffer.loadUnaligned(as: Int64.self)))
            guard n >= 2, n <= (buffer.count - 8) / 8 else {
                throw bad("header of \(n) words in \(buffer.count) bytes")
            }
            var i = 0
            func next() throws -> Int {
                guard i < n else { throw bad("header ends early") }
                let word = Int64(littleEndian: buffer.loadUnaligned(fromByteOffset: 8 + i * 8, as: Int64.self))
                i += 1
                return Int(word)
            }
            func list(_ count: Int) throws -> [Int] {
                guard count >= 0, count <= n - i else { throw bad("a list of \(count) in a header of \(n)") }
                return try (0..<count).map { _ in try next() }
            }
            let released = try list(try next())
            let count = try next()
            guard count >= 0, count <= n else { throw bad("\(count) sequences") }
            var sequences: [Sequence] = []
            for _ in 0..<count {
                let id = try next()
                let capacity = try next()
                let position = try next()
                let kind = try next()
                let logits: LogitRows
                switch kind {
                case 0: logits = .none
                case 1: logits = .last
                case 2: logits = .all
                default: throw bad("logit rows kind \(kind)")
                }
                let tokens = try list(try next())
                let discardCount = try next()
                guard discardCount >= 0, discardCount <= n else { throw bad("\(discardCount) context shifts") }
                var discards: [Range<Int>] = []
                for _ in 0..<discardCount {
                    let lower = try next()
                    let upper = try next()
                    guard lower >= 0, upper >= lower else { throw bad("context shift \(lower)..<\(upper)") }
                    discards.append(lower..<upper)
                }
                guard capacity >= 0, position >= 0 else { throw bad("capacity \(capacity), position \(position)") }
                sequences.append(
                    Sequence(
                        id: id, capacity: capacity, position: position, logits: logits, tokens: tokens,
                        discards: discards))
            }
            guard i == n else { throw bad("\(n - i) words left after the header") }
            let message = PassMessage(released: released, sequences: sequences)
            let offset = 8 + n * 8
            guard (buffer.count - offset) % 4 == 0 else {
                throw bad("a residual stream of \(buffer.count - offset) bytes")
            }
            return (message, offset)
        }
    }
}
