import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import RunLogStore
import Testing

@testable import RunLogServer

/// The storage backends the behaviour suite runs against. PostgreSQL cases need
/// `RUNLOG_TEST_POSTGRES_URL` (`.ci/run` sets it); without it they are cancelled, which the
/// test report shows as skipped, with the reason.
enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgres

    var testDescription: String { rawValue }

    static var postgresURL: String? {
        guard let url = ProcessInfo.processInfo.environment["RUNLOG_TEST_POSTGRES_URL"], !url.isEmpty else { return nil }
        return url
    }

    static let skipMessage: Comment = "RUNLOG_TEST_POSTGRES_URL is not set: PostgreSQL cases skipped (.ci/run starts PostgreSQL and sets it)"

    /// The database for a test in `dir`; cancels (skips) the test case for PostgreSQL without a URL.
    func database(in dir: TempDir) throws -> String {
        switch self {
        case .sqlite: return dir.path + "/server.db"
        case .postgres:
            guard let url = Self.postgresURL else { try Test.cancel(Self.skipMessage) }
            return url
        }
    }
}

/// A temporary directory removed when the value goes away.
final class TempDir: Sendable {
    let path: String
    init() {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("runlog-server-tests-\(UUID().uuidString)").path
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

func testLogger() -> Logger {
    var l = Logger(label: "runlog.server.tests")
    l.logLevel = .warning
    return l
}

/// A short random suffix, so tests sharing one PostgreSQL database do not see each other's rows.
func unique(_ prefix: String) -> String { "\(prefix)-\(String(UInt64.random(in: 0..<UInt64.max), radix: 36))" }

/// An account made for a test: an entity and a key that may write it.
struct Account: Sendable {
    var entity: String
    var key: String
}

func makeAccount(_ store: any ServerStore, entity: String? = nil, user: String? = nil) async throws -> Account {
    let entity = entity ?? unique("ent")
    let userID = try await store.ensureAccount(user: user ?? entity, entity: entity)
    let key = APIKey.generate()
    try await store.addKey(hash: APIKey.hash(key), hint: APIKey.hint(key), userID: userID)
    return Account(entity: entity, key: key)
}

/// What a behaviour test gets: the store, two accounts, and a client for an application
/// over the store.
struct Fixture: Sendable {
    var store: any ServerStore
    var account: Account
    var other: Account
    var backend: Backend
}

/// Opens a store for `backend`, makes two accounts, builds the application and runs `body`
/// with HummingbirdTesting's router client (no sockets).
func withFixture<T: Sendable>(
    _ backend: Backend, publicRead: Bool = false, maxRequestBytes: Int = ServerConfiguration.defaultMaxRequestBytes,
    testing: TestingSetup = .router,
    _ body: @escaping @Sendable (Fixture, any TestClientProtocol) async throws -> T
) async throws -> T {
    let dir = TempDir()
    let database = try backend.database(in: dir)
    return try await withServerStore(database: database, logger: testLogger()) { store in
        let fixture = Fixture(store: store, account: try await makeAccount(store), other: try await makeAccount(store), backend: backend)
        var configuration = ServerConfiguration(
            host: "127.0.0.1", port: 0, database: database, publicRead: publicRead, maxRequestBytes: maxRequestBytes, logger: testLogger())
        configuration.filesDirectory = dir.path + "/files"
        let app = RunLogServerApp.makeApplication(store: store, configuration: configuration)
        let result = try await app.test(testing) { client in try await body(fixture, client) }
        _ = dir
        return result
    }
}

// MARK: Frames

enum Frames {
    /// One frame holding `records`.
    static func frame(_ records: [Record], seq: UInt64) -> FrameCodec.StoredFrame {
        try! FrameCodec.encode(records, sequence: seq)
    }

    /// History rows for `steps`, `loss` = f(step), `acc` = g(step).
    static func rows(_ steps: Range<Int64>, loss: (Int64) -> Double = { 1.0 / Double($0 + 1) }, extra: [String: Value] = [:]) -> [Record] {
        steps.map { s in
            var values: [String: Value] = ["loss": .double(loss(s)), "acc": .double(Double(s) / 1000)]
            for (k, v) in extra { values[k] = v }
            return .history(HistoryRow(step: s, timestamp: 1_700_000_000_000_000 + s * 1000, values: values))
        }
    }

    /// `count` frames of `rowsPerFrame` rows each, sequences 1…count; the first also holds
    /// the run's metadata and config.
    static func run(id: String, count: Int, rowsPerFrame: Int64, firstSeq: UInt64 = 1) -> [FrameCodec.StoredFrame] {
        (0..<count).map { i in
            var records: [Record] = []
            if i == 0 {
                records.append(.runMetadata(RunMetadata(["id": .string(id), "name": .string("run \(id)")])))
                records.append(.config(ConfigChange(values: ["lr": 0.01])))
            }
            let start = Int64(i) * rowsPerFrame
            records += rows(start..<start + rowsPerFrame)
            return frame(records, seq: firstSeq + UInt64(i))
        }
    }

    static func body(_ frames: [FrameCodec.StoredFrame]) -> ByteBuffer { ByteBuffer(bytes: frames.flatMap(\.bytes)) }
    static func body(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }
}

// MARK: Requests

func authHeaders(_ key: String?, after: UInt64? = nil) -> HTTPFields {
    var h: HTTPFields = [:]
    if let key { h[.authorization] = "Bearer \(key)" }
    if let after { h[HTTPField.Name("X-RunLog-After")!] = String(after) }
    h[.contentType] = "application/x-runlog-frames"
    return h
}

func runPath(_ entity: String, _ project: String, _ run: String) -> String { "/api/v1/runs/\(entity)/\(project)/\(run)" }

@discardableResult
func post(
    _ client: any TestClientProtocol, _ entity: String, _ project: String = "proj", _ run: String, after: UInt64?, key: String?,
    _ body: ByteBuffer
) async throws -> TestResponse {
    try await client.execute(uri: runPath(entity, project, run) + "/frames", method: .post, headers: authHeaders(key, after: after), body: body)
}

@discardableResult
func post(
    _ client: any TestClientProtocol, _ fx: Fixture, _ run: String, project: String = "proj", after: UInt64, _ frames: [FrameCodec.StoredFrame]
) async throws -> TestResponse {
    try await post(client, fx.account.entity, project, run, after: after, key: fx.account.key, Frames.body(frames))
}

func get(_ client: any TestClientProtocol, _ uri: String, key: String?) async throws -> TestResponse {
    var h: HTTPFields = [:]
    if let key { h[.authorization] = "Bearer \(key)" }
    return try await client.execute(uri: uri, method: .get, headers: h)
}

/// The response body parsed as JSON.
func json(_ r: TestResponse) throws -> Value {
    try JSONParser.parse(String(buffer: r.body))
}

extension Value {
    subscript(index: Int) -> Value? {
        if case .array(let a) = self, index < a.count { return a[index] }
        return nil
    }
    var count: Int { arrayValue?.count ?? objectValue?.count ?? 0 }
    var doubles: [Double] { (arrayValue ?? []).map { $0.doubleValue ?? .nan } }
    var int64s: [Int64] { (arrayValue ?? []).compactMap { $0.intValue } }
}

func runJSON(_ client: any TestClientProtocol, _ fx: Fixture, _ run: String, project: String = "proj") async throws -> Value {
    let r = try await get(client, runPath(fx.account.entity, project, run), key: fx.account.key)
    #expect(r.status == .ok, "GET run \(run): \(String(buffer: r.body))")
    return try json(r)
}

func history(
    _ client: any TestClientProtocol, _ fx: Fixture, _ run: String, project: String = "proj", metrics: String = "loss", query: String = ""
) async throws -> Value {
    let r = try await get(client, runPath(fx.account.entity, project, run) + "/history?metrics=\(metrics)\(query)", key: fx.account.key)
    #expect(r.status == .ok, "GET history: \(String(buffer: r.body))")
    return try json(r)
}
