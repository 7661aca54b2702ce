import ArgumentParser
import Foundation
import Synchronization
import WhaleCore
import WhaleEngine
import WhaleModels
import WhaleTokenizer

#if canImport(Glibc)
    import Glibc
#endif

struct Chat: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Chat with a model in the terminal.",
        discussion: """
            Type a message and press Enter. /clear starts a new conversation, /exit (or end of input) quits. \
            Ctrl-C stops the answer being written, not the program. The conversation is rendered with the \
            model's chat template each turn; the cache keeps the common prefix, so only new text is computed.
            """)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var sampling: SamplingOptions
    @OptionGroup var decoding: DecodingOptions

    @Option(help: "System message.")
    var system: String?

    @Option(help: "Use this built-in chat template instead of the model's.")
    var chatTemplate: String?

    @Option(name: .short, parsing: .unconditional, help: "Maximum tokens per answer.")
    var n: Int = 512

    func run() throws {
        try reportingErrors {
            let (model, tokenizer, context, contextSize) = try modelOptions.load()
            guard let tokenizer else {
                throw WhaleError(.fileNotFound, file: modelOptions.model, "chat needs the model's tokenizer")
            }
            let template = try resolveChatTemplate(tokenizer: tokenizer, name: chatTemplate)
            let generator = Generator(model: model, tokenizer: tokenizer, context: context, contextSize: contextSize)
            try decoding.configure(generator, tokenizer: tokenizer)
            var parameters = try sampling.parameters()
            Interrupt.install()
            var history: [ChatMessage] = system.map { [ChatMessage(role: "system", content: $0)] } ?? []
            var out = StandardOutput()
            var err = StandardError()
            print(
                "Chatting with \(modelOptions.model) (template \(template.name)). /clear, /exit; Ctrl-C stops an answer.",
                to: &err)
            while true {
                print("> ", terminator: "", to: &out)
                Interrupt.flag.store(false, ordering: .relaxed)
                guard let line = readLine() else { break }
                let input = line.trimmingCharacters(in: .whitespaces)
                if input == "/exit" || input == "/quit" { break }
                if input == "/clear" {
                    history = system.map { [ChatMessage(role: "system", content: $0)] } ?? []
                    generator.reset()
                    print("(new conversation)", to: &err)
                    continue
                }
                if input.isEmpty { continue }
                history.append(ChatMessage(role: "user", content: line))
                let prompt = try template.render(
                    history, addGenerationPrompt: true,
                    bosToken: tokenizer.bosTokenID.map { tokenizer.tokens[$0] } ?? "",
                    eosToken: tokenizer.eosTokenIDs.first.map { tokenizer.tokens[$0] } ?? "")
                var ids = tokenizer.encode(prompt, parseSpecial: true)
                if tokenizer.addsBOS, let bos = tokenizer.bosTokenID, ids.first != bos { ids.insert(bos, at: 0) }
                let request = GenerationRequest(
                    promptTokens: ids, maxTokens: n, sampling: parameters, stopTokens: tokenizer.endOfGenerationTokenIDs
                )
                var printer = GeneratedTextPrinter(startsInReasoning: template.opensReasoning)
                let result = try generator.generate(
                    request, onText: { printer.write($0) }, shouldContinue: { !Interrupt.flag.load(ordering: .relaxed) }
                )
                printer.finish()
                print("", to: &out)
                if result.finishReason == .cancelled { print("(stopped)", to: &err) }
                if result.finishReason == .contextFull { print("(context full: /clear, or a larger --ctx)", to: &err) }
                if result.shiftedOutTokens > 0 {
                    print("(context shift: dropped \(result.shiftedOutTokens) old tokens)", to: &err)
                }
                if decoding.mtp {
                    print(
                        String(format: "(mtp: %.0f%% of drafts accepted)", 100 * result.draftAcceptanceRate), to: &err)
                }
                history.append(ChatMessage(role: "assistant", content: result.text))
                parameters.seed &+= 1
            }
        }
    }
}

/// Ctrl-C while an answer is being written stops that answer. A signal handler can only reach process-wide
/// state, so this one flag is the program's single global: set by the handler, read by the generation loop.
enum Interrupt {
    static let flag = Atomic<Bool>(false)

    static func install() {
        #if canImport(Glibc)
            signal(SIGINT) { _ in
                if Interrupt.flag.load(ordering: .relaxed) { exit(130) }  // second Ctrl-C: quit
                Interrupt.flag.store(true, ordering: .relaxed)
            }
        #endif
    }
}

/// Writes generated text to standard output. On a terminal a reasoning model's thinking (up to `</think>`)
/// is dimmed so the answer stands out; piped output is the text exactly as generated.
struct GeneratedTextPrinter {
    private var splitter: ReasoningSplitter?
    private var printedReasoning = false
    private var printedContent = false
    private var out = StandardOutput()

    init(startsInReasoning: Bool) {
        #if canImport(Glibc)
            let terminal = isatty(STDOUT_FILENO) != 0
        #else
            let terminal = false
        #endif
        splitter = terminal ? ReasoningSplitter(startsInReasoning: startsInReasoning) : nil
    }

    mutating func write(_ text: String) {
        guard splitter != nil else { return print(text, terminator: "", to: &out) }
        if let piece = splitter?.feed(text) { show(piece) }
    }

    /// Prints what was held back; call once at the end of an answer.
    mutating func finish() {
        if let piece = splitter?.finish() { show(piece) }
        splitter = splitter.map { _ in ReasoningSplitter(startsInReasoning: false) }
        printedReasoning = false
        printedContent = false
    }

    private mutating func show(_ piece: ReasoningSplitter.Piece) {
        if !piece.reasoning.isEmpty {
            print("\u{1B}[2m" + piece.reasoning + "\u{1B}[0m", terminator: "", to: &out)
            printedReasoning = true
        }
        if !piece.content.isEmpty {
            if printedReasoning && !printedContent { print("\n", to: &out) }
            print(piece.content, terminator: "", to: &out)
            printedContent = true
        }
    }
}
