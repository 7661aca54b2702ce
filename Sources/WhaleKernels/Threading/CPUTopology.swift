import Foundation

/// How many cores the machine has, for the default thread count.
///
/// Decoding is bound by memory bandwidth and prompt processing by the vector units; a second hardware thread
/// on the same core (SMT, Hyper-Threading) shares both, so it adds contention, not speed. The default is
/// therefore one thread per physical core — llama.cpp's default too — among the CPUs this process may run on.
public enum CPUTopology {
    /// Physical cores among the CPUs this process may use: on Linux, the distinct `core_cpus_list` sets
    /// (`thread_siblings_list` on older kernels) of the online CPUs, at most the usable CPU count; elsewhere
    /// the usable CPU count.
    public static var physicalCoreCount: Int {
        let usable = ProcessInfo.processInfo.activeProcessorCount
        #if os(Linux)
            guard let online = try? String(contentsOfFile: "/sys/devices/system/cpu/online", encoding: .utf8),
                let cpus = parseCPUList(online)
            else { return usable }
            var cores = Set<String>()
            for cpu in cpus {
                let topology = "/sys/devices/system/cpu/cpu\(cpu)/topology/"
                guard
                    let siblings = (try? String(contentsOfFile: topology + "core_cpus_list", encoding: .utf8))
                        ?? (try? String(contentsOfFile: topology + "thread_siblings_list", encoding: .utf8))
                else { return usable }
                cores.insert(siblings.trimmingCharacters(in: .whitespacesAndNewlines))
            }
            return max(1, min(cores.count, usable))
        #else
            return usable
        #endif
    }

    /// Parses a kernel CPU list such as "0-3,8,10-11" (nil when malformed).
    public static func parseCPUList(_ text: String) -> [Int]? {
        var cpus: [Int] = []
        for part in text.trimmingCharacters(in: .whitespacesAndNewlines).split(
            separator: ",", omittingEmptySubsequences: false)
        {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
            guard let first = bounds.first.flatMap({ Int($0) }), first >= 0 else { return nil }
            let last = bounds.count == 2 ? Int(bounds[1]) : (bounds.count == 1 ? first : nil)
            guard let last, last >= first, last - first < 65536 else { return nil }
            cpus += Array(first...last)
        }
        return cpus.isEmpty ? nil : cpus
    }
}
