import WhaleCore
import WhaleFormats

/// Typed reads of one architecture's GGUF metadata (`ARCH.key`), with errors that name the key.
struct GGUFKeys {
    let model: GGUFModel
    /// The key prefix, `general.architecture` (`llama`, `qwen2`, `deepseek2`, …).
    let architecture: String

    func optionalInt(_ key: String) -> Int? { model.metadata["\(architecture).\(key)"]?.int }
    func double(_ key: String) -> Double? { model.metadata["\(architecture).\(key)"]?.double }
    func bool(_ key: String) -> Bool? { model.metadata["\(architecture).\(key)"]?.bool }
    func string(_ key: String) -> String? { model.metadata["\(architecture).\(key)"]?.string }

    /// A positive integer, `fallback` when the key is absent or not positive, else an error naming the key.
    func int(_ key: String, default fallback: Int? = nil) throws -> Int {
        if let found = optionalInt(key), found > 0 { return found }
        if let fallback { return fallback }
        throw WhaleError(
            .missingKey, file: model.path, field: "\(architecture).\(key)", "required metadata is missing")
    }

    /// Rows of `token_embd.weight`: the vocabulary size the weights have.
    func vocabularySize() throws -> Int {
        guard let embedding = model.tensor(named: "token_embd.weight"), embedding.shape.count == 2 else {
            throw WhaleError(.missingTensor, file: model.path, field: "token_embd.weight", "the model has no embedding")
        }
        return embedding.shape[0]
    }
}
