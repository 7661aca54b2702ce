import Testing
import WhaleCore
import WhaleFormats

@Suite struct ModelConfigTests {
    @Test func llamaWithGenerationConfig() throws {
        let config = try ModelConfig.load(directory: Fixtures.path("safetensors/llama-single"))
        #expect(config.modelType == "llama")
        #expect(config.vocabSize == 16)
        #expect(config.numKeyValueHeads == 1)
        #expect(config.maxPositionEmbeddings == 256)
        #expect(config.rmsNormEps == 1e-5)
        #expect(config.ropeScaling?.type == "llama3")
        #expect(config.ropeScaling?.factor == 8)
        #expect(config.ropeScaling?.originalMaxPositionEmbeddings == 128)
        #expect(config.attentionBias == false)
        #expect(config.bosTokenId == 1)
        // generation_config.json's eos_token_id (2) overrides config.json's [2, 3].
        #expect(config.eosTokenIds == [2])
    }

    @Test func qwen2Config() throws {
        let config = try ModelConfig.load(directory: Fixtures.path("safetensors/qwen2-sharded"))
        #expect(config.modelType == "qwen2")
        #expect(config.tieWordEmbeddings)
    }

    @Test func deepseekV3SharedKeys() throws {
        let config = try ModelConfig.load(directory: Fixtures.path("safetensors/deepseek-fp8"))
        #expect(config.modelType == "deepseek_v3")
        #expect(config.ropeScaling?.type == "yarn")
        #expect(config.ropeScaling?.mscaleAllDim == 1)
        #expect(config.quantization?.method == "fp8")
        #expect(config.quantization?.format == "e4m3")
        #expect(config.quantization?.weightBlockSize == [128, 128])
    }

    func decode(_ json: String) throws -> ModelConfig {
        try ModelConfig(fields: JSONFields(JSONValue.parse(json).object!, file: "config.json"))
    }

    static let minimal =
        #""vocab_size":8,"hidden_size":4,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,"#
        + #""max_position_embeddings":16"#

    @Test func missingKeyIsNamed() {
        expectWhaleError(.missingKey, field: "hidden_size") {
            _ = try decode(#"{"model_type":"llama","vocab_size":8}"#)
        }
        expectWhaleError(.missingKey, field: "model_type") { _ = try decode("{}") }
    }

    @Test func wrongTypeIsNamed() {
        let error = expectWhaleError(.typeMismatch, field: "num_hidden_layers") {
            _ = try decode(
                #"{"model_type":"llama","#
                    + Self.minimal.replacingOccurrences(
                        of: #""num_hidden_layers":1"#, with: #""num_hidden_layers":"one""#) + "}")
        }
        #expect(error?.problem.contains("a string") == true)
    }

    @Test func inconsistentHeads() {
        expectWhaleError(.invalidValue, field: "num_key_value_heads") {
            _ = try decode(#"{"model_type":"llama","num_key_value_heads":3,"# + Self.minimal + "}")
        }
    }

    @Test func missingConfig() throws {
        let directory = try TemporaryDirectory()
        expectWhaleError(.fileNotFound) { _ = try ModelConfig.load(directory: directory.path) }
    }
}
