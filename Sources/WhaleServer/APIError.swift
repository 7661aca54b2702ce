import WhaleCore

/// An error as an OpenAI client expects it: an HTTP status and `{"error": {"message", "type", "param",
/// "code"}}`.
public struct APIError: Error, Sendable {
    public var statusCode: Int
    public var message: String
    public var type: String
    public var param: String?
    public var code: String?

    public init(status: Int = 400, _ message: String, type: String? = nil, param: String? = nil, code: String? = nil) {
        statusCode = status
        self.message = message
        self.type =
            type ?? (status == 401 ? "authentication_error" : status >= 500 ? "server_error" : "invalid_request_error")
        self.param = param
        self.code = code
    }

    /// A request value that is missing, of the wrong type or out of range.
    static func invalid(_ param: String, _ message: String) -> APIError {
        APIError(message, param: param, code: "invalid_value")
    }

    /// A parameter this server does not implement: refused rather than ignored, since ignoring it would
    /// change what the client gets.
    static func unsupported(_ param: String) -> APIError {
        APIError(
            "unsupported parameter: '\(param)' is not supported by this server", param: param,
            code: "unsupported_parameter")
    }

    var body: JSONValue {
        .object(
            JSONObject([
                "error": .object(
                    JSONObject([
                        "message": .string(message), "type": .string(type),
                        "param": param.map(JSONValue.string) ?? .null,
                        "code": code.map(JSONValue.string) ?? .null,
                    ]))
            ]))
    }
}

extension APIError {
    /// A `WhaleError` from the engine, as a client error naming the field.
    init(_ error: WhaleError) {
        self.init(error.description, param: error.field, code: error.code.rawValue)
    }
}
