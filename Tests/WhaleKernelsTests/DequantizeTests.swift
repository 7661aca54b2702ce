import Foundation
import Testing
import WhaleCore
import WhaleKernels

/// Golden tests against gguf-py 0.19.0 (`gguf.quants.dequantize`) and ml_dtypes (F8_E4M3): every output
/// must match bit for bit. Regenerate with `python3 scripts/make-dequant-fixtures.py`.
struct DequantizeTests {
    static let goldenTypes: [DType] = [
        .f32, .f16, .bf16, .f8E4M3, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K,
    ]

    @Test("every golden type is supported")
    func supportedTypesHaveFixtures() {
        #expect(Set(Dequantize.supportedTypes) == Set(Self.goldenTypes))
        for type in DType.allCases {
            #expect(Dequantize.supports(type) == Dequantize.supportedTypes.contains(type), "\(type)")
        }
    }

    @Test("matches the reference bit for bit", arguments: goldenTypes)
    func matchesReference(type: DType) throws {
        let raw = try DequantFixtures.data("\(type.rawValue).raw")
        let expected = try DequantFixtures.floats("\(type.rawValue).f32")
        #expect(type.byteCount(elements: expected.count) == raw.count)
        let actual = try raw.withUnsafeBytes {
            try Dequantize.toFloats(type, bytes: $0, count: expected.count, tensorName: "golden.\(type)")
        }
        expectSameBits(actual, expected, "\(type)")
    }

    /// A tensor inside a mapped file starts wherever the file puts it; `run` must not assume alignment.
    @Test("unaligned source and a run starting mid-tensor", arguments: goldenTypes, [1, 3])
    func unalignedSource(type: DType, misalignment: Int) throws {
        let raw = try DequantFixtures.data("\(type.rawValue).raw")
        let expected = try DequantFixtures.floats("\(type.rawValue).f32")
        // Skip the first block so the run also starts at a block boundary that is not the tensor's start.
        let skipped = type.blockSize
        let count = expected.count - skipped
        let skippedBytes = type.bytesPerBlock
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: raw.count + misalignment, alignment: 16)
        defer { buffer.deallocate() }
        raw.withUnsafeBytes {
            buffer.baseAddress!.advanced(by: misalignment).copyMemory(from: $0.baseAddress!, byteCount: $0.count)
        }
        var actual = [Float](repeating: .nan, count: count)
        actual.withUnsafeMutableBufferPointer { out in
            Dequantize.run(
                type, from: UnsafeRawPointer(buffer.baseAddress!) + misalignment + skippedBytes, count: count,
                into: out.baseAddress!)
        }
        expectSameBits(actual, Array(expected[skipped...]), "\(type) at misalignment \(misalignment)")
    }

    @Test("F8_E4M3: e4m3fn values, NaN only at 0x7F and 0xFF")
    func fp8Codes() throws {
        let values = try DequantFixtures.floats("F8_E4M3.f32")
        #expect(values.count == 256)
        #expect(values.indices.filter { values[$0].isNaN } == [0x7F, 0xFF])
        #expect(values[0x7E] == 448)
        #expect(values[0x01] == 0x1p-9)
        #expect(values[0x08] == 0x1p-6)
        #expect(values[0x38] == 1)
        #expect(values[0x80].bitPattern == (-0.0 as Float).bitPattern)
        #expect(!values.contains { $0.isInfinite })
    }

    @Test("DeepSeek block-scaled FP8 matches numpy float32")
    func blockScaledFP8() throws {
        struct Shape: Decodable {
            var rows: Int
            var cols: Int
            var block_size: Int
        }
        let shape = try JSONDecoder().decode(Shape.self, from: DequantFixtures.data("FP8_BLOCK_SCALED.json"))
        let weight = try DequantFixtures.data("FP8_BLOCK_SCALED.weight")
        let scaleInv = try DequantFixtures.data("FP8_BLOCK_SCALED.scale_inv")
        let expected = try DequantFixtures.floats("FP8_BLOCK_SCALED.f32")
        #expect(shape.rows % shape.block_size != 0 && shape.cols % shape.block_size != 0)
        let actual = try weight.withUnsafeBytes { weight in
            try scaleInv.withUnsafeBytes { scaleInv in
                try Dequantize.blockScaledFP8(
                    weight: weight, scaleInv: scaleInv, rows: shape.rows, cols: shape.cols,
                    blockSize: shape.block_size, tensorName: "fp8.weight")
            }
        }
        expectSameBits(actual, expected, "block-scaled FP8 [\(shape.rows), \(shape.cols)]")
    }

    @Test("unsupported type throws, naming the type, the tensor and what is supported")
    func unsupportedType() {
        #expect(!Dequantize.supports(.iq2_XXS))
        #expect(!Dequantize.supports(.q8_K))
        let bytes = [UInt8](repeating: 0, count: DType.iq2_XXS.bytesPerBlock)
        let error = bytes.withUnsafeBytes { bytes in
            thrownWhaleError {
                try Dequantize.toFloats(.iq2_XXS, bytes: bytes, count: 256, tensorName: "blk.3.ffn_up.weight")
            }
        }
        #expect(error?.code == .unsupportedTensorType)
        #expect(error?.field == "blk.3.ffn_up.weight")
        let text = error?.description ?? ""
        #expect(text.contains("IQ2_XXS") && text.contains("blk.3.ffn_up.weight"))
        #expect(text.contains("Q4_K") && text.contains("Q8_0") && text.contains("F8_E4M3"))
    }

    struct SizeCase: Sendable, CustomTestStringConvertible {
        var count: Int
        var bytes: Int
        var code: WhaleError.Code
        var testDescription: String { "Q4_0 × \(count) in \(bytes) bytes → \(code)" }
    }

    @Test(
        "byte count that does not match the element count throws",
        arguments: [
            SizeCase(count: 64, bytes: 35, code: .truncated),
            SizeCase(count: 64, bytes: 37, code: .invalidShape),
            SizeCase(count: 33, bytes: 36, code: .invalidShape),
            SizeCase(count: 64, bytes: 0, code: .truncated),
            SizeCase(count: -32, bytes: 0, code: .invalidShape),
        ])
    func byteCountMismatch(size: SizeCase) {
        let bytes = [UInt8](repeating: 0, count: size.bytes)
        let error = bytes.withUnsafeBytes { bytes in
            thrownWhaleError {
                try Dequantize.toFloats(.q4_0, bytes: bytes, count: size.count, tensorName: "blk.0.attn_q.weight")
            }
        }
        #expect(error?.code == size.code)
        #expect(error?.field == "blk.0.attn_q.weight")
    }

    @Test("empty tensor gives no values")
    func emptyTensor() throws {
        let values = try Dequantize.toFloats(
            .q4_K, bytes: UnsafeRawBufferPointer(start: nil, count: 0), count: 0, tensorName: "empty")
        #expect(values.isEmpty)
    }

    struct FP8Case: Sendable, CustomTestStringConvertible {
        var scaleRows: Int
        var scaleCols: Int
        var weightBytes: Int
        var testDescription: String {
            "[200, 300] with scale [\(scaleRows), \(scaleCols)], \(weightBytes) weight bytes"
        }
    }

    @Test(
        "FP8 scale or weight of the wrong size throws",
        arguments: [
            FP8Case(scaleRows: 1, scaleCols: 3, weightBytes: 200 * 300),  // rows need 2 scale rows
            FP8Case(scaleRows: 2, scaleCols: 2, weightBytes: 200 * 300),  // cols need 3 scale columns
            FP8Case(scaleRows: 3, scaleCols: 3, weightBytes: 200 * 300),  // one scale row too many
            FP8Case(scaleRows: 2, scaleCols: 3, weightBytes: 200 * 300 - 1),  // weight truncated
        ])
    func fp8ShapeMismatch(shape: FP8Case) {
        let weight = [UInt8](repeating: 0x38, count: shape.weightBytes)
        let scaleInv = [Float](repeating: 1, count: shape.scaleRows * shape.scaleCols)
        let error = weight.withUnsafeBytes { weight in
            scaleInv.withUnsafeBytes { scaleInv in
                thrownWhaleError {
                    try Dequantize.blockScaledFP8(
                        weight: weight, scaleInv: scaleInv, rows: 200, cols: 300,
                        tensorName: "layers.0.mlp.up_proj.weight")
                }
            }
        }
        #expect(error?.code == .invalidShape)
        #expect(error?.field == "layers.0.mlp.up_proj.weight")
    }
}
