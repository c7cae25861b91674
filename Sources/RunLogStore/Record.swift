/// One logical record of a run's log.
///
/// History rows are stored in columnar blocks but read back one row at a time; every other
/// kind is stored as a self-describing object (see `FORMAT.md`). A kind this version does not
/// know is kept as `.unknown` so that tools can carry it through unchanged.
public enum Record: Sendable, Hashable {
    case runMetadata(RunMetadata)
    case config(ConfigChange)
    case history(HistoryRow)
    case summary(SummaryChange)
    case tags([String])
    case console(ConsoleLine)
    case systemMetrics(SystemSample)
    case file(FileReference)
    case rewind(RewindMarker)
    case forkOrigin(ForkOrigin)
    case resume(ResumeMarker)
    case exit(ExitRecord)
    case unknown(kind: UInt8, body: [UInt8])
}

/// The run's descriptive fields. Later records override earlier ones field by field.
///
/// Known keys: `id`, `project`, `entity`, `name`, `notes`, `group`, `job_type`, `host`,
/// `program`, `start_time` (µs since the Unix epoch), `os`, `preempting`, `dropped_steps`.
/// Other keys are kept as they are.
public struct RunMetadata: Sendable, Hashable {
    public var fields: [String: Value]
    public init(_ fields: [String: Value] = [:]) { self.fields = fields }

    public subscript(key: String) -> Value? {
        get { fields[key] }
        set { fields[key] = newValue }
    }
    public var id: String? { fields["id"]?.stringValue }
    public var project: String? { fields["project"]?.stringValue }
    public var name: String? { fields["name"]?.stringValue }
}

/// A change to the run's config: merge keys into it, or replace it whole; then remove keys.
public struct ConfigChange: Sendable, Hashable {
    public var replace: Bool
    public var values: [String: Value]
    public var removed: [String]
    public init(replace: Bool = false, values: [String: Value], removed: [String] = []) {
        self.replace = replace
        self.values = values
        self.removed = removed
    }
}

/// A change to the run's summary, with the same semantics as ``ConfigChange``.
public struct SummaryChange: Sendable, Hashable {
    public var replace: Bool
    public var values: [String: Value]
    public var removed: [String]
    public init(replace: Bool = false, values: [String: Value], removed: [String] = []) {
        self.replace = replace
        self.values = values
        self.removed = removed
    }
}

/// One step of metrics.
public struct HistoryRow: Sendable, Hashable {
    public var step: Int64
    /// Microseconds since the Unix epoch.
    public var timestamp: Int64
    public var values: [String: Value]
    /// 0 for rows as written; a rewind branch number for rows a compaction moved into an
    /// archived branch.
    public var branch: UInt32

    public init(step: Int64, timestamp: Int64, values: [String: Value], branch: UInt32 = 0) {
        self.step = step
        self.timestamp = timestamp
        self.values = values
        self.branch = branch
    }
}

public struct ConsoleLine: Sendable, Hashable {
    public enum Stream: Int64, Sendable { case stdout = 0, stderr = 1 }
    public var stream: Stream
    public var timestamp: Int64
    public var text: String
    public init(stream: Stream, timestamp: Int64, text: String) {
        self.stream = stream
        self.timestamp = timestamp
        self.text = text
    }
}

public struct SystemSample: Sendable, Hashable {
    public var timestamp: Int64
    public var values: [String: Value]
    public init(timestamp: Int64, values: [String: Value]) {
        self.timestamp = timestamp
        self.values = values
    }
}

/// A file saved with the run, relative to the run directory's `files/`.
public struct FileReference: Sendable, Hashable {
    public var path: String
    public var size: Int64
    /// Lowercase hex SHA-256 or CRC32C of the content, as `algorithm:hex`; empty if unknown.
    public var digest: String
    /// `now`, `end` or `live`, as in wandb's `save(policy:)`.
    public var policy: String
    public var timestamp: Int64
    public init(path: String, size: Int64, digest: String = "", policy: String = "now", timestamp: Int64) {
        self.path = path
        self.size = size
        self.digest = digest
        self.policy = policy
        self.timestamp = timestamp
    }
}

/// A position in the log: the frame's sequence number and the record's index in the frame
/// (each history row counts as one record).
public struct RecordPosition: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var sequence: UInt64
    public var index: UInt32
    public init(sequence: UInt64, index: UInt32) {
        self.sequence = sequence
        self.index = index
    }
    public static func < (a: RecordPosition, b: RecordPosition) -> Bool {
        (a.sequence, a.index) < (b.sequence, b.index)
    }
    public var description: String { "\(sequence):\(index)" }
}

/// Rewinds the live history to `step`: every live history row after `cut` and before this
/// marker moves to archived branch `branch`. A marker without `cut` (written by compaction)
/// only records that the rewind happened; its rows already carry their branch number.
public struct RewindMarker: Sendable, Hashable {
    public var step: Int64
    public var branch: UInt32
    public var cut: RecordPosition?
    public var timestamp: Int64
    public init(step: Int64, branch: UInt32, cut: RecordPosition?, timestamp: Int64) {
        self.step = step
        self.branch = branch
        self.cut = cut
        self.timestamp = timestamp
    }
}

/// Where a forked run came from.
public struct ForkOrigin: Sendable, Hashable {
    public var sourceID: String
    public var sourceProject: String?
    public var step: Int64
    public var timestamp: Int64
    public init(sourceID: String, sourceProject: String?, step: Int64, timestamp: Int64) {
        self.sourceID = sourceID
        self.sourceProject = sourceProject
        self.step = step
        self.timestamp = timestamp
    }
}

/// The run was opened again to continue it.
public struct ResumeMarker: Sendable, Hashable {
    /// `resume`, `auto`, `rewind` or free text.
    public var reason: String
    /// The step the run continues from.
    public var nextStep: Int64
    public var timestamp: Int64
    public init(reason: String, nextStep: Int64, timestamp: Int64) {
        self.reason = reason
        self.nextStep = nextStep
        self.timestamp = timestamp
    }
}

/// The run ended.
public struct ExitRecord: Sendable, Hashable {
    /// `finished`, `failed`, `crashed`, `killed` or `preempted`.
    public var state: String
    public var exitCode: Int64
    /// Seconds the run was active.
    public var runtime: Double
    public var signal: Int64?
    public var error: String?
    public var timestamp: Int64
    public init(state: String, exitCode: Int64, runtime: Double, signal: Int64? = nil, error: String? = nil, timestamp: Int64) {
        self.state = state
        self.exitCode = exitCode
        self.runtime = runtime
        self.signal = signal
        self.error = error
        self.timestamp = timestamp
    }
}

extension Record {
    public var kind: LogFormat.RecordKind? {
        switch self {
        case .runMetadata: .runMetadata
        case .config: .config
        case .history: .historyBlock
        case .summary: .summary
        case .tags: .tags
        case .console: .console
        case .systemMetrics: .systemMetrics
        case .file: .file
        case .rewind: .rewind
        case .forkOrigin: .forkOrigin
        case .resume: .resume
        case .exit: .exit
        case .unknown: nil
        }
    }
}
