import Foundation
import RunLogStore
import RunLogTestSupport
import Testing
@testable import RunLog

#if canImport(Glibc)
import Glibc
#endif

// The background work beside a run: system metrics, TensorBoard sync, saveCode with git, and
// console capture.

@Suite("Services", .sharedProcessState)
struct ServicesTests {

    // MARK: system metrics

    @Test("system metrics: sampled into systemMetrics events at the interval, and once more at finish")
    func systemMetrics() async throws {
        let tmp = RunTestDir()
        let clock = ContinuousClock()
        let started = clock.now
        let run = try startRun(in: tmp, settings: .test { $0.systemMetricsInterval = .milliseconds(100) })
        try await Task.sleep(for: .milliseconds(450))
        try run.finish()
        let elapsed = clock.now - started
        let samples = try contents(run).systemSamples
        // One at start, one per interval while sleeping, one at finish; at least the first and
        // the last on a loaded machine, and never more often than the interval.
        #expect(samples.count >= 2, "\(samples.count) samples")
        #expect(samples.count <= Int(elapsed / .milliseconds(100)) + 2, "\(samples.count) samples in \(elapsed)")
        let keys = Set(samples.flatMap(\.values.keys))
        #expect(keys.contains("system.memory"))
        #expect(keys.contains("system.proc.memory.rssMB"))
        #expect(keys.allSatisfy { $0.hasPrefix("system.") })
        #expect(samples.last?.values["system.cpu"] != nil)  // CPU percentages need two readings
        #expect(zip(samples, samples.dropFirst()).allSatisfy { $0.timestamp <= $1.timestamp })
        let start = Int64(run.startTime.timeIntervalSince1970 * 1_000_000)
        #expect(samples.allSatisfy { $0.timestamp >= start - 1_000_000 })
        for s in samples {
            if let rss = s.values["system.proc.memory.rssMB"]?.doubleValue { #expect(rss > 0) }
            if let mem = s.values["system.memory"]?.doubleValue { #expect(mem >= 0 && mem <= 100) }
        }
        // History is untouched: system metrics are events, not rows.
        #expect(try contents(run).history.isEmpty)
    }

    @Test("system metrics: none in a disabled run")
    func systemMetricsDisabled() async throws {
        let tmp = RunTestDir()
        let run = try startRun(in: tmp, mode: .disabled, settings: .test { $0.systemMetricsInterval = .milliseconds(50) })
        try await Task.sleep(for: .milliseconds(120))
        try run.finish()
        #expect(tmp.isEmpty)
    }

    // MARK: TensorBoard

    /// The `accumulator` part of Fixtures/tensorboard/expected/<run>.json: per tag, the count
    /// and the first and last `[step, value]`.
    struct ExpectedScalars {
        var count: Int
        var first: (step: Int64, value: Double)
        var last: (step: Int64, value: Double)
    }

    func expectedScalars(_ run: String) throws -> [String: ExpectedScalars] {
        struct File: Decodable {
            struct Directory: Decodable { var scalars: [String: Series] }
            struct Series: Decodable { var count: Int; var first: [Double]; var last: [Double] }
            var accumulator: [String: Directory]
        }
        let data = try Data(contentsOf: URL(fileURLWithPath: try fixturePath("tensorboard/expected/\(run).json")))
        let file = try JSONDecoder().decode(File.self, from: data)
        let scalars = try #require(file.accumulator[run]?.scalars)
        return scalars.mapValues {
            ExpectedScalars(count: $0.count, first: (Int64($0.first[0]), $0.first[1]), last: (Int64($0.last[0]), $0.last[1]))
        }
    }

    @Test("syncTensorboard: every scalar of the event file lands in the history, one row per TensorBoard step")
    func tensorboardScalars() throws {
        let tmp = RunTestDir()
        let logdir = try copyTensorBoardFixture("scalars", to: tmp.sub("tb"))
        let run = try startRun(in: tmp, syncTensorboard: true, settings: .test {
            $0.tensorboardLogDirectory = logdir
            $0.tensorboardPollInterval = .milliseconds(20)
        })
        try run.finish()
        let c = try contents(run)
        let expected = try expectedScalars("scalars")
        #expect(expected.keys.sorted() == ["lr", "train/acc", "train/loss"])
        #expect(c.history.count == 500)
        #expect(c.steps == Array(0..<500))  // the run's own steps keep increasing
        #expect(c.series("global_step") == (0..<500).map { Value.int(Int64($0)) })
        for (tag, e) in expected {
            let rows = c.history.filter { $0.values[tag] != nil }
            #expect(rows.count == e.count, "\(tag)")
            #expect(rows.first?.values["global_step"] == .int(e.first.step), "\(tag)")
            #expect(rows.first?.values[tag] == .double(e.first.value), "\(tag)")
            #expect(rows.last?.values["global_step"] == .int(e.last.step), "\(tag)")
            #expect(rows.last?.values[tag] == .double(e.last.value), "\(tag)")
            #expect(c.summary[tag] == .double(e.last.value), "\(tag)")
        }
    }

    @Test("syncTensorboard: an event file written during the run is picked up, up to finish")
    func tensorboardWrittenDuringRun() async throws {
        let tmp = RunTestDir()
        let logdir = tmp.makeDirectory("tb")
        // Polls only at start and at finish: what appears in between must still be copied.
        let run = try startRun(in: tmp, syncTensorboard: true, settings: .test {
            $0.tensorboardLogDirectory = logdir
            $0.tensorboardPollInterval = .seconds(3600)
        })
        try await Task.sleep(for: .milliseconds(200))  // the first poll has seen an empty directory
        try copyTensorBoardFixture("scalars", to: logdir)
        try run.finish()
        let c = try contents(run)
        #expect(c.history.count == 500)
        #expect(c.series("train/loss").count == 500)
    }

    @Test("syncTensorboard: a truncated event file gives its whole records and no error")
    func tensorboardTruncated() throws {
        let tmp = RunTestDir()
        let logdir = try copyTensorBoardFixture("truncated", to: tmp.sub("tb"))
        let run = try startRun(in: tmp, syncTensorboard: true, settings: .test { $0.tensorboardLogDirectory = logdir })
        try run.finish()
        let c = try contents(run)
        let expected = try expectedScalars("truncated")
        for (tag, e) in expected {
            #expect(c.series(tag).count == e.count, "\(tag)")
            #expect(c.series(tag).last == .double(e.last.value), "\(tag)")
        }
    }

    @Test("syncTensorboard: the user's own rows and TensorBoard's interleave without lost or lower steps")
    func tensorboardWithUserLogging() throws {
        let tmp = RunTestDir()
        let logdir = try copyTensorBoardFixture("scalars", to: tmp.sub("tb"))
        let run = try startRun(in: tmp, syncTensorboard: true, settings: .test {
            $0.tensorboardLogDirectory = logdir
            $0.tensorboardPollInterval = .milliseconds(10)
        })
        for i in 0..<50 { try run.log(["mine": Double(i)]) }
        try run.finish()
        let c = try contents(run)
        #expect(c.series("mine").count == 50)
        #expect(c.series("train/loss").count == 500)
        #expect(c.steps == Array(0..<550))
        #expect(run.droppedSteps == 0)
    }
}

/// saveCode and console capture change the working directory or file descriptors 1 and 2:
/// they run alone.
@Suite("Services: saveCode and console", .exclusiveProcessState)
struct ServicesProcessTests {

    /// A git repository in `tmp/<name>` with one commit of `train.swift`, an `origin` remote with
    /// credentials in its URL, and an uncommitted change.
    func makeRepository(_ tmp: RunTestDir, name: String = "repo") throws -> (root: String, commit: String, source: String) {
        let root = tmp.makeDirectory(name)
        try git(["init", "-q"], in: root)
        let source = tmp.write(name + "/train.swift", "let lr = 0.1\n")
        tmp.write(name + "/README.md", "readme\n")
        try git(["add", "."], in: root)
        try git(["commit", "-q", "-m", "first"], in: root)
        try git(["remote", "add", "origin", "https://alice:s3cr3t-token@example.com/lab/repo.git"], in: root)
        tmp.write(name + "/train.swift", "let lr = 0.2\n")
        return (root, try git(["rev-parse", "HEAD"], in: root), source)
    }

    @Test("saveCode: stores the source files, the commit, the remote without credentials, and the diff")
    func saveCodeWithGit() throws {
        let tmp = RunTestDir()
        let repo = try makeRepository(tmp)
        let run = try withWorkingDirectory(repo.root) {
            try startRun(in: tmp, saveCode: true, settings: .test { $0.codePaths = [repo.source] })
        }
        try run.finish()
        let files = run.directory! + "/files/code/"
        #expect(FileManager.default.contents(atPath: files + "train.swift") == Data("let lr = 0.2\n".utf8))
        let diff = String(decoding: FileManager.default.contents(atPath: files + "diff.patch") ?? Data(), as: UTF8.self)
        #expect(diff.contains("-let lr = 0.1"))
        #expect(diff.contains("+let lr = 0.2"))
        let c = try contents(run)
        #expect(c.metadata["git_commit"] == .string(repo.commit))
        #expect(c.metadata["git_remote"] == "https://example.com/lab/repo.git")
        #expect(!"\(c.metadata)".contains("s3cr3t"))
        #expect(Set(c.files.map(\.path)) == ["code/train.swift", "code/diff.patch"])
        #expect(c.files.allSatisfy { $0.policy == "now" && !$0.digest.isEmpty })
        #expect(!FileManager.default.fileExists(atPath: run.directory! + "/.diff.patch.tmp"))
    }

    @Test("saveCode: a clean work tree has no diff; without saveCode nothing of git is recorded")
    func saveCodeCleanAndOff() throws {
        let tmp = RunTestDir()
        let repo = try makeRepository(tmp)
        try git(["checkout", "--", "train.swift"], in: repo.root)
        let (run, off) = try withWorkingDirectory(repo.root) {
            (try startRun(in: tmp, saveCode: true, settings: .test { $0.codePaths = [repo.source] }),
             try startRun(in: tmp, saveCode: false, settings: .test { $0.codePaths = [repo.source] }))
        }
        try run.finish()
        try off.finish()
        let c = try contents(run)
        #expect(c.files.map(\.path) == ["code/train.swift"])
        #expect(c.metadata["git_commit"] == .string(repo.commit))
        let o = try contents(off)
        #expect(o.files.isEmpty)
        #expect(o.metadata["git_commit"] == nil)
        #expect(o.metadata["git_remote"] == nil)
    }

    @Test("saveCode: a missing source file is skipped with a warning; the run starts")
    func saveCodeMissingFile() throws {
        let tmp = RunTestDir()
        let recorder = LogRecorder()
        let cwd = tmp.makeDirectory("plain")
        let run = try withWorkingDirectory(cwd) {
            try startRun(in: tmp, saveCode: true, settings: .test { $0.codePaths = [tmp.sub("nope.swift")] }, logger: recorder.logger)
        }
        try run.finish()
        #expect(recorder.warnings.contains { $0.contains("could not save source file") })
        #expect(try contents(run).files.isEmpty)
    }

    @Test("saveCode in a disabled run: nothing is written")
    func saveCodeDisabled() throws {
        let tmp = RunTestDir()
        let repo = try makeRepository(tmp)
        let run = try withWorkingDirectory(repo.root) {
            try startRun(in: tmp, mode: .disabled, saveCode: true, settings: .test { $0.codePaths = [repo.source] })
        }
        try run.finish()
        #expect(run.directory == nil)
        #expect(!FileManager.default.fileExists(atPath: tmp.sub("runlog")))
    }

    // MARK: console capture

    /// Writes `text` straight to `fd` (no stdio buffering in between).
    func writeRaw(_ fd: Int32, _ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    @Test("console capture: lines written to fd 1 and 2 are recorded with their stream, and the fds are restored")
    func consoleCapture() throws {
        let tmp = RunTestDir()
        let marker = "runlog-console-test-" + UUID().uuidString.prefix(8)
        var before = stat()
        fstat(1, &before)
        let run = try startRun(in: tmp, settings: .test { $0.consoleCapture = true })
        writeRaw(1, "\(marker) out line 1\n\(marker) out line 2\n")
        writeRaw(2, "\(marker) err line\n")
        writeRaw(1, "\(marker) unterminated")
        try run.finish()
        writeRaw(1, "\n")  // end the unterminated line on the real stdout
        var after = stat()
        fstat(1, &after)
        #expect(before.st_ino == after.st_ino && before.st_dev == after.st_dev, "fd 1 was not restored")
        let lines = try contents(run).consoleLines.filter { $0.text.contains(marker) }
        let out = lines.filter { $0.stream == .stdout }.map(\.text)
        let err = lines.filter { $0.stream == .stderr }.map(\.text)
        #expect(out.contains("\(marker) out line 1"))
        #expect(out.contains("\(marker) out line 2"))
        #expect(out.contains { $0.hasPrefix("\(marker) unterminated") })
        #expect(err == ["\(marker) err line"])
    }

    @Test("console capture: off by default and with RUNLOG_CONSOLE=off; on with WANDB_CONSOLE=wrap")
    func consoleCaptureSettings() throws {
        let tmp = RunTestDir()
        let marker = "runlog-console-env-" + UUID().uuidString.prefix(8)
        for (env, captured) in [([:], false), (["RUNLOG_CONSOLE": "off"], false), (["WANDB_CONSOLE": "wrap"], true)] as [([String: String], Bool)] {
            let run = try startRun(in: tmp, settings: .test { $0.environment = env })
            writeRaw(2, "\(marker) \(env)\n")
            try run.finish()
            let seen = try contents(run).consoleLines.contains { $0.text.contains(marker) }
            #expect(seen == captured, "\(env)")
        }
    }
}
