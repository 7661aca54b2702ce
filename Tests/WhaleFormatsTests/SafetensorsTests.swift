import Foundation
import Testing
import WhaleCore
import WhaleFormats

/// The safetensors reader against the headers the reference parser reads (scripts/make-format-fixtures.py).
@Suite struct SafetensorsTests {
    func expectMatchesReference(_ model: SafetensorsModel, directory: String) throws {
        let expected = try #require(try Fixtures.json("safetensors/expected.json").object)
        for (index, file) in model.files.enumerated() {
            let relative = directory + "/" + URL(fileURLWithPath: file.path).lastPathComponent
            let entries = try #require(expected[relative]?.object, "\(relative)")
            #expect(file.tensors.count == entries.count)
            for tensor in file.tensors {
                let e = try #require(entries[tensor.name]?.object, "\(tensor.name)")
                #expect(tensor.type.rawValue == e["dtype"]?.string)
                #expect(tensor.shape == e["shape"]?.array?.compactMap(\.integer))
                #expect(tensor.offset == e["offset"]?.integer)
                #expect(tensor.byteCount == e["bytes"]?.integer)
                #expect(tensor.fileIndex == index)
            }
        }
    }

    @Test func singleFile() throws {
        let directory = Fixtures.path("safetensors/llama-single")
        let model = try SafetensorsModel(directory: directory)
        try expectMatchesReference(model, directory: "llama-single")
        #expect(model.tensors.map(\.name) == ["lm_head.weight", "model.embed_tokens.weight", "model.norm.weight"])
        #expect(model.files[0].metadata == ["format": "pt"])
        let norm = try #require(model.tensor(named: "model.norm.weight"))
        #expect(norm.type == .f16)
        let halves = model.data(of: norm).withMemoryRebound(to: UInt16.self) { Array($0) }
        #expect(halves == [UInt16](repeating: 0x3C00, count: 8))  // 1.0 in f16
    }

    @Test func shardedWithIndex() throws {
        let model = try SafetensorsModel(directory: Fixtures.path("safetensors/qwen2-sharded"))
        try expectMatchesReference(model, directory: "qwen2-sharded")
        #expect(model.files.count == 2)
        #expect(model.tensor(named: "a.weight")?.fileIndex == 0)
        #expect(model.tensor(named: "c.weight")?.fileIndex == 1)
        let identity = model.data(of: model.tensor(named: "c.weight")!).withMemoryRebound(to: Float.self) { Array($0) }
        #expect(identity == [1, 0, 0, 1])
    }

    @Test func fp8BlockScalesArePaired() throws {
        let model = try SafetensorsModel(directory: Fixtures.path("safetensors/deepseek-fp8"))
        try expectMatchesReference(model, directory: "deepseek-fp8")
        let weight = "model.layers.0.mlp.gate_proj.weight"
        #expect(model.blockScales == [weight: weight + "_scale_inv"])
        #expect(model.tensor(named: weight)?.type == .f8E4M3)
        #expect(model.tensor(named: weight + "_scale_inv")?.shape == [2, 3])
    }

    // MARK: - Bad input

    /// A safetensors file with the given header JSON and `dataBytes` bytes of data.
    func file(header: String, dataBytes: Int = 0) -> [UInt8] {
        var bytes: [UInt8] = []
        withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { bytes += $0 }
        return bytes + Array(header.utf8) + [UInt8](repeating: 0, count: dataBytes)
    }

    func open(_ bytes: [UInt8]) throws -> SafetensorsFile {
        try SafetensorsFile(mapped: MappedFile(copying: bytes, path: "bad.safetensors"))
    }

    @Test func validHandMadeFile() throws {
        let header = #"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#
        let f = try open(file(header: header, dataBytes: 16))
        #expect(f.tensors.first?.shape == [2, 2])
        let dataStart = 8 + header.utf8.count
        #expect(f.tensors.first?.offset == dataStart)
    }

    @Test func headerNotJSON() {
        expectWhaleError(.invalidJSON, field: "header") { _ = try open(file(header: "{not json at all}")) }
        expectWhaleError(.invalidJSON, field: "header") { _ = try open(file(header: "GGUF")) }
        expectWhaleError(.invalidJSON, field: "header") { _ = try open(file(header: #"{"a":1"#)) }
    }

    @Test func headerLengthPastTheEnd() {
        var bytes = file(header: "{}")
        bytes[0] = 200
        expectWhaleError(.truncated, field: "header length") { _ = try open(bytes) }
    }

    @Test func headerLengthAbsurd() {
        var bytes = file(header: "{}")
        bytes.replaceSubrange(0..<8, with: [0, 0, 0, 0, 0, 0, 0, 0x40])
        expectWhaleError(.tooLarge, field: "header length") { _ = try open(bytes) }
    }

    @Test func tooShortForHeaderLength() {
        expectWhaleError(.truncated, field: "header length") { _ = try open([1, 2, 3]) }
    }

    @Test func offsetsLieAboutSize() {
        let header = #"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,12]}}"#
        let error = expectWhaleError(.invalidValue, field: "w.data_offsets") {
            _ = try open(file(header: header, dataBytes: 16))
        }
        #expect(error?.problem.contains("needs 16") == true)
    }

    @Test func dataPastTheEnd() {
        let header = #"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#
        expectWhaleError(.outOfBounds, field: "w") { _ = try open(file(header: header, dataBytes: 15)) }
    }

    @Test func hugeOffsets() {
        let header = #"{"w":{"dtype":"U8","shape":[1],"data_offsets":[9223372036854775806,9223372036854775807]}}"#
        expectWhaleError(.outOfBounds, field: "w") { _ = try open(file(header: header, dataBytes: 4)) }
    }

    @Test func overlappingTensors() {
        let header =
            #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#
        expectWhaleError(.overlap, field: "b") { _ = try open(file(header: header, dataBytes: 16)) }
    }

    @Test func unknownDtype() {
        let header = #"{"w":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}"#
        let error = expectWhaleError(.unknownTensorType, field: "w") {
            _ = try open(file(header: header, dataBytes: 16))
        }
        #expect(error?.problem.contains("F128") == true)
    }

    @Test(arguments: [#"[-1]"#, #"[1.5]"#, #"["2"]"#, #"[4294967296,4294967296]"#])
    func badShape(shape: String) {
        let header = #"{"w":{"dtype":"F32","shape":"# + shape + #","data_offsets":[0,16]}}"#
        do {
            _ = try open(file(header: header, dataBytes: 16))
            Issue.record("opened a file with shape \(shape)")
        } catch let error as WhaleError {
            #expect([.invalidShape, .tooLarge].contains(error.code), "\(error)")
            #expect(error.field == "w")
        } catch {
            Issue.record("\(error)")
        }
    }

    @Test func missingDtype() {
        expectWhaleError(.missingKey, field: "w.dtype") {
            _ = try open(file(header: #"{"w":{"shape":[1],"data_offsets":[0,4]}}"#, dataBytes: 4))
        }
    }

    @Test func indexPointsOutsideTheDirectory() throws {
        let directory = try TemporaryDirectory()
        try directory.write("model.safetensors.index.json", #"{"weight_map":{"w":"../../etc/passwd.safetensors"}}"#)
        expectWhaleError(.invalidValue, field: "weight_map.w") { _ = try SafetensorsModel(directory: directory.path) }
    }

    @Test func indexNamesMissingShard() throws {
        let directory = try TemporaryDirectory()
        try directory.copy("safetensors/qwen2-sharded/model.safetensors.index.json")
        try directory.copy("safetensors/qwen2-sharded/model-00001-of-00002.safetensors")
        let error = expectWhaleError(.fileNotFound) { _ = try SafetensorsModel(directory: directory.path) }
        #expect(error?.file?.hasSuffix("model-00002-of-00002.safetensors") == true)
    }

    @Test func indexListsTensorTheFileLacks() throws {
        let directory = try TemporaryDirectory()
        try directory.copy("safetensors/llama-single/model.safetensors")
        try directory.write(
            "model.safetensors.index.json",
            #"{"weight_map":{"lm_head.weight":"model.safetensors","model.embed_tokens.weight":"model.safetensors","#
                + #""model.norm.weight":"model.safetensors","ghost.weight":"model.safetensors"}}"#)
        expectWhaleError(.missingTensor, field: "ghost.weight") { _ = try SafetensorsModel(directory: directory.path) }
    }

    @Test func duplicateTensorAcrossFiles() throws {
        let directory = try TemporaryDirectory()
        try directory.copy("safetensors/llama-single/model.safetensors", as: "a.safetensors")
        try directory.copy("safetensors/llama-single/model.safetensors", as: "b.safetensors")
        expectWhaleError(.duplicate) { _ = try SafetensorsModel(directory: directory.path) }
    }

    @Test func noSafetensorsFiles() throws {
        let directory = try TemporaryDirectory()
        expectWhaleError(.fileNotFound) { _ = try SafetensorsModel(directory: directory.path) }
    }

    @Test func scaleWithWrongShape() throws {
        let directory = try TemporaryDirectory()
        let header =
            #"{"w.weight":{"dtype":"F8_E4M3","shape":[200,300],"data_offsets":[0,60000]},"#
            + #""w.weight_scale_inv":{"dtype":"F32","shape":[3,3],"data_offsets":[60000,60036]}}"#
        try directory.write("model.safetensors", file(header: header, dataBytes: 60036))
        let error = expectWhaleError(.invalidShape, field: "w.weight_scale_inv") {
            _ = try SafetensorsModel(directory: directory.path)
        }
        #expect(error?.problem.contains("[2, 3]") == true)
    }

    @Test func scaleWithoutWeight() throws {
        let directory = try TemporaryDirectory()
        let header = #"{"w.weight_scale_inv":{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]}}"#
        try directory.write("model.safetensors", file(header: header, dataBytes: 4))
        expectWhaleError(.missingTensor, field: "w.weight") { _ = try SafetensorsModel(directory: directory.path) }
    }
}
