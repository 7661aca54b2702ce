import Foundation
import Testing
import WhaleCore

/// Commands take a model cached by huggingface_hub by its hub name (`org/name:TAG`), and `whale list` shows it.
@Suite struct HubNameTests {
    /// A cache (huggingface_hub's layout) holding the tiny Llama's Q8_0 GGUF as `org/tiny-GGUF`.
    static func cache() throws -> URL {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("whale-cli-hub-\(UUID().uuidString)")
        let folder = root.appendingPathComponent("models--org--tiny-GGUF")
        let commit = String(repeating: "0123456789", count: 4)
        try FileManager.default.createDirectory(
            at: folder.appendingPathComponent("snapshots/\(commit)"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(
            at: folder.appendingPathComponent("blobs"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(
            at: folder.appendingPathComponent("refs"), withIntermediateDirectories: true)
        try commit.write(to: folder.appendingPathComponent("refs/main"), atomically: true, encoding: .utf8)
        let gguf = Whale.packageRoot.appendingPathComponent(
            "Tests/WhaleModelsTests/Fixtures/tiny-llama/model-q8_0.gguf")
        try FileManager.default.copyItem(at: gguf, to: folder.appendingPathComponent("blobs/abc"))
        try FileManager.default.createSymbolicLink(
            atPath: folder.appendingPathComponent("snapshots/\(commit)/tiny-Q8_0.gguf").path,
            withDestinationPath: "../../blobs/abc")
        return root
    }

    @Test func inspectAndListByName() throws {
        let root = try Self.cache()
        let env = ["HF_HUB_CACHE=\(root.path)", Whale.binary]
        let byName = try Whale.run(env + ["inspect", "org/tiny-GGUF:q8_0"], executable: "/usr/bin/env")
        let byPath = try Whale.run(
            [
                "inspect",
                Whale.packageRoot.appendingPathComponent("Tests/WhaleModelsTests/Fixtures/tiny-llama/model-q8_0.gguf")
                    .path,
            ])
        #expect(byName.status == 0, "\(byName.stderr)")
        // The same model: the same report after the file line.
        let reportByName: [Substring] = Array(byName.stdout.split(separator: "\n").dropFirst())
        let reportByPath: [Substring] = Array(byPath.stdout.split(separator: "\n").dropFirst())
        #expect(reportByName == reportByPath)
        let list = try Whale.run(env + ["list"], executable: "/usr/bin/env")
        #expect(list.status == 0)
        #expect(list.stdout.contains("org/tiny-GGUF  main@012345678901  1 files"), "\(list.stdout)")
        // What is not cached would be pulled (scripts/test-hub.py tests that against a local hub); --no-pull and
        // HF_HUB_OFFLINE=1 say it is not there instead, without touching the network.
        let missing = try Whale.run(env + ["inspect", "org/absent:Q4_K_M", "--no-pull"], executable: "/usr/bin/env")
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("org/absent (main) is not in the Hugging Face cache"), "\(missing.stderr)")
        #expect(missing.stderr.contains("whale pull org/absent:Q4_K_M"), "\(missing.stderr)")
        let offline = ["HF_HUB_OFFLINE=1"] + env
        let noTag = try Whale.run(offline + ["inspect", "org/tiny-GGUF:Q2_K"], executable: "/usr/bin/env")
        #expect(noTag.status == 1 && noTag.stderr.contains("tags there: Q8_0"), "\(noTag.stderr)")
    }
}
