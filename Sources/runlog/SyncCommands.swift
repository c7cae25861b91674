import ArgumentParser
import Foundation
import RunLog
import RunLogStore
import RunLogSync
import Synchronization

struct Sync: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sync",
        abstract: "Send runs to a RunLog server: parallel, incremental, idempotent, resumable.",
        discussion: "Each PATH is a run directory or a folder searched for runs (default: ./runlog). Only frames the server has not acknowledged are sent, as stored. A progress bar on a terminal, JSON lines otherwise.")

    @Argument(help: "Run directories or folders holding runs.") var paths: [String] = []
    @Option(help: "Server URL (default: RUNLOG_BASE_URL, WANDB_BASE_URL, or the `runlog login` host).") var server: String?
    @Option(help: "API key (default: RUNLOG_API_KEY, WANDB_API_KEY, or the saved key).") var apiKey: String?
    @Option(help: "Entity for runs that name none.") var entity: String?
    @Option(help: "Runs synced at once.") var jobs = 4
    @Flag(help: "Follow runs still being written until they finish.") var live = false
    @Flag(help: "List what would be sent, send nothing.") var dryRun = false
    @Flag(help: "JSON lines instead of a progress bar.") var json = false
    @Option(name: .customLong("protocol"), help: "native (RunLog frames, to `runlog server`) or wandb (the W&B server protocol).") var syncProtocol: SyncProtocolKind = .native
    @Option(help: "Where wandb offline runs are folded into RunLog runs before syncing (default: ~/.cache/runlog/wandb).") var importCache: String?
    /// Hidden, for tests: frames per request (default 4,096), so that a small run takes many requests.
    @Option(help: .hidden) var batchFrames: Int?

    func run() async throws {
        if syncProtocol == .wandb { return try await runWandbProtocol() }
        // wandb offline runs: folded into RunLog runs in the import cache, then synced like
        // them; each is synced as soon as it is folded, while the others are still folding.
        // A path is a wandb run, or a folder of runs of either kind (one listing per path).
        var wandbRuns: [String] = [], roots: [String] = paths.isEmpty ? ["runlog"] : []
        for p in paths {
            if let file = WandbImport.logFile(of: p) { wandbRuns.append(file) } else {
                wandbRuns += WandbSyncImport.discover(p)
                roots.append(p)
            }
        }
        let dirs = roots.flatMap { RunDiscovery.runs(under: $0) }
        let plan = wandbRuns.isEmpty ? nil : try WandbSyncImport.Plan(wandbRuns, cache: importCache ?? WandbSyncImport.defaultCache)
        guard !dirs.isEmpty || plan?.runs.isEmpty == false else {
            throw ValidationError("no runs found under \((paths.isEmpty ? ["runlog"] : paths).joined(separator: ", "))")
        }
        let creds = Credentials.resolve(server: server, apiKey: apiKey)
        if creds == nil && !dryRun {
            throw ValidationError("no server or API key: pass --server and --api-key, set RUNLOG_BASE_URL and RUNLOG_API_KEY, or run `runlog login`")
        }
        let defaultEntity = entity ?? creds?.entity ?? "default"
        var jobsList: [SyncJob] = []
        for d in dirs {
            do { jobsList.append(try RunDiscovery.job(for: d, defaultEntity: defaultEntity)) } catch {
                FileHandle.standardError.write(Data("runlog: skipping \(d): \(error)\n".utf8))
            }
        }
        if dryRun {
            var failed = false
            if let plan {
                let folded = Mutex<[SyncJob]>([])
                let failures = Mutex<[String]>([])
                plan.fold { r in
                    switch r {
                    case .success(let p): folded.withLock { $0.append(p.job(defaultEntity: defaultEntity)) }
                    case .failure(let e): failures.withLock { $0.append("\(e)") }
                    }
                }
                jobsList += folded.withLock { $0 }.sorted { $0.directory < $1.directory }
                for f in failures.withLock({ $0 }) {
                    FileHandle.standardError.write(Data("runlog: cannot fold the wandb run: \(f)\n".utf8))
                    failed = true
                }
            }
            for j in jobsList {
                let reader = try RunDirectory.reader(j.directory)
                let acked = creds.map { SyncCursor.load(directory: j.directory, server: $0.server, run: j.remote) } ?? 0
                let unsent = reader.frames.filter { $0.header.sequence > acked }
                let line: [String: Value] = ["run": .string("\(j.remote)"), "directory": .string(j.directory),
                                             "frames": .int(Int64(unsent.count)), "bytes": .int(Int64(unsent.reduce(0) { $0 + $1.header.frameSize }))]
                print(Value.object(line).description)
            }
            if failed { throw ExitCode(2) }
            return
        }
        guard let creds, let url = URL(string: creds.server) else { throw ValidationError("invalid server URL") }
        var config = RunSyncMachine.Configuration()
        config.live = live
        if let batchFrames { config.batchFrames = max(1, batchFrames) }
        let engine = SyncEngine(transport: HTTPSyncTransport(baseURL: url, apiKey: creds.apiKey), serverKey: creds.server,
                                configuration: config, concurrency: jobs)
        let progress = SyncProgress(total: jobsList.count + (plan?.runs.count ?? 0), json: json || isatty(1) == 0)
        let (queue, arrive) = AsyncStream.makeStream(of: SyncJob.self)
        for j in SyncEngine.parentsFirst(jobsList) { arrive.yield(j) }
        let foldFailures = Mutex<[(SyncJob, String)]>([])
        if let plan {
            // Folding blocks (file reads and writes on threads of its own) while the folded
            // runs sync: a thread of its own too, not one of the concurrency pool's.
            Thread {
                plan.fold { result in
                    switch result {
                    case .success(let p): arrive.yield(p.job(defaultEntity: defaultEntity))
                    case .failure(let error):
                        let dir = (error as? WandbSyncImport.PlanError)?.directory
                        let job = plan.runs.first { $0.directory == dir }?.job(defaultEntity: defaultEntity)
                            ?? SyncJob(directory: dir ?? "", remote: RemoteRun(entity: defaultEntity, project: "", id: ""))
                        let message = "cannot fold the wandb run: \(error)"
                        progress.handle(.failed(job, message: message))
                        foldFailures.withLock { $0.append((job, message)) }
                    }
                }
                arrive.finish()
            }.start()
        } else {
            arrive.finish()
        }
        // A native run forked from a wandb run waits for it, though the wandb run comes later.
        let expected = Set(plan?.runs.map(\.remoteID) ?? [])
        var report = await engine.sync(queue, expected: expected) { progress.handle($0) }
        report.failed += foldFailures.withLock { $0 }
        progress.done(report)
        if !report.failed.isEmpty { throw ExitCode(2) }
    }
}

/// Renders sync events: a progress bar on a terminal, JSON lines otherwise.
final class SyncProgress: Sendable {
    private struct State {
        var done = 0, failed = 0, bytes = 0, records = 0, totalBytes = 0, totalRecords = 0
        var lastDraw = 0.0
    }
    private let state = Mutex(State())
    let total: Int
    let json: Bool
    let start = Date()

    init(total: Int, json: Bool) {
        self.total = total
        self.json = json
    }

    func handle(_ event: SyncEvent) {
        var line: [String: Value]?
        state.withLock { s in
            switch event {
            case .started(let job, let frames, let bytes, let records):
                s.totalBytes += bytes
                s.totalRecords += records
                line = ["event": "started", "run": .string("\(job.remote)"), "frames": .int(Int64(frames)), "bytes": .int(Int64(bytes))]
            case .sent(let job, let frames, let bytes, let records, let ack):
                s.bytes += bytes
                s.records += records
                line = ["event": "sent", "run": .string("\(job.remote)"), "frames": .int(Int64(frames)), "bytes": .int(Int64(bytes)),
                        "records": .int(Int64(records)), "acknowledged": .int(Int64(ack))]
            case .retrying(let job, let attempt, let delay, _):
                line = ["event": "retrying", "run": .string("\(job.remote)"), "attempt": .int(Int64(attempt)), "delay": .double(delay)]
            case .finished(let job, let ack):
                s.done += 1
                line = ["event": "finished", "run": .string("\(job.remote)"), "acknowledged": .int(Int64(ack))]
            case .failed(let job, let message):
                s.failed += 1
                line = ["event": "failed", "run": .string("\(job.remote)"), "error": .string(message)]
            }
        }
        if json {
            if let line { print(Value.object(line).description) }
        } else {
            if case .failed(let job, let message) = event {
                FileHandle.standardError.write(Data("\r\u{1B}[Kfailed: \(job.remote): \(message)\n".utf8))
            }
            draw(force: false)
        }
    }

    private func draw(force: Bool) {
        let now = Date().timeIntervalSince(start)
        let s: State? = state.withLock { s in
            guard force || now - s.lastDraw >= 0.1 else { return nil }
            s.lastDraw = now
            return s
        }
        guard let s else { return }
        let width = 30
        let fraction = s.totalBytes > 0 ? Double(s.bytes) / Double(s.totalBytes) : Double(s.done) / Double(max(total, 1))
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "=", count: filled) + (filled < width ? ">" : "") + String(repeating: " ", count: max(0, width - filled - 1))
        let rate = now > 0 ? Double(s.records) / now : 0
        let eta = fraction > 0 && fraction < 1 ? now / fraction - now : 0
        let text = String(format: "\r\u{1B}[K[%@] %d/%d runs  %@ records/s  %@  ETA %@", bar, s.done + s.failed, total,
                          Self.human(rate), Self.bytes(s.bytes), Self.clock(eta))
        FileHandle.standardOutput.write(Data(text.utf8))
    }

    func done(_ report: SyncReport) {
        let elapsed = Date().timeIntervalSince(start)
        if json {
            print(Value.object(["event": "done", "runs": .int(Int64(total)), "finished": .int(Int64(report.finished.count)),
                                "failed": .int(Int64(report.failed.count)), "bytes": .int(Int64(report.bytes)),
                                "records": .int(Int64(report.records)), "seconds": .double(elapsed)]).description)
        } else {
            draw(force: true)
            print("\nsynced \(report.finished.count) of \(total) runs, \(Self.bytes(report.bytes)), \(report.records) records in \(String(format: "%.1f", elapsed)) s"
                  + (report.failed.isEmpty ? "" : "; \(report.failed.count) failed"))
        }
    }

    static func human(_ x: Double) -> String {
        x >= 1e6 ? String(format: "%.1fM", x / 1e6) : x >= 1e3 ? String(format: "%.1fk", x / 1e3) : String(format: "%.0f", x)
    }
    static func bytes(_ n: Int) -> String {
        n >= 1 << 30 ? String(format: "%.1f GiB", Double(n) / 1073741824) : n >= 1 << 20 ? String(format: "%.1f MiB", Double(n) / 1048576)
            : n >= 1 << 10 ? String(format: "%.1f KiB", Double(n) / 1024) : "\(n) B"
    }
    static func clock(_ s: Double) -> String { String(format: "%d:%02d", Int(s) / 60, Int(s) % 60) }
}

struct Ls: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "List local runs: state, steps, size on disk, synced or not.")
    @Argument(help: "A folder holding runs (default: ./runlog).") var path = "runlog"
    @Option(help: "Server whose sync state to show (default: the login host).") var server: String?
    @Flag(help: "JSON lines.") var json = false

    func run() throws {
        let host = server ?? Credentials.resolve(server: nil, apiKey: nil)?.server ?? Credentials.load().defaultHost
        if !json { print("RUN                              STATE      STEPS       SIZE  SYNCED") }
        for dir in RunDiscovery.runs(under: path) {
            do {
                let reader = try RunDirectory.reader(dir)
                let state = try reader.state()
                let last = try reader.lastLiveStep()
                let size = Int(LocalFile.size(RunDirectory.logPath(dir)) ?? 0)
                let lastSeq = reader.frames.last?.header.sequence ?? 0
                let cursors = SyncCursor.all(dir).filter { host == nil || $0.key.hasPrefix(host! + "#") }
                let acked = cursors.values.max() ?? 0
                let synced = acked >= lastSeq ? "yes" : (acked == 0 ? "no" : "partly")
                let live = RunDirectory.hasLiveWriter(dir)
                let runState = live ? "running" : (state.exit?.state ?? "crashed")
                let name = "\(state.metadata["project"]?.stringValue ?? "?")/\(state.metadata["id"]?.stringValue ?? "?")"
                if json {
                    print(Value.object(["run": .string(name), "directory": .string(dir), "state": .string(runState),
                                        "steps": .int((last ?? -1) + 1), "bytes": .int(Int64(size)), "synced": .string(synced)]).description)
                } else {
                    print(name.padding(toLength: 32, withPad: " ", startingAt: 0) + " " + runState.padding(toLength: 9, withPad: " ", startingAt: 0)
                          + String(format: " %7lld %10@  %@", (last ?? -1) + 1, SyncProgress.bytes(size), synced))
                }
            } catch {
                print("\(dir): \(error)")
            }
        }
    }
}

struct Login: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "login", abstract: "Save an API key for a server (in a file only you can read).")
    @Option(help: "Server URL.") var host: String
    @Option(help: "API key (default: read from standard input).") var key: String?
    @Option(help: "Default entity for runs that name none.") var entity: String?

    func run() throws {
        let apiKey = key ?? readLine(strippingNewline: true) ?? ""
        guard Self.validKey(apiKey) else {
            throw ValidationError("an API key is an optional `prefix-` then at least 40 letters, digits or _")
        }
        var c = Credentials.load()
        c.hosts[host] = .init(apiKey: apiKey, entity: entity)
        c.defaultHost = host
        try c.save()
        print("saved the key for \(host) in \(Credentials.path)")
    }

    static func validKey(_ k: String) -> Bool {
        let body = k.split(separator: "-", maxSplits: 1).last.map(String.init) ?? k
        return body.count >= 40 && body.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }
    }
}

struct GC: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "gc", abstract: "Remove the local data of runs the server has in full.")
    @Argument(help: "A folder holding runs (default: ./runlog).") var path = "runlog"
    @Flag(help: "Required: only fully synced, finished runs are removed.") var synced = false
    @Option(help: "Server whose acknowledgement counts (default: the login host).") var server: String?
    @Flag(help: "Only list what would be removed.") var dryRun = false

    func run() throws {
        guard synced else { throw ValidationError("gc removes data: pass --synced to remove runs the server has in full") }
        guard let host = server ?? Credentials.resolve(server: nil, apiKey: nil)?.server ?? Credentials.load().defaultHost else {
            throw ValidationError("no server: pass --server or run `runlog login`")
        }
        var removed = 0
        for dir in RunDirectory.runsForGC(path) {
            guard !RunDirectory.hasLiveWriter(dir), let reader = try? RunDirectory.reader(dir), let state = try? reader.state(),
                  state.exit != nil else { continue }
            let lastSeq = reader.frames.last?.header.sequence ?? 0
            let acked = SyncCursor.all(dir).filter { $0.key.hasPrefix(host + "#") }.values.max() ?? 0
            guard acked >= lastSeq, lastSeq > 0 else { continue }
            print((dryRun ? "would remove " : "removing ") + dir)
            if !dryRun { try FileManager.default.removeItem(atPath: dir) }
            removed += 1
        }
        print("\(removed) run(s) \(dryRun ? "would be " : "")removed")
    }
}

extension RunDirectory {
    static func runsForGC(_ path: String) -> [String] { RunDiscovery.runs(under: path) }
}

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Convert wandb offline runs (offline-run-*/ or .wandb files) into RunLog runs.",
        discussion: "A file cut short by a kill imports everything that is whole. Each run lands in DIR/<project>/<id>-<dir name>.")
    @Argument(help: "wandb offline run directories or .wandb files.") var paths: [String]
    @Option(help: "Where the runs go (default: ./runlog).") var to = "runlog"

    func run() throws {
        var failed = 0
        for path in paths {
            do {
                let run = try WandbRun(contentsOf: URL(fileURLWithPath: path))
                let base = ((path.hasSuffix(".wandb") ? (path as NSString).deletingLastPathComponent : path) as NSString).lastPathComponent
                let dest = to + "/" + (run.project.isEmpty ? "uncategorized" : run.project) + "/" + run.id + "-" + base
                let r = try WandbImport.write(run, to: dest)
                print("imported \(path) -> \(r.directory) (\(r.rows) rows" + (r.droppedBytes > 0 ? ", \(r.droppedBytes) bytes of a torn tail dropped" : "") + ")")
            } catch {
                failed += 1
                FileHandle.standardError.write(Data("runlog: cannot import \(path): \(error)\n".utf8))
            }
        }
        if failed > 0 { throw ExitCode(1) }
    }
}
