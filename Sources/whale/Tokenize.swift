import ArgumentParser
import Foundation
import WhaleCore
import WhaleTokenizer

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Turn text into token ids with a model's tokenizer.",
        discussion: """
            MODEL_OR_TOKENIZER is a .gguf file, a model directory with tokenizer.json, or a tokenizer.json file. \
            Prints one JSON array of ids per input. Special tokens written in the text (<|im_start|>, \
            <｜User｜>, …) are tokenized as plain text unless --special is given; no BOS is added.
            """)

    @Argument(help: "A .gguf file, a model directory, a tokenizer.json file, or org/name[:TAG] from the Hub.")
    var model: String

    @Argument(help: "The text to tokenize.")
    var text: String?

    @Option(help: "Read the text from this file (all of it is one input).")
    var file: String?

    @Option(help: "Read inputs from this file: one {\"text\": ...} JSON object per line.")
    var jsonl: String?

    @Flag(help: "Match special tokens written in the text as single tokens.")
    var special = false

    @Flag(help: "Print bytes, tokens and encoding speed (MB/s, excluding loading) to stderr.")
    var stats = false

    @OptionGroup var hub: HubOptions

    func validate() throws {
        let given = [text != nil, file != nil, jsonl != nil].filter { $0 }.count
        guard given == 1 else { throw ValidationError("give exactly one of TEXT, --file, --jsonl") }
    }

    func run() throws {
        try reportingErrors {
            let loadStart = ContinuousClock.now
            let tokenizer = try Tokenizer.load(try modelPath(model, pull: !hub.noPull))
            let loadTime = ContinuousClock.now - loadStart
            var out = StandardOutput()
            var encodeTime = Duration.zero
            var byteCount = 0
            var tokenCount = 0
            func emit(_ text: String) {
                let start = ContinuousClock.now
                let ids = tokenizer.encode(text, parseSpecial: special)
                encodeTime += ContinuousClock.now - start
                byteCount += text.utf8.count
                tokenCount += ids.count
                print(JSONValue.array(ids.map { .integer(Int64($0)) }).serialized(), to: &out)
            }
            defer {
                if stats {
                    let seconds =
                        Double(encodeTime.components.seconds) + Double(encodeTime.components.attoseconds) / 1e18
                    let load = Double(loadTime.components.seconds) + Double(loadTime.components.attoseconds) / 1e18
                    var err = StandardError()
                    print(
                        "tokenized \(byteCount) bytes into \(tokenCount) tokens in \(String(format: "%.3f", seconds)) s "
                            + "(\(String(format: "%.2f", Double(byteCount) / max(seconds, 1e-9) / 1e6)) MB/s); "
                            + "tokenizer loaded in \(String(format: "%.3f", load)) s", to: &err)
                }
            }
            if let text {
                emit(text)
            } else if let file {
                emit(try readText(file))
            } else if let jsonl {
                let content = try readText(jsonl)
                for (index, line) in content.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                    if line.allSatisfy(\.isWhitespace) { continue }
                    let value: JSONValue
                    do {
                        value = try JSONValue.parse(String(line), file: jsonl)
                    } catch let error as WhaleError {
                        throw WhaleError(.invalidJSON, file: jsonl, field: "line \(index + 1)", error.problem)
                    }
                    guard let text = value.object?["text"]?.string else {
                        throw WhaleError(
                            .invalidValue, file: jsonl, field: "line \(index + 1)",
                            "expected an object with a string \"text\"")
                    }
                    emit(text)
                }
            }
        }
    }
}

struct Detokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Turn token ids back into text with a model's tokenizer.")

    @Argument(help: "A .gguf file, a model directory, a tokenizer.json file, or org/name[:TAG] from the Hub.")
    var model: String

    @Argument(help: "Token ids: a JSON array ([1,2,3]) or comma-separated (1,2,3).")
    var ids: String

    @Flag(help: "Leave out special (control) tokens.")
    var skipSpecial = false

    @OptionGroup var hub: HubOptions

    func run() throws {
        try reportingErrors {
            let list = try parseTokenIDs(ids)
            let tokenizer = try Tokenizer.load(try modelPath(model, pull: !hub.noPull))
            var out = StandardOutput()
            print(try tokenizer.decode(list, skipSpecial: skipSpecial), terminator: "", to: &out)
        }
    }
}

/// `[1, 2, 3]` or `1,2,3` → ids.
func parseTokenIDs(_ text: String) throws -> [Int] {
    let trimmed = text.trimmingCharacters(in: .whitespaces)
    let body = trimmed.hasPrefix("[") && trimmed.hasSuffix("]") ? String(trimmed.dropFirst().dropLast()) : trimmed
    if body.trimmingCharacters(in: .whitespaces).isEmpty { return [] }
    return try body.split(separator: ",").map { part in
        guard let id = Int(part.trimmingCharacters(in: .whitespaces)) else {
            throw WhaleError(.invalidArgument, field: "token ids", "\"\(part)\" is not an integer")
        }
        return id
    }
}

func readText(_ path: String) throws -> String {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw WhaleError(.fileNotFound, file: path, "cannot read the file")
    }
    guard let text = String(data: data, encoding: .utf8) else {
        throw WhaleError(.invalidUTF8, file: path, "the file is not valid UTF-8")
    }
    return text
}

struct StandardOutput: TextOutputStream {
    mutating func write(_ string: String) { FileHandle.standardOutput.write(Data(string.utf8)) }
}
