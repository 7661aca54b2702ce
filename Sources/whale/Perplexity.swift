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

            KL divergence, as llama-perplexity measures quantizations: `--kl-divergence-base FILE -f TEXT` with the \
            reference model (e.g. F16) writes its log-probabilities; `--kl-divergence-base FILE --kl-divergence` \
            with another model (e.g. Q4_K_M) evaluates the same text and prints PPL(Q), PPL(base), the KL \
            divergence and its percentiles, Δp and how often the top token agrees. The file is llama-perplexity's \
            format: either tool reads the other's.
            """)

    @OptionGroup var modelOptions: ModelOptions

    @Option(name: [.customShort("f"), .long], help: "The text file.")
    var file: String?

    @Option(help: "Evaluate at most this many chunks (default: all).")
    var chunks: Int?

    @Option(
        name: .customLong("kl-divergence-base"),
        help: ArgumentHelp(
            "llama-perplexity's log-probability file: written while evaluating --file, or read with --kl-divergence.",
            valueName: "file"))
    var klDivergenceBase: String?

    @Flag(
        name: .customLong("kl-divergence"),
        help: "Compare the model's next-token distributions with --kl-divergence-base's (its text, chunks and context)."
    )
    var klDivergence = false

    func run() throws {
        try reportingErrors {
            if klDivergence {
                try compareWithBase()
            } else {
                try evaluateText()
            }
        }
    }

    /// Perplexity of --file; with --kl-divergence-base, also writes the base file.
    func evaluateText() throws {
        guard let file else {
            throw WhaleError(
                .invalidArgument, field: "--file", "no text file given",
                hint: "give -f TEXT, or --kl-divergence with --kl-divergence-base FILE")
        }
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
        let count = try PerplexityEvaluation.chunkCount(tokens: tokens.count, contextSize: n, maxChunks: chunks)
        let writer = try klDivergenceBase.map { path in
            try LogProbabilityFile.Writer(
                path: path,
                header: .init(
                    contextSize: n, vocabularySize: model.vocabularySize, chunkCount: count,
                    tokens: Array(tokens[0..<(count * n)])))
        }
        var out = StandardOutput()
        let result = try PerplexityEvaluation.evaluate(
            tokens: tokens, model: model, context: context, contextSize: n, bos: bos, maxChunks: count,
            baseFile: writer
        ) { chunk, running in
            print(String(format: "[%d]%.4f,", chunk + 1, running), terminator: "", to: &out)
        }
        try writer?.close()
        print("", to: &out)
        let uncertainty = result.uncertainty
        print(String(format: "Final estimate: PPL = %.4f +/- %.5f", result.perplexity, uncertainty), to: &out)
        if let klDivergenceBase {
            print("perplexity: wrote log-probabilities of \(count) chunks to \(klDivergenceBase)", to: &err)
        }
    }

    /// --kl-divergence: the base file's text, chunk by chunk, compared with its log-probabilities.
    func compareWithBase() throws {
        guard let path = klDivergenceBase else {
            throw WhaleError(
                .invalidArgument, field: "--kl-divergence", "no base file given",
                hint: "give --kl-divergence-base FILE (written by whale perplexity or llama-perplexity)")
        }
        let base = try LogProbabilityFile.Reader(path: path)
        let n = base.header.contextSize
        let (model, tokenizer, context, size) = try modelOptions.load(defaultContext: n)
        guard size >= n else {
            throw WhaleError(
                .invalidArgument, field: "--ctx", "\(size) is smaller than the base file's context of \(n)",
                hint: "leave --ctx out: the base file's context is used")
        }
        let bos = tokenizer.flatMap { $0.addsBOS ? $0.bosTokenID : nil }
        var out = StandardOutput()
        var err = StandardError()
        print("kl_divergence: computing over \(base.header.chunkCount) chunks, n_ctx=\(n)", to: &err)
        print(KLDivergenceStatistics.chunkHeader, to: &out)
        let statistics = try KLDivergenceEvaluation.evaluate(base: base, model: model, context: context, bos: bos) {
            chunk, statistics in
            print(statistics.chunkLine(chunk), to: &out)
        }
        print("", to: &out)
        for line in statistics.report() { print(line, to: &out) }
    }
}
