#if canImport(Glibc)
import Glibc
#endif
import Foundation
import RunLogTestSupport
import Testing
import RunLog
import RunLogStore

/// `runlog sync` against a real `runlog server` while things go wrong: the server SIGKILLed
/// and restarted at random moments, connections reset mid-request and mid-response, 429s,
/// two syncs of the same runs at once. After the last sync every history row of every run
/// is on the server exactly once. Random choices come from a printed seed
/// (`RUNLOG_TEST_SEED` replays one).
// Starts SDK runs in the test process (makeRuns): shares the process gate, so that a suite
// reading "the" active run (the README example, reinit) never picks one of these up.
@Suite("Sync fault injection", .serialized, .sharedProcessState,
       .enabled(if: CrashTests.runlogBinary != nil, "the runlog executable was not built beside the tests"))
struct SyncFaultTests {
    static let entity = "fault"
    static let project = "faults"

    /// A run written locally, and what the server must end up holding for it.
    struct LocalRun {
        var id: String
        var directory: String
        var steps: [Int64]
        var frames: Int
        var lastSequence: UInt64
    }

    /// `count` finished runs of 2,000–5,000 steps, flushed every 40–120 steps so each run has
    /// dozens of frames (and a sync of it many requests).
    static func makeRuns(in root: String, count: Int, rng: inout SeededRandom) throws -> [LocalRun] {
        var settings = Settings()
        settings.handleSignals = false
        settings.systemMetricsInterval = nil
        settings.environment = [:]
        var runs: [LocalRun] = []
        for i in 0..<count {
            let steps = Int64.random(in: 2_000...5_000, using: &rng)
            let flushEvery = Int64.random(in: 40...120, using: &rng)
            let run = try Run.start(entity: entity, project: project, dir: root, id: "run\(i)", config: ["i": .int(Int64(i))],
                                    mode: .offline, reinit: .createNew, settings: settings)
            for step in 0..<steps {
                try run.log(["loss": 1 / Double(step + 1), "x": Double(step), "i": Double(i)])
                if (step + 1) % flushEvery == 0 { try run.flush() }
            }
            try run.finish()
            let directory = try #require(run.directory)
            let reader = try RunDirectory.reader(directory)
            defer { reader.close() }
            let history = try reader.contents().history
            #expect(history.count == Int(steps))
            runs.append(LocalRun(id: run.id, directory: directory, steps: history.map(\.step), frames: reader.frames.count,
                                 lastSequence: reader.frames.last?.header.sequence ?? 0))
        }
        return runs
    }

    /// Checks every run on the server (read directly, not through any proxy): the state, the
    /// acknowledged sequence, the frame and row counts, and every step of `x` and `loss`
    /// exactly once with its value.
    static func verifyExactlyOnce(_ runs: [LocalRun], baseURL: String, key: String, context: String) async throws {
        var problems: [String] = []
        for run in runs {
            let uri = "\(baseURL)/api/v1/runs/\(entity)/\(project)/\(run.id)"
            let (status, json) = try await getJSON(uri, key: key)
            guard status == 200, let detail = json as? [String: Any] else {
                problems.append("\(run.id): GET run answered \(status)")
                continue
            }
            let expectedRows = Int64(run.steps.count)
            if detail.int("history_rows") != expectedRows {
                problems.append("\(run.id): history_rows \(detail.int("history_rows") ?? -1), wrote \(expectedRows)")
            }
            if detail.int("last_step") != run.steps.last {
                problems.append("\(run.id): last_step \(detail.int("last_step") ?? -1), wrote \(run.steps.last ?? -1)")
            }
            if detail.int("acknowledged") != Int64(run.lastSequence) {
                problems.append("\(run.id): acknowledged \(detail.int("acknowledged") ?? -1), the log ends at frame \(run.lastSequence)")
            }
            if detail.int("frames") != Int64(run.frames) {
                problems.append("\(run.id): \(detail.int("frames") ?? -1) frames stored, the log has \(run.frames)")
            }
            if detail.string("state") != "finished" {
                problems.append("\(run.id): state \(detail.string("state") ?? "nil"), expected finished")
            }
            let (hStatus, hJSON) = try await getJSON(uri + "/history?metrics=x,loss&points=100000", key: key)
            guard hStatus == 200, let metrics = (hJSON as? [String: Any])?["metrics"] as? [String: Any] else {
                problems.append("\(run.id): GET history answered \(hStatus)")
                continue
            }
            for name in ["x", "loss"] {
                guard let m = metrics[name] as? [String: Any] else {
                    problems.append("\(run.id): no \(name) in history")
                    continue
                }
                let steps = (m["steps"] as? [Any] ?? []).compactMap { ($0 as? NSNumber)?.int64Value }
                let values = (m["values"] as? [Any] ?? []).compactMap { ($0 as? NSNumber)?.doubleValue }
                if m.int("count") != expectedRows {
                    problems.append("\(run.id): \(name) count \(m.int("count") ?? -1), wrote \(expectedRows)")
                }
                if steps != run.steps {
                    let dupes = steps.count - Set(steps).count
                    problems.append("\(run.id): \(name) steps differ: \(steps.count) points (\(dupes) duplicated steps), wrote \(run.steps.count)")
                    continue
                }
                let wrong = zip(steps, values).filter { step, value in
                    let expected = name == "x" ? Double(step) : 1 / Double(step + 1)
                    return abs(value - expected) > 1e-12 * max(1, abs(expected))
                }.count
                if values.count != steps.count || wrong > 0 {
                    problems.append("\(run.id): \(name): \(wrong) wrong values, \(values.count) values for \(steps.count) steps")
                }
            }
        }
        #expect(problems.isEmpty, "\(context): \(problems.count) problems:\n\(problems.prefix(20).joined(separator: "\n"))")
    }

    /// Arguments of a `runlog sync` of everything under `root`.
    static func syncArguments(root: String, server: String, key: String, batchFrames: Int, jobs: Int = 4) -> [String] {
        ["sync", root, "--server", server, "--api-key", key, "--jobs", String(jobs), "--json", "--batch-frames", String(batchFrames)]
    }

    /// The environment of a sync: its own config directory (no saved key of the user's).
    static func syncEnvironment(_ scratch: String) -> [String: String] { ["RUNLOG_CONFIG_DIR": scratch + "/config"] }

    /// The `done` line of a finished `runlog sync --json`.
    static func done(_ child: ChildProcess) -> [String: Any]? { child.objects.last { $0.string("event") == "done" } }

    /// A last, clean sync must succeed, and one after it must send nothing (it is incremental).
    static func finalSyncs(binary: String, root: String, server: String, key: String, scratch: String, context: String) throws {
        for (round, label) in ["final sync", "repeat sync"].enumerated() {
            let sync = try ChildProcess(binary, syncArguments(root: root, server: server, key: key, batchFrames: 64),
                                        environment: syncEnvironment(scratch), stderrPath: scratch + "/\(label).txt")
            #expect(sync.wait(timeout: 180), "\(context): the \(label) did not end in 180 s")
            #expect(sync.terminationStatus == 0, "\(context): the \(label) exited \(sync.terminationStatus): \(sync.stderrText.suffix(2000))")
            let failed = done(sync)?.int("failed")
            #expect(failed == 0, "\(context): the \(label) reports \(failed.map(String.init) ?? "no done line") failed runs")
            if round == 1 {
                let sent = sync.objects.filter { $0.string("event") == "sent" }.count
                #expect(sent == 0, "\(context): a sync after a complete sync sent \(sent) batches")
            }
        }
    }

    // MARK: Tests

    /// The server is SIGKILLed several times during a sync of 30 runs (each kill a few
    /// milliseconds after a random number of acknowledged batches), and restarted on the same
    /// database and port. The sync may fail some runs while the server is down; a final sync
    /// completes; every row is on the server exactly once.
    @Test("server SIGKILLed and restarted during a sync: every row exactly once")
    func serverKilledDuringSync() async throws {
        let binary = try #require(CrashTests.runlogBinary)
        let seed = SeededRandom.seed(for: "serverKilledDuringSync")
        var rng = SeededRandom(seed: seed)
        let dir = TempDir()
        defer { withExtendedLifetime(dir) {} }  // removed only after the processes using it are gone
        let root = dir.sub("runs")
        let runs = try Self.makeRuns(in: root, count: 30, rng: &rng)
        let server = try RestartableServer(binary: binary, database: dir.sub("server.db"), scratch: dir.path)
        let key = try server.createKey(entity: Self.entity)
        try server.start()
        defer { server.stop() }

        let sent = Counter()
        let batchFrames = Int.random(in: 2...6, using: &rng)
        let sync = try ChildProcess(binary, Self.syncArguments(root: root, server: server.baseURL, key: key, batchFrames: batchFrames),
                                    environment: Self.syncEnvironment(dir.path), stderrPath: dir.sub("sync.txt")) { object in
            if object.string("event") == "sent" { sent.add() }
        }
        var kills: [String] = []
        for _ in 0..<4 {
            let threshold = sent.value + Int.random(in: 3...25, using: &rng)
            poll(timeout: 120) { sent.value >= threshold || !sync.isRunning }
            guard sync.isRunning else { break }
            usleep(UInt32.random(in: 0...30_000, using: &rng))
            server.kill9()
            kills.append("after \(sent.value) batches")
            usleep(UInt32.random(in: 0...400_000, using: &rng))  // down a while: refused connections
            try server.start()
        }
        #expect(sync.wait(timeout: 240), "the sync did not end in 240 s")
        let context = "seed \(seed), batch \(batchFrames) frames, kills: \(kills.joined(separator: ", ")), first sync exited \(sync.terminationStatus)"
        print("[serverKilledDuringSync] \(context)")
        #expect(kills.count >= 2, "\(context): the sync ended before the server was killed twice")
        // Exit 0, or 2 when a run gave up while the server was down; nothing else.
        #expect([0, 2].contains(sync.terminationStatus), "\(context): \(sync.stderrText.suffix(2000))")

        try Self.finalSyncs(binary: binary, root: root, server: server.baseURL, key: key, scratch: dir.path, context: context)
        try await Self.verifyExactlyOnce(runs, baseURL: server.baseURL, key: key, context: context)
    }

    /// Every connection of a sync goes through a proxy that resets some connections (before
    /// forwarding, mid-request, after the server answered, mid-response) and answers some
    /// requests 429 with `Retry-After: 0` or `1`. Syncs are repeated (through the same proxy)
    /// until one reports every run synced; every row is on the server exactly once.
    @Test("connection resets and 429s during a sync: every row exactly once")
    func resetsAnd429s() async throws {
        let binary = try #require(CrashTests.runlogBinary)
        let seed = SeededRandom.seed(for: "resetsAnd429s")
        var rng = SeededRandom(seed: seed)
        let dir = TempDir()
        defer { withExtendedLifetime(dir) {} }  // removed only after the processes using it are gone
        let root = dir.sub("runs")
        let runs = try Self.makeRuns(in: root, count: 30, rng: &rng)
        let server = try RestartableServer(binary: binary, database: dir.sub("server.db"), scratch: dir.path)
        let key = try server.createKey(entity: Self.entity)
        try server.start()
        defer { server.stop() }
        let proxy = try FaultProxy(upstreamPort: server.port, seed: rng.next(), faultRate: 0.3)
        defer { proxy.stop() }

        let batchFrames = Int.random(in: 2...6, using: &rng)
        var rounds: [Int32] = []
        var retries = 0
        for round in 0..<6 {
            let sync = try ChildProcess(binary, Self.syncArguments(root: root, server: proxy.baseURL, key: key, batchFrames: batchFrames),
                                        environment: Self.syncEnvironment(dir.path), stderrPath: dir.sub("sync-\(round).txt"))
            #expect(sync.wait(timeout: 240), "sync round \(round) did not end in 240 s")
            rounds.append(sync.terminationStatus)
            retries += sync.objects.filter { $0.string("event") == "retrying" }.count
            #expect([0, 2].contains(sync.terminationStatus), "round \(round): \(sync.stderrText.suffix(2000))")
            if sync.terminationStatus == 0 { break }
        }
        proxy.stop()
        let counts = proxy.faultCounts
        let posts = proxy.postFaultCounts
        let context = "seed \(seed), batch \(batchFrames) frames, sync exits \(rounds), \(retries) retries, faults \(counts.map { "\($0.key.rawValue): \($0.value)" }.sorted()), on POSTs \(posts.map { "\($0.key.rawValue): \($0.value)" }.sorted())"
        print("[resetsAnd429s] \(context)")
        #expect(proxy.proxyErrors.isEmpty, "\(context): \(proxy.proxyErrors.prefix(5))")
        #expect(rounds.last == 0, "\(context): no sync through the proxy completed")
        // The faults that matter for exactly-once really happened to frame uploads.
        for fault in [FaultProxy.Fault.dropResponse, .truncateResponse, .truncateRequest, .tooMany0, .tooMany1, .resetBeforeForward] {
            #expect((posts[fault] ?? 0) > 0, "\(context): no \(fault.rawValue) fault on a frame upload")
        }
        #expect(retries > 0, "\(context): the sync never reported a retry")

        try Self.finalSyncs(binary: binary, root: root, server: server.baseURL, key: key, scratch: dir.path, context: context)
        try await Self.verifyExactlyOnce(runs, baseURL: server.baseURL, key: key, context: context)
    }

    /// Two `runlog sync` processes started at once on the same 30 runs, with different batch
    /// sizes so their requests overlap partly: both succeed, nothing is duplicated.
    @Test("two syncs of the same runs at once duplicate nothing")
    func twoSyncsAtOnce() async throws {
        let binary = try #require(CrashTests.runlogBinary)
        let seed = SeededRandom.seed(for: "twoSyncsAtOnce")
        var rng = SeededRandom(seed: seed)
        let dir = TempDir()
        defer { withExtendedLifetime(dir) {} }  // removed only after the processes using it are gone
        let root = dir.sub("runs")
        let runs = try Self.makeRuns(in: root, count: 30, rng: &rng)
        let server = try RestartableServer(binary: binary, database: dir.sub("server.db"), scratch: dir.path)
        let key = try server.createKey(entity: Self.entity)
        try server.start()
        defer { server.stop() }

        let batches = [Int.random(in: 2...4, using: &rng), Int.random(in: 5...9, using: &rng)]
        let syncs = try batches.enumerated().map { i, batch in
            try ChildProcess(binary, Self.syncArguments(root: root, server: server.baseURL, key: key, batchFrames: batch),
                             environment: Self.syncEnvironment(dir.path), stderrPath: dir.sub("sync-\(i).txt"))
        }
        var stored = 0
        for (i, sync) in syncs.enumerated() {
            #expect(sync.wait(timeout: 240), "sync \(i) did not end in 240 s")
            #expect(sync.terminationStatus == 0, "sync \(i) (seed \(seed)) exited \(sync.terminationStatus): \(sync.stderrText.suffix(2000))")
            #expect(Self.done(sync)?.int("failed") == 0, "sync \(i) (seed \(seed)) reports failed runs")
            stored += sync.objects.filter { $0.string("event") == "sent" }.count
        }
        let context = "seed \(seed), batches \(batches), \(stored) batches sent by both"
        print("[twoSyncsAtOnce] \(context)")
        try await Self.verifyExactlyOnce(runs, baseURL: server.baseURL, key: key, context: context)
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func add() { lock.withLock { n += 1 } }
    var value: Int { lock.withLock { n } }
}
