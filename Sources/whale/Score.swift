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
            let result = try scoreSequence(ids, model: model, context: context, top: top)
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

/// Log-probabilities of each token given the ones before, and the top candidates after each position.
func scoreSequence(_ ids: [Int], model: any LanguageModel, context: ForwardContext, top: Int) throws
    -> (logprobs: [Double?], top: [[(Int, Double)]])
{
    let cache = model.makeCache(capacity: ids.count)
    let vocabulary = model.vocabularySize
    var logprobs: [Double?] = [nil]
    var topLists: [[(Int, Double)]] = []
    var start = 0
    var row = [Double](repeating: 0, count: vocabulary)
    while start < ids.count {
        let end = min(start + 256, ids.count)
        let logits = try model.forward(
            [SequenceInput(tokens: Array(ids[start..<end]), cache: cache, logits: .all)], context: context)[0]
        for i in start..<end {
            logits.withUnsafeBufferPointer { buffer in
                row.withUnsafeMutableBufferPointer { out in
                    Ops.logSoftmax(
                        buffer.baseAddress! + (i - start) * vocabulary, count: vocabulary, output: out.baseAddress!)
                }
            }
            if i + 1 < ids.count { logprobs.append(row[ids[i + 1]]) }
            if top > 0 {
                let best = row.indices.sorted { (row[$0], -$0) > (row[$1], -$1) }.prefix(top)
                topLists.append(best.map { ($0, row[$0]) })
            } else {
                topLists.append([])
            }
        }
        start = end
    }
    return (logprobs, topLists)
}
