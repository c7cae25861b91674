import RunLogStore

/// A frame checked and decoded before any database work, so that a request's decoding
/// (decompression, column decoding) runs outside the storage transaction and in parallel
/// with other requests.
struct PreparedFrame: Sendable {
    enum Piece: Sendable {
        /// A record that is not a history row, with its index in the frame.
        case record(Record, index: UInt32)
        /// A history block (at least one row), with its smallest and largest step.
        case block(FrameCodec.HistoryBlock, firstStep: Int64, lastStep: Int64)
    }

    var sequence: UInt64
    var bytes: [UInt8]
    var pieces: [Piece]
    /// Whether a piece is a record that changes metadata, config, summary, tags, lineage or state.
    var hasState: Bool

    /// The bytes storing the frame writes: its own. (The SQLite store builds its history
    /// chunks later, on the run's first read; PostgreSQL's chunk rows are not counted.)
    var storedBytes: Int { bytes.count }

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
                pieces.append(.block(b, firstStep: b.steps.min()!, lastStep: b.steps.max()!))
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
    /// Insert the history chunks of these blocks of frame `sequence`
    /// (``HistoryChunk/chunks(of:sequence:)``, one per metric and block).
    case chunks(of: [FrameCodec.HistoryBlock], sequence: UInt64)
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

/// Folds a request's frames, one at a time and in order, into a run's materialized state,
/// giving for each frame the writes it needs. Backends feed it frames as they are decoded
/// (so decoding the next frame overlaps writing this one) inside the run's transaction.
struct IngestPlanner: Sendable {
    private(set) var plan: IngestPlan

    /// - Parameter run: the run's state as stored (its `acknowledged` read under the run's lock).
    init(run: MaterializedRun) { plan = IngestPlan(run: run) }

    /// Whether a request claiming `after` starts beyond what the server holds (409).
    func isGap(after: UInt64) -> Bool { after > plan.run.acknowledged }

    var documentsLoaded: Bool { plan.run.documentsLoaded }

    /// Supplies the run's stored documents (parsed only when a frame changes them).
    mutating func loadDocuments(from row: StoredRunRow) {
        let full = row.materialized(documents: true)
        plan.run.metadata = full.metadata
        plan.run.config = full.config
        plan.run.summary = full.summary
        plan.run.tags = full.tags
        plan.run.documentsLoaded = true
    }

    /// The writes for the next frame of the request, in order; none when the server holds
    /// it already. Frames with state records need ``loadDocuments(from:)`` first.
    mutating func add(_ frame: PreparedFrame) -> [IngestOperation] {
        guard frame.sequence > plan.run.acknowledged else {
            plan.skipped += 1
            return []
        }
        precondition(!frame.hasState || plan.run.documentsLoaded, "documents must be loaded to apply state records")
        plan.stored += 1
        var ops: [IngestOperation] = [.frame(sequence: frame.sequence, bytes: frame.bytes)]
        var pending: [FrameCodec.HistoryBlock] = []
        for piece in frame.pieces {
            switch piece {
            case .block(let block, _, let last):
                pending.append(block)
                if block.branch == 0 {
                    plan.run.historyRows += Int64(block.rowCount)
                    plan.run.lastStep = max(plan.run.lastStep ?? last, last)
                }
            case .record(let record, let index):
                // Points written before a rewind marker are archived by it: plan them first.
                if case .rewind = record, !pending.isEmpty {
                    ops.append(.chunks(of: pending, sequence: frame.sequence))
                    pending = []
                }
                Materializer.apply(record, index: index, sequence: frame.sequence, to: &plan, ops: &ops)
            }
        }
        if !pending.isEmpty { ops.append(.chunks(of: pending, sequence: frame.sequence)) }
        plan.run.acknowledged = frame.sequence
        return ops
    }
}

/// Folds frames into a run's materialized state and plans the writes.
enum Materializer {
    /// Plans a whole request at once (what ``IngestPlanner`` does frame by frame).
    ///
    /// - Parameters:
    ///   - run: the run's state as stored, documents loaded if any frame has state records.
    ///   - after: the client's `X-RunLog-After`.
    ///   - frames: the request's frames, in order, sequences strictly increasing.
    static func plan(run: MaterializedRun, after: UInt64, frames: [PreparedFrame]) -> IngestDecision {
        var planner = IngestPlanner(run: run)
        guard !planner.isGap(after: after) else { return .gap(acknowledged: run.acknowledged) }
        var operations: [IngestOperation] = []
        for frame in frames { operations += planner.add(frame) }
        var plan = planner.plan
        plan.operations = operations
        return .apply(plan)
    }

    static func apply(_ record: Record, index: UInt32, sequence: UInt64, to plan: inout IngestPlan, ops: inout [IngestOperation]) {
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
            ops.append(.rewind(sequence: sequence, index: index, step: r.step, branch: r.branch, timestamp: r.timestamp))
            // A marker without a cut (written by compaction) archives nothing: its rows
            // arrive in blocks that carry their branch number.
            if r.cut != nil {
                ops.append(.archive(afterStep: r.step, branch: r.branch))
                plan.archived = true
            }
        case .file(let f):
            ops.append(.file(f))
        case .history, .console, .systemMetrics, .unknown:
            break
        }
    }

    static func applyChange(_ target: inout [String: Value], _ replace: Bool, _ values: [String: Value], _ removed: [String]) {
        if replace { target = values } else { target.merge(values) { _, new in new } }
        for k in removed { target[k] = nil }
    }
}
