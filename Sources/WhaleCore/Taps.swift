/// Named intermediate values of a forward pass ("taps"), recorded when a caller asks for them, so a layer's
/// every step can be compared with another engine's (`whale score --dump-taps`, scripts/diff-taps.py).
///
/// Names are stable and follow llama.cpp's where it has one (`attn_norm`, `kv_latent`, `ffn_out`,
/// `result_norm`, …; README "Debugging a model: taps" lists them); `layer` is nil outside the layer stack.
/// Shapes are outermost first. Models record through `ForwardContext.tap`, which costs one nil check when
/// no recorder is attached.
public final class TapRecorder: @unchecked Sendable {
    public struct Tap: Sendable {
        public var name: String
        public var layer: Int?
        public var shape: [Int]
        public var values: [Float]
    }

    /// In the order they were computed.
    public private(set) var taps: [Tap] = []

    public init() {}

    /// Copies `shape.product` floats from `values`.
    public func record(_ name: String, layer: Int?, _ values: UnsafePointer<Float>, shape: [Int]) {
        let count = shape.reduce(1, *)
        taps.append(
            Tap(name: name, layer: layer, shape: shape, values: Array(UnsafeBufferPointer(start: values, count: count)))
        )
    }
}
