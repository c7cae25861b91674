import Foundation
import RunLogStore

/// One run to push: where it is locally and what it is called on the server.
public struct WandbPushJob: Sendable, Hashable {
    public var directory: String
    /// The run id (W&B's run `name`).
    public var run: String
    public var project: String
    /// The entity asked for (the run's own, or `--entity`); nil lets the server pick.
    public var entity: String?
    /// The run it was forked from, if any: pushed first when it is in the same push.
    public var parentID: String?
    public var parentProject: String?

    public init(directory: String, run: String, project: String, entity: String?, parentID: String? = nil, parentProject: String? = nil) {
        self.directory = directory
        self.run = run
        self.project = project
        self.entity = entity
        self.parentID = parentID
        self.parentProject = parentProject
    }

    public var description: String { "\(entity ?? "-")/\(project)/\(run)" }

    /// The job for a run directory, from the log's metadata.
    public static func discover(_ directory: String, defaultEntity: String?) throws -> WandbPushJob {
        let reader = try RunDirectory.reader(directory)
        defer { reader.close() }
        let state = try reader.state()
        let run = state.metadata["id"]?.stringValue ?? (directory as NSString).lastPathComponent
        let project = state.metadata["project"]?.stringValue ?? "uncategorized"
        let entity = state.metadata["entity"]?.stringValue ?? defaultEntity
        return WandbPushJob(directory: directory, run: run, project: project, entity: entity,
                            parentID: state.forkOrigin?.sourceID, parentProject: state.forkOrigin?.sourceProject ?? project)
    }
}

/// How pushes are made.
public struct WandbPushOptions: Sendable {
    /// The most bytes of lines in one file_stream request (the wandb client batches up to 10 MiB).
    public var batchBytes = 10 << 20
    /// History rows read from the log at a time.
    public var historyPage = 4_096
    /// Keep pushing runs that are still being written until they end.
    public var follow = false
    /// Seconds between pushes of a run being followed.
    public var pollInterval = 2.0
    public init() {}
}

/// What one push of a run sent.
public struct WandbRunPushReport: Sendable {
    public var entity: String?
    public var project: String?
    public var run: String
    /// Lines sent per stream (history rows, console lines, system-metric samples).
    public var historyLines = 0
    public var consoleLines = 0
    public var eventsLines = 0
    /// Lines too large for one request, dropped as the wandb client drops them.
    public var droppedLines = 0
    public var filesUploaded: [String] = []
    /// The step the server was rewound to, when it was.
    public var rewoundTo: Int64?
    /// Whether the run was created by this push (false: it existed on the server).
    public var created = false
    /// Whether `complete` was sent (the run has ended), and with which exit code.
    public var completed = false
    public var exitCode: Int64?
    public var requests = 0
    public var bytes = 0
    /// Whether the server asked the run to stop (W&B's "stop run" button).
    public var stopRequested = false
    /// Whether a writer had the run open during the push (it was not completed).
    public var live = false
    public var warnings: [String] = []

    /// Nothing needed sending.
    public var upToDate: Bool { requests == 0 }
}

/// What a push of a run would send, from the local log and the cursor alone (`--dry-run`).
public struct WandbPushPlan: Sendable {
    public var firstPush: Bool
    public var historyRows: Int
    public var consoleLines: Int
    public var eventsLines: Int
    public var rewindTo: Int64?
    public var complete: Bool
}

/// Pushes one run to a W&B-protocol server the way the wandb client syncs an offline run:
///
/// 1. `RewindRun` to the lowest step of the local rewinds made since the last push, when it
///    archives rows the server holds (only the live history is ever sent);
/// 2. `UpsertBucket` (id, project, entity — null lets the server pick, and its answer is
///    adopted —, display name, notes, group, job type, host, program, tags, config as
///    `{"k":{"value":v}}` with `_wandb.branch_point` for a fork), when it changed;
/// 3. file_stream requests of at most ``WandbPushOptions/batchBytes`` with the new
///    `wandb-history.jsonl`, `output.log` and `wandb-events.jsonl` lines at their offsets;
/// 4. `CreateRunFiles` and a `PUT` per new or changed file: the run's saved files, and the
///    `config.yaml`, `wandb-summary.json`, `wandb-metadata.json` and `output.log` the client
///    uploads;
/// 5. a last file_stream request with the full summary (`wandb-summary.json`, offset 0), the
///    files uploaded, and `complete: true, exitcode: N` once the run has ended.
///
/// After each acknowledged request the cursor (``WandbPushCursor``) is saved, so a failed
/// push resumes where it stopped, and resends at the same offsets what was unacknowledged.
final class WandbRunPusher {
    let client: WandbPushClient
    let serverKey: String
    let options: WandbPushOptions
    let job: WandbPushJob
    let events: @Sendable (WandbPushEvent) -> Void

    /// Where the push stands: saved after every acknowledged request.
    var cursor = WandbPushCursor()
    var report: WandbRunPushReport
    let onRetry: WandbPushClient.RetryHandler

    init(client: WandbPushClient, serverKey: String, options: WandbPushOptions, job: WandbPushJob,
         events: @escaping @Sendable (WandbPushEvent) -> Void) {
        self.client = client
        self.serverKey = serverKey
        self.options = options
        self.job = job
        self.events = events
        report = WandbRunPushReport(entity: job.entity, project: job.project, run: job.run)
        onRetry = { [job, events] attempt, delay, message in events(.retrying(job, attempt: attempt, delay: delay, message: message)) }
    }

    /// The local run, without its history (read page by page while sending).
    struct Local {
        var reader: LogReader
        var state: RunContents
        var console: [ConsoleLine] = []
        var samples: [SystemSample] = []
        /// Saved files, the last reference per path.
        var files: [String: FileReference] = [:]
        /// Resume and exit records: a new one means the run was reopened or ended since.
        var lifecycle = 0
        var live: Bool
        var start: Int64?
        /// The fork origin, when the server can express it (same project).
        var fork: ForkOrigin?

        init(_ job: WandbPushJob) throws(WandbPushError) {
            do {
                reader = try RunDirectory.reader(job.directory)
                state = try reader.state()
            } catch {
                throw .fatal("cannot read the run: \(error)")
            }
            for e in state.events {
                switch e {
                case .console(let c): console.append(c)
                case .systemMetrics(let s): samples.append(s)
                case .file(let f): files[f.path] = f
                case .resume, .exit: lifecycle += 1
                default: break
                }
            }
            live = RunDirectory.hasLiveWriter(job.directory)
            start = state.metadata["start_time"]?.intValue
            if let f = state.forkOrigin, (f.sourceProject ?? job.project) == job.project, f.sourceID != job.run { fork = f }
        }

        /// The exit code to report once the run has ended: its exit record's, else 1 (it crashed).
        var exitCode: Int64 { state.exit?.exitCode ?? 1 }

        func metadataString(_ key: String) -> String? { state.metadata[key]?.stringValue }
    }

    func persist() {
        do { try WandbPushCursor.save(cursor, directory: job.directory, server: serverKey) } catch {
            report.warnings.append("could not save the push cursor: \(error)")
        }
    }

    // MARK: The push

    func push() async throws(WandbPushError) -> WandbRunPushReport {
        let local = try Local(job)
        defer { local.reader.close() }
        let saved = WandbPushCursor.load(directory: job.directory, server: serverKey)
        // A cursor for another destination on this server does not count.
        let previous = saved.flatMap { c -> WandbPushCursor? in
            guard c.run == job.run, c.project == job.project, job.entity == nil || c.entity == job.entity else { return nil }
            return c
        }
        cursor = previous ?? WandbPushCursor()
        report = WandbRunPushReport(entity: cursor.entity ?? job.entity, project: job.project, run: job.run)
        report.live = local.live
        var reopened = false

        // 1. Rewinds made since the last push that archive rows the server holds.
        if previous != nil, local.state.rewinds.count > cursor.rewinds {
            let steps = local.state.rewinds[cursor.rewinds...].map(\.step)
            if let step = steps.min(), let last = cursor.lastStep, step < last {
                let bucket = try await client.rewindRun(entity: cursor.entity, project: cursor.project, run: job.run, step: step, onRetry: onRetry)
                report.requests += 1
                // The server keeps the rows through `step`; history continues after them.
                // Console and events go on at their offsets (the wandb client restarts them
                // at 0, which overwrites earlier lines on servers that place lines by offset,
                // and makes a later push without this cursor send them twice on ours).
                cursor.historyLines = bucket.historyLineCount ?? 0
                cursor.lastStep = step
                report.rewoundTo = step
                reopened = true
                events(.sent(job, WandbPushSent(request: "RewindRun", lines: 0, bytes: 0)))
            }
            cursor.rewinds = local.state.rewinds.count
            persist()
        }

        // 2. The run itself.
        let upsert = upsertVariables(local, entity: cursor.entity ?? job.entity)
        let digest = upsertDigest(upsert)
        let reopen = previous != nil && (cursor.completedLifecycle.map { $0 != local.lifecycle } ?? false)
        if previous == nil || digest != cursor.upsertDigest || reopen || reopened {
            // `id` tells the server the run continues (it is running again until `complete`).
            let id: Value? = (reopen || reopened) ? cursor.storageID.map(Value.string) : nil
            let bucket = try await client.upsertBucket([("id", id)] + upsert, onRetry: onRetry)
            report.requests += 1
            events(.sent(job, WandbPushSent(request: "UpsertBucket", lines: 0, bytes: 0)))
            if reopen { reopened = true }
            cursor.entity = bucket.entity ?? cursor.entity ?? job.entity
            cursor.project = bucket.project ?? job.project
            cursor.run = job.run
            cursor.storageID = bucket.id ?? cursor.storageID
            let created = bucket.inserted ?? (previous == nil)
            report.created = created
            if previous == nil || bucket.inserted == true {
                if previous != nil {
                    report.warnings.append("the server did not hold the run any more: pushing it again from the start")
                }
                startOver(local: local, created: created, historyLineCount: bucket.historyLineCount ?? 0)
            }
            // The digest of what the next push would send for an unchanged run (the entity adopted).
            cursor.upsertDigest = upsertDigest(upsertVariables(local, entity: cursor.entity))
            persist()
        }
        guard let entity = cursor.entity, let project = cursor.project else {
            throw .fatal("the server named no entity for the run, and none was given (pass --entity)")
        }
        report.entity = entity
        report.project = project

        // 3. New lines.
        try await streamLines(local, entity: entity, project: project)

        // 4. Files.
        let summaryLine = self.summaryLine(local)
        let uploaded = try await uploadFiles(local, summaryLine: summaryLine, entity: entity, project: project)

        // 5. Summary, files uploaded, completion.
        let summaryDigest = WandbPushEncoding.digest(summaryLine)
        let complete = !local.live && (cursor.completedLifecycle != local.lifecycle || reopened)
        if summaryDigest != cursor.summaryDigest || complete || !uploaded.isEmpty {
            var body = "{\"files\":{\"wandb-summary.json\":{\"offset\":0,\"content\":[" + WandbPushEncoding.quoted(summaryLine) + "]}}"
            if !uploaded.isEmpty { body += ",\"uploaded\":" + WandbPushEncoding.json(.array(uploaded.map(Value.string))) }
            if complete { body += ",\"complete\":true,\"exitcode\":\(local.exitCode)" }
            body += "}"
            let stop = try await client.fileStream(entity: entity, project: project, run: job.run, body: body, onRetry: onRetry)
            report.requests += 1
            report.bytes += body.utf8.count
            report.stopRequested = report.stopRequested || stop
            cursor.summaryDigest = summaryDigest
            if complete {
                cursor.completedLifecycle = local.lifecycle
                cursor.exitCode = local.exitCode
                report.completed = true
                report.exitCode = local.exitCode
            }
            persist()
            events(.sent(job, WandbPushSent(request: "file_stream", lines: 1, bytes: body.utf8.count)))
        }
        return report
    }

    /// The cursor of a run the server did not know (or, with `created` false, knew without
    /// this client's cursor): history from the server's count, everything else from the start.
    private func startOver(local: Local, created: Bool, historyLineCount: Int64) {
        if created, let fork = local.fork, historyLineCount > 0 {
            // The server copied the parent's rows through the fork step: send the fork's own.
            cursor.historyLines = historyLineCount
            cursor.lastStep = fork.step
        } else if created {
            cursor.historyLines = historyLineCount
            cursor.lastStep = nil
        } else {
            // The server holds the run but this directory has no cursor for it: send the live
            // history again from offset 0; lines it holds are recognized by their offsets.
            cursor.historyLines = 0
            cursor.lastStep = nil
        }
        cursor.rewinds = local.state.rewinds.count
        cursor.consoleLines = 0
        cursor.consoleOffset = 0
        cursor.eventsLines = 0
        cursor.eventsOffset = 0
        cursor.summaryDigest = nil
        cursor.files = [:]
        cursor.completedLifecycle = nil
        cursor.exitCode = nil
    }

    // MARK: UpsertBucket

    /// The variables of `UpsertBucket` but `id`, in the client's order.
    func upsertVariables(_ local: Local, entity: String?) -> [(String, Value?)] {
        func s(_ key: String) -> Value? { local.metadataString(key).map(Value.string) }
        return [
            ("name", .string(job.run)), ("project", .string(job.project)), ("entity", entity.map(Value.string)),
            ("groupName", s("group")), ("description", nil), ("displayName", s("name")), ("notes", s("notes")),
            ("commit", s("git_commit")), ("config", .string(configJSON(local))), ("host", s("host")), ("debug", nil),
            ("program", s("program")), ("repo", s("git_remote")), ("jobType", s("job_type")), ("state", nil), ("sweep", nil),
            ("tags", .array(local.state.tags.map(Value.string))), ("summaryMetrics", nil),
        ]
    }

    func upsertDigest(_ variables: [(String, Value?)]) -> String {
        WandbPushEncoding.digest(variables.map { "\($0.0)=\($0.1.map(WandbPushEncoding.json) ?? "null")" }.joined(separator: "\n"))
    }

    /// The `_wandb` value of the config: a telemetry object (`t`: a run without it looks never
    /// started to the wandb client), and for a fork its branch point.
    func wandbConfig(_ local: Local) -> Value {
        var w = local.state.config["_wandb"]?["value"]?.objectValue ?? local.state.config["_wandb"]?.objectValue ?? [:]
        if w["t"] == nil { w["t"] = .object([:]) }
        if let fork = local.fork {
            w["branch_point"] = .object(["run_id": .string(fork.sourceID), "step": .int(fork.step)])
        }
        return .object(w)
    }

    /// The config as W&B's JSONString: `{"key": {"value": v}, "_wandb": {"value": {...}}}`.
    func configJSON(_ local: Local) -> String {
        var o = local.state.config.mapValues { Value.object(["value": $0]) }
        o["_wandb"] = .object(["value": wandbConfig(local)])
        return WandbPushEncoding.json(.object(o))
    }

    // MARK: Summary

    /// `wandb-summary.json`: the run's summary with the client's `_step`, `_runtime`,
    /// `_timestamp` and `_wandb.runtime`.
    func summaryLine(_ local: Local) -> String {
        var o = local.state.summary
        let last: HistoryRow?
        if let step = try? local.reader.lastLiveStep() {
            last = (try? local.reader.history(from: step, limit: 1))?.first
        } else {
            last = nil
        }
        let runtime = local.state.exit?.runtime ?? last.map { WandbPushEncoding.runtime($0.timestamp, start: local.start) } ?? 0
        if let last {
            if o["_step"] == nil { o["_step"] = .int(last.step) }
            if o["_timestamp"] == nil { o["_timestamp"] = .double(Double(last.timestamp) / 1e6) }
        }
        if o["_runtime"] == nil { o["_runtime"] = .double(runtime) }
        o["_wandb"] = .object(["runtime": .int(Int64(runtime.rounded(.down)))])
        return WandbPushEncoding.json(.object(o))
    }

    // MARK: file_stream lines

    /// Lines gathered for one file_stream request.
    struct Batch {
        var history: [String] = []
        var historyLastStep: Int64?
        var console: [String] = []
        var consoleTaken = 0
        var events: [String] = []
        var eventsTaken = 0
        var bytes = 0

        var isEmpty: Bool { history.isEmpty && console.isEmpty && events.isEmpty && consoleTaken == 0 && eventsTaken == 0 && historyLastStep == nil }
        var lineCount: Int { history.count + console.count + events.count }
    }

    /// Sends every line the server does not hold yet, in requests of at most `batchBytes`.
    private func streamLines(_ local: Local, entity: String, project: String) async throws(WandbPushError) {
        let limit = max(1024, options.batchBytes)
        var batch = Batch()

        for line in local.console.dropFirst(cursor.consoleLines) {
            let q = WandbPushEncoding.quoted(WandbPushEncoding.consoleLine(line))
            if try await admit(q, "output.log", &batch, limit: limit, entity: entity, project: project) { batch.console.append(q) }
            batch.consoleTaken += 1
        }
        for sample in local.samples.dropFirst(cursor.eventsLines) {
            let q = WandbPushEncoding.quoted(WandbPushEncoding.eventsLine(sample, start: local.start))
            if try await admit(q, "wandb-events.jsonl", &batch, limit: limit, entity: entity, project: project) { batch.events.append(q) }
            batch.eventsTaken += 1
        }
        var from = cursor.lastStep.map { $0 == .max ? $0 : $0 + 1 } ?? .min
        while cursor.lastStep != .max {
            let rows: [HistoryRow]
            do { rows = try local.reader.history(from: from, limit: options.historyPage) } catch {
                throw .fatal("cannot read the run's history: \(error)")
            }
            guard let lastRow = rows.last else { break }
            for row in rows {
                let q = WandbPushEncoding.quoted(WandbPushEncoding.historyLine(row, start: local.start))
                if try await admit(q, "wandb-history.jsonl", &batch, limit: limit, entity: entity, project: project) { batch.history.append(q) }
                batch.historyLastStep = row.step
            }
            if lastRow.step == .max { break }
            from = lastRow.step + 1
        }
        if !batch.isEmpty { try await send(batch, entity: entity, project: project) }
    }

    /// Whether a quoted line goes into the batch: not when it alone is over the limit (it is
    /// dropped, as the client drops it). Sends the batch first when the line would overflow it.
    private func admit(_ quoted: String, _ what: String, _ batch: inout Batch, limit: Int, entity: String, project: String) async throws(WandbPushError) -> Bool {
        let size = quoted.utf8.count + 1
        if size + 256 > limit {
            report.droppedLines += 1
            report.warnings.append("a \(what) line of \(size) bytes is over the request limit and was dropped")
            return false
        }
        if batch.bytes + size + 256 > limit, batch.lineCount > 0 {
            try await send(batch, entity: entity, project: project)
            batch = Batch()
        }
        batch.bytes += size
        return true
    }

    /// Sends one batch at the cursor's offsets, then advances and saves the cursor.
    private func send(_ b: Batch, entity: String, project: String) async throws(WandbPushError) {
        if b.lineCount > 0 {
            var body = "{\"files\":{"
            var first = true
            func file(_ name: String, _ offset: Int64, _ lines: [String]) {
                guard !lines.isEmpty else { return }
                if !first { body += "," }
                first = false
                body += WandbPushEncoding.quoted(name) + ":{\"offset\":\(offset),\"content\":["
                body += lines.joined(separator: ",")
                body += "]}"
            }
            file("wandb-history.jsonl", cursor.historyLines, b.history)
            file("output.log", cursor.consoleOffset, b.console)
            file("wandb-events.jsonl", cursor.eventsOffset, b.events)
            body += "}}"
            let stop = try await client.fileStream(entity: entity, project: project, run: job.run, body: body, onRetry: onRetry)
            report.requests += 1
            report.bytes += body.utf8.count
            report.stopRequested = report.stopRequested || stop
            events(.sent(job, WandbPushSent(request: "file_stream", lines: b.lineCount, bytes: body.utf8.count)))
        }
        cursor.historyLines += Int64(b.history.count)
        if let s = b.historyLastStep { cursor.lastStep = s }
        cursor.consoleLines += b.consoleTaken
        cursor.consoleOffset += Int64(b.console.count)
        cursor.eventsLines += b.eventsTaken
        cursor.eventsOffset += Int64(b.events.count)
        report.historyLines += b.history.count
        report.consoleLines += b.console.count
        report.eventsLines += b.events.count
        persist()
    }

    // MARK: Files

    /// A file to upload: its name on the server, a digest of its content, and how to read it.
    struct Upload {
        var name: String
        var digest: String
        var content: () throws -> Data
    }

    /// The files the server should hold, the run's saved files first (they win a name clash).
    func desiredFiles(_ local: Local, summaryLine: String) -> [Upload] {
        var out: [Upload] = []
        var names = Set<String>()
        let dir = job.directory + "/" + LogFormat.filesDirectoryName + "/"
        for (path, ref) in local.files.sorted(by: { $0.key < $1.key }) {
            let digest = (ref.digest.isEmpty ? "t\(ref.timestamp)" : ref.digest) + "/\(ref.size)"
            out.append(Upload(name: path, digest: digest) { try Data(contentsOf: URL(fileURLWithPath: dir + path), options: .mappedIfSafe) })
            names.insert(path)
        }
        func generated(_ name: String, _ text: String) {
            guard !names.contains(name) else { return }
            out.append(Upload(name: name, digest: WandbPushEncoding.digest(text)) { Data(text.utf8) })
        }
        var config = local.state.config
        config["_wandb"] = wandbConfig(local)
        generated("config.yaml", WandbPushEncoding.configYAML(config))
        generated("wandb-summary.json", summaryLine)
        generated("wandb-metadata.json", metadataJSON(local))
        if !local.live, !local.console.isEmpty {
            var text = ""
            for line in local.console {
                text += line.text
                if !line.text.hasSuffix("\n") { text += "\n" }
            }
            generated("output.log", text)
        }
        return out
    }

    /// `wandb-metadata.json`: what the run recorded about where it ran.
    func metadataJSON(_ local: Local) -> String {
        var members: [(key: String, value: Value)] = []
        let m = local.state.metadata
        if let os = m["os"] { members.append(("os", os)) }
        members.append(("runlog", .bool(true)))
        if let start = local.start { members.append(("startedAt", .string(WandbPushEncoding.isoTime(start) + "Z"))) }
        if let p = m["program"] { members.append(("program", p)) }
        if let a = m["args"] { members.append(("args", a)) }
        if let h = m["host"] { members.append(("host", h)) }
        if let r = m["git_remote"] { members.append(("git", .object(["remote": r, "commit": m["git_commit"] ?? .null]))) }
        var out = ""
        WandbPushEncoding.writeObject(members, into: &out)
        return out
    }

    /// Uploads new and changed files; returns their names.
    private func uploadFiles(_ local: Local, summaryLine: String, entity: String, project: String) async throws(WandbPushError) -> [String] {
        let changed = desiredFiles(local, summaryLine: summaryLine).filter { cursor.files[$0.name] != $0.digest }
        guard !changed.isEmpty else { return [] }
        let (urls, headers) = try await client.createRunFiles(entity: entity, project: project, run: job.run,
                                                              files: changed.map(\.name), onRetry: onRetry)
        report.requests += 1
        var uploaded: [String] = []
        for f in changed {
            guard let url = urls[f.name] else {
                report.warnings.append("the server gave no upload URL for \(f.name)")
                continue
            }
            let data: Data
            do { data = try f.content() } catch {
                report.warnings.append("cannot read \(f.name): \(error.localizedDescription)")
                continue
            }
            try await client.put(url, headers: headers, body: data, what: "PUT \(f.name)", onRetry: onRetry)
            report.requests += 1
            report.bytes += data.count
            cursor.files[f.name] = f.digest
            uploaded.append(f.name)
            persist()
            events(.sent(job, WandbPushSent(request: "PUT \(f.name)", lines: 0, bytes: data.count)))
        }
        report.filesUploaded += uploaded
        return uploaded
    }

    // MARK: Dry run

    /// What a push would send, without the network.
    static func plan(_ job: WandbPushJob, serverKey: String) throws(WandbPushError) -> WandbPushPlan {
        let local = try Local(job)
        defer { local.reader.close() }
        let c = WandbPushCursor.load(directory: job.directory, server: serverKey).flatMap {
            $0.run == job.run && $0.project == job.project && (job.entity == nil || $0.entity == job.entity) ? $0 : nil
        }
        var lastStep = c?.lastStep
        var rewindTo: Int64?
        if let c, local.state.rewinds.count > c.rewinds, let step = local.state.rewinds[c.rewinds...].map(\.step).min(),
           let last = c.lastStep, step < last {
            rewindTo = step
            lastStep = step
        }
        if c == nil, let fork = local.fork { lastStep = fork.step }
        var rows = 0
        var from = lastStep.map { $0 + 1 } ?? .min
        while true {
            let page: [HistoryRow]
            do { page = try local.reader.history(from: from, limit: 4_096) } catch { throw .fatal("cannot read the run's history: \(error)") }
            guard let last = page.last else { break }
            rows += page.count
            if last.step == .max { break }
            from = last.step + 1
        }
        return WandbPushPlan(firstPush: c == nil, historyRows: rows, consoleLines: max(0, local.console.count - (c?.consoleLines ?? 0)),
                             eventsLines: max(0, local.samples.count - (c?.eventsLines ?? 0)), rewindTo: rewindTo,
                             complete: !local.live && (c?.completedLifecycle != local.lifecycle || rewindTo != nil))
    }
}
