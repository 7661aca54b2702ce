import Foundation
import Testing
import WhaleCore
import WhaleKernels
import WhaleModels
import WhaleTokenizer

@testable import WhaleEngine

/// Generation on the tiny random Llama (WhaleModelsTests' fixture) with its byte-level tokenizer.
@Suite struct GeneratorTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("WhaleModelsTests/Fixtures/tiny-llama").path

    func makeGenerator() throws -> Generator {
        let model = try ModelRegistry.load(Self.directory)
        let tokenizer = try Tokenizer.load(Self.directory)
        return Generator(
            model: model, tokenizer: tokenizer, context: ForwardContext(pool: ThreadPool(threads: 2)), contextSize: 128)
    }

    func request(_ sampling: SamplingParameters, stop: [String] = [], maxTokens: Int = 24) -> GenerationRequest {
        GenerationRequest(promptTokens: [10, 20, 30, 40], maxTokens: maxTokens, sampling: sampling, stopStrings: stop)
    }

    @Test func sameSeedSameText() throws {
        var sampling = SamplingParameters()
        sampling.seed = 99
        sampling.temperature = 1.2
        let a = try makeGenerator().generate(request(sampling))
        let b = try makeGenerator().generate(request(sampling))
        #expect(a.tokens == b.tokens)
        #expect(a.tokens.count == 24)
        #expect(a.finishReason == .length)
    }

    @Test func streamedTextEqualsResultText() throws {
        var pieces: [String] = []
        let result = try makeGenerator().generate(request(.greedy), onText: { pieces.append($0) })
        #expect(pieces.joined().utf8.elementsEqual(result.text.utf8))
    }

    /// A stop string cuts the text exactly before its first occurrence, and nothing after it is streamed.
    @Test func stopStringsCutExactly() throws {
        let full = try makeGenerator().generate(request(.greedy, maxTokens: 24))
        let text = full.text
        guard text.unicodeScalars.count >= 6 else {
            Issue.record("the tiny model generated too little text: \(text.debugDescription)")
            return
        }
        let scalars = Array(text.unicodeScalars)
        let stop = String(String.UnicodeScalarView(scalars[3..<5]))
        let expected = String(text[..<text.range(of: stop)!.lowerBound])
        var streamed = ""
        let cut = try makeGenerator().generate(request(.greedy, stop: [stop]), onText: { streamed += $0 })
        #expect(cut.finishReason == .stopString)
        #expect(cut.text.utf8.elementsEqual(expected.utf8))
        #expect(streamed.utf8.elementsEqual(expected.utf8))
    }

    @Test func cachedPrefixIsReused() throws {
        let generator = try makeGenerator()
        let first = try generator.generate(request(.greedy, maxTokens: 4))
        #expect(first.promptTokensEvaluated == 4)
        var again = request(.greedy, maxTokens: 4)
        again.promptTokens += [50]
        let second = try generator.generate(again)
        #expect(second.promptTokensEvaluated < again.promptTokens.count)
        // And the result equals a fresh run's.
        let fresh = try makeGenerator().generate(again)
        #expect(second.tokens == fresh.tokens)
    }

    @Test func stopTokensEndGeneration() throws {
        let full = try makeGenerator().generate(request(.greedy, maxTokens: 8))
        var stopping = request(.greedy, maxTokens: 8)
        let stopToken = full.tokens[2]
        stopping.stopTokens = [stopToken]
        let result = try makeGenerator().generate(stopping)
        #expect(result.finishReason == .endOfSequence)
        #expect(result.tokens == Array(full.tokens.prefix { $0 != stopToken }))
    }

    /// The shape a scheduler uses: several sequences' `nextInput`s in one forward pass, each `absorb`ing its
    /// own logits (prompt chunks of 3 beside one-token decode steps), give each sequence exactly the tokens and
    /// text it gets alone.
    @Test func sequencesSteppedInOneBatchEqualSingleRuns() throws {
        let model = try ModelRegistry.load(Self.directory)
        let tokenizer = try Tokenizer.load(Self.directory)
        let context = ForwardContext(pool: ThreadPool(threads: 2))
        var seeded = SamplingParameters()
        seeded.seed = 7
        seeded.temperature = 0.9
        let requests = [
            request(.greedy, maxTokens: 12),
            GenerationRequest(promptTokens: [5, 6, 7, 8, 9, 10, 11], maxTokens: 9, sampling: seeded),
            GenerationRequest(promptTokens: [42], maxTokens: 15, sampling: .greedy),
        ]
        let alone = try requests.map { try makeGenerator().generate($0) }
        let generators = requests.map { _ in
            Generator(model: model, tokenizer: tokenizer, context: context, contextSize: 128)
        }
        var states = try zip(generators, requests).map { try $0.start($1) }
        var texts = requests.map { _ in "" }
        while true {
            let inputs = generators.indices.compactMap { i in
                generators[i].nextInput(for: states[i], limit: 3).map { (i, $0) }
            }
            if inputs.isEmpty { break }
            let logits = try model.forward(inputs.map(\.1), context: context)
            for ((i, input), rows) in zip(inputs, logits) {
                texts[i] += try generators[i].absorb(input, logits: rows, into: &states[i])
            }
        }
        for i in requests.indices {
            texts[i] += states[i].complete()
            let result = states[i].result
            #expect(result.tokens == alone[i].tokens)
            #expect(result.finishReason == alone[i].finishReason)
            #expect(texts[i] == alone[i].text && result.text == alone[i].text)
        }
    }

    @Test func heldBackProtectsPartialStops() {
        #expect(Generator.heldBack("hello wor", stops: ["world"]) == 3)
        #expect(Generator.heldBack("hello", stops: ["xyz"]) == 0)
        #expect(Generator.heldBack("ab", stops: ["abc", "b"]) == 2)
    }

    @Test func emptyPromptIsAnError() throws {
        #expect(throws: WhaleError.self) {
            try makeGenerator().generate(GenerationRequest(promptTokens: [], maxTokens: 4, sampling: .greedy))
        }
    }
}
