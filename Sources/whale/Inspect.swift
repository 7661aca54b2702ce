import ArgumentParser
import WhaleCore
import WhaleFormats
import WhaleKernels
import WhaleModels

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a model's architecture, size, weight types, context, vocabulary and tensors.",
        discussion: """
            MODEL is a .gguf file (the first shard, NAME-00001-of-0000N.gguf, of a split model) or a \
            directory holding config.json and .safetensors files (sharded via model.safetensors.index.json). \
            Shapes are listed outermost dimension first, as PyTorch writes them.
            """)

    @Argument(help: modelHelp)
    var model: String

    @Flag(help: "Print JSON instead of text.")
    var json = false

    @Flag(help: "List every tensor: name, type, shape, offset.")
    var tensors = false

    @Flag(help: "List the GGUF metadata (arrays are shortened to their type, count and first items).")
    var metadata = false

    @Option(
        name: .customLong("cache-type"),
        help: ArgumentHelp("The cache precision to size: f16, f32 or q8_0 (default: the format's).", valueName: "type"))
    var cacheType: String?

    @OptionGroup var hub: HubOptions

    func run() throws {
        try reportingErrors {
            let files = try ModelFiles.open(try modelPath(model, pull: !hub.noPull))
            let precision = try cacheType.map { try AttentionPrecision(cacheType: $0) }
            let inspection = try ModelInspection(
                files, path: model, cache: try ModelRegistry.cacheDescription(files, precision: precision))
            if json {
                print(inspection.json(includeTensors: tensors, includeMetadata: metadata).serialized(pretty: true))
            } else {
                print(inspection.text(includeTensors: tensors, includeMetadata: metadata))
            }
        }
    }
}
