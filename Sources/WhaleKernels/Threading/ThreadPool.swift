import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A persistent pool of worker threads (pthreads), created once and passed to every kernel — never global.
///
/// Decode issues ~200 small matrix-vector products per token, each worth 5–50 µs of work, so the cost of
/// handing out a job matters: `DispatchQueue.concurrentPerform` cost more than the work it split. Workers
/// therefore spin for a while after each job (a new job is picked up within a fraction of a microsecond)
/// and only then park on a condition variable, so an idle pool costs no CPU.
///
/// `parallelFor` hands chunks out through one atomic counter: a worker that the OS deschedules only delays
/// the chunk it has claimed, never the others, and the caller works on chunks too instead of waiting.
///
/// A pool runs one job at a time. A `parallelFor` issued while the pool is busy — from inside a chunk
/// (nested) or from another thread — runs serially on its caller; it is correct, just not parallel.
public final class ThreadPool: @unchecked Sendable {
    /// Threads that run chunks, the caller of `parallelFor` included.
    public let threadCount: Int
    /// Nil when `threadCount == 1`.
    private let workers: PoolWorkers?

    /// Starts `threads - 1` worker threads; the thread that calls `parallelFor` is the last one.
    ///
    /// - Precondition: `threads >= 1`. With 1, no thread is started and everything runs on the caller.
    public init(threads: Int) {
        precondition(threads >= 1, "ThreadPool needs at least 1 thread, got \(threads)")
        workers = threads > 1 ? PoolWorkers(workerCount: threads - 1) : nil
        threadCount = threads
    }

    deinit { workers?.stop() }

    /// Calls `body(chunk)` for each chunk in `0..<count`, spread over the pool's threads plus the caller, and
    /// returns when all are done. Chunks are claimed by atomic counter so a descheduled worker cannot stall
    /// the rest. The order in which chunks run is unspecified; each runs exactly once.
    public func parallelFor(_ count: Int, _ body: (Int) -> Void) {
        parallelFor(count) { chunk, _ in body(chunk) }
    }

    /// `parallelFor`, also telling each chunk which thread runs it (`worker` in `0..<threadCount`): no two
    /// chunks with the same `worker` run at the same time, so a chunk may use scratch memory set aside per
    /// worker (one score row per thread instead of one per chunk). A call that runs serially (one chunk, no
    /// workers, or a busy pool) gives every chunk worker 0.
    public func parallelFor(_ count: Int, _ body: (_ chunk: Int, _ worker: Int) -> Void) {
        if count <= 0 { return }
        guard count > 1, let workers else {
            for chunk in 0..<count { body(chunk, 0) }
            return
        }
        if count > PoolWorkers.maximumChunks {
            // The claim word has 16 bits for the chunk index: group chunks into at most that many runs.
            let perGroup = (count + PoolWorkers.maximumChunks - 1) / PoolWorkers.maximumChunks
            parallelFor((count + perGroup - 1) / perGroup) { group, worker in
                for chunk in (group * perGroup)..<min(count, (group + 1) * perGroup) { body(chunk, worker) }
            }
            return
        }
        withoutActuallyEscaping(body) { escapable in
            var job = escapable
            withUnsafePointer(to: &job) { jobPointer in
                if !workers.run(count: count, job: UnsafeRawPointer(jobPointer)) {
                    for chunk in 0..<count { escapable(chunk, 0) }
                }
            }
        }
    }
}

/// The shared state of a pool's worker threads.
///
/// Protocol: the caller stores the job (a pointer to the `(Int) -> Void` closure) and a claim word
/// `tag << 32 | count << 16 | next`, then bumps `generation` to wake the workers. Every thread claims
/// chunks by compare-and-swap on the claim word, which fails once `next == count` or once the tag belongs
/// to a later job — so a worker that wakes late never runs a chunk of a finished job, and a successful
/// claim proves the job (and its closure) is still alive, because the caller waits until `completed`
/// reaches `count` before it returns.
final class PoolWorkers: @unchecked Sendable {
    /// Chunks one job can have: the width of the claim word's `count` and `next` fields.
    static let maximumChunks = 0xFFFF
    /// How long a worker spins after a job before it parks: longer than the gaps between the parallel jobs
    /// of a decode step (its serial stretches — norms, routing, sampling — last tens of microseconds), short
    /// enough that a pool left waiting (between requests, or an MPI rank whose turn is over, on the cores
    /// the next rank computes on) soon gives its cores back. A count of spins was not a duration: 2¹⁵
    /// lasted ~15 µs on AMD Zen 4, and workers parked ~60 times per DeepSeek decode step, each costing the
    /// caller a futex wake and the job half its threads while the worker woke up.
    static let spinNanoseconds: UInt64 = 500_000

    let workerCount: Int
    /// Bumped once per job (and once at shutdown); workers wait for it to change.
    let generation = Atomic<Int>(0)
    /// `tag << 32 | count << 16 | next`, see the type's documentation.
    let claim = Atomic<UInt64>(0)
    /// Chunks finished in the current job.
    let completed = Atomic<Int>(0)
    /// The current job's closure, as a pointer to a `(chunk, worker) -> Void` on the caller's stack.
    let job = Atomic<UnsafeRawPointer?>(nil)
    /// Whether a `parallelFor` is running; a second one (nested or concurrent) runs serially instead.
    let busy = Atomic<Bool>(false)
    /// Workers parked (or about to park) on `wakeUp`.
    let sleepers = Atomic<Int>(0)
    let shuttingDown = Atomic<Bool>(false)

    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let wakeUp: UnsafeMutablePointer<pthread_cond_t>
    private var threads: [pthread_t] = []

    init(workerCount: Int) {
        self.workerCount = workerCount
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        wakeUp = .allocate(capacity: 1)
        wakeUp.initialize(to: pthread_cond_t())
        pthread_cond_init(wakeUp, nil)
        for index in 0..<workerCount {
            threads.append(startThread(index: index))
        }
    }

    deinit {
        pthread_cond_destroy(wakeUp)
        pthread_mutex_destroy(mutex)
        wakeUp.deallocate()
        mutex.deallocate()
    }

    private func startThread(index: Int) -> pthread_t {
        let context = Unmanaged.passRetained(WorkerStart(workers: self, index: index)).toOpaque()
        #if canImport(Darwin)
            var thread: pthread_t? = nil
        #else
            var thread = pthread_t()
        #endif
        let status = pthread_create(
            &thread, nil,
            { argument in
                let context: UnsafeMutableRawPointer? = argument
                let start = Unmanaged<WorkerStart>.fromOpaque(context!).takeRetainedValue()
                start.workers.workerLoop(index: start.index)
                return nil
            }, context)
        precondition(status == 0, "ThreadPool: pthread_create failed with error \(status)")
        #if canImport(Darwin)
            return thread!
        #else
            return thread
        #endif
    }

    /// Wakes the workers for good and waits for them to exit.
    func stop() {
        shuttingDown.store(true, ordering: .sequentiallyConsistent)
        generation.add(1, ordering: .sequentiallyConsistent)
        pthread_mutex_lock(mutex)
        pthread_cond_broadcast(wakeUp)
        pthread_mutex_unlock(mutex)
        for thread in threads { pthread_join(thread, nil) }
        threads.removeAll()
    }

    /// Runs one job on the workers and the caller; false (nothing run) if the pool is busy.
    func run(count: Int, job jobPointer: UnsafeRawPointer) -> Bool {
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            return false
        }
        let tag = UInt64(truncatingIfNeeded: generation.load(ordering: .relaxed) &+ 1) & 0xFFFF_FFFF
        completed.store(0, ordering: .relaxed)
        job.store(jobPointer, ordering: .relaxed)
        claim.store(tag << 32 | UInt64(count) << 16, ordering: .releasing)
        generation.add(1, ordering: .sequentiallyConsistent)
        if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
            pthread_mutex_lock(mutex)
            pthread_cond_broadcast(wakeUp)
            pthread_mutex_unlock(mutex)
        }
        let done = runChunks(tag: tag, worker: workerCount)
        var finished = completed.add(done, ordering: .acquiringAndReleasing).newValue
        var spins = 0
        while finished < count {
            spins &+= 1
            if spins > 1 << 12 { sched_yield() }
            finished = completed.load(ordering: .acquiring)
        }
        job.store(nil, ordering: .relaxed)
        busy.store(false, ordering: .releasing)
        return true
    }

    /// Claims and runs chunks of job `tag` until none are left; returns how many this thread ran. `worker`
    /// is this thread's index: 0..<workerCount for the workers, workerCount for the caller.
    private func runChunks(tag: UInt64, worker: Int) -> Int {
        var done = 0
        var word = claim.load(ordering: .acquiring)
        while true {
            let next = word & 0xFFFF
            guard word >> 32 == tag, next < (word >> 16) & 0xFFFF else { return done }
            let (exchanged, current) = claim.compareExchange(
                expected: word, desired: word &+ 1, ordering: .acquiringAndReleasing)
            if !exchanged {
                word = current
                continue
            }
            // The claim succeeded, so the job is still running and `job` is its closure.
            let body = job.load(ordering: .relaxed)!.assumingMemoryBound(to: ((Int, Int) -> Void).self)
            body.pointee(Int(next), worker)
            done &+= 1
            word = claim.load(ordering: .acquiring)
        }
    }

    private func workerLoop(index: Int) {
        var seen = 0
        while true {
            var current = generation.load(ordering: .acquiring)
            var spins = 0
            var deadline: UInt64 = 0
            while current == seen {
                spins &+= 1
                // The clock every 1,024 spins: a few microseconds apart, and a negligible cost.
                if spins & 1023 == 0 {
                    let now = Self.monotonicNanoseconds()
                    if deadline == 0 {
                        deadline = now &+ PoolWorkers.spinNanoseconds
                    } else if now > deadline {
                        current = park(seen: seen)
                        break
                    }
                }
                current = generation.load(ordering: .acquiring)
            }
            seen = current
            if shuttingDown.load(ordering: .acquiring) { return }
            let tag = UInt64(truncatingIfNeeded: current) & 0xFFFF_FFFF
            let done = runChunks(tag: tag, worker: index)
            if done > 0 { completed.add(done, ordering: .releasing) }
        }
    }

    /// CLOCK_MONOTONIC in nanoseconds (a vDSO call, no system call).
    private static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
    }

    /// Sleeps until `generation` moves past `seen`; returns its new value.
    private func park(seen: Int) -> Int {
        pthread_mutex_lock(mutex)
        sleepers.add(1, ordering: .sequentiallyConsistent)
        var current = generation.load(ordering: .sequentiallyConsistent)
        while current == seen {
            pthread_cond_wait(wakeUp, mutex)
            current = generation.load(ordering: .sequentiallyConsistent)
        }
        sleepers.subtract(1, ordering: .sequentiallyConsistent)
        pthread_mutex_unlock(mutex)
        return current
    }
}

/// What a new worker thread is handed: its pool and its index.
private final class WorkerStart {
    let workers: PoolWorkers
    let index: Int
    init(workers: PoolWorkers, index: Int) {
        self.workers = workers
        self.index = index
    }
}
