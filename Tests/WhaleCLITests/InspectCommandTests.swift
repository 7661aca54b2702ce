import Foundation
import Testing
import WhaleCore

/// The `whale` binary as a user runs it. `swift test` builds it next to the test bundle.
enum Whale {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static let binary: String = {
        if let path = ProcessInfo.processInfo.environment["WHALE_BINARY"] { return path }
        let testBundle = URL(fileURLWithPath: CommandLine.arguments[0])
        var directory = testBundle.deletingLastPathComponent()
        // On macOS the runner sits inside the .xctest bundle; walk up to the products directory.
        while !FileManager.default.fileExists(atPath: directory.appendingPathComponent("whale").path),
            directory.path != "/"
        {
            directory = directory.deletingLastPathComponent()
        }
        return directory.appendingPathComponent("whale").path
    }()

    static func fixture(_ relative: String) -> String {
        packageRoot.appendingPathComponent("Tests/WhaleFormatsTests/Fixtures/" + relative).path
    }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static func run(_ arguments: [String], executable: String = binary) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(
            status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
            stderr: String(decoding: stderr, as: UTF8.self))
    }
}

@Suite struct InspectCommandTests {
    @Test func binaryWasBuilt() {
        #expect(FileManager.default.isExecutableFile(atPath: Whale.binary), "no whale binary at \(Whale.binary)")
    }

    @Test func jsonForAGGUFFile() throws {
        let result = try Whale.run(["inspect", "--json", "--tensors", Whale.fixture("gguf/all-types.gguf")])
        #expect(result.status == 0, "\(result.stderr)")
        let json = try #require(try JSONValue.parse(result.stdout).object)
        #expect(json["architecture"] == .string("llama"))
        #expect(json["format"] == .string("GGUF v3"))
        #expect(json["context_length"] == .integer(4096))
        // Outside #expect, typed: comparing an optional with literal arithmetic is more than Swift 6.0's type
        // checker can do ("unable to type-check this expression in reasonable time").
        let parameters: Int = 15 + 64 + 128 + 7 + 24
        #expect(json["parameters"]?.integer == parameters)
        let tensors = try #require(json["tensors"]?.array)
        #expect(tensors.count == 5)
        #expect(tensors.first?.object?["shape"] == .array([.integer(3), .integer(5)]))
    }

    @Test func textForASplitModel() throws {
        let result = try Whale.run(["inspect", Whale.fixture("gguf/split-00001-of-00003.gguf")])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("GGUF v3, 3 files"))
        #expect(result.stdout.contains("tensors        5"))
    }

    @Test func safetensorsDirectory() throws {
        let result = try Whale.run(["inspect", "--json", Whale.fixture("safetensors/deepseek-fp8")])
        #expect(result.status == 0, "\(result.stderr)")
        let json = try #require(try JSONValue.parse(result.stdout).object)
        #expect(json["architecture"] == .string("deepseek_v3"))
        #expect(json["block_scaled_fp8_weights"] == .integer(1))
        #expect(json["context_length"] == .integer(163_840))
    }

    /// Bad input: one `error:` line naming the file and the problem, exit code 1, nothing on stdout.
    @Test(arguments: [
        ("/nonexistent/model.gguf", "no such file"),
        ("safetensors/llama-single/config.json", "not a GGUF file"),
        ("safetensors/llama-single/model.safetensors", "no model configuration"),
    ])
    func badInputExitsWithOneLine(path: String, message: String) throws {
        let full = path.hasPrefix("/") ? path : Whale.fixture(path)
        let result = try Whale.run(["inspect", full])
        #expect(result.status == 1)
        #expect(result.stdout.isEmpty)
        #expect(result.stderr.hasPrefix("error: \(full): "), "\(result.stderr)")
        #expect(result.stderr.contains(message), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1)
    }

    @Test func truncatedFileNamesTheField() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("whale-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let bytes = try Data(contentsOf: URL(fileURLWithPath: Whale.fixture("gguf/all-types.gguf")))
        let path = directory.appendingPathComponent("cut.gguf").path
        try bytes.prefix(bytes.count - 100).write(to: URL(fileURLWithPath: path))
        let result = try Whale.run(["inspect", path])
        #expect(result.status == 1)
        #expect(result.stderr.contains("cube: data"), "\(result.stderr)")
        #expect(result.stderr.contains("past the end"), "\(result.stderr)")
    }

    /// `whale inspect --help` is part of the interface: a change to it must be deliberate
    /// (regenerate with `WHALE_UPDATE_SNAPSHOTS=1 swift test --filter WhaleCLITests`).
    @Test func helpSnapshot() throws {
        let result = try Whale.run(["inspect", "--help"])
        #expect(result.status == 0)
        let snapshot = Whale.packageRoot.appendingPathComponent("Tests/WhaleCLITests/Snapshots/inspect-help.txt")
        if ProcessInfo.processInfo.environment["WHALE_UPDATE_SNAPSHOTS"] == "1" {
            try result.stdout.write(to: snapshot, atomically: true, encoding: .utf8)
        }
        let expected = try String(contentsOf: snapshot, encoding: .utf8)
        #expect(result.stdout == expected)
    }
}
