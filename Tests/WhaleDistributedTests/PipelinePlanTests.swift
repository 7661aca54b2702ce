import Testing
import WhaleCore
import WhaleModels

@testable import WhaleDistributed

/// How a model's layers are split across ranks, and what is refused before anything loads.
@Suite struct PipelinePlanTests {
    static let gib = 1 << 30
    /// 12 layers of 100 MiB, a 50 MiB embedding, a 60 MiB head.
    let weights = WeightBytes(layers: [Int](repeating: 100 << 20, count: 12), embedding: 50 << 20, head: 60 << 20)

    func ranks(_ hosts: [(String, Int)]) -> [PipelinePlan.Rank] {
        hosts.map { (host: String, bytes: Int) -> PipelinePlan.Rank in
            PipelinePlan.Rank(host: host, availableBytes: bytes)
        }
    }

    @Test func twoRanksOnOneHostSplitEvenly() throws {
        let plan = try PipelinePlan(
            weights: weights, cacheBytesPerLayer: 0, ranks: ranks([("a", 8 * Self.gib), ("a", 8 * Self.gib)]),
            counts: nil)
        #expect(plan.layers == [0..<6, 6..<12])  // the head's 60 MiB is closer to the 6|6 boundary than to 7|5
        let needed: [Int] = [600 << 20, 660 << 20]
        #expect(plan.neededBytes == needed)
    }

    @Test func layersFollowEachHostsMemory() throws {
        // Host b has three times host a's memory: a quarter of the bytes on a.
        let plan = try PipelinePlan(
            weights: weights, cacheBytesPerLayer: 10 << 20, ranks: ranks([("a", 4 * Self.gib), ("b", 12 * Self.gib)]),
            counts: nil)
        #expect(plan.layers == [0..<3, 3..<12])
        // Three ranks, two sharing host b.
        let three = try PipelinePlan(
            weights: weights, cacheBytesPerLayer: 0,
            ranks: ranks([("a", 4 * Self.gib), ("b", 8 * Self.gib), ("b", 8 * Self.gib)]), counts: nil)
        #expect(three.layers == [0..<4, 4..<8, 8..<12])
    }

    @Test func everyRankKeepsALayer() throws {
        let plan = try PipelinePlan(
            weights: weights, cacheBytesPerLayer: 0,
            ranks: ranks([("a", 2 * Self.gib), ("b", 100 * Self.gib), ("c", 2 * Self.gib)]),
            counts: nil)
        #expect(plan.layers.allSatisfy { $0.count >= 1 })
        #expect(plan.layers.first!.lowerBound == 0 && plan.layers.last!.upperBound == 12)
    }

    @Test func explicitCountsAreTakenAndChecked() throws {
        let memory = ranks([("a", 8 * Self.gib), ("b", 8 * Self.gib)])
        let plan = try PipelinePlan(weights: weights, cacheBytesPerLayer: 0, ranks: memory, counts: [7, 5])
        #expect(plan.layers == [0..<7, 7..<12])
        for bad in [[12], [6, 5], [12, 0], [6, 6, 0]] {
            let error = try #require(
                whaleError {
                    try PipelinePlan(weights: weights, cacheBytesPerLayer: 0, ranks: memory, counts: bad)
                })
            #expect(error.field == "--split-layers")
        }
        #expect(try PipelinePlan.parseCounts("7, 5") == [7, 5])
        #expect(throws: WhaleError.self) { try PipelinePlan.parseCounts("7;5") }
        #expect(throws: WhaleError.self) { try PipelinePlan.parseCounts("") }
    }

    @Test func aModelThatDoesNotFitIsRefusedWithWhatItNeeds() throws {
        let error = try #require(
            whaleError {
                try PipelinePlan(
                    weights: weights, cacheBytesPerLayer: 0, ranks: ranks([("a", 1 * Self.gib), ("a", 1 * Self.gib)]),
                    counts: nil)
            })
        #expect(error.code == .tooLarge)
        #expect(error.problem.contains("needs 600 MiB"))  // rank 0: 6 layers, its host's 1 GiB shared by two
        #expect(error.problem.contains("has 512 MiB available"))
        #expect(error.problem.contains("the whole model needs 1.2 GiB"))
        let tooMany = try #require(
            whaleError {
                try PipelinePlan(
                    weights: WeightBytes(layers: [1, 1], embedding: 1, head: 1), cacheBytesPerLayer: 0,
                    ranks: ranks([("a", Self.gib), ("b", Self.gib), ("c", Self.gib)]), counts: nil)
            })
        #expect(tooMany.problem.contains("every rank needs at least one"))
    }
}

/// The pass header every stage reads: what goes in comes out, and damaged headers are refused.
@Suite struct PassMessageTests {
    let message = PassMessage(
        released: [3, 9],
        sequences: [
            .init(id: 12, capacity: 4096, position: 100, logits: .last, tokens: [1, 2, 3], discards: [1..<50]),
            .init(id: 13, capacity: 512, position: 0, logits: .all, tokens: [7], discards: []),
            .init(id: 14, capacity: 512, position: 5, logits: .none, tokens: [], discards: [0..<1, 2..<4]),
        ])

    @Test func roundTrip() throws {
        let hidden: [Float] = (0..<8).map { Float($0) * 0.5 - 1 }
        let bytes = hidden.withUnsafeBufferPointer { message.encode(hidden: $0) }
        let (decoded, offset) = try PassMessage.decode(bytes)
        #expect(decoded == message)
        #expect(decoded.tokenCount == 4)
        #expect(decoded.logitRows == 2)
        let floats = bytes[offset...].withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        #expect(floats == hidden)
    }

    @Test func damagedHeadersAreRefused() throws {
        let bytes = [Float]().withUnsafeBufferPointer { message.encode(hidden: $0) }
        // Every truncation of the header, and a header length beyond the message.
        for length in [0, 7, 8, 16, bytes.count - 8] {
            #expect(throws: WhaleError.self) { try PassMessage.decode(Array(bytes.prefix(length))) }
        }
        var lying = bytes
        lying[0] = 0xFF
        #expect(throws: WhaleError.self) { try PassMessage.decode(lying) }
        var badKind = bytes
        // The first sequence's logit kind: after [n][2 released: 2 words + count][sequences][id, capacity, position].
        let kindWord = 1 + 3 + 1 + 3
        badKind[kindWord * 8] = 7
        let error = try #require(whaleError { try PassMessage.decode(badKind) })
        #expect(error.problem.contains("logit rows kind 7"))
    }
}

/// The `WhaleError` `body` throws, or nil (Swift 6.0's `#require(throws:)` does not return the error).
func whaleError(_ body: () throws -> Any) -> WhaleError? {
    do {
        _ = try body()
        return nil
    } catch {
        return error as? WhaleError
    }
}
