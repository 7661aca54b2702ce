import Dispatch
import Foundation
import Testing
import WhaleKernels

/// The pool's contract: each chunk runs exactly once, `parallelFor` returns only after all chunks, and
/// nothing deadlocks — nested calls, calls from two threads, many tiny jobs, pools started and stopped.
struct ThreadPoolTests {
    /// Runs `parallelFor(count)` and returns how many times each chunk ran.
    static func runCounts(_ pool: ThreadPool, count: Int) -> [Int] {
        var counts = [Int](repeating: 0, count: count)
        counts.withUnsafeMutableBufferPointer { buffer in
            let base = buffer.baseAddress
            pool.parallelFor(count) { chunk in base![chunk] += 1 }
        }
        return counts
    }

    @Test("every chunk runs exactly once", arguments: [1, 2, 3], [0, 1, 2, 7, 64, 1000, 70_000])
    func everyChunkOnce(threads: Int, count: Int) {
        let pool = ThreadPool(threads: threads)
        #expect(pool.threadCount == threads)
        let counts = Self.runCounts(pool, count: count)
        #expect(counts.count == count)
        #expect(counts.allSatisfy { $0 == 1 }, "\(threads) threads, \(count) chunks")
    }

    @Test("negative count runs nothing")
    func negativeCount() {
        var ran = false
        ThreadPool(threads: 2).parallelFor(-3) { _ in ran = true }
        #expect(!ran)
    }

    @Test("parallelFor inside a chunk runs serially and completes", arguments: [1, 2])
    func nested(threads: Int) {
        let pool = ThreadPool(threads: threads)
        var counts = [Int](repeating: 0, count: 8 * 5)
        counts.withUnsafeMutableBufferPointer { buffer in
            let base = buffer.baseAddress!
            pool.parallelFor(8) { outer in
                pool.parallelFor(5) { inner in base[outer * 5 + inner] += 1 }
                pool.parallelFor(0) { _ in base[0] += 100 }
            }
        }
        #expect(counts.allSatisfy { $0 == 1 })
    }

    /// Decode issues hundreds of tiny jobs per token; none may be lost or hang, whether the workers are
    /// spinning or parked.
    @Test("many repeated small jobs", arguments: [1, 2, 3])
    func manyJobs(threads: Int) {
        let pool = ThreadPool(threads: threads)
        var total = 0
        var counts = [Int](repeating: 0, count: 3)
        counts.withUnsafeMutableBufferPointer { buffer in
            let base = buffer.baseAddress!
            for job in 0..<20_000 {
                pool.parallelFor(1 + job % 3) { chunk in base[chunk] += 1 }
                total += 1 + job % 3
            }
        }
        #expect(counts.reduce(0, +) == total)
    }

    /// Two threads sharing one pool: one of them gets the workers, the other runs serially.
    @Test("concurrent callers on one pool")
    func concurrentCallers() {
        let pool = ThreadPool(threads: 2)
        let results = ResultSlots(count: 2)
        DispatchQueue.concurrentPerform(iterations: 2) { caller in
            var ok = true
            for _ in 0..<2000 {
                let counts = ThreadPoolTests.runCounts(pool, count: 17)
                ok = ok && counts.allSatisfy { $0 == 1 }
            }
            results.set(caller, ok)
        }
        #expect(results.values == [true, true])
    }

    @Test("pools start and stop cleanly")
    func startStop() {
        for round in 0..<50 {
            let pool = ThreadPool(threads: 1 + round % 3)
            #expect(Self.runCounts(pool, count: 5).allSatisfy { $0 == 1 })
        }
    }
}

/// One Bool per concurrent caller, each written by its own thread only.
final class ResultSlots: @unchecked Sendable {
    private let storage: UnsafeMutableBufferPointer<Bool>
    init(count: Int) { storage = .allocate(capacity: count).initialized(repeating: false) }
    deinit { storage.deallocate() }
    func set(_ index: Int, _ value: Bool) { storage[index] = value }
    var values: [Bool] { Array(storage) }
}

extension UnsafeMutableBufferPointer {
    fileprivate func initialized(repeating value: Element) -> Self {
        initialize(repeating: value)
        return self
    }
}

/// Per-worker scratch: every chunk learns which thread runs it, and no two chunks of one worker overlap.
@Suite struct ThreadPoolWorkerIndexTests {
    @Test func workerIndicesAreInRangeAndExclusive() {
        let pool = ThreadPool(threads: 3)
        let busy = UnsafeMutablePointer<Int>.allocate(capacity: 3)
        busy.initialize(repeating: 0, count: 3)
        defer { busy.deallocate() }
        let clashes = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        clashes.initialize(to: 0)
        defer { clashes.deallocate() }
        for _ in 0..<20 {
            pool.parallelFor(64) { _, worker in
                precondition(worker >= 0 && worker < 3)
                // Only this worker touches busy[worker]: a second chunk on it at the same time would see 1.
                if busy[worker] != 0 { clashes.pointee = 1 }
                busy[worker] = 1
                for _ in 0..<200 { busy[worker] &+= 0 }
                busy[worker] = 0
            }
        }
        #expect(clashes.pointee == 0)
    }
}

/// The default thread count: one per physical core, read from the kernel's CPU lists.
struct CPUTopologyTests {
    @Test func cpuListsParse() {
        #expect(CPUTopology.parseCPUList("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11])
        #expect(CPUTopology.parseCPUList("5") == [5])
        for bad in ["", "a", "3-1", "1-", "-1", "0-3,,4", "0-99999999"] {
            #expect(CPUTopology.parseCPUList(bad) == nil, "\(bad)")
        }
    }

    @Test func physicalCoresAreAtMostTheUsableCPUs() {
        let cores = CPUTopology.physicalCoreCount
        #expect(cores >= 1 && cores <= ProcessInfo.processInfo.activeProcessorCount)
    }
}
