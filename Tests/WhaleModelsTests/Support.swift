import Foundation
import Testing
import WhaleCore
import WhaleKernels
import WhaleModels

enum Fixtures {
    static let root = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.path
    static func path(_ relative: String) -> String { root + "/" + relative }

    static func json(_ relative: String) throws -> JSONObject {
        let data = try Data(contentsOf: URL(fileURLWithPath: path(relative)))
        return try #require(try data.withUnsafeBytes { try JSONValue.parse($0) }.object)
    }
}

/// Per-position log-probabilities and top candidates from `scoreAll`.
struct Scores {
    var logprobs: [Double]  // logprobs[i] = log p(ids[i + 1] | ids[...i])
    var rows: [[Double]]  // full log-softmax rows
}

/// Runs `ids` through `model` in one pass and returns log-softmax rows.
func score(_ model: any LanguageModel, _ ids: [Int], threads: Int = 2) throws -> Scores {
    let context = ForwardContext(pool: ThreadPool(threads: threads))
    let cache = model.makeCache(capacity: ids.count)
    let logits = try model.forward([SequenceInput(tokens: ids, cache: cache, logits: .all)], context: context)[0]
    let vocabulary = model.vocabularySize
    var rows: [[Double]] = []
    var logprobs: [Double] = []
    for i in 0..<ids.count {
        var row = [Double](repeating: 0, count: vocabulary)
        logits.withUnsafeBufferPointer { buffer in
            row.withUnsafeMutableBufferPointer { out in
                Ops.logSoftmax(buffer.baseAddress! + i * vocabulary, count: vocabulary, output: out.baseAddress!)
            }
        }
        if i + 1 < ids.count { logprobs.append(row[ids[i + 1]]) }
        rows.append(row)
    }
    return Scores(logprobs: logprobs, rows: rows)
}

/// The largest |Δ logprob| between `model` and a golden file (ids, positions with next-token logprob and
/// top candidates, and the full last row).
func maximumLogprobDifference(_ model: any LanguageModel, reference: String) throws -> Double {
    let ref = try Fixtures.json(reference)
    let ids = try #require(ref["ids"]?.array?.compactMap { $0.integer })
    let scores = try score(model, ids)
    var worst = 0.0
    for entry in try #require(ref["positions"]?.array) {
        let position = try #require(entry.object)
        let i = try #require(position["pos"]?.integer)
        worst = max(worst, abs(scores.logprobs[i] - (position["logprob"]?.double ?? .nan)))
        for candidate in position["top"]?.array ?? [] {
            let pair = try #require(candidate.array)
            let id = try #require(pair[0].integer)
            worst = max(worst, abs(scores.rows[i][id] - (pair[1].double ?? .nan)))
        }
    }
    let last = try #require(ref["last_position_logprobs"]?.array?.compactMap { $0.double })
    for (id, value) in last.enumerated() { worst = max(worst, abs(scores.rows[ids.count - 1][id] - value)) }
    return worst
}

/// The real-model tests need the release build (debug kernels are 100–2000× slower): they run under
/// `swift test -c release` (scripts/test.sh does), and are skipped in debug runs.
enum BuildMode {
    static var optimized: Bool { !_isDebugAssertConfiguration() }
}

enum RealModels {
    static let directory: String = {
        if let directory = ProcessInfo.processInfo.environment["WHALE_MODELS_DIR"] { return directory }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("models").path
    }()
    static let smollm2 = directory + "/SmolLM2-135M-Instruct.Q4_1.gguf"
    static var required: Bool { ProcessInfo.processInfo.environment["WHALE_REQUIRE_MODELS"] == "1" }
    static var runSmolLM2: Bool {
        BuildMode.optimized && (FileManager.default.fileExists(atPath: smollm2) || required)
    }
}

/// A model directory copied to a temporary place, to edit its files for bad-input tests.
enum TemporaryModel {
    static func copy(_ directory: String) throws -> String {
        let target = NSTemporaryDirectory() + "whale-model-\(UUID().uuidString)"
        try FileManager.default.copyItem(atPath: directory, toPath: target)
        return target
    }

    /// Rewrites `config.json` of `directory` with `change`.
    static func edit(_ directory: String, _ change: (String) -> String) throws {
        let path = directory + "/config.json"
        let text = try String(contentsOfFile: path, encoding: .utf8)
        try change(text).write(toFile: path, atomically: true, encoding: .utf8)
    }
}
