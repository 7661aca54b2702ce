import Testing
import WhaleCore
import WhaleFormats
import WhaleKernels

/// Mutation fuzzing: thousands of random byte flips, truncations and splices of small valid files. Every
/// mutant must either open (and then every tensor's bytes must lie inside the file) or throw a
/// WhaleError; a crash, hang or any other error fails the run. Seeded, so a failure reproduces.
@Suite struct FuzzTests {
    static let iterations = 4000

    enum Mutation: CaseIterable { case flip, overwrite, truncate, insert, delete, interestingValue }

    static func mutate(_ original: [UInt8], using rng: inout SplitMix64) -> [UInt8] {
        var bytes = original
        for _ in 0..<Int.random(in: 1...4, using: &rng) {
            guard !bytes.isEmpty else { break }
            let at = Int.random(in: 0..<bytes.count, using: &rng)
            switch Mutation.allCases.randomElement(using: &rng)! {
            case .flip: bytes[at] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &rng)
            case .overwrite: bytes[at] = UInt8.random(in: 0...255, using: &rng)
            case .truncate: bytes.removeSubrange(at...)
            case .insert:
                bytes.insert(
                    contentsOf: (0..<Int.random(in: 1...16, using: &rng)).map { _ in
                        UInt8.random(in: 0...255, using: &rng)
                    }, at: at)
            case .delete: bytes.removeSubrange(at..<min(bytes.count, at + Int.random(in: 1...16, using: &rng)))
            case .interestingValue:
                // Counts, lengths and dimensions are u64/u32: plant edge values over them.
                let values: [UInt64] = [
                    0, 1, 0x7F, 0xFF, 0xFFFF, 0xFFFF_FFFF, 1 << 31, 1 << 40, 1 << 62, .max, .max - 7,
                ]
                let value = values.randomElement(using: &rng)!
                let width = [1, 2, 4, 8].randomElement(using: &rng)!
                for k in 0..<width where at + k < bytes.count {
                    bytes[at + k] = UInt8(truncatingIfNeeded: value >> (8 * k))
                }
            }
        }
        return bytes
    }

    func survives(_ mutant: [UInt8], open: ([UInt8]) throws -> [TensorInfo], fileSize: Int) -> Bool {
        do {
            let tensors = try open(mutant)
            for tensor in tensors {
                guard tensor.offset >= 0, tensor.byteCount >= 0, tensor.offset + tensor.byteCount <= fileSize else {
                    return false
                }
            }
            return true
        } catch is WhaleError {
            return true
        } catch {
            return false
        }
    }

    @Test(arguments: ["gguf/all-types.gguf", "gguf/split-00001-of-00003.gguf", "gguf/no-tensors.gguf"])
    func ggufMutants(fixture: String) throws {
        let original = try Fixtures.bytes(fixture)
        var rng = SplitMix64(seed: 0xB1E_3A1E)
        var opened = 0
        for iteration in 0..<Self.iterations {
            let mutant = Self.mutate(original, using: &rng)
            let ok = survives(
                mutant,
                open: { bytes in
                    let file = try GGUFFile(mapped: MappedFile(copying: bytes, path: "fuzz.gguf"))
                    // Reading metadata values back must not trap either.
                    for key in file.metadataKeys { _ = file.metadata[key]?.summary }
                    // And every tensor the mutant still describes must dequantize from inside the file.
                    for tensor in file.tensors where Dequantize.supports(tensor.type) {
                        _ = try Dequantize.toFloats(
                            tensor.type, bytes: file.data(of: tensor), count: tensor.elementCount,
                            tensorName: tensor.name)
                    }
                    opened += 1
                    return file.tensors
                }, fileSize: mutant.count)
            #expect(ok, "iteration \(iteration) of \(fixture) (seed 0xB1E_3A1E)")
            if !ok { break }
        }
        #expect(opened > 0, "no mutant opened at all: the fuzzer is not reaching past the header")
    }

    @Test(arguments: [
        "safetensors/llama-single/model.safetensors", "safetensors/qwen2-sharded/model-00002-of-00002.safetensors",
    ])
    func safetensorsMutants(fixture: String) throws {
        let original = try Fixtures.bytes(fixture)
        var rng = SplitMix64(seed: 0x5AFE)
        for iteration in 0..<Self.iterations {
            let mutant = Self.mutate(original, using: &rng)
            let ok = survives(
                mutant,
                open: { bytes in
                    try SafetensorsFile(mapped: MappedFile(copying: bytes, path: "fuzz.safetensors")).tensors
                }, fileSize: mutant.count)
            #expect(ok, "iteration \(iteration) of \(fixture)")
            if !ok { break }
        }
    }

    @Test func jsonMutants() throws {
        let original = try Fixtures.bytes("safetensors/deepseek-fp8/config.json")
        var rng = SplitMix64(seed: 0x15_0)
        for iteration in 0..<Self.iterations {
            let mutant = Self.mutate(original, using: &rng)
            do {
                let value = try mutant.withUnsafeBytes { try JSONValue.parse($0) }
                if let object = value.object { _ = try? ModelConfig(fields: JSONFields(object, file: "config.json")) }
            } catch is WhaleError {
            } catch {
                Issue.record("iteration \(iteration): \(error)")
                break
            }
        }
    }
}
