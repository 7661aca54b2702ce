import Testing
import WhaleCore

@Suite struct JSONTests {
    @Test func parsesEveryKind() throws {
        let value = try JSONValue.parse(#" {"a": [1, -2.5, 3e2, true, false, null], "b": {"c": "d"}, "e": ""} "#)
        let object = try #require(value.object)
        #expect(object.keys == ["a", "b", "e"])
        #expect(object["a"] == .array([.integer(1), .number(-2.5), .number(300), .bool(true), .bool(false), .null]))
        #expect(object["b"]?.object?["c"] == .string("d"))
        #expect(object["e"] == .string(""))
    }

    @Test func integersStayExact() throws {
        #expect(try JSONValue.parse("9007199254740993") == .integer(9_007_199_254_740_993))
        #expect(try JSONValue.parse("-9223372036854775808") == .integer(.min))
        // Past Int64: a Double, never a wrapped integer.
        #expect(try JSONValue.parse("18446744073709551616").integer == nil)
        #expect(try JSONValue.parse("2.0").integer == 2)
        #expect(try JSONValue.parse("2.5").integer == nil)
    }

    @Test func decodesEscapes() throws {
        let value = try JSONValue.parse(#""a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\udc0b""#)
        #expect(value == .string("a\"b\\c/d\u{8}\u{c}\n\r\té🐋"))
    }

    @Test func rawUTF8Passes() throws {
        #expect(try JSONValue.parse("\"世界 ü\"") == .string("世界 ü"))
    }

    @Test(arguments: [
        "", " ", "{", "[1,]", "{\"a\" 1}", "{\"a\":1,}", "[1 2]", "01", "-", "1.", ".5", "1e", "+1", "tru", "nul",
        "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"", "\"\\ud800\\u0041\"", "\"\\udc00\"", "\"a\u{1}b\"",
        "{\"a\":1,\"a\":2}", "[] []", "1e999", "{1:2}",
    ])
    func rejectsInvalid(text: String) {
        do {
            _ = try JSONValue.parse(text)
            Issue.record("accepted \(text.debugDescription)")
        } catch let error as WhaleError {
            #expect(error.code == .invalidJSON)
        } catch {
            Issue.record("\(error)")
        }
    }

    @Test func rejectsInvalidUTF8() {
        let bytes: [UInt8] = [0x22, 0xFF, 0x22]
        #expect(throws: WhaleError.self) { try bytes.withUnsafeBytes { try JSONValue.parse($0) } }
    }

    /// Deep nesting is refused with an error instead of overflowing the stack.
    @Test func boundsDepth() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: WhaleError.self) { try JSONValue.parse(deep) }
        let fine = String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        #expect((try? JSONValue.parse(fine)) != nil)
    }

    @Test func errorNamesFileAndOffset() {
        do {
            _ = try JSONValue.parse("{\"a\": ?}", file: "config.json")
        } catch let error as WhaleError {
            #expect(error.file == "config.json")
            #expect(error.problem.contains("byte 6"))
        } catch {
            Issue.record("\(error)")
        }
    }

    @Test func serializationRoundTrips() throws {
        let text = #"{"s":"q\"\\\n\u0001é","i":-7,"d":0.5,"a":[1,[2]],"o":{},"e":[],"n":null,"b":true}"#
        let value = try JSONValue.parse(text)
        #expect(try JSONValue.parse(value.serialized()) == value)
        #expect(try JSONValue.parse(value.serialized(pretty: true)) == value)
        #expect(value.serialized() == text)
    }

    @Test func fieldsGiveTypedErrors() throws {
        let fields = JSONFields(
            try JSONValue.parse(#"{"n": "x", "eos": [1, 2], "one": 3, "nothing": null}"#).object!, file: "c.json")
        #expect(try fields.ints("eos") == [1, 2])
        #expect(try fields.ints("one") == [3])
        #expect(try fields.int("nothing") == nil)
        do {
            _ = try fields.int("n")
            Issue.record("no error")
        } catch let error as WhaleError {
            #expect(error.code == .typeMismatch)
            #expect(error.field == "n")
            #expect(error.description == "c.json: n: expected an integer, found a string")
        }
    }
}
