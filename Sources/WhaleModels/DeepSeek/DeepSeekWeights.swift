import WhaleCore
import WhaleFormats
import WhaleKernels

/// DeepSeek's weight map (docs/DEEPSEEK.md §7): which checkpoint tensor is which weight, in Hugging Face
/// and GGUF spellings, and the checkpoint quirks — FP8 matrices paired with their `weight_scale_inv` block
/// scales, `kv_b_proj` split per head for absorbed MLA, GGUF's stacked experts, the MTP layer.
struct DeepSeekWeights {
    let files: ModelFiles
    let c: DeepSeek.Configuration
    let names: TensorNames
    let weights: WeightLoader
    /// GGUF stacks the routed experts into 3-D tensors; Hugging Face checkpoints store one matrix per expert.
    let stackedExperts: Bool

    init(_ files: ModelFiles, _ configuration: DeepSeek.Configuration) {
        self.files = files
        c = configuration
        names = Self.names(files)
        if case .safetensors(let model, _) = files {
            stackedExperts = false
            // FP8 checkpoints: `W.weight` (F8_E4M3) comes with `W.weight_scale_inv`, paired and checked by the
            // safetensors reader.
            let scales = model.blockScales
            weights = WeightLoader(files, blockScaleName: { scales[$0] })
        } else {
            stackedExperts = true
            weights = WeightLoader(files)
        }
    }

    static func names(_ files: ModelFiles) -> TensorNames {
        if case .gguf = files { ggufNames } else { huggingFaceNames }
    }

    /// The model's `layers` (all of them, or a pipeline `stage`'s, which never has the MTP module).
    func decoder(layers: Range<Int>, stage: Bool) throws -> TransformerDecoder {
        // The embedding is only looked up, row by row: read in place.
        let embedding = try weights.matrix(
            names.embedding, rows: c.vocabularySize, columns: c.hiddenSize, forProducts: false)
        let output = try weights.matrix(names.output, rows: c.vocabularySize, columns: c.hiddenSize)
        var drafter: MultiTokenPrediction? = nil
        if !stage, c.nextTokenLayers > 0, weights.has(nextToken(c.layers, "eh_proj")) {
            drafter = try multiTokenPrediction(embedding: embedding, output: output)
        }
        return TransformerDecoder(
            architecture: c.architecture, vocabularySize: c.vocabularySize, hiddenSize: c.hiddenSize,
            contextLength: c.contextLength, rmsNormEps: c.rmsNormEps, embedding: embedding,
            layers: try layers.map { try layer($0) }, firstLayer: layers.lowerBound,
            finalNorm: try weights.vector(names.finalNorm, count: c.hiddenSize), output: output,
            cacheLayout: c.cacheLayout, rotated: c.rotatedPart, drafter: drafter, files: files, owned: weights.owned)
    }

    /// Decoder layer `i`: MLA, then a dense MLP or DeepSeekMoE.
    func layer(_ i: Int) throws -> ResidualLayer {
        let name = { names.layer(i, $0) }
        let hidden = c.hiddenSize
        let feedForward: any FeedForwardBlock
        if c.isMixtureOfExperts(i), let routing = c.routing {
            feedForward = MixtureOfExperts(
                router: try weights.matrix(name("router"), rows: routing.experts, columns: hidden),
                correctionBias: weights.has(name("router_bias"))
                    ? try weights.vector(name("router_bias"), count: routing.experts) : nil,
                experts: try routedExperts(i, count: routing.experts),
                shared: c.sharedExperts > 0 ? try mlp(i, "shared_", width: c.expertSize * c.sharedExperts) : nil,
                routing: routing)
        } else {
            feedForward = try mlp(i, "", width: c.intermediateSize)
        }
        return ResidualLayer(
            attentionNorm: try weights.vector(name("attention_norm"), count: hidden), attention: try attention(i),
            feedForwardNorm: try weights.vector(name("ffn_norm"), count: hidden), feedForward: feedForward,
            eps: c.rmsNormEps)
    }

    func attention(_ i: Int) throws -> LatentAttention {
        let s = c.attention
        let name = { names.layer(i, $0) }
        let hidden = c.hiddenSize
        var queryA: WeightMatrix? = nil
        var queryANorm: [Float]? = nil
        let query: WeightMatrix
        if let rank = c.queryLoraRank {
            queryA = try weights.matrix(name("q_a"), rows: rank, columns: hidden)
            queryANorm = try weights.vector(name("q_a_norm"), count: rank)
            query = try weights.matrix(name("q_b"), rows: s.queryWidth, columns: rank)
        } else {
            query = try weights.matrix(name("q"), rows: s.queryWidth, columns: hidden)
        }
        let keyUpTransposed: [WeightMatrix]
        let valueUp: [WeightMatrix]
        if weights.has(name("k_b")) {
            // llama.cpp's current layout: kv_b_proj already split per head, the key half transposed.
            keyUpTransposed = try weights.stackedMatrices(
                name("k_b"), count: s.heads, rows: s.latentRank, columns: s.nopeDim)
            valueUp = try weights.stackedMatrices(name("v_b"), count: s.heads, rows: s.valueDim, columns: s.latentRank)
        } else {
            // Only read once, into the f32 halves below.
            let fused = try weights.matrix(
                name("kv_b"), rows: s.heads * (s.nopeDim + s.valueDim), columns: s.latentRank, forProducts: false)
            (keyUpTransposed, valueUp) = splitKeyValueUp(fused)
        }
        return LatentAttention(
            queryA: queryA, queryANorm: queryANorm, query: query,
            keyValueA: try weights.matrix(name("kv_a"), rows: s.latentRank + s.ropeDim, columns: hidden),
            keyValueANorm: try weights.vector(name("kv_a_norm"), count: s.latentRank),
            keyUpTransposed: keyUpTransposed, valueUp: valueUp,
            output: try weights.matrix(name("o"), rows: hidden, columns: s.heads * s.valueDim), shape: s)
    }

    /// A SwiGLU MLP of layer `i` (`prefix` "" for the dense MLP, "shared_" for the shared experts).
    func mlp(_ i: Int, _ prefix: String, width: Int) throws -> FeedForward {
        let name = { names.layer(i, prefix + $0) }
        return FeedForward(
            gate: try weights.matrix(name("gate"), rows: width, columns: c.hiddenSize),
            up: try weights.matrix(name("up"), rows: width, columns: c.hiddenSize),
            down: try weights.matrix(name("down"), rows: c.hiddenSize, columns: width))
    }

    /// The routed experts of layer `i`: slices of GGUF's stacked `[experts, rows, columns]` tensors, or one
    /// matrix per expert in Hugging Face checkpoints.
    func routedExperts(_ i: Int, count: Int) throws -> [FeedForward] {
        let hidden = c.hiddenSize
        let width = c.expertSize
        guard stackedExperts else {
            return try (0..<count).map { e in
                func matrix(_ part: String, rows: Int, columns: Int) throws -> WeightMatrix {
                    try weights.matrix(
                        names.layerPrefix + "\(i).mlp.experts.\(e).\(part)_proj.weight", rows: rows, columns: columns)
                }
                return FeedForward(
                    gate: try matrix("gate", rows: width, columns: hidden),
                    up: try matrix("up", rows: width, columns: hidden),
                    down: try matrix("down", rows: hidden, columns: width))
            }
        }
        let gate = try weights.stackedMatrices(
            names.layer(i, "experts.gate"), count: count, rows: width, columns: hidden)
        let up = try weights.stackedMatrices(names.layer(i, "experts.up"), count: count, rows: width, columns: hidden)
        let down = try weights.stackedMatrices(
            names.layer(i, "experts.down"), count: count, rows: hidden, columns: width)
        return (0..<count).map { FeedForward(gate: gate[$0], up: up[$0], down: down[$0]) }
    }

    /// kv_b_proj `[heads·(dn+dv), rank]` (per head dn key rows, then dv value rows) → per head `(W_UK)ᵀ`
    /// `[rank, dn]` and `W_UV` `[dv, rank]`, as float32 (exact for every source type), held by the model.
    func splitKeyValueUp(_ fused: WeightMatrix) -> ([WeightMatrix], [WeightMatrix]) {
        let s = c.attention
        let rank = s.latentRank
        let row = UnsafeMutablePointer<Float>.allocate(capacity: rank)  // [rank]
        defer { row.deallocate() }
        var keys: [WeightMatrix] = []
        var values: [WeightMatrix] = []
        for h in 0..<s.heads {
            let first = h * (s.nopeDim + s.valueDim)
            let key = weights.owned.floats(rank * s.nopeDim)  // [rank, dn]
            for d in 0..<s.nopeDim {
                fused.dequantizeRow(first + d, into: row)
                for r in 0..<rank { key[r * s.nopeDim + d] = row[r] }
            }
            let value = weights.owned.floats(s.valueDim * rank)  // [dv, rank]
            for d in 0..<s.valueDim { fused.dequantizeRow(first + s.nopeDim + d, into: value + d * rank) }
            keys.append(WeightMatrix(type: .f32, rows: rank, columns: s.nopeDim, data: key))
            values.append(WeightMatrix(type: .f32, rows: s.valueDim, columns: rank, data: value))
        }
        return (keys, values)
    }

    /// The MTP module's own tensors, as DeepSeek's checkpoints name them (llama.cpp's converter drops the
    /// module, so GGUF files have none to find; §8).
    func nextToken(_ i: Int, _ part: String) -> String { names.layerPrefix + "\(i)." + part + ".weight" }

    /// V3's MTP module, stored as layer `num_hidden_layers` (§8); the embedding and head fall back to the
    /// main model's when the checkpoint does not repeat them.
    func multiTokenPrediction(embedding: WeightMatrix, output: WeightMatrix) throws -> MultiTokenPrediction {
        let l = c.layers
        let n = { nextToken(l, $0) }
        let hidden = c.hiddenSize
        return MultiTokenPrediction(
            embeddingNorm: try weights.vector(n("enorm"), count: hidden),
            hiddenNorm: try weights.vector(n("hnorm"), count: hidden),
            projection: try weights.matrix(n("eh_proj"), rows: hidden, columns: 2 * hidden),
            layer: try layer(l), headNorm: try weights.vector(n("shared_head.norm"), count: hidden),
            head: weights.has(n("shared_head.head"))
                ? try weights.matrix(n("shared_head.head"), rows: c.vocabularySize, columns: hidden) : output,
            embedding: weights.has(n("embed_tokens"))
                ? try weights.matrix(n("embed_tokens"), rows: c.vocabularySize, columns: hidden, forProducts: false)
                : embedding,
            eps: c.rmsNormEps, cacheLayout: c.cacheLayout, rotated: c.rotatedPart, layerIndex: l)
    }
}

extension DeepSeekWeights {
    /// Checkpoint tensor names, GGUF (llama.cpp's `deepseek2`) and Hugging Face, by part, verbatim.
    static let huggingFaceNames = TensorNames(
        embedding: "model.embed_tokens.weight", finalNorm: "model.norm.weight", output: "lm_head.weight",
        layerPrefix: "model.layers.",
        parts: [
            "attention_norm": "input_layernorm.weight", "q_a": "self_attn.q_a_proj.weight",
            "q_a_norm": "self_attn.q_a_layernorm.weight", "q_b": "self_attn.q_b_proj.weight",
            "q": "self_attn.q_proj.weight", "kv_a": "self_attn.kv_a_proj_with_mqa.weight",
            "kv_a_norm": "self_attn.kv_a_layernorm.weight", "kv_b": "self_attn.kv_b_proj.weight",
            "k_b": "self_attn.k_b_proj.weight", "v_b": "self_attn.v_b_proj.weight",
            "o": "self_attn.o_proj.weight", "ffn_norm": "post_attention_layernorm.weight",
            "gate": "mlp.gate_proj.weight", "up": "mlp.up_proj.weight", "down": "mlp.down_proj.weight",
            "router": "mlp.gate.weight", "router_bias": "mlp.gate.e_score_correction_bias",
            "shared_gate": "mlp.shared_experts.gate_proj.weight", "shared_up": "mlp.shared_experts.up_proj.weight",
            "shared_down": "mlp.shared_experts.down_proj.weight",
        ])

    static let ggufNames = TensorNames(
        embedding: "token_embd.weight", finalNorm: "output_norm.weight", output: "output.weight",
        layerPrefix: "blk.",
        parts: [
            "attention_norm": "attn_norm.weight", "q_a": "attn_q_a.weight", "q_a_norm": "attn_q_a_norm.weight",
            "q_b": "attn_q_b.weight", "q": "attn_q.weight", "kv_a": "attn_kv_a_mqa.weight",
            "kv_a_norm": "attn_kv_a_norm.weight", "kv_b": "attn_kv_b.weight", "k_b": "attn_k_b.weight",
            "v_b": "attn_v_b.weight", "o": "attn_output.weight", "ffn_norm": "ffn_norm.weight",
            "gate": "ffn_gate.weight", "up": "ffn_up.weight", "down": "ffn_down.weight",
            "router": "ffn_gate_inp.weight", "router_bias": "exp_probs_b.bias",
            "experts.gate": "ffn_gate_exps.weight", "experts.up": "ffn_up_exps.weight",
            "experts.down": "ffn_down_exps.weight", "shared_gate": "ffn_gate_shexp.weight",
            "shared_up": "ffn_up_shexp.weight", "shared_down": "ffn_down_shexp.weight",
        ])
}
