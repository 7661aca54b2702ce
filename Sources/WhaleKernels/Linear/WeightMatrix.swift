import WhaleCore

/// A weight matrix `[rows, columns]` stored row after row in one of the weight types, read in place
/// from a memory-mapped file: the right-hand side of every linear layer (`y = W·x`).
///
/// `@unchecked Sendable`: it only points at immutable mapped memory, which its owner keeps alive.
public struct WeightMatrix: @unchecked Sendable {
    public let type: DType
    public let rows: Int
    public let columns: Int
    /// Bytes of one row (`type.byteCount(elements: columns)`).
    public let rowBytes: Int
    public let data: UnsafeRawPointer
    /// DeepSeek's FP8 checkpoints: one float32 factor per `scaleBlockSize`×`scaleBlockSize` block of an
    /// F8_E4M3 matrix (`weight_scale_inv`, `[ceil(rows/b), ceil(columns/b)]` row-major); the real weight is
    /// `code × factor`. Nil for every other matrix.
    public let blockScales: UnsafePointer<Float>?
    public let scaleBlockSize: Int
    /// How the rows are stored: the file's layout, or repacked for the matrix kernels ([INTERLEAVED_ROWS]).
    public let layout: WeightLayout

    /// - Precondition: `columns` is a whole number of blocks of `type`, and `data` holds `rows` rows in
    ///   `layout` (an interleaved layout only for `InterleavedRows.supports(type)` and whole groups of rows).
    public init(type: DType, rows: Int, columns: Int, data: UnsafeRawPointer, layout: WeightLayout = .rows) {
        precondition(columns % type.blockSize == 0, "\(type) rows must be whole blocks")
        precondition(
            layout == .rows || (InterleavedRows.supports(type) && rows % InterleavedRows.groupRows == 0),
            "\(type) [\(rows), \(columns)] has no interleaved layout")
        self.type = type
        self.rows = rows
        self.columns = columns
        self.rowBytes = type.byteCount(elements: columns)!
        self.data = data
        self.blockScales = nil
        self.scaleBlockSize = 0
        self.layout = layout
    }

    /// An F8_E4M3 matrix with float32 block scales (see `blockScales`).
    public init(fp8 data: UnsafeRawPointer, rows: Int, columns: Int, blockScales: UnsafePointer<Float>, blockSize: Int)
    {
        precondition(blockSize > 0)
        self.type = .f8E4M3
        self.rows = rows
        self.columns = columns
        self.rowBytes = columns
        self.data = data
        self.blockScales = blockScales
        self.scaleBlockSize = blockSize
        self.layout = .rows
    }

    /// Bytes of the matrix's storage.
    public var byteCount: Int { rows * rowBytes }

    /// This matrix repacked into the interleaved layout ([INTERLEAVED_ROWS]) at `destination` (`byteCount`
    /// bytes, which the caller keeps alive). `afterRows(n)` is told after each stretch of groups that the
    /// source's first `n` rows have been read, so the caller can release those source pages as it goes
    /// instead of holding both copies.
    ///
    /// - Precondition: `layout == .rows`, `InterleavedRows.supports(type)`, rows a whole number of groups.
    public func interleaved(
        into destination: UnsafeMutableRawPointer, afterRows: (Int) -> Void = { _ in }
    ) -> WeightMatrix {
        precondition(layout == .rows && InterleavedRows.supports(type) && rows % InterleavedRows.groupRows == 0)
        let groups = rows / InterleavedRows.groupRows
        // About 1 MiB of source per stretch.
        let stretch = max(1, (1 << 20) / max(1, InterleavedRows.groupRows * rowBytes))
        var g = 0
        while g < groups {
            let end = min(groups, g + stretch)
            InterleavedRows.pack(type, rowBytes: rowBytes, from: data, to: destination, groups: g..<end)
            afterRows(end * InterleavedRows.groupRows)
            g = end
        }
        return WeightMatrix(type: type, rows: rows, columns: columns, data: destination, layout: .interleaved)
    }

    /// Row `r` as the file stores it (`rowBytes` bytes), whatever the layout.
    func withFileRow<Result>(_ r: Int, _ body: (UnsafeRawPointer) -> Result) -> Result {
        if layout == .rows { return body(data + r * rowBytes) }
        let row = UnsafeMutableRawPointer.allocate(byteCount: rowBytes, alignment: 16)
        defer { row.deallocate() }
        InterleavedRows.unpackRow(type, rowBytes: rowBytes, data: data, row: r, into: row)
        return body(row)
    }

    /// Scale blocks per row of blocks (0 without block scales).
    var scaleColumns: Int { blockScales == nil ? 0 : (columns + scaleBlockSize - 1) / scaleBlockSize }

    /// Row `r` dequantized into `destination` (`columns` floats), block scales applied.
    public func dequantizeRow(_ r: Int, into destination: UnsafeMutablePointer<Float>) {
        if layout == .interleaved {
            // Block by block through a small buffer: a row lookup (an embedding) allocates nothing.
            let blockSize = type.blockSize
            withUnsafeTemporaryAllocation(byteCount: type.bytesPerBlock, alignment: 16) { buffer in
                for b in 0..<(columns / blockSize) {
                    InterleavedRows.unpackBlock(
                        type, rowBytes: rowBytes, data: data, row: r, block: b, into: buffer.baseAddress!)
                    Dequantize.run(
                        type, from: UnsafeRawPointer(buffer.baseAddress!), count: blockSize,
                        into: destination + b * blockSize)
                }
            }
            return
        }
        Dequantize.run(type, from: data + r * rowBytes, count: columns, into: destination)
        if let scales = blockScales {
            let scaleRow = scales + (r / scaleBlockSize) * scaleColumns
            for c in 0..<columns { destination[c] *= scaleRow[c / scaleBlockSize] }
        }
    }

    /// Rows `range` as a matrix of their own (same storage): one expert of a stacked 3-D tensor, or the
    /// rows of one attention head.
    ///
    /// - Precondition: `range` lies in `0..<rows`; for block-scaled matrices it starts on a scale block.
    public func rows(_ range: Range<Int>) -> WeightMatrix {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows)
        if layout == .interleaved {
            precondition(
                range.lowerBound % InterleavedRows.groupRows == 0 && range.count % InterleavedRows.groupRows == 0,
                "interleaved row slices must be whole groups")
            return WeightMatrix(
                type: type, rows: range.count, columns: columns, data: data + range.lowerBound * rowBytes,
                layout: .interleaved)
        }
        if let scales = blockScales {
            precondition(range.lowerBound % scaleBlockSize == 0, "FP8 row slices must start on a scale block")
            return WeightMatrix(
                fp8: data + range.lowerBound * rowBytes, rows: range.count, columns: columns,
                blockScales: scales + (range.lowerBound / scaleBlockSize) * scaleColumns, blockSize: scaleBlockSize)
        }
        return WeightMatrix(type: type, rows: range.count, columns: columns, data: data + range.lowerBound * rowBytes)
    }
}
