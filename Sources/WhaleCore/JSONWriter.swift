extension JSONValue {
    /// Compact JSON text (keys in the object's order). `pretty` indents by two spaces.
    public func serialized(pretty: Bool = false) -> String {
        var out = ""
        write(to: &out, pretty: pretty, indent: 0)
        return out
    }

    private func write(to out: inout String, pretty: Bool, indent: Int) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .integer(let i): out += String(i)
        case .number(let d):
            if d.rounded() == d && abs(d) < 1e15 { out += String(Int64(d)) } else { out += "\(d)" }
        case .string(let s): JSONValue.writeString(s, to: &out)
        case .array(let values):
            if values.isEmpty {
                out += "[]"
                return
            }
            // Pretty output keeps arrays of scalars (shapes, token ids) on one line.
            let breakLines = pretty && values.contains { $0.array != nil || $0.object != nil }
            out += "["
            for (index, value) in values.enumerated() {
                if index > 0 { out += pretty && !breakLines ? ", " : "," }
                if breakLines { out += "\n" + String(repeating: " ", count: indent + 2) }
                value.write(to: &out, pretty: pretty, indent: indent + 2)
            }
            if breakLines { out += "\n" + String(repeating: " ", count: indent) }
            out += "]"
        case .object(let object):
            if object.count == 0 {
                out += "{}"
                return
            }
            out += "{"
            for (index, key) in object.keys.enumerated() {
                if index > 0 { out += "," }
                if pretty { out += "\n" + String(repeating: " ", count: indent + 2) }
                JSONValue.writeString(key, to: &out)
                out += pretty ? ": " : ":"
                object[key]!.write(to: &out, pretty: pretty, indent: indent + 2)
            }
            if pretty { out += "\n" + String(repeating: " ", count: indent) }
            out += "}"
        }
    }

    /// A JSON string literal. `shortControlEscapes`: `\b` and `\f` as Python's json.dumps writes them, not
    /// `\u0008` / `\u000c`.
    static func writeString(_ s: String, to out: inout String, shortControlEscapes: Bool = false) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}" where shortControlEscapes: out += "\\b"
            case "\u{0C}" where shortControlEscapes: out += "\\f"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }
}

extension JSONObject: ExpressibleByDictionaryLiteral {
    /// An object literal, keys in the order written; later duplicates are ignored.
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self.init()
        for (key, value) in elements { _ = insert(key, value) }
    }

    /// Builds an object from pairs in order; later duplicates are ignored.
    public init(_ pairs: KeyValuePairs<String, JSONValue>) {
        self.init()
        for (key, value) in pairs { _ = insert(key, value) }
    }

    /// Sets `value` for `key`, appending the key if new.
    public mutating func set(_ key: String, _ value: JSONValue) {
        if !insert(key, value) { values[key] = value }
    }
}
