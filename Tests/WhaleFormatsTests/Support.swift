import Foundation
import Testing
import WhaleCore
import WhaleFormats

/// Paths of the committed fixtures.
enum Fixtures {
    static let root = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.path
    static func path(_ relative: String) -> String { root + "/" + relative }

    static func json(_ relative: String) throws -> JSONValue {
        let data = try Data(contentsOf: URL(fileURLWithPath: path(relative)))
        return try data.withUnsafeBytes { try JSONValue.parse($0) }
    }

    static func bytes(_ relative: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: path(relative))))
    }
}

/// A fresh directory under the system temp dir, removed when the value is dropped.
final class TemporaryDirectory {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "whale-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    @discardableResult
    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let file = path + "/" + name
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        return file
    }

    @discardableResult
    func write(_ name: String, _ text: String) throws -> String { try write(name, Array(text.utf8)) }

    func copy(_ fixture: String, as name: String? = nil) throws {
        let source = Fixtures.path(fixture)
        try FileManager.default.copyItem(
            atPath: source, toPath: path + "/" + (name ?? URL(fileURLWithPath: source).lastPathComponent))
    }
}

/// Expects `body` to throw a `WhaleError` with `code` (and, when given, naming `field`); returns it.
@discardableResult
func expectWhaleError(
    _ code: WhaleError.Code, field: String? = nil, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> Void
) -> WhaleError? {
    do {
        try body()
        Issue.record("expected a \(code) error, but nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as WhaleError {
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
        if let field { #expect(error.field == field, "\(error)", sourceLocation: sourceLocation) }
        return error
    } catch {
        Issue.record("expected a WhaleError, got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

/// Builds GGUF bytes field by field, so tests can write valid files and every kind of broken one.
struct GGUFBuilder {
    var bytes: [UInt8] = []

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func string(_ s: String) {
        u64(UInt64(s.utf8.count))
        bytes += Array(s.utf8)
    }
    mutating func rawString(_ raw: [UInt8]) {
        u64(UInt64(raw.count))
        bytes += raw
    }
    mutating func header(version: UInt32 = 3, tensors: UInt64, metadata: UInt64) {
        bytes += Array("GGUF".utf8)
        u32(version)
        u64(tensors)
        u64(metadata)
    }
    mutating func value(_ value: GGUFValue) {
        switch value {
        case .uint8(let v): u8(v)
        case .int8(let v): u8(UInt8(bitPattern: v))
        case .uint16(let v): u16(v)
        case .int16(let v): u16(UInt16(bitPattern: v))
        case .uint32(let v): u32(v)
        case .int32(let v): u32(UInt32(bitPattern: v))
        case .float32(let v): u32(v.bitPattern)
        case .bool(let v): u8(v ? 1 : 0)
        case .string(let v): string(v)
        case .uint64(let v): u64(v)
        case .int64(let v): u64(UInt64(bitPattern: v))
        case .float64(let v): u64(v.bitPattern)
        case .array(let elementType, let values):
            u32(elementType.rawValue)
            u64(UInt64(values.count))
            for item in values { self.value(item) }
        }
    }
    mutating func keyValue(_ key: String, _ v: GGUFValue) {
        string(key)
        u32(v.type.rawValue)
        value(v)
    }
    /// A tensor info; `dims` innermost first, as GGUF stores them.
    mutating func tensorInfo(_ name: String, dims: [UInt64], type: UInt32, offset: UInt64) {
        string(name)
        u32(UInt32(dims.count))
        for d in dims { u64(d) }
        u32(type)
        u64(offset)
    }
    mutating func pad(to alignment: Int) {
        while bytes.count % alignment != 0 { bytes.append(0) }
    }

    /// A small valid file: two metadata entries and two F32 tensors of `[2, 4]` and `[8]`.
    static func valid(alignment: Int = 32) -> [UInt8] {
        var b = GGUFBuilder()
        b.header(tensors: 2, metadata: 2)
        b.keyValue("general.architecture", .string("llama"))
        b.keyValue("general.alignment", .uint32(UInt32(alignment)))
        b.tensorInfo("a", dims: [4, 2], type: 0, offset: 0)
        b.tensorInfo("b", dims: [8], type: 0, offset: UInt64(max(32, alignment)))
        b.pad(to: alignment)
        for i in 0..<(max(32, alignment) / 4 + 8) { b.u32(Float(i).bitPattern) }
        return b.bytes
    }
}

/// A deterministic generator for fuzzing (SplitMix64): the same seed gives the same mutations.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476C_E5B9_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The real models fetched by scripts/fetch-models.sh: in $WHALE_MODELS_DIR or the package's models/.
///
/// Tests that need them are skipped when they are absent, unless WHALE_REQUIRE_MODELS=1 (set by CI),
/// in which case a missing model fails the test instead of hiding it.
enum RealModels {
    static let directory: String = {
        if let directory = ProcessInfo.processInfo.environment["WHALE_MODELS_DIR"] { return directory }
        // #filePath is <root>/Tests/WhaleFormatsTests/Support.swift.
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("models").path
    }()
    static let required = ProcessInfo.processInfo.environment["WHALE_REQUIRE_MODELS"] == "1"
    static let names = ["SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"]

    static func path(_ name: String) -> String { directory + "/" + name }
    static var available: Bool { names.allSatisfy { FileManager.default.fileExists(atPath: path($0)) } }
    /// Run the test when the models are there, or when they are required (so it fails).
    static var shouldRun: Bool { available || required }
}
