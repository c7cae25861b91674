import Foundation
import Logging
import RunLogStore

extension Run {
    /// The run most recently started in this process and not yet finished.
    public static var active: Run? { RunRegistry.shared.current }

    /// Starts a run — wandb's `init`, with every parameter.
    ///
    /// Arguments win over environment variables (`RUNLOG_*`, then the `WANDB_*` names job
    /// scripts set), which win over defaults.
    ///
    /// - Parameters:
    ///   - entity: the user or team the run belongs to (default: the server's default for the
    ///     API key; offline, none).
    ///   - project: default: the git root's folder name, else the program's name, else
    ///     `"uncategorized"`.
    ///   - dir: where the `runlog/` folder of run directories goes (default: the working directory).
    ///   - id: unique within the project; must not contain `/ \ # ? % : ; , '`, NUL, or
    ///     surrounding whitespace, nor be `.` or `..`. Default: random.
    ///   - name: display name (default: a random adjective-noun pair).
    ///   - notes: a description of the run.
    ///   - tags: labels; when resuming they replace the stored ones.
    ///   - config: a dictionary, an `Encodable` value, or a YAML file path.
    ///   - configExcludeKeys: keys to drop from `config`.
    ///   - configIncludeKeys: the only keys of `config` to keep.
    ///   - allowValChange: whether config values may change after they are set.
    ///   - group: groups runs of one larger experiment.
    ///   - jobType: the kind of run within a group ("train", "eval").
    ///   - mode: online, offline or disabled.
    ///   - force: refuse to run unless credentials are configured.
    ///   - anonymous: never, allow or must.
    ///   - reinit: what to do while another run is active (default: return it).
    ///   - resume: allow, never, must or auto; decided from local state, offline too.
    ///   - resumeFrom: `"<run>?_step=<n>"`: rewind that run to the step and continue it.
    ///   - forkFrom: `"<run>?_step=<n>"`: a new run starting as a copy of that run's history up to the step.
    ///   - saveCode: store the git state and the source files named in settings (default: the caller's file).
    ///   - tensorboard: deprecated alias of `syncTensorboard`.
    ///   - syncTensorboard: copy TensorBoard scalars written during the run into its history.
    ///   - monitorGym: accepted for compatibility; it has no meaning in Swift (one warning).
    ///   - settings: advanced settings.
    /// - Returns: the run.
    /// - Throws: ``RunLogError`` — usage for invalid or conflicting arguments, authentication
    ///   when `force` finds no credentials, generic for storage failures.
    @discardableResult
    public static func start(
        entity: String? = nil, project: String? = nil, dir: String? = nil, id: String? = nil,
        name: String? = nil, notes: String? = nil, tags: [String]? = nil, config: ConfigSource? = nil,
        configExcludeKeys: [String]? = nil, configIncludeKeys: [String]? = nil, allowValChange: Bool? = nil,
        group: String? = nil, jobType: String? = nil, mode: Mode? = nil, force: Bool? = nil,
        anonymous: AnonymousMode? = nil, reinit: ReinitPolicy? = nil, resume: ResumeMode? = nil,
        resumeFrom: String? = nil, forkFrom: String? = nil, saveCode: Bool? = nil, tensorboard: Bool? = nil,
        syncTensorboard: Bool? = nil, monitorGym: Bool? = nil, settings: Settings = Settings(),
        logger: Logger = Logger(label: "runlog"), callerFile: String = #filePath
    ) throws(RunLogError) -> Run {
        let env: EnvironmentOverrides
        do { env = try EnvironmentOverrides.parse(settings.environment ?? ProcessInfo.processInfo.environment) } catch {
            throw .usage("\(error)")
        }
        var settings = settings
        let rawEnvironment = settings.environment ?? ProcessInfo.processInfo.environment
        if rawEnvironment["RUNLOG_HANDLE_SIGNALS"] == "0" { settings.handleSignals = false }
        if settings.apiKey == nil { settings.apiKey = env.apiKey }
        if settings.serverURL == nil { settings.serverURL = env.baseURL }
        if let c = env.console, !settings.consoleCapture { settings.consoleCapture = c != "off" }

        var resolvedMode = mode ?? .online
        if mode == nil, let m = env.mode {
            guard let parsed = Mode(rawValue: m) else { throw .usage("invalid mode \(m.debugDescription) from the environment: use online, offline or disabled") }
            resolvedMode = parsed
        }
        var resolvedResume = resume
        if resume == nil, let r = env.resume {
            guard let parsed = ResumeMode(rawValue: r) else { throw .usage("invalid resume \(r.debugDescription) from the environment: use allow, never, must or auto") }
            resolvedResume = parsed
        }
        let runID = id ?? env.runID

        // Validation that holds in every mode.
        if let runID { try validateID(runID) }
        let optionsGiven = [resume != nil ? "resume" : nil, resumeFrom != nil ? "resumeFrom" : nil, forkFrom != nil ? "forkFrom" : nil].compactMap { $0 }
        if optionsGiven.count > 1 {
            throw .usage("\(optionsGiven.joined(separator: ", ")) are mutually exclusive: pass only one")
        }
        let rewindMoment = try resumeFrom.map { (s) throws(RunLogError) in try RunMoment(parsing: s) }
        let forkMoment = try forkFrom.map { (s) throws(RunLogError) in try RunMoment(parsing: s) }
        if let forkMoment, let runID, runID == forkMoment.runID {
            throw .usage("forkFrom's run \(forkMoment.runID) and id are the same: a fork is a new run, give it another id (or none)")
        }
        if configIncludeKeys != nil && configExcludeKeys != nil {
            throw .usage("configIncludeKeys and configExcludeKeys are mutually exclusive: pass only one")
        }
        let configValues = RunConfig.filter(try config?.resolve() ?? [:], include: configIncludeKeys, exclude: configExcludeKeys)
        for (k, v) in configValues { try RunConfig.validate(k, v) }
        if let tags { for t in tags where t.isEmpty || t.count > 64 { throw .usage("tag \(t.debugDescription) must be 1 to 64 characters") } }
        if monitorGym == true {
            logger.warning("monitorGym has no meaning in Swift (there is no gym to record); it is accepted and ignored")
        }
        if tensorboard == true {
            logger.warning("tensorboard is a deprecated alias: use syncTensorboard")
        }
        let followTensorboard = syncTensorboard ?? tensorboard ?? false

        // Credentials: force and anonymous.
        let hasCredentials = settings.apiKey.map { !$0.isEmpty } ?? false
        if resolvedMode != .disabled, force == true, !hasCredentials {
            throw RunLogError(.authentication, "force is set but no API key is configured: run `runlog login`, set RUNLOG_API_KEY (or WANDB_API_KEY), or pass settings.apiKey")
        }
        var resolvedEntity = entity ?? env.entity
        switch anonymous ?? .never {
        case .must: resolvedEntity = "anonymous"
        case .allow: if !hasCredentials, resolvedEntity == nil { resolvedEntity = "anonymous" }
        case .never: break
        }

        // Another run active in this process.
        let policy = reinit ?? .returnPrevious
        if let previous = RunRegistry.shared.current {
            switch policy {
            case .returnPrevious:
                logger.warning("a run is already active; returning it (pass reinit: .finishPrevious or .createNew for a new one)",
                               metadata: ["run": "\(previous.id)"])
                return previous
            case .finishPrevious: try previous.finish()
            case .createNew: break
            }
        }

        let projectName = project ?? env.project ?? ProjectInference.infer(
            cwd: URL(fileURLWithPath: FileManager.default.currentDirectoryPath), programPath: CommandLine.arguments.first)
        guard !projectName.isEmpty, !projectName.contains("/") else { throw .usage("invalid project name \(projectName.debugDescription)") }
        let runName = name ?? env.name ?? RunNameGenerator.random()
        let runNotes = notes ?? env.notes
        let runGroup = group ?? env.group
        let runJobType = jobType ?? env.jobType
        let runTags = tags ?? env.tags

        if resolvedMode == .disabled {
            let run = Run(id: runID ?? RunID.random(), project: projectName, entity: resolvedEntity, mode: .disabled,
                          directory: nil, writer: nil, config: configValues, summary: [:], allowValChange: allowValChange ?? false,
                          step: 0, name: runName, notes: runNotes, group: runGroup, jobType: runJobType, tags: runTags ?? [],
                          resumed: false, forkedFrom: forkMoment, settings: settings, logger: logger)
            return run
        }

        var effectiveMode = resolvedMode
        if resolvedMode == .online, settings.uploader == nil {
            logger.warning("online mode needs an uploader (settings.uploader = OnlineSync(...) from RunLogSync, or RUNLOG_BASE_URL and a key): logging offline; sync later with `runlog sync`")
            effectiveMode = .offline
        }

        let root = RunStorage(root: resolveRoot(dir: dir ?? env.dir), project: projectName)
        try root.prepare()

        var opened: OpenedRun
        if let rewindMoment {
            opened = try root.openForRewind(rewindMoment, settings: settings, logger: logger)
        } else if let forkMoment {
            let newID = runID ?? RunID.random()
            opened = try root.openFork(forkMoment, newID: newID, settings: settings, logger: logger)
        } else {
            opened = try root.openOrCreate(id: runID, resume: resolvedResume, settings: settings, logger: logger)
        }

        let writer = opened.writer
        let now = Run.nowMicros()
        var configAfter = opened.config
        do {
            if opened.isNew {
                var meta: [String: Value] = [
                    "id": .string(opened.id), "project": .string(projectName), "name": .string(runName),
                    "host": .string(ProcessInfo.processInfo.hostName), "program": .string(CommandLine.arguments.first ?? ""),
                    "start_time": .int(now), "os": .string(ProcessInfo.processInfo.operatingSystemVersionString),
                    "mode": .string(resolvedMode.rawValue), "args": .array(CommandLine.arguments.dropFirst().map(Value.string)),
                ]
                if let resolvedEntity { meta["entity"] = .string(resolvedEntity) }
                if let runNotes { meta["notes"] = .string(runNotes) }
                if let runGroup { meta["group"] = .string(runGroup) }
                if let runJobType { meta["job_type"] = .string(runJobType) }
                if opened.forkedFrom != nil { meta["start_time"] = .int(now) }
                try writer.append(.runMetadata(RunMetadata(meta)))
            } else {
                var meta: [String: Value] = ["preempting": .bool(false)]
                if let name { meta["name"] = .string(name) }
                if let runNotes { meta["notes"] = .string(runNotes) }
                if let runGroup { meta["group"] = .string(runGroup) }
                if let runJobType { meta["job_type"] = .string(runJobType) }
                try writer.append(.runMetadata(RunMetadata(meta)))
            }
            if let runTags { try writer.append(.tags(runTags)) }
            // Config given at start merges into what the run had (changes need allowValChange).
            var changed: [String: Value] = [:]
            for (k, v) in configValues {
                if let old = configAfter[k], old != v, !(allowValChange ?? false) {
                    throw RunLogError.usage("Attempted to change value of key \"\(k)\" from \(old) to \(v) when resuming. Pass allowValChange: true to change it.")
                }
                if configAfter[k] != v { changed[k] = v }
            }
            if !changed.isEmpty {
                try writer.append(.config(ConfigChange(values: changed)))
                configAfter.merge(changed) { _, new in new }
            }
        } catch let e as RunLogError {
            try? writer.close()
            throw e
        } catch {
            try? writer.close()
            throw RunLogError(.generic, "could not start the run: \(error)", underlying: nil)
        }

        let meta = opened.metadata
        let run = Run(id: opened.id, project: projectName, entity: resolvedEntity ?? meta["entity"]?.stringValue,
                      mode: effectiveMode, directory: opened.directory, writer: writer, config: configAfter,
                      summary: opened.summary, allowValChange: allowValChange ?? false, step: opened.nextStep,
                      name: name ?? (opened.isNew ? runName : meta["name"]?.stringValue ?? runName),
                      notes: runNotes ?? meta["notes"]?.stringValue, group: runGroup ?? meta["group"]?.stringValue,
                      jobType: runJobType ?? meta["job_type"]?.stringValue, tags: runTags ?? opened.tags,
                      resumed: !opened.isNew, forkedFrom: opened.forkedFrom, settings: settings, logger: logger)
        if saveCode ?? false {
            run.saveCode(paths: settings.codePaths.isEmpty ? [callerFile] : settings.codePaths)
        }
        RunRegistry.shared.add(run, handleSignals: settings.handleSignals)
        run.startServices(systemMetrics: settings.systemMetricsInterval != nil, console: settings.consoleCapture,
                          tensorboardDirectory: followTensorboard
                              ? (settings.tensorboardLogDirectory ?? FileManager.default.currentDirectoryPath) : nil)
        if effectiveMode == .online, let uploader = settings.uploader {
            run.upload = uploader.startUploading(runDirectory: opened.directory, entity: run.entity, project: projectName,
                                                 id: opened.id, logger: logger)
        }
        root.markLatest(opened.id)
        return run
    }

    /// Starts a run, passes it to `body`, and finishes it: exit code 0 when `body` returns,
    /// 1 with the error recorded when it throws (the error is rethrown).
    ///
    /// ```swift
    /// try Run.with(project: "mnist", config: ["lr": 0.01]) { run in
    ///     try run.log(["loss": 0.5])
    /// }
    /// ```
    public static func with<T>(
        entity: String? = nil, project: String? = nil, dir: String? = nil, id: String? = nil, name: String? = nil,
        notes: String? = nil, tags: [String]? = nil, config: ConfigSource? = nil, mode: Mode? = nil,
        resume: ResumeMode? = nil, resumeFrom: String? = nil, forkFrom: String? = nil, settings: Settings = Settings(),
        logger: Logger = Logger(label: "runlog"), callerFile: String = #filePath,
        _ body: (Run) throws -> T
    ) throws -> T {
        let run = try start(entity: entity, project: project, dir: dir, id: id, name: name, notes: notes, tags: tags,
                            config: config, mode: mode, reinit: .createNew, resume: resume, resumeFrom: resumeFrom,
                            forkFrom: forkFrom, settings: settings, logger: logger, callerFile: callerFile)
        do {
            let result = try body(run)
            try run.finish(exitCode: 0)
            return result
        } catch {
            try? run.finish(exitCode: 1, state: "failed", signal: nil, error: "\(error)")
            throw error
        }
    }

    /// The async form of ``with(entity:project:dir:id:name:notes:tags:config:mode:resume:resumeFrom:forkFrom:settings:logger:callerFile:_:)``.
    public static func with<T>(
        entity: String? = nil, project: String? = nil, dir: String? = nil, id: String? = nil, name: String? = nil,
        notes: String? = nil, tags: [String]? = nil, config: ConfigSource? = nil, mode: Mode? = nil,
        resume: ResumeMode? = nil, settings: Settings = Settings(), logger: Logger = Logger(label: "runlog"),
        callerFile: String = #filePath, _ body: (Run) async throws -> T
    ) async throws -> T {
        let run = try start(entity: entity, project: project, dir: dir, id: id, name: name, notes: notes, tags: tags,
                            config: config, mode: mode, reinit: .createNew, resume: resume, settings: settings,
                            logger: logger, callerFile: callerFile)
        do {
            let result = try await body(run)
            try run.finish(exitCode: 0)
            return result
        } catch {
            try? run.finish(exitCode: 1, state: "failed", signal: nil, error: "\(error)")
            throw error
        }
    }

    static func validateID(_ id: String) throws(RunLogError) {
        do { try RunID.validate(id) } catch { throw .usage("\(error)") }
    }

    /// The folder that holds run directories: `<dir>/runlog`, `dir` defaulting to the working directory.
    public static func resolveRoot(dir: String?) -> String {
        let base = dir ?? FileManager.default.currentDirectoryPath
        let absolute = base.hasPrefix("/") ? base : FileManager.default.currentDirectoryPath + "/" + base
        return (absolute as NSString).standardizingPath + "/runlog"
    }

    /// Stores the git state and source files with the run.
    func saveCode(paths: [String]) {
        guard let directory else { return }
        let cwd = FileManager.default.currentDirectoryPath
        if let git = GitInfo.capture(at: URL(fileURLWithPath: cwd)) {
            var fields: [String: Value] = [:]
            if let remote = git.remoteURL { fields["git_remote"] = .string(remote) }
            if let commit = git.commit { fields["git_commit"] = .string(commit) }
            do {
                try writer?.append(.runMetadata(RunMetadata(fields)))
                if !git.diff.isEmpty {
                    let diff = git.diff
                    let tmp = directory + "/.diff.patch.tmp"
                    try diff.write(toFile: tmp, atomically: true, encoding: .utf8)
                    try copyIntoRun(path: tmp, name: "code/diff.patch", policy: "now", directory: directory)
                    try? FileManager.default.removeItem(atPath: tmp)
                }
            } catch {
                logger.warning("could not save the git state", metadata: ["error": "\(error)"])
            }
        }
        for path in paths {
            do { try copyIntoRun(path: path, name: "code/" + (path as NSString).lastPathComponent, policy: "now", directory: directory) } catch {
                logger.warning("could not save source file", metadata: ["file": "\(path)", "error": "\(error)"])
            }
        }
    }
}
