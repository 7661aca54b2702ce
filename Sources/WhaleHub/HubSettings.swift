import Foundation

/// How to reach the Hub, read from the environment variables huggingface_hub reads, so that one setting
/// serves both: `HF_ENDPOINT`, `HF_TOKEN` (else the token file `huggingface-cli login` writes) and
/// `HF_HUB_OFFLINE`.
public struct HubSettings: Sendable, Equatable {
    /// The Hub's address, without a trailing slash: `HF_ENDPOINT`, default `https://huggingface.co`.
    public var endpoint: String
    /// The access token for gated and private repositories, if any.
    public var token: String?
    /// `HF_HUB_OFFLINE=1`: never touch the network, use only what is cached.
    public var offline: Bool

    public init(endpoint: String = "https://huggingface.co", token: String? = nil, offline: Bool = false) {
        self.endpoint = endpoint
        self.token = token
        self.offline = offline
    }

    public init(environment: [String: String]) {
        var endpoint = environment["HF_ENDPOINT"].flatMap { $0.isEmpty ? nil : $0 } ?? "https://huggingface.co"
        while endpoint.hasSuffix("/") { endpoint.removeLast() }
        self.endpoint = endpoint
        let tokenFile =
            environment["HF_TOKEN_PATH"].flatMap { $0.isEmpty ? nil : ($0 as NSString).expandingTildeInPath }
            ?? Self.home(environment).appendingPathComponent("token").path
        let fromFile = (try? String(contentsOfFile: tokenFile, encoding: .utf8))
        let token = (environment["HF_TOKEN"] ?? fromFile)?.trimmingCharacters(in: .whitespacesAndNewlines)
        self.token = token.flatMap { $0.isEmpty ? nil : $0 }
        // huggingface_hub's truthy spellings.
        let flag = environment["HF_HUB_OFFLINE"]?.uppercased() ?? ""
        offline = ["1", "ON", "YES", "TRUE"].contains(flag)
    }

    /// `HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
    static func home(_ environment: [String: String]) -> URL {
        if let home = environment["HF_HOME"], !home.isEmpty {
            return URL(fileURLWithPath: (home as NSString).expandingTildeInPath)
        }
        let cache =
            environment["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? ((environment["HOME"] ?? NSHomeDirectory()) + "/.cache")
        return URL(fileURLWithPath: cache).appendingPathComponent("huggingface")
    }
}
