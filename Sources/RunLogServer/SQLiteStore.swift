import CSQLite
import Logging
import RunLogStore
import Synchronization

/// The default backend: one SQLite file in WAL mode with `synchronous=FULL`, so a commit is
/// on disk before the server answers.
///
/// Three connections, each on its own thread (``SQLiteWorker``): ingests serialize on the
/// writer (SQLite has one writer at a time anyway), which commits the requests queued while
/// it was busy together (group commit, see ``ingest(_:after:frames:)``); reads go on beside them from the WAL
/// snapshot; and a checkpointer copies the WAL into the database file in the background
/// (`PASSIVE`, never blocking the writer), so that an ingest's cost is its own WAL append
/// and `fsync`, not the periodic checkpoint SQLite would otherwise run inside a commit.
/// The writer still checkpoints by itself if the WAL reaches 1 GiB (the background one
/// being unable to keep up).
///
/// History chunks are built lazily. An ingest stores the frames as sent (and the run's
/// documents); a run's chunks are built from its stored frames, in order, when something
/// first reads them (a chart, the run's metrics, a fork's prefix), and `runs.chunked` says
/// through which frame they are built. Chunks were most of the bytes an ingest wrote
/// (88 B per row of workload W64 against the frame's 61 B), and the commit of those bytes
/// bounded bulk sync; a chart read of a run synced since it was last read pays for its new
/// frames once. A frame with a rewind that archives points brings the chunks up to date
/// inside the ingest, because the archive moves chunks and the run's live row count is read
/// back from them; the rest of that request is then chunked as it is stored.
final class SQLiteStore: ServerStore {
    let backend = "sqlite"
    let path: String
    private let writer: SQLiteWorker
    private let reader: SQLiteWorker
    private let checkpointer: SQLiteWorker
    private let logger: Logger
    /// Bytes committed since the last background checkpoint was asked for.
    private let uncheckpointed = Mutex<Int>(0)
    private let ingestQueue = Mutex(IngestQueue())
    private let checkpointRequests: AsyncStream<Void>.Continuation
    private let checkpointLoop: Task<Void, Never>

    /// Committed bytes after which the background checkpointer runs.
    static let checkpointEvery = 64 << 20

    private init(path: String, logger: Logger) {
        self.path = path
        self.logger = logger
        writer = SQLiteWorker(name: "runlog-sqlite-writer", path: path, readOnly: false)
        reader = SQLiteWorker(name: "runlog-sqlite-reader", path: path, readOnly: true)
        let checkpointer = SQLiteWorker(name: "runlog-sqlite-checkpoint", path: path, readOnly: false)
        self.checkpointer = checkpointer
        let (requests, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        checkpointRequests = continuation
        checkpointLoop = Task.detached { [logger] in
            for await _ in requests {
                do { try await checkpointer.perform { db in try db.checkpoint(passive: true) } } catch {
                    logger.warning("background checkpoint failed", metadata: ["error": "\(error)"])
                }
            }
        }
    }

    /// Opens (creating if needed) the database and migrates it to the current schema.
    static func open(path: String, logger: Logger) async throws -> SQLiteStore {
        let store = SQLiteStore(path: path, logger: logger)
        do {
            let applied = try await store.writer.perform { db in try Self.migrate(db) }
            if applied > 0 { logger.info("migrated SQLite schema", metadata: ["path": "\(path)", "version": "\(Schema.version)"]) }
            try await store.reader.perform { db in try db.exec("PRAGMA cache_size = -65536") }
        } catch {
            await store.close()
            throw error
        }
        return store
    }

    /// Stops the checkpointer (after a last, complete checkpoint) and closes the connections.
    func close() async {
        // No new requests; the ones queued are committed (or fail) before the writer closes.
        ingestQueue.withLock { $0.closed = true }
        while ingestQueue.withLock({ $0.draining }) { try? await Task.sleep(for: .milliseconds(5)) }
        checkpointRequests.finish()
        await checkpointLoop.value
        _ = try? await checkpointer.perform { db in try db.checkpoint(passive: false) }
        await checkpointer.close()
        await writer.close()
        await reader.close()
    }

    private func committed(bytes: Int) {
        let due = uncheckpointed.withLock { n -> Bool in
            n += bytes
            guard n >= Self.checkpointEvery else { return false }
            n = 0
            return true
        }
        if due { checkpointRequests.yield() }
    }

    // MARK: Schema

    static let migrations: [String] = [
        """
        CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created INTEGER NOT NULL);
        CREATE TABLE entities (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, created INTEGER NOT NULL);
        CREATE TABLE members (
            entity_id INTEGER NOT NULL REFERENCES entities(id), user_id INTEGER NOT NULL REFERENCES users(id),
            PRIMARY KEY (entity_id, user_id));
        CREATE INDEX members_user ON members(user_id);
        CREATE TABLE api_keys (
            hash BLOB PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), hint TEXT NOT NULL, created INTEGER NOT NULL);
        CREATE TABLE projects (
            id INTEGER PRIMARY KEY, entity_id INTEGER NOT NULL REFERENCES entities(id), name TEXT NOT NULL,
            created INTEGER NOT NULL, UNIQUE (entity_id, name));
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL REFERENCES projects(id), run_id TEXT NOT NULL,
            name TEXT, state TEXT NOT NULL, group_name TEXT, job_type TEXT,
            tags TEXT NOT NULL, metadata TEXT NOT NULL, config TEXT NOT NULL, summary TEXT NOT NULL,
            fork_source TEXT, fork_project TEXT, fork_step INTEGER,
            acknowledged INTEGER NOT NULL, last_step INTEGER, history_rows INTEGER NOT NULL,
            created INTEGER NOT NULL, updated INTEGER NOT NULL,
            UNIQUE (project_id, run_id));
        CREATE INDEX runs_fork ON runs(fork_source);
        CREATE TABLE run_tags (run INTEGER NOT NULL REFERENCES runs(id), tag TEXT NOT NULL, PRIMARY KEY (run, tag));
        CREATE TABLE frames (run INTEGER NOT NULL REFERENCES runs(id), seq INTEGER NOT NULL, bytes BLOB NOT NULL, PRIMARY KEY (run, seq));
        CREATE TABLE history_chunks (
            id INTEGER PRIMARY KEY, run INTEGER NOT NULL REFERENCES runs(id), metric TEXT NOT NULL, branch INTEGER NOT NULL,
            first_step INTEGER NOT NULL, last_step INTEGER NOT NULL, count INTEGER NOT NULL,
            min_value REAL, max_value REAL, seq INTEGER NOT NULL, steps BLOB NOT NULL, vals BLOB NOT NULL);
        CREATE INDEX history_chunks_range ON history_chunks(run, metric, branch, first_step);
        CREATE TABLE rewinds (
            run INTEGER NOT NULL REFERENCES runs(id), seq INTEGER NOT NULL, idx INTEGER NOT NULL,
            step INTEGER NOT NULL, branch INTEGER NOT NULL, t INTEGER NOT NULL, PRIMARY KEY (run, seq, idx));
        CREATE TABLE run_files (
            run INTEGER NOT NULL REFERENCES runs(id), path TEXT NOT NULL, size INTEGER NOT NULL, digest TEXT NOT NULL,
            policy TEXT NOT NULL, t INTEGER NOT NULL, PRIMARY KEY (run, path));
        """,
        // 2: history chunks are built lazily, through frame `chunked` (see the type's comment).
        // A database from before holds every ingested frame's chunks.
        """
        ALTER TABLE runs ADD COLUMN chunked INTEGER NOT NULL DEFAULT 0;
        UPDATE runs SET chunked = acknowledged;
        """,
    ]

    /// Sets the connection up and applies the migrations it lacks; returns how many ran.
    static func migrate(_ db: SQLiteConnection) throws -> Int {
        // Page size only takes effect on a new database; large pages suit the blobs.
        try db.exec("PRAGMA page_size = 16384")
        _ = try db.query("PRAGMA journal_mode = WAL") { $0.text(0) }
        try db.exec("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY")
        // Checkpoints run in the background (see the type's comment); this is the backstop.
        try db.exec("PRAGMA wal_autocheckpoint = \((1 << 30) / 16384); PRAGMA journal_size_limit = \(256 << 20)")
        return try db.transaction {
            try db.exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied INTEGER NOT NULL)")
            let current = try db.first("SELECT COALESCE(MAX(version), 0) FROM schema_migrations") { $0.int(0) } ?? 0
            guard current <= Int64(migrations.count) else {
                throw ServerError(.configuration, "database schema version \(current) is newer than this server's \(migrations.count)")
            }
            var applied = 0
            for (i, sql) in migrations.enumerated() where Int64(i + 1) > current {
                try db.exec(sql)
                try db.run("INSERT INTO schema_migrations (version, applied) VALUES (?, ?)", [.int(Int64(i + 1)), .int(nowMicros())])
                applied += 1
            }
            return applied
        }
    }

    // MARK: Accounts

    func principal(keyHash: [UInt8]) async throws -> Principal? {
        try await reader.perform { db in
            guard let (id, name) = try db.first(
                "SELECT u.id, u.name FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.hash = ?", [.blob(keyHash)],
                { ($0.int(0), $0.text(1)) })
            else { return nil }
            let entities = try db.query(
                "SELECT e.name FROM members m JOIN entities e ON e.id = m.entity_id WHERE m.user_id = ?", [.int(id)]) { $0.text(0) }
            return Principal(userID: id, user: name, entities: Set(entities))
        }
    }

    func ensureAccount(user: String, entity: String) async throws -> Int64 {
        try await writer.perform { db in
            try db.transaction {
                let now = nowMicros()
                try db.run("INSERT OR IGNORE INTO users (name, created) VALUES (?, ?)", [.text(user), .int(now)])
                let userID = try db.first("SELECT id FROM users WHERE name = ?", [.text(user)]) { $0.int(0) }!
                try db.run("INSERT OR IGNORE INTO entities (name, kind, created) VALUES (?, ?, ?)",
                           [.text(entity), .text(entity == user ? "user" : "team"), .int(now)])
                if entity != user {
                    // A user always owns the entity of its own name.
                    try db.run("INSERT OR IGNORE INTO entities (name, kind, created) VALUES (?, 'user', ?)", [.text(user), .int(now)])
                    try db.run("INSERT OR IGNORE INTO members (entity_id, user_id) SELECT id, ? FROM entities WHERE name = ?", [.int(userID), .text(user)])
                }
                try db.run("INSERT OR IGNORE INTO members (entity_id, user_id) SELECT id, ? FROM entities WHERE name = ?", [.int(userID), .text(entity)])
                return userID
            }
        }
    }

    func addKey(hash: [UInt8], hint: String, userID: Int64) async throws {
        _ = try await writer.perform { db in
            try db.run("INSERT INTO api_keys (hash, user_id, hint, created) VALUES (?, ?, ?, ?)",
                       [.blob(hash), .int(userID), .text(hint), .int(nowMicros())])
        }
    }

    // MARK: Ingest

    private static let runColumns = """
        r.id, r.acknowledged, r.state, r.metadata, r.config, r.summary, r.tags, r.fork_source, r.fork_project, r.fork_step, \
        r.last_step, r.history_rows, r.created, r.updated
        """

    private static func runRow(_ row: SQLiteConnection.Row, offset o: Int32 = 0) -> StoredRunRow {
        StoredRunRow(
            id: row.int(o), acknowledged: UInt64(bitPattern: row.int(o + 1)), state: row.text(o + 2),
            metadata: row.text(o + 3), config: row.text(o + 4), summary: row.text(o + 5), tags: row.text(o + 6),
            forkSource: row.optionalText(o + 7), forkProject: row.optionalText(o + 8), forkStep: row.optionalInt(o + 9),
            lastStep: row.optionalInt(o + 10), historyRows: row.int(o + 11), created: row.int(o + 12), updated: row.int(o + 13))
    }

    private static let runByKey = """
        FROM runs r JOIN projects p ON p.id = r.project_id JOIN entities e ON e.id = p.entity_id \
        WHERE e.name = ? AND p.name = ? AND r.run_id = ?
        """

    private static func keyBinds(_ k: RunKey) -> [SQLiteConnection.Bind] { [.text(k.entity), .text(k.project), .text(k.run)] }

    func acknowledged(_ run: RunKey) async throws -> UInt64 {
        try await reader.perform { db in
            try db.first("SELECT r.acknowledged " + Self.runByKey, Self.keyBinds(run)) { UInt64(bitPattern: $0.int(0)) } ?? 0
        }
    }

    private struct Gap: Error { var acknowledged: UInt64 }

    /// Group commit: a request joins the queue; the writer takes every request queued by the
    /// time it is free and stores them in one transaction, one savepoint each, so that one
    /// fsync covers them all. A request that fails rolls back to its savepoint alone; when the
    /// commit itself fails, every request of the batch fails (none was acknowledged).
    func ingest(_ key: RunKey, after: UInt64, frames: FrameFeed) async throws -> IngestResult {
        let result = try await withCheckedThrowingContinuation { (c: CheckedContinuation<IngestResult, any Error>) in
            let start = ingestQueue.withLock { q -> Bool? in
                if q.closed { return nil }
                q.waiting.append(PendingIngest(key: key, after: after, frames: frames, continuation: c))
                if q.draining { return false }
                q.draining = true
                return true
            }
            switch start {
            case nil: c.resume(throwing: ServerError(.storage, "the store is closed: the server is shutting down"))
            case true?: Task { await self.drainIngests() }
            case false?: break
            }
        }
        if case .stored = result { committed(bytes: frames.storedBytes) }
        return result
    }

    private struct PendingIngest: Sendable {
        var key: RunKey
        var after: UInt64
        var frames: FrameFeed
        var continuation: CheckedContinuation<IngestResult, any Error>
    }

    private struct IngestQueue {
        var waiting: [PendingIngest] = []
        var draining = false
        /// Set by `close()`: requests from then on fail at once.
        var closed = false
    }

    /// Requests per commit at most, and their stored bytes at most (a bound on latency).
    static let maxBatchRequests = 64
    static let maxBatchBytes = 64 << 20

    private func drainIngests() async {
        while true {
            let batch = ingestQueue.withLock { q -> [PendingIngest] in
                var n = 0, bytes = 0
                while n < q.waiting.count, n < Self.maxBatchRequests, n == 0 || bytes < Self.maxBatchBytes {
                    bytes += q.waiting[n].frames.storedBytes
                    n += 1
                }
                let batch = Array(q.waiting.prefix(n))
                q.waiting.removeFirst(n)
                if batch.isEmpty { q.draining = false }
                return batch
            }
            if batch.isEmpty { return }
            let jobs = batch.map { ($0.key, $0.after, $0.frames) }
            let outcomes: [Result<IngestResult, any Error>]
            do {
                outcomes = try await writer.perform { db in try Self.ingestBatch(db, jobs) }
            } catch {
                outcomes = Array(repeating: .failure(error), count: batch.count)
            }
            for (p, o) in zip(batch, outcomes) { p.continuation.resume(with: o) }
        }
    }

    /// Stores `jobs` in one transaction, each under its own savepoint. Throws only when the
    /// transaction cannot begin or commit (then nothing of it is stored).
    private static func ingestBatch(_ db: SQLiteConnection, _ jobs: [(RunKey, UInt64, FrameFeed)]) throws -> [Result<IngestResult, any Error>] {
        try db.transaction {
            var out: [Result<IngestResult, any Error>] = []
            out.reserveCapacity(jobs.count)
            for (key, after, frames) in jobs {
                try db.exec("SAVEPOINT ingest")
                do {
                    let result = try ingest(db, key, after: after, frames: frames)
                    try db.exec("RELEASE ingest")
                    out.append(.success(result))
                } catch {
                    try db.exec("ROLLBACK TO ingest")
                    try db.exec("RELEASE ingest")
                    if let gap = error as? Gap { out.append(.success(.gap(acknowledged: gap.acknowledged))) } else { out.append(.failure(error)) }
                }
            }
            return out
        }
    }

    private static func ingest(_ db: SQLiteConnection, _ key: RunKey, after: UInt64, frames: FrameFeed) throws -> IngestResult {
        let now = nowMicros()
        guard let entityID = try db.first("SELECT id FROM entities WHERE name = ?", [.text(key.entity)], { $0.int(0) }) else {
            throw ServerError(.notFound, "no entity \(key.entity)")
        }
        var projectID = try db.first("SELECT id FROM projects WHERE entity_id = ? AND name = ?", [.int(entityID), .text(key.project)]) { $0.int(0) }
        if projectID == nil {
            try db.run("INSERT INTO projects (entity_id, name, created) VALUES (?, ?, ?)", [.int(entityID), .text(key.project), .int(now)])
            projectID = db.lastInsertRowID
        }
        let select = "SELECT " + runColumns + " FROM runs r WHERE r.project_id = ? AND r.run_id = ?"
        var found = try db.first(select, [.int(projectID!), .text(key.run)]) { runRow($0) }
        if found == nil {
            let empty = MaterializedRun()
            try db.run(
                """
                INSERT INTO runs (project_id, run_id, state, tags, metadata, config, summary, acknowledged, history_rows, created, updated)
                VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0, ?, ?)
                """,
                [.int(projectID!), .text(key.run), .text(empty.state), .text(empty.tagsJSON), .text(empty.metadataJSON),
                 .text(empty.configJSON), .text(empty.summaryJSON), .int(now), .int(now)])
            found = try db.first(select, [.int(projectID!), .text(key.run)]) { runRow($0) }
        }
        let row = found!
        let runID = row.id
        var planner = IngestPlanner(run: row.materialized(documents: false))
        if planner.isGap(after: after) { throw Gap(acknowledged: row.acknowledged) }
        // Chunks are built as frames are stored only from a frame that archives points on.
        var chunking = false
        for i in 0..<frames.count {
            let frame = try frames.get(i)
            if frame.hasState && !planner.documentsLoaded { planner.loadDocuments(from: row) }
            let ops = planner.add(frame)
            if !chunking, ops.contains(where: { if case .archive = $0 { true } else { false } }) {
                try buildChunks(db, run: runID, through: frame.sequence - 1)
                chunking = true
            }
            for op in ops {
                if case .chunks = op, !chunking { continue }
                try execute(db, op, run: runID)
            }
        }
        let plan = planner.plan
        var run = plan.run
        if chunking {
            try db.run("UPDATE runs SET chunked = ? WHERE id = ?", [.int(Int64(bitPattern: run.acknowledged)), .int(runID)])
        }
        if plan.archived {
            let (last, rows) = try db.first(
                "SELECT MAX(last_step), COALESCE(SUM(count), 0) FROM history_chunks WHERE run = ? AND branch = 0 AND metric = ?",
                [.int(runID), .text(HistoryChunk.timestampMetric)]) { ($0.optionalInt(0), $0.int(1)) }!
            run.lastStep = last
            run.historyRows = rows
        }
        if plan.documentsChanged {
            try db.run(
                """
                UPDATE runs SET name = ?, state = ?, group_name = ?, job_type = ?, tags = ?, metadata = ?, config = ?, summary = ?,
                fork_source = ?, fork_project = ?, fork_step = ?, acknowledged = ?, last_step = ?, history_rows = ?, updated = ?
                WHERE id = ?
                """,
                [.optional(run.name), .text(run.state), .optional(run.group), .optional(run.jobType), .text(run.tagsJSON),
                 .text(run.metadataJSON), .text(run.configJSON), .text(run.summaryJSON),
                 .optional(run.fork?.sourceID), .optional(run.fork?.sourceProject), .optional(run.fork?.step),
                 .int(Int64(bitPattern: run.acknowledged)), .optional(run.lastStep), .int(run.historyRows), .int(now), .int(runID)])
        } else if plan.stored > 0 {
            try db.run("UPDATE runs SET acknowledged = ?, last_step = ?, history_rows = ?, updated = ? WHERE id = ?",
                       [.int(Int64(bitPattern: run.acknowledged)), .optional(run.lastStep), .int(run.historyRows), .int(now), .int(runID)])
        }
        if plan.tagsChanged {
            try db.run("DELETE FROM run_tags WHERE run = ?", [.int(runID)])
            for t in Set(run.tags) { try db.run("INSERT INTO run_tags (run, tag) VALUES (?, ?)", [.int(runID), .text(t)]) }
        }
        return .stored(acknowledged: run.acknowledged, stored: plan.stored, skipped: plan.skipped)
    }

    /// How many stored frames one step of ``buildChunks(_:run:through:)`` reads.
    private static let chunkBuildPage = 64

    /// Builds the run's chunks of its stored frames after `runs.chunked` through `through`,
    /// in sequence order (a rewind archives what the frames before it put on branch 0),
    /// and moves `runs.chunked` to `through`. Returns the stored bytes read. Runs inside the
    /// caller's transaction on the writer.
    @discardableResult
    private static func buildChunks(_ db: SQLiteConnection, run runID: Int64, through: UInt64) throws -> Int {
        let chunked = try db.first("SELECT chunked FROM runs WHERE id = ?", [.int(runID)]) { UInt64(bitPattern: $0.int(0)) } ?? 0
        guard chunked < through else { return 0 }
        var after = chunked, bytes = 0
        while true {
            let page = try db.query(
                "SELECT seq, bytes FROM frames WHERE run = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                [.int(runID), .int(Int64(bitPattern: after)), .int(Int64(bitPattern: through)), .int(Int64(chunkBuildPage))]
            ) { (UInt64(bitPattern: $0.int(0)), $0.blob(1)) }
            for (seq, stored) in page {
                let frame: PreparedFrame
                do throws(StoreError) {
                    let parts = try FrameCodec.split(stored)
                    guard parts.count == 1 else { throw StoreError(.corrupted, "holds \(parts.count) frames") }
                    frame = try PreparedFrame.prepare(parts[0])
                } catch {
                    throw ServerError(.storage, "stored frame \(seq) of run \(runID) does not decode: \(error.message)", underlying: error)
                }
                // The planner gives the frame's chunk and archive operations in their order.
                var replay = IngestPlanner(run: MaterializedRun(acknowledged: seq - 1))
                for op in replay.add(frame) {
                    switch op {
                    case .chunks, .archive: try execute(db, op, run: runID)
                    case .frame, .rewind, .file: break
                    }
                }
                after = seq
                bytes += stored.count
            }
            if page.count < chunkBuildPage { break }
        }
        try db.run("UPDATE runs SET chunked = ? WHERE id = ?", [.int(Int64(bitPattern: through)), .int(runID)])
        return bytes
    }

    /// Builds the chunks of the run's frames stored since they were last built, if any.
    private func chunksBuilt(_ key: RunKey) async throws {
        let stale = try await reader.perform { db in
            try db.first("SELECT r.id, r.chunked < r.acknowledged " + Self.runByKey, Self.keyBinds(key)) { ($0.int(0), $0.int(1) != 0) }
        }
        guard let (runID, isStale) = stale, isStale else { return }
        let bytes = try await writer.perform { db in
            try db.transaction {
                let acknowledged = try db.first("SELECT acknowledged FROM runs WHERE id = ?", [.int(runID)]) { UInt64(bitPattern: $0.int(0)) } ?? 0
                return try Self.buildChunks(db, run: runID, through: acknowledged)
            }
        }
        committed(bytes: bytes * 2)
    }

    private static func execute(_ db: SQLiteConnection, _ op: IngestOperation, run runID: Int64) throws {
        switch op {
        case .frame(let seq, let bytes):
            try db.run("INSERT INTO frames (run, seq, bytes) VALUES (?, ?, ?)", [.int(runID), .int(Int64(bitPattern: seq)), .blob(bytes)])
        case .chunks(let blocks, let sequence):
            for c in HistoryChunk.chunks(of: blocks, sequence: sequence) { try insert(db, c, run: runID) }
        case .archive(let step, let branch):
            let straddling = try db.query(
                "SELECT id, " + chunkColumns + " FROM history_chunks WHERE run = ? AND branch = 0 AND first_step <= ? AND last_step > ?",
                [.int(runID), .int(step), .int(step)]) { ($0.int(0), chunk($0, offset: 1)) }
            try db.run("UPDATE history_chunks SET branch = ? WHERE run = ? AND branch = 0 AND first_step > ?",
                       [.int(Int64(branch)), .int(runID), .int(step)])
            for (id, c) in straddling {
                let parts: (kept: HistoryChunk?, moved: HistoryChunk?)
                do { parts = try c.split(after: step, into: branch) } catch { throw ServerError(.storage, "\(error)") }
                try db.run("DELETE FROM history_chunks WHERE id = ?", [.int(id)])
                if let k = parts.kept { try insert(db, k, run: runID) }
                if let m = parts.moved { try insert(db, m, run: runID) }
            }
        case .rewind(let seq, let index, let step, let branch, let t):
            try db.run("INSERT OR REPLACE INTO rewinds (run, seq, idx, step, branch, t) VALUES (?, ?, ?, ?, ?, ?)",
                       [.int(runID), .int(Int64(bitPattern: seq)), .int(Int64(index)), .int(step), .int(Int64(branch)), .int(t)])
        case .file(let f):
            try db.run("INSERT OR REPLACE INTO run_files (run, path, size, digest, policy, t) VALUES (?, ?, ?, ?, ?, ?)",
                       [.int(runID), .text(f.path), .int(f.size), .text(f.digest), .text(f.policy), .int(f.timestamp)])
        }
    }

    private static let chunkColumns = "metric, branch, first_step, last_step, count, min_value, max_value, seq, steps, vals"

    private static func chunk(_ r: SQLiteConnection.Row, offset o: Int32 = 0) -> HistoryChunk {
        HistoryChunk(metric: r.text(o), branch: UInt32(truncatingIfNeeded: r.int(o + 1)), firstStep: r.int(o + 2), lastStep: r.int(o + 3),
                     count: Int(r.int(o + 4)), min: r.optionalDouble(o + 5), max: r.optionalDouble(o + 6),
                     steps: r.blob(o + 8), values: r.blob(o + 9), sequence: UInt64(bitPattern: r.int(o + 7)))
    }

    private static func insert(_ db: SQLiteConnection, _ c: HistoryChunk, run: Int64) throws(ServerError) {
        try db.run(
            "INSERT INTO history_chunks (run, " + chunkColumns + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [.int(run), .text(c.metric), .int(Int64(c.branch)), .int(c.firstStep), .int(c.lastStep), .int(Int64(c.count)),
             .optional(c.min), .optional(c.max), .int(Int64(bitPattern: c.sequence)), .blob(c.steps), .blob(c.values)])
    }

    // MARK: Reads

    func entities() async throws -> [EntityInfo] {
        try await reader.perform { db in
            try db.query("SELECT name, kind FROM entities ORDER BY name") { EntityInfo(name: $0.text(0), kind: $0.text(1)) }
        }
    }

    func projects(entity: String) async throws -> [ProjectInfo] {
        try await reader.perform { db in
            try db.query(
                """
                SELECT p.name, (SELECT COUNT(*) FROM runs r WHERE r.project_id = p.id)
                FROM projects p JOIN entities e ON e.id = p.entity_id WHERE e.name = ? ORDER BY p.name
                """, [.text(entity)]) { ProjectInfo(name: $0.text(0), runs: $0.int(1)) }
        }
    }

    private static func info(_ row: StoredRunRow, key: RunKey) -> RunInfo {
        RunInfo(key: key, run: row.materialized(documents: true), created: row.created, updated: row.updated)
    }

    func runs(entity: String, project: String, filter: RunFilter) async throws -> [RunInfo] {
        try await reader.perform { db in
            var sql = "SELECT r.run_id, " + Self.runColumns + """
                 FROM runs r JOIN projects p ON p.id = r.project_id JOIN entities e ON e.id = p.entity_id
                WHERE e.name = ? AND p.name = ?
                """
            var binds: [SQLiteConnection.Bind] = [.text(entity), .text(project)]
            if let s = filter.state { sql += " AND r.state = ?"; binds.append(.text(s)) }
            if let g = filter.group { sql += " AND r.group_name = ?"; binds.append(.text(g)) }
            if let t = filter.tag { sql += " AND EXISTS (SELECT 1 FROM run_tags t WHERE t.run = r.id AND t.tag = ?)"; binds.append(.text(t)) }
            sql += " ORDER BY r.created DESC, r.id DESC"
            return try db.query(sql, binds) { row in
                Self.info(Self.runRow(row, offset: 1), key: RunKey(entity: entity, project: project, run: row.text(0)))
            }
        }
    }

    func run(_ key: RunKey, metrics withMetrics: Bool) async throws -> RunDetail? {
        if withMetrics { try await chunksBuilt(key) }
        return try await reader.perform { db in
            try db.transaction(immediate: false) {
                guard let row = try db.first("SELECT " + Self.runColumns + " " + Self.runByKey, Self.keyBinds(key), { Self.runRow($0) }) else {
                    return nil
                }
                let forks = try db.query(
                    """
                    SELECT p.name, r.run_id, r.fork_step FROM runs r JOIN projects p ON p.id = r.project_id JOIN entities e ON e.id = p.entity_id
                    WHERE e.name = ? AND r.fork_source = ? AND COALESCE(r.fork_project, p.name) = ? ORDER BY r.fork_step, r.run_id
                    """, [.text(key.entity), .text(key.run), .text(key.project)]) {
                        ForkChild(project: $0.text(0), run: $0.text(1), step: $0.int(2))
                    }
                let rewinds = try db.query("SELECT seq, step, branch, t FROM rewinds WHERE run = ? ORDER BY seq, idx", [.int(row.id)]) {
                    StoredRewind(sequence: UInt64(bitPattern: $0.int(0)), step: $0.int(1), branch: UInt32(truncatingIfNeeded: $0.int(2)), timestamp: $0.int(3))
                }
                let files = try db.query("SELECT path, size, digest, policy, t FROM run_files WHERE run = ? ORDER BY path", [.int(row.id)]) {
                    FileReference(path: $0.text(0), size: $0.int(1), digest: $0.text(2), policy: $0.text(3), timestamp: $0.int(4))
                }
                let metrics = !withMetrics ? [] : try db.query(
                    """
                    SELECT metric, SUM(count), MIN(first_step), MAX(last_step) FROM history_chunks
                    WHERE run = ? AND branch = 0 GROUP BY metric ORDER BY metric
                    """, [.int(row.id)]) { MetricInfo(name: $0.text(0), count: $0.int(1), firstStep: $0.int(2), lastStep: $0.int(3)) }
                let frames = try db.first("SELECT COUNT(*) FROM frames WHERE run = ?", [.int(row.id)]) { $0.int(0) } ?? 0
                return RunDetail(info: Self.info(row, key: key), forks: forks, rewinds: rewinds, files: files, metrics: metrics, storedFrames: frames)
            }
        }
    }

    func chunks(_ key: RunKey, metric: String, branch: UInt32, range: ClosedRange<Int64>) async throws -> [HistoryChunk] {
        try await chunksBuilt(key)
        return try await reader.perform { db in
            try db.query(
                "SELECT " + Self.chunkColumns + " FROM history_chunks WHERE run = (SELECT r.id " + Self.runByKey + ")"
                    + " AND metric = ? AND branch = ? AND first_step <= ? AND last_step >= ? ORDER BY first_step, seq",
                Self.keyBinds(key) + [.text(metric), .int(Int64(branch)), .int(range.upperBound), .int(range.lowerBound)]
            ) { Self.chunk($0) }
        }
    }

    func frames(_ key: RunKey, after: UInt64, limit: Int) async throws -> [(sequence: UInt64, bytes: [UInt8])] {
        try await reader.perform { db in
            try db.query(
                "SELECT seq, bytes FROM frames WHERE run = (SELECT r.id " + Self.runByKey + ") AND seq > ? ORDER BY seq LIMIT ?",
                Self.keyBinds(key) + [.int(Int64(bitPattern: after)), .int(Int64(limit))]
            ) { (UInt64(bitPattern: $0.int(0)), $0.blob(1)) }
        }
    }
}
