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
            The text is tokenized (with BOS if the model adds one) and cut into chunks of --ctx tokens (default \
            512, as llama-perplexity); each \
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
            let (model, tokenizer, context, n) = try modelOptions.load(defaultContext: 512)
            guard let tokenizer else {
                throw WhaleError(.fileNotFound, file: modelOptions.model, "perplexity needs the model's tokenizer")
            }
            // As llama-perplexity: BOS added when the model adds one, special tokens in the text not parsed.
            var tokens = tokenizer.encode(try readText(file), parseSpecial: false)
            let bos = tokenizer.addsBOS ? tokenizer.bosTokenID : nil
            if let bos { tokens.insert(bos, at: 0) }
            var err = StandardError()
            print("perplexity: \(tokens.count) tokens, \(tokens.count / n) chunks of \(n)", to: &err)
            var out = StandardOutput()
            let result = try PerplexityEvaluation.evaluate(
                tokens: tokens, model: model, context: context, contextSize: n, bos: bos, maxChunks: chunks
            ) { chunk, running in
                print(String(format: "[%d]%.4f,", chunk + 1, running), terminator: "", to: &out)
            }
            print("", to: &out)
            let uncertainty = result.uncertainty
            print(String(format: "Final estimate: PPL = %.4f +/- %.5f", result.perplexity, uncertainty), to: &out)
        }
    }
}
