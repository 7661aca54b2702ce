import WhaleCore
import WhaleFormats
import WhaleKernels

// Qwen2 (Qwen2 / Qwen2.5, DeepSeek-R1-Distill-Qwen): the Llama decoder with biases on the q/k/v
// projections (always: Qwen2's config has no `attention_bias` switch) and RoPE over half-split dimensions —
// in GGUF too, since llama.cpp's converter does not permute Qwen2's Q/K (`LLM_ARCH_QWEN2` uses NEOX rope).
// Reference: transformers' modeling_qwen2.py.

enum Qwen2: Architecture {
    static func load(_ files: ModelFiles, options: LoadOptions) throws -> TransformerDecoder {
        try Llama.build(Llama.configuration(files, ggufRope: .halves, qkvBias: true), files: files, options: options)
    }

    static func cache(_ files: ModelFiles, precision: AttentionPrecision?) throws -> ModelInspection.CacheDescription {
        try Llama.describeCache(
            Llama.configuration(files, ggufRope: .halves, qkvBias: true), precision: precision, source: files.path)
    }

    static func layout(_ files: ModelFiles) throws -> (layers: Int, names: TensorNames) {
        (try Llama.configuration(files, ggufRope: .halves, qkvBias: true).layers, Llama.names(files))
    }
}
