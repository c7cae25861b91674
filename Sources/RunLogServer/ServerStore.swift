#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import RunLogStore

/// A run's address: runs are keyed by entity, project and run id, whatever protocol wrote them.
struct RunKey: Hashable, Sendable, CustomStringConvertible {
    var entity: String
    var project: String
    var run: String
    var description: String { "\(entity)/\(project)/\(run)" }
}

/// Who a request is: the user an API key belongs to and the entities it may write.
struct Principal: Sendable, Hashable {
    var userID: Int64
    var user: String
    var entities: Set<String>
}

struct EntityInfo: Sendable, Hashable {
    var name: String
    /// `user` or `team`.
    var kind: String
}

struct ProjectInfo: Sendable, Hashable {
    var name: String
    var runs: Int64
}

/// A run as listed: its materialized state and bookkeeping.
struct RunInfo: Sendable {
    var key: RunKey
    var run: MaterializedRun
    /// µs since the Unix epoch, as the server saw the first and the latest ingest.
    var created: Int64
    var updated: Int64
}

struct RunFilter: Sendable, Hashable {
    var tag: String?
    var group: String?
    var state: String?
}

struct StoredRewind: Sendable, Hashable {
    var sequence: UInt64
    var step: Int64
    var branch: UInt32
    var timestamp: Int64
}

struct ForkChild: Sendable, Hashable {
    var project: String
    var run: String
    var step: Int64
}

struct MetricInfo: Sendable, Hashable {
    var name: String
    /// Live points.
    var count: Int64
    var firstStep: Int64
    var lastStep: Int64
}

/// One run with everything its page shows.
struct RunDetail: Sendable {
    var info: RunInfo
    var forks: [ForkChild]
    var rewinds: [StoredRewind]
    var files: [FileReference]
    /// Empty when the run was read without its metrics (``ServerStore/run(_:metrics:)``).
    var metrics: [MetricInfo]
    var storedFrames: Int64
}

/// What an ingest request did.
enum IngestResult: Sendable, Hashable {
    case stored(acknowledged: UInt64, stored: Int, skipped: Int)
    /// `X-RunLog-After` was beyond the acknowledged sequence: nothing was stored.
    case gap(acknowledged: UInt64)
}

/// Errors of the server, mapped to HTTP statuses in one place (``status``).
public struct ServerError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        enum Base: String, Sendable { case badRequest, unauthorized, forbidden, notFound, conflict, tooLarge, storage, configuration }
        let base: Base
        public static let badRequest = Code(base: .badRequest)
        public static let unauthorized = Code(base: .unauthorized)
        public static let forbidden = Code(base: .forbidden)
        public static let notFound = Code(base: .notFound)
        public static let conflict = Code(base: .conflict)
        public static let tooLarge = Code(base: .tooLarge)
        /// The database failed (I/O, constraint, connection).
        public static let storage = Code(base: .storage)
        /// The server was started with an unusable configuration.
        public static let configuration = Code(base: .configuration)
        public var description: String { base.rawValue }
    }

    public var code: Code
    public var message: String
    public var underlying: (any Error)?

    public init(_ code: Code, _ message: String, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    public var description: String {
        var s = "\(code): \(message)"
        if let underlying { s += " (\(underlying))" }
        return s
    }

    /// The HTTP status code for this error.
    var status: Int {
        switch code.base {
        case .badRequest: 400
        case .unauthorized: 401
        case .forbidden: 403
        case .notFound: 404
        case .conflict: 409
        case .tooLarge: 413
        case .storage, .configuration: 500
        }
    }
}

/// The server's storage: accounts, runs and their materialized contents, history chunks and
/// raw frames. Two implementations, ``SQLiteStore`` (a file, the default) and
/// ``PostgresStore`` (`postgres://` URLs, several server processes on one database), run
/// the same behaviour suite.
///
/// Every ingest is atomic and committed before it returns (one transaction, or on SQLite a
/// savepoint in a group commit): the run's row is locked, an ``IngestPlanner`` folds the
/// frames in order and says what to write, and those operations run in order.
protocol ServerStore: Sendable {
    /// `sqlite` or `postgres`.
    var backend: String { get }

    // MARK: Accounts

    /// The user whose key hashes to `keyHash`, and the entities it may write.
    func principal(keyHash: [UInt8]) async throws -> Principal?
    /// Creates the user and the entity when missing (a user entity when they share the name,
    /// a team otherwise), makes the user a member, and returns the user's id.
    func ensureAccount(user: String, entity: String) async throws -> Int64
    func addKey(hash: [UInt8], hint: String, userID: Int64) async throws

    // MARK: Ingest

    /// The highest sequence acknowledged for the run, 0 for a run the server has not seen.
    func acknowledged(_ run: RunKey) async throws -> UInt64
    /// Stores a request's frames atomically (see ``IngestPlanner``), creating the project and
    /// the run if needed, taking each frame from `frames` as it is decoded. A store may commit
    /// several concurrent requests together; each still succeeds or fails as a whole.
    /// - Throws: ``ServerError`` `.badRequest` when a frame does not decode (nothing stored).
    func ingest(_ run: RunKey, after: UInt64, frames: FrameFeed) async throws -> IngestResult

    // MARK: Reads

    func entities() async throws -> [EntityInfo]
    func projects(entity: String) async throws -> [ProjectInfo]
    func runs(entity: String, project: String, filter: RunFilter) async throws -> [RunInfo]
    /// The run with its forks, rewinds and files; with its live metrics (name, points, step
    /// range) too when `metrics` is set, otherwise `metrics` is empty (it is the costlier part:
    /// a store may have history chunks to build first).
    func run(_ key: RunKey, metrics: Bool) async throws -> RunDetail?
    /// The chunks of one metric on one branch that overlap `range`, ordered by first step.
    func chunks(_ key: RunKey, metric: String, branch: UInt32, range: ClosedRange<Int64>) async throws -> [HistoryChunk]
    /// The frames stored for a run with a sequence above `after`, in order (raw bytes).
    func frames(_ key: RunKey, after: UInt64, limit: Int) async throws -> [(sequence: UInt64, bytes: [UInt8])]

    /// Releases connections.
    func close() async
}

extension ServerStore {
    /// The run with everything its page shows, metrics included.
    func run(_ key: RunKey) async throws -> RunDetail? { try await run(key, metrics: true) }
}

/// Opens the store a database string names — a `postgres://` (or `postgresql://`) URL, or
/// a SQLite file path — runs its migrations, calls `body`, and closes it.
func withServerStore<T: Sendable>(
    database: String, logger: Logger, _ body: @Sendable (any ServerStore) async throws -> T
) async throws -> T {
    if database.hasPrefix("postgres://") || database.hasPrefix("postgresql://") {
        return try await PostgresStore.with(url: database, logger: logger, body)
    }
    let store = try await SQLiteStore.open(path: database, logger: logger)
    do {
        let result = try await body(store)
        await store.close()
        return result
    } catch {
        await store.close()
        throw error
    }
}

/// Schema version both backends migrate to.
enum Schema {
    static let version = 1
}

extension MaterializedRun {
    /// The JSON documents stored in the run's row.
    var metadataJSON: String { Value.object(metadata).description }
    var configJSON: String { Value.object(config).description }
    var summaryJSON: String { Value.object(summary).description }
    var tagsJSON: String { Value.array(tags.map { .string($0) }).description }
}

/// A run's row as read from the database, before its JSON documents are parsed.
struct StoredRunRow: Sendable {
    var id: Int64
    var acknowledged: UInt64
    var state: String
    var metadata: String
    var config: String
    var summary: String
    var tags: String
    var forkSource: String?
    var forkProject: String?
    var forkStep: Int64?
    var lastStep: Int64?
    var historyRows: Int64
    var created: Int64
    var updated: Int64

    func materialized(documents: Bool) -> MaterializedRun {
        var m = MaterializedRun()
        m.acknowledged = acknowledged
        m.state = state
        m.lastStep = lastStep
        m.historyRows = historyRows
        if let forkSource {
            m.fork = ForkOrigin(sourceID: forkSource, sourceProject: forkProject, step: forkStep ?? 0, timestamp: 0)
        }
        m.documentsLoaded = documents
        if documents {
            m.metadata = JSONParser.object(metadata)
            m.config = JSONParser.object(config)
            m.summary = JSONParser.object(summary)
            m.tags = JSONParser.stringArray(tags)
        }
        return m
    }
}

/// The current time in µs since the Unix epoch.
func nowMicros() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
}

