/// The one error type BlueWhale throws for bad input.
///
/// Every error names where the problem is (`file`, and `field`: a metadata key, tensor name or JSON
/// path), what is wrong, and what to do next. The CLI prints `description` and exits with code 1; the
/// server maps `code` to an OpenAI error object.
public struct WhaleError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of problem this is. Stable: tests and the server switch on it.
    public enum Code: String, Sendable {
        case fileNotFound
        case ioError
        case badMagic
        case unsupportedVersion
        case truncated
        case outOfBounds
        case overlap
        case misaligned
        case invalidValue
        case invalidUTF8
        case invalidJSON
        case invalidShape
        case tooLarge
        case duplicate
        case missingKey
        case missingTensor
        case unknownValueType
        case unknownTensorType
        case unsupportedTensorType
        case unsupportedArchitecture
        case typeMismatch
        case invalidArgument
        /// A server could not be reached, or a transfer broke off.
        case networkError
        /// A server refused: missing or wrong credentials, or a gated repository.
        case accessDenied
        /// Downloaded bytes are not what their checksum says.
        case checksumMismatch
        /// No space left on the disk.
        case diskFull
        /// A run across several processes (MPI) failed: MPI itself, or another rank.
        case distributedError
    }

    public var code: Code
    /// The file the problem is in, when there is one.
    public var file: String?
    /// The metadata key, tensor name or JSON path the problem is in.
    public var field: String?
    /// What is wrong: expected versus found.
    public var problem: String
    /// What the user can do about it.
    public var hint: String?

    public init(_ code: Code, file: String? = nil, field: String? = nil, _ problem: String, hint: String? = nil) {
        self.code = code
        self.file = file
        self.field = field
        self.problem = problem
        self.hint = hint
    }

    public var description: String {
        var text = ""
        if let file { text += "\(file): " }
        if let field { text += "\(field): " }
        text += problem
        if let hint { text += " — \(hint)" }
        return text
    }

    /// The same error, attributed to `file` if it did not name one yet.
    public func inFile(_ path: String) -> WhaleError {
        var copy = self
        if copy.file == nil { copy.file = path }
        return copy
    }
}
