import Foundation
import Testing
import WhaleCore
import WhaleFormats

/// The GGUF reader against gguf-py's reading of files gguf-py wrote (scripts/make-format-fixtures.py).
@Suite struct GGUFFileTests {
    /// gguf-py's name of a value type, as expected.json spells it.
    static func typeName(_ type: GGUFValueType) -> String {
        switch type {
        case .uint8: "uint8"
        case .int8: "int8"
        case .uint16: "uint16"
        case .int16: "int16"
        case .uint32: "uint32"
        case .int32: "int32"
        case .float32: "float32"
        case .bool: "bool"
        case .string: "string"
        case .array: "array"
        case .uint64: "uint64"
        case .int64: "int64"
        case .float64: "float64"
        }
    }

    /// The type chain of a value (`["array", "array", "int32"]`), as gguf-py reports it.
    static func typeChain(_ value: GGUFValue) -> [String] {
        guard case .array(let elementType, let values) = value else { return [typeName(value.type)] }
        if elementType == .array, let first = values.first { return ["array"] + typeChain(first) }
        return ["array", typeName(elementType)]
    }

    /// Whether `value` equals gguf-py's JSON rendering of it.
    static func matches(_ value: GGUFValue, _ expected: JSONValue) -> Bool {
        switch value {
        case .string(let s): return expected.string == s
        case .bool(let b): return expected.bool == b
        case .float32(let f): return expected.double == Double(f)
        case .float64(let d): return expected.double == d
        case .uint64(let u): return expected == .number(Double(u)) || expected.integer.map { UInt64($0) == u } == true
        case .array(let elementType, let values):
            // gguf-py flattens arrays of arrays.
            let items = elementType == .array ? flattened(value) : values
            guard let array = expected.array, array.count == items.count else { return false }
            return zip(items, array).allSatisfy { matches($0, $1) }
        default: return value.int != nil && expected.integer == value.int
        }
    }

    static func flattened(_ value: GGUFValue) -> [GGUFValue] {
        guard case .array(_, let values) = value else { return [value] }
        return values.flatMap(flattened)
    }

    @Test(arguments: ["all-types.gguf", "no-tensors.gguf"])
    func readsLikeGGUFPy(name: String) throws {
        let file = try GGUFFile(path: Fixtures.path("gguf/" + name))
        let expected = try #require(try Fixtures.json("gguf/expected.json").object?[name]?.object)
        #expect(Int(file.version) == expected["version"]?.integer)
        #expect(file.alignment == expected["alignment"]?.integer)
        #expect(file.dataOffset == expected["data_offset"]?.integer)
        let fields = try #require(expected["fields"]?.array)
        #expect(file.metadataKeys == fields.compactMap { $0.object?["key"]?.string })
        for field in fields {
            let object = try #require(field.object)
            let key = try #require(object["key"]?.string)
            let value = try #require(file.metadata[key], "missing \(key)")
            #expect(Self.typeChain(value) == object["types"]?.array?.compactMap(\.string), "\(key)")
            #expect(Self.matches(value, object["value"]!), "\(key): \(value) vs \(object["value"]!)")
        }
        try expectTensors(file.tensors, match: expected["tensors"])
    }

    func expectTensors(_ tensors: [TensorInfo], match expected: JSONValue?) throws {
        let list = try #require(expected?.array)
        #expect(tensors.count == list.count)
        for (tensor, entry) in zip(tensors, list) {
            let e = try #require(entry.object)
            #expect(tensor.name == e["name"]?.string)
            #expect(tensor.type.rawValue == e["type"]?.string)
            #expect(tensor.shape == e["shape"]?.array?.compactMap(\.integer))
            #expect(tensor.offset == e["offset"]?.integer, "\(tensor.name)")
            #expect(tensor.byteCount == e["bytes"]?.integer)
            #expect(tensor.elementCount == e["elements"]?.integer)
        }
    }

    @Test func tensorDataIsReadInPlace() throws {
        let file = try GGUFFile(path: Fixtures.path("gguf/all-types.gguf"))
        let tensor = try #require(file.tensors.first { $0.name == "cube" })
        #expect(tensor.shape == [2, 3, 4])
        let data = file.data(of: tensor)
        #expect(data.count == 24 * 4)
        #expect(data.baseAddress == file.mapped.bytes.baseAddress! + tensor.offset)
        #expect(tensor.offset % 64 == 0)
    }

    @Test func splitModelOpensFromFirstShard() throws {
        let model = try GGUFModel(path: Fixtures.path("gguf/split-00001-of-00003.gguf"))
        #expect(model.files.count == 3)
        #expect(model.tensors.map(\.name) == ["t0", "t1", "t2", "t3", "t4"])
        #expect(model.tensors.map(\.fileIndex) == [0, 0, 1, 1, 2])
        #expect(model.metadata["general.name"]?.string == "split")
        let expected = try Fixtures.json("gguf/expected.json").object!
        for (index, file) in model.files.enumerated() {
            let name = "split-0000\(index + 1)-of-00003.gguf"
            try expectTensors(file.tensors, match: expected[name]?.object?["tensors"])
        }
        // t3 is arange(32) + 3 as f32, [4, 8].
        let t3 = try #require(model.tensor(named: "t3"))
        #expect(t3.shape == [4, 8])
        let values = model.data(of: t3).withMemoryRebound(to: Float.self) { Array($0) }
        #expect(values == (0..<32).map { Float($0 + 3) })
    }

    @Test func laterShardIsRefusedNamingTheFirst() throws {
        let error = expectWhaleError(.invalidArgument) {
            _ = try GGUFModel(path: Fixtures.path("gguf/split-00002-of-00003.gguf"))
        }
        #expect(error?.hint?.contains("split-00001-of-00003.gguf") == true)
    }

    /// A file that merely looks like a shard by name but holds no `split.count` is a whole model.
    @Test func shardLikeNameWithoutSplitMetadata() throws {
        let directory = try TemporaryDirectory()
        try directory.copy("gguf/all-types.gguf", as: "model-00002-of-00003.gguf")
        let model = try GGUFModel(path: directory.path + "/model-00002-of-00003.gguf")
        #expect(model.files.count == 1)
        #expect(model.tensors.count == 5)
    }

    @Test func missingShardIsNamed() throws {
        let directory = try TemporaryDirectory()
        try directory.copy("gguf/split-00001-of-00003.gguf")
        try directory.copy("gguf/split-00002-of-00003.gguf")
        let error = expectWhaleError(.fileNotFound) {
            _ = try GGUFModel(path: directory.path + "/split-00001-of-00003.gguf")
        }
        #expect(error?.file?.hasSuffix("split-00003-of-00003.gguf") == true)
    }

    @Test func builderRoundTripsEveryValueType() throws {
        let values: [(String, GGUFValue)] = [
            ("u8", .uint8(255)), ("i8", .int8(-128)), ("u16", .uint16(65535)), ("i16", .int16(-32768)),
            ("u32", .uint32(.max)), ("i32", .int32(.min)), ("f32", .float32(-0.0)), ("bool", .bool(false)),
            ("string", .string("")), ("u64", .uint64(.max)), ("i64", .int64(.min)), ("f64", .float64(.infinity)),
            ("empty", .array(elementType: .string, [])),
            (
                "nested",
                .array(elementType: .array, [.array(elementType: .int8, [.int8(1)]), .array(elementType: .int8, [])])
            ),
            (
                "deep",
                .array(
                    elementType: .array,
                    [.array(elementType: .array, [.array(elementType: .float64, [.float64(2.5)])])])
            ),
        ]
        var b = GGUFBuilder()
        b.header(version: 2, tensors: 0, metadata: UInt64(values.count))
        for (key, value) in values { b.keyValue(key, value) }
        let file = try GGUFFile(mapped: MappedFile(copying: b.bytes, path: "roundtrip.gguf"))
        #expect(file.version == 2)
        #expect(file.metadataKeys == values.map(\.0))
        for (key, value) in values { #expect(file.metadata[key] == value, "\(key)") }
        #expect(file.tensors.isEmpty)
    }
}
