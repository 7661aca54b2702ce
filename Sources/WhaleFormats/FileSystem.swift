import WhaleCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The few file-system questions the loaders ask, answered with POSIX calls.
public enum FileSystem {
    public static func isDirectory(_ path: String) -> Bool {
        var status = stat()
        return stat(path, &status) == 0 && (status.st_mode & S_IFMT) == S_IFDIR
    }

    public static func isFile(_ path: String) -> Bool {
        var status = stat()
        return stat(path, &status) == 0 && (status.st_mode & S_IFMT) == S_IFREG
    }

    /// Names of the entries in `path` (not `.` or `..`), sorted.
    public static func list(_ path: String) throws -> [String] {
        guard let directory = opendir(path) else {
            throw WhaleError(
                errno == ENOENT ? .fileNotFound : .ioError, file: path,
                "cannot read directory: \(String(cString: strerror(errno)))")
        }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    public static func join(_ directory: String, _ name: String) -> String {
        directory.hasSuffix("/") ? directory + name : directory + "/" + name
    }

    /// Parses the JSON file at `path`; a missing file is `.fileNotFound`, bad JSON `.invalidJSON`.
    public static func readJSON(_ path: String) throws -> JSONValue {
        let file = try MappedFile(path: path)
        guard file.size <= 256 << 20 else {
            throw WhaleError(.tooLarge, file: path, "JSON file of \(file.size) bytes is over the 256 MiB limit")
        }
        return try JSONValue.parse(file.bytes, file: path)
    }

    public static func readJSONObject(_ path: String) throws -> JSONFields {
        guard let object = try readJSON(path).object else {
            throw WhaleError(.invalidJSON, file: path, "expected a JSON object at the top level")
        }
        return JSONFields(object, file: path)
    }
}
