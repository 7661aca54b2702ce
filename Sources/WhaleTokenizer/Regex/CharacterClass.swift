/// A set of code points a pattern can consume in one step: literal ranges, Unicode categories, and
/// negated categories (`\S`, `\P{L}` inside brackets), optionally negated as a whole (`[^...]`).
struct CharacterClass: Sendable, Hashable {
    var ranges: [ClosedRange<UInt32>] = []
    /// Matches when the code point has any of these flags.
    var anyOf: UnicodeFlags = []
    /// Matches when the code point lacks all flags of one of these sets (`\S` is "lacks whitespace").
    var lacking: [UnicodeFlags] = []
    var negated = false
    /// Membership of the 128 ASCII code points, precomputed by `finalize()` for the hot path.
    private(set) var asciiLow: UInt64 = 0
    private(set) var asciiHigh: UInt64 = 0

    static func single(_ value: UInt32) -> CharacterClass { CharacterClass(ranges: [value...value]) }
    static func flags(_ flags: UnicodeFlags) -> CharacterClass { CharacterClass(anyOf: flags) }

    /// Membership by the class's rules, without the ASCII table.
    func computeContains(_ value: UInt32, _ flags: UnicodeFlags) -> Bool {
        var hit = !anyOf.intersection(flags).isEmpty
        if !hit {
            for set in lacking where set.intersection(flags).isEmpty {
                hit = true
                break
            }
        }
        if !hit {
            for range in ranges where range.contains(value) {
                hit = true
                break
            }
        }
        return hit != negated
    }

    mutating func finalize() {
        asciiLow = 0
        asciiHigh = 0
        for value in UInt32(0)..<128 where computeContains(value, UnicodeFlags.of(value)) {
            if value < 64 { asciiLow |= 1 << UInt64(value) } else { asciiHigh |= 1 << UInt64(value - 64) }
        }
    }

    @inline(__always)
    func contains(_ value: UInt32, _ flags: UInt8) -> Bool {
        if value < 64 { return asciiLow & (1 << UInt64(value)) != 0 }
        if value < 128 { return asciiHigh & (1 << UInt64(value &- 64)) != 0 }
        return computeContains(value, UnicodeFlags(rawValue: flags))
    }
}
