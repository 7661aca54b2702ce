/// Scratch memory for forward passes: one block, handed out by bumping an offset and given back by
/// rewinding it, so a decode step allocates nothing once the block has grown to what a pass needs.
///
/// A pass calls `reset()` first. Each block of work takes what it needs (`floats`, `buffer`) and gives it
/// back when done (`let mark = arena.mark; defer { arena.rewind(to: mark) }`), so layers reuse the same
/// memory. A request that does not fit is served from a one-off allocation for the rest of the pass, and the
/// next `reset()` grows the block to the largest amount a pass has needed — after the first pass of a given
/// shape the arena no longer grows (`growthCount` says how often it did; tests check it stays put).
///
/// Contents are not zeroed. Used by one forward pass at a time (not thread-safe): parallel work takes
/// per-worker slices of a buffer taken before the parallel loop.
public final class ScratchArena {
    private var base: UnsafeMutableRawPointer?
    private var capacity = 0
    private var offset = 0
    private var highWater = 0
    /// One-off blocks of this pass, with the offset each stands for (freed when the arena is rewound past it).
    private var overflow: [(offset: Int, block: UnsafeMutableRawPointer)] = []
    /// How many times the block was reallocated to a larger size.
    public private(set) var growthCount = 0

    public init() {}

    deinit {
        base?.deallocate()
        for (_, block) in overflow { block.deallocate() }
    }

    /// Bytes of the block.
    public var reservedBytes: Int { capacity }

    /// Blocks handed out beyond the block in this pass (they go at `rewind` / `reset`).
    public var overflowBlocks: Int { overflow.count }

    /// Room for `count` values of `type`, 64-byte aligned, valid until the arena is rewound past it or reset.
    public func buffer<T>(_ type: T.Type, count: Int) -> UnsafeMutablePointer<T> {
        let bytes = max(count, 1) * MemoryLayout<T>.stride
        let start = (offset + 63) & ~63
        offset = start + bytes
        highWater = max(highWater, offset)
        if offset <= capacity, let base {
            return (base + start).bindMemory(to: T.self, capacity: max(count, 1))
        }
        let block = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        overflow.append((start, block))
        return block.bindMemory(to: T.self, capacity: max(count, 1))
    }

    /// Room for `count` floats.
    public func floats(_ count: Int) -> UnsafeMutablePointer<Float> { buffer(Float.self, count: count) }

    /// The current position, to give back everything taken after it with `rewind(to:)`.
    public var mark: Int { offset }

    /// Gives back everything taken since `mark` (one-off blocks are freed, so a first pass of a new shape
    /// needs no more memory than the block it will grow to).
    public func rewind(to mark: Int) {
        precondition(mark <= offset, "ScratchArena: rewinding forward")
        while let last = overflow.last, last.offset >= mark {
            last.block.deallocate()
            overflow.removeLast()
        }
        offset = mark
    }

    /// Starts a pass: frees the one-off blocks of the last one and grows the block to the most any pass has
    /// needed. Every pointer handed out before is invalid afterwards.
    public func reset() {
        for (_, block) in overflow { block.deallocate() }
        overflow.removeAll(keepingCapacity: true)
        if highWater > capacity {
            base?.deallocate()
            // A little headroom, so a pass that needs slightly more next time does not reallocate again.
            capacity = highWater + highWater / 4
            base = .allocate(byteCount: capacity, alignment: 64)
            growthCount += 1
        }
        offset = 0
    }
}
