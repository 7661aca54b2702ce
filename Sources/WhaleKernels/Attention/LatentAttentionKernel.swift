/// Multi-head latent attention batched over heads ([LATENT_ATTENTION_KERNEL]).
///
/// Every head of a token attends to the same cached latents, so the kernel reads each cached row once per
/// token for all heads — per head, a 2,048-token cache of DeepSeek-V3's shape (576 halves per row) is 2.4 MB,
/// more than this CPU's L2, and reading it once per head made decoding at depth memory-bound. Scores come
/// from tiles of 4 heads × 2 cached positions (eight accumulators: six loads per eight multiply-adds, where
/// a dot product at a time needs two); weighted sums from 8 heads at a time over 16 positions, accumulated
/// in registers.
///
/// Each score, weight and output element is computed exactly as one dot product / one weighted sum at a
/// time computes it (`CacheRowFormat.dot`: one 16-lane accumulator per dot, a halving-tree sum, a scalar
/// tail; `CacheRowFormat.accumulate`: positions in order, one multiply-add each), so the batching changes no bit; only
/// which values share registers and how the work is split between threads.
///
/// Work split: one token (decoding) splits the cached positions between threads for the scores, the heads
/// for the softmax, and the latent's columns for the weighted sums, so each thread reads a part of each row
/// once; over a short cache (below `parallelLength`, where those three hand-offs would cost more than they
/// split) each thread takes a share of the heads, whole, instead. Several tokens (a prompt) run a token per
/// work item, all heads in one thread.
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
    let precision: AttentionPrecision
    /// Floats per head in a scores area (at least every token's length).
    let rowCapacity: Int
    let output: UnsafeMutablePointer<Float>
    let weights: UnsafeMutablePointer<Float>?
    let weightsStride: Int

    /// Cached positions per score work item when one token's positions are split between threads.
    static let positionsPerItem = 64
    /// Positions whose rows one pass over the heads reads (a few kilobytes: they stay in L1 across head groups).
    static let positionsPerBlock = 32
    /// Below this many cached positions one decoding token's heads are shared between threads instead of
    /// its positions and columns.
    static let parallelLength = 128

    func latentQuery(_ h: Int, _ t: Int) -> UnsafeMutablePointer<Float> { latentQueries + (h &* count &+ t) &* rank }
    func ropeQuery(_ h: Int, _ t: Int) -> UnsafeMutablePointer<Float> {
        ropeQueries + (t &* ropeQueryTokenStride &+ h &* ropeQueryHeadStride)
    }
    func out(_ h: Int, _ t: Int) -> UnsafeMutablePointer<Float> { output + (h &* count &+ t) &* rank }

    func run<Row: CacheRowFormat>(_ format: Row.Type, pool: ThreadPool, arena: ScratchArena) {
        if count == 1 {
            let length = tokens[0].length
            let scores = arena.floats(heads &* rowCapacity)
            roundQueries(token: 0)
            guard length >= Self.parallelLength && pool.threadCount > 1 else {
                // Whole groups of four heads (the score tiles' width) per thread.
                let groups = heads / 4
                let parts = max(1, min(pool.threadCount, groups))
                pool.parallelFor(parts) { part in
                    let first = part &* groups / parts &* 4
                    let end = part == parts - 1 ? heads : (part &+ 1) &* groups / parts &* 4
                    token(Row.self, 0, scores: scores, heads: first..<end)
                }
                return
            }
            let items = (length + Self.positionsPerItem - 1) / Self.positionsPerItem
            pool.parallelFor(items) { item in
                let first = item &* Self.positionsPerItem
                self.scores(
                    Row.self, token: 0, positions: first..<min(length, first &+ Self.positionsPerItem),
                    heads: 0..<heads, scores)
            }
            pool.parallelFor(heads) { h in normalize(scores + h &* rowCapacity, head: h, token: 0, length: length) }
            // Column ranges in whole 16-value chunks; the last takes any tail.
            let chunks = (rank + 15) / 16
            let parts = min(chunks, 4 &* pool.threadCount)
            pool.parallelFor(parts) { part in
                let first = part &* chunks / parts &* 16
                let end = part == parts - 1 ? rank : (part &+ 1) &* chunks / parts &* 16
                values(Row.self, token: 0, scores: scores, length: length, heads: 0..<heads, columns: first..<end)
            }
            return
        }
        let perWorker = heads &* rowCapacity
        let scores = arena.floats(pool.threadCount &* perWorker)
        pool.parallelFor(count) { t, worker in
            roundQueries(token: t)
            token(Row.self, t, scores: scores + worker &* perWorker, heads: 0..<heads)
        }
    }

    /// Token t's attention for heads `heads` on the calling thread.
    @inline(__always)
    func token<Row: CacheRowFormat>(
        _ format: Row.Type, _ t: Int, scores: UnsafeMutablePointer<Float>, heads: Range<Int>
    ) {
        let length = tokens[t].length
        self.scores(Row.self, token: t, positions: 0..<length, heads: heads, scores)
        for h in heads { normalize(scores + h &* rowCapacity, head: h, token: t, length: length) }
        values(Row.self, token: t, scores: scores, length: length, heads: heads, columns: 0..<rank)
    }

    /// With `.f16`, token t's queries rounded to half precision in place (llama.cpp's f16 product).
    func roundQueries(token t: Int) {
        guard precision == .f16 else { return }
        for h in 0..<heads {
            Ops.roundToHalf(latentQuery(h, t), count: rank)
            Ops.roundToHalf(ropeQuery(h, t), count: ropeDim)
        }
    }

    /// Softmax of one head's scores, copied to `weights` when asked. With `.f16` (GGUF models) ggml's
    /// softmax (`Ops.softmaxX86`: its vectorized exp, a double sum) rounded to half — llama.cpp's, and at
    /// 2,048 cached positions 10 % of a layer's attention time with libm's `expf` per score; with `.f32`
    /// transformers' (`Ops.softmax`).
    func normalize(_ row: UnsafeMutablePointer<Float>, head h: Int, token t: Int, length: Int) {
        if precision == .f16 {
            Ops.softmaxX86(row, count: length)
            Ops.roundToHalf(row, count: length)
        } else {
            Ops.softmax(row, count: length)
        }
        weights.map { ($0 + (h &* count &+ t) &* weightsStride).update(from: row, count: length) }
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
        let prefetching = StreamPrefetch.isEnabled
        var first = positions.lowerBound
        while first < positions.upperBound {
            let end = min(positions.upperBound, first &+ Self.positionsPerBlock)
            var h = heads.lowerBound
            while h &+ 4 <= heads.upperBound {
                var j = first
                while j &+ 2 <= end {
                    let latents = view.keys + j &* latentBytes
                    let ropeKeys = view.values + j &* ropeBytes
                    if h == heads.lowerBound && prefetching {
                        StreamPrefetch.ahead(of: latents, bytes: 2 &* latentBytes)
                        StreamPrefetch.ahead(of: ropeKeys, bytes: 2 &* ropeBytes)
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

    /// Token t's outputs of heads `heads` at `columns` (whole 16-value chunks, then any tail): head h's
    /// Σ_j weight_hj · latent_j, positions in order, as `CacheRowFormat.accumulate` one position at a time.
    @inline(__always)
    func values<Row: CacheRowFormat>(
        _ format: Row.Type, token t: Int, scores: UnsafePointer<Float>, length: Int, heads: Range<Int>,
        columns: Range<Int>
    ) {
        let view = tokens[t]
        let latentBytes = Row.rowBytes(rank)
        for h in heads { (out(h, t) + columns.lowerBound).initialize(repeating: 0, count: columns.count) }
        let vectorEnd = columns.lowerBound &+ (columns.count & ~15)
        let prefetching = StreamPrefetch.isEnabled
        var first = 0
        while first < length {
            let end = min(length, first &+ Self.positionsPerBlock)
            // The next block's rows at these columns ([STREAM_PREFETCH]).
            for j in end..<min(length, end &+ Self.positionsPerBlock) where prefetching {
                StreamPrefetch.lines(
                    at: view.keys + (j &* latentBytes &+ Row.rowBytes(columns.lowerBound)),
                    bytes: Row.rowBytes(columns.count))
            }
            var c = columns.lowerBound
            while c < vectorEnd {
                var h = heads.lowerBound
                while h &+ 8 <= heads.upperBound {
                    Self.weightedTile(
                        Row.self, scores + h &* rowCapacity, rowCapacity: rowCapacity, rows: view.keys,
                        rowBytes: latentBytes, positions: first..<end, column: c, out: out(h, t),
                        outStride: count &* rank
                    )
                    h &+= 8
                }
                for g in h..<heads.upperBound {
                    let weightsRow = scores + g &* rowCapacity
                    let o = UnsafeMutableRawPointer(out(g, t))
                    var acc = o.loadUnaligned(fromByteOffset: c &* 4, as: SIMD16<Float>.self)
                    for j in first..<end {
                        acc.addProduct(SIMD16(repeating: weightsRow[j]), Row.load16(view.keys + j &* latentBytes, c))
                    }
                    o.storeBytes(of: acc, toByteOffset: c &* 4, as: SIMD16<Float>.self)
                }
                c &+= 16
            }
            if vectorEnd < columns.upperBound {
                for g in heads {
                    let weightsRow = scores + g &* rowCapacity
                    let o = out(g, t)
                    for j in first..<end {
                        let w = weightsRow[j]
                        let row = view.keys + j &* latentBytes
                        for i in vectorEnd..<columns.upperBound { o[i] += w * Row.load1(row, i) }
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
