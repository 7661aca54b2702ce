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

    /// - Precondition: `columns` is a whole number of blocks of `type`, and `data` holds `rows` rows.
    public init(type: DType, rows: Int, columns: Int, data: UnsafeRawPointer) {
        precondition(columns % type.blockSize == 0, "\(type) rows must be whole blocks")
        self.type = type
        self.rows = rows
        self.columns = columns
        self.rowBytes = type.byteCount(elements: columns)!
        self.data = data
    }

    /// Row `r` dequantized into `destination` (`columns` floats).
    public func dequantizeRow(_ r: Int, into destination: UnsafeMutablePointer<Float>) {
        Dequantize.run(type, from: data + r * rowBytes, count: columns, into: destination)
    }
}
