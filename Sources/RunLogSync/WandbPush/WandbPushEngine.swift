import Foundation
import RunLogStore

/// One request a push made.
public struct WandbPushSent: Sendable {
    /// `UpsertBucket`, `RewindRun`, `file_stream`, `PUT <name>`.
    public var request: String
    public var lines: Int
    public var bytes: Int
}

/// What the engine reports while it works.
public enum WandbPushEvent: Sendable {
    case started(WandbPushJob)
    case sent(WandbPushJob, WandbPushSent)
    case retrying(WandbPushJob, attempt: Int, delay: Double, message: String)
    case finished(WandbPushJob, WandbRunPushReport)
    case failed(WandbPushJob, String)
}

/// How each run ended.
public struct WandbPushReport: Sendable {
    public var finished: [(WandbPushJob, WandbRunPushReport)] = []
    public var failed: [(WandbPushJob, String)] = []
    public var bytes: Int { finished.reduce(0) { $0 + $1.1.bytes } }
    public var historyLines: Int { finished.reduce(0) { $0 + $1.1.historyLines } }
}

/// Pushes RunLog runs to a W&B-protocol server (`runlog sync --protocol wandb`): many runs
/// in parallel with bounded concurrency, fork parents before their children (the server
/// copies a fork's first rows from its parent), each run incremental and idempotent
/// through its ``WandbPushCursor``. A run that fails (a 4xx other than 409/429, a GraphQL
/// error, retries exhausted) is reported and the others go on.
public final class WandbPushEngine: Sendable {
    public let client: WandbPushClient
    /// The cursor key: the server URL as given.
    public let serverKey: String
    public let options: WandbPushOptions
    public let concurrency: Int

    public init(client: WandbPushClient, serverKey: String? = nil, options: WandbPushOptions = .init(), concurrency: Int = 4) {
        self.client = client
        self.serverKey = WandbPushCursor.key(server: serverKey ?? client.baseURL)
        self.options = options
        self.concurrency = max(1, concurrency)
    }

    /// Pushes `jobs`; returns when every run has finished or failed.
    public func push(_ jobs: [WandbPushJob], events: @escaping @Sendable (WandbPushEvent) -> Void = { _ in }) async -> WandbPushReport {
        func key(_ project: String, _ run: String) -> String { project + "/" + run }
        let ids = Set(jobs.map { key($0.project, $0.run) })
        var waiting: [String: [WandbPushJob]] = [:]  // parent -> children
        var ready: [WandbPushJob] = []
        for job in jobs {
            if let parent = job.parentID, parent != job.run, ids.contains(key(job.parentProject ?? job.project, parent)) {
                waiting[key(job.parentProject ?? job.project, parent), default: []].append(job)
            } else {
                ready.append(job)
            }
        }
        var report = WandbPushReport()
        await withTaskGroup(of: (WandbPushJob, Result<WandbRunPushReport, WandbPushError>).self) { group in
            var running = 0
            func launch() {
                while running < concurrency, !ready.isEmpty {
                    let job = ready.removeFirst()
                    running += 1
                    group.addTask { (job, await self.pushRun(job, events: events)) }
                }
            }
            func account(_ job: WandbPushJob, _ result: Result<WandbRunPushReport, WandbPushError>) {
                running -= 1
                switch result {
                case .success(let r): report.finished.append((job, r))
                case .failure(let e): report.failed.append((job, e.description))
                }
            }
            launch()
            while let (job, result) = await group.next() {
                account(job, result)
                ready.append(contentsOf: waiting.removeValue(forKey: key(job.project, job.run)) ?? [])
                launch()
            }
            // Children whose parent never ran (a cycle) still go.
            for (_, children) in waiting { ready.append(contentsOf: children) }
            launch()
            while let (job, result) = await group.next() {
                account(job, result)
                launch()
            }
        }
        return report
    }

    /// Pushes one run (again and again while it is being written, when following).
    func pushRun(_ job: WandbPushJob, events: @escaping @Sendable (WandbPushEvent) -> Void) async -> Result<WandbRunPushReport, WandbPushError> {
        events(.started(job))
        var total: WandbRunPushReport?
        while true {
            let pusher = WandbRunPusher(client: client, serverKey: serverKey, options: options, job: job, events: events)
            let r: WandbRunPushReport
            do { r = try await pusher.push() } catch {
                events(.failed(job, error.description))
                return .failure(error)
            }
            total = total.map { Self.merge($0, r) } ?? r
            // Followed runs are pushed again until a push finds the writer gone (and completes the run).
            guard options.follow, r.live, !r.stopRequested, !Task.isCancelled else { break }
            try? await Task.sleep(for: .milliseconds(Int(options.pollInterval * 1000)))
        }
        let result = total!
        events(.finished(job, result))
        return .success(result)
    }

    static func merge(_ a: WandbRunPushReport, _ b: WandbRunPushReport) -> WandbRunPushReport {
        var r = b
        r.historyLines += a.historyLines
        r.consoleLines += a.consoleLines
        r.eventsLines += a.eventsLines
        r.droppedLines += a.droppedLines
        r.filesUploaded = a.filesUploaded + b.filesUploaded
        r.rewoundTo = b.rewoundTo ?? a.rewoundTo
        r.created = a.created || b.created
        r.requests += a.requests
        r.bytes += a.bytes
        r.stopRequested = a.stopRequested || b.stopRequested
        r.live = b.live
        r.warnings = a.warnings + b.warnings
        return r
    }

    /// What pushing `job` would send (`--dry-run`): from the log and the cursor, no network.
    public func plan(_ job: WandbPushJob) throws(WandbPushError) -> WandbPushPlan {
        try WandbRunPusher.plan(job, serverKey: serverKey)
    }
}
