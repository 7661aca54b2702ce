import WhaleCore
import WhaleKernels

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// How a DeepSeek router turns its logits into chosen experts and weights (docs/DEEPSEEK.md §6a, §6b).
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

    /// Room `route` works in, per token: scores, selection scores, group scores (floats) and kept groups.
    var workspaceFloats: Int { 2 * experts + groups }

    /// Routes one token: from its router `logits` `[experts]`, writes the chosen experts (best first) to
    /// `chosen` `[expertsPerToken]` and their weights to `weights`; `scores` receives the router's
    /// probabilities `[experts]`. `workspace` holds `workspaceFloats`.
    func route(
        _ logits: UnsafePointer<Float>, bias: [Float]?, scores: UnsafeMutablePointer<Float>,
        chosen: UnsafeMutablePointer<Int>, weights: UnsafeMutablePointer<Float>,
        workspace: UnsafeMutablePointer<Float>
    ) {
        switch scoring {
        case .sigmoid:
            for e in 0..<experts { scores[e] = 1 / (1 + expf(-logits[e])) }
        case .softmax:
            for e in 0..<experts { scores[e] = logits[e] }
            Ops.softmax(scores, count: experts)
        }
        let selection = workspace  // [experts]
        if let bias {
            for e in 0..<experts { selection[e] = scores[e] + bias[e] }
        } else {
            for e in 0..<experts { selection[e] = scores[e] }
        }
        if groups > 1 && keptGroups < groups {
            let perGroup = experts / groups
            let groupScores = workspace + experts  // [groups]
            for g in 0..<groups {
                let members = selection + g * perGroup
                switch scoring {
                case .sigmoid:
                    // The sum of the group's two best corrected scores.
                    var best = -Float.infinity
                    var second = -Float.infinity
                    for i in 0..<perGroup {
                        if members[i] > best {
                            second = best
                            best = members[i]
                        } else if members[i] > second {
                            second = members[i]
                        }
                    }
                    groupScores[g] = perGroup >= 2 ? best + second : best
                case .softmax:
                    var best = members[0]
                    for i in 1..<perGroup where members[i] > best { best = members[i] }
                    groupScores[g] = best
                }
            }
            let kept = workspace + experts + groups  // [groups]: 1 for a kept group
            for g in 0..<groups { kept[g] = 0 }
            for _ in 0..<keptGroups {
                var best = -1
                for g in 0..<groups where kept[g] == 0 && (best < 0 || groupScores[g] > groupScores[best]) { best = g }
                kept[best] = 1
            }
            let masked: Float = scoring == .sigmoid ? -.infinity : 0
            for g in 0..<groups where kept[g] == 0 {
                for e in (g * perGroup)..<((g + 1) * perGroup) { selection[e] = masked }
            }
        }
        Self.topIndices(selection, count: experts, take: expertsPerToken, into: chosen)
        var sum: Float = 0
        for i in 0..<expertsPerToken {
            weights[i] = scores[chosen[i]]
            sum += weights[i]
        }
        sum += 1e-20
        for i in 0..<expertsPerToken {
            if normalize { weights[i] = weights[i] / sum }
            weights[i] *= scale
        }
    }

    /// Indices of the `take` largest of `count` values, largest first (lower index first among equals, as
    /// torch.topk does on CPU for these sizes).
    static func topIndices(
        _ values: UnsafePointer<Float>, count: Int, take: Int, into chosen: UnsafeMutablePointer<Int>
    ) {
        for k in 0..<take {
            var best = -1
            for i in 0..<count {
                var taken = false
                for p in 0..<k where chosen[p] == i { taken = true }
                if !taken && (best < 0 || values[i] > values[best]) { best = i }
            }
            chosen[k] = best
        }
    }

    /// Refuses routing settings that cannot choose `expertsPerToken` experts.
    func validate(source: String) throws {
        guard expertsPerToken >= 1, expertsPerToken <= experts, groups >= 1, experts % groups == 0,
            keptGroups >= 1, keptGroups <= groups, expertsPerToken <= keptGroups * (experts / groups)
        else {
            throw WhaleError(
                .invalidValue, file: source, field: "experts",
                "inconsistent routing: \(experts) experts, \(expertsPerToken) per token, \(groups) groups, "
                    + "\(keptGroups) kept")
        }
    }
}

/// A DeepSeekMoE feed-forward layer (docs/DEEPSEEK.md §6): routed experts (only the chosen ones are read)
/// plus always-on shared experts (one MLP of `moe_intermediate_size × n_shared_experts`).
///
///     out[t] = shared(x[t]) + Σ_{e chosen for t} w(t, e) · expert_e(x[t])
///
/// Tokens are grouped by expert, so each chosen expert's weights are streamed once per pass.
struct MixtureOfExperts: FeedForwardBlock {
    /// `[experts, hidden]`.
    var router: WeightMatrix
    /// `e_score_correction_bias` (V3), used for selection only.
    var correctionBias: [Float]?
    var experts: [FeedForward]
    var shared: FeedForward?
    var routing: ExpertRouter

    func apply(
        _ x: UnsafePointer<Float>, count n: Int, layer: Int, output: UnsafeMutablePointer<Float>,
        context: ForwardContext
    ) {
        let width = router.columns
        let e = routing.experts
        let k = routing.expertsPerToken
        let arena = context.arena
        let mark = arena.mark
        defer { arena.rewind(to: mark) }
        let logits = arena.floats(n * e)  // [T, experts]
        context.linear(router, x, tokens: n, into: logits)
        let scores = arena.floats(n * e)  // [T, experts]
        let chosen = arena.buffer(Int.self, count: n * k)  // [T, k]
        let weights = arena.floats(n * k)  // [T, k]
        let workspace = arena.floats(routing.workspaceFloats)
        for t in 0..<n {
            routing.route(
                logits + t * e, bias: correctionBias, scores: scores + t * e, chosen: chosen + t * k,
                weights: weights + t * k, workspace: workspace)
        }
        context.tap("router_logits", layer, logits, [n, e])
        context.tap("router_probs", layer, scores, [n, e])
        if context.taps != nil {
            var ids = [Float](repeating: 0, count: n * k)
            for i in 0..<(n * k) { ids[i] = Float(chosen[i]) }
            ids.withUnsafeBufferPointer { context.tap("expert_ids", layer, $0.baseAddress!, [n, k]) }
            context.tap("expert_weights", layer, weights, [n, k])
        }
        // Tokens by expert, in token order: a counting sort of the (token, slot) pairs.
        let starts = arena.buffer(Int.self, count: e + 1)  // [experts + 1]
        for i in 0...e { starts[i] = 0 }
        for i in 0..<(n * k) { starts[chosen[i] + 1] += 1 }
        for i in 0..<e { starts[i + 1] += starts[i] }
        let fill = arena.buffer(Int.self, count: e)  // [experts]: next free entry
        for i in 0..<e { fill[i] = starts[i] }
        let entries = arena.buffer(Int.self, count: n * k)  // [T·k]: index t·k + slot, grouped by expert
        for i in 0..<(n * k) {
            entries[fill[chosen[i]]] = i
            fill[chosen[i]] += 1
        }

        if context.taps == nil, n <= Self.batchedTokens, let inner = uniformWidth(starts) {
            applyBatched(
                x, count: n, output: output, starts: starts, entries: entries, weights: weights, inner: inner,
                context: context)
            return
        }
        if let shared {
            shared.apply(x, count: n, layer: layer, output: output, context: context)
            context.tap("shared_out", layer, output, [n, width])
        } else {
            output.initialize(repeating: 0, count: n * width)
        }
        let routedOnly = context.taps == nil ? nil : arena.floats(n * width)  // [T, hidden], for the moe_out tap
        routedOnly?.initialize(repeating: 0, count: n * width)
        let gathered = arena.floats(n * width)  // [tokens of one expert, hidden]
        let result = arena.floats(n * width)  // [tokens of one expert, hidden]
        for expert in 0..<e where starts[expert + 1] > starts[expert] {
            let members = starts[expert]..<starts[expert + 1]
            for (row, entry) in members.enumerated() {
                (gathered + row * width).update(from: x + (entries[entry] / k) * width, count: width)
            }
            experts[expert].apply(gathered, count: members.count, layer: layer, output: result, context: context)
            for (row, entry) in members.enumerated() {
                let weight = weights[entries[entry]]
                let source = result + row * width
                let token = entries[entry] / k
                let destination = output + token * width
                for i in 0..<width { destination[i] += weight * source[i] }
                if let routedOnly {
                    for i in 0..<width { routedOnly[token * width + i] += weight * source[i] }
                }
            }
        }
        if let routedOnly { context.tap("moe_out", layer, routedOnly, [n, width]) }
    }

    /// Up to this many tokens per pass, the chosen experts run as one parallel job per stage
    /// (`applyBatched`): a decode step's expert matrices are small (DeepSeek-V3's: 7 × 2048 × 7168 weights,
    /// dsv3-mini's a few hundred kilobytes), and one job per expert spent much of the step dispatching and
    /// waiting for the slowest thread.
    static let batchedTokens = 16

    /// The inner width shared by every chosen expert (`nil` if they differ: then one expert at a time).
    private func uniformWidth(_ starts: UnsafeMutablePointer<Int>) -> Int? {
        var width: Int?
        for expert in experts.indices where starts[expert + 1] > starts[expert] {
            if let width, width != experts[expert].width { return nil }
            width = experts[expert].width
        }
        return width
    }

    /// The same sums as the one-expert-at-a-time path, bit for bit (each product's rows are computed alike,
    /// and the weighted outputs are added in the same order), with three parallel jobs in all: the gate and
    /// up products of the shared and every chosen expert, then their down products.
    private func applyBatched(
        _ x: UnsafePointer<Float>, count n: Int, output: UnsafeMutablePointer<Float>, starts: UnsafeMutablePointer<Int>,
        entries: UnsafeMutablePointer<Int>, weights: UnsafeMutablePointer<Float>, inner: Int, context: ForwardContext
    ) {
        let width = router.columns
        let k = routing.expertsPerToken
        let pairs = n * k
        let arena = context.arena
        let mark = arena.mark
        defer { arena.rewind(to: mark) }
        let gathered = arena.floats(pairs * width)  // [T·k, hidden]: each expert's tokens, experts in order
        for row in 0..<pairs {
            (gathered + row * width).update(from: x + (entries[row] / k) * width, count: width)
        }
        let gated = arena.floats(pairs * inner)  // [T·k, inner]
        let upped = arena.floats(pairs * inner)  // [T·k, inner]
        let result = arena.floats(pairs * width)  // [T·k, hidden]
        let sharedWidth = shared?.width ?? 0
        let sharedGated = arena.floats(n * sharedWidth)  // [T, shared inner]
        let sharedUpped = arena.floats(n * sharedWidth)  // [T, shared inner]
        let chosen = experts.indices.filter { starts[$0 + 1] > starts[$0] }
        var first: [Linear.Product] = []
        var second: [Linear.Product] = []
        if let shared {
            first.append(Linear.Product(shared.gate, input: x, tokens: n, output: sharedGated))
            first.append(Linear.Product(shared.up, input: x, tokens: n, output: sharedUpped))
            second.append(Linear.Product(shared.down, input: sharedGated, tokens: n, output: output))
        } else {
            output.initialize(repeating: 0, count: n * width)
        }
        for expert in chosen {
            let start = starts[expert]
            let tokens = starts[expert + 1] - start
            let input = UnsafePointer(gathered + start * width)
            first.append(
                Linear.Product(experts[expert].gate, input: input, tokens: tokens, output: gated + start * inner))
            first.append(
                Linear.Product(experts[expert].up, input: input, tokens: tokens, output: upped + start * inner))
            second.append(
                Linear.Product(
                    experts[expert].down, input: gated + start * inner, tokens: tokens, output: result + start * width))
        }
        context.linear(first)
        if sharedWidth > 0 { Ops.swiGLU(gate: sharedGated, up: sharedUpped, rows: n, n: sharedWidth) }
        Ops.swiGLU(gate: gated, up: upped, rows: pairs, n: inner)
        context.linear(second)
        for row in 0..<pairs {
            let entry = entries[row]
            let weight = weights[entry]
            let source = result + row * width
            let destination = output + (entry / k) * width
            for i in 0..<width { destination[i] += weight * source[i] }
        }
    }
}
