import Foundation
import Logging
import RunLogStore

/// Where a run's data goes.
public enum Mode: String, Sendable, CaseIterable {
    /// Logged locally and sent to the server in the background when one is configured.
    case online
    /// Logged locally only; `runlog sync` sends it later.
    case offline
    /// Every run method is a no-op and nothing is written.
    case disabled
}

/// What to do with an existing run of the same id.
public enum ResumeMode: String, Sendable, CaseIterable {
    /// Continue the run if it exists, else create it.
    case allow
    /// Fail if the run exists.
    case never
    /// Fail if the run does not exist.
    case must
    /// Continue the run that crashed last in this directory, else start a new one.
    case auto
}

/// What `start` does while another run is active in this process.
public enum ReinitPolicy: String, Sendable, CaseIterable {
    /// Return the active run (the default; `reinit: false`).
    case returnPrevious = "return_previous"
    /// Finish the active run, then start a new one (`reinit: true`).
    case finishPrevious = "finish_previous"
    /// Start a new run and keep the active one live too.
    case createNew = "create_new"
}

/// Anonymous logging, as in the reference client.
public enum AnonymousMode: String, Sendable, CaseIterable {
    case never, allow, must
}

/// How a metric's summary value is derived from its history.
public enum SummaryAggregation: String, Sendable, CaseIterable {
    case last, min, max, mean
}

/// A point in a run's history: `<run id>?_step=<n>`, as `resume_from` and `fork_from` take it.
public struct RunMoment: Sendable, Hashable, CustomStringConvertible {
    public var runID: String
    public var step: Int64

    public init(runID: String, step: Int64) {
        self.runID = runID
        self.step = step
    }

    /// Parses `"<run>?_step=<n>"`.
    /// - Throws: a usage error naming the expected form.
    public init(parsing text: String) throws(RunLogError) {
        let form = "expected \"<run id>?_step=<step>\", e.g. \"abc123?_step=500\""
        guard let q = text.firstIndex(of: "?") else { throw .usage("invalid moment \(text.debugDescription): \(form)") }
        let id = String(text[..<q])
        let query = text[text.index(after: q)...]
        guard query.hasPrefix("_step="), let step = Int64(query.dropFirst(6)), step >= 0 else {
            throw .usage("invalid moment \(text.debugDescription): \(form)")
        }
        do { try RunID.validate(id) } catch { throw .usage("invalid run id in moment \(text.debugDescription): \(error)") }
        runID = id
        self.step = step
    }

    public var description: String { "\(runID)?_step=\(step)" }
}

/// Advanced settings, with documented defaults.
public struct Settings: Sendable {
    /// The open frame is written at least this often. Default 250 ms.
    public var flushInterval: Duration = .milliseconds(250)
    /// How hard `flush()` works to make data durable. Default: fsync every second in the background.
    public var durability: LogWriter.Durability = .interval(.seconds(1))
    /// System metrics sampling interval; nil turns sampling off. Default 15 s.
    public var systemMetricsInterval: Duration? = .seconds(15)
    /// Capture stdout and stderr lines into the run. Default off (it redirects the process's
    /// file descriptors 1 and 2 through a pipe).
    public var consoleCapture = false
    /// The RunLog server, for online mode and sync.
    public var serverURL: String?
    /// The API key for the server.
    public var apiKey: String?
    /// Logging at a step lower than the current one throws instead of warning and counting.
    public var strictSteps = false
    /// Finish active runs on SIGINT/SIGTERM (flushing and recording the signal) and at exit.
    public var handleSignals = true
    /// Source files `saveCode` stores with the run; empty means the caller's `#filePath`.
    public var codePaths: [String] = []
    /// The directory whose TensorBoard event files `syncTensorboard` follows. Default: the
    /// working directory.
    public var tensorboardLogDirectory: String?
    /// How often TensorBoard event files are polled. Default 1 s.
    public var tensorboardPollInterval: Duration = .seconds(1)
    /// Sync concurrency (online mode and `runlog sync`). Default 4.
    public var syncConcurrency = 4
    /// Uploads the run while it is written in online mode (RunLogSync's `OnlineSync`).
    /// Without one, online mode logs offline and says so once.
    public var uploader: (any LiveUploader)?
    /// How long `finish` waits for an online run's upload to catch up. Default 30 s.
    public var onlineFinishTimeout: Duration = .seconds(30)
    /// Environment variables to read overrides from. Default: the process environment.
    public var environment: [String: String]?

    public init() {}
}

/// Sends a run's log to a server while it is being written (online mode). `log` never waits
/// for it: it reads the log's frames as they reach the disk.
public protocol LiveUploader: Sendable {
    func startUploading(runDirectory: String, entity: String?, project: String, id: String, logger: Logger) -> any LiveUpload
}

/// One run's upload in progress.
public protocol LiveUpload: Sendable {
    /// Called after the log is closed: blocks until the server has everything, at most
    /// `timeout` (synchronous, so `finish` works from any thread without needing a free
    /// thread of the concurrency pool).
    /// - Returns: whether the upload caught up.
    func finish(timeout: Duration) -> Bool
}
