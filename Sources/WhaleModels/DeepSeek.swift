import WhaleCore
import WhaleFormats
import WhaleKernels

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

// DeepSeek V2 / V2-Lite / V3 / V3.1 / R1 (and Moonlight-style models): multi-head latent attention with a
// compressed cache, DeepSeekMoE feed-forward layers, and V3's multi-token-prediction (MTP) module.
//
// References: transformers 5.23 modeling_deepseek_v2.py / modeling_deepseek_v3.py (eager, float32) — the
// semantics, traps included, are written down in /work/shared/reference/deepseek-semantics.md — and
// llama.cpp's `llm_build_deepseek2` and convert_hf_to_gguf.py for the GGUF layout (arch `deepseek2`).
//
//   h = embed(tokens)
//   for each layer l:
//     h += MLA(rmsnorm(h) · attn_norm)              // cache: rmsnorm(c_kv) and rope(k_rope) per token
//     h += FFN_l(rmsnorm(h) · ffn_norm)             // dense SwiGLU for the first layers, then DeepSeekMoE
//   logits = rmsnorm(h) · output_norm · Woutᵀ
//
//   MTP (layer index = num_hidden_layers): for the main model's final (normed) hidden state hᵢ and the next
//   token tᵢ₊₁:  x = eh_proj([enorm(embed(tᵢ₊₁)); hnorm(hᵢ)]) → one more decoder layer → shared_head → logits
//   for tᵢ₊₂ (the order of the concatenation and the normed hᵢ follow vLLM's and SGLang's DeepSeek MTP).

/// A DeepSeek V2/V3 decoder.
public final class DeepSeekDecoder: DraftingLanguageModel, @unchecked Sendable {
    public struct Configuration: Sendable {
        public var architecture: String
        public var vocabularySize: Int
        public var hiddenSize: Int
        /// The dense layers' MLP width.
        public var intermediateSize: Int
        public var layers: Int
        public var queryLoraRank: Int?
        public var contextLength: Int
        public var rmsNormEps: Float
        var attention: LatentAttentionShape
        /// Nil for a model without routed experts.
        var routing: ExpertRouter?
        public var expertSize: Int
        public var sharedExperts: Int
        /// Layers before this one are dense; after it every `moeLayerFrequency`-th layer is MoE.
        public var leadingDenseLayers: Int
        public var moeLayerFrequency: Int
        /// MTP modules stored after the main layers (0 when the checkpoint has none).
        public var nextTokenLayers: Int

        func isMixtureOfExperts(_ layer: Int) -> Bool {
            routing != nil && layer >= leadingDenseLayers && layer % moeLayerFrequency == 0
        }
    }

    struct Layer {
        var attentionNorm: [Float]
        var attention: LatentAttention
        var feedForwardNorm: [Float]
        var dense: FeedForwardWeights?
        var experts: MixtureOfExperts?
    }

    /// V3's MTP module: predicts the token after next from the main model's hidden state and the next token.
    struct NextTokenPredictor {
        var embeddingNorm: [Float]
        var hiddenNorm: [Float]
        /// `eh_proj`: `[hidden, 2·hidden]` over `[enorm(embedding); hnorm(hidden)]`.
        var projection: WeightMatrix
        var layer: Layer
        var headNorm: [Float]
        var head: WeightMatrix
        var embedding: WeightMatrix
    }

    public let configuration: Configuration
    let embedding: WeightMatrix
    let layerWeights: [Layer]
    let finalNorm: [Float]
    let output: WeightMatrix
    let predictor: NextTokenPredictor?
    /// Keeps the mapped files and the weights rearranged at load alive.
    let files: ModelFiles
    let owned: OwnedMemory

    public var architecture: String { configuration.architecture }
    public var vocabularySize: Int { configuration.vocabularySize }
    public var contextLength: Int { configuration.contextLength }
    public var hiddenSize: Int { configuration.hiddenSize }
    /// The compressed cache: `kv_lora_rank + qk_rope_head_dim` floats per token per layer.
    public var cacheBytesPerToken: Int {
        configuration.layers * (configuration.attention.latentRank + configuration.attention.ropeDim)
            * MemoryLayout<Float>.size
    }
    /// Bytes of weights converted at load time (kv_b_proj split per head), beyond the mapped files.
    public var convertedWeightBytes: Int { owned.byteCount }
    /// Whether the checkpoint carries an MTP module (`--mtp` can draft with it).
    public var canDraft: Bool { predictor != nil }

    init(configuration: Configuration, files: ModelFiles, options: LoadOptions) throws {
        var c = configuration
        if let precision = options.attentionPrecision { c.attention.precision = precision }
        c.attention.form = options.latentAttention
        let weights = WeightLoader(files)
        let names: DeepSeekTensorNames = if case .gguf = files { .gguf } else { .huggingFace }
        self.files = files
        self.owned = weights.owned
        embedding = try weights.matrix(names.embedding, rows: c.vocabularySize, columns: c.hiddenSize)
        finalNorm = try weights.vector(names.finalNorm, count: c.hiddenSize)
        output = try weights.matrix(names.output, rows: c.vocabularySize, columns: c.hiddenSize)
        layerWeights = try (0..<c.layers).map { try Self.loadLayer($0, names: names, weights: weights, c) }
        if c.nextTokenLayers > 0, names.hasNextTokenModule(weights, layer: c.layers) {
            let l = c.layers
            let n = { names.nextToken(l, $0) }
            predictor = NextTokenPredictor(
                embeddingNorm: try weights.vector(n("enorm"), count: c.hiddenSize),
                hiddenNorm: try weights.vector(n("hnorm"), count: c.hiddenSize),
                projection: try weights.matrix(n("eh_proj"), rows: c.hiddenSize, columns: 2 * c.hiddenSize),
                layer: try Self.loadLayer(l, names: names, weights: weights, c),
                headNorm: try weights.vector(n("shared_head.norm"), count: c.hiddenSize),
                head: weights.has(n("shared_head.head"))
                    ? try weights.matrix(n("shared_head.head"), rows: c.vocabularySize, columns: c.hiddenSize) : output,
                embedding: weights.has(n("embed_tokens"))
                    ? try weights.matrix(n("embed_tokens"), rows: c.vocabularySize, columns: c.hiddenSize) : embedding)
        } else {
            predictor = nil
        }
        self.configuration = c
    }

    static func loadLayer(_ i: Int, names: DeepSeekTensorNames, weights: WeightLoader, _ c: Configuration) throws
        -> Layer
    {
        let s = c.attention
        let name = { names.layer(i, $0) }
        let hidden = c.hiddenSize
        var queryA: WeightMatrix? = nil
        var queryANorm: [Float]? = nil
        let query: WeightMatrix
        let qWidth = s.heads * s.queryHeadDim
        if let rank = c.queryLoraRank {
            queryA = try weights.matrix(name("q_a"), rows: rank, columns: hidden)
            queryANorm = try weights.vector(name("q_a_norm"), count: rank)
            query = try weights.matrix(name("q_b"), rows: qWidth, columns: rank)
        } else {
            query = try weights.matrix(name("q"), rows: qWidth, columns: hidden)
        }
        let keyUpTransposed: [WeightMatrix]
        let valueUp: [WeightMatrix]
        if weights.has(name("k_b")) {
            // llama.cpp's current layout: kv_b_proj already split per head, the key half transposed.
            keyUpTransposed = try weights.stackedMatrices(
                name("k_b"), count: s.heads, rows: s.latentRank, columns: s.nopeDim)
            valueUp = try weights.stackedMatrices(name("v_b"), count: s.heads, rows: s.valueDim, columns: s.latentRank)
        } else {
            let fused = try weights.matrix(
                name("kv_b"), rows: s.heads * (s.nopeDim + s.valueDim), columns: s.latentRank)
            (keyUpTransposed, valueUp) = splitKeyValueUp(fused, shape: s, owned: weights.owned)
        }
        let attention = LatentAttention(
            queryA: queryA, queryANorm: queryANorm, query: query,
            keyValueA: try weights.matrix(name("kv_a"), rows: s.latentRank + s.ropeDim, columns: hidden),
            keyValueANorm: try weights.vector(name("kv_a_norm"), count: s.latentRank),
            keyUpTransposed: keyUpTransposed, valueUp: valueUp,
            output: try weights.matrix(name("o"), rows: hidden, columns: s.heads * s.valueDim))

        func mlp(_ prefix: String, width: Int) throws -> FeedForwardWeights {
            FeedForwardWeights(
                gate: try weights.matrix(name(prefix + "gate"), rows: width, columns: hidden),
                up: try weights.matrix(name(prefix + "up"), rows: width, columns: hidden),
                down: try weights.matrix(name(prefix + "down"), rows: hidden, columns: width))
        }
        var dense: FeedForwardWeights? = nil
        var experts: MixtureOfExperts? = nil
        if c.isMixtureOfExperts(i), let routing = c.routing {
            let routed: [FeedForwardWeights]
            if names.stackedExperts {
                let count = routing.experts
                let gate = try weights.stackedMatrices(
                    name("experts.gate"), count: count, rows: c.expertSize, columns: hidden)
                let up = try weights.stackedMatrices(
                    name("experts.up"), count: count, rows: c.expertSize, columns: hidden)
                let down = try weights.stackedMatrices(
                    name("experts.down"), count: count, rows: hidden, columns: c.expertSize)
                routed = (0..<count).map { FeedForwardWeights(gate: gate[$0], up: up[$0], down: down[$0]) }
            } else {
                routed = try (0..<routing.experts).map { try mlp("experts.\($0).", width: c.expertSize) }
            }
            experts = MixtureOfExperts(
                router: try weights.matrix(name("router"), rows: routing.experts, columns: hidden),
                correctionBias: weights.has(name("router_bias"))
                    ? try weights.vector(name("router_bias"), count: routing.experts) : nil,
                experts: routed,
                shared: c.sharedExperts > 0 ? try mlp("shared.", width: c.expertSize * c.sharedExperts) : nil,
                routing: routing)
        } else {
            dense = try mlp("", width: c.intermediateSize)
        }
        return Layer(
            attentionNorm: try weights.vector(name("attention_norm"), count: hidden), attention: attention,
            feedForwardNorm: try weights.vector(name("ffn_norm"), count: hidden), dense: dense, experts: experts)
    }

    /// kv_b_proj `[heads·(dn+dv), rank]` (per head dn key rows, then dv value rows) → per head `(W_UK)ᵀ`
    /// `[rank, dn]` and `W_UV` `[dv, rank]`, as float32 (exact for every source type).
    static func splitKeyValueUp(_ fused: WeightMatrix, shape s: LatentAttentionShape, owned: OwnedMemory)
        -> ([WeightMatrix], [WeightMatrix])
    {
        let rank = s.latentRank
        let row = UnsafeMutablePointer<Float>.allocate(capacity: rank)
        defer { row.deallocate() }
        var keys: [WeightMatrix] = []
        var values: [WeightMatrix] = []
        for h in 0..<s.heads {
            let first = h * (s.nopeDim + s.valueDim)
            let key = owned.floats(rank * s.nopeDim)
            for d in 0..<s.nopeDim {
                fused.dequantizeRow(first + d, into: row)
                for c in 0..<rank { key[c * s.nopeDim + d] = row[c] }
            }
            let value = owned.floats(s.valueDim * rank)
            for d in 0..<s.valueDim { fused.dequantizeRow(first + s.nopeDim + d, into: value + d * rank) }
            keys.append(WeightMatrix(type: .f32, rows: rank, columns: s.nopeDim, data: key))
            values.append(WeightMatrix(type: .f32, rows: s.valueDim, columns: rank, data: value))
        }
        return (keys, values)
    }

    public func makeCache(capacity: Int) -> KVCache {
        KVCache(
            layers: configuration.layers, capacity: capacity, keyWidth: configuration.attention.latentRank,
            valueWidth: configuration.attention.ropeDim,
            rotated: .init(
                stream: .values, heads: 1, headDim: configuration.attention.ropeDim, rope: configuration.attention.rope)
        )
    }

    public func forward(_ batch: [SequenceInput], context: ForwardContext) throws -> [[Float]] {
        try run(batch, context: context, keepHidden: false).logits
    }

    /// `forward`, also returning every fed token's final normed hidden state (`tokens × hiddenSize` per
    /// sequence) — the MTP module's input.
    public func forwardKeepingHidden(_ batch: [SequenceInput], context: ForwardContext) throws -> (
        logits: [[Float]], hidden: [[Float]]
    ) {
        try run(batch, context: context, keepHidden: true)
    }

    func run(_ batch: [SequenceInput], context: ForwardContext, keepHidden: Bool) throws -> (
        logits: [[Float]], hidden: [[Float]]
    ) {
        let c = configuration
        for input in batch {
            try input.cache.reserve(input.tokens.count)
            try checkTokens(input.tokens)
        }
        var positions: [Int] = []
        var caches: [KVCache] = []
        var tokens: [Int] = []
        for input in batch {
            for (k, token) in input.tokens.enumerated() {
                tokens.append(token)
                positions.append(input.cache.count + k)
                caches.append(input.cache)
            }
        }
        let count = tokens.count
        if count == 0 { return (batch.map { _ in [] }, batch.map { _ in [] }) }
        var scratch = Scratch()
        defer { scratch.release() }
        let hidden = scratch.floats(count * c.hiddenSize)
        for (t, token) in tokens.enumerated() { embedding.dequantizeRow(token, into: hidden + t * c.hiddenSize) }
        for (l, layer) in layerWeights.enumerated() {
            apply(
                layer, cacheLayer: l, hidden: hidden, count: count, positions: positions, caches: caches,
                context: context)
        }
        for input in batch { input.cache.advance(by: input.tokens.count) }

        var logits: [[Float]] = []
        var states: [[Float]] = []
        var start = 0
        let normed = scratch.floats(count * c.hiddenSize)
        for input in batch {
            let tokens = start..<(start + input.tokens.count)
            let rows = input.logits.rows(start: start, count: input.tokens.count)
            start += input.tokens.count
            let normedRows = keepHidden ? tokens : rows
            Ops.rmsNorm(
                hidden + normedRows.lowerBound * c.hiddenSize, weight: finalNorm, rows: normedRows.count,
                n: c.hiddenSize, eps: c.rmsNormEps, output: normed)
            logits.append(
                project(
                    normed + (rows.lowerBound - normedRows.lowerBound) * c.hiddenSize, rows: rows.count,
                    through: output, context: context))
            states.append(
                keepHidden ? Array(UnsafeBufferPointer(start: normed, count: tokens.count * c.hiddenSize)) : [])
        }
        return (logits, states)
    }

    /// One decoder layer over `count` tokens, in place on `hidden`.
    func apply(
        _ layer: Layer, cacheLayer: Int, hidden: UnsafeMutablePointer<Float>, count: Int, positions: [Int],
        caches: [KVCache], context: ForwardContext
    ) {
        let c = configuration
        var scratch = Scratch()
        defer { scratch.release() }
        let normed = scratch.floats(count * c.hiddenSize)
        let delta = scratch.floats(count * c.hiddenSize)
        Ops.rmsNorm(
            hidden, weight: layer.attentionNorm, rows: count, n: c.hiddenSize, eps: c.rmsNormEps, output: normed)
        layer.attention.apply(
            normed, count: count, positions: positions, caches: caches, layer: cacheLayer, shape: c.attention,
            output: delta, context: context)
        Ops.add(delta, into: hidden, count: count * c.hiddenSize)
        Ops.rmsNorm(
            hidden, weight: layer.feedForwardNorm, rows: count, n: c.hiddenSize, eps: c.rmsNormEps, output: normed)
        if let experts = layer.experts {
            experts.apply(normed, count: count, width: c.hiddenSize, output: delta, context: context)
        } else {
            layer.dense!.apply(normed, count: count, output: delta, context: context)
        }
        Ops.add(delta, into: hidden, count: count * c.hiddenSize)
    }

    func project(_ normed: UnsafePointer<Float>, rows: Int, through head: WeightMatrix, context: ForwardContext)
        -> [Float]
    {
        if rows == 0 { return [] }
        var logits = [Float](repeating: 0, count: rows * configuration.vocabularySize)
        logits.withUnsafeMutableBufferPointer { buffer in
            Linear.apply(
                head, input: normed, tokens: rows, output: buffer.baseAddress!, pool: context.pool,
                workspace: context.linear)
        }
        return logits
    }

    func checkTokens(_ tokens: [Int]) throws {
        for token in tokens where token < 0 || token >= configuration.vocabularySize {
            throw WhaleError(
                .invalidArgument, field: "token id",
                "\(token) is outside the vocabulary (0..<\(configuration.vocabularySize))")
        }
    }

    /// An empty cache for the MTP module (one layer of latents and rope keys).
    public func makeDraftCache(capacity: Int) -> KVCache {
        KVCache(
            layers: 1, capacity: capacity, keyWidth: configuration.attention.latentRank,
            valueWidth: configuration.attention.ropeDim,
            rotated: .init(
                stream: .values, heads: 1, headDim: configuration.attention.ropeDim, rope: configuration.attention.rope)
        )
    }

    /// Runs the MTP module over pairs `(hidden[i], tokens[i])` — the main model's normed final hidden state at
    /// some position p and the token at p + 1 — appending them to `cache` (entry i at position
    /// `cache.count + i`, i.e. the position of its hidden state), and returns the logits predicting the token
    /// after the last pair's token (`vocabularySize` values).
    public func draft(hidden: [Float], tokens: [Int], cache: KVCache, context: ForwardContext) throws -> [Float] {
        guard let predictor else {
            throw WhaleError(
                .invalidArgument, field: "mtp", "this model has no multi-token-prediction module",
                hint: "run without --mtp; only checkpoints with num_nextn_predict_layers and the stored layer have one")
        }
        let c = configuration
        let count = tokens.count
        precondition(hidden.count == count * c.hiddenSize)
        if count == 0 { return [] }
        try cache.reserve(count)
        try checkTokens(tokens)
        var scratch = Scratch()
        defer { scratch.release() }
        let joined = scratch.floats(count * 2 * c.hiddenSize)
        let row = scratch.floats(c.hiddenSize)
        for t in 0..<count {
            let half = joined + t * 2 * c.hiddenSize
            predictor.embedding.dequantizeRow(tokens[t], into: row)
            Ops.rmsNorm(row, weight: predictor.embeddingNorm, rows: 1, n: c.hiddenSize, eps: c.rmsNormEps, output: half)
            hidden.withUnsafeBufferPointer { states in
                Ops.rmsNorm(
                    states.baseAddress! + t * c.hiddenSize, weight: predictor.hiddenNorm, rows: 1, n: c.hiddenSize,
                    eps: c.rmsNormEps, output: half + c.hiddenSize)
            }
        }
        let x = scratch.floats(count * c.hiddenSize)
        Linear.apply(
            predictor.projection, input: joined, tokens: count, output: x, pool: context.pool,
            workspace: context.linear)
        let positions = (0..<count).map { cache.count + $0 }
        apply(
            predictor.layer, cacheLayer: 0, hidden: x, count: count, positions: positions,
            caches: Array(repeating: cache, count: count), context: context)
        cache.advance(by: count)
        let normed = scratch.floats(c.hiddenSize)
        Ops.rmsNorm(
            x + (count - 1) * c.hiddenSize, weight: predictor.headNorm, rows: 1, n: c.hiddenSize, eps: c.rmsNormEps,
            output: normed)
        return project(normed, rows: 1, through: predictor.head, context: context)
    }
}

/// Checkpoint tensor names, GGUF (llama.cpp's `deepseek2`) and Hugging Face, by part.
struct DeepSeekTensorNames: Sendable {
    var embedding: String
    var finalNorm: String
    var output: String
    var layerPrefix: String
    var parts: [String: String]
    /// GGUF stacks the routed experts into 3-D tensors; checkpoints store one matrix per expert.
    var stackedExperts: Bool

    func layer(_ i: Int, _ part: String) -> String {
        if part.hasPrefix("experts."), !stackedExperts {
            // "experts.{e}.gate" → mlp.experts.{e}.gate_proj.weight
            let pieces = part.split(separator: ".")
            return layerPrefix + "\(i).mlp.experts.\(pieces[1]).\(pieces[2])_proj.weight"
        }
        if part.hasPrefix("shared.") { return layerPrefix + "\(i)." + parts["shared_" + part.dropFirst(7)]! }
        return layerPrefix + "\(i)." + parts[part]!
    }

    func nextToken(_ i: Int, _ part: String) -> String { layerPrefix + "\(i)." + part + ".weight" }

    func hasNextTokenModule(_ weights: WeightLoader, layer: Int) -> Bool {
        weights.has(nextToken(layer, "eh_proj"))
    }

    static let huggingFace = DeepSeekTensorNames(
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
        ],
        stackedExperts: false)

    static let gguf = DeepSeekTensorNames(
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
        ],
        stackedExperts: true)
}
