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

    /// - Precondition: `columns` is a whole number of blocks of `type`, and `data` holds `rows` rows.
    public init(type: DType, rows: Int, columns: Int, data: UnsafeRawPointer) {
        precondition(columns % type.blockSize == 0, "\(type) rows must be whole blocks")
        self.type = type
        self.rows = rows
        self.columns = columns
        self.rowBytes = type.byteCount(elements: columns)!
        self.data = data
        self.blockScales = nil
        self.scaleBlockSize = 0
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
    }

    /// Scale blocks per row of blocks (0 without block scales).
    var scaleColumns: Int { blockScales == nil ? 0 : (columns + scaleBlockSize - 1) / scaleBlockSize }

    /// Row `r` dequantized into `destination` (`columns` floats), block scales applied.
    public func dequantizeRow(_ r: Int, into destination: UnsafeMutablePointer<Float>) {
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
        if let scales = blockScales {
            precondition(range.lowerBound % scaleBlockSize == 0, "FP8 row slices must start on a scale block")
            return WeightMatrix(
                fp8: data + range.lowerBound * rowBytes, rows: range.count, columns: columns,
                blockScales: scales + (range.lowerBound / scaleBlockSize) * scaleColumns, blockSize: scaleBlockSize)
        }
        return WeightMatrix(type: type, rows: range.count, columns: columns, data: data + range.lowerBound * rowBytes)
    }
}
