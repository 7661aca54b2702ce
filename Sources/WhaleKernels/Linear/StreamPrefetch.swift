import WhaleCPUFeatures

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

// [STREAM_PREFETCH] A decode step multiplies each weight once, so its speed is how fast two cores pull
// weights from memory — and one core alone cannot: with ~100 ns to memory, the lines a core's hardware
// prefetchers keep in flight bring 11–16 GB/s per core on the Intel Xeon these figures come from, and they
// restart at every 4 KiB page and every chunk of rows a thread claims (an MoE step's experts are a few hundred
// kilobytes each, in runs of tens of kilobytes per chunk). So the matrix kernels, while streaming a token's
// first pass over the weights, ask for each block's bytes `StreamPrefetch.distance` ahead, one request per
// 64-byte line: the lines arrive before the kernel reaches them, whatever the page or chunk boundaries.
// Measured on dsv3-mini Q4_K_M (2 threads, same hour, alternating): decode 79–90 → 134–139 tokens/s; the
// MoE experts' products 241–257 → 161–173 µs per layer, the 108 MB output head 4.8–5.4 → 2.5–2.9 ms.
// Requests past the end of a chunk (into rows another thread multiplies) or of the matrix are harmless: a
// prefetch is a hint and never faults. Prompt tiles (four tokens at a time) read each block from cache four
// times over and gain nothing, so they do not ask. The absorbed MLA attention kernel asks for cached rows the
// same way (at 2,048 cached tokens of V3's shape: 440 → 350 µs per layer and decoding token).
//
// On AMD's Zen 4 (the EPYC of this machine kind, 2026-12-06) the same requests cost instead of paying: its
// hardware prefetchers already keep the stream ahead, and the extra requests only slowed it down —
// dsv3-mini Q4_K_M decode 60–70 tokens/s with them, 97–104 without (prefetching to L2 only: 90), llama.cpp
// 85–90 in the same run. So `isEnabled` is off on AMD CPUs and on elsewhere; `WHALE_STREAM_PREFETCH=0|1`
// overrides it for measuring. Whether a request is made never changes a result.

/// Software prefetch of the weight stream ahead of a matrix kernel ([STREAM_PREFETCH]).
enum StreamPrefetch {
    /// Whether the kernels ask for the stream ahead: off on AMD CPUs, on elsewhere, unless the environment's
    /// `WHALE_STREAM_PREFETCH` is `0` or `1`. Read once per process; it changes speed only, never a result.
    /// A lazy global costs a `swift_once` call at each read, so kernels read it once per call, outside
    /// their block loops, and `ahead` / `lines` do not check it.
    static let isEnabled: Bool = {
        if let value = getenv("WHALE_STREAM_PREFETCH"), let setting = Int(String(cString: value)) {
            return setting != 0
        }
        return whale_cpu_is_amd() == 0
    }()

    /// Whether a kernel's pass over its rows for tokens `token ..< token + count` asks for them ahead: only
    /// a lone token's (a decode step's) and only when `isEnabled` — prompt tiles read each block from cache
    /// four times over. Read it once per call, outside the block loop.
    @inline(__always)
    static func streams(token: Int, count: Int) -> Bool { count == 1 && token == 0 && isEnabled }

    /// Bytes ahead of the block being multiplied: two Q4_K group blocks (measured: 4.6 KB and 9.2 KB ran
    /// alike, both far ahead of no prefetch).
    static let distance = 4608

    /// Asks for the `bytes` bytes that start `distance` past `block`, one request per 64-byte line.
    @inline(__always)
    static func ahead(of block: UnsafeRawPointer, bytes: Int) {
        lines(at: block + distance, bytes: bytes)
    }

    /// Asks for the `bytes` bytes at `start`, one request per 64-byte line.
    @inline(__always)
    static func lines(at start: UnsafeRawPointer, bytes: Int) {
        var offset = 0
        while offset < bytes {
            whale_prefetch(start + offset)
            offset &+= 64
        }
    }
}
