#if canImport(Glibc)
import Glibc
#endif
import Foundation
import RunLogTestSupport
import Testing
import RunLog
import RunLogStore

/// The SDK's process-end hooks in a real process (`runlog sdk-child`, which logs through
/// `Run` and prints each step it flushed): SIGINT and SIGTERM flush and finish the run with
/// the signal recorded; returning from main without `finish` finishes it (exit code 0); a
/// SIGKILLed run is marked crashed the next time it is opened.
@Suite("SDK signal handling in a real process", .serialized, .sharedProcessState,
       .enabled(if: CrashTests.runlogBinary != nil, "the runlog executable was not built beside the tests"))
struct SignalTests {
    static let project = "sdk-child"

    /// Starts `runlog sdk-child` and waits for its `run_dir` line.
    static func startChild(_ binary: String, dir: TempDir, id: String, extra: [String] = []) throws -> (ChildProcess, String) {
        let child = try ChildProcess(binary, ["sdk-child", "--dir", dir.sub("root"), "--project", project, "--id", id] + extra,
                                     environment: ["RUNLOG_HANDLE_SIGNALS": "1", "RUNLOG_MODE": "offline"],
                                     stderrPath: dir.sub("child-\(id).txt"))
        guard let first = child.waitForObject(timeout: 60, { $0["run_dir"] != nil }), let runDir = first.string("run_dir") else {
            child.signal(SIGKILL)
            child.wait(timeout: 10)
            throw HarnessError("sdk-child printed no run_dir in 60 s: \(child.stderrText.suffix(2000))")
        }
        return (child, runDir)
    }

    /// Steps the child reported durable, in order.
    static func durableSteps(_ child: ChildProcess) -> [Int64] { child.objects.compactMap { $0.int("durable_step") } }

    /// Reads the run's log (every payload verified); checks that the history is exactly
    /// 0...last with the child's values and holds every step reported durable.
    static func readRun(_ runDir: String, reported: [Int64], context: String) throws -> RunContents {
        let reader = try RunDirectory.reader(runDir, options: .init(verifyPayloads: true))
        defer { reader.close() }
        #expect(reader.damaged.isEmpty, "\(context): damaged log \(reader.damaged)")
        let contents = try reader.contents()
        let steps = contents.history.map(\.step)
        if let last = steps.last {
            #expect(steps == Array(0...last), "\(context): steps are not exactly 0...\(last) (\(steps.count) rows)")
        }
        if let durable = reported.last {
            #expect((steps.last ?? -1) >= durable, "\(context): step \(durable) was reported durable, the log ends at \(steps.last ?? -1)")
        }
        let bad = contents.history.filter { row in
            row.values["x"] != .double(Double(row.step)) || row.values["loss"] != .double(1 / Double(row.step + 1))
        }.count
        #expect(bad == 0, "\(context): \(bad) rows hold values that are not their step's")
        return contents
    }

    /// SIGINT or SIGTERM while the child logs: it exits by that signal, and its run is
    /// finished (`killed`, the signal and exit code 128+signal recorded, the writer's lock
    /// released) with every step it reported durable.
    @Test("SIGINT and SIGTERM flush the run and record the signal", arguments: [SIGINT, SIGTERM])
    func signalFinishesTheRun(signal sig: Int32) throws {
        let binary = try #require(CrashTests.runlogBinary)
        let seed = SeededRandom.seed(for: "signalFinishesTheRun(\(sig))")
        var rng = SeededRandom(seed: seed)
        let dir = TempDir()
        defer { withExtendedLifetime(dir) {} }  // removed only after the processes using it are gone
        let (child, runDir) = try Self.startChild(binary, dir: dir, id: "sig\(sig)", extra: ["--flush-every", "25"])
        let reports = Int.random(in: 1...40, using: &rng)
        #expect(poll(timeout: 60) { Self.durableSteps(child).count >= reports || !child.isRunning },
                "no \(reports) durable steps reported in 60 s")
        usleep(UInt32.random(in: 0...20_000, using: &rng))
        child.signal(sig)
        // sdk-child waits 15 s for the signal to end it once its log refuses rows, then exits 70.
        #expect(child.wait(timeout: 45), "the child did not exit within 45 s of signal \(sig)")
        let context = "signal \(sig), seed \(seed), sent after \(reports) reports"
        #expect(child.terminatedBySignal && child.terminationStatus == sig,
                "\(context): the child should end by its signal; it ended with \(child.terminatedBySignal ? "signal" : "status") \(child.terminationStatus)\(!child.terminatedBySignal && child.terminationStatus == 70 ? " (the run was finished, but the re-raised signal never ended the process)" : ""): \(child.stderrText.suffix(1000))")
        let reported = Self.durableSteps(child)
        let contents = try Self.readRun(runDir, reported: reported, context: context)
        let exit = contents.exit
        #expect(exit?.state == "killed", "\(context): exit state \(exit?.state ?? "none")")
        #expect(exit?.signal == Int64(sig), "\(context): recorded signal \(exit?.signal.map(String.init) ?? "none")")
        #expect(exit?.exitCode == 128 + Int64(sig), "\(context): exit code \(exit?.exitCode ?? -1)")
        #expect(!RunDirectory.hasLiveWriter(runDir), "\(context): the run still names a live writer")
        // Closed cleanly: a writer opening it finds no torn tail.
        let writer = try LogWriter.open(directory: runDir)
        #expect(writer.recoveredTornBytes == 0, "\(context): \(writer.recoveredTornBytes) torn bytes after a clean finish")
        try writer.close()
    }

    /// A program that returns from main without calling `finish`: the exit hook finishes the
    /// run with exit code 0 and every row logged.
    @Test("returning from main without finish finishes the run with exit code 0")
    func returnWithoutFinish() throws {
        let binary = try #require(CrashTests.runlogBinary)
        let seed = SeededRandom.seed(for: "returnWithoutFinish")
        var rng = SeededRandom(seed: seed)
        let dir = TempDir()
        defer { withExtendedLifetime(dir) {} }  // removed only after the processes using it are gone
        let steps = Int64.random(in: 100...3_000, using: &rng)
        // The last rows are never flushed by the program: only the exit hook can save them.
        let (child, runDir) = try Self.startChild(binary, dir: dir, id: "atexit", extra: ["--steps", String(steps), "--flush-every", "64"])
        #expect(child.wait(timeout: 120), "the child did not return within 120 s")
        let context = "seed \(seed), \(steps) steps"
        #expect(!child.terminatedBySignal && child.terminationStatus == 0,
                "\(context): exited with \(child.terminationStatus): \(child.stderrText.suffix(1000))")
        let contents = try Self.readRun(runDir, reported: Self.durableSteps(child), context: context)
        #expect(contents.history.count == Int(steps), "\(context): \(contents.history.count) rows, logged \(steps)")
        let exit = contents.exit
        #expect(exit?.state == "finished", "\(context): exit state \(exit?.state ?? "none")")
        #expect(exit?.exitCode == 0, "\(context): exit code \(exit?.exitCode ?? -1)")
        #expect(exit?.signal == nil, "\(context): a signal was recorded")
        #expect(!RunDirectory.hasLiveWriter(runDir), "\(context): the run still names a live writer")
    }

    /// SIGKILL: nothing runs in the child, so the log has no exit record; the next open of
    /// the run (resume in this process) records `crashed`, then the resume, and continues
    /// after the last step.
    @Test("a SIGKILLed run is marked crashed when next opened")
    func sigkilledRunIsMarkedCrashed() throws {
        let binary = try #require(CrashTests.runlogBinary)
        let seed = SeededRandom.seed(for: "sigkilledRunIsMarkedCrashed")
        var rng = SeededRandom(seed: seed)
        let dir = TempDir()
        defer { withExtendedLifetime(dir) {} }  // removed only after the processes using it are gone
        let id = "killed"
        let (child, runDir) = try Self.startChild(binary, dir: dir, id: id, extra: ["--flush-every", "25"])
        let reports = Int.random(in: 1...40, using: &rng)
        #expect(poll(timeout: 60) { Self.durableSteps(child).count >= reports || !child.isRunning },
                "no \(reports) durable steps reported in 60 s")
        usleep(UInt32.random(in: 0...20_000, using: &rng))
        child.signal(SIGKILL)
        child.wait(timeout: 60)
        let context = "seed \(seed), killed after \(reports) reports"
        #expect(child.terminatedBySignal && child.terminationStatus == SIGKILL)
        let before = try Self.readRun(runDir, reported: Self.durableSteps(child), context: context)
        #expect(before.exit == nil, "\(context): a SIGKILLed run has an exit record \(String(describing: before.exit))")
        #expect(!RunDirectory.hasLiveWriter(runDir), "\(context): the dead child still counts as a live writer")
        let last = try #require(before.history.last?.step, "\(context): no rows survived")

        // Open it again, as a program resuming it would.
        var settings = Settings()
        settings.handleSignals = false
        settings.systemMetricsInterval = nil
        settings.environment = [:]
        let run = try Run.start(project: Self.project, dir: dir.sub("root"), id: id, mode: .offline, reinit: .createNew,
                                resume: .allow, settings: settings)
        #expect(run.resumed)
        #expect(run.directory == runDir)
        #expect(run.step == last + 1, "\(context): resumed at step \(run.step), the log ends at \(last)")
        try run.log(["loss": 1 / Double(last + 2), "x": Double(last + 1)])
        try run.finish()

        let after = try Self.readRun(runDir, reported: [last + 1], context: context + ", after the resume")
        #expect(after.history.count == before.history.count + 1)
        // The lifecycle records appended by the reopen: crashed, then resume, then finished.
        let lifecycle: [String] = after.events.compactMap { record in
            switch record {
            case .exit(let e): return "exit:\(e.state)"
            case .resume: return "resume"
            default: return nil
            }
        }
        #expect(lifecycle == ["exit:crashed", "resume", "exit:finished"], "\(context): lifecycle records \(lifecycle)")
        if case .exit(let crashed)? = after.events.first(where: { if case .exit = $0 { true } else { false } }) {
            #expect(crashed.state == "crashed" && crashed.exitCode == -1 && crashed.signal == nil)
        }
        #expect(after.exit?.state == "finished")
    }
}
