import Foundation
import WhaleCore

/// Writes recorded taps in the dump format scripts/diff-taps.py reads: `manifest.json` (source, model,
/// tokens, and the taps in the order they were computed: name, layer, shape, file) and one NumPy `.npy` file
/// (float32, C order, shape outermost first) per tap and layer, named `NAME.LAYER.npy` (`NAME.npy` outside
/// the layer stack).
enum TapDump {
    static func write(_ recorder: TapRecorder, to directory: String, model: String, tokens: [Int]) throws {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw WhaleError(.ioError, file: directory, "cannot create the directory: \(error.localizedDescription)")
        }
        var entries: [JSONValue] = []
        var seen: [String: Int] = [:]
        for tap in recorder.taps {
            var file = tap.layer.map { "\(tap.name).\($0)" } ?? tap.name
            // A name recorded twice for one layer (several sequences or passes) gets a suffix.
            let count = seen[file, default: 0]
            seen[file] = count + 1
            if count > 0 { file += "-\(count)" }
            file += ".npy"
            try write(npy: tap.values, shape: tap.shape, to: directory + "/" + file)
            entries.append(
                .object(
                    JSONObject([
                        "name": .string(tap.name), "layer": tap.layer.map { .integer(Int64($0)) } ?? .null,
                        "shape": .array(tap.shape.map { .integer(Int64($0)) }), "file": .string(file),
                    ])))
        }
        let manifest = JSONObject([
            "source": .string("whale"), "model": .string(model),
            "tokens": .array(tokens.map { .integer(Int64($0)) }), "taps": .array(entries),
        ])
        try write(Data(JSONValue.object(manifest).serialized(pretty: true).utf8), to: directory + "/manifest.json")
    }

    /// NumPy format 1.0: magic, version, a header dict padded to a multiple of 64 bytes, then the data.
    static func write(npy values: [Float], shape: [Int], to path: String) throws {
        let dims = shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? "," : "")
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(dims)), }"
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var data = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
        let length = UInt16(header.utf8.count)
        data.append(contentsOf: [UInt8(length & 0xFF), UInt8(length >> 8)])
        data.append(contentsOf: Array(header.utf8))
        values.withUnsafeBytes { data.append(contentsOf: $0) }
        try write(data, to: path)
    }

    static func write(_ data: Data, to path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: data) else {
            throw WhaleError(.ioError, file: path, "cannot write the file", hint: "check the directory's permissions")
        }
    }
}
