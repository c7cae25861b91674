import CSQLite
import Foundation

/// A thin wrapper over one `sqlite3` connection: prepared statements cached by SQL text,
/// values bound by position, transactions. Used from one thread only (its owner's
/// ``DedicatedThreadExecutor``), so it opens the connection with `SQLITE_OPEN_NOMUTEX`.
final class SQLiteConnection {
    let handle: OpaquePointer
    let path: String
    private var cache: [String: OpaquePointer] = [:]

    enum Bind {
        case int(Int64)
        case double(Double)
        case text(String)
        case blob([UInt8])
        case null

        static func optional(_ s: String?) -> Bind { s.map { .text($0) } ?? .null }
        static func optional(_ i: Int64?) -> Bind { i.map { .int($0) } ?? .null }
        static func optional(_ d: Double?) -> Bind { d.map { .double($0) } ?? .null }
    }

    init(path: String, readOnly: Bool = false) throws(ServerError) {
        var db: OpaquePointer?
        // A read-only connection to a WAL database still needs to write its shared-memory
        // index, so readers open read-write and set `query_only`.
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            if let db { sqlite3_close_v2(db) }
            throw ServerError(.storage, "cannot open SQLite database \(path): \(message)")
        }
        handle = db
        self.path = path
        sqlite3_busy_timeout(db, 10_000)
        sqlite3_extended_result_codes(db, 1)
        if readOnly { sqlite3_exec(db, "PRAGMA query_only = 1", nil, nil, nil) }
    }

    deinit {
        for (_, s) in cache { sqlite3_finalize(s) }
        sqlite3_close_v2(handle)
    }

    func error(_ what: String, _ rc: Int32) -> ServerError {
        ServerError(.storage, "SQLite \(what) failed (\(rc)): \(String(cString: sqlite3_errmsg(handle)))")
    }

    /// Runs one or more statements with no parameters and no results.
    func exec(_ sql: String) throws(ServerError) {
        var message: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &message)
        if rc != SQLITE_OK {
            let text = message.map { String(cString: $0) } ?? ""
            sqlite3_free(message)
            throw ServerError(.storage, "SQLite: \(text) (\(rc)) in: \(sql.prefix(120))")
        }
    }

    private func statement(_ sql: String) throws(ServerError) -> OpaquePointer {
        if let s = cache[sql] { return s }
        var s: OpaquePointer?
        let rc = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &s, nil)
        guard rc == SQLITE_OK, let s else { throw error("prepare of \(sql.prefix(80))", rc) }
        cache[sql] = s
        return s
    }

    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    private func bind(_ s: OpaquePointer, _ values: [Bind]) throws(ServerError) {
        for (i, v) in values.enumerated() {
            let n = Int32(i + 1)
            let rc: Int32
            switch v {
            case .int(let x): rc = sqlite3_bind_int64(s, n, x)
            case .double(let d): rc = sqlite3_bind_double(s, n, d)
            case .text(let t): rc = sqlite3_bind_text(s, n, t, -1, Self.transient)
            case .blob(let b):
                rc = b.withUnsafeBytes { p in
                    sqlite3_bind_blob64(s, n, p.baseAddress ?? UnsafeRawPointer(bitPattern: 1), sqlite3_uint64(p.count), Self.transient)
                }
            case .null: rc = sqlite3_bind_null(s, n)
            }
            guard rc == SQLITE_OK else { throw error("bind", rc) }
        }
    }

    /// Runs a statement that returns no rows; returns the number of rows it changed.
    @discardableResult
    func run(_ sql: String, _ values: [Bind] = []) throws(ServerError) -> Int {
        let s = try statement(sql)
        defer { sqlite3_reset(s); sqlite3_clear_bindings(s) }
        try bind(s, values)
        let rc = sqlite3_step(s)
        guard rc == SQLITE_DONE || rc == SQLITE_ROW else { throw error("step of \(sql.prefix(80))", rc) }
        return Int(sqlite3_changes(handle))
    }

    /// Runs a query and maps each row.
    func query<T>(_ sql: String, _ values: [Bind] = [], _ row: (Row) throws(ServerError) -> T) throws(ServerError) -> [T] {
        let s = try statement(sql)
        defer { sqlite3_reset(s); sqlite3_clear_bindings(s) }
        try bind(s, values)
        var out: [T] = []
        while true {
            let rc = sqlite3_step(s)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw error("step of \(sql.prefix(80))", rc) }
            out.append(try row(Row(s: s)))
        }
        return out
    }

    func first<T>(_ sql: String, _ values: [Bind] = [], _ row: (Row) throws(ServerError) -> T) throws(ServerError) -> T? {
        try query(sql, values, row).first
    }

    var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle) }

    /// Copies the WAL into the database file: `PASSIVE` (as far as it can without waiting
    /// for the writer or readers), or `TRUNCATE` (all of it, then empties the WAL).
    func checkpoint(passive: Bool) throws(ServerError) {
        var log: Int32 = 0, done: Int32 = 0
        let rc = sqlite3_wal_checkpoint_v2(handle, nil, passive ? SQLITE_CHECKPOINT_PASSIVE : SQLITE_CHECKPOINT_TRUNCATE, &log, &done)
        guard rc == SQLITE_OK || rc == SQLITE_BUSY else { throw error("checkpoint", rc) }
    }

    /// Runs `body` in a transaction: committed when it returns, rolled back when it throws.
    func transaction<T>(immediate: Bool = true, _ body: () throws -> T) throws -> T {
        try exec(immediate ? "BEGIN IMMEDIATE" : "BEGIN")
        do {
            let result = try body()
            try exec("COMMIT")
            return result
        } catch {
            try? exec("ROLLBACK")
            throw error
        }
    }

    struct Row {
        let s: OpaquePointer
        func int(_ i: Int32) -> Int64 { sqlite3_column_int64(s, i) }
        func isNull(_ i: Int32) -> Bool { sqlite3_column_type(s, i) == SQLITE_NULL }
        func optionalInt(_ i: Int32) -> Int64? { isNull(i) ? nil : int(i) }
        func double(_ i: Int32) -> Double { sqlite3_column_double(s, i) }
        func optionalDouble(_ i: Int32) -> Double? { isNull(i) ? nil : double(i) }
        func text(_ i: Int32) -> String {
            guard let p = sqlite3_column_text(s, i) else { return "" }
            let n = Int(sqlite3_column_bytes(s, i))
            return String(decoding: UnsafeBufferPointer(start: p, count: n), as: UTF8.self)
        }
        func optionalText(_ i: Int32) -> String? { isNull(i) ? nil : text(i) }
        func blob(_ i: Int32) -> [UInt8] {
            let n = Int(sqlite3_column_bytes(s, i))
            guard n > 0, let p = sqlite3_column_blob(s, i) else { return [] }
            return [UInt8](UnsafeRawBufferPointer(start: p, count: n))
        }
    }
}

/// A serial executor that runs its jobs on one dedicated OS thread, so that an actor using
/// it keeps blocking SQLite calls off Swift's cooperative pool (and on one thread, as a
/// `SQLITE_OPEN_NOMUTEX` connection requires).
final class DedicatedThreadExecutor: SerialExecutor, @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var stopping = false
    private var thread: Thread?

    init(name: String) {
        let t = Thread { [unowned self] in self.loop() }
        t.name = name
        t.stackSize = 4 << 20
        thread = t
        t.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let j = UnownedJob(job)
        condition.lock()
        jobs.append(j)
        condition.signal()
        condition.unlock()
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor { UnownedSerialExecutor(ordinary: self) }

    /// Ends the thread once the queued jobs have run.
    func shutdown() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while jobs.isEmpty && !stopping { condition.wait() }
            if jobs.isEmpty && stopping {
                condition.unlock()
                return
            }
            let batch = jobs
            jobs.removeAll(keepingCapacity: true)
            condition.unlock()
            for j in batch { j.runSynchronously(on: asUnownedSerialExecutor()) }
        }
    }
}

/// One SQLite connection owned by an actor whose jobs run on the connection's own thread.
actor SQLiteWorker {
    private let executor: DedicatedThreadExecutor
    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
    private var connection: SQLiteConnection?
    private let path: String
    private let readOnly: Bool

    init(name: String, path: String, readOnly: Bool) {
        executor = DedicatedThreadExecutor(name: name)
        self.path = path
        self.readOnly = readOnly
    }

    /// Runs `body` with the connection, on the worker's thread.
    func perform<T: Sendable>(_ body: @Sendable (SQLiteConnection) throws -> T) throws -> T {
        if connection == nil { connection = try SQLiteConnection(path: path, readOnly: readOnly) }
        return try body(connection!)
    }

    /// Closes the connection and ends the thread.
    func close() {
        connection = nil
        executor.shutdown()
    }
}
