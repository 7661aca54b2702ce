import Testing
import WhaleKernels

/// The arena behind every forward pass: memory is given back on rewind, even in a first pass that does not
/// fit, and the block grows once to what a pass needed.
@Suite struct ScratchArenaTests {
    @Test func firstPassFreesWhatItRewinds() {
        let arena = ScratchArena()
        arena.reset()
        #expect(arena.reservedBytes == 0)
        for _ in 0..<30 {  // thirty "layers", each taking and giving back 4 MB
            let mark = arena.mark
            let buffer = arena.floats(1 << 20)
            buffer[0] = 1
            #expect(arena.overflowBlocks == 1)
            arena.rewind(to: mark)
            #expect(arena.overflowBlocks == 0)
        }
        arena.reset()
        let grown = arena.reservedBytes
        #expect(grown >= 4 << 20 && grown < 6 << 20)
        #expect(arena.growthCount == 1)
        // The same pass again fits: no one-off blocks, no growth.
        let mark = arena.mark
        _ = arena.floats(1 << 20)
        #expect(arena.overflowBlocks == 0)
        arena.rewind(to: mark)
        arena.reset()
        #expect(arena.growthCount == 1 && arena.reservedBytes == grown)
    }

    @Test func buffersAreAlignedAndDisjoint() {
        let arena = ScratchArena()
        arena.reset()
        let a = arena.floats(3)
        let b = arena.buffer(Int.self, count: 5)
        let c = arena.floats(7)
        for p in [UnsafeRawPointer(a), UnsafeRawPointer(b), UnsafeRawPointer(c)] {
            #expect(Int(bitPattern: p) % 64 == 0)
        }
        arena.reset()
        let d = arena.floats(3)
        let e = arena.floats(7)
        let gap: Int = UnsafeRawPointer(e) - UnsafeRawPointer(d)
        #expect(gap >= 12)
    }
}
