import Testing
import WhaleCore

@Suite struct DTypeTests {
    /// ggml's type ids and block layouts (ggml.h `ggml_type`, ggml.c `type_traits`).
    @Test(arguments: [
        (DType.f32, UInt32(0), 1, 4), (.f16, 1, 1, 2), (.q4_0, 2, 32, 18), (.q4_1, 3, 32, 20), (.q5_0, 6, 32, 22),
        (.q5_1, 7, 32, 24), (.q8_0, 8, 32, 34), (.q2_K, 10, 256, 84), (.q3_K, 11, 256, 110), (.q4_K, 12, 256, 144),
        (.q5_K, 13, 256, 176), (.q6_K, 14, 256, 210), (.bf16, 30, 1, 2), (.iq4_NL, 20, 32, 18),
    ])
    func ggmlLayout(type: DType, id: UInt32, blockSize: Int, bytes: Int) {
        #expect(type.ggmlTypeID == id)
        #expect(DType(ggmlTypeID: id) == type)
        #expect(type.blockSize == blockSize)
        #expect(type.bytesPerBlock == bytes)
    }

    @Test func unknownIDs() {
        for id: UInt32 in [4, 5, 31, 32, 33, 36, 40, 1000, .max] { #expect(DType(ggmlTypeID: id) == nil) }
    }

    @Test func byteCounts() {
        #expect(DType.q4_K.byteCount(elements: 512) == 288)
        #expect(DType.q4_K.byteCount(elements: 100) == nil)
        #expect(DType.f32.byteCount(elements: Int.max / 2) == nil)
        #expect(DType.f8E4M3.byteCount(elements: 7) == 7)
    }

    @Test func safetensorsNames() {
        #expect(DType(safetensorsName: "F8_E4M3") == .f8E4M3)
        #expect(DType(safetensorsName: "BF16") == .bf16)
        #expect(DType(safetensorsName: "Q4_0") == nil)
    }

    @Test func checkedProduct() {
        #expect(CheckedSize.product([2, 3, 4]) == 24)
        #expect(CheckedSize.product([]) == 1)
        #expect(CheckedSize.product([1 << 31, 1 << 31]) == nil)
        #expect(CheckedSize.product([1 << 40, 1 << 40]) == nil)
        #expect(CheckedSize.product([-1, 4]) == nil)
    }
}
