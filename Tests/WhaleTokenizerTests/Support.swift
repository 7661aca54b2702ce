import Foundation
import Testing
import WhaleCore
import WhaleFormats

@testable import WhaleTokenizer

enum Fixtures {
    static let root = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.path
    static func path(_ relative: String) -> String { root + "/" + relative }

    /// One JSON value per line.
    static func jsonLines(_ relative: String) throws -> [JSONValue] {
        let text = try String(contentsOfFile: path(relative), encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONValue.parse(String($0)) }
    }

    static let corpus: [String] = {
        (try? jsonLines("corpus.jsonl").compactMap { $0.object?["text"]?.string }) ?? []
    }()
}

/// The tokenizers the goldens were made from: models/ (fetched by scripts/fetch-models.sh and
/// scripts/fetch-tokenizers.sh) or $WHALE_MODELS_DIR. Absent files skip the tests that need them unless
/// WHALE_REQUIRE_MODELS=1, when they fail.
enum ReferenceTokenizers {
    static let directory: String = {
        if let directory = ProcessInfo.processInfo.environment["WHALE_MODELS_DIR"] { return directory }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("models").path
    }()
    static let required = ProcessInfo.processInfo.environment["WHALE_REQUIRE_MODELS"] == "1"

    /// Golden file name → tokenizer path.
    static let paths: [String: String] = [
        "deepseek-v3": directory + "/tokenizers/deepseek-v3/tokenizer.json",
        "qwen2": directory + "/tokenizers/qwen2/tokenizer.json",
        "smollm2-gguf": directory + "/SmolLM2-135M-Instruct.Q4_1.gguf",
        "gemma3-gguf": directory + "/gemma-3-270m-q4_k_m.gguf",
        "llama3-style": directory + "/tokenizers/llama3-style/tokenizer.json",
        "deepseek-llm-style": directory + "/tokenizers/deepseek-llm-style/tokenizer.json",
        "gemma3-space-prefix": directory + "/gemma-3-270m-q4_k_m.gguf",
    ]

    static func available(_ name: String) -> Bool {
        paths[name].map { FileManager.default.fileExists(atPath: $0) } ?? false
    }

    /// Loaded once per test process: loading a 150k-token vocabulary takes a while in debug builds.
    static let loaded: [String: Tokenizer] = {
        var result: [String: Tokenizer] = [:]
        for (name, path) in paths where FileManager.default.fileExists(atPath: path) {
            if name == "gemma3-space-prefix" {
                // Gemma's vocabulary with add_space_prefix turned on, as the golden's vocab-only GGUF has it.
                result[name] = try? GGUFTokenizer.load(GGUFModel(path: path), addSpacePrefix: true)
            } else {
                result[name] = try? Tokenizer.load(path)
            }
        }
        return result
    }()

    static func tokenizer(_ name: String) throws -> Tokenizer {
        if let tokenizer = loaded[name] { return tokenizer }
        return try Tokenizer.load(try #require(paths[name]))  // throws the load error, or file-not-found
    }
}
