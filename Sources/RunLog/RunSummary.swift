import RunLogStore
import Synchronization

/// A run's summary: one value per metric that describes the run.
///
/// By default each logged metric's summary is its last value. ``define(_:summary:)`` picks
/// min, max or mean instead, and an explicit ``set(_:_:)`` wins over both until the key is
/// removed. The summary is written to the log in the background and at `flush`/`finish`.
public final class RunSummary: @unchecked Sendable {
    private struct Stats { var min = Double.infinity, max = -Double.infinity, sum = 0.0, count = 0 }
    private struct State {
        var base: [String: Value]
        var explicit: [String: Value] = [:]
        var removed: Set<String> = []
        var aggregations: [String: SummaryAggregation] = [:]
        var stats: [String: Stats] = [:]
        var lastWritten: [String: Value]
    }
    private let state: Mutex<State>
    private let writer: LogWriter?

    init(values: [String: Value], writer: LogWriter?) {
        state = Mutex(State(base: values, lastWritten: values))
        self.writer = writer
    }

    /// How `metric`'s summary is derived from its history.
    public func define(_ metric: String, summary aggregation: SummaryAggregation) {
        state.withLock { $0.aggregations[metric] = aggregation }
    }

    /// Sets a summary value explicitly.
    public func set(_ key: String, _ value: any ValueConvertible) throws(RunLogError) {
        let v = value.runLogValue
        try RunConfig.checkSize(key, v, what: "summary value")
        state.withLock { $0.explicit[key] = v; $0.removed.remove(key) }
    }

    /// Sets several summary values explicitly.
    public func update(_ values: [String: any ValueConvertible]) throws(RunLogError) {
        for (k, v) in values { try set(k, v) }
    }

    /// Removes a key from the summary.
    public func remove(_ key: String) {
        state.withLock { $0.explicit[key] = nil; $0.base[key] = nil; $0.removed.insert(key) }
    }

    public subscript(key: String) -> Value? { values[key] }

    /// The current summary.
    public var values: [String: Value] {
        let latest = writer?.latestValues() ?? [:]
        return state.withLock { s in Self.compute(s, latest: latest) }
    }

    private static func compute(_ s: State, latest: [String: Value]) -> [String: Value] {
        var out = s.base
        for (k, v) in latest where s.aggregations[k] == nil || s.aggregations[k] == .last { out[k] = v }
        for (k, st) in s.stats where st.count > 0 {
            switch s.aggregations[k] {
            case .min: out[k] = .double(st.min)
            case .max: out[k] = .double(st.max)
            case .mean: out[k] = .double(st.sum / Double(st.count))
            default: break
            }
        }
        for k in s.removed { out[k] = nil }
        out.merge(s.explicit) { _, new in new }
        return out
    }

    /// Feeds a logged row to the metrics that have an aggregation.
    func observe(_ metrics: [String: Double]) {
        state.withLock { s in
            // A removed key that is logged again is back in the summary (as in the `Value` path).
            if !s.removed.isEmpty { s.removed = s.removed.filter { metrics[$0] == nil } }
            guard !s.aggregations.isEmpty else { return }
            for (k, agg) in s.aggregations where agg != .last {
                if let v = metrics[k] { Self.add(v, to: &s.stats[k, default: Stats()]) }
            }
        }
    }

    func observe(_ values: [String: Value]) {
        state.withLock { s in
            for k in values.keys { s.removed.remove(k) }
            guard !s.aggregations.isEmpty else { return }
            for (k, agg) in s.aggregations where agg != .last {
                if let v = values[k]?.doubleValue { Self.add(v, to: &s.stats[k, default: Stats()]) }
            }
        }
    }

    private static func add(_ v: Double, to st: inout Stats) {
        st.min = Swift.min(st.min, v)
        st.max = Swift.max(st.max, v)
        st.sum += v
        st.count += 1
    }

    /// Appends a summary record with the keys that changed since the last one.
    func writeIfChanged() {
        guard let writer else { return }
        let latest = writer.latestValues()
        let change: SummaryChange? = state.withLock { s in
            let current = Self.compute(s, latest: latest)
            var changed: [String: Value] = [:]
            for (k, v) in current where s.lastWritten[k] != v { changed[k] = v }
            let removed = s.lastWritten.keys.filter { current[$0] == nil }
            guard !changed.isEmpty || !removed.isEmpty else { return nil }
            s.lastWritten = current
            return SummaryChange(values: changed, removed: Array(removed))
        }
        if let change { try? writer.append(.summary(change)) }
    }
}
