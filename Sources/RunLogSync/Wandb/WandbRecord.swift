import RunLogStore

/// One record of a `.wandb` file, reassembled from its chunks but not yet decoded: the bytes
/// of one serialized `wandb_internal.Record`.
public struct WandbRawRecord: Sendable, Hashable {
    /// Byte offset in the file of the record's first chunk (its FULL or FIRST chunk header).
    public var offset: Int64
    /// Byte offset just past the record's last chunk.
    public var end: Int64
    /// The serialized `wandb_internal.Record`.
    public var bytes: [UInt8]
    /// How many chunks carried it (1 for FULL; FIRST + MIDDLE... + LAST otherwise).
    public var chunkCount: Int
    /// The oneof member it holds, from a scan of its top-level fields.
    public var kind: WandbRecordKind
}

/// One decoded `wandb_internal.Record`.
///
/// The record types RunLog needs are decoded into ``Content``; the others (telemetry,
/// environment, metric, artifact...) are only identified by ``kind`` and counted.
public struct WandbRecord: Sendable {
    /// `Record.num`: the writer's sequence number (1 for the header record).
    public var number: Int64
    /// The oneof member the record holds.
    public var kind: WandbRecordKind
    /// Byte offset in the file of the record's first chunk.
    public var offset: Int64
    /// Size of the serialized record.
    public var byteCount: Int
    /// `Record._info.stream_id` (the run id), when set.
    public var streamID: String?
    /// `Record.uuid`, when set.
    public var uuid: String?
    /// The decoded content.
    public var content: Content

    public enum Content: Sendable {
        case history(WandbHistoryRecord)
        case summary(WandbUpdateRecord)
        case config(WandbUpdateRecord)
        case run(WandbRunRecord)
        /// `output_raw` (field 13) or the older `output` (field 4); ``WandbRecord/kind`` tells which.
        case output(WandbOutputRecord)
        case stats(WandbStatsRecord)
        case files(WandbFilesRecord)
        case exit(WandbExitRecord)
        case header(WandbHeaderRecord)
        /// A kind RunLog does not decode (telemetry, environment, metric, ...).
        case other
    }

    public init(number: Int64, kind: WandbRecordKind, offset: Int64, byteCount: Int,
                streamID: String? = nil, uuid: String? = nil, content: Content) {
        self.number = number
        self.kind = kind
        self.offset = offset
        self.byteCount = byteCount
        self.streamID = streamID
        self.uuid = uuid
        self.content = content
    }
}

/// A `ConfigItem`, `SummaryItem`, `HistoryItem` or `StatsItem`: a key (or key path) and a
/// JSON-encoded value.
public struct WandbItem: Sendable, Hashable {
    /// A value in `HistoryItem`'s typed fields (written only with
    /// `x_history_value_encoding="json,typed"`, next to `value_json`).
    public enum TypedValue: Sendable, Hashable {
        case null
        case bool(Bool)
        case int(Int64)
        case double(Double)
        case text(String)
        /// A JSON string, parsed like `value_json`.
        case json(String)
    }

    /// `key` (field 1): a single literal key, never split on `.` or `/`.
    public var key: String
    /// `nested_key` (field 2): the key path; empty when ``key`` is used.
    public var nestedKey: [String]
    /// `value_json` (field 16), exactly as stored (bare `NaN`, `Infinity`, `-Infinity` included).
    public var valueJSON: String
    /// `HistoryItem`'s typed value (fields 3 to 8), when present.
    public var typedValue: TypedValue?

    public init(key: String = "", nestedKey: [String] = [], valueJSON: String = "", typedValue: TypedValue? = nil) {
        self.key = key
        self.nestedKey = nestedKey
        self.valueJSON = valueJSON
        self.typedValue = typedValue
    }

    /// The key path: ``nestedKey`` when set, else `[key]`.
    public var path: [String] { nestedKey.isEmpty ? [key] : nestedKey }

    /// The path joined with dots, as `wandb leet` shows it (`nested.b.c`). `["a","b"]` and the
    /// literal key `"a.b"` both give `"a.b"`.
    public var flatKey: String { nestedKey.isEmpty ? key : nestedKey.joined(separator: ".") }

    /// The value: ``valueJSON`` parsed with ``WandbJSON/parse(_:)``, else the typed value;
    /// `nil` when the item carries neither (as in `remove` items).
    public func value() throws(WandbJSON.ParseError) -> Value? {
        if !valueJSON.isEmpty { return try WandbJSON.parse(valueJSON) }
        switch typedValue {
        case nil: return nil
        case .null: return .null
        case .bool(let b): return .bool(b)
        case .int(let i): return .int(i)
        case .double(let d): return .double(d)
        case .text(let s): return .string(s)
        case .json(let s): return try WandbJSON.parse(s)
        }
    }
}

/// A `HistoryRecord`: one row of `run.log` data.
public struct WandbHistoryRecord: Sendable, Hashable {
    /// The items, in file order (wandb-core writes them in Go map order: not stable).
    public var items: [WandbItem]
    /// `step.num`, when the `step` message is present (`num` is omitted when 0, so a present,
    /// empty `step` is step 0).
    public var step: Int64?

    public init(items: [WandbItem] = [], step: Int64? = nil) {
        self.items = items
        self.step = step
    }
}

/// A `ConfigRecord` or `SummaryRecord`: items to set and items to delete.
public struct WandbUpdateRecord: Sendable, Hashable {
    public var updates: [WandbItem]
    public var removals: [WandbItem]

    public init(updates: [WandbItem] = [], removals: [WandbItem] = []) {
        self.updates = updates
        self.removals = removals
    }
}

/// `RunRecord.branch_point`: where a forked or rewound run branches off (`fork_from` /
/// `resume_from = "<run>?_step=<value>"`).
public struct WandbBranchPoint: Sendable, Hashable {
    /// The run branched from.
    public var run: String
    /// The metric's value at the branch point (the step, for `_step`).
    public var value: Double
    /// The metric (only `_step` is supported by wandb).
    public var metric: String

    public init(run: String, value: Double, metric: String) {
        self.run = run
        self.value = value
        self.metric = metric
    }
}

/// A `RunRecord`: the run's identity and settings at init.
public struct WandbRunRecord: Sendable, Hashable {
    public var runID = ""
    /// Empty offline.
    public var entity = ""
    public var project = ""
    /// The config at init: one item per top-level key, nested dicts as one JSON value.
    public var config: WandbUpdateRecord?
    public var summary: WandbUpdateRecord?
    public var group = ""
    public var jobType = ""
    public var displayName = ""
    public var notes = ""
    public var tags: [String] = []
    public var sweepID = ""
    public var host = ""
    public var startingStep: Int64 = 0
    public var startTime: WandbTimestamp?
    public var resumed = false
    public var runtime: Int32 = 0
    public var forked = false
    public var branchPoint: WandbBranchPoint?
    /// `resume` (field 24): set when `resume` was `"allow"` or `"must"` (offline, its only trace).
    public var resume = false

    public init() {}
}

/// Which stream a console line came from (`OutputRawRecord.OutputType`).
public enum WandbOutputStream: Int32, Sendable, Hashable, CustomStringConvertible {
    case stderr = 0
    case stdout = 1

    /// `"stdout"` / `"stderr"`.
    public var description: String { self == .stdout ? "stdout" : "stderr" }
}

/// An `OutputRawRecord` (or `OutputRecord`): one piece of captured console output.
/// `print(a, b)` writes `"a"`, `" "`, `"b"`, `"\n"` as four records.
public struct WandbOutputRecord: Sendable, Hashable {
    /// The stream; `nil` for an enum value this version does not know.
    public var stream: WandbOutputStream?
    public var timestamp: WandbTimestamp?
    public var line: String

    public init(stream: WandbOutputStream? = .stderr, timestamp: WandbTimestamp? = nil, line: String = "") {
        self.stream = stream
        self.timestamp = timestamp
        self.line = line
    }
}

/// A `StatsRecord`: one sample of system metrics (`cpu`, `memory_percent`, `disk.…`, ...).
public struct WandbStatsRecord: Sendable, Hashable {
    /// `stats_type` (0 = SYSTEM).
    public var statsType: Int32 = 0
    public var timestamp: WandbTimestamp?
    /// `key` + `value_json` items.
    public var items: [WandbItem] = []

    public init(statsType: Int32 = 0, timestamp: WandbTimestamp? = nil, items: [WandbItem] = []) {
        self.statsType = statsType
        self.timestamp = timestamp
        self.items = items
    }
}

/// A `FilesItem`: a file of the run directory's `files/` to upload at sync.
public struct WandbFileItem: Sendable, Hashable {
    /// `FilesItem.PolicyType`.
    public enum Policy: Int32, Sendable, Hashable { case now = 0, end = 1, live = 2 }
    /// `FilesItem.FileType`.
    public enum FileType: Int32, Sendable, Hashable { case other = 0, wandb = 1, media = 2, artifact = 3 }

    /// Relative to the run's `files/` directory.
    public var path: String
    /// The raw `policy` enum value.
    public var policyValue: Int32
    /// The raw `type` enum value.
    public var typeValue: Int32

    public var policy: Policy? { Policy(rawValue: policyValue) }
    public var type: FileType? { FileType(rawValue: typeValue) }

    public init(path: String, policyValue: Int32 = 0, typeValue: Int32 = 0) {
        self.path = path
        self.policyValue = policyValue
        self.typeValue = typeValue
    }
}

/// A `FilesRecord`.
public struct WandbFilesRecord: Sendable, Hashable {
    public var files: [WandbFileItem]
    public init(files: [WandbFileItem] = []) { self.files = files }
}

/// A `RunExitRecord`: written by `finish()` or an uncaught exception, never by a killed process.
public struct WandbExitRecord: Sendable, Hashable {
    public var exitCode: Int32 = 0
    /// Whole seconds.
    public var runtime: Int32 = 0
    public var notComplete = false

    public init(exitCode: Int32 = 0, runtime: Int32 = 0, notComplete: Bool = false) {
        self.exitCode = exitCode
        self.runtime = runtime
        self.notComplete = notComplete
    }
}

/// A `HeaderRecord`: the first record, with the writer's version.
public struct WandbHeaderRecord: Sendable, Hashable {
    /// `version_info.producer`, e.g. `0.31.0+15f8cbc…`.
    public var producer = ""
    /// `version_info.min_consumer`.
    public var minConsumer = ""

    public init(producer: String = "", minConsumer: String = "") {
        self.producer = producer
        self.minConsumer = minConsumer
    }
}
