import Foundation
import RunLogStore
import RunLogTestSupport
import Testing
@testable import RunLog

// Runs over time: reinit while a run is active, resume decided from local state (offline),
// crashed runs, rewinds (resumeFrom), forks (forkFrom), moments, and environment overrides.

@Suite("Lifecycle: reinit", .exclusiveProcessState)
struct ReinitTests {
    @Test("returnPrevious (the default): start returns the active run and creates nothing")
    func returnPrevious() throws {
        let tmp = RunTestDir()
        let recorder = LogRecorder()
        let active = try startRun(in: tmp, id: "active")
        #expect(Run.active === active)
        let explicit = try startRun(in: tmp, id: "other", reinit: .returnPrevious, logger: recorder.logger)
        let byDefault = try startRun(in: tmp, id: "other2", config: ["lr": 1], reinit: nil)
        #expect(explicit === active)
        #expect(byDefault === active)
        #expect(recorder.warnings.contains { $0.contains("already active") })
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp.projectDirectory("test")) == ["active"])
        try active.finish()
        #expect(try contents(active).config.isEmpty)  // the ignored start's config was not applied
        // With the active run finished, start makes a new one again.
        let fresh = try startRun(in: tmp, id: "fresh", reinit: nil)
        #expect(fresh !== active)
        #expect(fresh.id == "fresh")
        try fresh.finish()
    }

    @Test("finishPrevious: the active run is finished (exit recorded), then a new one starts")
    func finishPrevious() throws {
        let tmp = RunTestDir()
        let first = try startRun(in: tmp, id: "first")
        try first.log(["loss": 1], commit: false)
        let second = try startRun(in: tmp, id: "second", reinit: .finishPrevious)
        #expect(first.isFinished)
        #expect(second !== first)
        #expect(Run.active === second)
        let c = try contents(first)
        #expect(c.exits.map(\.state) == ["finished"])
        #expect(c.steps == [0])  // its pending row was committed
        expectRunLogError(.generic) { try first.log(["x": 1], step: 9) }
        try second.finish()
    }

    @Test("createNew: both runs stay live and log independently")
    func createNew() throws {
        let tmp = RunTestDir()
        let a = try startRun(in: tmp, id: "a")
        let b = try startRun(in: tmp, id: "b", reinit: .createNew)
        #expect(a !== b)
        #expect(Run.active === b)
        try a.log(["x": 1])
        try b.log(["y": 2])
        try a.log(["x": 3])
        try b.finish()
        #expect(Run.active === a)
        try a.finish()
        #expect(try contents(a).series("x") == [1, 3])
        #expect(try contents(b).series("y") == [2])
        #expect(try contents(a).exits.count == 1 && contents(b).exits.count == 1)
    }

    @Test("a disabled run is never the active run")
    func disabledNotActive() throws {
        let tmp = RunTestDir()
        let offline = try startRun(in: tmp, id: "live")
        let disabled = try startRun(in: tmp, mode: .disabled, reinit: .createNew)
        #expect(Run.active === offline)
        try disabled.finish()
        try offline.finish()
    }
}

@Suite("Lifecycle: resume, rewind, fork, environment", .sharedProcessState)
struct LifecycleTests {

    /// A finished run `id` with config, tags, an explicit summary value and `steps` rows of loss = step.
    @discardableResult
    func makeRun(_ tmp: RunTestDir, id: String, steps: Int = 5, config: [String: Value] = ["lr": 0.1, "depth": 34],
                 tags: [String] = ["base"]) throws -> Run {
        let run = try startRun(in: tmp, id: id, name: "name-of-\(id)", tags: tags, config: .values(config))
        for i in 0..<steps { try run.log(["loss": Double(i), "acc": Double(i) / 10]) }
        try run.summary.set("best", "epoch-3")
        try run.finish()
        return run
    }

    // MARK: resume

    @Test("resume allow: config, summary, tags, name and the next step are restored from the local run")
    func resumeAllowRestores() throws {
        let tmp = RunTestDir()
        try makeRun(tmp, id: "r1")
        let run = try startRun(in: tmp, id: "r1", resume: .allow)
        #expect(run.resumed)
        #expect(run.step == 5)
        #expect(run.config.values == ["lr": 0.1, "depth": 34])
        #expect(run.summary["loss"] == .double(4))
        #expect(run.summary["acc"] == .double(0.4))
        #expect(run.summary["best"] == "epoch-3")
        #expect(run.tags == ["base"])
        #expect(run.name == "name-of-r1")
        try run.log(["loss": 10.0])
        try run.config.update(["depth": 34])  // the same value: fine
        expectRunLogError(.usage, "Attempted to change value of key \"lr\"") { try run.config.update(["lr": 0.2]) }
        try run.finish()
        let c = try contents(run)
        #expect(c.steps == [0, 1, 2, 3, 4, 5])
        #expect(c.resumes.map(\.reason) == ["resume"])
        #expect(c.resumes.first?.nextStep == 5)
        #expect(c.exits.map(\.state) == ["finished", "finished"])
        #expect(c.summary["loss"] == .double(10))
        #expect(c.summary["acc"] == .double(0.4))
        #expect(c.summary["best"] == "epoch-3")
        #expect(c.metadata["preempting"] == false)
        #expect(c.metadata["name"] == "name-of-r1")
    }

    @Test("resume allow: a missing run is created with that id")
    func resumeAllowCreates() throws {
        let tmp = RunTestDir()
        let run = try startRun(in: tmp, id: "new-one", resume: .allow)
        #expect(!run.resumed)
        #expect(run.step == 0)
        try run.finish()
        #expect(try contents(run).resumes.isEmpty)
        #expect(try contents(run).metadata["id"] == "new-one")
    }

    @Test("resume allow: arguments at resume replace name, notes, group, jobType; config merges")
    func resumeOverrides() throws {
        let tmp = RunTestDir()
        try makeRun(tmp, id: "r2")
        let run = try startRun(in: tmp, id: "r2", name: "renamed", notes: "second life", config: ["extra": 1],
                               group: "g", jobType: "eval", resume: .allow)
        #expect(run.name == "renamed")
        #expect(run.config.values == ["lr": 0.1, "depth": 34, "extra": 1])
        try run.finish()
        let c = try contents(run)
        #expect(c.metadata["name"] == "renamed")
        #expect(c.metadata["notes"] == "second life")
        #expect(c.metadata["group"] == "g")
        #expect(c.metadata["job_type"] == "eval")
        #expect(c.config == ["lr": 0.1, "depth": 34, "extra": 1])
    }

    @Test("resume with a changed config value: usage error unless allowValChange")
    func resumeConfigChange() throws {
        let tmp = RunTestDir()
        try makeRun(tmp, id: "r3")
        expectRunLogError(.usage, "Attempted to change value of key \"lr\"") {
            try startRun(in: tmp, id: "r3", config: ["lr": 0.5], resume: .allow)
        }
        // The failed attempt left the run usable (unlocked).
        let run = try startRun(in: tmp, id: "r3", config: ["lr": 0.5], allowValChange: true, resume: .allow)
        #expect(run.config["lr"] == .double(0.5))
        try run.finish()
        #expect(try contents(run).config["lr"] == .double(0.5))
    }

    @Test("resume never: an existing id is a usage error; a missing one starts new")
    func resumeNever() throws {
        let tmp = RunTestDir()
        try makeRun(tmp, id: "exists")
        expectRunLogError(.usage, "resume is .never") { try startRun(in: tmp, id: "exists", resume: .never) }
        #expect(try contents(atPath: tmp.projectDirectory("test") + "/exists").resumes.isEmpty)
        let run = try startRun(in: tmp, id: "fresh", resume: .never)
        #expect(!run.resumed)
        try run.finish()
        let anonymous = try startRun(in: tmp, resume: .never)
        #expect(!anonymous.resumed)
        try anonymous.finish()
    }

    @Test("resume must: a missing id or no id is a usage error; an existing run is continued")
    func resumeMust() throws {
        let tmp = RunTestDir()
        expectRunLogError(.usage, "resume is .must but there is no run missing") { try startRun(in: tmp, id: "missing", resume: .must) }
        expectRunLogError(.usage, "needs the id") { try startRun(in: tmp, resume: .must) }
        #expect(!FileManager.default.fileExists(atPath: tmp.projectDirectory("test") + "/missing"))
        try makeRun(tmp, id: "there", steps: 2)
        let run = try startRun(in: tmp, id: "there", resume: .must)
        #expect(run.resumed)
        #expect(run.step == 2)
        try run.finish()
    }

    @Test("resume auto with an id: continues it when it exists, else creates it")
    func resumeAutoWithID() throws {
        let tmp = RunTestDir()
        let created = try startRun(in: tmp, id: "job-7", resume: .auto)
        #expect(!created.resumed)
        try created.log(["x": 1])
        try created.finish()
        let resumed = try startRun(in: tmp, id: "job-7", resume: .auto)
        #expect(resumed.resumed)
        #expect(resumed.step == 1)
        try resumed.finish()
        #expect(try contents(resumed).resumes.map(\.reason) == ["auto"])
    }

    @Test("resume auto without an id: continues the run that crashed last, ignoring finished ones")
    func resumeAutoPicksLastCrashed() throws {
        let tmp = RunTestDir()
        try writeCrashedRun(in: tmp, id: "older-crash", startTime: 1_000_000, steps: 0..<2)
        try writeCrashedRun(in: tmp, id: "latest-crash", startTime: 2_000_000, steps: 0..<4, config: ["lr": 0.3], tags: ["t"])
        try writeFinishedRun(in: tmp, id: "finished-later", startTime: 3_000_000)
        let run = try startRun(in: tmp, resume: .auto)
        #expect(run.id == "latest-crash")
        #expect(run.resumed)
        #expect(run.step == 4)
        #expect(run.config.values == ["lr": 0.3])
        #expect(run.tags == ["t"])
        try run.log(["loss": 0.01])
        try run.finish()
        let c = try contents(run)
        #expect(c.exits.map(\.state) == ["crashed", "finished"])
        #expect(c.resumes.map(\.reason) == ["auto"])
        #expect(c.steps == [0, 1, 2, 3, 4])

        // Now "older-crash" is the only crashed run left.
        let next = try startRun(in: tmp, resume: .auto)
        #expect(next.id == "older-crash")
        try next.finish()
        // None left: a new run.
        let fresh = try startRun(in: tmp, resume: .auto)
        #expect(!fresh.resumed)
        #expect(!["older-crash", "latest-crash", "finished-later"].contains(fresh.id))
        try fresh.finish()
    }

    @Test("resume auto: a run resumed and crashed again counts from its resume time")
    func resumeAutoUsesResumeTime() throws {
        let tmp = RunTestDir()
        try writeCrashedRun(in: tmp, id: "early", startTime: 1_000_000)
        try writeCrashedRun(in: tmp, id: "middle", startTime: 2_000_000)
        // "early" is resumed now and crashes again (no finish: simulate by closing its writer).
        let dir = tmp.projectDirectory("test") + "/early"
        let writer = try LogWriter.open(directory: dir)
        try writer.append(.resume(ResumeMarker(reason: "resume", nextStep: 3, timestamp: 3_000_000)))
        try writer.close()
        let run = try startRun(in: tmp, resume: .auto)
        #expect(run.id == "early")
        try run.finish()
    }

    @Test("resume auto: a run that is live right now (locked) is not picked")
    func resumeAutoSkipsLive() throws {
        let tmp = RunTestDir()
        let live = try startRun(in: tmp, id: "live-run")  // no exit record yet, but its writer holds the lock
        let run = try startRun(in: tmp, resume: .auto)
        #expect(run.id != "live-run")
        #expect(!run.resumed)
        try run.finish()
        try live.finish()
    }

    @Test("a killed run (no exit record) is marked crashed when it is next opened")
    func killedRunMarkedCrashed() throws {
        let tmp = RunTestDir()
        try writeCrashedRun(in: tmp, id: "killed", startTime: 1_000_000, steps: 0..<3)
        let run = try startRun(in: tmp, id: "killed", resume: .allow)
        #expect(run.step == 3)
        try run.finish()
        let c = try contents(run)
        let crashed = try #require(c.exits.first)
        #expect(crashed.state == "crashed")
        #expect(crashed.exitCode == -1)
        #expect(crashed.error?.contains("without finishing") == true)
        // Order: crashed exit, then the resume marker, then this life's exit.
        var kinds: [String] = []
        for e in c.events {
            switch e {
            case .exit(let x): kinds.append("exit:\(x.state)")
            case .resume: kinds.append("resume")
            default: break
            }
        }
        #expect(kinds == ["exit:crashed", "resume", "exit:finished"])
    }

    @Test("a run killed after flush keeps everything flushed, and is marked crashed when resumed")
    func killedAfterFlush() throws {
        let tmp = RunTestDir()
        let run = try startRun(in: tmp, id: "victim", config: ["lr": 0.1], settings: .test { $0.flushInterval = .seconds(3600) })
        for i in 0..<10 { try run.log(["loss": Double(i)]) }
        try run.flush()
        // What SIGKILL leaves: the log bytes as they are now, under a run folder nobody holds.
        let copy = tmp.projectDirectory("test") + "/victim-copy"
        try FileManager.default.createDirectory(atPath: copy, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: run.directory! + "/run.rlog", toPath: copy + "/run.rlog")
        try run.finish()
        let reopened = try startRun(in: tmp, id: "victim-copy", resume: .allow)
        #expect(reopened.step == 10)
        #expect(reopened.config.values == ["lr": 0.1])
        #expect(reopened.summary["loss"] == .double(9))
        try reopened.finish()
        let c = try contents(reopened)
        #expect(c.steps == Array(0..<10))
        #expect(c.exits.map(\.state) == ["crashed", "finished"])
    }

    // MARK: resumeFrom (rewind)

    @Test("resumeFrom: truncates at the step (the rest archived), recomputes the summary, continues after it")
    func rewind() throws {
        let tmp = RunTestDir()
        try makeRun(tmp, id: "rw", steps: 10)
        let run = try startRun(in: tmp, resumeFrom: "rw?_step=4")
        #expect(run.id == "rw")
        #expect(run.resumed)
        #expect(run.forkedFrom == nil)
        #expect(run.step == 5)
        #expect(run.summary["loss"] == .double(4))
        #expect(run.summary["acc"] == .double(0.4))
        #expect(run.summary["best"] == "epoch-3")  // explicit, never logged: kept
        #expect(run.config.values == ["lr": 0.1, "depth": 34])
        #expect(run.tags == ["base"])
        try run.log(["loss": 50.0])
        try run.finish()
        let c = try contents(run)
        #expect(c.steps == [0, 1, 2, 3, 4, 5])
        #expect(c.history.last?.values == ["loss": 50.0])
        #expect(c.archived.count == 1)
        #expect(c.archived.values.first?.map(\.step) == [5, 6, 7, 8, 9])
        #expect(c.archived.values.first?.map { $0.values["loss"] } == [5, 6, 7, 8, 9].map { Value.double($0) })
        #expect(c.rewinds.map(\.step) == [4])
        #expect(c.resumes.map(\.reason) == ["rewind"])
        #expect(c.resumes.first?.nextStep == 5)
        #expect(c.summary["loss"] == .double(50))
        #expect(c.summary["acc"] == .double(0.4))
        #expect(c.summary["best"] == "epoch-3")
        #expect(c.exits.last?.state == "finished")
    }

    @Test("resumeFrom twice: two archived branches")
    func rewindTwice() throws {
        let tmp = RunTestDir()
        try makeRun(tmp, id: "rw2", steps: 6)
        try startRun(in: tmp, resumeFrom: "rw2?_step=3").finish()
        let run = try startRun(in: tmp, resumeFrom: "rw2?_step=1")
        #expect(run.step == 2)
        try run.finish()
        let c = try contents(run)
        #expect(c.steps == [0, 1])
        #expect(c.archived.count == 2)
        #expect(c.archived.values.flatMap { $0 }.map(\.step).sorted() == [2, 3, 4, 5])
        #expect(c.rewinds.map(\.step) == [3, 1])
    }

    @Test("resumeFrom: a missing run or a step after its last is a usage error")
    func rewindErrors() throws {
        let tmp = RunTestDir()
        expectRunLogError(.usage, "no run nope in project test") { try startRun(in: tmp, resumeFrom: "nope?_step=1") }
        try makeRun(tmp, id: "short", steps: 3)
        expectRunLogError(.usage, "after run short's last step 2") { try startRun(in: tmp, resumeFrom: "short?_step=3") }
        // A run in another project is not found (it must be in the same project).
        expectRunLogError(.usage, "same project") { try startRun(in: tmp, project: "other", resumeFrom: "short?_step=1") }
        // Nothing changed.
        let c = try contents(atPath: tmp.projectDirectory("test") + "/short")
        #expect(c.steps == [0, 1, 2])
        #expect(c.rewinds.isEmpty && c.resumes.isEmpty)
    }

    // MARK: forkFrom

    @Test("forkFrom: a new run with the source's history up to the step, its config, and the lineage")
    func fork() throws {
        let tmp = RunTestDir()
        try makeRun(tmp, id: "src", steps: 10)
        let run = try startRun(in: tmp, name: "the-fork", forkFrom: "src?_step=4")
        #expect(run.id != "src")
        #expect(!run.resumed)
        #expect(run.forkedFrom == RunMoment(runID: "src", step: 4))
        #expect(run.step == 5)
        #expect(run.config.values == ["lr": 0.1, "depth": 34])
        try run.log(["loss": 40.0])
        try run.finish()
        let c = try contents(run)
        #expect(c.steps == [0, 1, 2, 3, 4, 5])
        #expect(c.series("loss") == [0.0, 1.0, 2.0, 3.0, 4.0, 40.0])
        #expect(c.forkOrigin?.sourceID == "src")
        #expect(c.forkOrigin?.sourceProject == "test")
        #expect(c.forkOrigin?.step == 4)
        #expect(c.metadata["id"] == .string(run.id))
        #expect(c.metadata["name"] == "the-fork")
        #expect(c.config == ["lr": 0.1, "depth": 34])
        #expect(c.exits.map(\.state) == ["finished"])  // not the source's exit
        // The source is only read.
        let source = try contents(atPath: tmp.projectDirectory("test") + "/src")
        #expect(source.steps == Array(0..<10))
        #expect(source.forkOrigin == nil)
        #expect(source.exits.count == 1)
    }

    @Test("forkFrom: the summary describes the fork's history, not the source's later steps")
    func forkSummary() throws {
        let tmp = RunTestDir()
        let source = try startRun(in: tmp, id: "src")
        for i in 0..<10 { try source.log(["loss": Double(i), "acc": Double(i) / 10]) }
        try source.log(["late_only": 1], step: 12)  // a metric that starts after the fork point
        try source.summary.set("best", "epoch-3")
        try source.finish()
        let run = try startRun(in: tmp, forkFrom: "src?_step=4")
        #expect(run.summary["loss"] == .double(4))
        #expect(run.summary["acc"] == .double(0.4))
        #expect(run.summary["late_only"] == nil)
        #expect(run.summary["best"] == "epoch-3")  // explicit, never logged: kept
        try run.finish()
        let c = try contents(run)
        #expect(c.summary["loss"] == .double(4))
        #expect(c.summary["acc"] == .double(0.4))
        #expect(c.summary["late_only"] == nil)
        #expect(c.summary["best"] == "epoch-3")
    }

    @Test("forkFrom with an id: the fork gets it; an existing id is a usage error")
    func forkWithID() throws {
        let tmp = RunTestDir()
        try makeRun(tmp, id: "src", steps: 3)
        let run = try startRun(in: tmp, id: "child", forkFrom: "src?_step=1")
        #expect(run.id == "child")
        try run.finish()
        #expect(try contents(run).steps == [0, 1])
        expectRunLogError(.usage, "already exists") { try startRun(in: tmp, id: "child", forkFrom: "src?_step=1") }
    }

    @Test("forkFrom: same id as the source, a missing source, or a step before any row: usage errors")
    func forkErrors() throws {
        let tmp = RunTestDir()
        expectRunLogError(.usage, "another id") { try startRun(in: tmp, id: "src", forkFrom: "src?_step=1") }
        expectRunLogError(.usage, "no run ghost") { try startRun(in: tmp, forkFrom: "ghost?_step=1") }
        let late = try startRun(in: tmp, id: "late")
        try late.log(["x": 1], step: 5, commit: true)
        try late.finish()
        expectRunLogError(.usage, "no history row at or before step 2") { try startRun(in: tmp, forkFrom: "late?_step=2") }
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp.projectDirectory("test")) == ["late"])
    }

    // MARK: moments

    static let badMoments = ["src", "src?", "src?_step=", "src?_step=-1", "src?_step=x", "src?step=3", "src?_step=3&x=1",
                             "?_step=3", "a/b?_step=3", "src?_step=1.5", "src _step=3"]

    @Test("a moment that is not <run>?_step=<number> is a usage error naming the expected form", arguments: badMoments)
    func badMoment(_ text: String) throws {
        #expect(throws: RunLogError.self) { try RunMoment(parsing: text) }
        do { _ = try RunMoment(parsing: text) } catch {
            #expect(error.code == .usage)
            #expect(error.message.contains("\"<run id>?_step=<step>\"") || error.message.contains("invalid run id"))
        }
        let tmp = RunTestDir()
        expectRunLogError(.usage) { try startRun(in: tmp, resumeFrom: text) }
        expectRunLogError(.usage) { try startRun(in: tmp, forkFrom: text) }
        #expect(tmp.isEmpty)
    }

    @Test("a moment round-trips through its description")
    func momentRoundTrip() throws {
        let m = try RunMoment(parsing: "abc123?_step=500")
        #expect(m == RunMoment(runID: "abc123", step: 500))
        #expect(m.description == "abc123?_step=500")
        #expect(try RunMoment(parsing: m.description) == m)
        #expect(try RunMoment(parsing: "x?_step=0").step == 0)
    }

    // MARK: environment overrides

    @Test("env: WANDB_* set project, name, notes, tags, group, job type, entity and dir")
    func environmentWandb() throws {
        let tmp = RunTestDir()
        let envDir = tmp.makeDirectory("env-dir")
        let settings = Settings.test {
            $0.environment = [
                "WANDB_PROJECT": "env-project", "WANDB_NAME": "env-name", "WANDB_NOTES": "env notes",
                "WANDB_TAGS": "a, b,,c", "WANDB_RUN_GROUP": "env-group", "WANDB_JOB_TYPE": "env-job",
                "WANDB_ENTITY": "env-entity", "WANDB_DIR": envDir, "WANDB_RUN_ID": "env-id",
            ]
        }
        let run = try Run.start(mode: .offline, reinit: .createNew, settings: settings, logger: quietLogger)
        #expect(run.project == "env-project")
        #expect(run.id == "env-id")
        #expect(run.name == "env-name")
        #expect(run.notes == "env notes")
        #expect(run.tags == ["a", "b", "c"])
        #expect(run.group == "env-group")
        #expect(run.jobType == "env-job")
        #expect(run.entity == "env-entity")
        #expect(run.directory == envDir + "/runlog/env-project/env-id")
        try run.finish()
        let c = try contents(run)
        #expect(c.metadata["project"] == "env-project")
        #expect(c.metadata["name"] == "env-name")
        #expect(c.metadata["notes"] == "env notes")
        #expect(c.metadata["group"] == "env-group")
        #expect(c.metadata["job_type"] == "env-job")
        #expect(c.metadata["entity"] == "env-entity")
        #expect(c.tags == ["a", "b", "c"])
    }

    @Test("env: RUNLOG_* wins over WANDB_*, and arguments win over both")
    func environmentPrecedence() throws {
        let tmp = RunTestDir()
        let env = ["RUNLOG_PROJECT": "runlog-p", "WANDB_PROJECT": "wandb-p", "WANDB_NAME": "wandb-n", "RUNLOG_NAME": "runlog-n"]
        let fromEnv = try startRun(in: tmp, project: nil, settings: .test { $0.environment = env })
        #expect(fromEnv.project == "runlog-p")
        #expect(fromEnv.name == "runlog-n")
        try fromEnv.finish()
        let fromArgs = try startRun(in: tmp, project: "arg-p", name: "arg-n", settings: .test { $0.environment = env })
        #expect(fromArgs.project == "arg-p")
        #expect(fromArgs.name == "arg-n")
        try fromArgs.finish()
        #expect(try contents(fromArgs).metadata["project"] == "arg-p")
    }

    @Test("env: WANDB_MODE / WANDB_DISABLED pick the mode unless mode is given")
    func environmentMode() throws {
        let tmp = RunTestDir()
        let disabled = try startRun(in: tmp, mode: nil, settings: .test { $0.environment = ["WANDB_MODE": "disabled"] })
        #expect(disabled.isDisabled)
        try disabled.finish()
        let flag = try startRun(in: tmp, mode: nil, settings: .test { $0.environment = ["WANDB_DISABLED": "true", "WANDB_MODE": "offline"] })
        #expect(flag.isDisabled)
        try flag.finish()
        #expect(tmp.isEmpty)
        let dryrun = try startRun(in: tmp, mode: nil, settings: .test { $0.environment = ["WANDB_MODE": "dryrun"] })
        #expect(dryrun.mode == .offline)
        try dryrun.finish()
        #expect(try contents(dryrun).metadata["mode"] == "offline")
        let argWins = try startRun(in: tmp, mode: .offline, settings: .test { $0.environment = ["RUNLOG_MODE": "disabled"] })
        #expect(argWins.mode == .offline)
        try argWins.finish()
    }

    @Test("env: RUN_ID with RESUME continues the run, as a requeued job script does")
    func environmentResume() throws {
        let tmp = RunTestDir()
        let env = ["WANDB_RUN_ID": "job-123", "WANDB_RESUME": "allow"]
        let first = try startRun(in: tmp, settings: .test { $0.environment = env })
        #expect(first.id == "job-123")
        #expect(!first.resumed)
        try first.log(["loss": 1])
        try first.finish()
        let second = try startRun(in: tmp, settings: .test { $0.environment = env })
        #expect(second.id == "job-123")
        #expect(second.resumed)
        #expect(second.step == 1)
        try second.finish()
        expectRunLogError(.usage, "resume is .never") {
            try startRun(in: tmp, settings: .test { $0.environment = ["RUNLOG_RUN_ID": "job-123", "RUNLOG_RESUME": "never"] })
        }
        // An explicit resume argument wins over the environment's.
        expectRunLogError(.usage, "resume is .never") {
            try startRun(in: tmp, resume: .never, settings: .test { $0.environment = env })
        }
    }

    @Test("env: WANDB_API_KEY counts as credentials; settings.environment [:] keeps the process's out")
    func environmentCredentials() throws {
        let tmp = RunTestDir()
        let run = try startRun(in: tmp, force: true, settings: .test { $0.environment = ["WANDB_API_KEY": "abc"] })
        try run.finish()
        // Whatever this machine's environment holds, an empty environment means no key.
        expectRunLogError(.authentication) { try startRun(in: tmp, force: true, settings: .test { $0.environment = [:] }) }
    }

    @Test("env: invalid values are usage errors naming the variable")
    func environmentInvalid() throws {
        let tmp = RunTestDir()
        for (variable, value) in [("WANDB_MODE", "sometimes"), ("RUNLOG_RESUME", "maybe"), ("WANDB_RUN_ID", "a:b"),
                                  ("WANDB_BASE_URL", "ftp://x"), ("WANDB_DISABLED", "perhaps")] {
            expectRunLogError(.usage, variable) { try startRun(in: tmp, mode: nil, settings: .test { $0.environment = [variable: value] }) }
        }
        #expect(tmp.isEmpty)
    }
}
