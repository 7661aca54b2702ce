import ArgumentParser
import Foundation
import WhaleCore
import WhaleDistributed
import WhaleEngine
import WhaleFormats
import WhaleKernels
import WhaleModels

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The MPI job this process is a rank of, when `mpirun` started it with several (README, "Several
/// machines"). MPI is joined when the command first loads a model — so `mpirun … whale inspect` is just
/// several inspections — and left when the command ends: rank 0 stops the workers and prints what each
/// rank held, then every rank finalizes MPI.
final class ClusterSession: @unchecked Sendable {
    /// The session of the command running (bound by `Whale.main` around it).
    @TaskLocal static var current: ClusterSession?

    /// Rank and size from mpirun's environment; nil outside mpirun or with one rank.
    let launched: (rank: Int, size: Int)?
    private(set) var communicator: Communicator?
    /// Rank 0's plan, for the summary at the end.
    private var plan: PipelinePlan?

    init() {
        // An unusable launcher (MPICH) is reported when a model is loaded, not by every command.
        launched = try? Communicator.launchedRanks(ProcessInfo.processInfo.environment)
    }

    /// Whether this process is a rank after 0, which runs layers and never talks to the user.
    var isWorker: Bool { (launched?.rank ?? 0) > 0 }

    /// Joins the job (once); nil when this is not one.
    func join() throws -> Communicator? {
        if let communicator { return communicator }
        guard try Communicator.launchedRanks(ProcessInfo.processInfo.environment) != nil else { return nil }
        let joined = try Communicator()
        communicator = joined
        return joined
    }

    /// Runs `body` on every rank and shares how it went: every rank returns its value, or every rank throws —
    /// rank 0 its own error or the first failed worker's, the workers `WorkerStopped` (they end quietly:
    /// rank 0 reports).
    func agree<T>(_ body: () throws -> T) throws -> T {
        guard let communicator else { return try body() }
        let result = Result { try body() }
        let width = 2048
        var status = [UInt8](repeating: 0, count: width)
        if case .failure(let error) = result {
            status[0] = 1
            let text = Array("\(error)".utf8.prefix(width - 1))
            status.replaceSubrange(1..<(1 + text.count), with: text)
        }
        let all = try communicator.allGather(status, width: width)
        if let failed = all.firstIndex(where: { $0[0] != 0 }) {
            guard communicator.rank == 0 else { throw WorkerStopped() }
            if case .failure(let error) = result { throw error }
            let text = String(decoding: all[failed].dropFirst().prefix { $0 != 0 }, as: UTF8.self)
            throw WhaleError(.distributedError, field: "rank \(failed)", text)
        }
        return try result.get()
    }

    func remember(_ plan: PipelinePlan) { self.plan = plan }

    /// Ends this rank's part: rank 0 stops each worker and prints what every rank held and its peak memory;
    /// then MPI is finalized.
    func finish() {
        guard let communicator else { return }
        if communicator.rank == 0 {
            var peaks: [Int?] = [Benchmark.peakResidentBytes()]
            for rank in 1..<communicator.size {
                _ = try? [UInt8]().withUnsafeBytes { try communicator.send($0, to: rank, tag: .stop) }
            }
            for rank in 1..<communicator.size {
                let report = try? communicator.receiveBytes(
                    communicator.wait(from: rank, tags: [.report], timeout: 10))
                peaks.append(
                    report.flatMap {
                        $0.count == 8
                            ? Int(Int64(littleEndian: $0.withUnsafeBytes { $0.loadUnaligned(as: Int64.self) })) : nil
                    })
            }
            if let plan {
                var err = StandardError()
                let ranks = plan.layers.indices.map { r in
                    "rank \(r): layers \(plan.layers[r].lowerBound)..<\(plan.layers[r].upperBound), peak RSS "
                        + (peaks[r].map { String(format: "%.1f MiB", Double($0) / 1_048_576) } ?? "unknown")
                }
                print("mpi: " + ranks.joined(separator: " | "), to: &err)
            }
        }
        communicator.finalize()
    }
}

/// Thrown on a worker rank whose part is over (rank 0 stopped it, or reported a failure): the command ends
/// with exit code 0 and prints nothing.
struct WorkerStopped: Error {}

/// Loads the model `reference` names: in this process, or — started by mpirun with several ranks — this
/// rank's share of its layers (`PipelinePlan`). Rank 0 gets a `PipelineModel` that runs like any model;
/// a worker rank serves its layers until rank 0 is done and then throws `WorkerStopped`.
///
/// - Parameters:
///   - cacheTokens: tokens of cache the job will hold (all sequences), for the memory check.
///   - split: `--split-layers`, layer counts per rank.
func loadModel(
    _ reference: String, pull: Bool, options: LoadOptions, threads: Int, cacheTokens: Int, split: String?
) throws -> (model: any LanguageModel, files: ModelFiles) {
    guard let session = ClusterSession.current, let communicator = try session.join() else {
        if split != nil {
            throw WhaleError(
                .invalidArgument, field: "--split-layers", "only means something across the ranks of mpirun",
                hint: "start whale with mpirun -np N, or leave out --split-layers")
        }
        let files = try ModelFiles.open(try modelPath(reference, pull: pull))
        return (try ModelRegistry.load(files, options: options), files)
    }
    // Rank 0 resolves (and pulls) the model first; ranks sharing its host then find it in the cache.
    let path0: String? = try session.agree { communicator.rank == 0 ? try modelPath(reference, pull: pull) : nil }
    let path = try session.agree { try path0 ?? modelPath(reference, pull: pull) }
    let files = try session.agree { try ModelFiles.open(path) }
    let counts = try split.map { try PipelinePlan.parseCounts($0) }
    let weights = try session.agree { try ModelRegistry.weightBytes(files) }
    // Every rank's host and free memory, then the same plan on every rank.
    let me = PipelinePlan.Rank.current(host: communicator.host)
    var record = [UInt8](repeating: 0, count: 264)
    withUnsafeBytes(of: Int64(me.availableBytes).littleEndian) { record.replaceSubrange(0..<8, with: $0) }
    let hostBytes = Array(me.host.utf8.prefix(255))
    record.replaceSubrange(8..<(8 + hostBytes.count), with: hostBytes)
    let ranks = try communicator.allGather(record, width: record.count).map { bytes in
        PipelinePlan.Rank(
            host: String(decoding: bytes[8...].prefix { $0 != 0 }, as: UTF8.self),
            availableBytes: Int(Int64(littleEndian: bytes.withUnsafeBytes { $0.loadUnaligned(as: Int64.self) })))
    }
    let cacheBytes = try ModelRegistry.cacheDescription(files, precision: options.attentionPrecision)?.bytesPerToken
    let cachePerLayer = (cacheBytes ?? 0) / max(1, weights.layers.count)
    let plan = try session.agree {
        try PipelinePlan(
            weights: weights, cacheBytesPerLayer: cachePerLayer * cacheTokens, ranks: ranks, counts: counts)
    }
    var stageOptions = options
    stageOptions.layers = plan.layers[communicator.rank]
    let stage = try session.agree { try ModelRegistry.loadStage(files, options: stageOptions) }
    if communicator.rank == 0 {
        session.remember(plan)
        return (PipelineModel(stage: stage, communicator: communicator, plan: plan), files)
    }
    // A worker: rank 0 ends the job (it tells the workers); mpirun's Ctrl-C / SIGTERM reaches every rank,
    // and rank 0 shuts down in order (streams finished), so the workers wait for its word.
    signal(SIGINT, SIG_IGN)
    signal(SIGTERM, SIG_IGN)
    let worker = PipelineWorker(
        stage: stage, communicator: communicator, context: ForwardContext(pool: ThreadPool(threads: threads)))
    try worker.run(peakResidentBytes: Benchmark.peakResidentBytes)
    throw WorkerStopped()
}
