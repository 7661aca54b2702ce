import WhaleCore

/// Scalar reference dequantization: stored tensor bytes → `Float`.
///
/// This is the specification the SIMD kernels are tested against, and it is bit-exact with gguf-py's
/// `gguf.quants.dequantize` (golden fixtures: `scripts/make-dequant-fixtures.py`). Bit-exactness depends
/// on doing the same float32 operations in the same order as gguf-py, so each block function notes its
/// order under the tag `[DEQUANT_ORDER]`. Swift does not contract `a * b + c` into a fused multiply-add,
/// which keeps the roundings identical to numpy's separate ufuncs.
///
/// Block layouts are ggml's (`ggml-common.h`); all multi-byte fields are little-endian, and every read
/// is unaligned-safe, so tensors can be dequantized in place from a memory-mapped file.
public enum Dequantize {
    /// Every type `run` and `toFloats` accept, in the order error messages list them.
    public static let supportedTypes: [DType] = [
        .f32, .f16, .bf16, .f8E4M3,
        .q4_0, .q4_1, .q5_0, .q5_1, .q8_0,
        .q2_K, .q3_K, .q4_K, .q5_K, .q6_K,
    ]

    /// Types this build can turn into Float.
    public static func supports(_ type: DType) -> Bool {
        switch type {
        case .f32, .f16, .bf16, .f8E4M3, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K:
            true
        case .f64, .i8, .i16, .i32, .i64, .u8, .bool, .f8E5M2, .q8_1, .q8_K, .iq2_XXS, .iq2_XS, .iq3_XXS, .iq1_S,
            .iq4_NL, .iq3_S, .iq2_S, .iq4_XS, .iq1_M, .tq1_0, .tq2_0, .mxfp4:
            false
        }
    }

    /// Converts `count` elements (a whole number of blocks of `type`) read from `source` into `destination`.
    ///
    /// Precondition: `supports(type)` and `count % type.blockSize == 0`; `source` holds
    /// `type.byteCount(elements: count)` bytes and may have any alignment.
    public static func run(
        _ type: DType, from source: UnsafeRawPointer, count: Int, into destination: UnsafeMutablePointer<Float>
    ) {
        precondition(
            count >= 0 && count % type.blockSize == 0,
            "Dequantize.run: \(count) elements is not a whole number of \(type) blocks of \(type.blockSize)")
        let blocks = count / type.blockSize
        switch type {
        case .f32: copyF32(source, count: count, into: destination)
        case .f16: convertF16(source, count: count, into: destination)
        case .bf16: convertBF16(source, count: count, into: destination)
        case .f8E4M3: convertF8E4M3(source, count: count, into: destination)
        case .q4_0: q4_0(source, blocks: blocks, into: destination)
        case .q4_1: q4_1(source, blocks: blocks, into: destination)
        case .q5_0: q5_0(source, blocks: blocks, into: destination)
        case .q5_1: q5_1(source, blocks: blocks, into: destination)
        case .q8_0: q8_0(source, blocks: blocks, into: destination)
        case .q2_K: q2_K(source, blocks: blocks, into: destination)
        case .q3_K: q3_K(source, blocks: blocks, into: destination)
        case .q4_K: q4_K(source, blocks: blocks, into: destination)
        case .q5_K: q5_K(source, blocks: blocks, into: destination)
        case .q6_K: q6_K(source, blocks: blocks, into: destination)
        default: preconditionFailure("Dequantize.run: \(type) is not supported; check Dequantize.supports first")
        }
    }

    /// Dequantizes a whole tensor's bytes.
    ///
    /// Throws `.unsupportedTensorType` (naming the type and tensor, listing the supported types) for a type
    /// this build cannot convert, `.invalidShape` when `count` is not a whole number of blocks or `bytes` is
    /// longer than `count` elements need, and `.truncated` when it is shorter.
    public static func toFloats(
        _ type: DType, bytes: UnsafeRawBufferPointer, count: Int, tensorName: String
    ) throws -> [Float] {
        guard supports(type) else { throw unsupported(type, tensorName: tensorName) }
        guard count >= 0, count % type.blockSize == 0 else {
            throw WhaleError(
                .invalidShape, field: tensorName,
                "\(count) elements is not a whole number of \(type) blocks of \(type.blockSize) elements",
                hint: "the tensor's shape does not fit its type; re-convert the model")
        }
        guard let expected = type.byteCount(elements: count) else {
            throw WhaleError(.tooLarge, field: tensorName, "\(count) \(type) elements overflow the byte count")
        }
        guard bytes.count == expected else {
            throw WhaleError(
                bytes.count < expected ? .truncated : .invalidShape, field: tensorName,
                "\(count) \(type) elements need \(expected) bytes, found \(bytes.count)",
                hint: bytes.count < expected
                    ? "the model file is cut short; download it again"
                    : "the tensor's shape or type does not match its data; re-convert the model")
        }
        guard count > 0, let source = bytes.baseAddress else { return [] }
        return [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            run(type, from: source, count: count, into: buffer.baseAddress!)
            initialized = count
        }
    }

    /// DeepSeek FP8 block-scaled weight → Float, row-major `[rows, cols]`.
    ///
    /// `weight` holds `rows * cols` float8_e4m3fn codes; `scaleInv` holds float32
    /// `[ceil(rows / blockSize), ceil(cols / blockSize)]`. Each output is
    /// `fp8(r, c) * scaleInv[r / blockSize][c / blockSize]`, one float32 multiply (DeepSeek's
    /// `weight_dequant`). Throws `.invalidShape` when either tensor's size does not match the shape.
    public static func blockScaledFP8(
        weight: UnsafeRawBufferPointer, scaleInv: UnsafeRawBufferPointer, rows: Int, cols: Int,
        blockSize: Int = 128, tensorName: String
    ) throws -> [Float] {
        guard rows >= 0, cols >= 0, blockSize > 0 else {
            throw WhaleError(
                .invalidArgument, field: tensorName,
                "FP8 block scaling needs rows, cols ≥ 0 and a block size > 0, got [\(rows), \(cols)], block \(blockSize)"
            )
        }
        guard let count = CheckedSize.product([rows, cols]), weight.count == count else {
            throw WhaleError(
                .invalidShape, field: tensorName,
                "an F8_E4M3 weight of shape [\(rows), \(cols)] needs \(rows) × \(cols) bytes, found \(weight.count)",
                hint: "check the tensor's shape and dtype in the safetensors header")
        }
        let scaleRows = blockCount(rows, blockSize)
        let scaleCols = blockCount(cols, blockSize)
        guard scaleInv.count == scaleRows * scaleCols * MemoryLayout<Float>.size else {
            throw WhaleError(
                .invalidShape, field: tensorName,
                "weight_scale_inv for a [\(rows), \(cols)] weight with \(blockSize)×\(blockSize) blocks must be "
                    + "float32 [\(scaleRows), \(scaleCols)] (\(scaleRows * scaleCols * 4) bytes), "
                    + "found \(scaleInv.count) bytes",
                hint: "the scale tensor does not belong to this weight, or the checkpoint uses another block size")
        }
        guard count > 0, let codes = weight.baseAddress, let scales = scaleInv.baseAddress else { return [] }
        return [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            blockScaledFP8(
                codes, scaleInv: scales, rows: rows, cols: cols, blockSize: blockSize, into: buffer.baseAddress!)
            initialized = count
        }
    }

    static func unsupported(_ type: DType, tensorName: String) -> WhaleError {
        WhaleError(
            .unsupportedTensorType, field: tensorName,
            "tensor type \(type) cannot be dequantized by this build",
            hint: "supported types: \(supportedTypes.map(\.rawValue).joined(separator: ", ")); "
                + "re-quantize the model to one of them")
    }
}

// MARK: - Shared field readers

extension Dequantize {
    /// The little-endian float16 at `offset`, widened to Float (exact for every finite value).
    @inline(__always)
    static func half(_ pointer: UnsafeRawPointer, _ offset: Int) -> Float {
        Float(Float16(bitPattern: UInt16(littleEndian: pointer.loadUnaligned(fromByteOffset: offset, as: UInt16.self))))
    }

    /// ceil(n / blockSize) without overflowing for n near Int.max.
    @inline(__always)
    static func blockCount(_ n: Int, _ blockSize: Int) -> Int {
        n / blockSize + (n % blockSize == 0 ? 0 : 1)
    }

    @inline(__always)
    static func byte(_ pointer: UnsafeRawPointer, _ offset: Int) -> UInt8 {
        pointer.load(fromByteOffset: offset, as: UInt8.self)
    }
}
