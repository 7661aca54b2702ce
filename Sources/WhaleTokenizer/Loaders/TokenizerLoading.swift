import WhaleCore
import WhaleFormats

extension Tokenizer {
    /// Loads the tokenizer of a model: a `.gguf` file (its `tokenizer.ggml.*` metadata), a model directory
    /// (its `tokenizer.json`), or a `tokenizer.json` file.
    public static func load(_ path: String) throws -> Tokenizer {
        if FileSystem.isDirectory(path) {
            let file = FileSystem.join(path, "tokenizer.json")
            guard FileSystem.isFile(file) else {
                throw WhaleError(
                    .fileNotFound, file: path, "the model directory has no tokenizer.json",
                    hint: "download the model's tokenizer.json, or pass token ids with --tokens")
            }
            return try HuggingFaceTokenizer.load(path: file)
        }
        guard FileSystem.isFile(path) else {
            throw WhaleError(.fileNotFound, file: path, "no such file or directory")
        }
        if path.hasSuffix(".json") { return try HuggingFaceTokenizer.load(path: path) }
        return try GGUFTokenizer.load(GGUFModel(path: path))
    }

    /// The tokenizer stored in an opened GGUF model.
    public static func load(gguf model: GGUFModel) throws -> Tokenizer { try GGUFTokenizer.load(model) }
}
