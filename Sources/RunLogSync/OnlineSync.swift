import Foundation
import Logging
import RunLog
import RunLogStore
import Synchronization

/// Online mode for the SDK: uploads a run while it is written, through the sync engine.
///
/// ```swift
/// var settings = Settings()
/// settings.uploader = OnlineSync(server: URL(string: "http://localhost:8080")!, apiKey: key)
/// let run = try Run.start(project: "mnist", mode: .online, settings: settings)
/// ```
///
/// `log` never waits for the network; a lost connection only delays the upload (retried
/// with backoff, without limit while the run lives); `finish` waits for it to catch up, at
/// most `settings.onlineFinishTimeout`.
public struct OnlineSync: LiveUploader {
    public let server: URL
    public let apiKey: String
    public let defaultEntity: String

    public init(server: URL, apiKey: String, defaultEntity: String = "default") {
        self.server = server
        self.apiKey = apiKey
        self.defaultEntity = defaultEntity
    }

    public func startUploading(runDirectory: String, entity: String?, project: String, id: String, logger: Logger) -> any LiveUpload {
        var config = RunSyncMachine.Configuration()
        config.live = true
        config.maxAttempts = .max
        config.maxBackoff = 5
        config.pollInterval = 0.25
        let engine = SyncEngine(transport: HTTPSyncTransport(baseURL: server, apiKey: apiKey), serverKey: server.absoluteString,
                                configuration: config, concurrency: 1, logger: logger)
        let job = SyncJob(directory: runDirectory, remote: RemoteRun(entity: entity ?? defaultEntity, project: project, id: id))
        return Upload(engine: engine, job: job)
    }

    final class Upload: LiveUpload, @unchecked Sendable {
        /// The outcome, shared with the task that produces it.
        final class Outcome: Sendable {
            let done = DispatchSemaphore(value: 0)
            let caughtUp = Mutex<Bool?>(nil)
        }
        private let outcome = Outcome()
        private var task: Task<Void, Never>?

        init(engine: SyncEngine, job: SyncJob) {
            let outcome = self.outcome
            task = Task.detached {
                let report = await engine.sync([job])
                outcome.caughtUp.withLock { $0 = report.failed.isEmpty }
                outcome.done.signal()
            }
        }

        func finish(timeout: Duration) -> Bool {
            let c = timeout.components
            let deadline = DispatchTime.now() + .seconds(Int(c.seconds)) + .nanoseconds(Int(c.attoseconds / 1_000_000_000))
            if outcome.done.wait(timeout: deadline) == .timedOut {
                task?.cancel()
                return false
            }
            return outcome.caughtUp.withLock { $0 } ?? false
        }
    }
}
