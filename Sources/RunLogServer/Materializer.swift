import RunLogStore

/// A frame checked and decoded before any database work, so that a request's decoding
/// (decompression, column decoding, chunk encoding) runs outside the storage transaction
/// and in parallel with other requests.
struct PreparedFrame: Sendable {
    enum Piece: Sendable {
        /// A record that is not a history row, with its index in the frame.
        case record(Record, index: UInt32)
        /// A history block, as per-metric chunks; `rows` rows, on `branch`.
        case block(chunks: [HistoryChunk], rows: Int, firstStep: Int64, lastStep: Int64, branch: UInt32)
    }

    var sequence: UInt64
    var bytes: [UInt8]
    var pieces: [Piece]
    /// Whether a piece is a record that changes metadata, config, summary, tags, lineage or state.
    var hasState: Bool

    /// Decodes a checked frame.
    /// - Throws: `.corrupted` when the payload does not decode.
    static func prepare(_ frame: FrameCodec.StoredFrame) throws(StoreError) -> PreparedFrame {
        var pieces: [Piece] = []
        var hasState = false
        for item in try FrameCodec.items(of: frame) {
            switch item {
            case .record(let r, let index):
                pieces.append(.record(r, index: index))
                switch r {
                case .runMetadata, .config, .summary, .tags, .forkOrigin, .resume, .exit: hasState = true
                default: break
                }
            case .block(let b, _):
                guard b.rowCount > 0 else { continue }
                pieces.append(.block(chunks: HistoryChunk.chunks(of: b, sequence: frame.header.sequence), rows: b.rowCount,
                                     firstStep: b.steps.min()!, lastStep: b.steps.max()!, branch: b.branch))
            }
        }
        return PreparedFrame(sequence: frame.header.sequence, bytes: frame.bytes, pieces: pieces, hasState: hasState)
    }
}

/// What the server keeps materialized for a run: the fold of its records in log order,
/// exactly as `RunContents` folds them in the store.
struct MaterializedRun: Sendable, Hashable {
    /// The highest sequence through which the server holds the client's log.
    var acknowledged: UInt64 = 0
    /// Whether `metadata`, `config`, `summary` and `tags` were loaded (the ingest path
    /// loads them only when a frame changes them).
    var documentsLoaded = true
    var metadata: [String: Value] = [:]
    var config: [String: Value] = [:]
    var summary: [String: Value] = [:]
    var tags: [String] = []
    /// `running`, or the state of the last exit record (`finished`, `failed`, `crashed`, `killed`, ...).
    var state = "running"
    var fork: ForkOrigin?
    /// The last live step, nil with no live history.
    var lastStep: Int64?
    /// Live history rows.
    var historyRows: Int64 = 0

    var name: String? { metadata["name"]?.stringValue }
    var group: String? { metadata["group"]?.stringValue }
    var jobType: String? { metadata["job_type"]?.stringValue }
}

/// One step of applying an ingest request, executed in order inside the storage transaction.
enum IngestOperation: Sendable {
    /// Store the frame's bytes under `(run, sequence)`.
    case frame(sequence: UInt64, bytes: [UInt8])
    /// Insert history chunks.
    case chunks([HistoryChunk])
    /// Move every live point with a step above `afterStep` to archived `branch` (splitting
    /// the chunks that straddle it).
    case archive(afterStep: Int64, branch: UInt32)
    /// Record that a rewind happened (for the run's page and the read API).
    case rewind(sequence: UInt64, index: UInt32, step: Int64, branch: UInt32, timestamp: Int64)
    /// Record or replace a saved file.
    case file(FileReference)
}

/// What an ingest request does to a run, decided from the run's materialized state and
/// the request's frames, with no I/O (so every case is unit-testable).
struct IngestPlan: Sendable {
    var operations: [IngestOperation] = []
    var run: MaterializedRun
    /// Metadata, config, summary, tags, state or lineage changed.
    var documentsChanged = false
    var tagsChanged = false
    /// A rewind archived points: the live step range and row count must be recounted.
    var archived = false
    var stored = 0
    var skipped = 0
}

enum IngestDecision: Sendable {
    /// `X-RunLog-After` is beyond what the server holds: store nothing, tell the client
    /// where to resume.
    case gap(acknowledged: UInt64)
    case apply(IngestPlan)
}

/// Folds frames into a run's materialized state and plans the writes.
enum Materializer {
    /// Plans an ingest request.
    ///
    /// - Parameters:
    ///   - run: the run's state as stored (its `acknowledged` read under the run's lock).
    ///   - after: the client's `X-RunLog-After`.
    ///   - frames: the request's frames, in order, sequences strictly increasing.
    static func plan(run: MaterializedRun, after: UInt64, frames: [PreparedFrame]) -> IngestDecision {
        guard after <= run.acknowledged else { return .gap(acknowledged: run.acknowledged) }
        var plan = IngestPlan(run: run)
        var pending: [HistoryChunk] = []
        func flushChunks() {
            if !pending.isEmpty { plan.operations.append(.chunks(pending)); pending = [] }
        }
        for frame in frames {
            guard frame.sequence > plan.run.acknowledged else { plan.skipped += 1; continue }
            plan.stored += 1
            plan.operations.append(.frame(sequence: frame.sequence, bytes: frame.bytes))
            precondition(!frame.hasState || plan.run.documentsLoaded, "documents must be loaded to apply state records")
            for piece in frame.pieces {
                switch piece {
                case .block(let chunks, let rows, _, let last, let branch):
                    pending.append(contentsOf: chunks)
                    if branch == 0 {
                        plan.run.historyRows += Int64(rows)
                        plan.run.lastStep = max(plan.run.lastStep ?? last, last)
                    }
                case .record(let record, let index):
                    // Points written before a rewind marker are archived by it: plan them first.
                    if case .rewind = record { flushChunks() }
                    apply(record, index: index, sequence: frame.sequence, to: &plan)
                }
            }
            plan.run.acknowledged = frame.sequence
        }
        flushChunks()
        return .apply(plan)
    }

    private static func apply(_ record: Record, index: UInt32, sequence: UInt64, to plan: inout IngestPlan) {
        switch record {
        case .runMetadata(let m):
            plan.run.metadata.merge(m.fields) { _, new in new }
            plan.documentsChanged = true
        case .config(let c):
            applyChange(&plan.run.config, c.replace, c.values, c.removed)
            plan.documentsChanged = true
        case .summary(let s):
            applyChange(&plan.run.summary, s.replace, s.values, s.removed)
            plan.documentsChanged = true
        case .tags(let t):
            plan.run.tags = t
            plan.documentsChanged = true
            plan.tagsChanged = true
        case .forkOrigin(let f):
            plan.run.fork = f
            plan.documentsChanged = true
        case .resume:
            plan.run.state = "running"
            plan.documentsChanged = true
        case .exit(let e):
            plan.run.state = e.state
            plan.documentsChanged = true
        case .rewind(let r):
            plan.operations.append(.rewind(sequence: sequence, index: index, step: r.step, branch: r.branch, timestamp: r.timestamp))
            // A marker without a cut (written by compaction) archives nothing: its rows
            // arrive in blocks that carry their branch number.
            if r.cut != nil {
                plan.operations.append(.archive(afterStep: r.step, branch: r.branch))
                plan.archived = true
            }
        case .file(let f):
            plan.operations.append(.file(f))
        case .history, .console, .systemMetrics, .unknown:
            break
        }
    }

    static func applyChange(_ target: inout [String: Value], _ replace: Bool, _ values: [String: Value], _ removed: [String]) {
        if replace { target = values } else { target.merge(values) { _, new in new } }
        for k in removed { target[k] = nil }
    }
}
