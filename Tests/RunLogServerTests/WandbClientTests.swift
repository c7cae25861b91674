import Foundation
import RunLogStore
import RunLogSync
import Testing

@testable import RunLogServer

/// The official `wandb` 0.31.0 Python client against a real `runlog server` process.
///
/// The client's exit code and its `.synced` marker prove nothing (it reports success even
/// when data was lost), so every check reads the server: history rows, config keys, summary
/// values and tags must each be there exactly once. The oracle for offline runs is RunLog's
/// own `.wandb` reader (pinned by the golden decodings in `Fixtures/wandb-offline/expected`).
///
/// Needs `wandb==0.31.0`: installed with pip into `.build-wandb-venv` at the repository root
/// (or `RUNLOG_WANDB_PYTHON` names a Python that has it). Skipped, with the reason, only when
/// pip cannot install it.
@Suite(.serialized) struct WandbClientTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let fixtures = root.appendingPathComponent("Fixtures")

    /// A Python with wandb 0.31.0, made once per test process.
    static let python: Result<String, WandbSetupError> = {
        if let p = ProcessInfo.processInfo.environment["RUNLOG_WANDB_PYTHON"], !p.isEmpty { return .success(p) }
        let venv = root.appendingPathComponent(".build-wandb-venv").path
        let py = venv + "/bin/python"
        let check = ["-c", "import wandb, sys; sys.exit(0 if wandb.__version__ == '0.31.0' else 1)"]
        if FileManager.default.isExecutableFile(atPath: py), let r = try? runProgram(py, check, timeout: .seconds(120)), r.status == 0 {
            return .success(py)
        }
        do {
            let mk = try runProgram("/usr/bin/env", ["python3", "-m", "venv", venv], timeout: .seconds(120))
            guard mk.status == 0 else { return .failure(WandbSetupError(message: "python3 -m venv failed: \(mk.stderr)")) }
            let pip = try runProgram(py, ["-m", "pip", "install", "--disable-pip-version-check", "-q", "wandb==0.31.0"], timeout: .seconds(900))
            guard pip.status == 0 else { return .failure(WandbSetupError(message: "pip install wandb==0.31.0 failed (is PyPI reachable?): \(pip.stderr.suffix(600))")) }
            return .success(py)
        } catch {
            return .failure(WandbSetupError(message: "\(error)"))
        }
    }()

    struct WandbSetupError: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }

    /// A server process with an account, and the client's environment for it.
    struct Harness {
        let dir: TempDir
        let server: ServerProcess
        let key: String
        let entity: String
        let python: String

        static func start() async throws -> Harness {
            let python: String
            switch WandbClientTests.python {
            case .success(let p): python = p
            case .failure(let e): try Test.cancel("real wandb client tests skipped: \(e.message)")
            }
            let dir = TempDir()
            let database = dir.path + "/server.db"
            let key = try await createKey(database: database, entity: "alice", logger: testLogger())
            let server = try await ServerProcess.start(binary: try serverBinary(), database: database, logDirectory: dir.path)
            try FileManager.default.createDirectory(atPath: dir.path + "/home", withIntermediateDirectories: true)
            return Harness(dir: dir, server: server, key: key, entity: "alice", python: python)
        }

        var environment: [String: String] {
            ["WANDB_BASE_URL": "http://127.0.0.1:\(server.port)", "WANDB_API_KEY": key, "WANDB_SILENT": "true",
             "WANDB_ERROR_REPORTING": "false", "HOME": dir.path + "/home", "WANDB_DIR": dir.path, "WANDB_MODE": "online",
             "WANDB_CONFIG_DIR": dir.path + "/home/.config/wandb"]
        }

        /// `wandb sync DIR`; returns its output.
        @discardableResult
        func sync(_ runDir: String) throws -> String {
            let wandb = (python as NSString).deletingLastPathComponent + "/wandb"
            let r = try runProgram(wandb, ["sync", runDir], timeout: .seconds(300), environment: environment, directory: dir.path)
            #expect(r.status == 0, "wandb sync \(runDir): \(r.stdout) \(r.stderr)")
            return r.stdout + r.stderr
        }

        /// Runs a scenario of `Fixtures/wandb-client/scenarios.py`; returns the JSON lines it printed.
        func scenario(_ args: String...) throws -> [Value] {
            let script = WandbClientTests.fixtures.appendingPathComponent("wandb-client/scenarios.py").path
            let r = try runProgram(python, [script] + args, timeout: .seconds(300), environment: environment, directory: dir.path)
            #expect(r.status == 0, "scenario \(args): \(r.stderr.suffix(2000))")
            return r.stdout.split(separator: "\n").compactMap { try? JSONParser.parse(String($0)) }
        }

        func run(_ project: String, _ run: String) async throws -> Value {
            let http = HTTP.connect(port: server.port)
            defer { Task { await http.close() } }
            let (status, body) = try await http.get("/api/v1/runs/\(entity)/\(project)/\(run)", key: key)
            #expect(status == .ok, "GET \(project)/\(run): \(body)")
            return body
        }

        /// Every point of `metric` on the run's live history, by step.
        func series(_ project: String, _ run: String, _ metric: String) async throws -> [Int64: Double] {
            let http = HTTP.connect(port: server.port)
            defer { Task { await http.close() } }
            let (status, body) = try await http.get("/api/v1/runs/\(entity)/\(project)/\(run)/history?metrics=\(metric)&points=100000", key: key)
            #expect(status == .ok)
            let s = body["metrics"]?[metric]
            let steps = s?["steps"]?.int64s ?? [], values = s?["values"]?.doubles ?? []
            #expect(steps.count == values.count)
            return Dictionary(zip(steps, values), uniquingKeysWith: { a, _ in a })
        }
    }

    static func copyFixture(_ name: String, to dir: String) throws -> String {
        let src = fixtures.appendingPathComponent("wandb-offline/\(name)").path
        let dst = dir + "/" + name
        try FileManager.default.copyItem(atPath: src, toPath: dst)
        return dst
    }

    static func oracle(_ runDir: String) throws -> WandbRun {
        let file = try FileManager.default.contentsOfDirectory(atPath: runDir).first { $0.hasSuffix(".wandb") }!
        return try WandbRun(contentsOf: URL(fileURLWithPath: runDir + "/" + file))
    }

    /// (a): `wandb sync` of every offline fixture, then again: every row, config key,
    /// summary value and tag on the server exactly once.
    @Test func syncOfEveryOfflineFixtureArrivesExactlyOnce() async throws {
        let h = try await Harness.start()
        defer { h.server.stop() }
        let names = [
            "offline-run-20261126_174542-fixt0001", "offline-run-20261126_174545-fixt0001", "offline-run-20261126_174548-fixt0001",
            "offline-run-20261126_174551-fork0001", "offline-run-20261126_174554-kill0001", "offline-run-20261126_174603-type0001",
        ]
        let dirs = try names.map { try Self.copyFixture($0, to: h.dir.path) }
        let basic = try Self.oracle(dirs[0])

        // The basic run alone: 1,000 rows with the oracle's values, config, tags and summary.
        try h.sync(dirs[0])
        func checkBasic() async throws {
            let run = try await h.run("swift-fixture", "fixt0001")
            #expect(run["history_rows"]?.intValue == Int64(basic.history.count))
            #expect(run["last_step"]?.intValue == basic.history.last?.step)
            #expect(run["state"]?.stringValue == "finished")
            #expect(run["name"]?.stringValue == basic.name)
            #expect(run["group"]?.stringValue == basic.group)
            #expect(run["tags"]?.arrayValue?.compactMap(\.stringValue) == basic.tags)
            #expect(run["config"]?.description == Value.object(basic.config).description, "config")
            for (k, v) in basic.summary where !k.hasPrefix("_") {
                #expect(run["summary"]?[k]?.description == v.description, "summary \(k)")
            }
            let loss = try await h.series("swift-fixture", "fixt0001", "loss")
            #expect(loss.count == basic.history.count)
            for row in basic.history { #expect(loss[row.step] == row.values["loss"]?.doubleValue, "loss at \(row.step)") }
            let files = Set(run["files"]?.arrayValue?.compactMap { $0["path"]?.stringValue } ?? [])
            #expect(files.isSuperset(of: ["config.yaml", "wandb-summary.json", "output.log", "wandb-metadata.json"]), "\(files)")
        }
        try await checkBasic()
        // Again, as `wandb sync` does when asked twice: nothing doubles.
        for d in [dirs[0]] { try? FileManager.default.removeItem(atPath: d + "/run-fixt0001.wandb.synced") }
        try h.sync(dirs[0])
        try await checkBasic()

        // The rest in the order they were made: the offline resume (steps restart at 0: no
        // row added at a step already held), the rewind to 500, the fork at 500, the killed
        // run (all whole rows), the value types.
        for d in dirs[1...] { try h.sync(d) }
        let rewind = try Self.oracle(dirs[2]), fork = try Self.oracle(dirs[3]), killed = try Self.oracle(dirs[4]), types = try Self.oracle(dirs[5])

        var run = try await h.run("swift-fixture", "fixt0001")
        #expect(run["history_rows"]?.intValue == 501 + Int64(rewind.history.count), "rows 0...500 kept, then the rewind's 5")
        #expect(run["last_step"]?.intValue == rewind.history.last?.step)
        #expect(run["rewinds"]?.count == 1)
        let rewound = try await h.series("swift-fixture", "fixt0001", "loss")
        for row in rewind.history { #expect(rewound[row.step] == row.values["loss"]?.doubleValue) }
        for row in basic.history where row.step <= 500 { #expect(rewound[row.step] == row.values["loss"]?.doubleValue) }
        #expect(try await h.series("swift-fixture", "fixt0001", "rewind_metric").count == rewind.history.count)

        run = try await h.run("swift-fixture", "fork0001")
        #expect(run["fork"]?["source"]?.stringValue == "fixt0001" && run["fork"]?["step"]?.intValue == 500)
        #expect(run["history_rows"]?.intValue == 501 + Int64(fork.history.count))
        let forked = try await h.series("swift-fixture", "fork0001", "loss")
        for row in basic.history where row.step <= 500 { #expect(forked[row.step] == row.values["loss"]?.doubleValue, "fork prefix at \(row.step)") }
        for row in fork.history { #expect(forked[row.step] == row.values["loss"]?.doubleValue) }

        run = try await h.run("swift-fixture", "kill0001")
        #expect(run["history_rows"]?.intValue == Int64(killed.history.count))
        #expect(run["last_step"]?.intValue == killed.history.last?.step)

        run = try await h.run("swift-fixture", "type0001")
        #expect(run["history_rows"]?.intValue == Int64(types.history.count))
        #expect(run["config"]?.description == Value.object(types.config).description, "types config")
        for (k, v) in types.summary where !k.hasPrefix("_") {
            #expect(run["summary"]?[k]?.description == v.description, "types summary \(k)")
        }

        // Everything once more: the same rows, no more.
        for d in dirs { for f in try FileManager.default.contentsOfDirectory(atPath: d) where f.hasSuffix(".synced") { try FileManager.default.removeItem(atPath: d + "/" + f) } }
        for d in dirs { try h.sync(d) }
        for (id, rows) in [("fixt0001", 501 + rewind.history.count), ("fork0001", 501 + fork.history.count),
                           ("kill0001", killed.history.count), ("type0001", types.history.count)] {
            run = try await h.run("swift-fixture", id)
            #expect(run["history_rows"]?.intValue == Int64(rows), "\(id) after a second sync of everything")
        }
    }

    /// (b)–(e): an online run, `resume="must"`, `fork_from`, `resume_from`, and
    /// `resume="must"` of a run the server does not have.
    @Test func onlineResumeForkAndRewind() async throws {
        let h = try await Harness.start()
        defer { h.server.stop() }
        let project = "interop"

        // (b) online: 50 rows, config, tags, notes, summary, console.
        let online = try h.scenario("online", h.entity, project)
        let id = try #require(online.last?["run_id"]?.stringValue)
        var run = try await h.run(project, id)
        #expect(run["history_rows"]?.intValue == 50 && run["last_step"]?.intValue == 49)
        #expect(run["state"]?.stringValue == "finished")
        #expect(run["tags"] == ["interop", "online"])
        #expect(run["notes"]?.stringValue == "online interop run")
        #expect(run["config"]?.description == Value.object(["lr": 0.01, "batch_size": 64, "optimizer": ["name": "sgd", "momentum": 0.9]]).description)
        #expect(run["summary"]?["best_acc"]?.doubleValue == 0.98)
        #expect(run["summary"]?["loss"]?.doubleValue == 1.0 / 50)
        var loss = try await h.series(project, id, "loss")
        for i in 0..<50 { #expect(loss[Int64(i)] == 1.0 / Double(i + 1), "loss at \(i)") }

        // (c) resume="must": the client continues at step 50, config and summary restored.
        let resumed = try h.scenario("resume-must", h.entity, project, id)
        #expect(resumed.first { $0["starting_step"] != nil }?["starting_step"]?.intValue == 50)
        run = try await h.run(project, id)
        #expect(run["history_rows"]?.intValue == 60 && run["last_step"]?.intValue == 59)
        #expect(run["summary"]?["best_acc"]?.doubleValue == 0.98, "summary restored on resume")
        #expect(run["config"]?["lr"]?.doubleValue == 0.01)
        #expect(try await h.series(project, id, "resumed_metric").count == 10)

        // (d) fork_from at step 20: a new run with rows 0...20 of the source, then its own.
        let forkOut = try h.scenario("fork", h.entity, project, id)
        #expect(forkOut.first { $0["starting_step"] != nil }?["starting_step"]?.intValue == 21)
        let forkID = try #require(forkOut.last?["run_id"]?.stringValue)
        run = try await h.run(project, forkID)
        #expect(run["fork"]?["source"]?.stringValue == id && run["fork"]?["step"]?.intValue == 20)
        #expect(run["history_rows"]?.intValue == 26 && run["last_step"]?.intValue == 25)
        let forked = try await h.series(project, forkID, "loss")
        for i in 0...20 { #expect(forked[Int64(i)] == 1.0 / Double(i + 1), "fork prefix at \(i)") }
        for i in 0..<5 { #expect(forked[Int64(21 + i)] == 0.2 - 0.01 * Double(i)) }
        #expect(try await h.series(project, forkID, "acc").count == 21, "the prefix only")

        // (e) resume_from step 30: the run keeps rows 0...30 and continues at 31.
        let rewound = try h.scenario("rewind", h.entity, project, id)
        #expect(rewound.first { $0["starting_step"] != nil }?["starting_step"]?.intValue == 31)
        run = try await h.run(project, id)
        #expect(run["history_rows"]?.intValue == 36 && run["last_step"]?.intValue == 35)
        #expect(run["rewinds"]?.count == 1)
        loss = try await h.series(project, id, "loss")
        for i in 0...30 { #expect(loss[Int64(i)] == 1.0 / Double(i + 1)) }
        for i in 0..<5 { #expect(loss[Int64(31 + i)] == 0.3 - 0.01 * Double(i)) }
        #expect(try await h.series(project, id, "resumed_metric").isEmpty, "rows after step 30 are archived")

        // resume="must" of a missing run: the client's clean UsageError, and no run made.
        let missing = try h.scenario("resume-missing", h.entity, project, "nosuchrun")
        #expect(missing.last?["error"]?.stringValue == "UsageError")
        let http = HTTP.connect(port: h.server.port)
        let (status, _) = try await http.get("/api/v1/runs/\(h.entity)/\(project)/nosuchrun", key: h.key)
        await http.close()
        #expect(status == .notFound)
    }
}

/// `runlog sync` of wandb offline runs with RunLog's own engine (no Python): sessions of one
/// run folded into one RunLog run, forks and rewinds kept, incremental, and a file cut short
/// by a kill synced up to its last whole record, then the rest once it is whole.
@Suite(.serialized) struct WandbNativeSyncTests {
    struct Server {
        let dir: TempDir
        let server: ServerProcess
        let key: String
        let binary: String

        static func start() async throws -> Server {
            let binary = try serverBinary()
            let dir = TempDir()
            let db = dir.path + "/server.db"
            let key = try await createKey(database: db, entity: "carol", logger: testLogger())
            return Server(dir: dir, server: try await ServerProcess.start(binary: binary, database: db, logDirectory: dir.path), key: key, binary: binary)
        }

        /// `runlog sync --json`; returns the final "done" event.
        func sync(_ paths: [String], cache: String, entity: String = "carol", key: String? = nil) throws -> Value {
            let r = try runProgram(binary, ["sync", "--server", "http://127.0.0.1:\(server.port)", "--api-key", key ?? self.key, "--entity", entity,
                                            "--import-cache", cache, "--json"] + paths, timeout: .seconds(300))
            #expect(r.status == 0, "runlog sync: \(r.stderr)")
            let events = r.stdout.split(separator: "\n").compactMap { try? JSONParser.parse(String($0)) }
            return events.last { $0["event"]?.stringValue == "done" } ?? .null
        }

        func run(_ id: String, entity: String = "carol", key: String? = nil) async throws -> Value {
            let http = HTTP.connect(port: server.port)
            defer { Task { await http.close() } }
            let (status, body) = try await http.get("/api/v1/runs/\(entity)/swift-fixture/\(id)", key: key ?? self.key)
            #expect(status == .ok, "GET \(id): \(body)")
            return body
        }
    }

    /// A `.wandb` file damaged in the middle: its run fails with the typed error, the other
    /// runs sync, and the exit status says something failed.
    @Test func aDamagedFileFailsItsRunAlone() async throws {
        let s = try await Server.start()
        defer { s.server.stop() }
        let fixtures = WandbClientTests.fixtures.appendingPathComponent("wandb-offline").path
        let runs = s.dir.path + "/runs"
        try FileManager.default.createDirectory(atPath: runs, withIntermediateDirectories: true)
        for name in ["offline-run-20261126_174542-fixt0001", "offline-run-20261126_174603-type0001"] {
            try FileManager.default.copyItem(atPath: fixtures + "/" + name, toPath: runs + "/" + name)
        }
        let damaged = runs + "/offline-run-20261126_174542-fixt0001/run-fixt0001.wandb"
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: damaged)))
        bytes[bytes.count / 2] ^= 0x55
        try Data(bytes).write(to: URL(fileURLWithPath: damaged))
        let r = try runProgram(s.binary, ["sync", "--server", "http://127.0.0.1:\(s.server.port)", "--api-key", s.key, "--entity", "carol",
                                          "--import-cache", s.dir.path + "/cache", "--json", runs], timeout: .seconds(120))
        #expect(r.status == 2, "\(r.stderr)")
        let events = r.stdout.split(separator: "\n").compactMap { try? JSONParser.parse(String($0)) }
        let failed = events.filter { $0["event"]?.stringValue == "failed" }
        #expect(failed.count == 1 && failed.first?["error"]?.stringValue?.contains("checksumMismatch") == true, "\(failed)")
        #expect(events.last?["finished"]?.intValue == 1 && events.last?["failed"]?.intValue == 1)
        let good = try await s.run("type0001")
        #expect(good["history_rows"]?.intValue == Int64(try WandbClientTests.oracle(fixtures + "/offline-run-20261126_174603-type0001").history.count))
    }

    @Test func offlineRunsSyncNativelyOnceAndIncrementally() async throws {
        let s = try await Server.start()
        defer { s.server.stop() }
        let cache = s.dir.path + "/cache"
        let fixtures = WandbClientTests.fixtures.appendingPathComponent("wandb-offline").path
        let basic = try WandbClientTests.oracle(fixtures + "/offline-run-20261126_174542-fixt0001")
        let rewind = try WandbClientTests.oracle(fixtures + "/offline-run-20261126_174548-fixt0001")
        let fork = try WandbClientTests.oracle(fixtures + "/offline-run-20261126_174551-fork0001")
        let killed = try WandbClientTests.oracle(fixtures + "/offline-run-20261126_174554-kill0001")

        let done = try s.sync([fixtures], cache: cache)
        #expect(done["failed"]?.intValue == 0 && done["runs"]?.intValue == 4, "\(done)")
        var run = try await s.run("fixt0001")
        #expect(run["history_rows"]?.intValue == 501 + Int64(rewind.history.count), "basic through 500, then the rewind's rows")
        #expect(run["last_step"]?.intValue == rewind.history.last?.step)
        #expect(run["rewinds"]?.count == 1)
        #expect(run["config"]?.description == Value.object(basic.config).description)
        #expect(run["tags"]?.arrayValue?.compactMap(\.stringValue) == basic.tags)
        run = try await s.run("fork0001")
        #expect(run["fork"]?["source"]?.stringValue == "fixt0001" && run["fork"]?["step"]?.intValue == 500)
        #expect(run["history_rows"]?.intValue == 501 + Int64(fork.history.count))
        run = try await s.run("kill0001")
        #expect(run["history_rows"]?.intValue == Int64(killed.history.count))

        // Again: nothing new to fold, nothing sent.
        let again = try s.sync([fixtures], cache: cache)
        #expect(again["records"]?.intValue == 0 && again["failed"]?.intValue == 0, "\(again)")

        // A run cut short by a kill, synced, then whole: every row once. (Another entity, so
        // that it is a server run of its own.)
        let grow = s.dir.path + "/offline-run-20261126_000000-fixt0001"
        try FileManager.default.createDirectory(atPath: grow, withIntermediateDirectories: true)
        let full = try Data(contentsOf: URL(fileURLWithPath: fixtures + "/offline-run-20261126_174542-fixt0001/run-fixt0001.wandb"))
        try full.prefix(8 * 32768).write(to: URL(fileURLWithPath: grow + "/run-fixt0001.wandb"))
        let partial = try WandbClientTests.oracle(grow)
        #expect(partial.history.count > 0 && partial.history.count < basic.history.count)
        let dave = try await createKey(database: s.dir.path + "/server.db", entity: "dave", logger: testLogger())
        let cache2 = s.dir.path + "/cache2"
        var d = try s.sync([grow], cache: cache2, entity: "dave", key: dave)
        #expect(d["failed"]?.intValue == 0)
        run = try await s.run("fixt0001", entity: "dave", key: dave)
        #expect(run["history_rows"]?.intValue == Int64(partial.history.count), "every whole row of the cut file")
        try full.write(to: URL(fileURLWithPath: grow + "/run-fixt0001.wandb"))
        d = try s.sync([grow], cache: cache2, entity: "dave", key: dave)
        #expect(d["failed"]?.intValue == 0 && (d["records"]?.intValue ?? 0) > 0)
        run = try await s.run("fixt0001", entity: "dave", key: dave)
        #expect(run["history_rows"]?.intValue == Int64(basic.history.count), "the rest, once")
        #expect(run["last_step"]?.intValue == basic.history.last?.step)
        #expect(run["state"]?.stringValue == "finished")
    }
}
