import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What a pull shows on stderr: on a terminal one bar redrawn in place (bytes, rate, time left); otherwise —
/// a log, a CI job — one plain line per file as it completes.
public final class PullProgress: Sendable {
    private struct State {
        var repo = ""
        var total: Int64 = 0
        var received: Int64 = 0
        var started = Date()
        var lastDrawn = Date.distantPast
    }
    private let state = Mutex(State())
    /// A bar on a terminal, else lines; neither when quiet.
    private let showsBar: Bool
    private let showsLines: Bool

    /// `quiet`: show nothing.
    public init(quiet: Bool = false) {
        let isTerminal = isatty(2) != 0
        showsBar = isTerminal && !quiet
        showsLines = !isTerminal && !quiet
    }

    func begin(repo: String, bytes: Int64) {
        state.withLock { $0 = State(repo: repo, total: max(bytes, 0), started: Date()) }
    }

    func advance(_ bytes: Int64) {
        guard showsBar else { return }
        let line: String? = state.withLock { state in
            state.received += bytes
            let now = Date()
            guard now.timeIntervalSince(state.lastDrawn) >= 0.1 else { return nil }
            state.lastDrawn = now
            return bar(state, now: now)
        }
        if let line { write("\r\u{1B}[K" + line) }
    }

    func alreadyCached(_ path: String) {
        guard showsLines else { return }
        let repo = state.withLock { $0.repo }
        write("\(repo): \(path) already in the cache\n")
    }

    func finished(_ path: String, bytes: Int64, seconds: Double) {
        guard showsLines else { return }
        let repo = state.withLock { $0.repo }
        let rate = seconds > 0 ? " at \(formatBytes(Int64(Double(bytes) / seconds)))/s" : ""
        write("\(repo): \(path) \(formatBytes(bytes))\(rate)\n")
    }

    func end() {
        guard showsBar else { return }
        let line = state.withLock { bar($0, now: Date()) }
        write("\r\u{1B}[K" + line + "\n")
    }

    /// `org/name  1.2 GiB / 4.0 GiB  31%  45.6 MiB/s  ETA 1:03`.
    private func bar(_ state: State, now: Date) -> String {
        if state.total == 0 && state.received == 0 { return "\(state.repo)  up to date in the cache" }
        let elapsed = max(now.timeIntervalSince(state.started), 0.001)
        let rate = Double(state.received) / elapsed
        var line = "\(state.repo)  \(formatBytes(state.received))"
        if state.total > 0 {
            let fraction = min(Double(state.received) / Double(state.total), 1)
            let width = 24
            let filled = Int(fraction * Double(width))
            line += " / \(formatBytes(state.total))  ["
            line += String(repeating: "#", count: filled) + String(repeating: " ", count: width - filled) + "]"
            line += " \(Int(fraction * 100))%"
        }
        line += "  \(formatBytes(Int64(rate)))/s"
        if state.total > state.received, rate > 0 {
            let left = Int(Double(state.total - state.received) / rate)
            line += String(format: "  ETA %d:%02d", left / 60, left % 60)
        }
        return line
    }

    private func write(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }
}
