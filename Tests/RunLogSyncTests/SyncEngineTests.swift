import Foundation
import Synchronization
import Testing
import RunLogStore
@testable import RunLogSync

/// An in-memory server that follows the native protocol's rules, and fails on purpose.
actor FakeServer: SyncTransport {
    var acked: [RemoteRun: UInt64] = [:]
    var stored: [RemoteRun: [UInt64]] = [:]
    var rows: [RemoteRun: [Int64]] = [:]
    var failureRate: Double
    var rng: SystemRandomNumberGenerator = .init()
    var requests = 0
    var forbidden: Set<String> = []
    var order: [String] = []

    init(failureRate: Double = 0) { self.failureRate = failureRate }

    func setForbidden(_ ids: Set<String>) { forbidden = ids }

    nonisolated func acknowledged(_ run: RemoteRun) async throws(TransportError) -> UInt64 {
        try await ack(run)
    }

    private func ack(_ run: RemoteRun) throws(TransportError) -> UInt64 {
        requests += 1
        if Double.random(in: 0..<1) < failureRate { throw TransportError(retryable: true, status: 503, message: "injected") }
        return acked[run] ?? 0
    }

    nonisolated func send(_ run: RemoteRun, after: UInt64, frames: [UInt8]) async throws(TransportError) -> SendOutcome {
        try await receive(run, after: after, frames: frames)
    }

    private func receive(_ run: RemoteRun, after: UInt64, frames: [UInt8]) throws(TransportError) -> SendOutcome {
        requests += 1
        if forbidden.contains(run.id) { throw TransportError(retryable: false, status: 403, message: "forbidden") }
        let roll = Double.random(in: 0..<1)
        if roll < failureRate / 2 { throw TransportError(retryable: true, status: 503, message: "injected before storing") }
        let current = acked[run] ?? 0
        guard after <= current else { return .conflict(acknowledged: current) }
        let split: [FrameCodec.StoredFrame]
        do { split = try FrameCodec.split(frames) } catch { throw TransportError(retryable: false, status: 400, message: "\(error)") }
        if stored[run] == nil { order.append(run.id) }
        for f in split where f.header.sequence > (acked[run] ?? 0) {
            stored[run, default: []].append(f.header.sequence)
            for case .history(let row) in (try? FrameCodec.records(of: f)) ?? [] { rows[run, default: []].append(row.step) }
            acked[run] = f.header.sequence
        }
        // Stored, but the answer is lost: the client must cope by asking again.
        if roll < failureRate { throw TransportError(retryable: true, status: 502, message: "injected after storing") }
        return .stored(acknowledged: acked[run] ?? 0)
    }
}

@Suite struct SyncEngineTests {
    /// Writes `count` runs of `steps` rows each, in frames of `rowsPerFrame`.
    func makeRuns(_ root: String, count: Int, steps: Int, rowsPerFrame: Int) throws -> [SyncJob] {
        var jobs: [SyncJob] = []
        for r in 0..<count {
            let dir = root + "/run\(r)"
            var c = LogWriter.Configuration()
            c.flushInterval = .seconds(3600)
            c.maxFrameRows = rowsPerFrame
            let w = try LogWriter.open(directory: dir, configuration: c)
            try w.append(.runMetadata(RunMetadata(["id": .string("run\(r)"), "project": "p"])))
            for s in 0..<steps { try w.appendRow(step: Int64(s), values: ["x": .double(Double(s))]) }
            try w.close()
            jobs.append(try RunDiscovery.job(for: dir, defaultEntity: "e"))
        }
        return jobs
    }

    func tempDir() -> String {
        let d = NSTemporaryDirectory() + "runlog-sync-" + UUID().uuidString.prefix(8)
        try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    func fastConfig() -> RunSyncMachine.Configuration {
        var c = RunSyncMachine.Configuration()
        c.initialBackoff = 0.001
        c.maxBackoff = 0.01
        c.maxAttempts = 200
        c.batchFrames = 3
        return c
    }

    @Test func everyRowArrivesExactlyOnceDespiteFailures() async throws {
        let root = tempDir()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let jobs = try makeRuns(root, count: 12, steps: 500, rowsPerFrame: 37)
        let server = FakeServer(failureRate: 0.3)
        let engine = SyncEngine(transport: server, serverKey: "fake", configuration: fastConfig(), concurrency: 4)
        let report = await engine.sync(jobs)
        #expect(report.failed.isEmpty)
        #expect(report.finished.count == 12)
        for job in jobs {
            let rows = await server.rows[job.remote] ?? []
            #expect(rows == Array(0..<500), "run \(job.remote.id)")
            #expect(SyncCursor.load(directory: job.directory, server: "fake", run: job.remote) == (try RunDirectory.reader(job.directory)).frames.last!.header.sequence)
        }
    }

    /// Cursors of several servers and runs share one file; each save keeps the others, and a
    /// file as `JSONSerialization` wrote it (before this format was written by hand) still reads.
    @Test func cursorsOfSeveralServersShareTheFile() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = RemoteRun(entity: "e", project: "p", id: "a"), b = RemoteRun(entity: "e", project: "p \"q\"", id: "b")
        #expect(SyncCursor.load(directory: dir, server: "http://one", run: a) == 0)
        try SyncCursor.save(directory: dir, server: "http://one", run: a, acknowledged: 7)
        try SyncCursor.save(directory: dir, server: "http://two", run: b, acknowledged: 1 << 40)
        try SyncCursor.save(directory: dir, server: "http://one", run: a, acknowledged: 9)
        #expect(SyncCursor.load(directory: dir, server: "http://one", run: a) == 9)
        #expect(SyncCursor.load(directory: dir, server: "http://two", run: b) == 1 << 40)
        #expect(SyncCursor.load(directory: dir, server: "http://two", run: a) == 0)
        #expect(SyncCursor.all(dir).count == 2)
        try Data(#"{ "http://old#e/p/a" : 12 , "junk": "x" }"#.utf8).write(to: URL(fileURLWithPath: dir + "/" + SyncCursor.fileName))
        #expect(SyncCursor.all(dir) == ["http://old#e/p/a": 12])
        try Data("not json".utf8).write(to: URL(fileURLWithPath: dir + "/" + SyncCursor.fileName))
        #expect(SyncCursor.all(dir).isEmpty)
    }

    @Test func aSecondSyncSendsNothing() async throws {
        let root = tempDir()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let jobs = try makeRuns(root, count: 3, steps: 100, rowsPerFrame: 10)
        let server = FakeServer()
        let engine = SyncEngine(transport: server, serverKey: "fake", configuration: fastConfig())
        _ = await engine.sync(jobs)
        let before = await server.requests
        let again = await engine.sync(jobs)
        #expect(again.bytes == 0)
        #expect(await server.requests - before == 3)  // one acknowledgement question per run
    }

    @Test func twoEnginesAtOnceDuplicateNothing() async throws {
        let root = tempDir()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let jobs = try makeRuns(root, count: 6, steps: 300, rowsPerFrame: 20)
        let server = FakeServer(failureRate: 0.1)
        let a = SyncEngine(transport: server, serverKey: "fake", configuration: fastConfig(), concurrency: 3)
        let b = SyncEngine(transport: server, serverKey: "fake", configuration: fastConfig(), concurrency: 3)
        async let ra = a.sync(jobs)
        async let rb = b.sync(jobs.reversed())
        let (x, y) = await (ra, rb)
        #expect(x.failed.isEmpty && y.failed.isEmpty)
        for job in jobs { #expect(await server.rows[job.remote] == Array(0..<300)) }
    }

    @Test func aFailingRunIsReportedAndTheOthersGoOn() async throws {
        let root = tempDir()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let jobs = try makeRuns(root, count: 4, steps: 50, rowsPerFrame: 10)
        let server = FakeServer()
        await server.setForbidden(["run2"])
        let report = await SyncEngine(transport: server, serverKey: "fake", configuration: fastConfig()).sync(jobs)
        #expect(report.failed.map(\.0.remote.id) == ["run2"])
        #expect(report.finished.count == 3)
    }

    @Test func forkParentsGoBeforeTheirChildren() async throws {
        let root = tempDir()
        defer { try? FileManager.default.removeItem(atPath: root) }
        var jobs = try makeRuns(root, count: 1, steps: 100, rowsPerFrame: 10)
        try RunDirectory.fork(source: jobs[0].directory, atStep: 50, to: root + "/child", metadata: RunMetadata(["id": "child", "project": "p"]))
        try RunDirectory.fork(source: root + "/child", atStep: 20, to: root + "/grandchild", metadata: RunMetadata(["id": "grandchild", "project": "p"]))
        jobs = [try RunDiscovery.job(for: root + "/grandchild", defaultEntity: "e"), try RunDiscovery.job(for: root + "/child", defaultEntity: "e")] + jobs
        #expect(jobs[0].parentID == "child")
        let server = FakeServer()
        let report = await SyncEngine(transport: server, serverKey: "fake", configuration: fastConfig(), concurrency: 4).sync(jobs)
        #expect(report.failed.isEmpty)
        #expect(await server.order == ["run0", "child", "grandchild"])
        #expect(await server.rows[jobs[0].remote] == Array(0...20))
    }

    /// Jobs that arrive as a stream (wandb runs are synced as they are folded): a child that
    /// arrives before its expected parent waits for it, and one whose parent never comes
    /// still syncs when the stream ends.
    @Test func streamedChildrenWaitForExpectedParents() async throws {
        let root = tempDir()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let parents = try makeRuns(root, count: 1, steps: 100, rowsPerFrame: 10)
        try RunDirectory.fork(source: parents[0].directory, atStep: 50, to: root + "/child", metadata: RunMetadata(["id": "child", "project": "p"]))
        let child = try RunDiscovery.job(for: root + "/child", defaultEntity: "e")
        #expect(child.parentID == "run0")
        var orphan = child
        orphan.remote.id = "orphan"
        orphan.parentID = "never"
        let server = FakeServer()
        let engine = SyncEngine(transport: server, serverKey: "fake", configuration: fastConfig(), concurrency: 4)
        let (stream, arrive) = AsyncStream.makeStream(of: SyncJob.self)
        arrive.yield(child)
        arrive.yield(orphan)
        let syncing = Task { await engine.sync(stream, expected: ["run0", "never"]) }
        try await Task.sleep(for: .milliseconds(200))
        #expect(await server.order.isEmpty, "the child waits for run0, the orphan for the end of the stream")
        arrive.yield(parents[0])
        arrive.finish()
        let report = await syncing.value
        #expect(report.failed.isEmpty && report.finished.count == 3)
        #expect(await server.order == ["run0", "child", "orphan"])
    }

    @Test func discoveryFindsNestedRuns() throws {
        let root = tempDir()
        defer { try? FileManager.default.removeItem(atPath: root) }
        _ = try makeRuns(root + "/a/b", count: 2, steps: 1, rowsPerFrame: 10)
        #expect(RunDiscovery.runs(under: root).map { ($0 as NSString).lastPathComponent } == ["run0", "run1"])
        #expect(RunDiscovery.runs(under: root + "/a/b/run1") == [root + "/a/b/run1"])
    }
}
