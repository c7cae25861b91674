import Foundation
import Logging
import RunLogStore

/// One run to sync: where it is locally and where it goes.
public struct SyncJob: Sendable, Hashable {
    public var directory: String
    public var remote: RemoteRun
    /// The run it was forked from, if that run is in the same sync: it is synced first.
    public var parentID: String?
    public init(directory: String, remote: RemoteRun, parentID: String? = nil) {
        self.directory = directory
        self.remote = remote
        self.parentID = parentID
    }
}

/// What the engine reports while it works.
public enum SyncEvent: Sendable {
    case started(SyncJob, unsentFrames: Int, unsentBytes: Int, unsentRecords: Int)
    case sent(SyncJob, frames: Int, bytes: Int, records: Int, acknowledged: UInt64)
    case retrying(SyncJob, attempt: Int, delay: Double, message: String)
    case finished(SyncJob, acknowledged: UInt64)
    case failed(SyncJob, message: String)
}

/// How each run ended.
public struct SyncReport: Sendable {
    public var finished: [SyncJob] = []
    public var failed: [(SyncJob, String)] = []
    public var bytes = 0
    public var records = 0
}

/// Syncs many runs in parallel with bounded concurrency, fork parents before their children.
///
/// Each run is driven by a ``RunSyncMachine``; the engine only performs its actions: asks the
/// server for its acknowledgement, reads frames from the log as stored and sends them,
/// persists the cursor, sleeps for backoffs, and in live mode polls the log for new frames.
/// A run that keeps failing is reported and the others go on.
public final class SyncEngine: Sendable {
    public let transport: any SyncTransport
    public let serverKey: String
    public let configuration: RunSyncMachine.Configuration
    public let concurrency: Int
    let logger: Logger

    public init(transport: any SyncTransport, serverKey: String, configuration: RunSyncMachine.Configuration = .init(),
                concurrency: Int = 4, logger: Logger = Logger(label: "runlog.sync")) {
        self.transport = transport
        self.serverKey = serverKey
        self.configuration = configuration
        self.concurrency = max(1, concurrency)
        self.logger = logger
    }

    /// Syncs `jobs`; returns when every run has finished or failed. A run forked from another
    /// run of `jobs` is synced after it.
    public func sync(_ jobs: [SyncJob], events: @escaping @Sendable (SyncEvent) -> Void = { _ in }) async -> SyncReport {
        let (stream, continuation) = AsyncStream.makeStream(of: SyncJob.self)
        for job in Self.parentsFirst(jobs) { continuation.yield(job) }
        continuation.finish()
        return await sync(stream, events: events)
    }

    /// Syncs jobs as they arrive (e.g. while other runs are still being prepared); returns
    /// when the stream has ended and every run has finished or failed. A run forked from a
    /// run that arrived before it, or from one of `expected` (ids still to come), waits for
    /// that run; if it never comes, the child syncs when the stream ends.
    public func sync(_ jobs: AsyncStream<SyncJob>, expected: Set<String> = [],
                     events: @escaping @Sendable (SyncEvent) -> Void = { _ in }) async -> SyncReport {
        enum Signal: Sendable {
            case arrived(SyncJob)
            case ended
            case done(SyncJob, Result<UInt64, SyncFailure>, Int, Int)
        }
        let (signals, post) = AsyncStream.makeStream(of: Signal.self)
        var report = SyncReport()
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await job in jobs { post.yield(.arrived(job)) }
                post.yield(.ended)
            }
            var seen = Set<String>(), done = Set<String>()
            var waiting: [String: [SyncJob]] = [:]  // parent id -> children
            var ready: [SyncJob] = []
            var running = 0
            var ended = false
            func launch() {
                while running < concurrency, !ready.isEmpty {
                    let job = ready.removeFirst()
                    running += 1
                    group.addTask {
                        let (job, result, bytes, records) = await self.syncRun(job, events: events)
                        post.yield(.done(job, result, bytes, records))
                    }
                }
            }
            for await signal in signals {
                switch signal {
                case .arrived(let job):
                    seen.insert(job.remote.id)
                    if let parent = job.parentID, parent != job.remote.id, seen.contains(parent) || expected.contains(parent), !done.contains(parent) {
                        waiting[parent, default: []].append(job)
                    } else {
                        ready.append(job)
                    }
                case .ended:
                    ended = true
                case .done(let job, let result, let bytes, let records):
                    running -= 1
                    done.insert(job.remote.id)
                    report.bytes += bytes
                    report.records += records
                    switch result {
                    case .success: report.finished.append(job)
                    case .failure(let f): report.failed.append((job, f.message))
                    }
                    ready.append(contentsOf: waiting.removeValue(forKey: job.remote.id) ?? [])
                }
                if ended, running == 0, ready.isEmpty {
                    if waiting.isEmpty { break }
                    // Children of parents that never ran (a cycle, or an expected parent that
                    // never came) still sync.
                    for (_, children) in waiting { ready.append(contentsOf: children) }
                    waiting = [:]
                }
                launch()
            }
            post.finish()
        }
        return report
    }

    /// `jobs` reordered so that a run forked from another run of `jobs` comes after it.
    public static func parentsFirst(_ jobs: [SyncJob]) -> [SyncJob] {
        let ids = Set(jobs.map(\.remote.id))
        var children: [String: [SyncJob]] = [:]
        var roots: [SyncJob] = []
        for job in jobs {
            if let parent = job.parentID, ids.contains(parent), parent != job.remote.id {
                children[parent, default: []].append(job)
            } else {
                roots.append(job)
            }
        }
        var out: [SyncJob] = []
        var queue = roots[...]
        while let job = queue.popFirst() {
            out.append(job)
            if let c = children.removeValue(forKey: job.remote.id) { queue.append(contentsOf: c) }
        }
        for (_, c) in children { out.append(contentsOf: c) }  // a cycle: no root leads to them
        return out
    }

    struct SyncFailure: Error { var message: String }

    /// Drives one run's machine to the end.
    func syncRun(_ job: SyncJob, events: @Sendable (SyncEvent) -> Void) async -> (SyncJob, Result<UInt64, SyncFailure>, Int, Int) {
        var sentBytes = 0
        var sentRecords = 0
        let reader: LogReader
        do {
            reader = try RunDirectory.reader(job.directory)
        } catch {
            events(.failed(job, message: "\(error)"))
            return (job, .failure(SyncFailure(message: "\(error)")), 0, 0)
        }
        defer { reader.close() }
        func frame(_ f: FrameInfo) -> RunSyncMachine.Frame {
            .init(sequence: f.header.sequence, size: f.header.frameSize, records: Int(f.header.recordCount))
        }
        let cursor = SyncCursor.load(directory: job.directory, server: serverKey, run: job.remote)
        var machine = RunSyncMachine(frames: reader.frames.map(frame), acknowledged: cursor,
                                     writerActive: configuration.live && RunDirectory.hasLiveWriter(job.directory),
                                     configuration: configuration)
        var queue = machine.handle(.start)
        var announced = false
        while !queue.isEmpty {
            if Task.isCancelled {
                events(.failed(job, message: "cancelled"))
                return (job, .failure(SyncFailure(message: "cancelled")), sentBytes, sentRecords)
            }
            let action = queue.removeFirst()
            switch action {
            case .fetchAck:
                do {
                    let n = try await transport.acknowledged(job.remote)
                    queue += machine.handle(.ackFetched(n))
                    if !announced {
                        announced = true
                        let unsent = machine.unsentFrames
                        events(.started(job, unsentFrames: unsent.count, unsentBytes: unsent.reduce(0) { $0 + $1.size },
                                        unsentRecords: unsent.reduce(0) { $0 + $1.records }))
                    }
                } catch {
                    queue += machine.handle(error.retryable ? .retryableFailure(retryAfter: error.retryAfter, message: error.description)
                                                            : .fatalFailure(error.description))
                }
            case .send(let range, let after):
                var body: [UInt8] = []
                var records = 0
                do {
                    for i in range {
                        body += try reader.storedFrame(reader.frames[i])
                        records += Int(reader.frames[i].header.recordCount)
                    }
                } catch {
                    queue += machine.handle(.fatalFailure("cannot read the local log: \(error)"))
                    continue
                }
                do {
                    switch try await transport.send(job.remote, after: after, frames: body) {
                    case .stored(let n):
                        sentBytes += body.count
                        sentRecords += records
                        events(.sent(job, frames: range.count, bytes: body.count, records: records, acknowledged: n))
                        queue += machine.handle(.sent(acknowledged: n))
                    case .conflict(let n):
                        queue += machine.handle(.conflict(acknowledged: n))
                    }
                } catch {
                    queue += machine.handle(error.retryable ? .retryableFailure(retryAfter: error.retryAfter, message: error.description)
                                                            : .fatalFailure(error.description))
                }
            case .persist(let n):
                do { try SyncCursor.save(directory: job.directory, server: serverKey, run: job.remote, acknowledged: n) } catch {
                    logger.warning("could not save the sync cursor", metadata: ["run": "\(job.remote)", "error": "\(error)"])
                }
            case .sleep(let seconds):
                if case .backingOff(let attempt) = machine.state {
                    events(.retrying(job, attempt: attempt, delay: seconds, message: ""))
                }
                try? await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
                queue += machine.handle(.backoffElapsed)
            case .poll(let seconds):
                try? await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
                let before = reader.frames.count
                _ = try? reader.refresh()
                let new = reader.frames[before...].map(frame)
                queue += machine.handle(.polled(newFrames: Array(new), writerActive: RunDirectory.hasLiveWriter(job.directory)))
            case .finish:
                events(.finished(job, acknowledged: machine.acknowledged))
                return (job, .success(machine.acknowledged), sentBytes, sentRecords)
            case .fail(let message):
                events(.failed(job, message: message))
                return (job, .failure(SyncFailure(message: message)), sentBytes, sentRecords)
            }
        }
        return (job, .failure(SyncFailure(message: "sync stopped unexpectedly")), sentBytes, sentRecords)
    }
}

/// Finding runs on disk and what they are.
public enum RunDiscovery {
    /// Every run directory at or below `path` (a directory holding `run.rlog`).
    public static func runs(under path: String) -> [String] {
        var out: [String] = []
        let fm = FileManager.default
        if fm.fileExists(atPath: RunDirectory.logPath(path)) { return [path] }
        guard let e = fm.enumerator(atPath: path) else { return [] }
        while let rel = e.nextObject() as? String {
            if rel.hasSuffix("/" + LogFormat.logFileName) || rel == LogFormat.logFileName {
                out.append(path + "/" + String(rel.dropLast(LogFormat.logFileName.count + 1)))
            }
        }
        return out.sorted()
    }

    /// The sync job for a run directory: its id, project and entity from the log's metadata.
    public static func job(for directory: String, defaultEntity: String) throws -> SyncJob {
        let reader = try RunDirectory.reader(directory)
        defer { reader.close() }
        let state = try reader.state()
        let id = state.metadata["id"]?.stringValue ?? (directory as NSString).lastPathComponent
        let project = state.metadata["project"]?.stringValue ?? "uncategorized"
        let entity = state.metadata["entity"]?.stringValue ?? defaultEntity
        return SyncJob(directory: directory, remote: RemoteRun(entity: entity, project: project, id: id),
                       parentID: state.forkOrigin?.sourceID)
    }
}
