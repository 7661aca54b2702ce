/// Typed reads from a JSON object, with errors that name the file, the key and what was found.
public struct JSONFields: Sendable {
    public let object: JSONObject
    public let file: String?
    /// Path of this object inside its document, for error messages (`quantization_config`).
    public let path: String?

    public init(_ object: JSONObject, file: String?, path: String? = nil) {
        self.object = object
        self.file = file
        self.path = path
    }

    func fieldName(_ key: String) -> String { path.map { "\($0).\(key)" } ?? key }

    func mismatch(_ key: String, expected: String, found: JSONValue) -> WhaleError {
        WhaleError(.typeMismatch, file: file, field: fieldName(key), "expected \(expected), found \(found.kindName)")
    }

    /// The value for `key`, treating JSON `null` as absent.
    public func value(_ key: String) -> JSONValue? {
        guard let value = object[key], !value.isNull else { return nil }
        return value
    }

    public func int(_ key: String) throws -> Int? {
        guard let value = value(key) else { return nil }
        guard let int = value.integer else { throw mismatch(key, expected: "an integer", found: value) }
        return int
    }

    public func double(_ key: String) throws -> Double? {
        guard let value = value(key) else { return nil }
        guard let double = value.double else { throw mismatch(key, expected: "a number", found: value) }
        return double
    }

    public func string(_ key: String) throws -> String? {
        guard let value = value(key) else { return nil }
        guard let string = value.string else { throw mismatch(key, expected: "a string", found: value) }
        return string
    }

    public func bool(_ key: String) throws -> Bool? {
        guard let value = value(key) else { return nil }
        guard let bool = value.bool else { throw mismatch(key, expected: "true or false", found: value) }
        return bool
    }

    public func object(_ key: String) throws -> JSONFields? {
        guard let value = value(key) else { return nil }
        guard let object = value.object else { throw mismatch(key, expected: "an object", found: value) }
        return JSONFields(object, file: file, path: fieldName(key))
    }

    /// An integer or an array of integers (as `eos_token_id` may be either).
    public func ints(_ key: String) throws -> [Int]? {
        guard let value = value(key) else { return nil }
        if let int = value.integer { return [int] }
        guard let array = value.array else { throw mismatch(key, expected: "an integer or array", found: value) }
        return try array.map {
            guard let int = $0.integer else { throw mismatch(key, expected: "an array of integers", found: $0) }
            return int
        }
    }

    public func required<T>(_ key: String, _ read: (String) throws -> T?) throws -> T {
        guard let value = try read(key) else {
            throw WhaleError(.missingKey, file: file, field: fieldName(key), "required key is missing")
        }
        return value
    }
}
