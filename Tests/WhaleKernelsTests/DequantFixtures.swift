import Foundation
import Testing
import WhaleCore

/// Reads the golden files written by `scripts/make-dequant-fixtures.py` (Fixtures/dequant/).
enum DequantFixtures {
    static var directory: URL {
        Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("dequant")
    }

    static func data(_ name: String) throws -> Data {
        try Data(contentsOf: directory.appendingPathComponent(name))
    }

    /// A file of little-endian float32 values.
    static func floats(_ name: String) throws -> [Float] {
        let bytes = try data(name)
        return floats(littleEndian: bytes)
    }

    static func floats(littleEndian bytes: Data) -> [Float] {
        bytes.withUnsafeBytes { raw in
            (0..<raw.count / 4).map {
                Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self)))
            }
        }
    }
}

/// Records one issue naming the first index whose bit pattern differs, and how many differ.
func expectSameBits(
    _ actual: [Float], _ expected: [Float], _ label: String, sourceLocation: SourceLocation = #_sourceLocation
) {
    guard actual.count == expected.count else {
        Issue.record("\(label): \(actual.count) values, expected \(expected.count)", sourceLocation: sourceLocation)
        return
    }
    var first: Int?
    var mismatches = 0
    for i in actual.indices where actual[i].bitPattern != expected[i].bitPattern {
        if first == nil { first = i }
        mismatches += 1
    }
    if let i = first {
        let got = String(actual[i].bitPattern, radix: 16)
        let want = String(expected[i].bitPattern, radix: 16)
        let message =
            "\(label): \(mismatches) of \(actual.count) values differ; first at index \(i): "
            + "got \(actual[i]) (0x\(got)), expected \(expected[i]) (0x\(want))"
        Issue.record(Comment(rawValue: message), sourceLocation: sourceLocation)
    }
}

/// The `WhaleError` `body` throws, or nil (with an issue recorded) when it returns or throws something else.
/// (Swift 6.0's `#expect(throws:)` does not return the error, so tests that inspect it use this.)
func thrownWhaleError<T>(
    sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> T
) -> WhaleError? {
    do {
        _ = try body()
        Issue.record("expected a WhaleError, nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as WhaleError {
        return error
    } catch {
        Issue.record("expected a WhaleError, got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}
