import Foundation
import WhaleCore
import WhaleModels

/// Which decoder layers each rank of a pipeline runs, and what that costs it in memory.
///
/// Ranks take consecutive layers in rank order (rank 0 the first, with the embedding; the last rank the
/// output head). By default each rank's share of the model's bytes — its layers' weights and cache, the
/// head on the last — follows its share of the memory available to the job, ranks on one host splitting
/// that host's memory evenly; `--split-layers` chooses the counts instead. A plan that does not fit is
/// refused before anything is loaded.
public struct PipelinePlan: Sendable, Equatable {
    /// What a rank reports about itself before the split.
    public struct Rank: Sendable, Equatable {
        public var host: String
        /// Memory this process can use without swapping (Linux's MemAvailable), bytes.
        public var availableBytes: Int

        public init(host: String, availableBytes: Int) {
            self.host = host
            self.availableBytes = availableBytes
        }
    }

    /// Per rank, the layers it runs.
    public var layers: [Range<Int>]
    /// Per rank, the bytes it needs: its layers' weights and cache (and the head, on the last rank).
    public var neededBytes: [Int]

    /// - Parameters:
    ///   - weights: the model's bytes per layer, embedding and head.
    ///   - cacheBytesPerLayer: one layer's cache for the context the job runs (all sequences).
    ///   - ranks: each rank's host and available memory, in rank order.
    ///   - counts: layers per rank (`--split-layers`), or nil to split by memory.
    public init(weights: WeightBytes, cacheBytesPerLayer: Int, ranks: [Rank], counts: [Int]?) throws {
        let layerCount = weights.layers.count
        let n = ranks.count
        precondition(n >= 1)
        let cost = weights.layers.map { $0 + cacheBytesPerLayer }
        // Ranks on one host share its memory.
        var ranksOnHost: [String: Int] = [:]
        for rank in ranks { ranksOnHost[rank.host, default: 0] += 1 }
        let available = ranks.map { $0.availableBytes / ranksOnHost[$0.host]! }

        var bounds: [Int]  // rank r runs bounds[r]..<bounds[r + 1]
        if let counts {
            guard counts.count == n else {
                throw WhaleError(
                    .invalidArgument, field: "--split-layers",
                    "\(counts.count) layer counts for \(n) ranks",
                    hint: "give one count per rank of mpirun -np \(n), summing to \(layerCount)")
            }
            guard counts.allSatisfy({ $0 >= 1 }), counts.reduce(0, +) == layerCount else {
                throw WhaleError(
                    .invalidArgument, field: "--split-layers",
                    "\(counts.map(String.init).joined(separator: ",")) is not \(n) counts of 1 or more summing to the "
                        + "model's \(layerCount) layers",
                    hint: "e.g. --split-layers \(Self.even(layerCount, n).map(String.init).joined(separator: ","))")
            }
            bounds = [0]
            for count in counts { bounds.append(bounds.last! + count) }
        } else {
            guard layerCount >= n else {
                throw WhaleError(
                    .invalidArgument, field: "mpirun -np",
                    "\(n) ranks for a model of \(layerCount) layers: every rank needs at least one",
                    hint: "start at most \(layerCount) ranks")
            }
            let totalAvailable = available.reduce(0, +)
            let total = cost.reduce(0, +) + weights.head
            var prefix = [0]
            for c in cost { prefix.append(prefix.last! + c) }
            bounds = [0]
            var share = 0
            for r in 0..<(n - 1) {
                share += available[r]
                let target = totalAvailable > 0 ? Double(total) * Double(share) / Double(totalAvailable) : 0
                // The boundary closest to the target that leaves every later rank a layer.
                let candidates = (bounds[r] + 1)...(layerCount - (n - 1 - r))
                let best = candidates.min { abs(Double(prefix[$0]) - target) < abs(Double(prefix[$1]) - target) }!
                bounds.append(best)
            }
            bounds.append(layerCount)
        }
        layers = (0..<n).map { bounds[$0]..<bounds[$0 + 1] }
        neededBytes = layers.enumerated().map { r, range in
            range.reduce(0) { $0 + cost[$1] } + (r == n - 1 ? weights.head : 0)
        }
        for r in 0..<n where neededBytes[r] > available[r] {
            let total = cost.reduce(0, +) + weights.head
            throw WhaleError(
                .tooLarge, field: "memory",
                "rank \(r) (\(ranks[r].host)) needs \(Self.gib(neededBytes[r])) for layers "
                    + "\(layers[r].lowerBound)..<\(layers[r].upperBound)\(r == n - 1 ? " and the output head" : "") "
                    + "but has \(Self.gib(available[r])) available"
                    + (ranksOnHost[ranks[r].host]! > 1
                        ? " (its host's memory shared by \(ranksOnHost[ranks[r].host]!) ranks)" : "")
                    + "; the whole model needs \(Self.gib(total)) with its cache, the job has "
                    + "\(Self.gib(available.reduce(0, +)))",
                hint: counts == nil
                    ? "add ranks on other machines, or use a smaller --ctx"
                    : "move layers to ranks with more memory, or leave out --split-layers to split by memory")
        }
    }

    static func even(_ layers: Int, _ ranks: Int) -> [Int] {
        (0..<ranks).map { layers / ranks + ($0 < layers % ranks ? 1 : 0) }
    }

    static func gib(_ bytes: Int) -> String {
        let value = Double(bytes) / 1_073_741_824
        return value < 1 ? "\(Int((Double(bytes) / 1_048_576).rounded())) MiB" : "\((value * 10).rounded() / 10) GiB"
    }

    /// `7,5` → [7, 5].
    public static func parseCounts(_ text: String) throws -> [Int] {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false)
        let counts = parts.map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, counts.allSatisfy({ $0 != nil }) else {
            throw WhaleError(
                .invalidArgument, field: "--split-layers", "\"\(text)\" is not a list of layer counts",
                hint: "give one count per rank, e.g. --split-layers 7,5")
        }
        return counts.map { $0! }
    }
}

extension PipelinePlan.Rank {
    /// This process's host and the memory it can use: Linux's MemAvailable (free memory plus what the kernel
    /// can reclaim, the mapped model's cached pages included), elsewhere the physical memory.
    public static func current(host: String) -> PipelinePlan.Rank {
        PipelinePlan.Rank(host: host, availableBytes: availableMemory())
    }

    static func availableMemory() -> Int {
        if let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) {
            for line in text.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
                let fields = line.split(separator: " ")
                if fields.count >= 2, let kib = Int(fields[1]) { return kib * 1024 }
            }
        }
        return Int(clamping: ProcessInfo.processInfo.physicalMemory)
    }
}
