#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Multi-head latent attention batched over heads, in one pass over the cache ([LATENT_ATTENTION_KERNEL]).
///
/// Every head of a token attends to the same cached latents, so the kernel reads each cached row once per
/// token for all heads — per head, a 2,048-token cache of DeepSeek-V3's shape (576 halves per row) is 2.4 MB,
/// more than this CPU's L2. And it reads it from memory once, not once for the scores and again for the
/// weighted sums: positions go in spans of `spanLength`, whose rows stay in L1/L2 between the two, with a
/// running softmax (flash attention's): each head keeps the largest score so far, the sum of
/// exp(score − largest) and the weighted sums of latents with those weights, rescaled when a span raises the
/// largest. Scores come from tiles of 4 heads × 2 cached positions (eight accumulators: six loads per eight
/// multiply-adds); weighted sums from 8 heads at a time over 16 columns, accumulated in registers.
///
/// A token's positions are cut into at most `maxChunks` chunks of whole spans — by its length alone, so the
/// result does not depend on the thread count or on whether the token decodes alone or in a prompt — each
/// with its own running state; the chunks are then merged in order. A decoding token runs its chunks (and,
/// over a short cache, groups of four heads) as parallel work items; a prompt runs one token per item. Per
/// head, scores and sums are computed in one order whatever the tiling (`CacheRowFormat.dot` per score,
/// positions in order per weighted sum), so which heads share registers or threads changes no bit.
struct LatentAttentionKernel {
    let latentQueries: UnsafeMutablePointer<Float>
    let ropeQueries: UnsafeMutablePointer<Float>
    let ropeQueryTokenStride: Int
    let ropeQueryHeadStride: Int
    let tokens: UnsafePointer<Attention.TokenView>
    let count: Int
    let heads: Int
    let rank: Int
    let ropeDim: Int
    let softmaxScale: Float
    /// Floats per head in a scores area (at least every token's length).
    let rowCapacity: Int
    let output: UnsafeMutablePointer<Float>
    let weights: UnsafeMutablePointer<Float>?
    let weightsStride: Int

    /// Cached positions scored, exponentiated and summed in one step (a fulldim span's rows: 74 KB).
    static let spanLength = 64
    /// The most chunks a token's positions are cut into (work items of a decoding token).
    static let maxChunks = 16
    /// Positions whose rows one pass over the heads reads (a few kilobytes: they stay in L1 across head groups).
    static let positionsPerBlock = 32
    /// How far ahead of the scores the rows are asked for, on every CPU ([STREAM_PREFETCH]): the hardware
    /// prefetchers stop at each 4 KB page (four fulldim rows), and the scores' multiply-adds leave the memory
    /// idle while they run. Measured on the AMD EPYC, fulldim shape, 2,048 positions, 2 threads: 540 µs a
    /// layer without, 450 with 4 or 8 rows ahead, 505 with 32, 570 with 64 (past the chunk: rows another
    /// thread reads).
    static let rowsAhead = 8

    func latentQuery(_ h: Int, _ t: Int) -> UnsafeMutablePointer<Float> { latentQueries + (h &* count &+ t) &* rank }
    func ropeQuery(_ h: Int, _ t: Int) -> UnsafeMutablePointer<Float> {
        ropeQueries + (t &* ropeQueryTokenStride &+ h &* ropeQueryHeadStride)
    }
    func out(_ h: Int, _ t: Int) -> UnsafeMutablePointer<Float> { output + (h &* count &+ t) &* rank }

    /// Spans of a token with `length` cached positions.
    static func spans(length: Int) -> Int { (length + spanLength - 1) / spanLength }
    /// Chunks of a token with `length` cached positions.
    static func chunks(length: Int) -> Int { min(maxChunks, spans(length: length)) }
    /// Positions of chunk c of `chunks`: whole spans, as even as they split.
    static func positions(chunk c: Int, of chunks: Int, length: Int) -> Range<Int> {
        let spans = spans(length: length)
        let first = c &* spans / chunks &* spanLength
        return first..<min(length, (c &+ 1) &* spans / chunks &* spanLength)
    }

    /// One token's scratch: its scores (then exponentials), and each chunk's running state.
    struct Scratch {
        /// Head h's at `scores[h·rowCapacity + j]`.
        let scores: UnsafeMutablePointer<Float>
        /// Chunk c's weighted sums of head h at `sums[(c·heads + h)·rank]`.
        let sums: UnsafeMutablePointer<Float>
        /// Chunk c's largest score of head h so far at `largest[c·heads + h]`, the sum of exp(score − largest)
        /// at `totals[c·heads + h]`.
        let largest: UnsafeMutablePointer<Float>
        let totals: UnsafeMutablePointer<Float>
        /// The largest score span s's exponentials are relative to, head h's at `spanLargest[s·heads + h]`.
        let spanLargest: UnsafeMutablePointer<Float>

        static func floats(heads: Int, rank: Int, rowCapacity: Int) -> Int {
            let spans = LatentAttentionKernel.spans(length: rowCapacity)
            return heads &* rowCapacity &+ LatentAttentionKernel.maxChunks &* heads &* (rank &+ 2) &+ spans &* heads
        }

        init(_ base: UnsafeMutablePointer<Float>, heads: Int, rank: Int, rowCapacity: Int) {
            scores = base
            sums = scores + heads &* rowCapacity
            largest = sums + LatentAttentionKernel.maxChunks &* heads &* rank
            totals = largest + LatentAttentionKernel.maxChunks &* heads
            spanLargest = totals + LatentAttentionKernel.maxChunks &* heads
        }
    }

    func run<Row: CacheRowFormat>(_ format: Row.Type, pool: ThreadPool, arena: ScratchArena) {
        let perToken = Scratch.floats(heads: heads, rank: rank, rowCapacity: rowCapacity)
        if count == 1 {
            let length = tokens[0].length
            let scratch = Scratch(arena.floats(perToken), heads: heads, rank: rank, rowCapacity: rowCapacity)
            let chunks = Self.chunks(length: length)
            // Fewer chunks than threads (a short cache): whole groups of four heads (the score tiles' width)
            // per item as well.
            let groups = chunks >= pool.threadCount ? 1 : max(1, min(heads / 4, pool.threadCount))
            pool.parallelFor(chunks &* groups) { item in
                let c = item / groups
                let g = item % groups
                let first = g &* (heads / 4) / groups &* 4
                let end = g == groups - 1 ? heads : (g &+ 1) &* (heads / 4) / groups &* 4
                chunk(
                    Row.self, token: 0, chunk: c, positions: Self.positions(chunk: c, of: chunks, length: length),
                    heads: first..<end, scratch)
            }
            let parts = min(heads, pool.threadCount)
            pool.parallelFor(parts) { part in
                merge(
                    token: 0, chunks: chunks, heads: (part &* heads / parts)..<((part &+ 1) &* heads / parts), scratch)
            }
            return
        }
        let scratch = arena.floats(pool.threadCount &* perToken)
        pool.parallelFor(count) { t, worker in
            let mine = Scratch(scratch + worker &* perToken, heads: heads, rank: rank, rowCapacity: rowCapacity)
            let length = tokens[t].length
            let chunks = Self.chunks(length: length)
            for c in 0..<chunks {
                chunk(
                    Row.self, token: t, chunk: c, positions: Self.positions(chunk: c, of: chunks, length: length),
                    heads: 0..<heads, mine)
            }
            merge(token: t, chunks: chunks, heads: 0..<heads, mine)
        }
    }

    /// Chunk c of token t for heads `heads`: span by span, scores, their exponentials relative to the largest
    /// score so far (rescaling what is summed when a span raises it), and the weighted sums.
    @inline(__always)
    func chunk<Row: CacheRowFormat>(
        _ format: Row.Type, token t: Int, chunk c: Int, positions: Range<Int>, heads: Range<Int>, _ scratch: Scratch
    ) {
        let state = c &* self.heads
        for h in heads {
            (scratch.sums + (state &+ h) &* rank).initialize(repeating: 0, count: rank)
            scratch.largest[state &+ h] = -.infinity
            scratch.totals[state &+ h] = 0
        }
        var first = positions.lowerBound
        while first < positions.upperBound {
            let end = min(positions.upperBound, first &+ Self.spanLength)
            scores(Row.self, token: t, positions: first..<end, heads: heads, scratch.scores)
            for h in heads {
                let row = scratch.scores + h &* rowCapacity
                var spanLargest = row[first]
                for j in (first &+ 1)..<end where row[j] > spanLargest { spanLargest = row[j] }
                let previous = scratch.largest[state &+ h]
                if spanLargest > previous {
                    if previous > -.infinity {
                        let factor = expf(previous - spanLargest)
                        Self.scale(scratch.sums + (state &+ h) &* rank, by: factor, count: rank)
                        scratch.totals[state &+ h] *= factor
                    }
                    scratch.largest[state &+ h] = spanLargest
                }
                let largest = scratch.largest[state &+ h]
                scratch.totals[state &+ h] += Self.exponentiate(row + first, count: end &- first, minus: largest)
                scratch.spanLargest[first / Self.spanLength &* self.heads &+ h] = largest
            }
            values(
                Row.self, token: t, weights: scratch.scores, positions: first..<end, heads: heads,
                into: scratch.sums + state &* rank)
            first = end
        }
    }

    /// Token t's outputs of heads `heads`: the chunks' weighted sums, each scaled to the largest score of all,
    /// added in chunk order and divided by the total; and its attention weights when asked.
    func merge(token t: Int, chunks: Int, heads: Range<Int>, _ scratch: Scratch) {
        let length = tokens[t].length
        for h in heads {
            var largest = -Float.infinity
            for c in 0..<chunks { largest = max(largest, scratch.largest[c &* self.heads &+ h]) }
            var total: Float = 0
            for c in 0..<chunks {
                total += scratch.totals[c &* self.heads &+ h] * expf(scratch.largest[c &* self.heads &+ h] - largest)
            }
            let inverse = 1 / total
            let o = out(h, t)
            o.initialize(repeating: 0, count: rank)
            for c in 0..<chunks {
                let factor = expf(scratch.largest[c &* self.heads &+ h] - largest) * inverse
                Self.addScaled(scratch.sums + (c &* self.heads &+ h) &* rank, factor, into: o, count: rank)
            }
            guard let weights else { continue }
            let row = scratch.scores + h &* rowCapacity
            let weightsRow = weights + (h &* count &+ t) &* weightsStride
            for s in 0..<Self.spans(length: length) {
                let factor = expf(scratch.spanLargest[s &* self.heads &+ h] - largest) * inverse
                for j in (s &* Self.spanLength)..<min(length, (s &+ 1) &* Self.spanLength) {
                    weightsRow[j] = row[j] * factor
                }
            }
        }
    }

    /// x[i] ← e^(x[i] − largest) (`Ops.exp8`, `expf` for a tail); returns their sum (eight lanes, then the tail).
    @inline(__always)
    static func exponentiate(_ x: UnsafeMutablePointer<Float>, count: Int, minus largest: Float) -> Float {
        let raw = UnsafeMutableRawPointer(x)
        var lanes = SIMD8<Float>()
        var i = 0
        while i &+ 8 <= count {
            let e = Ops.exp8(
                raw.loadUnaligned(fromByteOffset: i &* 4, as: SIMD8<Float>.self) - SIMD8(repeating: largest))
            raw.storeBytes(of: e, toByteOffset: i &* 4, as: SIMD8<Float>.self)
            lanes += e
            i &+= 8
        }
        var total = Ops.horizontalSum(lanes)
        while i < count {
            x[i] = expf(x[i] - largest)
            total += x[i]
            i &+= 1
        }
        return total
    }

    /// x[i] ← factor · x[i].
    @inline(__always)
    static func scale(_ x: UnsafeMutablePointer<Float>, by factor: Float, count: Int) {
        for i in 0..<count { x[i] *= factor }
    }

    /// out[i] += factor · x[i].
    @inline(__always)
    static func addScaled(_ x: UnsafePointer<Float>, _ factor: Float, into out: UnsafeMutablePointer<Float>, count: Int)
    {
        for i in 0..<count { out[i] = out[i].addingProduct(factor, x[i]) }
    }

    /// Scaled scores of heads `heads` of token t at `positions`: head h's at `scores[h·rowCapacity + j]`.
    @inline(__always)
    func scores<Row: CacheRowFormat>(
        _ format: Row.Type, token t: Int, positions: Range<Int>, heads: Range<Int>,
        _ scores: UnsafeMutablePointer<Float>
    ) {
        let view = tokens[t]
        let latentBytes = Row.rowBytes(rank)
        let ropeBytes = Row.rowBytes(ropeDim)
        let latentQueryStride = count &* rank
        var first = positions.lowerBound
        while first < positions.upperBound {
            let end = min(positions.upperBound, first &+ Self.positionsPerBlock)
            var h = heads.lowerBound
            while h &+ 4 <= heads.upperBound {
                var j = first
                while j &+ 2 <= end {
                    let latents = view.keys + j &* latentBytes
                    let ropeKeys = view.values + j &* ropeBytes
                    if h == heads.lowerBound {
                        StreamPrefetch.lines(at: latents + Self.rowsAhead &* latentBytes, bytes: 2 &* latentBytes)
                        StreamPrefetch.lines(at: ropeKeys + Self.rowsAhead &* ropeBytes, bytes: 2 &* ropeBytes)
                    }
                    let latentDots = Self.dotTile(
                        Row.self, latentQuery(h, t), queryStride: latentQueryStride, latents, latents + latentBytes,
                        rank)
                    let ropeDots = Self.dotTile(
                        Row.self, ropeQuery(h, t), queryStride: ropeQueryHeadStride, ropeKeys, ropeKeys + ropeBytes,
                        ropeDim)
                    let tile: SIMD8<Float> = (latentDots + ropeDots) * softmaxScale
                    for g in 0..<4 {
                        scores[(h &+ g) &* rowCapacity &+ j] = tile[2 &* g]
                        scores[(h &+ g) &* rowCapacity &+ j &+ 1] = tile[2 &* g &+ 1]
                    }
                    j &+= 2
                }
                if j < end {
                    for g in h..<(h &+ 4) { scores[g &* rowCapacity &+ j] = score(Row.self, g, t, view, j) }
                }
                h &+= 4
            }
            for g in h..<heads.upperBound {
                for j in first..<end { scores[g &* rowCapacity &+ j] = score(Row.self, g, t, view, j) }
            }
            first = end
        }
    }

    /// One head's scaled score at one position, one dot product at a time.
    @inline(__always)
    func score<Row: CacheRowFormat>(_ format: Row.Type, _ h: Int, _ t: Int, _ view: Attention.TokenView, _ j: Int)
        -> Float
    {
        let latentDot = Row.dot(latentQuery(h, t), view.keys + j &* Row.rowBytes(rank), rank)
        let ropeDot = Row.dot(ropeQuery(h, t), view.values + j &* Row.rowBytes(ropeDim), ropeDim)
        return (latentDot + ropeDot) * softmaxScale
    }

    /// `dot` of four queries (`queryStride` floats apart) with two rows at once: lane 2g + p is query g with
    /// row p, each exactly as `dot` computes it.
    @inline(__always)
    static func dotTile<Row: CacheRowFormat>(
        _ format: Row.Type, _ query: UnsafePointer<Float>, queryStride: Int, _ row0: UnsafeRawPointer,
        _ row1: UnsafeRawPointer, _ n: Int
    ) -> SIMD8<Float> {
        let q0 = UnsafeRawPointer(query)
        let q1 = q0 + queryStride &* 4
        let q2 = q1 + queryStride &* 4
        let q3 = q2 + queryStride &* 4
        var a0 = SIMD16<Float>()
        var a1 = SIMD16<Float>()
        var a2 = SIMD16<Float>()
        var a3 = SIMD16<Float>()
        var a4 = SIMD16<Float>()
        var a5 = SIMD16<Float>()
        var a6 = SIMD16<Float>()
        var a7 = SIMD16<Float>()
        var i = 0
        let vectorEnd = n & ~15
        while i < vectorEnd {
            let x0 = Row.load16(row0, i)
            let x1 = Row.load16(row1, i)
            let y0 = q0.loadUnaligned(fromByteOffset: i &* 4, as: SIMD16<Float>.self)
            let y1 = q1.loadUnaligned(fromByteOffset: i &* 4, as: SIMD16<Float>.self)
            let y2 = q2.loadUnaligned(fromByteOffset: i &* 4, as: SIMD16<Float>.self)
            let y3 = q3.loadUnaligned(fromByteOffset: i &* 4, as: SIMD16<Float>.self)
            a0.addProduct(y0, x0)
            a1.addProduct(y0, x1)
            a2.addProduct(y1, x0)
            a3.addProduct(y1, x1)
            a4.addProduct(y2, x0)
            a5.addProduct(y2, x1)
            a6.addProduct(y3, x0)
            a7.addProduct(y3, x1)
            i &+= 16
        }
        var totals = SIMD8<Float>(
            Vector.halvingSum(a0), Vector.halvingSum(a1), Vector.halvingSum(a2), Vector.halvingSum(a3),
            Vector.halvingSum(a4), Vector.halvingSum(a5), Vector.halvingSum(a6), Vector.halvingSum(a7))
        while i < n {
            let x0 = Row.load1(row0, i)
            let x1 = Row.load1(row1, i)
            for g in 0..<4 {
                let y = query[g &* queryStride &+ i]
                totals[2 &* g] += y * x0
                totals[2 &* g &+ 1] += y * x1
            }
            i &+= 1
        }
        return totals
    }

    /// Adds Σ_j weight_hj · latent_j over `positions` (in order, one multiply-add each) to head h's sums at
    /// `sums + h·rank`, every column (whole 16-value chunks, then any tail); head h's weights at
    /// `weights[h·rowCapacity + j]`.
    @inline(__always)
    func values<Row: CacheRowFormat>(
        _ format: Row.Type, token t: Int, weights: UnsafePointer<Float>, positions: Range<Int>, heads: Range<Int>,
        into sums: UnsafeMutablePointer<Float>
    ) {
        let view = tokens[t]
        let latentBytes = Row.rowBytes(rank)
        let vectorEnd = rank & ~15
        var first = positions.lowerBound
        while first < positions.upperBound {
            let end = min(positions.upperBound, first &+ Self.positionsPerBlock)
            var c = 0
            while c < vectorEnd {
                var h = heads.lowerBound
                while h &+ 8 <= heads.upperBound {
                    Self.weightedTile(
                        Row.self, weights + h &* rowCapacity, rowCapacity: rowCapacity, rows: view.keys,
                        rowBytes: latentBytes, positions: first..<end, column: c, out: sums + h &* rank,
                        outStride: rank)
                    h &+= 8
                }
                for g in h..<heads.upperBound {
                    let weightsRow = weights + g &* rowCapacity
                    let o = UnsafeMutableRawPointer(sums + g &* rank)
                    var acc = o.loadUnaligned(fromByteOffset: c &* 4, as: SIMD16<Float>.self)
                    for j in first..<end {
                        acc.addProduct(SIMD16(repeating: weightsRow[j]), Row.load16(view.keys + j &* latentBytes, c))
                    }
                    o.storeBytes(of: acc, toByteOffset: c &* 4, as: SIMD16<Float>.self)
                }
                c &+= 16
            }
            if vectorEnd < rank {
                for g in heads {
                    let weightsRow = weights + g &* rowCapacity
                    let o = sums + g &* rank
                    for j in first..<end {
                        let w = weightsRow[j]
                        let row = view.keys + j &* latentBytes
                        for i in vectorEnd..<rank { o[i] += w * Row.load1(row, i) }
                    }
                }
            }
            first = end
        }
    }

    /// Eight heads' outputs at one 16-value chunk, over `positions`: eight accumulators in registers.
    @inline(__always)
    static func weightedTile<Row: CacheRowFormat>(
        _ format: Row.Type, _ weights: UnsafePointer<Float>, rowCapacity: Int, rows: UnsafeRawPointer, rowBytes: Int,
        positions: Range<Int>, column c: Int, out: UnsafeMutablePointer<Float>, outStride: Int
    ) {
        let o = UnsafeMutableRawPointer(out) + c &* 4
        let step = outStride &* 4
        @inline(__always) func load(_ g: Int) -> SIMD16<Float> {
            o.loadUnaligned(fromByteOffset: g &* step, as: SIMD16<Float>.self)
        }
        var a0 = load(0)
        var a1 = load(1)
        var a2 = load(2)
        var a3 = load(3)
        var a4 = load(4)
        var a5 = load(5)
        var a6 = load(6)
        var a7 = load(7)
        for j in positions {
            let x = Row.load16(rows + j &* rowBytes, c)
            @inline(__always) func weight(_ g: Int) -> SIMD16<Float> {
                SIMD16(repeating: weights[g &* rowCapacity &+ j])
            }
            a0.addProduct(weight(0), x)
            a1.addProduct(weight(1), x)
            a2.addProduct(weight(2), x)
            a3.addProduct(weight(3), x)
            a4.addProduct(weight(4), x)
            a5.addProduct(weight(5), x)
            a6.addProduct(weight(6), x)
            a7.addProduct(weight(7), x)
        }
        o.storeBytes(of: a0, toByteOffset: 0, as: SIMD16<Float>.self)
        o.storeBytes(of: a1, toByteOffset: step, as: SIMD16<Float>.self)
        o.storeBytes(of: a2, toByteOffset: 2 &* step, as: SIMD16<Float>.self)
        o.storeBytes(of: a3, toByteOffset: 3 &* step, as: SIMD16<Float>.self)
        o.storeBytes(of: a4, toByteOffset: 4 &* step, as: SIMD16<Float>.self)
        o.storeBytes(of: a5, toByteOffset: 5 &* step, as: SIMD16<Float>.self)
        o.storeBytes(of: a6, toByteOffset: 6 &* step, as: SIMD16<Float>.self)
        o.storeBytes(of: a7, toByteOffset: 7 &* step, as: SIMD16<Float>.self)
    }
}
