import Foundation
import RunLogStore
import RunLogTestSupport
import Testing
@testable import RunLog

// The Run handle's API: log, config, summary, mutable metadata, files, flush, finish and the
// scoped `Run.with`. Everything is checked in the log as a reader sees it.

@Suite("Run API", .sharedProcessState)
struct RunAPITests {

    // MARK: log

    @Test("log without a step: one row per call at steps 0, 1, 2, ...")
    func implicitSteps() throws {
        let tmp = RunTestDir()
        let run = try startRun(in: tmp)
        try run.log(["loss": 0.9, "acc": 0.1])
        try run.log(["loss": 0.5])
        try run.log(["loss": 0.2, "acc": 0.8])
        #expect(run.step == 3)
        try run.finish()
        let c = try contents(run)
        #expect(c.steps == [0, 1, 2])
        #expect(c.history.map(\.values) == [["loss": 0.9, "acc": 0.1], ["loss": 0.5], ["loss": 0.2, "acc": 0.8]])
    }

    @Test("log with a step: accumulates until a higher step arrives (or flush/finish), then commits")
    func explicitStep() throws {
        let tmp = RunTestDir()
        let run = try startRun(in: tmp)
        try run.log(["loss": 0.5], step: 5)
        #expect(run.step == 5)
        try run.log(["acc": 0.7], step: 5)
        #expect(run.summary["acc"] == nil)  // still pending: not appended yet
        try run.log(["loss": 0.4], step: 7)
        #expect(run.summary["acc"] == .double(0.7))  // step 5 was committed
        try run.log(["loss": 0.3], step: 8, commit: true)  // committed at once
        #expect(run.step == 9)
        try run.log(["lr": 0.1])  // no step: continues at 9
        try run.finish()
        let c = try contents(run)
        #expect(c.steps == [5, 7, 8, 9])
        #expect(c.history[0].values == ["loss": 0.5, "acc": 0.7])
        #expect(c.history[1].values == ["loss": 0.4])
        #expect(c.history[3].values == ["lr": 0.1])
    }

    @Test("log with commit: false accumulates into one row; the next committing log or flush writes it")
    func commitFalse() throws {
        let tmp = RunTestDir()
        let run = try startRun(in: tmp)
        try run.log(["a": 1], commit: false)
        try run.log(["b": 2], commit: false)
        try run.log(["a": 10], commit: false)  // a later value of the same key wins
        #expect(run.step == 0)
        try run.log(["c": 3])
        #expect(run.step == 1)
        try run.log(["d": 4.0], commit: false)
        try run.flush()
        #expect(run.step == 2)
        try run.log(["e": 5.0], commit: false)
        try run.finish()  // the pending row is committed at finish too
        let c = try contents(run)
        #expect(c.steps == [0, 1, 2])
        #expect(c.history[0].values == ["a": 10, "b": 2, "c": 3])
        #expect(c.history[1].values == ["d": 4.0])
        #expect(c.history[2].values == ["e": 5.0])
    }

    @Test("log at a lower step: dropped, never silently: a warning, and dropped_steps in the metadata")
    func lowerStepDropped() throws {
        let tmp = RunTestDir()
        let recorder = LogRecorder()
        let run = try startRun(in: tmp, logger: recorder.logger)
        try run.log(["loss": 1], step: 5, commit: true)
        try run.log(["loss": 9], step: 3)
        try run.log(["loss": 8.0], step: 0, commit: true)
        #expect(run.droppedSteps == 2)
        #expect(run.step == 6)
        try run.log(["loss": 0.5])
        try run.flush()
        // Recorded before finish, so a killed run keeps the count too.
        #expect(try contents(run).metadata["dropped_steps"] == .int(2))
        try run.finish()
        let c = try contents(run)
        #expect(c.steps == [5, 6])
        #expect(c.series("loss") == [1, 0.5])
        let warnings = recorder.all.filter { $0.level == .warning && $0.message.contains("dropped") }
        #expect(warnings.count == 2)
        #expect(warnings.first?.metadata["step"] == "3")
        #expect(warnings.first?.metadata["current"] == "6")
    }

    @Test("log at a lower step with strictSteps: a usage error, nothing written")
    func strictSteps() throws {
        let tmp = RunTestDir()
        let run = try startRun(in: tmp, settings: .test { $0.strictSteps = true })
        try run.log(["loss": 1], step: 5, commit: true)
        expectRunLogError(.usage, "lower than the current step 6") { try run.log(["loss": 2], step: 4) }
        try run.log(["loss": 3.0], step: 6)
        try run.finish()
        let c = try contents(run)
        #expect(c.steps == [5, 6])
        #expect(c.series("loss") == [1, 3.0])
        #expect(c.metadata["dropped_steps"] == nil)
    }

    @Test("log takes numbers, strings, bools, arrays and nested dictionaries")
    func logValueTypes() throws {
        let tmp = RunTestDir()
        let run = try startRun(in: tmp)
        try run.log([
            "int": 3, "float": Float(0.5), "text": "hello", "flag": true, "list": [1, 2, 3],
            "nested": ["a": 1.5, "b": 2.5], "nan": Double.nan,
        ] as [String: any ValueConvertible])
        try run.log(["v": .object(["deep": .array([.null, .string("x")])])] as [String: Value])
        try run.finish()
        let c = try contents(run)
        let row = c.history[0].values
        #expect(row["int"] == .int(3))
        #expect(row["float"] == .double(0.5))
        #expect(row["text"] == "hello")
        #expect(row["flag"] == true)
        #expect(row["list"] == [1, 2, 3])
        #expect(row["nested"] == ["a": 1.5, "b": 2.5])
        #expect(row["nan"]?.doubleValue?.isNaN == true)
        #expect(c.history[1].values["v"] == .object(["deep": .array([.null, .string("x")])]))
    }

    @Test("log with an empty metric name or an oversize value: a usage error, on every path")
    func logInvalid() throws {
        let tmp = RunTestDir()
        let run = try startRun(in: tmp)
        expectRunLogError(.usage, "must not be empty") { try run.log(["": 1.0]) }  // the [String: Double] fast path
        expectRunLogError(.usage, "must not be empty") { try run.log(["": "x"] as [String: any ValueConvertible]) }
        expectRunLogError(.usage, "smaller than 10 MB") {
            try run.log(["blob": .string(longString(RunConfig.maxValueBytes))] as [String: Value])
        }
        try run.finish()
        #expect(try contents(run).history.isEmpty)
    }

    @Test("log from several threads at once: every row kept, steps unique and ascending in log order")
    func concurrentLogging() throws {
        let tmp = RunTestDir()
        let run = try startRun(in: tmp, settings: .test { $0.flushInterval = .milliseconds(5) })
        let threads = 4, rows = 2_000
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            for i in 0..<rows {
                if i % 2 == 0 {
                    try? run.log(["t\(t)": Double(i)])
                } else {
                    try? run.log(["t\(t)": .double(Double(i))] as [String: Value])
                }
            }
        }
        try run.finish()
        let c = try contents(run)
        #expect(c.history.count == threads * rows)
        #expect(c.steps == Array(0..<Int64(threads * rows)), "rows are out of step order in the log")
        for t in 0..<threads { #expect(c.series("t\(t)").count == rows) }
    }

    // MARK: config

    @Test("config: subscript, set, update, values and remove, each change recorded")
    func configAPI() throws {
        let tmp = RunTestDir()
        let run = try startRun(in: tmp, config: ["lr": 0.1])
        #expect(run.config["lr"]?.doubleValue == 0.1)
        #expect(run.config["missing"] == nil)
        try run.config.set("depth", 34)
        try run.config.update(["arch": "resnet", "widths": [64, 128]])
        try run.config.update(["aug": ["flip": true]] as [String: Value])
        try run.config.remove("widths")
        try run.config.remove("never-set")
        #expect(run.config.values == ["lr": 0.1, "depth": 34, "arch": "resnet", "aug": ["flip": true]])
        try run.flush()
        #expect(try contents(run).config == run.config.values)
        try run.finish()
        #expect(try contents(run).config == ["lr": 0.1, "depth": 34, "arch": "resnet", "aug": ["flip": true]])
    }

    @Test("config.update: a changed value without allowValChange applies nothing of the update")
    func configAtomicUpdate() throws {
        let tmp = RunTestDir()
        let run = try startRun(in: tmp, config: ["lr": 0.001])
        let error = expectRunLogError(.usage, "Attempted to change value of key \"lr\" from 0.001 to 0.01") {
            try run.config.update(["lr": 0.01, "new": 1])
        }
        #expect(error?.message.contains("allowValChange") == true)
        #expect(run.config.values == ["lr": 0.001])
        expectRunLogError(.usage, "dotted keys") { try run.config.update(["a.b": 1, "ok": 2]) }
        expectRunLogError(.usage, "dotted keys") { try run.config.set("nested", ["x.y": 1] as [String: Int]) }
        #expect(run.config.values == ["lr": 0.001])
        try run.finish()
        #expect(try contents(run).config == ["lr": 0.001])
    }

    // MARK: summary

    @Test("summary: each metric's last value by default")
    func summaryLast() throws {
        let tmp = RunTestDir()
        let run = try startRun(in: tmp)
        for loss in [0.9, 0.2, 0.5] { try run.log(["loss": loss]) }
        try run.log(["acc": .double(0.75), "name": "x"] as [String: Value])
        #expect(run.summary["loss"] == .double(0.5))
        #expect(run.summary["acc"] == .double(0.75))
        try run.finish()
        let c = try contents(run)
        #expect(c.summary["loss"] == .double(0.5))
        #expect(c.summary["acc"] == .double(0.75))
        #expect(c.summary["name"] == "x")
    }

    @Test("summary: define picks min, max or mean (both logging paths)")
    func summaryAggregations() throws {
        let tmp = RunTestDir()
        let run = try startRun(in: tmp)
        run.summary.define("loss", summary: .min)
        run.summary.define("acc", summary: .max)
        run.summary.define("lr", summary: .mean)
        run.summary.define("epoch", summary: .last)
        let rows: [(Double, Double, Double)] = [(0.9, 0.1, 0.3), (0.2, 0.8, 0.2), (0.5, 0.6, 0.1)]
        for (i, (loss, acc, lr)) in rows.enumerated() {
            if i == 1 {
                try run.log(["loss": .double(loss), "acc": .double(acc), "lr": .double(lr), "epoch": .int(Int64(i))] as [String: Value])
            } else {
                try run.log(["loss": loss, "acc": acc, "lr": lr, "epoch": Double(i)])
            }
        }
        #expect(run.summary["loss"] == .double(0.2))
        #expect(run.summary["acc"] == .double(0.8))
        #expect(run.summary["lr"]?.doubleValue.map { abs($0 - 0.2) < 1e-12 } == true)
        #expect(run.summary["epoch"] == .double(2))
        try run.finish()
        let c = try contents(run)
        #expect(c.summary["loss"] == .double(0.2))
        #expect(c.summary["acc"] == .double(0.8))
        #expect(c.summary["lr"]?.doubleValue.map { abs($0 - 0.2) < 1e-12 } == true)
        #expect(c.summary["epoch"] == .double(2))
    }

    @Test("summary: an explicit value wins over the logged one until removed; logging brings a removed key back")
    func summaryExplicit() throws {
        let tmp = RunTestDir()
        let run = try startRun(in: tmp)
        try run.log(["loss": 0.9])
        try run.summary.set("loss", 0.05)
        try run.summary.update(["best_epoch": 3, "note": "converged"])
        try run.log(["loss": 0.5])
        #expect(run.summary["loss"] == .double(0.05))
        try run.flush()
        #expect(try contents(run).summary["loss"] == .double(0.05))
        #expect(try contents(run).summary["best_epoch"] == .int(3))

        run.summary.remove("note")
        run.summary.remove("loss")
        #expect(run.summary["loss"] == nil)
        #expect(run.summary["note"] == nil)
        try run.flush()
        #expect(try contents(run).summary["loss"] == nil)
        #expect(try contents(run).summary["note"] == nil)

        try run.log(["loss": 0.25])  // [String: Double]
        #expect(run.summary["loss"] == .double(0.25))
        run.summary.remove("loss")
        try run.log(["loss": .double(0.125)] as [String: Value])
        #expect(run.summary["loss"] == .double(0.125))
        try run.finish()
        let c = try contents(run)
        #expect(c.summary["loss"] == .double(0.125))
        #expect(c.summary["best_epoch"] == .int(3))
        #expect(c.summary["note"] == nil)
    }

    @Test("summary: a value of 10 MB or more is a usage error")
    func summaryTooLarge() throws {
        let tmp = RunTestDir()
        let run = try startRun(in: tmp)
        expectRunLogError(.usage, "smaller than 10 MB") {
            try run.summary.set("blob", longString(RunConfig.maxValueBytes))
        }
        try run.finish()
        #expect(try contents(run).summary["blob"] == nil)
    }

    // MARK: mutable metadata

    @Test("name, notes, group, jobType and tags: changes are recorded in the log")
    func metadataMutation() throws {
        let tmp = RunTestDir()
        let run = try startRun(in: tmp, name: "first", notes: "n1", tags: ["a"], group: "g1", jobType: "train")
        run.name = "second"
        run.notes = "n2"
        run.group = "g2"
        run.jobType = "eval"
        run.tags += ["b"]
        run.tags.removeAll { $0 == "a" }
        #expect(run.name == "second" && run.notes == "n2" && run.group == "g2" && run.jobType == "eval")
        #expect(run.tags == ["b"])
        try run.flush()
        var c = try contents(run)
        #expect(c.metadata["name"] == "second")
        #expect(c.metadata["notes"] == "n2")
        #expect(c.metadata["group"] == "g2")
        #expect(c.metadata["job_type"] == "eval")
        #expect(c.tags == ["b"])
        run.notes = nil
        run.group = nil
        run.jobType = nil
        try run.finish()
        c = try contents(run)
        #expect(run.notes == nil && run.group == nil && run.jobType == nil)
        #expect(c.metadata["notes"] == .null)
        #expect(c.metadata["group"] == .null)
        #expect(c.metadata["job_type"] == .null)
    }

    // MARK: files

    @Test("save now: copied into files/ at once, with size, digest and policy recorded")
    func saveNow() throws {
        let tmp = RunTestDir()
        let file = tmp.write("model/weights.txt", "w0 w1 w2")
        let run = try startRun(in: tmp)
        try run.save(file)
        try run.save(file, as: "checkpoints/best.txt")
        tmp.write("model/weights.txt", "changed later")
        let dir = run.directory!
        #expect(readText(dir + "/files/weights.txt") == "w0 w1 w2")
        #expect(readText(dir + "/files/checkpoints/best.txt") == "w0 w1 w2")
        try run.finish()
        #expect(readText(dir + "/files/weights.txt") == "w0 w1 w2")  // not copied again
        let files = try contents(run).files
        #expect(files.map(\.path) == ["weights.txt", "checkpoints/best.txt"])
        #expect(files.allSatisfy { $0.size == 8 && $0.policy == "now" && $0.digest.hasPrefix("crc32c:") })
        #expect(files[0].digest == files[1].digest)
    }

    @Test("save end: copied at finish, as the file is then; live: now and again at finish")
    func saveEndAndLive() throws {
        let tmp = RunTestDir()
        let endFile = tmp.write("end.txt", "v1")
        let liveFile = tmp.write("live.txt", "l1")
        let run = try startRun(in: tmp)
        try run.save(endFile, policy: .end)
        try run.save(liveFile, policy: .live)
        let dir = run.directory!
        #expect(!FileManager.default.fileExists(atPath: dir + "/files/end.txt"))
        #expect(readText(dir + "/files/live.txt") == "l1")
        tmp.write("end.txt", "v2, final")
        tmp.write("live.txt", "l2")
        try run.finish()
        #expect(readText(dir + "/files/end.txt") == "v2, final")
        #expect(readText(dir + "/files/live.txt") == "l2")
        let files = try contents(run).files
        #expect(files.map(\.path) == ["live.txt", "end.txt", "live.txt"])
        #expect(files.map(\.policy) == ["live", "end", "end"])
        #expect(files[1].size == 9)
    }

    @Test("save: a missing file or a name outside files/ is a usage error")
    func saveErrors() throws {
        let tmp = RunTestDir()
        let file = tmp.write("a.txt", "a")
        let run = try startRun(in: tmp)
        expectRunLogError(.usage, "cannot read") { try run.save(tmp.sub("missing.txt")) }
        expectRunLogError(.usage, "relative path inside the run") { try run.save(file, as: "../escape.txt") }
        expectRunLogError(.usage, "relative path inside the run") { try run.save(file, as: "/etc/x") }
        expectRunLogError(.usage, "relative path inside the run") { try run.save(file, as: "") }
        try run.finish()
        #expect(try contents(run).files.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: tmp.projectDirectory("test") + "/escape.txt"))
    }

    // MARK: flush

    @Test("flush: afterwards everything logged is in the log file, as a killed process would leave it")
    func flushDurability() throws {
        let tmp = RunTestDir()
        let run = try startRun(in: tmp, settings: .test { $0.flushInterval = .seconds(3600); $0.durability = .everyFlush })
        try run.config.update(["lr": 0.1])
        for i in 0..<100 { try run.log(["loss": Double(i)]) }
        try run.log(["pending": 1], commit: false)
        try run.summary.set("best", 7)
        try run.flush()
        // Copy the log bytes now, while the run is live: what a SIGKILL right here leaves.
        let killed = tmp.makeDirectory("killed")
        try FileManager.default.copyItem(atPath: run.directory! + "/run.rlog", toPath: killed + "/run.rlog")
        let c = try contents(atPath: killed)
        #expect(c.steps == Array(0...100))
        #expect(c.history.last?.values == ["pending": 1])
        #expect(c.config == ["lr": 0.1])
        #expect(c.summary["best"] == .int(7))
        #expect(c.summary["loss"] == .double(99))
        #expect(c.exits.isEmpty)
        try run.finish()
    }

    // MARK: finish

    @Test("finish: exit code 0 is finished, others failed; a second finish does nothing")
    func finishExitCodes() throws {
        let tmp = RunTestDir()
        let ok = try startRun(in: tmp)
        try ok.log(["x": 1])
        try ok.finish()
        #expect(ok.isFinished)
        try ok.finish(exitCode: 9)  // idempotent
        let okExit = try contents(ok).exits
        #expect(okExit.count == 1)
        #expect(okExit.first?.state == "finished")
        #expect(okExit.first?.exitCode == 0)
        #expect((okExit.first?.runtime ?? -1) >= 0)
        #expect(Run.active !== ok)

        let failed = try startRun(in: tmp)
        try failed.finish(exitCode: 3)
        try failed.finish()
        let failedExit = try contents(failed).exits
        #expect(failedExit.map(\.state) == ["failed"])
        #expect(failedExit.first?.exitCode == 3)
        // The log is closed: the lock is released.
        #expect(!RunDirectory.isLocked(failed.directory!))
    }

    @Test("finish: commits the pending row and writes the final summary before the exit record")
    func finishCommits() throws {
        let tmp = RunTestDir()
        let run = try startRun(in: tmp, settings: .test { $0.flushInterval = .seconds(3600) })
        try run.log(["loss": 0.5], step: 4)
        try run.finish()
        let reader = try RunDirectory.reader(run.directory!)
        defer { reader.close() }
        let records = try reader.allRecords().map(\.record)
        guard case .exit = records.last else {
            Issue.record("the last record is not the exit: \(String(describing: records.last))")
            return
        }
        let c = try reader.contents()
        #expect(c.steps == [4])
        #expect(c.summary["loss"] == .double(0.5))
    }

    @Test("after finish: log is a generic error; flush has nothing left to do; the log stays as finish left it")
    func afterFinish() throws {
        let tmp = RunTestDir()
        let run = try startRun(in: tmp)
        try run.log(["x": 1.0])
        try run.finish()
        let before = try contents(run)
        expectRunLogError(.generic, "finished") { try run.log(["x": 1], step: 3) }
        expectRunLogError(.generic, "finished") { try run.log(["x": 2.0]) }
        try run.flush()
        try? run.markPreempting()
        run.tags = ["late"]
        #expect(try contents(run) == before)
    }

    // MARK: markPreempting

    @Test("markPreempting: recorded and flushed at once")
    func markPreempting() throws {
        let tmp = RunTestDir()
        let run = try startRun(in: tmp, settings: .test { $0.flushInterval = .seconds(3600) })
        try run.log(["loss": 0.3])
        try run.markPreempting()
        let c = try contents(run)  // no finish: the reader sees it already
        #expect(c.metadata["preempting"] == true)
        #expect(c.steps == [0])
        try run.finish()
    }

    // MARK: Run.with

    struct Boom: Error, CustomStringConvertible { var description: String { "boom at step 2" } }

    @Test("Run.with: finishes the run with exit code 0 and returns the closure's value")
    func withReturns() throws {
        let tmp = RunTestDir()
        var seen: Run?
        let value = try Run.with(project: "test", dir: tmp.path, id: "scoped", config: ["lr": 0.1], mode: .offline,
                                 settings: .test, logger: quietLogger) { run in
            seen = run
            try run.log(["loss": 0.5])
            return 42
        }
        #expect(value == 42)
        let run = try #require(seen)
        #expect(run.isFinished)
        let c = try contents(run)
        #expect(c.exits.map(\.state) == ["finished"])
        #expect(c.exits.first?.exitCode == 0)
        #expect(c.config == ["lr": 0.1])
        #expect(c.steps == [0])
    }

    @Test("Run.with: when the closure throws, exit code 1 with the error recorded, and the error is rethrown")
    func withThrows() throws {
        let tmp = RunTestDir()
        var seen: Run?
        #expect(throws: Boom.self) {
            try Run.with(project: "test", dir: tmp.path, mode: .offline, settings: .test, logger: quietLogger) { run in
                seen = run
                try run.log(["loss": 0.5])
                try run.log(["loss": 0.4], commit: false)
                throw Boom()
            }
        }
        let run = try #require(seen)
        #expect(run.isFinished)
        let c = try contents(run)
        #expect(c.exits.count == 1)
        #expect(c.exits.first?.state == "failed")
        #expect(c.exits.first?.exitCode == 1)
        #expect(c.exits.first?.error?.contains("boom at step 2") == true)
        #expect(c.steps == [0, 1])  // the pending row is kept
    }

    @Test("Run.with (async): same as the synchronous form")
    func withAsync() async throws {
        let tmp = RunTestDir()
        let id = try await Run.with(project: "test", dir: tmp.path, mode: .offline, settings: .test, logger: quietLogger) { run in
            try await Task.sleep(for: .milliseconds(1))
            try run.log(["loss": 0.5])
            return run.id
        }
        #expect(try contents(atPath: tmp.projectDirectory("test") + "/" + id).exits.map(\.state) == ["finished"])

        await #expect(throws: Boom.self) {
            try await Run.with(project: "test", dir: tmp.path, id: "async-fail", mode: .offline, settings: .test,
                               logger: quietLogger) { _ in throw Boom() }
        }
        let failed = try contents(atPath: tmp.projectDirectory("test") + "/async-fail")
        #expect(failed.exits.first?.state == "failed")
        #expect(failed.exits.first?.exitCode == 1)
    }

    @Test("Run.with in disabled mode: runs the closure, writes nothing")
    func withDisabled() throws {
        let tmp = RunTestDir()
        let n = try Run.with(project: "test", dir: tmp.path, mode: .disabled, settings: .test, logger: quietLogger) { run in
            try run.log(["x": 1])
            return 7
        }
        #expect(n == 7)
        #expect(tmp.isEmpty)
    }
}

/// The file's text, or nil.
private func readText(_ path: String) -> String? {
    FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
}
