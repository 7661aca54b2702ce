import Testing
import WhaleCore
import WhaleFormats
import WhaleTokenizer

/// The tiny DeepSeek V2/V3 fixtures (scripts/make-deepseek-fixtures.py) that the MLA/MoE work is checked
/// against: their configurations decode into the typed config with each routing variant intact, and their
/// tokenizers load (tokenizer.json and the GGUF written by llama.cpp's converter).
@Suite struct DeepSeekFixtureTests {
    func config(_ variant: String) throws -> ModelConfig {
        try ModelConfig.load(directory: Fixtures.path("deepseek/\(variant)"))
    }

    @Test func v3SigmoidNoAux() throws {
        let c = try config("v3-sigmoid-noaux")
        #expect(c.architecture == .deepseekV3)
        let ds = try #require(c.deepseek)
        #expect(ds.qLoraRank != nil)
        #expect(ds.scoringFunc == "sigmoid")
        #expect(ds.topkMethod == "noaux_tc")
        #expect(ds.nGroup == 4 && ds.topkGroup == 2)
        #expect(ds.routedScalingFactor == 2.5)
        #expect(ds.firstKDenseReplace == 1)
    }

    @Test func v3WithoutQLoraWithYarn() throws {
        let c = try config("v3-no-qlora-yarn")
        #expect(c.deepseek?.qLoraRank == nil)
        #expect(c.deepseek?.nSharedExperts == 2)
        #expect(c.ropeScaling?.type == "yarn")
        #expect(c.ropeScaling?.originalMaxPositionEmbeddings == 32)
    }

    @Test func v2Routers() throws {
        #expect(try config("v2-softmax-greedy").deepseek?.topkMethod == "greedy")
        #expect(try config("v2-softmax-greedy").deepseek?.scoringFunc == "softmax")
        #expect(try config("v2-group-limited").deepseek?.topkMethod == "group_limited_greedy")
    }

    @Test func tokenizersLoad() throws {
        let json = try Tokenizer.load(Fixtures.path("deepseek/v3-sigmoid-noaux"))
        let gguf = try Tokenizer.load(Fixtures.path("deepseek/v3-sigmoid-noaux/model-f32.gguf"))
        let text = "Hello, world! 123 你好"
        #expect(json.encode(text) == gguf.encode(text))
        #expect(try json.decode(json.encode(text)) == text)
    }
}
