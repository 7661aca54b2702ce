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
