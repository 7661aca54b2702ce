import Foundation
import Testing
import WhaleCore
import WhaleKernels

/// Dequantizes tensors of real GGUF models and compares them with gguf-py's output, recorded in
/// Fixtures/dequant/real-tensors.json as the first eight values and a checksum of all bit patterns.
///
/// The models are looked up in `$WHALE_MODELS_DIR`, else `<package root>/models` (`scripts/fetch-models.sh`).
/// Missing models skip these tests, unless `WHALE_REQUIRE_MODELS=1`, when they fail instead. Tensor bytes
/// are read with plain Foundation at the absolute offsets the fixture script recorded, so this test does not
/// depend on WhaleFormats.
struct RealTensorDequantizeTests {
    struct Entry: Decodable, Sendable, CustomTestStringConvertible {
        var model: String
        var tensor: String
        var type: String
        var offset: UInt64
        var elements: Int
        var bytes: Int
        var first_bits: [UInt32]
        var checksum: String

        var testDescription: String { "\(model): \(tensor) (\(type))" }
    }

    static let entries: [Entry] = {
        struct Catalog: Decodable { var tensors: [Entry] }
        do {
            let data = try DequantFixtures.data("real-tensors.json")
            return try JSONDecoder().decode(Catalog.self, from: data).tensors
        } catch {
            // An unreadable catalog is a broken checkout, not a missing model: fail loudly.
            return [
                Entry(
                    model: "real-tensors.json", tensor: "unreadable: \(error)", type: "", offset: 0, elements: 0,
                    bytes: 0, first_bits: [], checksum: "")
            ]
        }
    }()

    static var modelsDirectory: URL {
        if let path = ProcessInfo.processInfo.environment["WHALE_MODELS_DIR"], !path.isEmpty {
            return URL(fileURLWithPath: path, isDirectory: true)
        }
        // #filePath is <root>/Tests/WhaleKernelsTests/RealTensorDequantizeTests.swift.
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("models", isDirectory: true)
    }

    static var modelsRequired: Bool { ProcessInfo.processInfo.environment["WHALE_REQUIRE_MODELS"] == "1" }

    static var allModelsPresent: Bool {
        Set(entries.map(\.model)).allSatisfy {
            FileManager.default.fileExists(atPath: modelsDirectory.appendingPathComponent($0).path)
        }
    }

    @Test(
        "real GGUF tensors dequantize like gguf-py",
        .enabled(
            if: allModelsPresent || modelsRequired,
            "model files not found; run scripts/fetch-models.sh or set WHALE_MODELS_DIR"),
        arguments: entries)
    func realTensor(entry: Entry) throws {
        let url = Self.modelsDirectory.appendingPathComponent(entry.model)
        guard FileManager.default.fileExists(atPath: url.path) else {
            Issue.record("WHALE_REQUIRE_MODELS=1 but \(url.path) is missing")
            return
        }
        let type = try #require(DType(rawValue: entry.type), "unknown type \(entry.type)")
        #expect(type.byteCount(elements: entry.elements) == entry.bytes)

        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        try handle.seek(toOffset: entry.offset)
        let data = try handle.read(upToCount: entry.bytes) ?? Data()
        try #require(data.count == entry.bytes, "read \(data.count) of \(entry.bytes) bytes at \(entry.offset)")

        let values = try data.withUnsafeBytes {
            try Dequantize.toFloats(type, bytes: $0, count: entry.elements, tensorName: entry.tensor)
        }
        #expect(values.prefix(entry.first_bits.count).map(\.bitPattern) == entry.first_bits)
        #expect(String(Self.checksum(values)) == entry.checksum)
    }

    /// sum over i of UInt64(bits[i]) · UInt64(2i + 1), wrapping — the script's numpy uint64 arithmetic.
    static func checksum(_ values: [Float]) -> UInt64 {
        values.withUnsafeBufferPointer { buffer in
            var sum: UInt64 = 0
            for i in 0..<buffer.count {
                sum &+= UInt64(buffer[i].bitPattern) &* (UInt64(i) &* 2 &+ 1)
            }
            return sum
        }
    }
}
