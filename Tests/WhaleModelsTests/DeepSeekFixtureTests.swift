import Testing
import WhaleCore
import WhaleFormats
import WhaleTokenizer

@testable import WhaleModels

/// The tiny DeepSeek V2/V3 fixtures (scripts/make-deepseek-fixtures.py) that the MLA/MoE work is checked
/// against: their configurations decode into the typed config with each routing variant intact, and their
/// tokenizers load (tokenizer.json and the GGUF written by llama.cpp's converter).
@Suite struct DeepSeekFixtureTests {
    func config(_ variant: String) throws -> ModelConfig {
        try ModelConfig.load(directory: Fixtures.path("deepseek/\(variant)"))
    }

    @Test func v3SigmoidNoAux() throws {
        let c = try config("v3-sigmoid-noaux")
        #expect(c.modelType == "deepseek_v3")
        let ds = try DeepSeek.Hyperparameters(c)
        #expect(ds.qLoraRank != nil)
        #expect(ds.scoringFunc == "sigmoid")
        #expect(ds.topkMethod == "noaux_tc")
        #expect(ds.nGroup == 4 && ds.topkGroup == 2)
        #expect(ds.routedScalingFactor == 2.5)
        #expect(ds.firstKDenseReplace == 1)
    }

    @Test func v3WithoutQLoraWithYarn() throws {
        let c = try config("v3-no-qlora-yarn")
        #expect(try DeepSeek.Hyperparameters(c).qLoraRank == nil)
        #expect(try DeepSeek.Hyperparameters(c).nSharedExperts == 2)
        #expect(c.ropeScaling?.type == "yarn")
        #expect(c.ropeScaling?.originalMaxPositionEmbeddings == 32)
    }

    @Test func v2Routers() throws {
        #expect(try DeepSeek.Hyperparameters(config("v2-softmax-greedy")).topkMethod == "greedy")
        #expect(try DeepSeek.Hyperparameters(config("v2-softmax-greedy")).scoringFunc == "softmax")
        #expect(try DeepSeek.Hyperparameters(config("v2-group-limited")).topkMethod == "group_limited_greedy")
    }

    @Test func tokenizersLoad() throws {
        let json = try Tokenizer.load(Fixtures.path("deepseek/v3-sigmoid-noaux"))
        let gguf = try Tokenizer.load(Fixtures.path("deepseek/v3-sigmoid-noaux/model-f32.gguf"))
        let text = "Hello, world! 123 你好"
        #expect(json.encode(text) == gguf.encode(text))
        #expect(try json.decode(json.encode(text)) == text)
    }
}
