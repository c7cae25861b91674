import Foundation
import Logging
import RunLogStore

/// A run as `start` found or made it.
struct OpenedRun {
    var id: String
    var directory: String
    var writer: LogWriter
    var isNew: Bool
    var config: [String: Value] = [:]
    var summary: [String: Value] = [:]
    var metadata: [String: Value] = [:]
    var tags: [String] = []
    var nextStep: Int64 = 0
    var forkedFrom: RunMoment?
}

/// The local run directories: `<dir>/runlog/<project>/<run id>/`, plus a `latest-run` link.
/// Resume decisions are made here, from local state alone, so they work offline.
struct RunStorage {
    let root: String
    let project: String

    var projectDirectory: String { root + "/" + project }
    func directory(of id: String) -> String { projectDirectory + "/" + id }
    func exists(_ id: String) -> Bool { FileManager.default.fileExists(atPath: RunDirectory.logPath(directory(of: id))) }

    func prepare() throws(RunLogError) {
        do {
            try FileManager.default.createDirectory(atPath: projectDirectory, withIntermediateDirectories: true)
        } catch {
            throw RunLogError(.usage, "cannot create the run directory \(projectDirectory): \(error.localizedDescription); pass a writable dir")
        }
        guard FileManager.default.isWritableFile(atPath: projectDirectory) else {
            throw .usage("the run directory \(projectDirectory) is not writable; pass a writable dir")
        }
    }

    func openOrCreate(id: String?, resume: ResumeMode?, settings: Settings, logger: Logger) throws(RunLogError) -> OpenedRun {
        switch resume {
        case nil:
            if let id, exists(id) {
                throw .usage("run \(id) already exists in project \(project); pass resume: .allow to continue it, or another id")
            }
            return try create(id: id ?? RunID.random(), settings: settings, logger: logger)
        case .allow:
            if let id, exists(id) { return try reopen(id: id, reason: "resume", settings: settings, logger: logger) }
            return try create(id: id ?? RunID.random(), settings: settings, logger: logger)
        case .never:
            if let id, exists(id) {
                throw .usage("resume is .never but run \(id) already exists in project \(project) (\(directory(of: id)))")
            }
            return try create(id: id ?? RunID.random(), settings: settings, logger: logger)
        case .must:
            guard let id else { throw .usage("resume: .must needs the id of the run to continue") }
            guard exists(id) else {
                throw .usage("resume is .must but there is no run \(id) in project \(project) under \(projectDirectory)")
            }
            return try reopen(id: id, reason: "resume", settings: settings, logger: logger)
        case .auto:
            if let id {
                if exists(id) { return try reopen(id: id, reason: "auto", settings: settings, logger: logger) }
                return try create(id: id, settings: settings, logger: logger)
            }
            if let crashed = lastCrashed() {
                logger.info("resuming the run that crashed last", metadata: ["run": "\(crashed)"])
                return try reopen(id: crashed, reason: "auto", settings: settings, logger: logger)
            }
            return try create(id: RunID.random(), settings: settings, logger: logger)
        }
    }

    func create(id: String, settings: Settings, logger: Logger) throws(RunLogError) -> OpenedRun {
        let dir = directory(of: id)
        let writer = try openWriter(dir, settings: settings, logger: logger)
        return OpenedRun(id: id, directory: dir, writer: writer, isNew: true)
    }

    /// Opens an existing run for appending: marks it crashed if its last life ended without
    /// an exit record, restores its state, and records the resume.
    func reopen(id: String, reason: String, settings: Settings, logger: Logger) throws(RunLogError) -> OpenedRun {
        let dir = directory(of: id)
        let writer = try openWriter(dir, settings: settings, logger: logger)
        do {
            let reader = try RunDirectory.reader(dir)
            defer { reader.close() }
            let state = try reader.state()
            let last = try reader.lastLiveStep()
            try Self.markCrashedIfNeeded(state, writer: writer, logger: logger, id: id)
            let next = last.map { $0 + 1 } ?? 0
            try writer.append(.resume(ResumeMarker(reason: reason, nextStep: next, timestamp: Run.nowMicros())))
            return OpenedRun(id: id, directory: dir, writer: writer, isNew: false, config: state.config, summary: state.summary,
                             metadata: state.metadata, tags: state.tags, nextStep: next)
        } catch {
            try? writer.close()
            throw RunLogError(.generic, "cannot resume run \(id): \(error.message)", underlying: error)
        }
    }

    /// A run whose last lifecycle record is not an exit, opened by us (so no live writer holds
    /// it), was killed: record that before continuing it.
    static func markCrashedIfNeeded(_ state: RunContents, writer: LogWriter, logger: Logger, id: String) throws(StoreError) {
        guard state.exit == nil, state.metadata["id"] != nil else { return }
        logger.warning("run ended without finishing (killed or crashed); marking it crashed", metadata: ["run": "\(id)"])
        try writer.append(.exit(ExitRecord(state: "crashed", exitCode: -1, runtime: 0, error: "the process ended without finishing the run",
                                           timestamp: Run.nowMicros())))
    }

    func openForRewind(_ moment: RunMoment, settings: Settings, logger: Logger) throws(RunLogError) -> OpenedRun {
        guard exists(moment.runID) else {
            throw .usage("resumeFrom: there is no run \(moment.runID) in project \(project) under \(projectDirectory) (it must be in the same project)")
        }
        let dir = directory(of: moment.runID)
        let writer = try openWriter(dir, settings: settings, logger: logger)
        do {
            let before = try RunDirectory.reader(dir)
            let state = try before.state()
            let last = try before.lastLiveStep()
            before.close()
            guard let last, moment.step <= last else {
                throw RunLogError.usage("resumeFrom step \(moment.step) is after run \(moment.runID)'s last step \(last.map(String.init) ?? "(none)")")
            }
            try Self.markCrashedIfNeeded(state, writer: writer, logger: logger, id: moment.runID)
            try writer.rewind(toStep: moment.step)
            // The summary goes back too: recompute each logged metric's last value.
            let after = try RunDirectory.reader(dir)
            defer { after.close() }
            let contents = try after.contents()
            var summary = state.summary
            var logged = Set<String>()
            for rows in contents.archived.values { for r in rows { logged.formUnion(r.values.keys) } }
            for r in contents.history { logged.formUnion(r.values.keys) }
            for k in logged { summary[k] = nil }
            for r in contents.history { summary.merge(r.values) { _, new in new } }
            try writer.append(.summary(SummaryChange(replace: true, values: summary)))
            try writer.append(.resume(ResumeMarker(reason: "rewind", nextStep: moment.step + 1, timestamp: Run.nowMicros())))
            return OpenedRun(id: moment.runID, directory: dir, writer: writer, isNew: false, config: state.config,
                             summary: summary, metadata: state.metadata, tags: state.tags, nextStep: moment.step + 1)
        } catch let e as RunLogError {
            try? writer.close()
            throw e
        } catch {
            try? writer.close()
            throw RunLogError(.generic, "cannot rewind run \(moment.runID): \(error)", underlying: nil)
        }
    }

    func openFork(_ moment: RunMoment, newID: String, settings: Settings, logger: Logger) throws(RunLogError) -> OpenedRun {
        guard exists(moment.runID) else {
            throw .usage("forkFrom: there is no run \(moment.runID) in project \(project) under \(projectDirectory) (it must be in the same project)")
        }
        guard !exists(newID) else { throw .usage("forkFrom: run \(newID) already exists; give the fork another id") }
        let dest = directory(of: newID)
        do {
            try RunDirectory.fork(source: directory(of: moment.runID), atStep: moment.step, to: dest,
                                  metadata: RunMetadata(["id": .string(newID), "project": .string(project)]))
        } catch {
            if error.code == .invalidArgument { throw .usage("forkFrom \(moment): \(error.message)") }
            throw RunLogError(.generic, "cannot fork \(moment): \(error.message)", underlying: error)
        }
        let writer = try openWriter(dest, settings: settings, logger: logger)
        do {
            let reader = try RunDirectory.reader(dest)
            defer { reader.close() }
            let state = try reader.state()
            let last = try reader.lastLiveStep()
            // The copied summary is the source's as of its end: recompute each metric the
            // source logged from the fork's history (as a rewind does), so no value from after
            // the fork point leaks in. Explicit summary keys that were never logged stay.
            let source = try RunDirectory.reader(directory(of: moment.runID))
            defer { source.close() }
            let sourceContents = try source.contents()
            let forked = try reader.contents()
            var summary = state.summary
            for r in sourceContents.history { for k in r.values.keys { summary[k] = nil } }
            for rows in sourceContents.archived.values { for r in rows { for k in r.values.keys { summary[k] = nil } } }
            for r in forked.history { summary.merge(r.values) { _, new in new } }
            if summary != state.summary { try writer.append(.summary(SummaryChange(replace: true, values: summary))) }
            return OpenedRun(id: newID, directory: dest, writer: writer, isNew: true, config: state.config, summary: summary,
                             metadata: state.metadata, tags: state.tags, nextStep: (last ?? -1) + 1, forkedFrom: moment)
        } catch {
            try? writer.close()
            throw RunLogError(.generic, "cannot open fork \(newID): \(error.message)", underlying: error)
        }
    }

    func openWriter(_ dir: String, settings: Settings, logger: Logger) throws(RunLogError) -> LogWriter {
        var config = LogWriter.Configuration()
        config.durability = settings.durability
        config.flushInterval = settings.flushInterval
        do {
            return try LogWriter.open(directory: dir, configuration: config, logger: logger)
        } catch {
            if error.code == .locked { throw RunLogError(.usage, error.message, underlying: error) }
            throw RunLogError(.generic, "cannot open the run's log: \(error.message)", underlying: error)
        }
    }

    /// The run of this project that crashed most recently: no exit record after its last
    /// start, and no live writer.
    func lastCrashed() -> String? {
        guard let ids = try? FileManager.default.contentsOfDirectory(atPath: projectDirectory) else { return nil }
        var best: (id: String, time: Int64)?
        for id in ids where exists(id) {
            let dir = directory(of: id)
            guard !RunDirectory.isLocked(dir), let reader = try? RunDirectory.reader(dir),
                  let state = try? reader.state() else { continue }
            reader.close()
            guard state.exit == nil else { continue }
            var t = state.metadata["start_time"]?.intValue ?? 0
            for case .resume(let r) in state.events { t = max(t, r.timestamp) }
            if best == nil || t > best!.time { best = (id, t) }
        }
        return best?.id
    }

    /// Points `<root>/latest-run` at the run.
    func markLatest(_ id: String) {
        let link = root + "/latest-run"
        try? FileManager.default.removeItem(atPath: link)
        try? FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: project + "/" + id)
    }
}
