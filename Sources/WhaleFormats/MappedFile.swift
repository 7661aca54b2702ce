import WhaleCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A file memory-mapped read-only, so tensor data is read in place and paged in on demand.
///
/// Immutable after `init`; the mapping lives as long as the object, so keep the `MappedFile` alive while
/// any pointer into it is in use.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    /// Size of the file in bytes.
    public let size: Int
    private let base: UnsafeRawPointer?
    /// True when `base` was allocated by `init(copying:path:)` rather than mapped.
    private let isOwnedCopy: Bool

    /// Maps the whole file at `path`.
    public init(path: String) throws {
        self.path = path
        isOwnedCopy = false
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            let reason = String(cString: strerror(errno))
            throw WhaleError(
                errno == ENOENT ? .fileNotFound : .ioError, file: path, "cannot open file: \(reason)",
                hint: "check the path")
        }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else {
            throw WhaleError(.ioError, file: path, "cannot stat file: \(String(cString: strerror(errno)))")
        }
        guard (status.st_mode & S_IFMT) == S_IFREG else {
            throw WhaleError(.invalidArgument, file: path, "not a regular file", hint: "pass a model file or directory")
        }
        size = Int(status.st_size)
        if size == 0 {
            base = nil
            return
        }
        let address = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let address, address != MAP_FAILED else {
            throw WhaleError(.ioError, file: path, "cannot map file: \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(address)
    }

    /// Holds a copy of `bytes` in memory as if it were the file `path`: for tests and fuzzing, where
    /// writing thousands of files would be slow.
    public init(copying bytes: [UInt8], path: String) {
        self.path = path
        size = bytes.count
        isOwnedCopy = true
        let memory = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 64)
        bytes.withUnsafeBytes {
            if let source = $0.baseAddress { memory.copyMemory(from: source, byteCount: $0.count) }
        }
        base = UnsafeRawPointer(memory)
    }

    deinit {
        guard let base else { return }
        if isOwnedCopy {
            base.deallocate()
        } else {
            munmap(UnsafeMutableRawPointer(mutating: base), size)
        }
    }

    /// All bytes of the file.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }

    /// Tells the kernel this process no longer needs the pages wholly inside `range` (a part of `bytes`):
    /// they leave the process's resident memory, and a later read maps them in again from the file. For
    /// data repacked into memory of its own at load, so that the model does not hold both copies. Does
    /// nothing for a copy held in memory (`init(copying:)`), whose pages are the only copy.
    public func releasePages(_ range: UnsafeRawBufferPointer) {
        guard !isOwnedCopy, let base, let start = range.baseAddress else { return }
        precondition(start >= base && start + range.count <= base + size, "range outside mapped file")
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard page > 0 else { return }
        let first = (Int(bitPattern: start) + page - 1) / page * page
        let end = (Int(bitPattern: start) + range.count) / page * page
        guard end > first, let address = UnsafeMutableRawPointer(bitPattern: first) else { return }
        _ = madvise(address, end - first, Int32(MADV_DONTNEED))
    }

    /// `count` bytes from `offset`; the caller has checked the range lies within the file.
    public func bytes(at offset: Int, count: Int) -> UnsafeRawBufferPointer {
        precondition(offset >= 0 && count >= 0 && offset <= size - count, "range outside mapped file")
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])
    }
}
