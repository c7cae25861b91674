import Foundation
import Logging
import RunLog
import RunLogStore

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
        let task = Task.detached { await engine.sync([job]) }
        return Upload(task: task)
    }

    final class Upload: LiveUpload, Sendable {
        let task: Task<SyncReport, Never>
        init(task: Task<SyncReport, Never>) { self.task = task }

        func finish(timeout: Duration) async -> Bool {
            let task = self.task
            let result: Bool? = await withTaskGroup(of: Bool?.self) { group in
                group.addTask { await task.value.failed.isEmpty }
                group.addTask { try? await Task.sleep(for: timeout); return nil }
                let first = await group.next() ?? nil
                group.cancelAll()
                return first
            }
            if result == nil { task.cancel() }
            return result ?? false
        }
    }
}
