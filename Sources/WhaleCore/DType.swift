/// The element type of a stored tensor: every ggml type a GGUF file may hold and every safetensors dtype.
///
/// Block-quantized types store `blockSize` elements in `bytesPerBlock` bytes; plain types have a block
/// size of 1. Whether BlueWhale can compute with a type is a separate question (see the kernels'
/// `Dequantize.supports`); this enum only knows layouts, so files with newer types still open and list.
public enum DType: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case f32 = "F32"
    case f16 = "F16"
    case bf16 = "BF16"
    case f64 = "F64"
    case i8 = "I8"
    case i16 = "I16"
    case i32 = "I32"
    case i64 = "I64"
    case u8 = "U8"
    case bool = "BOOL"
    case f8E4M3 = "F8_E4M3"
    case f8E5M2 = "F8_E5M2"
    case q4_0 = "Q4_0"
    case q4_1 = "Q4_1"
    case q5_0 = "Q5_0"
    case q5_1 = "Q5_1"
    case q8_0 = "Q8_0"
    case q8_1 = "Q8_1"
    case q2_K = "Q2_K"
    case q3_K = "Q3_K"
    case q4_K = "Q4_K"
    case q5_K = "Q5_K"
    case q6_K = "Q6_K"
    case q8_K = "Q8_K"
    case iq2_XXS = "IQ2_XXS"
    case iq2_XS = "IQ2_XS"
    case iq3_XXS = "IQ3_XXS"
    case iq1_S = "IQ1_S"
    case iq4_NL = "IQ4_NL"
    case iq3_S = "IQ3_S"
    case iq2_S = "IQ2_S"
    case iq4_XS = "IQ4_XS"
    case iq1_M = "IQ1_M"
    case tq1_0 = "TQ1_0"
    case tq2_0 = "TQ2_0"
    case mxfp4 = "MXFP4"

    public var description: String { rawValue }

    /// The `ggml_type` id used in GGUF tensor infos, or nil for types GGUF cannot hold.
    public var ggmlTypeID: UInt32? {
        switch self {
        case .f32: 0
        case .f16: 1
        case .q4_0: 2
        case .q4_1: 3
        case .q5_0: 6
        case .q5_1: 7
        case .q8_0: 8
        case .q8_1: 9
        case .q2_K: 10
        case .q3_K: 11
        case .q4_K: 12
        case .q5_K: 13
        case .q6_K: 14
        case .q8_K: 15
        case .iq2_XXS: 16
        case .iq2_XS: 17
        case .iq3_XXS: 18
        case .iq1_S: 19
        case .iq4_NL: 20
        case .iq3_S: 21
        case .iq2_S: 22
        case .iq4_XS: 23
        case .i8: 24
        case .i16: 25
        case .i32: 26
        case .i64: 27
        case .f64: 28
        case .iq1_M: 29
        case .bf16: 30
        case .tq1_0: 34
        case .tq2_0: 35
        case .mxfp4: 39
        case .u8, .bool, .f8E4M3, .f8E5M2: nil
        }
    }

    /// The type with this `ggml_type` id, or nil for an id this build does not know (ids 4 and 5 were
    /// Q4_2/Q4_3, removed from ggml; 31–33 were the repacked Q4_0_4_4 family, no longer written).
    public init?(ggmlTypeID: UInt32) {
        guard let match = DType.allCases.first(where: { $0.ggmlTypeID == ggmlTypeID }) else { return nil }
        self = match
    }

    /// The type with this safetensors dtype name (`"F32"`, `"BF16"`, `"F8_E4M3"`, …).
    public init?(safetensorsName: String) {
        switch safetensorsName {
        case "F32": self = .f32
        case "F16": self = .f16
        case "BF16": self = .bf16
        case "F64": self = .f64
        case "I8": self = .i8
        case "I16": self = .i16
        case "I32": self = .i32
        case "I64": self = .i64
        case "U8": self = .u8
        case "BOOL": self = .bool
        case "F8_E4M3": self = .f8E4M3
        case "F8_E5M2": self = .f8E5M2
        default: return nil
        }
    }

    /// Elements per block (1 for plain types).
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16, .f64, .i8, .i16, .i32, .i64, .u8, .bool, .f8E4M3, .f8E5M2: 1
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q8_1, .iq4_NL, .mxfp4: 32
        case .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_K, .iq2_XXS, .iq2_XS, .iq3_XXS, .iq1_S, .iq3_S, .iq2_S,
            .iq4_XS, .iq1_M, .tq1_0, .tq2_0:
            256
        }
    }

    /// Bytes per block (the element size for plain types).
    public var bytesPerBlock: Int {
        switch self {
        case .f64, .i64: 8
        case .f32, .i32: 4
        case .f16, .bf16, .i16: 2
        case .i8, .u8, .bool, .f8E4M3, .f8E5M2: 1
        case .q4_0: 18
        case .q4_1: 20
        case .q5_0: 22
        case .q5_1: 24
        case .q8_0: 34
        case .q8_1: 36
        case .q2_K: 84
        case .q3_K: 110
        case .q4_K: 144
        case .q5_K: 176
        case .q6_K: 210
        case .q8_K: 292
        case .iq2_XXS: 66
        case .iq2_XS: 74
        case .iq3_XXS: 98
        case .iq1_S: 50
        case .iq4_NL: 18
        case .iq3_S: 110
        case .iq2_S: 82
        case .iq4_XS: 136
        case .iq1_M: 56
        case .tq1_0: 54
        case .tq2_0: 66
        case .mxfp4: 17
        }
    }

    /// Whether this is a block-quantized type (as opposed to a plain numeric type).
    public var isQuantized: Bool { blockSize > 1 }

    /// Bytes needed for `count` elements, or nil if `count` is not a whole number of blocks or the
    /// size overflows.
    public func byteCount(elements count: Int) -> Int? {
        guard count >= 0, count % blockSize == 0 else { return nil }
        let (bytes, overflow) = (count / blockSize).multipliedReportingOverflow(by: bytesPerBlock)
        return overflow ? nil : bytes
    }
}
