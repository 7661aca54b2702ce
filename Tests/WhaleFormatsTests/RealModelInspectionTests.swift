import Testing
import WhaleCore
import WhaleFormats

/// `whale inspect`'s figures for the real models against gguf-py's reading of the same files
/// (Fixtures/real-models.json, written by `scripts/make-format-fixtures.py --real`).
@Suite(.enabled(if: RealModels.shouldRun, "models not fetched: run scripts/fetch-models.sh"))
struct RealModelInspectionTests {
    @Test(arguments: RealModels.names)
    func inspectMatchesGGUFPy(name: String) throws {
        let expected = try #require(try Fixtures.json("real-models.json").object?[name]?.object)
        let path = RealModels.path(name)
        let model = try GGUFModel(path: path)
        let inspection = try ModelInspection(.gguf(model), path: path, cache: nil)
        #expect(inspection.architecture == expected["architecture"]?.string)
        #expect(inspection.name == expected["name"]?.string)
        #expect(inspection.format == "GGUF v\(expected["version"]?.integer ?? -1)")
        #expect(inspection.fileSize == expected["file_size"]?.integer)
        #expect(inspection.parameterCount == expected["parameters"]?.integer)
        #expect(inspection.tensors.count == expected["tensor_count"]?.integer)
        #expect(model.metadataKeys.count == expected["metadata_count"]?.integer)
        #expect(inspection.contextLength == expected["context_length"]?.integer)
        #expect(inspection.vocabularySize == expected["vocab_size"]?.integer)
        #expect(inspection.tokenizerKind == expected["tokenizer"]?.string)
        #expect(inspection.preTokenizer == expected["pre_tokenizer"]?.string)
        #expect(inspection.hasChatTemplate == expected["chat_template"]?.bool)
        #expect(model.files[0].dataOffset == expected["data_offset"]?.integer)
        try checkWeightsAndTensors(model, inspection, expected)
    }

    /// The second half of the comparison, a function of its own so that Swift 6.0.3 type-checks each body well
    /// within the CI budget (every `#expect` expansion costs it ~20 ms).
    private func checkWeightsAndTensors(_ model: GGUFModel, _ inspection: ModelInspection, _ expected: JSONObject)
        throws
    {
        let mix = try #require(expected["weight_types"]?.object)
        #expect(Set(inspection.weightTypes.map(\.type.rawValue)) == Set(mix.keys))
        for share in inspection.weightTypes {
            let e = try #require(mix[share.type.rawValue]?.object)
            #expect(share.tensors == e["tensors"]?.integer, "\(share.type)")
            #expect(share.elements == e["elements"]?.integer, "\(share.type)")
            #expect(share.bytes == e["bytes"]?.integer, "\(share.type)")
        }
        for sample in try #require(expected["tensors_sample"]?.array) {
            let e = try #require(sample.object)
            let tensor = try #require(model.tensor(named: e["name"]!.string!))
            #expect(tensor.type.rawValue == e["type"]?.string)
            #expect(tensor.shape == e["shape"]?.array?.compactMap(\.integer))
            #expect(tensor.offset == e["offset"]?.integer)
            #expect(tensor.byteCount == e["bytes"]?.integer)
        }
    }
}
