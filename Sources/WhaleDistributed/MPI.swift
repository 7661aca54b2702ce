import WhaleCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Open MPI's C API, loaded at run time with `dlopen`: whale builds and runs where MPI is not installed (a
/// Raspberry Pi, a Mac), and needs libmpi only when `mpirun` starts it with several ranks.
///
/// Only Open MPI's ABI is bound (libmpi.so.40, Open MPI 3 to 5, Debian's `libopenmpi3`): its handles are
/// pointers to exported objects (`MPI_COMM_WORLD` is `&ompi_mpi_comm_world`), and its `MPI_Status` starts
/// with `MPI_SOURCE`, `MPI_TAG`, `MPI_ERROR`. MPICH's ABI (integer handles) is different; it is refused by
/// name rather than misread.
final class MPILibrary: @unchecked Sendable {
    typealias Handle = UnsafeMutableRawPointer
    typealias InitThread =
        @convention(c) (
            UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?,
            Int32, UnsafeMutablePointer<Int32>
        ) -> Int32
    typealias CommQuery = @convention(c) (Handle, UnsafeMutablePointer<Int32>) -> Int32
    typealias Send = @convention(c) (UnsafeRawPointer?, Int32, Handle, Int32, Int32, Handle) -> Int32
    typealias Isend =
        @convention(c) (UnsafeRawPointer?, Int32, Handle, Int32, Int32, Handle, UnsafeMutablePointer<Handle?>) -> Int32
    typealias Test =
        @convention(c) (UnsafeMutablePointer<Handle?>, UnsafeMutablePointer<Int32>, UnsafeMutableRawPointer?) -> Int32
    typealias Recv =
        @convention(c) (UnsafeMutableRawPointer?, Int32, Handle, Int32, Int32, Handle, UnsafeMutableRawPointer?) ->
        Int32
    typealias Iprobe =
        @convention(c) (Int32, Int32, Handle, UnsafeMutablePointer<Int32>, UnsafeMutableRawPointer) -> Int32
    typealias GetCount = @convention(c) (UnsafeRawPointer, Handle, UnsafeMutablePointer<Int32>) -> Int32
    typealias Allgather =
        @convention(c) (UnsafeRawPointer?, Int32, Handle, UnsafeMutableRawPointer?, Int32, Handle, Handle) -> Int32
    typealias Abort = @convention(c) (Handle, Int32) -> Int32
    typealias Finalize = @convention(c) () -> Int32
    typealias ProcessorName = @convention(c) (UnsafeMutablePointer<CChar>, UnsafeMutablePointer<Int32>) -> Int32
    typealias SetErrorHandler = @convention(c) (Handle, Handle) -> Int32

    let initThread: InitThread
    let commRank: CommQuery
    let commSize: CommQuery
    let send: Send
    let isend: Isend
    let test: Test
    let recv: Recv
    let iprobe: Iprobe
    let getCount: GetCount
    let allgather: Allgather
    let abort: Abort
    let finalize: Finalize
    let processorName: ProcessorName
    let setErrorHandler: SetErrorHandler
    let commWorld: Handle
    let byte: Handle
    let float: Handle
    let errorsReturn: Handle

    /// `MPI_ANY_SOURCE`, `MPI_ANY_TAG` (both -1 in Open MPI).
    static let anySource: Int32 = -1
    static let anyTag: Int32 = -1
    /// `MPI_THREAD_SERIALIZED`: any thread may call MPI, one at a time (the server's scheduler thread does).
    static let threadSerialized: Int32 = 2
    /// `sizeof(MPI_Status)` in Open MPI is 24; room to spare.
    static let statusBytes = 64
    /// `MPI_MAX_PROCESSOR_NAME` (256 in Open MPI).
    static let maxProcessorName = 256

    /// The library names tried, in order: Debian's and Open MPI's own soname, then the unversioned names.
    static let candidates = ["libmpi.so.40", "libmpi.so", "libmpi.40.dylib", "libmpi.dylib"]

    init() throws {
        var library: UnsafeMutableRawPointer?
        for name in Self.candidates {
            // RTLD_GLOBAL: Open MPI's components (dlopened by libmpi itself) resolve symbols against it.
            library = dlopen(name, RTLD_NOW | RTLD_GLOBAL)
            if library != nil { break }
        }
        guard let library else {
            throw WhaleError(
                .distributedError, field: "mpi",
                "started by mpirun with several ranks, but Open MPI's library (libmpi.so.40) cannot be loaded",
                hint: "install Open MPI (Debian: apt install openmpi-bin) on every machine of the job")
        }
        func symbol<T>(_ name: String, as type: T.Type) throws -> T {
            guard let address = dlsym(library, name) else {
                let hint =
                    name.hasPrefix("ompi_")
                    ? "this libmpi is not Open MPI (MPICH and others have another ABI); run whale with Open MPI"
                    : "the MPI library is incomplete; reinstall Open MPI"
                throw WhaleError(.distributedError, field: "mpi", "libmpi has no symbol \(name)", hint: hint)
            }
            return unsafeBitCast(address, to: type)
        }
        func object(_ name: String) throws -> Handle {
            guard let address = dlsym(library, name) else {
                throw WhaleError(
                    .distributedError, field: "mpi", "libmpi has no symbol \(name)",
                    hint: "this libmpi is not Open MPI (MPICH and others have another ABI); run whale with Open MPI")
            }
            return address
        }
        commWorld = try object("ompi_mpi_comm_world")
        byte = try object("ompi_mpi_byte")
        float = try object("ompi_mpi_float")
        errorsReturn = try object("ompi_mpi_errors_return")
        initThread = try symbol("MPI_Init_thread", as: InitThread.self)
        commRank = try symbol("MPI_Comm_rank", as: CommQuery.self)
        commSize = try symbol("MPI_Comm_size", as: CommQuery.self)
        send = try symbol("MPI_Send", as: Send.self)
        isend = try symbol("MPI_Isend", as: Isend.self)
        test = try symbol("MPI_Test", as: Test.self)
        recv = try symbol("MPI_Recv", as: Recv.self)
        iprobe = try symbol("MPI_Iprobe", as: Iprobe.self)
        getCount = try symbol("MPI_Get_count", as: GetCount.self)
        allgather = try symbol("MPI_Allgather", as: Allgather.self)
        abort = try symbol("MPI_Abort", as: Abort.self)
        finalize = try symbol("MPI_Finalize", as: Finalize.self)
        processorName = try symbol("MPI_Get_processor_name", as: ProcessorName.self)
        setErrorHandler = try symbol("MPI_Comm_set_errhandler", as: SetErrorHandler.self)
    }
}

/// The job's processes (`MPI_COMM_WORLD`) as whale uses them: whole messages of bytes or floats between
/// two ranks, and every rank's share of a fixed-size gather. Calls are serialized by the caller (one thread
/// at a time: the command's, then the scheduler's).
///
/// Waiting polls (`MPI_Iprobe`) with short sleeps instead of blocking in `MPI_Recv`, which in Open MPI spins
/// a core at 100 %: a rank waiting for its turn in the pipeline leaves the CPU to the rank computing, which
/// on one machine shares the same cores.
public final class Communicator: @unchecked Sendable {
    let mpi: MPILibrary
    public let rank: Int
    public let size: Int
    /// This rank's host (`MPI_Get_processor_name`).
    public let host: String
    private var finalized = false

    /// Message kinds (MPI tags).
    public enum Tag: Int32, Sendable {
        /// A forward pass for the next stage: header and residual stream.
        case pass = 1
        /// The last stage's logits, to rank 0.
        case logits = 2
        /// Rank 0 to a worker: the job is done.
        case stop = 3
        /// A worker's error, to rank 0.
        case failure = 4
        /// A worker's final report to rank 0 (its peak memory).
        case report = 5
    }

    /// The rank and size `mpirun` gives this process (Open MPI's environment), or nil when it was not
    /// started by `mpirun` with more than one rank. MPICH and other launchers are named, not misread.
    public static func launchedRanks(_ environment: [String: String]) throws -> (rank: Int, size: Int)? {
        if let size = environment["OMPI_COMM_WORLD_SIZE"].flatMap(Int.init),
            let rank = environment["OMPI_COMM_WORLD_RANK"].flatMap(Int.init)
        {
            return size > 1 ? (rank, size) : nil
        }
        if let size = environment["PMI_SIZE"].flatMap(Int.init), size > 1 {
            throw WhaleError(
                .distributedError, field: "mpi",
                "started by a launcher other than Open MPI's mpirun (PMI_SIZE=\(size))",
                hint: "whale runs across machines with Open MPI (Debian: apt install openmpi-bin)")
        }
        return nil
    }

    /// Initializes MPI (`MPI_Init_thread`, serialized threads) and joins `MPI_COMM_WORLD`.
    public init() throws {
        mpi = try MPILibrary()
        var provided: Int32 = 0
        try Self.check(mpi.initThread(nil, nil, MPILibrary.threadSerialized, &provided), "MPI_Init_thread")
        guard provided >= MPILibrary.threadSerialized else {
            _ = mpi.finalize()
            throw WhaleError(
                .distributedError, field: "mpi",
                "this Open MPI gives thread level \(provided); whale needs MPI_THREAD_SERIALIZED (2)",
                hint: "use an Open MPI built with thread support (Debian's is)")
        }
        // Errors come back as codes (turned into WhaleErrors) instead of aborting the job unexplained.
        _ = mpi.setErrorHandler(mpi.commWorld, mpi.errorsReturn)
        var value: Int32 = 0
        try Self.check(mpi.commRank(mpi.commWorld, &value), "MPI_Comm_rank")
        rank = Int(value)
        try Self.check(mpi.commSize(mpi.commWorld, &value), "MPI_Comm_size")
        size = Int(value)
        var name = [CChar](repeating: 0, count: MPILibrary.maxProcessorName + 1)
        var length: Int32 = 0
        _ = mpi.processorName(&name, &length)
        host = String(decoding: name.prefix(Int(max(0, length))).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func seconds() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) * 1e-9
    }

    static func check(_ code: Int32, _ call: String) throws {
        guard code == 0 else {
            throw WhaleError(
                .distributedError, field: "mpi", "\(call) failed with MPI error \(code)",
                hint: "another rank of the job may have ended; see mpirun's messages")
        }
    }

    /// Sends `bytes` to `rank` as one message.
    public func send(_ bytes: UnsafeRawBufferPointer, to rank: Int, tag: Tag) throws {
        let count = try Self.messageCount(bytes.count, of: "bytes")
        try Self.check(
            mpi.send(bytes.baseAddress, count, mpi.byte, Int32(rank), tag.rawValue, mpi.commWorld), "MPI_Send")
    }

    /// Sends `floats` to `rank` as one message (counted in floats: up to 8 GiB).
    public func send(floats: UnsafeBufferPointer<Float>, to rank: Int, tag: Tag) throws {
        let count = try Self.messageCount(floats.count, of: "floats")
        try Self.check(
            mpi.send(floats.baseAddress, count, mpi.float, Int32(rank), tag.rawValue, mpi.commWorld), "MPI_Send")
    }

    /// A message's element count as MPI takes it (a C int), or an error for one too large.
    static func messageCount(_ count: Int, of unit: String) throws -> Int32 {
        guard count <= Int(Int32.max) else {
            throw WhaleError(
                .tooLarge, field: "mpi", "a message of \(count) \(unit) is over MPI's limit per message",
                hint: "use a smaller batch or context")
        }
        return Int32(count)
    }

    /// A message on its way (`MPI_Isend`): its bytes stay here until `complete` sees it delivered.
    public final class PendingSend: @unchecked Sendable {
        fileprivate var request: MPILibrary.Handle?
        fileprivate let bytes: UnsafeMutableRawBufferPointer

        fileprivate init(_ bytes: UnsafeMutableRawBufferPointer) { self.bytes = bytes }

        deinit { bytes.deallocate() }
    }

    /// Starts sending `bytes` to `rank` without waiting for it to be received — for rank 0, which sends
    /// passes to rank 1 while the last rank may be sending it logits: two blocking sends of large messages
    /// towards each other would wait for each other for ever.
    public func startSend(_ bytes: UnsafeRawBufferPointer, to rank: Int, tag: Tag) throws -> PendingSend {
        let count = try Self.messageCount(bytes.count, of: "bytes")
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 16)
        if bytes.count > 0 { copy.baseAddress!.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
        let pending = PendingSend(copy)
        try Self.check(
            mpi.isend(
                copy.baseAddress, count, mpi.byte, Int32(rank), tag.rawValue, mpi.commWorld,
                &pending.request), "MPI_Isend")
        return pending
    }

    /// Waits until `pending` has been delivered.
    public func complete(_ pending: PendingSend) throws {
        try poll {
            guard pending.request != nil else { return true }
            var flag: Int32 = 0
            try Self.check(mpi.test(&pending.request, &flag, nil), "MPI_Test")
            return flag != 0
        }
    }

    /// Calls `done` until it is true, sleeping in between: spinning briefly (an answer often comes within
    /// microseconds), then in growing steps up to 100 µs — a waiting rank costs next to no CPU and answers
    /// within a tenth of a millisecond. With a `timeout` (seconds), an error when it passes.
    private func poll(timeout: Double? = nil, waitingFor source: Int? = nil, _ done: () throws -> Bool) throws {
        var pause = 0  // microseconds
        let start = Self.seconds()
        while try !done() {
            if let timeout, Self.seconds() - start > timeout {
                throw WhaleError(
                    .distributedError, field: source.map { "rank \($0)" } ?? "mpi",
                    "no answer within \(Int(timeout)) s", hint: "the rank may have ended; see mpirun's messages")
            }
            if pause > 0 { usleep(UInt32(pause)) }
            pause = pause == 0 ? 5 : min(pause * 2, 100)
        }
    }

    /// A message that has arrived: who sent it, its kind and its size (in bytes or floats, as received).
    public struct Arrival: Sendable {
        public var source: Int
        public var tag: Tag
        fileprivate var status: [UInt8]
    }

    /// Waits for the next message from `source` (nil: any rank) whose tag is one of `tags`; with a `timeout`
    /// (seconds), an error when none comes in time.
    public func wait(from source: Int?, tags: Set<Tag>, timeout: Double? = nil) throws -> Arrival {
        var status = [UInt8](repeating: 0, count: MPILibrary.statusBytes)
        try poll(timeout: timeout, waitingFor: source) {
            var flag: Int32 = 0
            let code = status.withUnsafeMutableBytes { buffer in
                mpi.iprobe(Int32(source ?? -1), MPILibrary.anyTag, mpi.commWorld, &flag, buffer.baseAddress!)
            }
            try Self.check(code, "MPI_Iprobe")
            return flag != 0
        }
        let (from, tagValue) = status.withUnsafeBytes { buffer in
            (buffer.load(fromByteOffset: 0, as: Int32.self), buffer.load(fromByteOffset: 4, as: Int32.self))
        }
        guard let tag = Tag(rawValue: tagValue) else {
            throw WhaleError(.distributedError, field: "mpi", "a message with unknown tag \(tagValue)")
        }
        guard tags.contains(tag) else {
            throw WhaleError(
                .distributedError, field: "mpi",
                "rank \(from) sent a \(tag) message where \(tags.map { "\($0)" }.sorted()) was expected",
                hint: "the ranks disagree; every rank must run the same whale with the same arguments")
        }
        return Arrival(source: Int(from), tag: tag, status: status)
    }

    /// Receives the message `arrival` announced as bytes.
    public func receiveBytes(_ arrival: Arrival) throws -> [UInt8] {
        let count = try count(arrival, type: mpi.byte)
        var bytes = [UInt8](repeating: 0, count: count)
        try bytes.withUnsafeMutableBytes { buffer in
            try receive(arrival, into: buffer.baseAddress, count: count, type: mpi.byte)
        }
        return bytes
    }

    /// Receives the message `arrival` announced as floats.
    public func receiveFloats(_ arrival: Arrival) throws -> [Float] {
        let count = try count(arrival, type: mpi.float)
        var floats = [Float](repeating: 0, count: count)
        try floats.withUnsafeMutableBytes { buffer in
            try receive(arrival, into: buffer.baseAddress, count: count, type: mpi.float)
        }
        return floats
    }

    private func count(_ arrival: Arrival, type: MPILibrary.Handle) throws -> Int {
        var count: Int32 = 0
        try arrival.status.withUnsafeBytes { buffer in
            try Self.check(mpi.getCount(buffer.baseAddress!, type, &count), "MPI_Get_count")
        }
        guard count >= 0 else { throw WhaleError(.distributedError, field: "mpi", "a message of undefined size") }
        return Int(count)
    }

    private func receive(_ arrival: Arrival, into buffer: UnsafeMutableRawPointer?, count: Int, type: MPILibrary.Handle)
        throws
    {
        try Self.check(
            mpi.recv(
                buffer, Int32(count), type, Int32(arrival.source), arrival.tag.rawValue, mpi.commWorld, nil),
            "MPI_Recv")
    }

    /// Every rank's `bytes` (each exactly `width` long), in rank order: a collective every rank must call.
    public func allGather(_ bytes: [UInt8], width: Int) throws -> [[UInt8]] {
        precondition(bytes.count == width)
        var all = [UInt8](repeating: 0, count: width * size)
        try bytes.withUnsafeBytes { send in
            try all.withUnsafeMutableBytes { receive in
                try Self.check(
                    mpi.allgather(
                        send.baseAddress, Int32(width), mpi.byte, receive.baseAddress, Int32(width), mpi.byte,
                        mpi.commWorld), "MPI_Allgather")
            }
        }
        return (0..<size).map { Array(all[($0 * width)..<(($0 + 1) * width)]) }
    }

    /// Ends MPI for this process (once; every rank must).
    public func finalize() {
        guard !finalized else { return }
        finalized = true
        _ = mpi.finalize()
    }

    /// Ends the whole job at once (every rank), with `code`: for a rank that cannot go on and cannot tell
    /// the others in an orderly way.
    public func abort(code: Int32) -> Never {
        _ = mpi.abort(mpi.commWorld, code)
        exit(code)
    }
}
