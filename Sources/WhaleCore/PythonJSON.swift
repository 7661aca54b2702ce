extension JSONValue {
    /// JSON text exactly as Python's `json.dumps(value, ensure_ascii=False, indent=indent)` writes it — what
    /// chat templates' `tojson` filter prints (transformers), so prompts with tool definitions and tool-call
    /// arguments render byte for byte as the model was trained on: `", "` and `": "` between items without an
    /// indent, `","` and a newline plus `indent` spaces per level with one; non-ASCII characters as they are;
    /// floats as Python's `repr` (`1e+16`, `1e-05`, `2.5`, `3.0`).
    public func pythonJSON(indent: Int? = nil) -> String {
        var out = ""
        writePython(to: &out, indent: indent, level: 0)
        return out
    }

    private func writePython(to out: inout String, indent: Int?, level: Int) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .integer(let i): out += String(i)
        case .number(let d): out += Self.pythonFloat(d)
        case .string(let s): Self.writeString(s, to: &out, shortControlEscapes: true)
        case .array(let values):
            guard !values.isEmpty else {
                out += "[]"
                return
            }
            out += "["
            for (index, value) in values.enumerated() {
                if index > 0 { out += indent == nil ? ", " : "," }
                Self.newline(&out, indent: indent, level: level + 1)
                value.writePython(to: &out, indent: indent, level: level + 1)
            }
            Self.newline(&out, indent: indent, level: level)
            out += "]"
        case .object(let object):
            guard object.count > 0 else {
                out += "{}"
                return
            }
            out += "{"
            for (index, key) in object.keys.enumerated() {
                if index > 0 { out += indent == nil ? ", " : "," }
                Self.newline(&out, indent: indent, level: level + 1)
                Self.writeString(key, to: &out, shortControlEscapes: true)
                out += ": "
                object[key]!.writePython(to: &out, indent: indent, level: level + 1)
            }
            Self.newline(&out, indent: indent, level: level)
            out += "}"
        }
    }

    private static func newline(_ out: inout String, indent: Int?, level: Int) {
        guard let indent else { return }
        out += "\n" + String(repeating: " ", count: indent * level)
    }

    /// Python's `repr(float)`: the shortest text that reads back as the same double (as Swift's), written in
    /// Python's notation — `inf`/`nan` as `Infinity`/`NaN` (json.dumps), a `.0` on integral values below
    /// 1e16, an exponent of at least two digits with its sign.
    static func pythonFloat(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value < 0 ? "-Infinity" : "Infinity" }
        let text = "\(value)"  // Swift: "1e+16", "1e-05", "2.5", "3.0", "5e-324"
        guard let e = text.firstIndex(of: "e") else { return text }
        var mantissa = String(text[..<e])
        if mantissa.hasSuffix(".0") { mantissa.removeLast(2) }
        var exponent = String(text[text.index(after: e)...])
        let sign = exponent.first == "-" ? "-" : "+"
        exponent.removeAll { $0 == "+" || $0 == "-" }
        if exponent.count < 2 { exponent = "0" + exponent }
        return mantissa + "e" + sign + exponent
    }
}
