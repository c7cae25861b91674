import ArgumentParser
import Foundation
import RunLogStore
import RunLogSync
import Synchronization

/// The protocol `runlog sync` speaks: RunLog's own (frames, to `runlog server`) or the W&B
/// server protocol (GraphQL + file_stream + uploads, to any W&B-protocol server).
enum SyncProtocolKind: String, ExpressibleByArgument, CaseIterable, Sendable {
    case native, wandb
}

extension Sync {
    /// `runlog sync --protocol wandb`: pushes runs the way the wandb client syncs offline runs.
    ///
    /// Hidden tuning for tests: `RUNLOG_WANDB_BATCH_BYTES` (bytes of lines per file_stream
    /// request, default 10 MiB), `RUNLOG_WANDB_RETRIES` (tries per request, default 8),
    /// `RUNLOG_WANDB_RETRY_DELAY` (seconds before the first retry, default 0.5; doubles each time),
    /// `RUNLOG_WANDB_POLL_INTERVAL` (seconds between pushes of a run followed with `--live`, default 2).
    func runWandbProtocol() async throws {
        let roots = paths.isEmpty ? ["runlog"] : paths
        let dirs = roots.flatMap { RunDiscovery.runs(under: $0) }
        guard !dirs.isEmpty else { throw ValidationError("no runs found under \(roots.joined(separator: ", "))") }
        let creds = Credentials.resolve(server: server, apiKey: apiKey)
        if creds == nil && !dryRun {
            throw ValidationError("no server or API key: pass --server and --api-key, set RUNLOG_BASE_URL and RUNLOG_API_KEY, or run `runlog login`")
        }
        // No entity: the server picks (the key's default), as with the wandb client.
        let defaultEntity = entity ?? creds?.entity
        var jobsList: [WandbPushJob] = []
        for d in dirs {
            do { jobsList.append(try WandbPushJob.discover(d, defaultEntity: defaultEntity)) } catch {
                FileHandle.standardError.write(Data("runlog: skipping \(d): \(error)\n".utf8))
            }
        }
        let env = ProcessInfo.processInfo.environment
        var options = WandbPushOptions()
        options.follow = live
        if let p = env["RUNLOG_WANDB_POLL_INTERVAL"].flatMap(Double.init), p > 0 { options.pollInterval = p }
        if let b = env["RUNLOG_WANDB_BATCH_BYTES"].flatMap(Int.init), b > 0 { options.batchBytes = b }
        var retry = WandbPushClient.Retry()
        if let n = env["RUNLOG_WANDB_RETRIES"].flatMap(Int.init), n > 0 { retry.attempts = n }
        if let d = env["RUNLOG_WANDB_RETRY_DELAY"].flatMap(Double.init), d >= 0 { retry.initialDelay = d }
        let serverURL = creds?.server ?? server ?? ""
        let engine = WandbPushEngine(client: WandbPushClient(baseURL: serverURL, apiKey: creds?.apiKey ?? "", retry: retry),
                                     serverKey: serverURL, options: options, concurrency: jobs)
        if dryRun {
            for j in jobsList {
                var line: [String: Value] = ["run": .string(j.description), "directory": .string(j.directory)]
                do {
                    let p = try engine.plan(j)
                    line["first_push"] = .bool(p.firstPush)
                    line["history_rows"] = .int(Int64(p.historyRows))
                    line["console_lines"] = .int(Int64(p.consoleLines))
                    line["events_lines"] = .int(Int64(p.eventsLines))
                    line["rewind_to"] = p.rewindTo.map(Value.int) ?? .null
                    line["complete"] = .bool(p.complete)
                } catch {
                    line["error"] = .string(error.description)
                }
                print(Value.object(line).description)
            }
            return
        }
        guard URL(string: serverURL)?.scheme != nil else { throw ValidationError("invalid server URL \(serverURL)") }
        let progress = WandbPushProgress(total: jobsList.count, json: json || isatty(1) == 0)
        let report = await engine.push(jobsList) { progress.handle($0) }
        progress.done(report)
        if !report.failed.isEmpty { throw ExitCode(2) }
    }
}

/// Push progress: JSON lines (`started`, `retrying`, `finished`, `failed`, `done`), or on a
/// terminal one line per run.
final class WandbPushProgress: Sendable {
    private struct State {
        var done = 0, failed = 0, requests = 0, bytes = 0
    }
    private let state = Mutex(State())
    let total: Int
    let json: Bool
    let start = Date()

    init(total: Int, json: Bool) {
        self.total = total
        self.json = json
    }

    func handle(_ event: WandbPushEvent) {
        var line: [String: Value]?
        var text: String?
        state.withLock { s in
            switch event {
            case .started(let job):
                line = ["event": "started", "run": .string(job.description), "directory": .string(job.directory)]
            case .sent(_, let sent):
                s.requests += 1
                s.bytes += sent.bytes
            case .retrying(let job, let attempt, let delay, let message):
                line = ["event": "retrying", "run": .string(job.description), "attempt": .int(Int64(attempt)), "delay": .double(delay),
                        "error": .string(message)]
                text = "retrying \(job.description) in \(String(format: "%.1f", delay)) s: \(message)"
            case .finished(let job, let r):
                s.done += 1
                var o: [String: Value] = [
                    "event": "finished", "run": .string("\(r.entity ?? "?")/\(r.project ?? job.project)/\(r.run)"),
                    "history_lines": .int(Int64(r.historyLines)), "console_lines": .int(Int64(r.consoleLines)),
                    "events_lines": .int(Int64(r.eventsLines)), "files": .array(r.filesUploaded.map(Value.string)),
                    "requests": .int(Int64(r.requests)), "bytes": .int(Int64(r.bytes)), "created": .bool(r.created),
                    "completed": .bool(r.completed), "up_to_date": .bool(r.upToDate),
                ]
                if let s = r.rewoundTo { o["rewound_to"] = .int(s) }
                if let c = r.exitCode { o["exit_code"] = .int(c) }
                if r.droppedLines > 0 { o["dropped_lines"] = .int(Int64(r.droppedLines)) }
                if !r.warnings.isEmpty { o["warnings"] = .array(r.warnings.map(Value.string)) }
                line = o
                text = "\(r.entity ?? "?")/\(r.project ?? job.project)/\(r.run): "
                    + (r.upToDate ? "up to date" : "\(r.historyLines) history, \(r.consoleLines) console, \(r.eventsLines) system lines, \(r.filesUploaded.count) files"
                        + (r.rewoundTo.map { ", rewound to step \($0)" } ?? "") + (r.completed ? ", complete" : ""))
                    + r.warnings.map { "\n  warning: \($0)" }.joined()
            case .failed(let job, let message):
                s.failed += 1
                line = ["event": "failed", "run": .string(job.description), "error": .string(message)]
                text = "failed: \(job.description): \(message)"
            }
        }
        if json {
            if let line { print(Value.object(line).description) }
        } else if let text {
            if case .failed = event { FileHandle.standardError.write(Data((text + "\n").utf8)) } else { print(text) }
        }
    }

    func done(_ report: WandbPushReport) {
        let elapsed = Date().timeIntervalSince(start)
        let s = state.withLock { $0 }
        if json {
            print(Value.object(["event": "done", "runs": .int(Int64(total)), "finished": .int(Int64(report.finished.count)),
                                "failed": .int(Int64(report.failed.count)), "requests": .int(Int64(s.requests)),
                                "bytes": .int(Int64(s.bytes)), "history_lines": .int(Int64(report.historyLines)),
                                "seconds": .double(elapsed)]).description)
        } else {
            print("pushed \(report.finished.count) of \(total) runs, \(s.requests) requests, \(SyncProgress.bytes(s.bytes)) in \(String(format: "%.1f", elapsed)) s"
                  + (report.failed.isEmpty ? "" : "; \(report.failed.count) failed"))
        }
    }
}
