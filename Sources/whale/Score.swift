import ArgumentParser
import Foundation
import WhaleCore
import WhaleEngine
import WhaleKernels
import WhaleModels
import WhaleTokenizer

struct Score: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Score a token sequence in one forward pass: the log-probability of each token.",
        discussion: """
            logprobs[i] = log p(tokens[i] | tokens[..<i]) (null for i = 0); top[i] lists the K most likely \
            tokens to follow tokens[...i], best first, with their log-probabilities — the last entry predicts \
            past the end. --text is tokenized with the model's tokenizer (BOS added if the model adds one).
            """)

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "Token ids: 1,2,3 or [1,2,3].")
    var tokens: String?

    @Option(help: "Text to tokenize and score.")
    var text: String?

    @Option(help: "How many most likely next tokens to list per position.")
    var top: Int = 5

    @Flag(help: "Print JSON.")
    var json = false

    @Option(
        help: ArgumentHelp(
            "Write every named intermediate value of the pass (taps) to this directory.",
            discussion: "The tokens are fed in one pass; DIR gets manifest.json and one .npy file per tap and layer, "
                + "for scripts/diff-taps.py to compare with llama.cpp or transformers.",
            valueName: "dir"))
    var dumpTaps: String?

    func validate() throws {
        guard (tokens == nil) != (text == nil) else { throw ValidationError("give exactly one of --tokens and --text") }
        guard top >= 0 else { throw ValidationError("--top must be ≥ 0") }
    }

    func run() throws {
        try reportingErrors {
            let (model, tokenizer, context, _) = try modelOptions.load()
            var ids: [Int]
            if let tokens {
                ids = try parseTokenIDs(tokens)
            } else {
                guard let tokenizer else {
                    throw WhaleError(
                        .fileNotFound, file: modelOptions.model, "the model has no tokenizer", hint: "use --tokens")
                }
                ids = tokenizer.encode(text ?? "", parseSpecial: true)
                if tokenizer.addsBOS, let bos = tokenizer.bosTokenID, ids.first != bos { ids.insert(bos, at: 0) }
            }
            guard !ids.isEmpty else { throw WhaleError(.invalidArgument, field: "tokens", "nothing to score") }
            if dumpTaps != nil { context.taps = TapRecorder() }
            let result = try SequenceScore.compute(
                ids, model: model, context: context, top: top, chunk: dumpTaps == nil ? 256 : ids.count)
            if let dumpTaps, let taps = context.taps {
                try TapDump.write(taps, to: dumpTaps, model: modelOptions.model, tokens: ids)
            }
            var out = StandardOutput()
            if json {
                let object = JSONObject([
                    "tokens": .array(ids.map { .integer(Int64($0)) }),
                    "logprobs": .array(result.logprobs.map { $0.map(JSONValue.number) ?? .null }),
                    "top": .array(
                        result.top.map { row in
                            .array(row.map { .array([.integer(Int64($0.0)), .number($0.1)]) })
                        }),
                ])
                print(JSONValue.object(object).serialized(), to: &out)
            } else {
                for (i, id) in ids.enumerated() {
                    let piece = tokenizer.flatMap { try? $0.decode([id]) } ?? ""
                    let lp = result.logprobs[i].map { String(format: "%9.4f", $0) } ?? "        -"
                    print(String(format: "%5d %7d %@  %@", i, id, lp, piece.debugDescription), to: &out)
                }
            }
        }
    }
}
