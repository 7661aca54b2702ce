import Testing
import WhaleCore
import WhaleFormats

/// Every kind of broken or hostile GGUF file gets a typed error naming the problem, never a crash.
@Suite struct GGUFBadInputTests {
    func open(_ bytes: [UInt8]) throws -> GGUFFile {
        try GGUFFile(mapped: MappedFile(copying: bytes, path: "bad.gguf"))
    }

    /// A file with one tensor info and `dataBytes` zero bytes of data.
    func oneTensor(
        name: String = "w", dims: [UInt64], type: UInt32 = 0, offset: UInt64 = 0, dataBytes: Int = 64,
        alignment: UInt32? = nil
    ) -> [UInt8] {
        var b = GGUFBuilder()
        b.header(tensors: 1, metadata: alignment == nil ? 0 : 1)
        if let alignment { b.keyValue("general.alignment", .uint32(alignment)) }
        b.tensorInfo(name, dims: dims, type: type, offset: offset)
        b.pad(to: Int(alignment ?? 32))
        b.bytes += [UInt8](repeating: 0, count: dataBytes)
        return b.bytes
    }

    @Test func validBuilderFileOpens() throws {
        let file = try open(GGUFBuilder.valid())
        #expect(file.tensors.map(\.name) == ["a", "b"])
        #expect(file.tensors[0].shape == [2, 4])
    }

    @Test func wrongMagic() {
        var bytes = GGUFBuilder.valid()
        bytes[0] = UInt8(ascii: "X")
        let error = expectWhaleError(.badMagic, field: "magic") { _ = try open(bytes) }
        #expect(error?.file == "bad.gguf")
    }

    @Test func emptyFile() {
        expectWhaleError(.truncated, field: "magic") { _ = try open([]) }
    }

    @Test(arguments: [UInt32(1), 4, 0x0300_0000, 0x0200_0000])
    func unsupportedVersion(version: UInt32) {
        var b = GGUFBuilder()
        b.header(version: version, tensors: 0, metadata: 0)
        let error = expectWhaleError(.unsupportedVersion, field: "version") { _ = try open(b.bytes) }
        if version >= 0x0200_0000 { #expect(error?.hint?.contains("big-endian") == true) }
    }

    /// Cutting the file anywhere inside the header is `.truncated`; inside the data, `.outOfBounds`.
    @Test func truncatedAnywhere() throws {
        let bytes = GGUFBuilder.valid()
        let dataOffset = try open(bytes).dataOffset
        for length in 0..<bytes.count {
            do {
                _ = try open(Array(bytes[..<length]))
                Issue.record("a file cut at \(length) of \(bytes.count) bytes opened")
            } catch let error as WhaleError {
                let expected: Set<WhaleError.Code> =
                    length < dataOffset ? [.truncated, .tooLarge] : [.outOfBounds]
                #expect(expected.contains(error.code), "cut at \(length): \(error)")
            }
        }
    }

    @Test func tensorPastTheEnd() {
        let error = expectWhaleError(.outOfBounds, field: "w") { _ = try open(oneTensor(dims: [32], dataBytes: 100)) }
        #expect(error?.problem.contains("past the end") == true)
    }

    @Test func tensorOffsetPastTheEnd() {
        expectWhaleError(.outOfBounds, field: "w") { _ = try open(oneTensor(dims: [4], offset: 1 << 40)) }
    }

    @Test func offsetBeyondAnyFile() {
        expectWhaleError(.outOfBounds, field: "w") { _ = try open(oneTensor(dims: [4], offset: .max - 31)) }
    }

    @Test func overlappingTensors() {
        var b = GGUFBuilder()
        b.header(tensors: 2, metadata: 0)
        b.tensorInfo("first", dims: [16], type: 0, offset: 0)
        b.tensorInfo("second", dims: [16], type: 0, offset: 32)
        b.pad(to: 32)
        b.bytes += [UInt8](repeating: 0, count: 128)
        let error = expectWhaleError(.overlap, field: "second") { _ = try open(b.bytes) }
        #expect(error?.problem.contains("first") == true)
    }

    @Test func misalignedOffset() {
        expectWhaleError(.misaligned, field: "w") { _ = try open(oneTensor(dims: [4], offset: 4)) }
    }

    @Test(arguments: [UInt32(0), 3, 48])
    func alignmentNotAPowerOfTwo(alignment: UInt32) {
        var b = GGUFBuilder()
        b.header(tensors: 0, metadata: 1)
        b.keyValue("general.alignment", .uint32(alignment))
        expectWhaleError(.invalidValue, field: "general.alignment") { _ = try open(b.bytes) }
    }

    @Test func alignmentOfWrongType() {
        var b = GGUFBuilder()
        b.header(tensors: 0, metadata: 1)
        b.keyValue("general.alignment", .string("32"))
        expectWhaleError(.invalidValue, field: "general.alignment") { _ = try open(b.bytes) }
    }

    @Test func absurdMetadataCount() {
        var b = GGUFBuilder()
        b.header(tensors: 0, metadata: 1 << 40)
        expectWhaleError(.tooLarge, field: "metadata_kv_count") { _ = try open(b.bytes) }
    }

    @Test func absurdTensorCount() {
        var b = GGUFBuilder()
        b.header(tensors: 1 << 62, metadata: 0)
        expectWhaleError(.tooLarge, field: "tensor_count") { _ = try open(b.bytes) }
    }

    @Test func absurdArrayCount() {
        var b = GGUFBuilder()
        b.header(tensors: 0, metadata: 1)
        b.string("tokenizer.ggml.tokens")
        b.u32(GGUFValueType.array.rawValue)
        b.u32(GGUFValueType.string.rawValue)
        b.u64(1 << 40)
        b.bytes += [UInt8](repeating: 0, count: 64)
        expectWhaleError(.tooLarge, field: "tokenizer.ggml.tokens") { _ = try open(b.bytes) }
    }

    /// A long array that the file really holds is still refused past the limit: decoding it would take
    /// ~30× its size in memory.
    @Test func arrayLongerThanTheLimit() {
        var b = GGUFBuilder()
        b.header(tensors: 0, metadata: 1)
        b.string("huge")
        b.u32(GGUFValueType.array.rawValue)
        b.u32(GGUFValueType.uint8.rawValue)
        b.u64(UInt64(GGUFFile.maximumArrayLength + 1))
        b.bytes += [UInt8](repeating: 0, count: GGUFFile.maximumArrayLength + 1)
        let error = expectWhaleError(.tooLarge, field: "huge") { _ = try open(b.bytes) }
        #expect(error?.problem.contains("longer than") == true)
    }

    @Test func elementCountOverflow() {
        // 2^31 × 2^31 = 2^62 elements.
        let error = expectWhaleError(.tooLarge, field: "w") { _ = try open(oneTensor(dims: [1 << 31, 1 << 31])) }
        #expect(error?.problem.contains("2^62") == true)
        expectWhaleError(.tooLarge, field: "w") { _ = try open(oneTensor(dims: [1 << 62, 1 << 62, 16])) }
    }

    @Test(arguments: [UInt64(0), UInt64(bitPattern: -1), UInt64(bitPattern: -4096)])
    func zeroOrNegativeDimension(dimension: UInt64) {
        let error = expectWhaleError(.invalidShape, field: "w") { _ = try open(oneTensor(dims: [4, dimension])) }
        #expect(error?.problem.contains("positive") == true)
    }

    @Test func tooManyDimensions() {
        expectWhaleError(.invalidShape, field: "w") { _ = try open(oneTensor(dims: [1, 1, 1, 1, 1])) }
    }

    @Test func rowNotAWholeNumberOfBlocks() {
        // Q4_0 blocks hold 32 elements; a row of 48 is not whole blocks.
        expectWhaleError(.invalidShape, field: "w") { _ = try open(oneTensor(dims: [48], type: 2)) }
    }

    @Test(arguments: [UInt32(4), 5, 31, 36, 1000, .max])
    func unknownTensorType(id: UInt32) {
        let error = expectWhaleError(.unknownTensorType, field: "w") {
            _ = try open(oneTensor(name: "w", dims: [32], type: id))
        }
        #expect(error?.problem.contains("\(id)") == true)
    }

    @Test(arguments: [UInt32(13), 99, .max])
    func unknownValueType(id: UInt32) {
        var b = GGUFBuilder()
        b.header(tensors: 0, metadata: 1)
        b.string("some.key")
        b.u32(id)
        b.u64(0)
        expectWhaleError(.unknownValueType, field: "some.key") { _ = try open(b.bytes) }
    }

    @Test func unknownArrayElementType() {
        var b = GGUFBuilder()
        b.header(tensors: 0, metadata: 1)
        b.string("some.key")
        b.u32(GGUFValueType.array.rawValue)
        b.u32(77)
        b.u64(1)
        b.u64(0)
        expectWhaleError(.unknownValueType, field: "some.key") { _ = try open(b.bytes) }
    }

    @Test func stringLengthPastTheEnd() {
        var b = GGUFBuilder()
        b.header(tensors: 0, metadata: 1)
        b.string("general.name")
        b.u32(GGUFValueType.string.rawValue)
        b.u64(1 << 50)
        b.bytes += Array("short".utf8)
        let error = expectWhaleError(.truncated, field: "general.name") { _ = try open(b.bytes) }
        #expect(error?.problem.contains("string length") == true)
    }

    @Test func keyLengthPastTheEnd() {
        var b = GGUFBuilder()
        b.header(tensors: 0, metadata: 1)
        b.u64(.max)
        b.bytes += [UInt8](repeating: 0x41, count: 16)
        expectWhaleError(.truncated, field: "metadata key #0") { _ = try open(b.bytes) }
    }

    @Test func invalidUTF8InKey() {
        var b = GGUFBuilder()
        b.header(tensors: 0, metadata: 1)
        b.rawString([0x61, 0xFF, 0xFE, 0x62])
        b.u32(GGUFValueType.uint8.rawValue)
        b.u8(1)
        expectWhaleError(.invalidUTF8, field: "metadata key #0") { _ = try open(b.bytes) }
    }

    @Test func invalidUTF8InTensorName() {
        var b = GGUFBuilder()
        b.header(tensors: 1, metadata: 0)
        b.rawString([0xC3, 0x28])
        b.u32(1)
        b.u64(4)
        b.u32(0)
        b.u64(0)
        b.pad(to: 32)
        b.bytes += [UInt8](repeating: 0, count: 16)
        expectWhaleError(.invalidUTF8, field: "tensor #0 name") { _ = try open(b.bytes) }
    }

    @Test func invalidBool() {
        var b = GGUFBuilder()
        b.header(tensors: 0, metadata: 1)
        b.string("flag")
        b.u32(GGUFValueType.bool.rawValue)
        b.u8(2)
        expectWhaleError(.invalidValue, field: "flag") { _ = try open(b.bytes) }
    }

    @Test func duplicateKey() {
        var b = GGUFBuilder()
        b.header(tensors: 0, metadata: 2)
        b.keyValue("k", .uint8(1))
        b.keyValue("k", .uint8(2))
        expectWhaleError(.duplicate, field: "k") { _ = try open(b.bytes) }
    }

    @Test func duplicateTensorName() {
        var b = GGUFBuilder()
        b.header(tensors: 2, metadata: 0)
        b.tensorInfo("w", dims: [8], type: 0, offset: 0)
        b.tensorInfo("w", dims: [8], type: 0, offset: 32)
        b.pad(to: 32)
        b.bytes += [UInt8](repeating: 0, count: 64)
        expectWhaleError(.duplicate, field: "w") { _ = try open(b.bytes) }
    }

    /// Arrays nested a million deep would overflow the stack of a naive recursive reader.
    @Test func arraysNestedTooDeep() {
        var b = GGUFBuilder()
        b.header(tensors: 0, metadata: 1)
        b.string("deep")
        b.u32(GGUFValueType.array.rawValue)
        for _ in 0..<100_000 {
            b.u32(GGUFValueType.array.rawValue)
            b.u64(1)
        }
        b.u32(GGUFValueType.uint8.rawValue)
        b.u64(0)
        expectWhaleError(.invalidValue, field: "deep") { _ = try open(b.bytes) }
    }

    @Test func missingFile() {
        expectWhaleError(.fileNotFound) { _ = try GGUFFile(path: "/nonexistent/model.gguf") }
    }
}
