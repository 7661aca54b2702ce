/// One spelling (GGUF or Hugging Face) of an architecture's checkpoint tensor names, verbatim: the tensors
/// outside the layer stack, and per layer part the name after the layer prefix — every entry a whole tensor
/// name, `.weight` / `.bias` included, so callers never append to it. Each architecture keeps its tables in
/// its own file.
struct TensorNames: Sendable {
    var embedding: String
    var finalNorm: String
    var output: String
    /// `blk.` or `model.layers.`: layer i's tensors are `layerPrefix + i + "." + parts[part]`.
    var layerPrefix: String
    var parts: [String: String]

    /// Layer `i`'s tensor for `part`.
    func layer(_ i: Int, _ part: String) -> String {
        guard let name = parts[part] else { preconditionFailure("TensorNames: no part \"\(part)\"") }
        return layerPrefix + "\(i)." + name
    }
}
