import ArgumentParser
import WhaleCore
import WhaleFormats

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

@main
struct Whale: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "whale",
        abstract: "BlueWhale: run DeepSeek-family language models on a CPU.",
        subcommands: [Run.self, Chat.self] + servingCommands + [
            Bench.self, Score.self, Perplexity.self, Inspect.self, Tokenize.self, Detokenize.self,
            ChatTemplateCommand.self,
        ] + pullCommands + [List.self, Remove.self])

    /// ArgumentParser's `main`, with the MPI job (if mpirun started this process as one of several ranks)
    /// ended in order whichever way the command ends.
    static func main() {
        keepFreedMemoryReturnable()
        let session = ClusterSession()
        do {
            var command = try parseAsRoot()
            try ClusterSession.$current.withValue(session) { try command.run() }
            session.finish()
        } catch is WorkerStopped {
            session.finish()
        } catch {
            session.finish()
            exit(withError: error)
        }
    }
}

/// Fixes glibc's mmap threshold at 1 MiB and its trim threshold at 4 MiB. Left dynamic, glibc raises the
/// mmap threshold to the size of each large block freed (up to 32 MiB): after loading frees its temporaries,
/// the big scratch of a prompt pass comes from the heap, and pages freed there stay resident — 14 MiB of
/// dsv3-mini Q4_K_M's peak of a 512-token prompt (`scripts/check-peak-rss.py`). Fixed at glibc's initial
/// 128 KiB instead, every decode step mapped its logits afresh (517 KB for DeepSeek's 129,280 tokens) and
/// paid ~250 µs of page faults for them, 3 % of a step; below 1 MiB they come from the heap, and the trim
/// threshold keeps the freed top of the heap for the next step instead of returning it each time.
private func keepFreedMemoryReturnable() {
    #if canImport(Glibc)
        // `mallopt`, `M_MMAP_THRESHOLD` (-3) and `M_TRIM_THRESHOLD` (-1) are in <malloc.h>, which Swift's
        // Glibc module leaves out.
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        let mmapThreshold: Int32 = -3
        let trimThreshold: Int32 = -1
        if let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") {
            let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
            _ = mallopt(mmapThreshold, 1024 * 1024)
            _ = mallopt(trimThreshold, 4 * 1024 * 1024)
        }
    #endif
}

/// Runs `body`, turning a `WhaleError` into one clear line on stderr and exit code 1.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as WhaleError {
        var stderr = StandardError()
        print("error: \(error)", to: &stderr)
        throw ExitCode(1)
    }
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        var text = string
        text.withUTF8 { buffer in _ = writeBytes(2, buffer.baseAddress, buffer.count) }
    }
}

/// POSIX `write`, named apart from `TextOutputStream.write`.
private func writeBytes(_ fd: Int32, _ bytes: UnsafeRawPointer?, _ count: Int) -> Int {
    #if canImport(Glibc)
        Glibc.write(fd, bytes, count)
    #else
        Darwin.write(fd, bytes, count)
    #endif
}

/// `serve` when the server is built (Swift 6.2 and newer; see Package.swift).
#if canImport(WhaleServer)
    let servingCommands: [any ParsableCommand.Type] = [Serve.self]
#else
    let servingCommands: [any ParsableCommand.Type] = []
#endif
