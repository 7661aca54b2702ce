import ArgumentParser
import Foundation
import WhaleCore
import WhaleEngine
import WhaleKernels
import WhaleModels
import WhaleTokenizer

struct Perplexity: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Perplexity of a text file, chunked and scored as llama.cpp's llama-perplexity does.",
        discussion: """
            The text is tokenized (with BOS if the model adds one) and cut into chunks of --ctx tokens; each \
            chunk is evaluated from scratch with its first token replaced by BOS (when the model uses one), and \
            only the second half of each chunk is scored. Prints the running estimate per chunk and the final \
            perplexity, so figures are comparable with llama-perplexity's.
            """)

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "The text file.")
    var file: String

    @Option(help: "Evaluate at most this many chunks (default: all).")
    var chunks: Int?

    func run() throws {
        try reportingErrors {
            let (model, tokenizer, context, _) = try modelOptions.load()
            guard let tokenizer else {
                throw WhaleError(.fileNotFound, file: modelOptions.model, "perplexity needs the model's tokenizer")
            }
            let n = modelOptions.contextSize ?? 512
            var tokens = tokenizer.encode(try readText(file), parseSpecial: true)
            let addBOS = tokenizer.addsBOS && tokenizer.bosTokenID != nil
            if addBOS, let bos = tokenizer.bosTokenID { tokens.insert(bos, at: 0) }
            let available = tokens.count / n
            let count = min(chunks ?? available, available)
            guard count >= 1 else {
                throw WhaleError(
                    .invalidArgument, file: file, "the text has \(tokens.count) tokens, fewer than one chunk of \(n)",
                    hint: "use a longer text or a smaller --ctx")
            }
            var err = StandardError()
            print("perplexity: \(tokens.count) tokens, \(count) chunks of \(n)", to: &err)
            let first = n / 2
            var nll = 0.0
            var nll2 = 0.0
            var scored = 0
            let vocabulary = model.vocabularySize
            var row = [Double](repeating: 0, count: vocabulary)
            var out = StandardOutput()
            for chunk in 0..<count {
                let start = chunk * n
                var input = Array(tokens[start..<(start + n)])
                if addBOS, let bos = tokenizer.bosTokenID { input[0] = bos }
                let cache = model.makeCache(capacity: n)
                var logits: [Float] = []
                var offset = 0
                while offset < n {
                    let end = min(offset + 512, n)
                    logits += try model.forward(
                        [SequenceInput(tokens: Array(input[offset..<end]), cache: cache, logits: .all)],
                        context: context)[0]
                    offset = end
                }
                for j in first..<(n - 1) {
                    logits.withUnsafeBufferPointer { buffer in
                        row.withUnsafeMutableBufferPointer { out in
                            Ops.logSoftmax(
                                buffer.baseAddress! + j * vocabulary, count: vocabulary, output: out.baseAddress!)
                        }
                    }
                    let value = -row[tokens[start + j + 1]]
                    nll += value
                    nll2 += value * value
                    scored += 1
                }
                print(
                    String(format: "[%d]%.4f,", chunk + 1, exp(nll / Double(scored))),
                    terminator: chunk + 1 == count ? "\n" : "", to: &out)
            }
            let mean = nll / Double(scored)
            let variance = nll2 / Double(scored) - mean * mean
            let uncertainty = scored > 1 ? (variance / Double(scored - 1)).squareRoot() * exp(mean) : 0
            print(String(format: "Final estimate: PPL = %.4f +/- %.5f", exp(mean), uncertainty), to: &out)
        }
    }
}
