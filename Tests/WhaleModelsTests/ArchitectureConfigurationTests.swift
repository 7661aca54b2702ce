import Foundation
import Testing
import WhaleCore
import WhaleFormats

@testable import WhaleModels

/// What each architecture reads from config.json (the generic ModelConfig keeps only the shared keys), on the
/// format tests' fixtures, and the registry's refusal of architectures it cannot run.
@Suite struct ArchitectureConfigurationTests {
    static let formatFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("WhaleFormatsTests/Fixtures/safetensors").path

    static let minimal =
        #""vocab_size":8,"hidden_size":4,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,"#
        + #""max_position_embeddings":16"#

    func decode(_ json: String) throws -> ModelConfig {
        try ModelConfig(fields: JSONFields(JSONValue.parse(json).object!, file: "config.json"))
    }

    @Test func deepseekV3() throws {
        let config = try ModelConfig.load(directory: Self.formatFixtures + "/deepseek-fp8")
        let ds = try DeepSeek.Hyperparameters(config)
        #expect(ds.qLoraRank == nil)
        #expect(ds.kvLoraRank == 4)
        #expect(ds.qkRopeHeadDim == 2)
        #expect(ds.scoringFunc == "sigmoid")
        #expect(ds.topkMethod == "noaux_tc")
        #expect(ds.nGroup == 2 && ds.topkGroup == 1)
        #expect(ds.routedScalingFactor == 2.5)
        #expect(ds.numNextnPredictLayers == 1)
        #expect(ds.firstKDenseReplace == 1)
    }

    @Test func deepseekNeedsLatentDimensions() throws {
        let config = try decode(#"{"model_type":"deepseek_v2","# + Self.minimal + "}")
        do {
            _ = try DeepSeek.Hyperparameters(config)
            Issue.record("decoded a DeepSeek config without kv_lora_rank")
        } catch let error as WhaleError {
            #expect(error.code == .missingKey && error.field == "kv_lora_rank")
        }
    }

    /// Qwen2's config has no `attention_bias`: its projections always have biases.
    @Test func qwen2HasAttentionBias() throws {
        let files = try ModelFiles.open(Fixtures.path("tiny-qwen2"))
        #expect(try Llama.configuration(files, ggufRope: .halves, qkvBias: true).qkvBias)
        #expect(try Llama.configuration(files, ggufRope: .interleaved, qkvBias: nil).qkvBias == false)
    }

    /// An odd head width (hidden 6 / 2 heads) cannot be rotated: a typed error, not a crash.
    @Test func oddHeadWidthIsRefused() throws {
        do {
            _ = try ModelRegistry.load(Self.formatFixtures + "/qwen2-sharded")
            Issue.record("loaded a model with an odd head width")
        } catch let error as WhaleError {
            #expect(error.code == .invalidValue && error.problem.contains("head width 3"))
        }
    }

    @Test func unknownArchitectureIsRefusedByName() throws {
        let directory = try TemporaryModel.copy(Fixtures.path("tiny-llama"))
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try TemporaryModel.edit(directory) { $0.replacingOccurrences(of: "\"llama\"", with: "\"mamba\"") }
        do {
            _ = try ModelRegistry.load(directory)
            Issue.record("loaded an unsupported architecture")
        } catch let error as WhaleError {
            #expect(error.code == .unsupportedArchitecture && error.field == "model_type")
            #expect(error.problem.contains("mamba"))
            #expect(error.hint?.contains("deepseek_v3") == true)
        }
    }
}
