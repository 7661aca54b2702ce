import Metrics
import Prometheus
import WhaleEngine

/// The server's metrics (swift-metrics types made by a Prometheus factory of this server's own registry —
/// no process-wide bootstrap), served at `GET /metrics` in Prometheus' text format.
public final class ServerMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    let requests: Metrics.Counter
    let promptTokens: Metrics.Counter
    let cachedPromptTokens: Metrics.Counter
    let generatedTokens: Metrics.Counter
    let queued: Metrics.Gauge
    let active: Metrics.Gauge
    let cacheTokens: Metrics.Gauge
    let timeToFirstToken: Metrics.Timer
    let interTokenLatency: Metrics.Timer

    public init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
            .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
            .seconds(30),
        ]
        requests = Metrics.Counter(label: "whale_requests_total", factory: factory)
        promptTokens = Metrics.Counter(label: "whale_prompt_tokens_total", factory: factory)
        cachedPromptTokens = Metrics.Counter(label: "whale_prompt_tokens_cached_total", factory: factory)
        generatedTokens = Metrics.Counter(label: "whale_generated_tokens_total", factory: factory)
        queued = Metrics.Gauge(label: "whale_queue_depth", factory: factory)
        active = Metrics.Gauge(label: "whale_active_sequences", factory: factory)
        cacheTokens = Metrics.Gauge(label: "whale_cache_tokens", factory: factory)
        timeToFirstToken = Metrics.Timer(label: "whale_time_to_first_token_seconds", factory: factory)
        interTokenLatency = Metrics.Timer(label: "whale_inter_token_latency_seconds", factory: factory)
    }

    /// The metrics in Prometheus' text exposition format.
    public func render() -> String { registry.emitToString() }

    func request() { requests.increment() }
    func queueDepth(_ count: Int) { queued.record(count) }
    func activeSequences(_ count: Int) { active.record(count) }
    func cacheUse(_ tokens: Int) { cacheTokens.record(tokens) }
    func generated(tokens: Int) { generatedTokens.increment(by: tokens) }
    func firstToken(after duration: Duration) { timeToFirstToken.recordNanoseconds(duration.nanoseconds) }
    func nextToken(after duration: Duration) { interTokenLatency.recordNanoseconds(duration.nanoseconds) }

    func finished(_ result: GenerationResult) {
        promptTokens.increment(by: result.promptTokens)
        cachedPromptTokens.increment(by: result.promptTokens - result.promptTokensEvaluated)
    }
}

extension Duration {
    var nanoseconds: Int64 { components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000 }
}
