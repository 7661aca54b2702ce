import WhaleKernels

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A SwiGLU MLP: `down(silu(gate·x) ⊙ up·x)` — the dense FFN, each routed expert and the shared experts.
struct FeedForwardWeights {
    var gate: WeightMatrix
    var up: WeightMatrix
    var down: WeightMatrix

    var hiddenSize: Int { gate.rows }

    /// `output[t] = MLP(input[t])` for `count` rows of `gate.columns` values.
    func apply(
        _ input: UnsafePointer<Float>, count: Int, output: UnsafeMutablePointer<Float>, context: ForwardContext
    ) {
        var scratch = Scratch()
        defer { scratch.release() }
        let gated = scratch.floats(count * hiddenSize)
        let upped = scratch.floats(count * hiddenSize)
        Linear.apply(gate, input: input, tokens: count, output: gated, pool: context.pool, workspace: context.linear)
        Linear.apply(up, input: input, tokens: count, output: upped, pool: context.pool, workspace: context.linear)
        Ops.swiGLU(gate: gated, up: upped, rows: count, n: hiddenSize)
        Linear.apply(down, input: gated, tokens: count, output: output, pool: context.pool, workspace: context.linear)
    }
}

/// How a DeepSeek router turns its logits into chosen experts and weights (deepseek-semantics.md §5).
struct ExpertRouter: Sendable {
    enum Scoring: Sendable {
        /// V3 (`DeepseekV3TopkRouter`): sigmoid scores; selection on score + correction bias, groups ranked by
        /// the sum of their two best corrected scores, dropped groups masked with -inf; weights are the raw
        /// sigmoid scores of the chosen experts.
        case sigmoid
        /// V2 (`DeepseekV2TopkRouter`): softmax over all experts; groups ranked by their best probability,
        /// dropped groups zeroed (`group_limited_greedy`; with one group this is plain `greedy`).
        case softmax
    }

    var scoring: Scoring
    var experts: Int
    var expertsPerToken: Int
    /// Expert groups (1 = no group limit) and how many of them a token may use.
    var groups: Int
    var keptGroups: Int
    /// Divide the chosen weights by their sum (V3's `norm_topk_prob`).
    var normalize: Bool
    /// `routed_scaling_factor`, applied after normalisation.
    var scale: Float

    /// The chosen experts and their weights for one token's router logits.
    func route(_ logits: UnsafePointer<Float>, bias: [Float]?) -> [(expert: Int, weight: Float)] {
        var scores = [Float](repeating: 0, count: experts)
        switch scoring {
        case .sigmoid:
            for e in 0..<experts { scores[e] = 1 / (1 + expf(-logits[e])) }
        case .softmax:
            for e in 0..<experts { scores[e] = logits[e] }
            scores.withUnsafeMutableBufferPointer { Ops.softmax($0.baseAddress!, count: experts) }
        }
        var selection = scores
        if let bias { for e in 0..<experts { selection[e] += bias[e] } }
        if groups > 1 && keptGroups < groups {
            let perGroup = experts / groups
            let groupScores: [Float] = (0..<groups).map { g in
                let members = selection[(g * perGroup)..<((g + 1) * perGroup)]
                switch scoring {
                case .sigmoid: return members.sorted(by: >).prefix(2).reduce(0, +)
                case .softmax: return members.max()!
                }
            }
            let kept = Set(topIndices(groupScores, count: keptGroups))
            let masked: Float = scoring == .sigmoid ? -.infinity : 0
            for g in 0..<groups where !kept.contains(g) {
                for e in (g * perGroup)..<((g + 1) * perGroup) { selection[e] = masked }
            }
        }
        let chosen = topIndices(selection, count: expertsPerToken)
        var weights = chosen.map { scores[$0] }
        if normalize {
            let sum = weights.reduce(0, +) + 1e-20
            weights = weights.map { $0 / sum }
        }
        return zip(chosen, weights).map { ($0, $1 * scale) }
    }

    /// Indices of the `count` largest values, largest first (lower index first among equals, as torch.topk
    /// does on CPU for these sizes).
    func topIndices(_ values: [Float], count: Int) -> [Int] {
        Array(values.indices.sorted { values[$0] > values[$1] || (values[$0] == values[$1] && $0 < $1) }.prefix(count))
    }
}

/// A DeepSeekMoE feed-forward layer: routed experts (only the chosen ones are read) plus always-on shared
/// experts (one MLP of `moe_intermediate_size × n_shared_experts`).
struct MixtureOfExperts {
    var router: WeightMatrix
    /// `e_score_correction_bias` (V3), used for selection only.
    var correctionBias: [Float]?
    var experts: [FeedForwardWeights]
    var shared: FeedForwardWeights?
    var routing: ExpertRouter

    /// `output[t] = Σ_chosen w·expert(x[t]) + shared(x[t])` for `count` rows of `width` values. Tokens are
    /// grouped by expert so each chosen expert's weights are streamed once per pass.
    func apply(
        _ input: UnsafePointer<Float>, count: Int, width: Int, output: UnsafeMutablePointer<Float>,
        context: ForwardContext
    ) {
        var scratch = Scratch()
        defer { scratch.release() }
        let logits = scratch.floats(count * routing.experts)
        Linear.apply(
            router, input: input, tokens: count, output: logits, pool: context.pool, workspace: context.linear)
        var assigned = [[(token: Int, weight: Float)]](repeating: [], count: routing.experts)
        for t in 0..<count {
            for (expert, weight) in routing.route(logits + t * routing.experts, bias: correctionBias) {
                assigned[expert].append((t, weight))
            }
        }
        if let shared {
            shared.apply(input, count: count, output: output, context: context)
        } else {
            output.initialize(repeating: 0, count: count * width)
        }
        let gathered = scratch.floats(count * width)
        let result = scratch.floats(count * width)
        for (expert, tokens) in assigned.enumerated() where !tokens.isEmpty {
            for (row, token) in tokens.enumerated() {
                (gathered + row * width).update(from: input + token.token * width, count: width)
            }
            experts[expert].apply(gathered, count: tokens.count, output: result, context: context)
            for (row, token) in tokens.enumerated() {
                let source = result + row * width
                let destination = output + token.token * width
                for i in 0..<width { destination[i] += token.weight * source[i] }
            }
        }
    }
}
