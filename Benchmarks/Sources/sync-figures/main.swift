// sync-figures: bulk sync end to end. Creates N runs × S steps of workload W (10 metrics) with
// `LogWriter` in a temp dir, starts an embedded server in this process (RunLogServerApp on
// 127.0.0.1, a free port, SQLite in the temp dir unless --database), syncs every run with
// `SyncEngine` over `HTTPSyncTransport` (as `runlog sync` does), and prints rows/s from the
// start of the sync until every run is acknowledged; then checks the server's row count.
//
//   swift run -c release --package-path Benchmarks sync-figures [--runs 1000] [--steps 10000] [--jobs 4] [--w32]
//                                                              [--database postgres://…] [--keep]
//   Benchmarks/.build/release/sync-figures --runs 200 --steps 10000 --reuse /tmp/dir   # profile the sync alone
//
// Scratch data (≈ 0.65 GB of logs at the defaults, plus the server's database) goes under
// $RUNLOG_BENCH_DIR or the system temp dir and is removed at the end unless --keep.
import BenchCLI
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import AsyncHTTPClient
import Logging
import NIOCore
import RunLogServer
import RunLogStore
import RunLogSync
import StoreScenarios
import Synchronization
import Workload


let args = Array(CommandLine.arguments.dropFirst())

let runs = intOption("--runs", 1000)
let steps = intOption("--steps", 10_000)
let jobs = intOption("--jobs", 4)
let precision: Workload.Precision = args.contains("--w32") ? .w32 : .w64
let keep = args.contains("--keep")
let database = option("--database")
/// --transport null: the SyncEngine against an in-process sink that checks each body's frames
/// (FrameCodec.split: header and payload CRCs) and acknowledges them; no HTTP, no server. The
/// client's share of the end-to-end figure.
let nullTransport = option("--transport") == "null"
/// --transport ahc: the same native protocol over async-http-client (SwiftNIO) instead of
/// HTTPSyncTransport's URLSession (FoundationNetworking, libcurl); to measure the transport's share.
let ahcTransport = option("--transport") == "ahc"
let entity = "bench", project = "bench"

// MARK: 1. The runs.

let scratch: Scratch
let reuse = option("--reuse")
if let reuse {
    // A directory kept by an earlier --keep: its runs/ are synced again into a new database.
    scratch = Scratch(existing: reuse)
} else {
    scratch = try Scratch("sync")
}
let runsDir = scratch.sub("runs")
func runDirectory(_ r: Int) -> String { runsDir + "/" + String(format: "run-%05d", r) }

var createSeconds = 0.0
if reuse == nil {
    say("sync-figures: writing \(runs) runs × \(steps) steps (\(precision)) under \(runsDir) …")
    let t0 = Stopwatch.now
    let failures = Failures()
    // Four writers at a time: each run's open and close wait on fsync, which the CPUs need not.
    let workers = 4
    DispatchQueue.concurrentPerform(iterations: workers) { w in
        var values = [Double](repeating: 0, count: Workload.metricCount)
        var r = w
        while r < runs {
            do {
                let id = String(format: "run-%05d", r)
                let writer = try LogWriter.open(directory: runDirectory(r))
                try writer.append(.runMetadata(RunMetadata(["id": .string(id), "project": .string(project), "entity": .string(entity),
                                                            "name": .string(id)])))
                try writer.append(.config(ConfigChange(values: ["lr": 0.0003, "batch_size": 64, "run": .int(Int64(r))])))
                var g = WorkloadGenerator(steps: steps, seed: Workload.defaultSeed &+ UInt64(r), precision: precision)
                while let step = g.next(into: &values) {
                    try writer.appendRow(step: step, keys: Workload.names, doubles: values)
                }
                try writer.append(.exit(ExitRecord(state: "finished", exitCode: 0, runtime: 1, timestamp: Int64(Date().timeIntervalSince1970 * 1e6))))
                try writer.close()
            } catch {
                failures.add("run \(r): \(error)")
            }
            r += workers
        }
    }
    if let f = failures.first { throw ScenarioError("writing the runs failed: \(f)") }
    createSeconds = Stopwatch.now - t0
}
let localBytes = FileSystemInfo.treeSize(runsDir)
let runDirs = (0..<runs).map(runDirectory)
var frameCount = 0
for d in runDirs { let r = try RunDirectory.reader(d); frameCount += r.frames.count; r.close() }

// MARK: 2. The server, in this process.

let db = database ?? scratch.sub("server-\(UInt32.random(in: 0...UInt32.max)).db")
var serverLogger = Logger(label: "runlog.server")
serverLogger.logLevel = .warning
let apiKey = try await createKey(database: db, entity: entity, logger: serverLogger)
let (portStream, portContinuation) = AsyncStream<Int>.makeStream()
let serverTask = Task {
    do {
        try await RunLogServerApp.run(configuration: ServerConfiguration(host: "127.0.0.1", port: 0, database: db, logger: serverLogger)) { port in
            portContinuation.yield(port)
        }
    } catch {
        say("sync-figures: the server stopped: \(error)")
        portContinuation.finish()
    }
}
func firstPort(_ stream: AsyncStream<Int>) async -> Int? {
    for await p in stream { return p }
    return nil
}
guard let port = await firstPort(portStream) else { throw ScenarioError("the embedded server did not start") }
let base = "http://127.0.0.1:\(port)"
say("sync-figures: server on \(base) (\(database == nil ? "SQLite \(db)" : "PostgreSQL")); syncing with \(jobs) jobs …")

// MARK: 3. The sync, timed.

let syncJobs = (0..<runs).map { r in
    SyncJob(directory: runDirectory(r), remote: RemoteRun(entity: entity, project: project, id: String(format: "run-%05d", r)))
}
let transport: any SyncTransport = nullTransport ? NullTransport() as any SyncTransport
    : ahcTransport ? AHCTransport(base: base, apiKey: apiKey) as any SyncTransport : HTTPSyncTransport(baseURL: URL(string: base)!, apiKey: apiKey)
let engine = SyncEngine(transport: transport, serverKey: nullTransport ? "null-\(UInt32.random(in: 0...UInt32.max))" : base, concurrency: jobs)
let counters = Failures()
let cpu0 = Stopwatch.processCPU
let t0 = Stopwatch.now
let report = await engine.sync(syncJobs) { event in
    if case .retrying(let job, let attempt, _, let message) = event { counters.add("retry \(attempt) \(job.remote): \(message)") }
}
let syncSeconds = Stopwatch.now - t0
let syncCPU = Stopwatch.processCPU - cpu0
for (job, message) in report.failed.prefix(5) { say("sync-figures: \(job.remote) failed: \(message)") }

// MARK: 4. What the server holds.

struct Listing { var runs = 0; var rows: Int64 = 0; var acknowledged = 0 }
func serverListing() async throws -> Listing {
    var request = URLRequest(url: URL(string: base + "/api/v1/projects/\(entity)/\(project)/runs")!)
    request.setValue("Bearer \(apiKey)", forHTTPHeaderField: "Authorization")
    let (data, response) = try await URLSession.shared.data(for: request)
    guard (response as? HTTPURLResponse)?.statusCode == 200, let list = try JSONSerialization.jsonObject(with: data) as? [[String: Any]] else {
        throw ScenarioError("listing the server's runs failed: \(String(decoding: data.prefix(300), as: UTF8.self))")
    }
    var l = Listing()
    for run in list {
        l.runs += 1
        l.rows += (run["history_rows"] as? NSNumber)?.int64Value ?? 0
        if ((run["acknowledged"] as? NSNumber)?.intValue ?? 0) > 0 { l.acknowledged += 1 }
    }
    return l
}
let listing = nullTransport ? Listing(runs: runs, rows: Int64(runs) * Int64(steps), acknowledged: runs) : try await serverListing()
let expectedRows = Int64(runs) * Int64(steps)

/// The SQLite store builds a run's chart chunks from its frames when the run is first read:
/// the first and second read of a sample of runs (the run's page: every metric's points),
/// each checked to hold every step of every metric.
struct FirstReads { var first: [Double] = []; var second: [Double] = []; var complete = true }
func firstReads(sample: Int) async throws -> FirstReads {
    var r = FirstReads()
    for i in 0..<sample {
        let id = String(format: "run-%05d", i * max(1, runs / sample))
        var request = URLRequest(url: URL(string: base + "/api/v1/runs/\(entity)/\(project)/\(id)")!)
        request.setValue("Bearer \(apiKey)", forHTTPHeaderField: "Authorization")
        for pass in 0..<2 {
            let t = Stopwatch.now
            let (data, _) = try await URLSession.shared.data(for: request)
            let seconds = Stopwatch.now - t
            if pass == 0 { r.first.append(seconds) } else { r.second.append(seconds) }
            let metrics = ((try? JSONSerialization.jsonObject(with: data)) as? [String: Any])?["metrics"] as? [[String: Any]] ?? []
            let counts = Dictionary(metrics.map { ($0["name"] as? String ?? "", ($0["count"] as? NSNumber)?.intValue ?? 0) }) { a, _ in a }
            r.complete = r.complete && Workload.names.allSatisfy { counts[$0] == steps }
        }
    }
    return r
}
let reads = nullTransport ? FirstReads() : try await firstReads(sample: min(runs, 20))
let verified = listing.runs == runs && listing.rows == expectedRows && report.failed.isEmpty && reads.complete
let dbBytes = database == nil ? FileSystemInfo.size(db) + FileSystemInfo.size(db + "-wal") : 0

// The server task is left running: exit() below ends it (cancelling it makes Hummingbird log errors).
_ = serverTask
if keep || reuse != nil {
    say("sync-figures: kept \(scratch.path) (rerun the sync alone with --reuse \(scratch.path) --runs \(runs) --steps \(steps))")
    if reuse != nil { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: db + suffix) } }
} else {
    scratch.remove()
}

// MARK: 5. The table.

let rowsPerSecond = Double(expectedRows) / syncSeconds
var command = "swift run -c release --package-path Benchmarks sync-figures"
if runs != 1000 { command += " --runs \(runs)" }
if steps != 10_000 { command += " --steps \(steps)" }
if jobs != 4 { command += " --jobs \(jobs)" }
if precision == .w32 { command += " --w32" }
if database != nil { command += " --database postgres://…" }
if nullTransport { command += " --transport null" }
if ahcTransport { command += " --transport ahc" }
out("""
Bulk sync, workload W (10 metrics, \(precision)): \(runs) runs × \(steps) steps written with LogWriter (defaults), synced with SyncEngine \
(\(jobs) jobs, \(nullTransport ? "no transport: an in-process sink" : ahcTransport ? "async-http-client transport (benchmark's own)" : "HTTPSyncTransport")) to an embedded server (\(database == nil ? "SQLite" : "PostgreSQL")) on loopback, one process, \
\(ProcessInfo.processInfo.activeProcessorCount) cores, release build.

| figure | measured | target | met | command |
|---|---|---|---|---|
| sync end to end: \(expectedRows) rows, start of sync → every run acknowledged | \(rate(rowsPerSecond)) rows/s (\(String(format: "%.2f", syncSeconds)) s) | ≥ 1 M rows/s | \(rowsPerSecond >= 1e6 ? "yes" : "**no**") | `\(command)` |
| … bytes sent (frames as stored) | \(mib(UInt64(report.bytes))) (\(String(format: "%.1f", Double(report.bytes) / 1048576 / syncSeconds)) MiB/s, \(frameCount) frames) |  |  | `\(command)` |
| … process CPU during the sync (client + server, all threads) | \(String(format: "%.2f", syncCPU)) CPU-s (\(String(format: "%.2f", syncCPU / syncSeconds)) cores busy; \(String(format: "%.0f", syncCPU / Double(expectedRows) * 1e9)) ns/row) |  |  | `\(command)` |
| \(nullTransport ? "(--transport null: no server; rows not counted)" : "server's row count after the sync (history_rows summed over the project's runs)") | \(listing.rows) rows in \(listing.runs) runs (expected \(expectedRows) in \(runs)); \(report.finished.count) finished, \(report.failed.count) failed | all rows | \(verified ? "yes" : "**no**") | `\(command)` |
\(nullTransport ? "" : "| first read of a run after the sync (its page, every metric; builds its chart chunks from the stored frames), median of \(reads.first.count) runs / second read | \(ms(median(reads.first))) / \(ms(median(reads.second))); every metric has all \(steps) points: \(reads.complete ? "yes" : "**no**") |  |  | `\(command)` |\n")\
| local logs written (\(reuse == nil ? String(format: "%.1f s", createSeconds) : "reused")) | \(mib(localBytes)) (\(String(format: "%.2f", Double(localBytes) / Double(expectedRows))) bytes/row) |  |  | `\(command)` |

""" + (database == nil ? "| server database after the sync (SQLite file + WAL) | \(mib(dbBytes)) |  |  | `\(command)` |\n" : ""))
if let f = counters.first { say("sync-figures: retries happened, first: \(f)") }
exit(verified ? 0 : 1)

/// A sink for the SyncEngine: checks the frames and acknowledges the last one (no HTTP, no storage).
final class NullTransport: SyncTransport, @unchecked Sendable {
    private let acks = Mutex<[RemoteRun: UInt64]>([:])
    func acknowledged(_ run: RemoteRun) async throws(TransportError) -> UInt64 {
        acks.withLock { $0[run] ?? 0 }
    }
    func send(_ run: RemoteRun, after: UInt64, frames: [UInt8]) async throws(TransportError) -> SendOutcome {
        let split: [FrameCodec.StoredFrame]
        do { split = try FrameCodec.split(frames) } catch { throw TransportError(retryable: false, message: "\(error)") }
        let ack = split.last?.header.sequence ?? after
        acks.withLock { $0[run] = ack }
        return .stored(acknowledged: ack)
    }
}

/// The native protocol (PROTOCOL.md) over async-http-client, as HTTPSyncTransport speaks it over URLSession.
struct AHCTransport: SyncTransport {
    let base: String
    let apiKey: String
    let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(timeout: .init(connect: .seconds(10), read: .seconds(60))))

    private func url(_ run: RemoteRun, _ tail: String) -> String { base + "/api/v1/runs/\(run.entity)/\(run.project)/\(run.id)/\(tail)" }

    private func perform(_ request: HTTPClientRequest) async throws(TransportError) -> (Int, [UInt8]) {
        do {
            let response = try await client.execute(request, timeout: .seconds(60))
            let body = try await response.body.collect(upTo: 1 << 20)
            return (Int(response.status.code), Array(body.readableBytesView))
        } catch {
            throw TransportError(retryable: true, message: "\(error)")
        }
    }

    private static func ack(_ body: [UInt8]) throws(TransportError) -> UInt64 {
        guard let o = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any], let n = o["acknowledged"] as? NSNumber else {
            throw TransportError(retryable: true, message: "no acknowledged sequence in \(String(decoding: body.prefix(200), as: UTF8.self))")
        }
        return n.uint64Value
    }

    func acknowledged(_ run: RemoteRun) async throws(TransportError) -> UInt64 {
        var request = HTTPClientRequest(url: url(run, "ack"))
        request.headers.add(name: "Authorization", value: "Bearer \(apiKey)")
        let (status, body) = try await perform(request)
        guard status == 200 else { throw TransportError(retryable: status == 429 || status >= 500, status: status, message: String(decoding: body, as: UTF8.self)) }
        return try Self.ack(body)
    }

    func send(_ run: RemoteRun, after: UInt64, frames: [UInt8]) async throws(TransportError) -> SendOutcome {
        var request = HTTPClientRequest(url: url(run, "frames"))
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(apiKey)")
        request.headers.add(name: "Content-Type", value: "application/x-runlog-frames")
        request.headers.add(name: "X-RunLog-After", value: String(after))
        request.body = .bytes(ByteBuffer(bytes: frames))
        let (status, body) = try await perform(request)
        switch status {
        case 200: return .stored(acknowledged: try Self.ack(body))
        case 409: return .conflict(acknowledged: try Self.ack(body))
        default: throw TransportError(retryable: status == 429 || status >= 500, status: status, message: String(decoding: body, as: UTF8.self))
        }
    }
}

/// Collects messages from several threads.
final class Failures: @unchecked Sendable {
    private let lock = NSLock()
    private var messages: [String] = []
    func add(_ m: String) { lock.lock(); messages.append(m); lock.unlock() }
    var first: String? { lock.lock(); defer { lock.unlock() }; return messages.first }
}
