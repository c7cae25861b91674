import Foundation
import RunLogStore
import Synchronization

/// Runs written through the W&B protocol: every change becomes one RunLog frame appended to
/// the run's server-side log through the same ingest path as native frames, so such runs
/// live in the same model, read API and web UI as runs synced by `runlog sync`.
///
/// A change is computed from the run's stored state (its ``WandbRunBook`` among it) and
/// appended as the frame after the last acknowledged one. Changes to one run are serialized
/// in this process; a change that loses a race with another server process on the same
/// PostgreSQL database (its frame's sequence was taken) is recomputed from the new state.
struct WandbRuns: Sendable {
    let store: any ServerStore
    let locks = KeyedAsyncLock<RunKey>()

    /// Applies a change: `body` gets the run's current detail (nil for a run the server does
    /// not hold) and returns the records to append (none: nothing is written) and a result.
    func mutate<T: Sendable>(
        _ key: RunKey, _ body: @Sendable (RunDetail?) async throws -> (records: [Record], result: T)
    ) async throws -> T {
        try await locks.withLock(key) {
            for _ in 0..<8 {
                let detail = try await store.run(key, metrics: false)
                let (records, result) = try await body(detail)
                guard !records.isEmpty else { return result }
                let acknowledged = detail?.info.run.acknowledged ?? 0
                let frame: FrameCodec.StoredFrame
                do throws(StoreError) { frame = try FrameCodec.encode(records, sequence: acknowledged + 1) } catch {
                    throw ServerError(.badRequest, "cannot store the change: \(error.message)", underlying: error)
                }
                switch try await Ingest.ingest([frame], into: store, key, after: acknowledged) {
                case .stored(_, let stored, _) where stored == 1: return result
                default: continue  // another process appended first: recompute from its state
                }
            }
            throw ServerError(.conflict, "run \(key) is being changed by another writer; retry")
        }
    }

    // MARK: Reading history back

    /// The live history rows of `key` with a step ≤ `step`, rebuilt from its metric chunks
    /// (for a fork's prefix). Numbers come back as doubles.
    func rows(_ key: RunKey, through step: Int64, metrics: [MetricInfo]) async throws -> [HistoryRow] {
        var byStep: [Int64: HistoryRow] = [:]
        for m in metrics {
            let chunks = try await store.chunks(key, metric: m.name, branch: 0, range: Int64.min...step)
            for c in chunks {
                let p: ChunkPoints
                do { p = try c.decode() } catch { throw ServerError(.storage, "\(error)") }
                for i in 0..<p.count where p.steps[i] <= step {
                    let s = p.steps[i]
                    let v: Value
                    switch p.values {
                    case .doubles(let d): v = .double(d[i])
                    case .generic(let g): v = g[i]
                    }
                    var row = byStep[s] ?? HistoryRow(step: s, timestamp: 0, values: [:])
                    if m.name == HistoryChunk.timestampMetric {
                        row.timestamp = Int64(((v.doubleValue ?? 0) * 1e6).rounded())
                    } else {
                        row.values[m.name] = v
                    }
                    byStep[s] = row
                }
            }
        }
        return byStep.keys.sorted().map { byStep[$0]! }
    }

    /// Where a rewind to `step` cuts the run's log: the position of the first live history
    /// row with a larger step, and how many live rows are at or after it. Nil when no live
    /// row is above `step`.
    func rewindCut(_ key: RunKey, step: Int64) async throws -> (cut: RecordPosition, rowsAfter: Int64)? {
        // Rows are (position, step) on branch 0; earlier rewinds' [cut, marker) ranges are archived.
        var rows: [(RecordPosition, Int64)] = []
        var archived: [(RecordPosition, RecordPosition)] = []
        var after: UInt64 = 0
        while true {
            let page = try await store.frames(key, after: after, limit: 256)
            guard !page.isEmpty else { break }
            for f in page {
                after = f.sequence
                var items: [FrameCodec.Item] = []
                do throws(StoreError) {
                    for s in try FrameCodec.split(f.bytes) { items += try FrameCodec.items(of: s) }
                } catch { throw ServerError(.storage, "stored frame \(f.sequence) does not decode: \(error.message)") }
                for item in items {
                    switch item {
                    case .block(let b, let first) where b.branch == 0:
                        for i in 0..<b.rowCount { rows.append((RecordPosition(sequence: f.sequence, index: first + UInt32(i)), b.steps[i])) }
                    case .record(.rewind(let r), let index):
                        if let cut = r.cut { archived.append((cut, RecordPosition(sequence: f.sequence, index: index))) }
                    default: break
                    }
                }
            }
        }
        let live = rows.filter { p in !archived.contains { $0.0 <= p.0 && p.0 < $0.1 } }
        guard let first = live.firstIndex(where: { $0.1 > step }) else { return nil }
        return (live[first].0, Int64(live.count - first))
    }
}

/// A lock per key for async code: holders of the same key run one at a time, in arrival order.
final class KeyedAsyncLock<Key: Hashable & Sendable>: Sendable {
    private struct State {
        var held: Set<Key> = []
        var waiters: [Key: [CheckedContinuation<Void, Never>]] = [:]
    }
    private let state = Mutex(State())

    func withLock<T: Sendable>(_ key: Key, _ body: () async throws -> T) async throws -> T {
        await acquire(key)
        do {
            let r = try await body()
            release(key)
            return r
        } catch {
            release(key)
            throw error
        }
    }

    private func acquire(_ key: Key) async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let run = state.withLock { s -> Bool in
                if s.held.contains(key) {
                    s.waiters[key, default: []].append(c)
                    return false
                }
                s.held.insert(key)
                return true
            }
            if run { c.resume() }
        }
    }

    private func release(_ key: Key) {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if var w = s.waiters[key], !w.isEmpty {
                let c = w.removeFirst()
                s.waiters[key] = w.isEmpty ? nil : w
                return c  // the key stays held, handed to the next waiter
            }
            s.held.remove(key)
            return nil
        }
        next?.resume()
    }
}
