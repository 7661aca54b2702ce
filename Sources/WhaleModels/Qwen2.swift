import WhaleCore
import WhaleFormats
import WhaleKernels

// Qwen2 (Qwen2 / Qwen2.5, DeepSeek-R1-Distill-Qwen): the Llama decoder with biases on the q/k/v
// projections and RoPE over half-split dimensions — in GGUF too, since llama.cpp's converter does not
// permute Qwen2's Q/K (`LLM_ARCH_QWEN2` uses NEOX rope). Reference: transformers' modeling_qwen2.py.

extension DenseDecoder {
    static func qwen2(_ files: ModelFiles, options: LoadOptions) throws -> DenseDecoder {
        let configuration: Configuration
        switch files {
        case .gguf(let model):
            configuration = try ggufConfiguration(model, architecture: "qwen2", layout: .halves, qkvBias: true)
        case .safetensors(_, let config):
            configuration = try huggingFaceConfiguration(config, files: files, qkvBias: true)
        }
        return try DenseDecoder(configuration: configuration, files: files, options: options)
    }
}
