import WhaleCore

/// The regular expressions tokenizers use to pre-split text, compiled for a small backtracking machine
/// over Unicode scalars.
///
/// Supported: literals and escapes, `[...]` classes with ranges and negation, `\s \S`,
/// `\p{L|N|P|S|M|Z}` and `\P{...}`, groups `(...)`, `(?:...)`, `(?i:...)` (ASCII case folding), lookahead
/// `(?=...)` / `(?!...)`, `^`, `$`, `.`, and greedy or lazy `? * + {n} {n,} {n,m}`. Matching is leftmost
/// first, like Oniguruma (Hugging Face `tokenizers`) and std::regex (llama.cpp). Anything else is an
/// error naming the pattern, so a tokenizer never silently splits differently from its reference.
struct PatternRegex: Sendable {
    enum Instruction: Sendable, Hashable {
        case consume(Int)
        case split(Int, Int)
        case jump(Int)
        case assertStart
        case assertEnd
        /// Run the sub-program after this instruction (ending in `.succeed`) at the current position;
        /// continue at `next` if it matched (or did not, for a negative lookahead).
        case lookahead(negative: Bool, next: Int)
        case succeed
        case match
    }

    let pattern: String
    let program: [Instruction]
    let classes: [CharacterClass]

    init(_ pattern: String) throws {
        self.pattern = pattern
        var parser = RegexParser(pattern: pattern)
        let node = try parser.parseAll()
        var compiler = RegexCompiler()
        try compiler.emit(node, pattern: pattern)
        compiler.program.append(.match)
        program = compiler.program
        classes = compiler.classes.map {
            var copy = $0
            copy.finalize()
            return copy
        }
    }

    /// Non-overlapping matches in `range`, left to right, as Oniguruma's `find_iter` reports them.
    /// The range's bounds are the text's bounds: `$` and lookaheads do not see past them.
    func matches(
        in text: UnsafeBufferPointer<UInt32>, flags: UnsafeBufferPointer<UInt8>, range: Range<Int>,
        stack: inout [Int]
    ) -> [Range<Int>] {
        var result: [Range<Int>] = []
        var position = range.lowerBound
        while position < range.upperBound {
            if let end = run(0, at: position, text, flags, range, &stack) {
                result.append(position..<end)
                position = end > position ? end : position + 1
            } else {
                position += 1
            }
        }
        return result
    }

    /// Runs the program from instruction `start` at `position`; the end of the match, or nil.
    private func run(
        _ start: Int, at position: Int, _ text: UnsafeBufferPointer<UInt32>, _ flags: UnsafeBufferPointer<UInt8>,
        _ range: Range<Int>, _ stack: inout [Int]
    ) -> Int? {
        let base = stack.count
        defer { stack.removeSubrange(base...) }
        var pc = start
        var pos = position
        while true {
            switch program[pc] {
            case .consume(let index):
                if pos < range.upperBound && classes[index].contains(text[pos], flags[pos]) {
                    pos += 1
                    pc += 1
                    continue
                }
            case .split(let first, let second):
                stack.append(second)
                stack.append(pos)
                pc = first
                continue
            case .jump(let target):
                pc = target
                continue
            case .assertStart:
                if pos == range.lowerBound {
                    pc += 1
                    continue
                }
            case .assertEnd:
                if pos == range.upperBound {
                    pc += 1
                    continue
                }
            case .lookahead(let negative, let next):
                let matched = run(pc + 1, at: pos, text, flags, range, &stack) != nil
                if matched != negative {
                    pc = next
                    continue
                }
            case .succeed, .match:
                return pos
            }
            // Failure: resume at the most recent choice point of this run.
            guard stack.count > base else { return nil }
            pos = stack.removeLast()
            pc = stack.removeLast()
        }
    }
}

// MARK: - Parsing

indirect enum RegexNode {
    case characterClass(CharacterClass)
    case sequence([RegexNode])
    case alternation([RegexNode])
    case repeated(RegexNode, min: Int, max: Int?, greedy: Bool)
    case lookahead(RegexNode, negative: Bool)
    case start
    case end

    var canMatchEmpty: Bool {
        switch self {
        case .characterClass: false
        case .sequence(let nodes): nodes.allSatisfy(\.canMatchEmpty)
        case .alternation(let nodes): nodes.contains(where: \.canMatchEmpty)
        case .repeated(let node, let min, _, _): min == 0 || node.canMatchEmpty
        case .lookahead, .start, .end: true
        }
    }
}

struct RegexParser {
    let pattern: String
    let scalars: [Unicode.Scalar]
    var index = 0
    var caseInsensitive = false

    init(pattern: String) {
        self.pattern = pattern
        scalars = Array(pattern.unicodeScalars)
    }

    func error(_ problem: String) -> WhaleError {
        WhaleError(
            .invalidValue, field: "pre-tokenizer pattern",
            "\(problem) at character \(index) of \(pattern.debugDescription)",
            hint: "this pattern uses regex syntax BlueWhale does not support; please report it")
    }

    var current: Unicode.Scalar? { index < scalars.count ? scalars[index] : nil }

    mutating func parseAll() throws -> RegexNode {
        let node = try parseAlternation()
        guard index == scalars.count else { throw error("unbalanced ')'") }
        return node
    }

    mutating func parseAlternation() throws -> RegexNode {
        var branches = [try parseSequence()]
        while current == "|" {
            index += 1
            branches.append(try parseSequence())
        }
        return branches.count == 1 ? branches[0] : .alternation(branches)
    }

    mutating func parseSequence() throws -> RegexNode {
        var items: [RegexNode] = []
        while let c = current, c != "|", c != ")" {
            var atom = try parseAtom()
            atom = try parseQuantifier(atom)
            items.append(atom)
        }
        return items.count == 1 ? items[0] : .sequence(items)
    }

    mutating func parseNumber() -> Int? {
        var value: Int?
        while let c = current, let digit = c.properties.numericType == .decimal ? Int(String(c)) : nil {
            value = (value ?? 0) * 10 + digit
            guard value! < 100_000 else { return nil }
            index += 1
        }
        return value
    }

    mutating func parseQuantifier(_ atom: RegexNode) throws -> RegexNode {
        var node = atom
        while let c = current {
            var min = 0
            var max: Int? = nil
            switch c {
            case "?": max = 1
            case "*": break
            case "+": min = 1
            case "{":
                let save = index
                index += 1
                guard let low = parseNumber() else {
                    index = save
                    return node  // a literal '{' (Oniguruma treats a malformed interval literally)
                }
                min = low
                max = low
                if current == "," {
                    index += 1
                    max = parseNumber()
                }
                guard current == "}" else { throw error("malformed {n,m} quantifier") }
                if let max, max < min { throw error("{n,m} with m < n") }
            default: return node
            }
            index += 1
            var greedy = true
            if current == "?" {
                greedy = false
                index += 1
            } else if current == "+" {
                throw error("possessive quantifiers are not supported")
            }
            if max == nil && node.canMatchEmpty { throw error("a repeated group that can match nothing") }
            node = .repeated(node, min: min, max: max, greedy: greedy)
        }
        return node
    }

    mutating func parseAtom() throws -> RegexNode {
        guard let c = current else { throw error("unexpected end of pattern") }
        index += 1
        switch c {
        case "(":
            let savedCase = caseInsensitive
            defer { caseInsensitive = savedCase }
            var lookahead: Bool? = nil
            if current == "?" {
                index += 1
                switch current {
                case ":": index += 1
                case "=": lookahead = false
                case "!": lookahead = true
                case "i":
                    index += 1
                    guard current == ":" else { throw error("only the (?i:...) flag group is supported") }
                    index += 1
                    caseInsensitive = true
                default: throw error("unsupported group syntax")
                }
                if lookahead != nil { index += 1 }
            }
            let inner = try parseAlternation()
            guard current == ")" else { throw error("missing ')'") }
            index += 1
            if let negative = lookahead { return .lookahead(inner, negative: negative) }
            return inner
        case "[": return .characterClass(try parseBracket())
        case "\\": return .characterClass(try parseEscape(inBracket: false))
        case ".":
            return .characterClass(CharacterClass(ranges: [0x0A...0x0A], negated: true))
        case "^": return .start
        case "$": return .end
        case ")", "|", "*", "+", "?": throw error("unexpected '\(c)'")
        default: return .characterClass(literal(c.value))
        }
    }

    func literal(_ value: UInt32) -> CharacterClass {
        var cls = CharacterClass.single(value)
        if caseInsensitive, let other = swapASCIICase(value) { cls.ranges.append(other...other) }
        return cls
    }

    func swapASCIICase(_ value: UInt32) -> UInt32? {
        switch value {
        case 0x41...0x5A: value + 32
        case 0x61...0x7A: value - 32
        default: nil
        }
    }

    mutating func parseHex(_ digits: Int) throws -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<digits {
            guard let c = current, let digit = c.properties.isASCIIHexDigit ? UInt32(String(c), radix: 16) : nil
            else { throw error("bad hex escape") }
            value = value << 4 | digit
            index += 1
        }
        return value
    }

    /// After a backslash. Returns the class the escape stands for.
    mutating func parseEscape(inBracket: Bool) throws -> CharacterClass {
        guard let c = current else { throw error("pattern ends with '\\'") }
        index += 1
        switch c {
        case "s": return .flags(.whitespace)
        case "S": return CharacterClass(lacking: [.whitespace])
        case "d", "D", "w", "W":
            // Oniguruma's \d is Nd only and \w has its own definition; no pattern we load uses them, so
            // refuse rather than approximate.
            throw error("unsupported escape '\\\(c)'")
        case "p", "P":
            guard current == "{" else { throw error("expected '{' after \\p") }
            index += 1
            var name = ""
            while let n = current, n != "}" {
                name.unicodeScalars.append(n)
                index += 1
            }
            guard current == "}" else { throw error("unterminated \\p{...}") }
            index += 1
            let flags: UnicodeFlags
            switch name {
            case "L": flags = .letter
            case "N": flags = .number
            case "P": flags = .punctuation
            case "S": flags = .symbol
            case "M": flags = .mark
            case "Z": flags = .separator
            default: throw error("unsupported Unicode property \\p{\(name)}")
            }
            return c == "p" ? .flags(flags) : CharacterClass(lacking: [flags])
        case "n": return .single(0x0A)
        case "r": return .single(0x0D)
        case "t": return .single(0x09)
        case "f": return .single(0x0C)
        case "v": return .single(0x0B)
        case "0": return .single(0)
        case "x": return literal(try parseHex(2))
        case "u": return literal(try parseHex(4))
        default:
            if c.properties.isAlphabetic || c.properties.numericType != nil {
                throw error("unsupported escape '\\\(c)'")
            }
            return literal(c.value)
        }
    }

    mutating func parseBracket() throws -> CharacterClass {
        var cls = CharacterClass()
        if current == "^" {
            cls.negated = true
            index += 1
        }
        var first = true
        while let c = current, c != "]" || first {
            first = false
            index += 1
            var item: CharacterClass
            var lowValue: UInt32?
            if c == "\\" {
                item = try parseEscape(inBracket: true)
                if item.ranges.count >= 1, item.anyOf.isEmpty, item.lacking.isEmpty, !item.negated,
                    item.ranges[0].lowerBound == item.ranges[0].upperBound
                {
                    lowValue = item.ranges[0].lowerBound
                }
            } else if c == "[" {
                throw error("nested character classes are not supported")
            } else {
                lowValue = c.value
                item = literal(c.value)
            }
            // A range `a-z` (a '-' before ']' is a literal).
            if let low = lowValue, current == "-", index + 1 < scalars.count, scalars[index + 1] != "]" {
                index += 1
                guard let highScalar = current else { throw error("unterminated range") }
                index += 1
                var high = highScalar.value
                if highScalar == "\\" {
                    let escaped = try parseEscape(inBracket: true)
                    guard escaped.ranges.count >= 1, escaped.anyOf.isEmpty, escaped.lacking.isEmpty else {
                        throw error("a class escape cannot end a range")
                    }
                    high = escaped.ranges[0].lowerBound
                }
                guard low <= high else { throw error("range out of order") }
                item = CharacterClass(ranges: [low...high])
                if caseInsensitive {
                    for (from, to) in [(UInt32(0x41), UInt32(0x5A)), (0x61, 0x7A)] {
                        let lo = Swift.max(low, from)
                        let hi = Swift.min(high, to)
                        if lo <= hi, let a = swapASCIICase(lo), let b = swapASCIICase(hi) { item.ranges.append(a...b) }
                    }
                }
            }
            guard !item.negated else { throw error("negated class inside a class") }
            cls.ranges += item.ranges
            cls.anyOf.formUnion(item.anyOf)
            cls.lacking += item.lacking
        }
        guard current == "]" else { throw error("missing ']'") }
        index += 1
        return cls
    }
}

// MARK: - Compiling

struct RegexCompiler {
    var program: [PatternRegex.Instruction] = []
    var classes: [CharacterClass] = []
    private var classIndex: [CharacterClass: Int] = [:]

    mutating func classID(_ cls: CharacterClass) -> Int {
        if let id = classIndex[cls] { return id }
        classes.append(cls)
        classIndex[cls] = classes.count - 1
        return classes.count - 1
    }

    mutating func emit(_ node: RegexNode, pattern: String) throws {
        switch node {
        case .characterClass(let cls): program.append(.consume(classID(cls)))
        case .sequence(let nodes): for n in nodes { try emit(n, pattern: pattern) }
        case .alternation(let branches):
            var jumpsToEnd: [Int] = []
            for (i, branch) in branches.enumerated() {
                if i < branches.count - 1 {
                    let split = program.count
                    program.append(.split(split + 1, -1))
                    try emit(branch, pattern: pattern)
                    jumpsToEnd.append(program.count)
                    program.append(.jump(-1))
                    program[split] = .split(split + 1, program.count)
                } else {
                    try emit(branch, pattern: pattern)
                }
            }
            for j in jumpsToEnd { program[j] = .jump(program.count) }
        case .repeated(let body, let min, let max, let greedy):
            guard min <= 1000, (max ?? 0) <= 1000 else {
                throw WhaleError(.invalidValue, field: "pre-tokenizer pattern", "repeat count over 1000 in \(pattern)")
            }
            for _ in 0..<min { try emit(body, pattern: pattern) }
            if let max {
                var exits: [Int] = []
                for _ in min..<max {
                    exits.append(program.count)
                    program.append(.split(-1, -1))
                    try emit(body, pattern: pattern)
                }
                for e in exits { program[e] = choice(e + 1, program.count, greedy: greedy) }
            } else {
                let loop = program.count
                program.append(.split(-1, -1))
                try emit(body, pattern: pattern)
                program.append(.jump(loop))
                program[loop] = choice(loop + 1, program.count, greedy: greedy)
            }
        case .lookahead(let body, let negative):
            let at = program.count
            program.append(.succeed)
            try emit(body, pattern: pattern)
            program.append(.succeed)
            program[at] = .lookahead(negative: negative, next: program.count)
        case .start: program.append(.assertStart)
        case .end: program.append(.assertEnd)
        }
    }

    private func choice(_ body: Int, _ exit: Int, greedy: Bool) -> PatternRegex.Instruction {
        greedy ? .split(body, exit) : .split(exit, body)
    }
}
