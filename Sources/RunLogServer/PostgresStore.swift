import Foundation
import Logging
import PostgresNIO
import RunLogStore

/// The scale-out backend: PostgreSQL through PostgresNIO's `PostgresClient` (a connection
/// pool). Server processes keep no state of their own, so several of them can share one
/// database behind a load balancer: an ingest locks its run's row (`SELECT … FOR UPDATE`),
/// so two nodes ingesting the same run serialize and the second one sees what the first
/// acknowledged; creating projects and runs is `INSERT … ON CONFLICT DO NOTHING`; schema
/// migrations run under a transaction-scoped advisory lock.
final class PostgresStore: ServerStore {
    let backend = "postgres"
    private let client: PostgresClient
    private let logger: Logger

    private init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// Parses `postgres://user:password@host:port/database`. TLS is not offered
    /// (`sslmode=disable` is the only mode); put the database on a private network or a
    /// local socket.
    static func configuration(url: String) throws(ServerError) -> PostgresClient.Configuration {
        guard let c = URLComponents(string: url), let host = c.host, !host.isEmpty else {
            throw ServerError(.configuration, "not a PostgreSQL URL: \(url)")
        }
        let database = c.path.hasPrefix("/") ? String(c.path.dropFirst()) : c.path
        let sslmode = c.queryItems?.first { $0.name == "sslmode" }?.value ?? "disable"
        guard sslmode == "disable" || sslmode == "prefer" || sslmode == "allow" else {
            throw ServerError(.configuration, "sslmode=\(sslmode) is not supported; use sslmode=disable")
        }
        var config = PostgresClient.Configuration(
            host: host, port: c.port ?? 5432, username: c.user?.removingPercentEncoding ?? "postgres",
            password: c.password?.removingPercentEncoding, database: database.isEmpty ? nil : database, tls: .disable)
        config.options.maximumConnections = 16
        return config
    }

    /// Connects, migrates, calls `body` with the store, and disconnects.
    static func with<T: Sendable>(url: String, logger: Logger, _ body: @Sendable (any ServerStore) async throws -> T) async throws -> T {
        let client = PostgresClient(configuration: try configuration(url: url), backgroundLogger: logger)
        return try await withThrowingTaskGroup(of: Void.self, returning: T.self) { group in
            group.addTask { await client.run() }
            // Give `run()` a moment to start, so the first lease does not log that it has not.
            try await Task.sleep(for: .milliseconds(20))
            do {
                let store = PostgresStore(client: client, logger: logger)
                try await store.migrate()
                let result = try await body(store)
                group.cancelAll()
                return result
            } catch {
                group.cancelAll()
                throw error
            }
        }
    }

    func close() async {}

    // MARK: Schema

    static let migrations: [[String]] = [
        [
            "CREATE TABLE users (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE, created BIGINT NOT NULL)",
            "CREATE TABLE entities (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, created BIGINT NOT NULL)",
            """
            CREATE TABLE members (entity_id BIGINT NOT NULL REFERENCES entities(id), user_id BIGINT NOT NULL REFERENCES users(id),
            PRIMARY KEY (entity_id, user_id))
            """,
            "CREATE INDEX members_user ON members(user_id)",
            """
            CREATE TABLE api_keys (hash BYTEA PRIMARY KEY, user_id BIGINT NOT NULL REFERENCES users(id), hint TEXT NOT NULL,
            created BIGINT NOT NULL)
            """,
            """
            CREATE TABLE projects (id BIGSERIAL PRIMARY KEY, entity_id BIGINT NOT NULL REFERENCES entities(id), name TEXT NOT NULL,
            created BIGINT NOT NULL, UNIQUE (entity_id, name))
            """,
            """
            CREATE TABLE runs (
                id BIGSERIAL PRIMARY KEY, project_id BIGINT NOT NULL REFERENCES projects(id), run_id TEXT NOT NULL,
                name TEXT, state TEXT NOT NULL, group_name TEXT, job_type TEXT,
                tags TEXT NOT NULL, metadata TEXT NOT NULL, config TEXT NOT NULL, summary TEXT NOT NULL,
                fork_source TEXT, fork_project TEXT, fork_step BIGINT,
                acknowledged BIGINT NOT NULL, last_step BIGINT, history_rows BIGINT NOT NULL,
                created BIGINT NOT NULL, updated BIGINT NOT NULL,
                UNIQUE (project_id, run_id))
            """,
            "CREATE INDEX runs_fork ON runs(fork_source)",
            "CREATE TABLE run_tags (run BIGINT NOT NULL REFERENCES runs(id), tag TEXT NOT NULL, PRIMARY KEY (run, tag))",
            "CREATE TABLE frames (run BIGINT NOT NULL REFERENCES runs(id), seq BIGINT NOT NULL, bytes BYTEA NOT NULL, PRIMARY KEY (run, seq))",
            // Frames are compressed already; chunk values barely compress: skip TOAST compression.
            "ALTER TABLE frames ALTER COLUMN bytes SET STORAGE EXTERNAL",
            """
            CREATE TABLE history_chunks (
                id BIGSERIAL PRIMARY KEY, run BIGINT NOT NULL REFERENCES runs(id), metric TEXT NOT NULL, branch BIGINT NOT NULL,
                first_step BIGINT NOT NULL, last_step BIGINT NOT NULL, count BIGINT NOT NULL,
                min_value DOUBLE PRECISION, max_value DOUBLE PRECISION, seq BIGINT NOT NULL, steps BYTEA NOT NULL, vals BYTEA NOT NULL)
            """,
            "ALTER TABLE history_chunks ALTER COLUMN vals SET STORAGE EXTERNAL",
            "CREATE INDEX history_chunks_range ON history_chunks(run, metric, branch, first_step)",
            """
            CREATE TABLE rewinds (run BIGINT NOT NULL REFERENCES runs(id), seq BIGINT NOT NULL, idx BIGINT NOT NULL,
            step BIGINT NOT NULL, branch BIGINT NOT NULL, t BIGINT NOT NULL, PRIMARY KEY (run, seq, idx))
            """,
            """
            CREATE TABLE run_files (run BIGINT NOT NULL REFERENCES runs(id), path TEXT NOT NULL, size BIGINT NOT NULL,
            digest TEXT NOT NULL, policy TEXT NOT NULL, t BIGINT NOT NULL, PRIMARY KEY (run, path))
            """,
        ]
    ]

    /// Applies missing migrations; nodes starting together take turns on an advisory lock.
    func migrate() async throws {
        try await client.withTransaction(logger: logger) { conn in
            try await conn.query("SELECT pg_advisory_xact_lock(727001)", logger: logger)
            try await conn.query(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied BIGINT NOT NULL)", logger: logger)
            var current: Int64 = 0
            for try await v in try await conn.query("SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations", logger: logger)
                .decode(Int64.self) { current = v }
            guard current <= Int64(Self.migrations.count) else {
                throw ServerError(.configuration, "database schema version \(current) is newer than this server's \(Self.migrations.count)")
            }
            for (i, statements) in Self.migrations.enumerated() where Int64(i + 1) > current {
                for sql in statements { try await conn.query(PostgresQuery(unsafeSQL: sql), logger: logger) }
                let version = Int64(i + 1)
                try await conn.query("INSERT INTO schema_migrations (version, applied) VALUES (\(version), \(nowMicros()))", logger: logger)
                logger.info("migrated PostgreSQL schema", metadata: ["version": "\(version)"])
            }
        }
    }

    // MARK: Helpers

    /// Passes ``ServerError`` and the ingest's gap signal through (unwrapping them from a
    /// `PostgresTransactionError`), and turns anything else into a storage error.
    private func wrap<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let e as ServerError {
            throw e
        } catch let e as Gap {
            throw e
        } catch let e as PostgresTransactionError {
            if let inner = e.closureError, inner is ServerError || inner is Gap { throw inner }
            throw ServerError(.storage, "PostgreSQL transaction failed: \(String(reflecting: e.closureError ?? e.commitError ?? e.beginError ?? e))", underlying: e)
        } catch {
            throw ServerError(.storage, "PostgreSQL: \(String(reflecting: error))", underlying: error)
        }
    }

    private static func bytes(_ b: ByteBuffer) -> [UInt8] { Array(b.readableBytesView) }
    private static func buffer(_ b: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: b) }

    // MARK: Accounts

    func principal(keyHash: [UInt8]) async throws -> Principal? {
        try await wrap {
            try await client.withConnection { conn in
                var user: (Int64, String)?
                let hash = Self.buffer(keyHash)
                for try await (id, name) in try await conn.query(
                    "SELECT u.id, u.name FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.hash = \(hash)", logger: logger
                ).decode((Int64, String).self) { user = (id, name) }
                guard let user else { return nil }
                var entities: Set<String> = []
                for try await name in try await conn.query(
                    "SELECT e.name FROM members m JOIN entities e ON e.id = m.entity_id WHERE m.user_id = \(user.0)", logger: logger
                ).decode(String.self) { entities.insert(name) }
                return Principal(userID: user.0, user: user.1, entities: entities)
            }
        }
    }

    func ensureAccount(user: String, entity: String) async throws -> Int64 {
        try await wrap {
            try await client.withTransaction(logger: logger) { conn in
                let now = nowMicros()
                try await conn.query("INSERT INTO users (name, created) VALUES (\(user), \(now)) ON CONFLICT (name) DO NOTHING", logger: logger)
                var userID: Int64 = 0
                for try await id in try await conn.query("SELECT id FROM users WHERE name = \(user)", logger: logger).decode(Int64.self) { userID = id }
                let kind = entity == user ? "user" : "team"
                try await conn.query(
                    "INSERT INTO entities (name, kind, created) VALUES (\(entity), \(kind), \(now)) ON CONFLICT (name) DO NOTHING", logger: logger)
                var owned = [entity]
                if entity != user {
                    try await conn.query(
                        "INSERT INTO entities (name, kind, created) VALUES (\(user), 'user', \(now)) ON CONFLICT (name) DO NOTHING", logger: logger)
                    owned.append(user)
                }
                for name in owned {
                    try await conn.query(
                        """
                        INSERT INTO members (entity_id, user_id) SELECT id, \(userID) FROM entities WHERE name = \(name)
                        ON CONFLICT DO NOTHING
                        """, logger: logger)
                }
                return userID
            }
        }
    }

    func addKey(hash: [UInt8], hint: String, userID: Int64) async throws {
        try await wrap {
            let h = Self.buffer(hash)
            try await client.query(
                "INSERT INTO api_keys (hash, user_id, hint, created) VALUES (\(h), \(userID), \(hint), \(nowMicros()))", logger: logger)
        }
    }

    // MARK: Ingest

    private static let runColumns = """
        r.id, r.acknowledged, r.state, r.metadata, r.config, r.summary, r.tags, r.fork_source, r.fork_project, r.fork_step, \
        r.last_step, r.history_rows, r.created, r.updated
        """
    private typealias RunTuple = (Int64, Int64, String, String, String, String, String, String?, String?, Int64?, Int64?, Int64, Int64, Int64)

    private static func row(_ t: RunTuple) -> StoredRunRow {
        StoredRunRow(id: t.0, acknowledged: UInt64(bitPattern: t.1), state: t.2, metadata: t.3, config: t.4, summary: t.5, tags: t.6,
                     forkSource: t.7, forkProject: t.8, forkStep: t.9, lastStep: t.10, historyRows: t.11, created: t.12, updated: t.13)
    }

    private static let runByKey = """
        FROM runs r JOIN projects p ON p.id = r.project_id JOIN entities e ON e.id = p.entity_id \
        WHERE e.name = $1 AND p.name = $2 AND r.run_id = $3
        """

    private static func keyBinds(_ k: RunKey) -> PostgresBindings {
        var b = PostgresBindings()
        b.append(k.entity)
        b.append(k.project)
        b.append(k.run)
        return b
    }

    func acknowledged(_ run: RunKey) async throws -> UInt64 {
        try await wrap {
            var ack: UInt64 = 0
            for try await a in try await client.query(
                PostgresQuery(unsafeSQL: "SELECT r.acknowledged " + Self.runByKey, binds: Self.keyBinds(run)), logger: logger
            ).decode(Int64.self) { ack = UInt64(bitPattern: a) }
            return ack
        }
    }

    private struct Gap: Error { var acknowledged: UInt64 }

    func ingest(_ key: RunKey, after: UInt64, frames: FrameFeed) async throws -> IngestResult {
        do {
            return try await wrap {
                try await client.withTransaction(logger: logger) { conn in
                    try await self.ingest(conn, key, after: after, frames: frames)
                }
            }
        } catch let gap as Gap {
            return .gap(acknowledged: gap.acknowledged)
        }
    }

    private func ingest(_ conn: PostgresConnection, _ key: RunKey, after: UInt64, frames: FrameFeed) async throws -> IngestResult {
        let now = nowMicros()
        var entityID: Int64?
        for try await id in try await conn.query("SELECT id FROM entities WHERE name = \(key.entity)", logger: logger).decode(Int64.self) {
            entityID = id
        }
        guard let entityID else { throw ServerError(.notFound, "no entity \(key.entity)") }
        try await conn.query(
            "INSERT INTO projects (entity_id, name, created) VALUES (\(entityID), \(key.project), \(now)) ON CONFLICT (entity_id, name) DO NOTHING",
            logger: logger)
        var projectID: Int64 = 0
        for try await id in try await conn.query(
            "SELECT id FROM projects WHERE entity_id = \(entityID) AND name = \(key.project)", logger: logger
        ).decode(Int64.self) { projectID = id }
        let empty = MaterializedRun()
        try await conn.query(
            """
            INSERT INTO runs (project_id, run_id, state, tags, metadata, config, summary, acknowledged, history_rows, created, updated)
            VALUES (\(projectID), \(key.run), \(empty.state), \(empty.tagsJSON), \(empty.metadataJSON), \(empty.configJSON),
            \(empty.summaryJSON), 0, 0, \(now), \(now))
            ON CONFLICT (project_id, run_id) DO NOTHING
            """, logger: logger)
        var stored: StoredRunRow?
        var b = PostgresBindings()
        b.append(projectID)
        b.append(key.run)
        for try await t in try await conn.query(
            PostgresQuery(unsafeSQL: "SELECT " + Self.runColumns + " FROM runs r WHERE r.project_id = $1 AND r.run_id = $2 FOR UPDATE", binds: b),
            logger: logger
        ).decode(RunTuple.self) { stored = Self.row(t) }
        guard let row = stored else { throw ServerError(.storage, "run \(key) vanished") }
        let runID = row.id

        var planner = IngestPlanner(run: row.materialized(documents: false))
        if planner.isGap(after: after) { throw Gap(acknowledged: row.acknowledged) }
        var frameSeqs: [Int64] = []
        var frameBytes: [ByteBuffer] = []
        for i in 0..<frames.count {
            let frame = try await frames.value(i)
            if frame.hasState && !planner.documentsLoaded { planner.loadDocuments(from: row) }
            for op in planner.add(frame) {
                switch op {
                case .frame(let seq, let bytes):
                    frameSeqs.append(Int64(bitPattern: seq))
                    frameBytes.append(Self.buffer(bytes))
                default:
                    try await execute(conn, op, run: runID)
                }
            }
        }
        let plan = planner.plan
        if !frameSeqs.isEmpty {
            try await conn.query(
                "INSERT INTO frames (run, seq, bytes) SELECT \(runID), * FROM unnest(\(frameSeqs)::BIGINT[], \(frameBytes)::BYTEA[])",
                logger: logger)
        }
        var run = plan.run
        if plan.archived {
            for try await (last, rows) in try await conn.query(
                """
                SELECT MAX(last_step), COALESCE(SUM(count), 0)::BIGINT FROM history_chunks
                WHERE run = \(runID) AND branch = 0 AND metric = \(HistoryChunk.timestampMetric)
                """, logger: logger
            ).decode((Int64?, Int64).self) {
                run.lastStep = last
                run.historyRows = rows
            }
        }
        let ack = Int64(bitPattern: run.acknowledged)
        if plan.documentsChanged {
            try await conn.query(
                """
                UPDATE runs SET name = \(run.name), state = \(run.state), group_name = \(run.group), job_type = \(run.jobType),
                tags = \(run.tagsJSON), metadata = \(run.metadataJSON), config = \(run.configJSON), summary = \(run.summaryJSON),
                fork_source = \(run.fork?.sourceID), fork_project = \(run.fork?.sourceProject), fork_step = \(run.fork?.step),
                acknowledged = \(ack), last_step = \(run.lastStep), history_rows = \(run.historyRows), updated = \(now)
                WHERE id = \(runID)
                """, logger: logger)
        } else if plan.stored > 0 {
            try await conn.query(
                """
                UPDATE runs SET acknowledged = \(ack), last_step = \(run.lastStep), history_rows = \(run.historyRows), updated = \(now)
                WHERE id = \(runID)
                """, logger: logger)
        }
        if plan.tagsChanged {
            try await conn.query("DELETE FROM run_tags WHERE run = \(runID)", logger: logger)
            let tags = Array(Set(run.tags))
            if !tags.isEmpty {
                try await conn.query("INSERT INTO run_tags (run, tag) SELECT \(runID), * FROM unnest(\(tags)::TEXT[])", logger: logger)
            }
        }
        return .stored(acknowledged: run.acknowledged, stored: plan.stored, skipped: plan.skipped)
    }

    private func execute(_ conn: PostgresConnection, _ op: IngestOperation, run runID: Int64) async throws {
        switch op {
        case .frame(let seq, let bytes):
            let s = Int64(bitPattern: seq), b = Self.buffer(bytes)
            try await conn.query("INSERT INTO frames (run, seq, bytes) VALUES (\(runID), \(s), \(b))", logger: logger)
        case .chunks(let blocks, let sequence):
            try await insert(conn, HistoryChunk.chunks(of: blocks, sequence: sequence), run: runID)
        case .archive(let step, let branch):
            var straddling: [(Int64, HistoryChunk)] = []
            var binds = PostgresBindings()
            binds.append(runID)
            binds.append(step)
            for try await t in try await conn.query(
                PostgresQuery(unsafeSQL: "SELECT id, " + Self.chunkColumns
                    + " FROM history_chunks WHERE run = $1 AND branch = 0 AND first_step <= $2 AND last_step > $2", binds: binds),
                logger: logger
            ).decode((Int64, String, Int64, Int64, Int64, Int64, Double?, Double?, Int64, ByteBuffer, ByteBuffer).self) {
                straddling.append((t.0, Self.chunk((t.1, t.2, t.3, t.4, t.5, t.6, t.7, t.8, t.9, t.10))))
            }
            let b = Int64(branch)
            try await conn.query(
                "UPDATE history_chunks SET branch = \(b) WHERE run = \(runID) AND branch = 0 AND first_step > \(step)", logger: logger)
            for (id, c) in straddling {
                let parts: (kept: HistoryChunk?, moved: HistoryChunk?)
                do { parts = try c.split(after: step, into: branch) } catch { throw ServerError(.storage, "\(error)") }
                try await conn.query("DELETE FROM history_chunks WHERE id = \(id)", logger: logger)
                try await insert(conn, [parts.kept, parts.moved].compactMap { $0 }, run: runID)
            }
        case .rewind(let seq, let index, let step, let branch, let t):
            let s = Int64(bitPattern: seq), i = Int64(index), br = Int64(branch)
            try await conn.query(
                """
                INSERT INTO rewinds (run, seq, idx, step, branch, t) VALUES (\(runID), \(s), \(i), \(step), \(br), \(t))
                ON CONFLICT (run, seq, idx) DO UPDATE SET step = EXCLUDED.step, branch = EXCLUDED.branch, t = EXCLUDED.t
                """, logger: logger)
        case .file(let f):
            try await conn.query(
                """
                INSERT INTO run_files (run, path, size, digest, policy, t) VALUES (\(runID), \(f.path), \(f.size), \(f.digest), \(f.policy), \(f.timestamp))
                ON CONFLICT (run, path) DO UPDATE SET size = EXCLUDED.size, digest = EXCLUDED.digest, policy = EXCLUDED.policy, t = EXCLUDED.t
                """, logger: logger)
        }
    }

    private static let chunkColumns = "metric, branch, first_step, last_step, count, min_value, max_value, seq, steps, vals"
    private typealias ChunkTuple = (String, Int64, Int64, Int64, Int64, Double?, Double?, Int64, ByteBuffer, ByteBuffer)

    private static func chunk(_ t: ChunkTuple) -> HistoryChunk {
        HistoryChunk(metric: t.0, branch: UInt32(truncatingIfNeeded: t.1), firstStep: t.2, lastStep: t.3, count: Int(t.4),
                     min: t.5, max: t.6, steps: bytes(t.8), values: bytes(t.9), sequence: UInt64(bitPattern: t.7))
    }

    /// One statement for many chunks: parallel arrays through `unnest` (NaN stands for NULL
    /// in the min/max arrays, which cannot hold NULLs here).
    private func insert(_ conn: PostgresConnection, _ chunks: [HistoryChunk], run: Int64) async throws {
        guard !chunks.isEmpty else { return }
        let metrics = chunks.map(\.metric)
        let branches = chunks.map { Int64($0.branch) }
        let firsts = chunks.map(\.firstStep)
        let lasts = chunks.map(\.lastStep)
        let counts = chunks.map { Int64($0.count) }
        let mins = chunks.map { $0.min ?? .nan }
        let maxs = chunks.map { $0.max ?? .nan }
        let seqs = chunks.map { Int64(bitPattern: $0.sequence) }
        let steps = chunks.map { Self.buffer($0.steps) }
        let vals = chunks.map { Self.buffer($0.values) }
        try await conn.query(
            """
            INSERT INTO history_chunks (run, metric, branch, first_step, last_step, count, min_value, max_value, seq, steps, vals)
            SELECT \(run), m, b, f, l, c, NULLIF(mn, 'NaN'::FLOAT8), NULLIF(mx, 'NaN'::FLOAT8), s, st, v
            FROM unnest(\(metrics)::TEXT[], \(branches)::BIGINT[], \(firsts)::BIGINT[], \(lasts)::BIGINT[], \(counts)::BIGINT[],
                        \(mins)::FLOAT8[], \(maxs)::FLOAT8[], \(seqs)::BIGINT[], \(steps)::BYTEA[], \(vals)::BYTEA[])
                 AS t(m, b, f, l, c, mn, mx, s, st, v)
            """, logger: logger)
    }

    // MARK: Reads

    func entities() async throws -> [EntityInfo] {
        try await wrap {
            var out: [EntityInfo] = []
            for try await (n, k) in try await client.query("SELECT name, kind FROM entities ORDER BY name", logger: logger)
                .decode((String, String).self) { out.append(EntityInfo(name: n, kind: k)) }
            return out
        }
    }

    func projects(entity: String) async throws -> [ProjectInfo] {
        try await wrap {
            var out: [ProjectInfo] = []
            for try await (n, c) in try await client.query(
                """
                SELECT p.name, (SELECT COUNT(*) FROM runs r WHERE r.project_id = p.id)::BIGINT
                FROM projects p JOIN entities e ON e.id = p.entity_id WHERE e.name = \(entity) ORDER BY p.name
                """, logger: logger
            ).decode((String, Int64).self) { out.append(ProjectInfo(name: n, runs: c)) }
            return out
        }
    }

    func runs(entity: String, project: String, filter: RunFilter) async throws -> [RunInfo] {
        try await wrap {
            var sql = "SELECT r.run_id, " + Self.runColumns + """
                 FROM runs r JOIN projects p ON p.id = r.project_id JOIN entities e ON e.id = p.entity_id
                WHERE e.name = $1 AND p.name = $2
                """
            var b = PostgresBindings()
            b.append(entity)
            b.append(project)
            var n = 2
            if let s = filter.state { n += 1; sql += " AND r.state = $\(n)"; b.append(s) }
            if let g = filter.group { n += 1; sql += " AND r.group_name = $\(n)"; b.append(g) }
            if let t = filter.tag { n += 1; sql += " AND EXISTS (SELECT 1 FROM run_tags t WHERE t.run = r.id AND t.tag = $\(n))"; b.append(t) }
            sql += " ORDER BY r.created DESC, r.id DESC"
            var out: [RunInfo] = []
            // The run id first, then the run columns.
            for try await t in try await client.query(PostgresQuery(unsafeSQL: sql, binds: b), logger: logger)
                .decode((String, Int64, Int64, String, String, String, String, String, String?, String?, Int64?, Int64?, Int64, Int64, Int64).self)
            {
                let r = Self.row((t.1, t.2, t.3, t.4, t.5, t.6, t.7, t.8, t.9, t.10, t.11, t.12, t.13, t.14))
                out.append(RunInfo(key: RunKey(entity: entity, project: project, run: t.0), run: r.materialized(documents: true),
                                   created: r.created, updated: r.updated))
            }
            return out
        }
    }

    func run(_ key: RunKey, metrics withMetrics: Bool) async throws -> RunDetail? {
        try await wrap {
            try await client.withConnection { conn in
                var stored: StoredRunRow?
                for try await t in try await conn.query(
                    PostgresQuery(unsafeSQL: "SELECT " + Self.runColumns + " " + Self.runByKey, binds: Self.keyBinds(key)), logger: logger
                ).decode(RunTuple.self) { stored = Self.row(t) }
                guard let row = stored else { return nil }
                var forks: [ForkChild] = []
                for try await (p, r, s) in try await conn.query(
                    """
                    SELECT p.name, r.run_id, r.fork_step FROM runs r JOIN projects p ON p.id = r.project_id JOIN entities e ON e.id = p.entity_id
                    WHERE e.name = \(key.entity) AND r.fork_source = \(key.run) AND COALESCE(r.fork_project, p.name) = \(key.project)
                    ORDER BY r.fork_step, r.run_id
                    """, logger: logger
                ).decode((String, String, Int64).self) { forks.append(ForkChild(project: p, run: r, step: s)) }
                var rewinds: [StoredRewind] = []
                for try await (seq, step, branch, t) in try await conn.query(
                    "SELECT seq, step, branch, t FROM rewinds WHERE run = \(row.id) ORDER BY seq, idx", logger: logger
                ).decode((Int64, Int64, Int64, Int64).self) {
                    rewinds.append(StoredRewind(sequence: UInt64(bitPattern: seq), step: step, branch: UInt32(truncatingIfNeeded: branch), timestamp: t))
                }
                var files: [FileReference] = []
                for try await (path, size, digest, policy, t) in try await conn.query(
                    "SELECT path, size, digest, policy, t FROM run_files WHERE run = \(row.id) ORDER BY path", logger: logger
                ).decode((String, Int64, String, String, Int64).self) {
                    files.append(FileReference(path: path, size: size, digest: digest, policy: policy, timestamp: t))
                }
                var metrics: [MetricInfo] = []
                if withMetrics {
                for try await (name, count, first, last) in try await conn.query(
                    """
                    SELECT metric, SUM(count)::BIGINT, MIN(first_step), MAX(last_step) FROM history_chunks
                    WHERE run = \(row.id) AND branch = 0 GROUP BY metric ORDER BY metric
                    """, logger: logger
                ).decode((String, Int64, Int64, Int64).self) {
                    metrics.append(MetricInfo(name: name, count: count, firstStep: first, lastStep: last))
                }
                }
                var frames: Int64 = 0
                for try await c in try await conn.query("SELECT COUNT(*)::BIGINT FROM frames WHERE run = \(row.id)", logger: logger)
                    .decode(Int64.self) { frames = c }
                let info = RunInfo(key: key, run: row.materialized(documents: true), created: row.created, updated: row.updated)
                return RunDetail(info: info, forks: forks, rewinds: rewinds, files: files, metrics: metrics, storedFrames: frames)
            }
        }
    }

    func chunks(_ key: RunKey, metric: String, branch: UInt32, range: ClosedRange<Int64>) async throws -> [HistoryChunk] {
        try await wrap {
            var b = Self.keyBinds(key)
            b.append(metric)
            b.append(Int64(branch))
            b.append(range.upperBound)
            b.append(range.lowerBound)
            var out: [HistoryChunk] = []
            for try await t in try await client.query(
                PostgresQuery(unsafeSQL: "SELECT " + Self.chunkColumns + " FROM history_chunks WHERE run = (SELECT r.id " + Self.runByKey + ")"
                    + " AND metric = $4 AND branch = $5 AND first_step <= $6 AND last_step >= $7 ORDER BY first_step, seq", binds: b),
                logger: logger
            ).decode(ChunkTuple.self) { out.append(Self.chunk(t)) }
            return out
        }
    }

    func frames(_ key: RunKey, after: UInt64, limit: Int) async throws -> [(sequence: UInt64, bytes: [UInt8])] {
        try await wrap {
            var b = Self.keyBinds(key)
            b.append(Int64(bitPattern: after))
            b.append(Int64(limit))
            var out: [(sequence: UInt64, bytes: [UInt8])] = []
            for try await (s, bytes) in try await client.query(
                PostgresQuery(unsafeSQL: "SELECT seq, bytes FROM frames WHERE run = (SELECT r.id " + Self.runByKey + ") AND seq > $4 ORDER BY seq LIMIT $5",
                              binds: b),
                logger: logger
            ).decode((Int64, ByteBuffer).self) { out.append((UInt64(bitPattern: s), Self.bytes(bytes))) }
            return out
        }
    }
}
