import Foundation
import RunLogStore

/// One history row: the data of one `run.log` call.
public struct WandbHistoryRow: Sendable, Hashable {
    /// `_step`: the `_step` item when it is an integer, else `HistoryRecord.step.num`.
    public var step: Int64
    /// Every item, keyed by its path joined with dots (`nested.b.c`, as `wandb leet` shows
    /// it), `_step`, `_runtime` and `_timestamp` included. A literal key `"a.b"` and the path
    /// `["a","b"]` both land on `"a.b"` (the later item wins).
    public var values: [String: Value]
    /// The original `nested_key` path of every key in ``values`` that came from a path of more
    /// than one component (`"nested.b.c": ["nested","b","c"]`). Keys not here are literal.
    public var nestedPaths: [String: [String]]

    public init(step: Int64, values: [String: Value], nestedPaths: [String: [String]] = [:]) {
        self.step = step
        self.values = values
        self.nestedPaths = nestedPaths
    }

    /// The key path of `key` in ``values``.
    public func path(of key: String) -> [String] { nestedPaths[key] ?? [key] }
}

/// A line of captured console output, reassembled from `output_raw` pieces.
public struct WandbConsoleLine: Sendable, Hashable {
    /// The text, without its line ending. A carriage return inside a line keeps only what
    /// follows it (a progress bar's last state).
    public var text: String
    public var stream: WandbOutputStream
    /// The timestamp of the line's first piece.
    public var time: WandbTimestamp?

    public init(text: String, stream: WandbOutputStream, time: WandbTimestamp?) {
        self.text = text
        self.stream = stream
        self.time = time
    }
}

/// One system-metrics sample (a `stats` record).
public struct WandbSystemSample: Sendable, Hashable {
    public var time: WandbTimestamp?
    /// `memory_percent`, `disk./.usageGB`, `proc.cpu.threads`, ... (literal keys).
    public var values: [String: Value]

    public init(time: WandbTimestamp?, values: [String: Value]) {
        self.time = time
        self.values = values
    }
}

/// A wandb run as its `.wandb` file describes it: identity, final config and summary,
/// history, console, system metrics and end state, built from the records in file order.
///
/// Matches what `wandb leet inspect --summary` reports: config and summary nested, with the
/// internal `_wandb` entries moved aside; state `running` without an exit record.
public struct WandbRun: Sendable {
    /// How the run ended, as wandb reports it.
    public enum State: String, Sendable, Hashable {
        /// No exit record: still running, or killed (wandb sync then assumes exit code 1).
        case running
        /// Exit record with exit code 0.
        case finished
        /// Exit record with a non-zero exit code (an uncaught exception writes 1).
        case failed
    }

    /// What a branch point means.
    public enum BranchKind: String, Sendable, Hashable {
        /// `fork_from`: a new run id branching off another run.
        case fork
        /// `resume_from`: the same run id, rewound to the branch point.
        case rewind
    }

    public var id = ""
    public var project = ""
    /// Empty offline.
    public var entity = ""
    /// `display_name`; empty when not set.
    public var name = ""
    public var notes = ""
    public var tags: [String] = []
    public var group = ""
    public var jobType = ""
    public var host = ""
    public var startTime: WandbTimestamp?
    /// The final config, nested: the run record's config, then every `config` record in order.
    /// The internal `_wandb` entry is in ``internalConfig``.
    public var config: [String: Value] = [:]
    /// The config's `_wandb` entry (e.g. `branch_point {run_id, step}` for forks and rewinds).
    public var internalConfig: [String: Value] = [:]
    /// The final summary, nested (`nested_key` paths become nested objects), after every
    /// `summary` record in order. The internal `_wandb` entry is in ``internalSummary``.
    public var summary: [String: Value] = [:]
    /// The summary's `_wandb` entry (`runtime`).
    public var internalSummary: [String: Value] = [:]
    /// History rows in file order.
    public var history: [WandbHistoryRow] = []
    /// Console lines, stdout and stderr, in the order they were completed.
    public var console: [WandbConsoleLine] = []
    /// System-metrics samples in file order.
    public var systemMetrics: [WandbSystemSample] = []
    /// Files listed for upload (`files` records), in order.
    public var files: [WandbFileItem] = []
    /// The exit record; `nil` when the run was killed or is still running.
    public var exit: WandbExitRecord?
    /// `RunRecord.branch_point`.
    public var branchPoint: WandbBranchPoint?
    /// `RunRecord.resume`: set for `resume="allow"` / `"must"` (offline, a new directory with
    /// the same id and steps from 0).
    public var resume = false
    /// `RunRecord.resumed` (not set by offline runs).
    public var resumed = false
    /// `RunRecord.forked` (not set by offline runs).
    public var forked = false
    /// `RunRecord.starting_step` (not set by offline runs).
    public var startingStep: Int64 = 0
    /// The writer's version (`HeaderRecord.version_info.producer`).
    public var producer: String?
    /// Reader counts, when built from a file.
    public var statistics: WandbLogStatistics?
    /// How the file ended short, when it did.
    public var tornTail: WandbTornTail?
    /// Damage skipped over (only with ``WandbLogReader/Options/Corruption/skipToNextBlock``).
    public var skipped: [WandbFormatError] = []

    public init() {}

    /// `finished` / `failed` with an exit record, else `running`.
    public var state: State {
        guard let exit else { return .running }
        return exit.exitCode == 0 ? .finished : .failed
    }

    /// The exit code; `nil` without an exit record.
    public var exitCode: Int32? { exit?.exitCode }

    /// The last history row's step, else the summary's `_step`.
    public var step: Int64? {
        if let last = history.last { return last.step }
        return summary["_step"]?.intValue
    }

    /// `rewind` when the branch point names this run's own id, `fork` otherwise.
    public var branchKind: BranchKind? {
        guard let branchPoint else { return nil }
        return branchPoint.run == id ? .rewind : .fork
    }

    /// Reads a `.wandb` file (or a run directory) and builds the run from all its whole records.
    public init(contentsOf url: URL, options: WandbLogReader.Options = .init()) throws(WandbFormatError) {
        var reader = try WandbLogReader(url: url, options: options)
        var builder = Builder(path: reader.url.path)
        while let raw = try reader.nextRaw() {
            // Summary records (one per logged step) are kept undecoded until `finish`.
            if raw.kind == .summary {
                try builder.deferSummary(raw, reader: &reader)
                continue
            }
            if let record = try reader.decode(raw) { try builder.apply(record) }
        }
        self = try builder.finish()
        statistics = reader.statistics
        tornTail = reader.tornTail
        skipped = reader.skipped
    }

    /// Builds the run from decoded records, in file order.
    public init(records: some Sequence<WandbRecord>, path: String = "") throws(WandbFormatError) {
        var builder = Builder(path: path)
        for record in records { try builder.apply(record) }
        self = try builder.finish()
    }

    /// Builds a ``WandbRun`` one record at a time (for files too large to hold as records).
    public struct Builder: Sendable {
        private var run = WandbRun()
        private var config: [String: Value] = [:]
        private var summary: [String: Value] = [:]
        /// Summary changes not applied yet, in order; nil items are removals. wandb writes a
        /// summary record per logged step, so most are overwritten by later ones: a change is
        /// dropped when a later one sets the same path, and the values left are
        /// parsed once, at ``finish()``.
        private var pendingSummary: [(path: [String], item: WandbItem?, number: Int64, offset: Int64, order: Int)?] = []
        private var pendingIndex: [[String]: Int] = [:]
        /// Summary changes from records kept as bytes (``deferSummary(_:reader:)``).
        private var rawSummary = WandbSummaryChanges()
        private var scratch: [(item: Range<Int>, removal: Bool, keys: Range<Int>?)] = []
        private var openLines: [WandbOutputStream: (text: String, time: WandbTimestamp?)] = [:]
        private let path: String
        /// Whether history rows are collected into the run (``WandbSyncImport`` streams them instead).
        private let keepsHistory: Bool
        /// The step of the last history row read (the default step of a row without one).
        private(set) var lastRowStep: Int64?

        /// `path` names the file in errors.
        public init(path: String = "") { self.init(path: path, keepsHistory: true) }

        init(path: String, keepsHistory: Bool) {
            self.path = path
            self.keepsHistory = keepsHistory
        }

        /// Applies one record.
        /// - Throws: ``WandbFormatError`` `.malformedValue` for a `value_json` that is not JSON.
        public mutating func apply(_ record: WandbRecord) throws(WandbFormatError) {
            switch record.content {
            case .run(let r):
                run.id = r.runID
                run.entity = r.entity
                run.project = r.project
                run.name = r.displayName
                run.notes = r.notes
                run.tags = r.tags
                run.group = r.group
                run.jobType = r.jobType
                run.host = r.host
                run.startTime = r.startTime
                run.branchPoint = r.branchPoint
                run.resume = r.resume
                run.resumed = r.resumed
                run.forked = r.forked
                run.startingStep = r.startingStep
                if let c = r.config { try apply(c, to: &config, record) }
                if let s = r.summary { deferSummary(s, record) }
            case .config(let c):
                try apply(c, to: &config, record)
            case .summary(let s):
                deferSummary(s, record)
            case .history(let h):
                let r = try row(h, record)
                if keepsHistory { run.history.append(r) }
            case .output(let o):
                appendOutput(o)
            case .stats(let s):
                var values: [String: Value] = [:]
                for item in s.items { values[item.flatKey] = try value(of: item, record) ?? .null }
                run.systemMetrics.append(WandbSystemSample(time: s.timestamp, values: values))
            case .files(let f):
                run.files.append(contentsOf: f.files)
            case .exit(let e):
                run.exit = e
            case .header(let h):
                run.producer = h.producer
            case .other:
                break
            }
        }

        private mutating func deferSummary(_ update: WandbUpdateRecord, _ record: WandbRecord) {
            func add(_ path: [String], _ item: WandbItem?) {
                guard !path.isEmpty else { return }
                // A later set replaces an earlier change of the path whole (parents are made
                // either way); a removal does not (a set then a removal leaves the parents).
                if item != nil, let i = pendingIndex[path] { pendingSummary[i] = nil }
                pendingIndex[path] = pendingSummary.count
                pendingSummary.append((path, item, record.number, record.offset, rawSummary.nextOrder()))
            }
            for item in update.updates { add(item.path, item) }
            for item in update.removals { add(item.path, nil) }
        }

        /// Defers a summary record from ``WandbLogReader/nextRaw()`` without decoding its
        /// items: they are located, and dropped when a later record sets the same key bytes,
        /// so only the changes that survive are decoded, at ``finish()``. Damage inside the
        /// record is reported through `reader` (thrown, or skipped with the whole record).
        mutating func deferSummary(_ raw: WandbRawRecord, reader: inout WandbLogReader) throws(WandbFormatError) {
            scratch.removeAll(keepingCapacity: true)
            let number: Int64
            do {
                number = try WandbRecordDecoder.summaryItems(raw.bytes) { scratch.append(($0, $1, $2)) }
            } catch {
                try reader.malformed(raw, error)
                return
            }
            // Updates first, then removals, as for a decoded record.
            rawSummary.beginRecord()
            for pass in 0..<2 {
                for (item, removal, keys) in scratch where removal == (pass == 1) {
                    let change = WandbSummaryChanges.Change(bytes: raw.bytes, item: item, removal: removal, number: number,
                                                            offset: raw.offset, order: rawSummary.nextOrder())
                    rawSummary.add(change, keys: keys)
                }
            }
        }

        /// The summary with every deferred change applied.
        /// - Throws: `.malformedValue` for a value that is not JSON (of the changes that count).
        private func resolvedSummary() throws(WandbFormatError) -> [String: Value] {
            var summary = summary
            // Decoded and raw changes, merged back into file order.
            var ops: [(order: Int, item: WandbItem?, path: [String], number: Int64, offset: Int64)] = []
            for op in pendingSummary {
                if let op { ops.append((op.order, op.item, op.path, op.number, op.offset)) }
            }
            for c in rawSummary.changes {
                // Read once already by `summaryItems`: it cannot fail.
                guard let i = (c.bytes.withUnsafeBufferPointer { b -> WandbItem? in
                    var r = ProtoReader(b, range: c.item)
                    return try? WandbRecordDecoder.item(&r)
                }) else { continue }
                ops.append((c.order, c.removal ? nil : i, i.path, c.number, c.offset))
            }
            ops.sort { $0.order < $1.order }
            for (_, item, path, number, offset) in ops {
                if let item {
                    let v: Value
                    do { v = try item.value() ?? .null } catch {
                        throw WandbFormatError(.malformedValue, offset: offset, path: self.path,
                                               message: "record \(number) (summary), key \(path): \(error)")
                    }
                    Self.set(v, at: path[...], in: &summary)
                } else {
                    Self.remove(at: path[...], in: &summary)
                }
            }
            return summary
        }

        /// The run as built so far (open console lines included).
        /// - Throws: `.malformedValue` for a summary value that is not JSON.
        public func finish() throws(WandbFormatError) -> WandbRun {
            var result = run
            var config = config
            var summary = try resolvedSummary()
            result.internalConfig = config.removeValue(forKey: "_wandb")?.objectValue ?? [:]
            result.internalSummary = summary.removeValue(forKey: "_wandb")?.objectValue ?? [:]
            result.config = config
            result.summary = summary
            for stream in [WandbOutputStream.stdout, .stderr] {
                if let open = openLines[stream], !open.text.isEmpty {
                    result.console.append(WandbConsoleLine(text: Self.cleanLine(open.text), stream: stream, time: open.time))
                }
            }
            return result
        }

        private func value(of item: WandbItem, _ record: WandbRecord) throws(WandbFormatError) -> Value? {
            do {
                return try item.value()
            } catch {
                throw WandbFormatError(.malformedValue, offset: record.offset, path: path,
                                       message: "record \(record.number) (\(record.kind)), key \(item.path): \(error)")
            }
        }

        private func apply(_ update: WandbUpdateRecord, to object: inout [String: Value], _ record: WandbRecord) throws(WandbFormatError) {
            for item in update.updates {
                let path = item.path
                guard !path.isEmpty else { continue }
                Self.set(try value(of: item, record) ?? .null, at: path[...], in: &object)
            }
            for item in update.removals {
                Self.remove(at: item.path[...], in: &object)
            }
        }

        /// A history record's row; it becomes the last row read (``lastRowStep``).
        mutating func row(_ h: WandbHistoryRecord, _ record: WandbRecord) throws(WandbFormatError) -> WandbHistoryRow {
            var values: [String: Value] = [:]
            var nested: [String: [String]] = [:]
            values.reserveCapacity(h.items.count)
            for item in h.items {
                let key = item.flatKey
                values[key] = try value(of: item, record) ?? .null
                if item.nestedKey.count > 1 { nested[key] = item.nestedKey } else { nested[key] = nil }
            }
            let step: Int64
            step = Self.step(values["_step"]) ?? h.step ?? defaultStep
            lastRowStep = step
            return WandbHistoryRow(step: step, values: values, nestedPaths: nested)
        }

        /// A `_step` value as a step: an integer, or a float with an integral value.
        static func step(_ value: Value?) -> Int64? {
            switch value {
            case .int(let i)?: return i
            case .double(let d)? where d == d.rounded() && abs(d) < 9.2e18: return Int64(d)
            default: return nil
            }
        }

        /// The step of a row that names none: one after the last row's, else 0.
        var defaultStep: Int64 { lastRowStep.map { $0 + 1 } ?? 0 }

        /// Records a row read without ``row(_:_:)`` (``WandbSyncImport``'s fast path).
        mutating func noteRow(step: Int64) {
            lastRowStep = step
        }

        private mutating func appendOutput(_ o: WandbOutputRecord) {
            let stream = o.stream ?? .stderr
            var open = openLines[stream] ?? ("", nil)
            // Scalars, not Characters: "\r\n" is one Character.
            var rest = Substring(o.line).unicodeScalars[...]
            while !rest.isEmpty {
                if open.text.isEmpty && open.time == nil { open.time = o.timestamp }
                if let newline = rest.firstIndex(of: "\n") {
                    open.text.unicodeScalars.append(contentsOf: rest[..<newline])
                    run.console.append(WandbConsoleLine(text: Self.cleanLine(open.text), stream: stream, time: open.time))
                    open = ("", nil)
                    rest = rest[rest.index(after: newline)...]
                } else {
                    open.text.unicodeScalars.append(contentsOf: rest)
                    rest = rest[rest.endIndex...]
                }
            }
            openLines[stream] = open
        }

        /// Drops a trailing `\r` (of `\r\n`) and keeps what follows the last other `\r`.
        static func cleanLine(_ text: String) -> String {
            var scalars = Substring(text).unicodeScalars[...]
            if scalars.last == "\r" { scalars.removeLast() }
            if let cr = scalars.lastIndex(of: "\r") { scalars = scalars[scalars.index(after: cr)...] }
            return String(String.UnicodeScalarView(scalars))
        }

        static func set(_ value: Value, at path: ArraySlice<String>, in object: inout [String: Value]) {
            let key = path.first!
            if path.count == 1 {
                object[key] = value
                return
            }
            var child = object.removeValue(forKey: key)?.objectValue ?? [:]
            set(value, at: path.dropFirst(), in: &child)
            object[key] = .object(child)
        }

        static func remove(at path: ArraySlice<String>, in object: inout [String: Value]) {
            guard let key = path.first else { return }
            if path.count == 1 {
                object[key] = nil
                return
            }
            guard var child = object[key]?.objectValue else { return }
            remove(at: path.dropFirst(), in: &child)
            object[key] = .object(child)
        }
    }
}
