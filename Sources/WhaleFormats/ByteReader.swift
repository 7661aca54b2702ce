import WhaleCore

/// A bounds-checked little-endian cursor over untrusted bytes.
///
/// Every read checks the remaining length first and throws `.truncated` naming the field being read,
/// so a short or lying file can never read past its end.
struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    let file: String
    private(set) var offset: Int

    init(_ bytes: UnsafeRawBufferPointer, file: String, offset: Int = 0) {
        self.bytes = bytes
        self.file = file
        self.offset = offset
    }

    var remaining: Int { bytes.count - offset }

    mutating func require(_ count: Int, for field: @autoclosure () -> String) throws {
        guard count >= 0, count <= remaining else {
            throw WhaleError(
                .truncated, file: file, field: field(),
                "needs \(count) bytes at offset \(offset) but the file has \(max(remaining, 0)) left",
                hint: "the file is truncated or corrupt; download it again")
        }
    }

    mutating func read<T: FixedWidthInteger>(_: T.Type, for field: @autoclosure () -> String) throws -> T {
        try require(MemoryLayout<T>.size, for: field())
        let value = bytes.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset += MemoryLayout<T>.size
        return T(littleEndian: value)
    }

    mutating func readBytes(_ count: Int, for field: @autoclosure () -> String) throws -> UnsafeRawBufferPointer {
        try require(count, for: field())
        let slice = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])
        offset += count
        return slice
    }

    mutating func skip(_ count: Int, for field: @autoclosure () -> String) throws {
        try require(count, for: field())
        offset += count
    }
}

/// Decodes `bytes` as UTF-8, or nil if they are not valid UTF-8.
func validUTF8(_ bytes: UnsafeRawBufferPointer) -> String? {
    String(validating: bytes, as: UTF8.self)
}
