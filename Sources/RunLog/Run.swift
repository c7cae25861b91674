import Foundation
import Logging
import RunLogStore
import Synchronization

/// A run: one execution of a training program, logging config, history, summary and tags.
///
/// Start one with ``start(entity:project:dir:id:name:notes:tags:config:configExcludeKeys:configIncludeKeys:allowValChange:group:jobType:mode:force:anonymous:reinit:resume:resumeFrom:forkFrom:saveCode:tensorboard:syncTensorboard:monitorGym:settings:logger:callerFile:)``
/// (wandb's `init`), log with ``log(_:step:commit:)-(Dictionary<String,Double>,_,_)``, and end
/// with ``finish(exitCode:)``. Everything goes to a local append-only log first, so a run
/// works offline and loses nothing that was flushed when the process is killed.
///
/// ```swift
/// let run = try Run.start(project: "mnist", config: ["lr": 0.01, "epochs": 10])
/// for step in 0..<1000 {
///     let loss = train(step)
///     try run.log(["loss": loss])
/// }
/// try run.finish()
/// ```
///
/// `log` never waits for the disk: rows go into the log's open frame and a background thread
/// compresses and writes them. All methods are thread-safe.
public final class Run: @unchecked Sendable {
    public let id: String
    public let project: String
    public let entity: String?
    /// The mode the run is in (online degrades to offline until a server is configured).
    public let mode: Mode
    /// The run directory, or nil when disabled.
    public let directory: String?
    /// Whether this run continued an existing one (resume, resume_from).
    public let resumed: Bool
    /// Where this run was forked from, if it was.
    public let forkedFrom: RunMoment?
    /// The run's config: input parameters, set once (see ``RunConfig``).
    public let config: RunConfig
    /// The run's summary: the last value of each metric unless set explicitly.
    public let summary: RunSummary
    public let startTime: Date
    let settings: Settings
    let logger: Logger
    let writer: LogWriter?
    let state: Mutex<State>
    private let services: RunServices
    /// The online upload, set once by `start` before the run is returned.
    nonisolated(unsafe) var upload: (any LiveUpload)?

    struct State {
        var step: Int64 = 0
        var pending: [String: Value] = [:]
        var droppedSteps: Int64 = 0
        /// `finish` has begun (it runs once); `finished`: rows are refused from then on.
        var finishing = false
        var finished = false
        var name: String
        var notes: String?
        var group: String?
        var jobType: String?
        var tags: [String]
    }

    init(id: String, project: String, entity: String?, mode: Mode, directory: String?, writer: LogWriter?,
         config: [String: Value], summary: [String: Value], allowValChange: Bool, step: Int64, name: String,
         notes: String?, group: String?, jobType: String?, tags: [String], resumed: Bool, forkedFrom: RunMoment?,
         settings: Settings, logger: Logger) {
        self.id = id
        self.project = project
        self.entity = entity
        self.mode = mode
        self.directory = directory
        self.writer = writer
        self.resumed = resumed
        self.forkedFrom = forkedFrom
        self.settings = settings
        self.logger = logger
        self.startTime = Date()
        self.state = Mutex(State(step: step, name: name, notes: notes, group: group, jobType: jobType, tags: tags))
        self.config = RunConfig(values: config, allowValChange: allowValChange, writer: writer)
        self.summary = RunSummary(values: summary, writer: writer)
        self.services = RunServices()
    }

    /// Whether every method is a no-op.
    public var isDisabled: Bool { mode == .disabled }

    // MARK: Logging

    /// Logs metrics at the current step (or `step`).
    ///
    /// - Parameters:
    ///   - step: the step to log at. Lower than the current step: the data is dropped with a
    ///     warning and counted in the run's `dropped_steps` (an error with
    ///     ``Settings/strictSteps``). Higher: the pending row is committed first.
    ///   - commit: true writes the row and advances the step; false keeps accumulating into
    ///     the current row. Default: true without `step`, false with it (the row is
    ///     committed when a later step arrives, or at `flush`/`finish`).
    /// - Throws: a usage error for a value that cannot be stored or a lower step under
    ///   `strictSteps`; a generic error once the run is finished.
    public func log(_ metrics: [String: Double], step: Int64? = nil, commit: Bool? = nil) throws(RunLogError) {
        guard let writer else { return }
        if metrics.keys.contains(where: \.isEmpty) { throw .usage("metric names must not be empty") }
        // Fast path: no accumulation, no explicit step. The row is appended under the lock so
        // that rows from concurrent callers reach the log in step order.
        let fast: Result<Bool, StoreError> = state.withLock { s in
            guard step == nil, commit != false, s.pending.isEmpty, !s.finished else { return .success(false) }
            do throws(StoreError) { try writer.appendRow(step: s.step, doubles: metrics) } catch { return .failure(error) }
            s.step += 1
            return .success(true)
        }
        switch fast {
        case .success(true):
            summary.observe(metrics)
            return
        case .failure(let error): throw storeError(error)
        case .success(false): break
        }
        try log(metrics.mapValues(Value.double), step: step, commit: commit)
    }

    /// Logs any values (numbers, strings, arrays, nested dictionaries).
    public func log(_ data: [String: any ValueConvertible], step: Int64? = nil, commit: Bool? = nil) throws(RunLogError) {
        try log(data.mapValues { $0.runLogValue }, step: step, commit: commit)
    }

    /// Logs values.
    public func log(_ data: [String: Value], step: Int64? = nil, commit: Bool? = nil) throws(RunLogError) {
        guard let writer else { return }
        for (k, v) in data {
            guard !k.isEmpty else { throw .usage("metric names must not be empty") }
            try RunConfig.checkSize(k, v, what: "logged value")
        }
        enum Outcome { case dropped(Int64, Int64), rows([(Int64, [String: Value])]) }
        let outcome: Outcome = try state.withLock { (s) throws(RunLogError) -> Outcome in
            if s.finished { throw RunLogError(.generic, "run \(id) is finished; start a new run to log more") }
            var rows: [(Int64, [String: Value])] = []
            if let step {
                if step < s.step {
                    s.droppedSteps += 1
                    return .dropped(step, s.step)
                }
                if step > s.step {
                    if !s.pending.isEmpty { rows.append((s.step, s.pending)); s.pending = [:] }
                    s.step = step
                }
            }
            s.pending.merge(data) { _, new in new }
            let doCommit = commit ?? (step == nil)
            if doCommit {
                rows.append((s.step, s.pending))
                s.pending = [:]
                s.step += 1
            }
            // Appended under the lock: concurrent callers' rows reach the log in step order.
            for (step, values) in rows {
                do throws(StoreError) { try writer.appendRow(step: step, values: values) } catch { throw storeError(error) }
            }
            return .rows(rows)
        }
        switch outcome {
        case .dropped(let asked, let current):
            if settings.strictSteps {
                throw .usage("step \(asked) is lower than the current step \(current); steps must not go back (use resumeFrom to rewind)")
            }
            logger.warning("dropped data logged at a step lower than the current one",
                           metadata: ["run": "\(id)", "step": "\(asked)", "current": "\(current)"])
            let dropped = state.withLock { $0.droppedSteps }
            try? writer.append(.runMetadata(RunMetadata(["dropped_steps": .int(dropped)])))
        case .rows(let rows):
            for (_, values) in rows { summary.observe(values) }
        }
    }

    /// The step the next committed row gets.
    public var step: Int64 { state.withLock { $0.step } }

    /// Rows logged at a lower step than the current one and dropped.
    public var droppedSteps: Int64 { state.withLock { $0.droppedSteps } }

    // MARK: Mutable metadata

    /// The display name.
    public var name: String {
        get { state.withLock { $0.name } }
        set { state.withLock { $0.name = newValue }; recordMetadata(["name": .string(newValue)]) }
    }
    public var notes: String? {
        get { state.withLock { $0.notes } }
        set { state.withLock { $0.notes = newValue }; recordMetadata(["notes": newValue.map(Value.string) ?? .null]) }
    }
    public var group: String? {
        get { state.withLock { $0.group } }
        set { state.withLock { $0.group = newValue }; recordMetadata(["group": newValue.map(Value.string) ?? .null]) }
    }
    public var jobType: String? {
        get { state.withLock { $0.jobType } }
        set { state.withLock { $0.jobType = newValue }; recordMetadata(["job_type": newValue.map(Value.string) ?? .null]) }
    }
    /// The run's tags; `run.tags += ["x"]` adds one.
    public var tags: [String] {
        get { state.withLock { $0.tags } }
        set {
            state.withLock { $0.tags = newValue }
            do { try writer?.append(.tags(newValue)) } catch { logger.error("could not record tags", metadata: ["error": "\(error)"]) }
        }
    }

    private func recordMetadata(_ fields: [String: Value]) {
        do { try writer?.append(.runMetadata(RunMetadata(fields))) } catch {
            logger.error("could not record run metadata", metadata: ["error": "\(error)"])
        }
    }

    /// Marks the run as about to be preempted (e.g. on a spot instance's notice): recorded
    /// and flushed, so a later `resume: .auto` knows to continue it.
    public func markPreempting() throws(RunLogError) {
        recordMetadata(["preempting": .bool(true)])
        try flush()
    }

    // MARK: Files

    /// How a saved file is kept.
    public enum SavePolicy: String, Sendable {
        /// Copied now.
        case now
        /// Copied at `finish`.
        case end
        /// Copied now and again at `finish` (RunLog has no file watcher yet).
        case live
    }

    /// Saves a file into the run's `files/` directory.
    /// - Parameters:
    ///   - path: the file to save.
    ///   - name: its name inside `files/` (default: the file's name).
    /// - Throws: a usage error when the file cannot be read.
    public func save(_ path: String, as name: String? = nil, policy: SavePolicy = .now) throws(RunLogError) {
        guard let directory else { return }
        let target = name ?? (path as NSString).lastPathComponent
        guard !target.isEmpty, !target.hasPrefix("/"), !target.split(separator: "/").contains("..") else {
            throw .usage("saved file name \(target.debugDescription) must be a relative path inside the run")
        }
        if policy == .end {
            services.saveAtEnd(path: path, name: target)
            return
        }
        try copyIntoRun(path: path, name: target, policy: policy.rawValue, directory: directory)
        if policy == .live { services.saveAtEnd(path: path, name: target) }
    }

    func copyIntoRun(path: String, name: String, policy: String, directory: String) throws(RunLogError) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .usage("cannot read \(path) to save it with the run")
        }
        let dest = directory + "/" + LogFormat.filesDirectoryName + "/" + name
        do {
            try FileManager.default.createDirectory(atPath: (dest as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try data.write(to: URL(fileURLWithPath: dest), options: .atomic)
        } catch {
            throw RunLogError(.generic, "cannot write \(dest): \(error.localizedDescription)")
        }
        let digest = "crc32c:" + String(CRC32C.checksum(Array(data)), radix: 16)
        do {
            try writer?.append(.file(FileReference(path: name, size: Int64(data.count), digest: digest, policy: policy,
                                                   timestamp: Self.nowMicros())))
        } catch { throw storeError(error) }
    }

    // MARK: Flush and finish

    /// Commits the pending row and the summary, and returns when they are durable under
    /// ``Settings/durability``.
    public func flush() throws(RunLogError) {
        guard let writer else { return }
        // The pending row is appended under the lock, like `log`'s rows, to keep step order.
        let pending: Result<[String: Value]?, StoreError> = state.withLock { s in
            guard !s.pending.isEmpty else { return .success(nil) }
            do throws(StoreError) { try writer.appendRow(step: s.step, values: s.pending) } catch { return .failure(error) }
            defer { s.pending = [:]; s.step += 1 }
            return .success(s.pending)
        }
        do {
            if let values = try pending.get() { summary.observe(values) }
            summary.writeIfChanged()
            try writer.flush()
        } catch {
            throw storeError(error)
        }
    }

    /// Finishes the run: commits what is pending, writes the summary and an exit record,
    /// stops background work, and closes the log. Calling it again does nothing.
    /// - Parameters:
    ///   - exitCode: 0 for success (state `finished`), anything else marks the run `failed`.
    public func finish(exitCode: Int = 0) throws(RunLogError) {
        try finish(exitCode: exitCode, state: exitCode == 0 ? "finished" : "failed", signal: nil, error: nil)
    }

    func finish(exitCode: Int, state exitState: String, signal: Int32?, error: String?) throws(RunLogError) {
        let first = state.withLock { s in
            defer { s.finishing = true }
            return !s.finishing
        }
        guard first else { return }
        RunRegistry.shared.remove(self)
        // Services drain with a last tick that may still log (TensorBoard scalars written
        // since the last poll): the run refuses new rows only once they are stopped.
        services.stop()
        state.withLock { $0.finished = true }
        guard let writer, let directory else { return }
        for (path, name) in services.endSaves {
            do { try copyIntoRun(path: path, name: name, policy: "end", directory: directory) } catch {
                logger.error("could not save file at finish", metadata: ["file": "\(path)", "error": "\(error)"])
            }
        }
        let pending: (Int64, [String: Value])? = state.withLock { s in
            s.pending.isEmpty ? nil : (s.step, s.pending)
        }
        do {
            if let (step, values) = pending {
                try writer.appendRow(step: step, values: values)
                summary.observe(values)
            }
            summary.writeIfChanged()
            try writer.append(.exit(ExitRecord(state: exitState, exitCode: Int64(exitCode),
                                               runtime: Date().timeIntervalSince(startTime),
                                               signal: signal.map(Int64.init), error: error, timestamp: Self.nowMicros())))
            try writer.close()
        } catch {
            throw storeError(error)
        }
        if let upload, !upload.finish(timeout: settings.onlineFinishTimeout) {
            logger.warning("the server did not get everything before finish timed out; the run is complete on disk: run `runlog sync` to finish the upload",
                           metadata: ["run": "\(id)", "directory": "\(directory)"])
        }
    }

    /// Whether ``finish(exitCode:)`` has run.
    public var isFinished: Bool { state.withLock { $0.finished } }

    func storeError(_ error: StoreError) -> RunLogError {
        switch error.code {
        case .invalidValue, .valueTooLarge: return RunLogError(.usage, error.message, underlying: error)
        default: return RunLogError(.generic, "the run's log could not be written: \(error.message)", underlying: error)
        }
    }

    static func nowMicros() -> Int64 { Int64(Date().timeIntervalSince1970 * 1_000_000) }

    func startServices(systemMetrics: Bool, console: Bool, tensorboardDirectory: String?) {
        services.start(run: self, systemMetrics: systemMetrics, console: console, tensorboardDirectory: tensorboardDirectory)
    }
}
