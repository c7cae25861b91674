#if canImport(Glibc)
import Glibc
#endif
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing
import RunLogStore
import RunLogSync

/// `runlog sync --protocol wandb` against a real `runlog server` speaking the W&B protocol:
/// RunLog runs (config, history with NaN and infinities, summary, tags, console lines,
/// system metrics, a saved file, a fork, a rewind before and after a push) arrive exactly
/// once, as the server's JSON read API shows; a second push sends nothing; appended rows
/// arrive alone; a rewind after a push leaves the server's live history equal to the local one.
@Suite("W&B push", .serialized)
struct WandbPushTests {
    static let entity = "alice"
    static let project = "wbpush"
    static let t0: Int64 = 1_795_000_000_000_000

    @Test("runlog sync --protocol wandb: everything arrives once, pushes are incremental, rewinds and forks follow")
    func pushToWandbProtocolServer() async throws {
        let binary = try WPBinary.path()
        let root = NSTemporaryDirectory() + "wandb-push-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let database = root + "/server.sqlite"
        let keyResult = try WPProcess.run(binary, ["server", "create-key", "--entity", Self.entity, "--database", database])
        try #require(keyResult.status == 0, "create-key failed: \(keyResult.stderr)")
        let key = keyResult.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let server = try await WPServer.start(binary: binary, database: database, logDirectory: root)
        defer { server.stop() }
        let api = WPAPI(base: "http://127.0.0.1:\(server.port)", key: key)

        // Run A: no entity (the server picks and the push adopts it), 60 steps with NaN and
        // infinities, console on both streams, system metrics, a saved file; finished.
        let runs = root + "/runs/" + Self.project
        let a = runs + "/alpha"
        var aRows: [(Int64, [String: Value])] = (Int64(0)..<60).map { s in
            var v: [String: Value] = ["loss": .double(1 / Double(s + 1)), "acc": .double(Double(s) / 60), "epoch": .int(s / 10)]
            if s == 7 { v["loss"] = .double(.nan) }
            if s == 8 { v["acc"] = .double(.infinity) }
            if s == 9 { v["acc"] = .double(-.infinity) }
            if s % 5 == 0 { v["phase"] = .string(s < 30 ? "warmup" : "main") }
            return (s, v)
        }
        let savedFile = Data((0..<3000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        try Self.writeRun(a, id: "alpha", entity: nil, config: [
            "lr": .double(0.001), "batch_size": .int(64), "optimizer": ["name": "adamw", "betas": [0.9, 0.999]], "nan_cfg": .double(.nan),
        ], tags: ["baseline", "wandb"], notes: "the first run", group: "g1", rows: aRows,
        console: [(.stdout, "starting alpha"), (.stderr, "a warning on stderr"), (.stdout, "halfway: step 30"), (.stdout, "done")],
        samples: 3, file: ("model/weights.bin", savedFile),
        summary: ["best_loss": .double(0.0166), "final_note": "done", "nan_summary": .double(.nan)], exitCode: 0)

        // Run B: a fork of A at step 30 (as `runlog fork` makes it), with rows of its own; failed.
        let b = runs + "/bravo"
        let aState = try RunDirectory.reader(a).state()
        var bMeta = aState.metadata
        bMeta["id"] = "bravo"
        bMeta["entity"] = .string(Self.entity)
        bMeta["name"] = "bravo-fork"
        try RunDirectory.fork(source: a, atStep: 30, to: b, metadata: RunMetadata(bMeta))
        try Self.append(b, rows: (Int64(31)..<45).map { s in (s, ["loss": .double(0.5 / Double(s)), "acc": .double(0.5)]) },
                        console: [(.stdout, "fork continues")], config: ["lr": .double(0.01)], tags: ["fork"], exitCode: 3)

        // Run C: rewound locally before any push (only its live history is sent).
        let c = runs + "/charlie"
        try Self.writeRun(c, id: "charlie", entity: nil, config: ["seed": .int(7)], tags: [], notes: nil, group: nil,
                          rows: (Int64(0)..<40).map { s in (s, ["loss": .double(Double(s))]) }, console: [], samples: 0, file: nil,
                          summary: ["loss": .double(39)], exitCode: nil)
        let cw = try LogWriter.open(directory: c)
        try cw.rewind(toStep: 19)
        for s in Int64(20)..<30 { try cw.appendRow(step: s, timestamp: Self.t0 + s * 1000 + 500, values: ["loss": .double(-Double(s))]) }
        try cw.append(.exit(ExitRecord(state: "finished", exitCode: 0, runtime: 1.5, timestamp: Self.t0 + 99_000)))
        try cw.close()

        // 1. The first push: everything, once. Small requests, so each run takes several.
        let started = Date()
        let first = try Self.push(binary, server: api.base, key: key, [a, b, c])
        #expect(first.finished.count == 3, "\(first.output)")
        #expect(first.finished.allSatisfy { $0["created"]?.boolValue == true }, "\(first.output)")
        #expect(first.finished.contains { ($0["run"]?.stringValue ?? "") == "\(Self.entity)/\(Self.project)/alpha" }, "the server's entity was adopted")
        for dir in [a, b, c] { try await Self.verify(dir, api: api) }
        let fork = try await api.run("bravo")
        #expect(fork["fork"]?["source"]?.stringValue == "alpha")
        #expect(fork["fork"]?["step"]?.intValue == 30)
        #expect(fork["state"]?.stringValue == "failed")
        #expect(try await api.run("alpha")["forks"]?.arrayValue?.first?["id"]?.stringValue == "bravo")
        // Only the live history of C: the 20 rows through step 19, then -20 ... -29.
        let charlie = try await api.history("charlie", "loss")
        #expect(charlie.steps == (0..<30).map { Int64($0) })
        #expect(charlie.values.last == .double(-29))
        // The saved file, byte for byte.
        #expect(try await api.file("alpha", "model/weights.bin") == savedFile)
        let files = try await api.run("alpha")["files"]?.arrayValue?.compactMap { $0["path"]?.stringValue } ?? []
        for f in ["model/weights.bin", "config.yaml", "wandb-summary.json", "output.log"] { #expect(files.contains(f), "\(files)") }
        // Console lines (kept in the server's frames) once each.
        let console = try await api.consoleLines("alpha")
        #expect(console.filter { $0.text == "starting alpha" }.count == 1, "\(console)")
        #expect(console.filter { $0.text == "halfway: step 30" }.count == 1)
        #expect(console.filter { $0.text.hasSuffix("a warning on stderr") }.count == 1)
        #expect(console.count == 4, "\(console)")
        #expect(console.contains { $0.stream == .stderr && $0.text == "a warning on stderr" && $0.timestamp == Self.t0 + 10 }, "\(console)")
        #expect(try await api.systemSamples("alpha") == 3)

        // 2. Again: nothing to send, nothing stored.
        let frames = try await [a, b, c].asyncMap { try await api.run(Self.id($0))["frames"]?.intValue }
        let second = try Self.push(binary, server: api.base, key: key, [a, b, c])
        #expect(second.finished.count == 3)
        #expect(second.finished.allSatisfy { $0["up_to_date"]?.boolValue == true }, "\(second.output)")
        #expect(try await [a, b, c].asyncMap { try await api.run(Self.id($0))["frames"]?.intValue } == frames)
        for dir in [a, b, c] { try await Self.verify(dir, api: api) }

        // 3. A resumed and continued: only the new rows go.
        aRows = (Int64(60)..<90).map { s in (s, ["loss": .double(1 / Double(s + 1)), "acc": .double(0.99)]) }
        try Self.append(a, rows: aRows, console: [(.stdout, "resumed")], summary: ["best_loss": .double(0.011)], resume: true, exitCode: 0)
        let third = try Self.push(binary, server: api.base, key: key, [a, b, c])
        let alpha3 = try #require(third.finished.first { $0["run"]?.stringValue?.hasSuffix("/alpha") == true })
        #expect(alpha3["history_lines"]?.intValue == 30)
        #expect(alpha3["console_lines"]?.intValue == 1)
        #expect(alpha3["completed"]?.boolValue == true)
        #expect(third.finished.filter { $0["up_to_date"]?.boolValue == true }.count == 2)
        for dir in [a, b, c] { try await Self.verify(dir, api: api) }
        #expect(try await api.consoleLines("alpha").filter { $0.text == "starting alpha" }.count == 1)

        // 4. A rewound to step 45 after the push, and continued: RewindRun, then the new rows.
        let aw = try LogWriter.open(directory: a)
        try aw.append(.resume(ResumeMarker(reason: "rewind", nextStep: 46, timestamp: Self.t0 + 200_000)))
        try aw.rewind(toStep: 45)
        for s in Int64(46)..<70 { try aw.appendRow(step: s, timestamp: Self.t0 + 300_000 + s * 1000, values: ["loss": .double(-1 / Double(s)), "acc": .double(0.42)]) }
        try aw.append(.exit(ExitRecord(state: "finished", exitCode: 0, runtime: 9, timestamp: Self.t0 + 400_000)))
        try aw.close()
        let fourth = try Self.push(binary, server: api.base, key: key, [a])
        let alpha4 = try #require(fourth.finished.first)
        #expect(alpha4["rewound_to"]?.intValue == 45, "\(fourth.output)")
        #expect(alpha4["history_lines"]?.intValue == 24)
        try await Self.verify(a, api: api)
        let rewinds = try await api.run("alpha")["rewinds"]?.arrayValue ?? []
        #expect(rewinds.count == 1 && rewinds.first?["step"]?.intValue == 45, "\(rewinds)")
        #expect(try await api.run("alpha")["state"]?.stringValue == "finished")

        // 5. And again: up to date.
        let fifth = try Self.push(binary, server: api.base, key: key, [a, b, c])
        #expect(fifth.finished.allSatisfy { $0["up_to_date"]?.boolValue == true }, "\(fifth.output)")
        print("[WandbPushTests] 5 pushes and checks in \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
    }

    @Test("a fatal error (bad key) fails the run, exit status 2, nothing saved")
    func badKeyIsFatal() async throws {
        let binary = try WPBinary.path()
        let root = NSTemporaryDirectory() + "wandb-push-bad-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let database = root + "/server.sqlite"
        _ = try WPProcess.run(binary, ["server", "create-key", "--entity", Self.entity, "--database", database])
        let server = try await WPServer.start(binary: binary, database: database, logDirectory: root)
        defer { server.stop() }
        let dir = root + "/runs/x"
        try Self.writeRun(dir, id: "x", entity: nil, config: [:], tags: [], notes: nil, group: nil, rows: [(0, ["loss": .double(1)])],
                          console: [], samples: 0, file: nil, summary: [:], exitCode: 0)
        let bad = "runlog-" + String(repeating: "x", count: 48)
        let r = try WPProcess.run(binary, ["sync", "--protocol", "wandb", "--server", "http://127.0.0.1:\(server.port)", "--api-key", bad, "--json", dir],
                                  environment: ["RUNLOG_CONFIG_DIR": root + "/config"])
        #expect(r.status == 2, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stdout.contains("\"event\":\"failed\""))
        #expect(WandbPushCursor.load(directory: dir, server: "http://127.0.0.1:\(server.port)") == nil)
    }

    @Test("through a proxy that answers 500 and 429, resets connections and drops answers: still everything once")
    func pushThroughFaults() async throws {
        let binary = try WPBinary.path()
        let root = NSTemporaryDirectory() + "wandb-push-faults-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let database = root + "/server.sqlite"
        let key = try WPProcess.run(binary, ["server", "create-key", "--entity", Self.entity, "--database", database]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let server = try await WPServer.start(binary: binary, database: database, logDirectory: root)
        defer { server.stop() }
        let api = WPAPI(base: "http://127.0.0.1:\(server.port)", key: key)
        // Every other request or so goes wrong; a request never fails more than 3 times in a row.
        let proxy = try WPFaultProxy(upstreamPort: UInt16(server.port),
                                     schedule: [.none, .status500, .dropResponse, .none, .tooMany, .reset, .none, .dropResponse, .status500, .none, .none])
        defer { proxy.stop() }

        let runs = root + "/runs/" + Self.project
        let a = runs + "/alpha", b = runs + "/bravo"
        try Self.writeRun(a, id: "alpha", entity: Self.entity, config: ["lr": .double(0.1)], tags: ["faulty"], notes: nil, group: nil,
                          rows: (Int64(0)..<200).map { s in (s, ["loss": .double(s == 50 ? .nan : 1 / Double(s + 1)), "x": .int(s)]) },
                          console: [(.stdout, "one"), (.stdout, "two"), (.stdout, "three"), (.stdout, "four")], samples: 3,
                          file: ("notes.txt", Data("saved\n".utf8)), summary: ["loss": .double(0.005)], exitCode: 0)
        var meta = try RunDirectory.reader(a).state().metadata
        meta["id"] = "bravo"
        try RunDirectory.fork(source: a, atStep: 100, to: b, metadata: RunMetadata(meta))
        try Self.append(b, rows: (Int64(101)..<150).map { s in (s, ["loss": .double(2), "x": .int(-s)]) }, console: [(.stdout, "fork")], exitCode: 0)

        func push(_ url: String) throws -> String {
            let r = try WPProcess.run(binary, ["sync", "--protocol", "wandb", "--server", url, "--api-key", key, "--json", a, b],
                                      environment: ["RUNLOG_WANDB_BATCH_BYTES": "2048", "RUNLOG_WANDB_RETRIES": "10", "RUNLOG_WANDB_RETRY_DELAY": "0.01",
                                                    "RUNLOG_CONFIG_DIR": root + "/config"])
            #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
            return r.stdout
        }
        let out = try push(proxy.baseURL)
        #expect(out.contains("\"event\":\"retrying\""), "no fault was retried: \(out)")
        #expect(proxy.faults > 10, "\(proxy.faults) faults injected")
        for dir in [a, b] { try await Self.verify(dir, api: api) }
        #expect(try await api.consoleLines("alpha").map(\.text) == ["one", "two", "three", "four"])
        #expect(try await api.file("alpha", "notes.txt") == Data("saved\n".utf8))

        // Straight to the server: a URL without a cursor, so everything is sent again, at the
        // same offsets, and the server keeps one copy of each line.
        let direct = try push(api.base)
        #expect(direct.contains("\"created\":false"))
        for dir in [a, b] { try await Self.verify(dir, api: api) }
        #expect(try await api.consoleLines("alpha").map(\.text) == ["one", "two", "three", "four"])
        #expect(try await api.consoleLines("bravo").filter { $0.text == "fork" }.count == 1)
        #expect(try await api.systemSamples("alpha") == 3)

        // A rewind after the push, through the faults too.
        let w = try LogWriter.open(directory: a)
        try w.rewind(toStep: 150)
        for s in Int64(151)..<180 { try w.appendRow(step: s, timestamp: Self.t0 + 500_000 + s * 1000, values: ["loss": .double(7), "x": .int(s * 10)]) }
        try w.append(.console(ConsoleLine(stream: .stdout, timestamp: Self.t0 + 600_000, text: "after the rewind")))
        try w.append(.exit(ExitRecord(state: "finished", exitCode: 0, runtime: 30, timestamp: Self.t0 + 600_000)))
        try w.close()
        let rewound = try push(proxy.baseURL)
        #expect(rewound.contains("\"rewound_to\":150"), "\(rewound)")
        for dir in [a, b] { try await Self.verify(dir, api: api) }
        #expect(try await api.consoleLines("alpha").map(\.text) == ["one", "two", "three", "four", "after the rewind"])
        #expect(try await api.systemSamples("alpha") == 3)
    }

    @Test("--live follows a run being written and completes it when its writer closes")
    func followLiveRun() async throws {
        let binary = try WPBinary.path()
        let root = NSTemporaryDirectory() + "wandb-push-live-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let database = root + "/server.sqlite"
        let key = try WPProcess.run(binary, ["server", "create-key", "--entity", Self.entity, "--database", database]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let server = try await WPServer.start(binary: binary, database: database, logDirectory: root)
        defer { server.stop() }
        let api = WPAPI(base: "http://127.0.0.1:\(server.port)", key: key)

        let dir = root + "/runs/live"
        let w = try LogWriter.open(directory: dir)  // this process holds the run open: it is live
        try w.append(.runMetadata(RunMetadata(["id": "live", "project": .string(Self.project), "start_time": .int(Self.t0)])))
        for s in Int64(0)..<10 { try w.appendRow(step: s, timestamp: Self.t0 + s * 1000, values: ["loss": .double(Double(s))]) }
        _ = try w.flush()

        let child = Process()
        child.executableURL = URL(fileURLWithPath: binary)
        child.arguments = ["sync", "--protocol", "wandb", "--live", "--server", api.base, "--api-key", key, "--json", dir]
        child.environment = ProcessInfo.processInfo.environment.merging(
            ["RUNLOG_WANDB_POLL_INTERVAL": "0.2", "RUNLOG_CONFIG_DIR": root + "/config"]) { _, new in new }
        let outPath = root + "/sync.out"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        child.standardOutput = FileHandle(forWritingAtPath: outPath)
        child.standardError = FileHandle(forWritingAtPath: outPath)
        try child.run()
        defer { if child.isRunning { kill(child.processIdentifier, SIGKILL) } }

        func rows() async -> Int64 {
            guard let (status, data) = try? await api.get("/api/v1/runs/\(Self.entity)/\(Self.project)/live"), status == 200,
                  let v = try? WandbJSON.parse(String(decoding: data, as: UTF8.self)) else { return -1 }
            return v["history_rows"]?.intValue ?? -1
        }
        func waitFor(_ n: Int64) async -> Bool {
            for _ in 0..<200 {
                if await rows() == n { return true }
                try? await Task.sleep(for: .milliseconds(100))
            }
            return false
        }
        #expect(await waitFor(10), "the first rows did not arrive")
        #expect(try await api.run("live")["state"]?.stringValue == "running")
        for s in Int64(10)..<25 { try w.appendRow(step: s, timestamp: Self.t0 + s * 1000, values: ["loss": .double(Double(s))]) }
        _ = try w.flush()
        #expect(await waitFor(25), "the rows written while following did not arrive")
        try w.append(.exit(ExitRecord(state: "finished", exitCode: 0, runtime: 3, timestamp: Self.t0 + 50_000)))
        try w.close()
        for _ in 0..<300 where child.isRunning { try await Task.sleep(for: .milliseconds(100)) }
        #expect(!child.isRunning, "runlog sync --live did not stop after the run ended")
        child.waitUntilExit()
        #expect(child.terminationStatus == 0, "\((try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "")")
        try await Self.verify(dir, api: api)
        #expect(try await api.run("live")["state"]?.stringValue == "finished")
    }

    // MARK: Writing runs

    static func id(_ dir: String) -> String { (dir as NSString).lastPathComponent }

    static func writeRun(_ dir: String, id: String, entity: String?, config: [String: Value], tags: [String], notes: String?, group: String?,
                         rows: [(Int64, [String: Value])], console: [(ConsoleLine.Stream, String)], samples: Int,
                         file: (String, Data)?, summary: [String: Value], exitCode: Int64?) throws {
        let w = try LogWriter.open(directory: dir)
        var meta: [String: Value] = ["id": .string(id), "project": .string(project), "name": .string(id + "-display"),
                                     "host": "testhost", "program": "train.swift", "start_time": .int(t0), "job_type": "train"]
        if let entity { meta["entity"] = .string(entity) }
        if let notes { meta["notes"] = .string(notes) }
        if let group { meta["group"] = .string(group) }
        try w.append(.runMetadata(RunMetadata(meta)))
        try w.append(.config(ConfigChange(values: config)))
        try w.append(.tags(tags))
        for (i, line) in console.enumerated() where i < console.count / 2 {
            try w.append(.console(ConsoleLine(stream: line.0, timestamp: t0 + Int64(i) * 10, text: line.1)))
        }
        for (step, values) in rows { try w.appendRow(step: step, timestamp: t0 + step * 1000 + 250, values: values) }
        for (i, line) in console.enumerated() where i >= console.count / 2 {
            try w.append(.console(ConsoleLine(stream: line.0, timestamp: t0 + 90_000 + Int64(i) * 10, text: line.1)))
        }
        for i in 0..<samples {
            try w.append(.systemMetrics(SystemSample(timestamp: t0 + Int64(i) * 15_000, values: ["system.cpu": .double(10 + Double(i)), "system.memory": .double(40)])))
        }
        if let (name, data) = file {
            let path = dir + "/files/" + name
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try data.write(to: URL(fileURLWithPath: path))
            try w.append(.file(FileReference(path: name, size: Int64(data.count), digest: "crc32c:" + String(CRC32C.checksum(Array(data)), radix: 16),
                                             policy: "now", timestamp: t0 + 95_000)))
        }
        try w.append(.summary(SummaryChange(values: summary)))
        if let exitCode {
            try w.append(.exit(ExitRecord(state: exitCode == 0 ? "finished" : "failed", exitCode: exitCode, runtime: 12.5, timestamp: t0 + 99_000)))
        }
        try w.close()
    }

    static func append(_ dir: String, rows: [(Int64, [String: Value])], console: [(ConsoleLine.Stream, String)] = [], config: [String: Value] = [:],
                       tags: [String]? = nil, summary: [String: Value] = [:], resume: Bool = false, exitCode: Int64) throws {
        let w = try LogWriter.open(directory: dir)
        let t = t0 + 100_000 + (rows.first?.0 ?? 0) * 1000
        if resume { try w.append(.resume(ResumeMarker(reason: "resume", nextStep: rows.first?.0 ?? 0, timestamp: t))) }
        if !config.isEmpty { try w.append(.config(ConfigChange(values: config))) }
        if let tags { try w.append(.tags(tags)) }
        for (i, line) in console.enumerated() { try w.append(.console(ConsoleLine(stream: line.0, timestamp: t + Int64(i), text: line.1))) }
        for (step, values) in rows { try w.appendRow(step: step, timestamp: t0 + 100_000 + step * 1000, values: values) }
        if !summary.isEmpty { try w.append(.summary(SummaryChange(values: summary))) }
        try w.append(.exit(ExitRecord(state: exitCode == 0 ? "finished" : "failed", exitCode: exitCode, runtime: 20, timestamp: t + 90_000)))
        try w.close()
    }

    // MARK: Pushing

    struct PushResult {
        var output: String
        var finished: [Value]
    }

    /// Runs `runlog sync --protocol wandb` with requests of at most 4 KiB of lines.
    static func push(_ binary: String, server: String, key: String, _ dirs: [String]) throws -> PushResult {
        let r = try WPProcess.run(binary, ["sync", "--protocol", "wandb", "--server", server, "--api-key", key, "--json", "--jobs", "2"] + dirs,
                                  environment: ["RUNLOG_WANDB_BATCH_BYTES": "4096", "RUNLOG_CONFIG_DIR": NSTemporaryDirectory() + "wandb-push-config"])
        #expect(r.status == 0, "runlog sync --protocol wandb failed (\(r.status)):\n\(r.stdout)\n\(r.stderr)")
        let lines = r.stdout.split(separator: "\n").compactMap { try? WandbJSON.parse(String($0)) }
        return PushResult(output: r.stdout + r.stderr, finished: lines.filter { $0["event"]?.stringValue == "finished" })
    }

    // MARK: Checking

    /// The server holds the run as the local log has it: every live row once (steps and the
    /// values of every metric), config, summary, tags, state, fork lineage, saved files.
    static func verify(_ dir: String, api: WPAPI) async throws {
        let reader = try RunDirectory.reader(dir)
        defer { reader.close() }
        let local = try reader.contents()
        let id = Self.id(dir)
        let remote = try await api.run(id)
        #expect(remote["history_rows"]?.intValue == Int64(local.history.count), "\(id): history_rows")
        #expect(remote["last_step"]?.intValue == local.history.last?.step, "\(id): last_step")
        #expect(remote["tags"] == .array(local.tags.map(Value.string)), "\(id): tags")
        #expect(remote["name"]?.stringValue == local.metadata["name"]?.stringValue ?? id, "\(id): display name")
        #expect(remote["notes"]?.stringValue == local.metadata["notes"]?.stringValue, "\(id): notes")
        #expect(remote["group"]?.stringValue == local.metadata["group"]?.stringValue, "\(id): group")
        for (k, v) in local.config {
            #expect(WPCompare.same(v, remote["config"]?[k]), "\(id): config \(k): \(v) vs \(remote["config"]?[k] ?? .null)")
        }
        for (k, v) in local.summary {
            #expect(WPCompare.same(v, remote["summary"]?[k]), "\(id): summary \(k): \(v) vs \(remote["summary"]?[k] ?? .null)")
        }
        if let exit = local.exit { #expect(remote["state"]?.stringValue == exit.state, "\(id): state") }
        if let f = local.forkOrigin {
            #expect(remote["fork"]?["source"]?.stringValue == f.sourceID, "\(id): fork source")
        } else {
            #expect(remote["fork"] == .null, "\(id): no fork")
        }
        for ref in local.events.compactMap({ if case .file(let f) = $0 { f } else { nil } }) where FileManager.default.fileExists(atPath: dir + "/files/" + ref.path) {
            let held = remote["files"]?.arrayValue?.filter { $0["path"]?.stringValue == ref.path } ?? []
            #expect(held.count == 1 && held.first?["size"]?.intValue == ref.size, "\(id): file \(ref.path): \(held)")
        }
        // Every metric, every live row, once.
        let metrics = Set(local.history.flatMap { $0.values.keys })
        for m in metrics.sorted() {
            let rows = local.history.filter { $0.values[m] != nil }
            let h = try await api.history(id, m)
            #expect(h.steps == rows.map(\.step), "\(id): \(m) steps")
            guard h.steps.count == rows.count else { continue }
            for (i, row) in rows.enumerated() where !WPCompare.same(row.values[m]!, h.values[i]) {
                Issue.record("\(id): \(m) at step \(row.step): local \(row.values[m]!) server \(h.values[i])")
                break
            }
        }
    }
}

// MARK: - Helpers (file-private: other suites in this target have their own)

private enum WPCompare {
    /// Whether a local value and one read back from the server are the same: numbers by value
    /// (the server keeps integers as doubles), non-finite doubles as `"NaN"`/`"Infinity"`.
    static func same(_ local: Value, _ remote: Value?) -> Bool {
        guard let remote else { return false }
        switch (local, remote) {
        case (.double(let d), _) where d.isNaN: return remote == .string("NaN") || (remote.doubleValue?.isNaN ?? false)
        case (.double(let d), _) where d.isInfinite: return remote == .string(d > 0 ? "Infinity" : "-Infinity") || remote.doubleValue == d
        case (.int, _), (.double, _): return local.doubleValue == remote.doubleValue
        case (.array(let a), .array(let b)): return a.count == b.count && zip(a, b).allSatisfy { same($0, $1) }
        case (.object(let a), .object(let b)): return a.count == b.count && a.allSatisfy { same($0.value, b[$0.key]) }
        default: return local == remote
        }
    }
}

/// The server's JSON read API, with a Bearer key.
struct WPAPI: Sendable {
    let base: String
    let key: String

    func get(_ path: String) async throws -> (Int, Data) {
        var request = URLRequest(url: URL(string: base + path)!)
        request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization")
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, data)
    }

    func json(_ path: String) async throws -> Value {
        let (status, data) = try await get(path)
        try #require(status == 200, "GET \(path): \(status) \(String(decoding: data.prefix(300), as: UTF8.self))")
        return try WandbJSON.parse(String(decoding: data, as: UTF8.self))
    }

    func run(_ id: String) async throws -> Value {
        try await json("/api/v1/runs/\(WandbPushTests.entity)/\(WandbPushTests.project)/\(id)")
    }

    func history(_ id: String, _ metric: String) async throws -> (steps: [Int64], values: [Value]) {
        let m = metric.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? metric
        let v = try await json("/api/v1/runs/\(WandbPushTests.entity)/\(WandbPushTests.project)/\(id)/history?metrics=\(m)&points=100000")
        let series = v["metrics"]?[metric]
        let steps = series?["steps"]?.arrayValue?.compactMap { $0.intValue ?? $0.doubleValue.map { Int64($0) } } ?? []
        return (steps, series?["values"]?.arrayValue ?? [])
    }

    func file(_ id: String, _ name: String) async throws -> Data {
        var c = URLComponents()
        c.queryItems = [URLQueryItem(name: "e", value: WandbPushTests.entity), URLQueryItem(name: "p", value: WandbPushTests.project),
                        URLQueryItem(name: "r", value: id), URLQueryItem(name: "f", value: name)]
        let (status, data) = try await get("/storage/run?" + (c.percentEncodedQuery ?? ""))
        try #require(status == 200, "GET file \(name): \(status)")
        return data
    }

    /// The records the server stored for a run, from its frames.
    func records(_ id: String) async throws -> [Record] {
        var out: [Record] = []
        var after: UInt64 = 0
        while true {
            let (status, data) = try await get("/api/v1/runs/\(WandbPushTests.entity)/\(WandbPushTests.project)/\(id)/frames?after=\(after)&limit=1024")
            try #require(status == 200)
            let frames = try FrameCodec.split(Array(data))
            guard let last = frames.last else { return out }
            for f in frames { out += try FrameCodec.records(of: f) }
            after = last.header.sequence
        }
    }

    func consoleLines(_ id: String) async throws -> [ConsoleLine] {
        try await records(id).compactMap { if case .console(let c) = $0 { c } else { nil } }
    }

    func systemSamples(_ id: String) async throws -> Int {
        try await records(id).filter { if case .systemMetrics = $0 { true } else { false } }.count
    }
}

private extension Array {
    func asyncMap<T>(_ f: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        for e in self { out.append(try await f(e)) }
        return out
    }
}

/// The `runlog` executable beside the test bundle (what `swift build` makes), or `RUNLOG_BINARY`.
private enum WPBinary {
    static func path() throws -> String {
        var candidates: [String] = []
        if let env = ProcessInfo.processInfo.environment["RUNLOG_BINARY"], !env.isEmpty { candidates.append(env) }
        for start in [CommandLine.arguments.first ?? "", Bundle.main.bundlePath, Bundle.main.executablePath ?? ""] where !start.isEmpty {
            var dir = URL(fileURLWithPath: start).resolvingSymlinksInPath()
            for _ in 0..<6 {
                dir = dir.deletingLastPathComponent()
                candidates.append(dir.appendingPathComponent("runlog").path)
            }
        }
        for c in candidates {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: c, isDirectory: &isDirectory), !isDirectory.boolValue,
               FileManager.default.isExecutableFile(atPath: c) { return c }
        }
        try Test.cancel("no runlog executable beside the tests (build it with `swift build`, or set RUNLOG_BINARY)")
    }
}

/// Runs a program to completion with a time limit.
private enum WPProcess {
    final class Box: @unchecked Sendable {
        let lock = NSLock()
        var data = Data()
        var done = false
    }

    static func run(_ path: String, _ arguments: [String], environment: [String: String] = [:], timeout: Double = 120) throws
        -> (status: Int32, stdout: String, stderr: String)
    {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = arguments
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let o = Box(), e = Box()
        for (pipe, box) in [(out, o), (err, e)] {
            Thread.detachNewThread {
                let d = pipe.fileHandleForReading.readDataToEndOfFile()
                box.lock.withLock { box.data = d; box.done = true }
            }
        }
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning {
            if Date() > deadline {
                kill(p.processIdentifier, SIGKILL)
                p.waitUntilExit()
                throw WPTimeout(command: ([path] + arguments).joined(separator: " "))
            }
            usleep(10_000)
        }
        p.waitUntilExit()
        while !(o.lock.withLock { o.done } && e.lock.withLock { e.done }) { usleep(2_000) }
        return (p.terminationStatus, String(decoding: o.data, as: UTF8.self), String(decoding: e.data, as: UTF8.self))
    }
}

private struct WPTimeout: Error, CustomStringConvertible {
    var command: String
    var description: String { "timed out: \(command)" }
}

/// A `runlog server` process on a free port.
private final class WPServer: @unchecked Sendable {
    let process: Process
    let port: Int

    private init(process: Process, port: Int) {
        self.process = process
        self.port = port
    }

    static func start(binary: String, database: String, logDirectory: String) async throws -> WPServer {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = ["server", "--database", database, "--host", "127.0.0.1", "--port", "0"]
        let logPath = logDirectory + "/server.log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle(forWritingAtPath: logPath)
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let port: Int = try await withCheckedThrowingContinuation { (cont: CheckedContinuation<Int, any Error>) in
            Thread.detachNewThread {
                var buffer = ""
                while true {
                    let chunk = out.fileHandleForReading.availableData
                    if chunk.isEmpty {
                        cont.resume(throwing: WPTimeout(command: "runlog server exited: " + ((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "")))
                        return
                    }
                    buffer += String(decoding: chunk, as: UTF8.self)
                    if let range = buffer.range(of: #"listening on http://[^:]+:(\d+)"#, options: .regularExpression),
                       let port = Int(buffer[range].split(separator: ":").last ?? "") {
                        cont.resume(returning: port)
                        while !out.fileHandleForReading.availableData.isEmpty {}
                        return
                    }
                }
            }
        }
        return WPServer(process: p, port: port)
    }

    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}

/// An HTTP proxy that misbehaves on a fixed schedule, one request per connection: answers
/// 500 or 429 (`Retry-After: 0`) itself, resets the connection before forwarding, or forwards
/// and then drops the server's answer (the server did the work; the client does not know).
final class WPFaultProxy: @unchecked Sendable {
    enum Fault: Sendable { case none, status500, tooMany, reset, dropResponse }

    let port: UInt16
    let upstreamPort: UInt16
    private let schedule: [Fault]
    private let listenFD: Int32
    private let lock = NSLock()
    private var next = 0
    private var injected = 0
    private var stopped = false

    init(upstreamPort: UInt16, schedule: [Fault]) throws {
        self.upstreamPort = upstreamPort
        self.schedule = schedule
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard fd >= 0, bound == 0, listen(fd, 64) == 0 else { close(fd); throw WPTimeout(command: "proxy bind/listen") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        port = UInt16(bigEndian: addr.sin_port)
        listenFD = fd
        Thread.detachNewThread { [self] in
            while true {
                let client = accept(listenFD, nil, nil)
                if client < 0 { if errno == EINTR { continue }; return }
                if lock.withLock({ stopped }) { close(client); return }
                Thread.detachNewThread { [self] in handle(client) }
            }
        }
    }

    var baseURL: String { "http://127.0.0.1:\(port)" }
    var faults: Int { lock.withLock { injected } }

    func stop() {
        let first = lock.withLock { () -> Bool in defer { stopped = true }; return !stopped }
        guard first else { return }
        shutdown(listenFD, Int32(SHUT_RDWR))
        close(listenFD)
    }

    deinit { stop() }

    private func handle(_ client: Int32) {
        guard let (head, body) = readMessage(client, request: true) else { close(client); return }
        let fault = lock.withLock { () -> Fault in
            defer { next += 1 }
            let f = schedule[next % schedule.count]
            if f != .none { injected += 1 }
            return f
        }
        switch fault {
        case .status500, .tooMany:
            let text = fault == .status500 ? "500 Internal Server Error" : "429 Too Many Requests"
            let answer = "HTTP/1.1 \(text)\r\nRetry-After: 0\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
            _ = sendAll(client, Array(answer.utf8))
            shutdown(client, Int32(SHUT_WR))
            close(client)
            return
        case .reset:
            reset(client)
            return
        case .none, .dropResponse:
            break
        }
        let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = upstreamPort.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard connected == 0, sendAll(upstream, Array(Self.closing(head).utf8) + body), let (rhead, rbody) = readMessage(upstream, request: false) else {
            close(upstream)
            reset(client)
            return
        }
        close(upstream)
        if fault == .dropResponse {
            reset(client)
            return
        }
        _ = sendAll(client, Array(Self.closing(rhead).utf8) + rbody)
        shutdown(client, Int32(SHUT_WR))
        close(client)
    }

    /// A head with `Connection: close` (and no `Expect`), ending in the blank line.
    private static func closing(_ head: String) -> String {
        let lines = head.split(separator: "\r\n", omittingEmptySubsequences: false).enumerated().filter { i, line in
            i == 0 || !["connection", "keep-alive", "expect"].contains(line.split(separator: ":").first?.lowercased() ?? "")
        }.map { String($0.1) }
        return (lines + ["Connection: close"]).joined(separator: "\r\n") + "\r\n\r\n"
    }

    /// Reads a head and `Content-Length` bytes of body (answering `Expect: 100-continue`).
    private func readMessage(_ fd: Int32, request: Bool) -> (String, [UInt8])? {
        var tv = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        var split: Int?
        while split == nil {
            let n = recv(fd, &chunk, chunk.count, 0)
            if n <= 0 { return nil }
            buffer += chunk[..<n]
            if buffer.count >= 4 {
                split = (0...(buffer.count - 4)).first { buffer[$0] == 13 && buffer[$0 + 1] == 10 && buffer[$0 + 2] == 13 && buffer[$0 + 3] == 10 }
            }
        }
        let head = String(decoding: buffer[..<split!], as: UTF8.self)
        var body = Array(buffer[(split! + 4)...])
        var length = 0
        for line in head.split(separator: "\r\n").dropFirst() {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let name = parts[0].lowercased(), value = parts[1].trimmingCharacters(in: .whitespaces)
            if name == "content-length" { length = Int(value) ?? 0 }
            if request, name == "expect", value.lowercased() == "100-continue" {
                guard sendAll(fd, Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)) else { return nil }
            }
        }
        while body.count < length {
            let n = recv(fd, &chunk, min(chunk.count, length - body.count), 0)
            if n <= 0 { return nil }
            body += chunk[..<n]
        }
        return (head, body)
    }

    private func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    private func reset(_ fd: Int32) {
        var l = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
        close(fd)
    }
}
