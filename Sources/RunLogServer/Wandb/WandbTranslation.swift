#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import RunLogStore
import RunLogSync

/// What the server keeps for a run written through the W&B protocol, beside the run's own
/// state: the line counts of the client's positional streams and the bits of `_wandb`
/// config the client asks for again on resume.
///
/// It lives in the run's metadata under ``metadataKey`` and is rewritten, whole, in the
/// same frame as the records it accounts for, so the counts and the data they count are
/// committed together (one ingest transaction) and survive a server killed at any moment.
struct WandbRunBook: Sendable, Hashable {
    static let metadataKey = "_wandb"

    /// Lines of `wandb-history.jsonl` received: the next history line's offset.
    var historyLines: Int64 = 0
    /// Lines of `wandb-events.jsonl` (system metrics) received.
    var eventsLines: Int64 = 0
    /// Lines of `output.log` received.
    var logLines: Int64 = 0
    /// The last history line as the client sent it (for `historyTail` on resume).
    var lastHistory: String?
    /// `_wandb.value.t` of the config (telemetry): a run without it counts, for the client,
    /// as created but never started.
    var telemetry: Value?
    /// The step of the last live history row: a row must come after it (W&B's steps only
    /// increase), so a re-sent session whose steps are already held adds nothing.
    var lastStep: Int64?

    init() {}

    /// The book of a run as stored; `lastStep` is the run's when the book has none.
    init(metadata: [String: Value], lastStep: Int64? = nil) {
        self.lastStep = lastStep
        guard case .object(let o)? = metadata[Self.metadataKey] else { return }
        if let l = o["last_step"]?.intValue { self.lastStep = l }
        historyLines = o["history_lines"]?.intValue ?? 0
        eventsLines = o["events_lines"]?.intValue ?? 0
        logLines = o["log_lines"]?.intValue ?? 0
        lastHistory = o["last_history"]?.stringValue
        telemetry = o["t"]
    }

    var value: Value {
        var o: [String: Value] = [
            "history_lines": .int(historyLines), "events_lines": .int(eventsLines), "log_lines": .int(logLines),
        ]
        if let lastHistory { o["last_history"] = .string(lastHistory) }
        if let lastStep { o["last_step"] = .int(lastStep) }
        if let telemetry { o["t"] = telemetry }
        return .object(o)
    }

    /// The metadata record that stores this book.
    var record: Record { .runMetadata(RunMetadata([Self.metadataKey: value])) }
}

/// Turns W&B protocol requests into RunLog records, with no I/O: every rule of the
/// translation is here and unit-tested.
enum WandbTranslation {
    // MARK: UpsertBucket

    /// The variables of an `UpsertBucket` that the server uses. Null means "unchanged".
    struct Upsert: Sendable {
        var storageID: String?
        var name: String?
        var project: String?
        var entity: String?
        var displayName: String?
        var notes: String?
        var description: String?
        var groupName: String?
        var jobType: String?
        var host: String?
        var program: String?
        var repo: String?
        var commit: String?
        var sweep: String?
        var tags: [String]?
        /// The config's user keys, unwrapped (empty when not sent).
        var config: [String: Value]
        /// The config's `_wandb` object (telemetry `t`, `branch_point`, ...).
        var wandb: [String: Value]
        var summaryMetrics: String?

        /// - Throws: when `config` is not a JSON object.
        init(_ v: Value) throws(WandbProtocolError) {
            func s(_ k: String) -> String? { v[k]?.stringValue }
            storageID = s("id"); name = s("name"); project = s("project"); entity = s("entity")
            displayName = s("displayName"); notes = s("notes"); description = s("description")
            groupName = s("groupName"); jobType = s("jobType"); host = s("host"); program = s("program")
            repo = s("repo"); commit = s("commit"); sweep = s("sweep")
            (config, wandb) = try splitConfig(s("config"))
            summaryMetrics = s("summaryMetrics")
            if case .array(let a)? = v["tags"] { tags = a.compactMap(\.stringValue) }
        }
    }

    /// A W&B config (`{"key": {"value": v, "desc": ...}, "_wandb": {"value": {...}}}`) split
    /// into the user's keys and the client's `_wandb` object.
    static func splitConfig(_ json: String?) throws(WandbProtocolError) -> (values: [String: Value], wandb: [String: Value]) {
        guard let json, !json.isEmpty else { return ([:], [:]) }
        guard case .object(let o) = try parse(json, what: "config") else { throw WandbProtocolError("config must be a JSON object") }
        var values: [String: Value] = [:]
        var wandb: [String: Value] = [:]
        for (k, v) in o {
            // The client wraps every value in {"value": v}; take a bare value as it is.
            let inner: Value = v["value"] ?? v
            if k == "_wandb" { wandb = inner.objectValue ?? [:] } else { values[k] = inner }
        }
        return (values, wandb)
    }

    /// Where a fork starts: `_wandb.value.branch_point = {"run_id": P, "step": N}`.
    static func branchPoint(_ wandb: [String: Value]) -> (run: String, step: Int64)? {
        guard case .object(let bp)? = wandb["branch_point"], let run = bp["run_id"]?.stringValue,
              let step = bp["step"]?.intValue ?? bp["step"]?.doubleValue.map({ Int64($0) }) else { return nil }
        return (run, step)
    }

    /// The records an `UpsertBucket` appends to a run (its metadata patch, tags, config and
    /// summary merges); `book` is updated with the config's telemetry.
    static func upsertRecords(_ u: Upsert, key: RunKey, isNew: Bool, now: Int64, book: inout WandbRunBook) throws(WandbProtocolError) -> [Record] {
        var records: [Record] = []
        var meta: [String: Value] = [:]
        if isNew {
            meta["id"] = .string(key.run)
            meta["project"] = .string(key.project)
            meta["entity"] = .string(key.entity)
            meta["start_time"] = .int(now)
            meta["client"] = "wandb"
            if u.displayName == nil { meta["name"] = .string(key.run) }
        }
        let fields: [(String, String?)] = [
            ("name", u.displayName), ("notes", u.notes ?? u.description), ("group", u.groupName), ("job_type", u.jobType),
            ("host", u.host), ("program", u.program), ("git_remote", u.repo), ("git_commit", u.commit), ("sweep", u.sweep),
        ]
        for (k, v) in fields { if let v { meta[k] = .string(v) } }
        if let t = u.wandb["t"] { book.telemetry = t }
        meta[WandbRunBook.metadataKey] = book.value
        records.append(.runMetadata(RunMetadata(meta)))
        if let tags = u.tags { records.append(.tags(tags)) }
        if !u.config.isEmpty { records.append(.config(ConfigChange(values: u.config))) }
        if let s = u.summaryMetrics, case .object(let o) = try parse(s, what: "summaryMetrics"), !o.isEmpty {
            records.append(.summary(SummaryChange(values: o.filter { $0.key != "_wandb" })))
        }
        return records
    }

    // MARK: file_stream

    /// One `files` entry of a file_stream request.
    struct Chunk: Sendable {
        var offset: Int64
        var content: [String]
    }

    /// A parsed file_stream request body.
    struct FileStream: Sendable {
        var files: [String: Chunk] = [:]
        var uploaded: [String] = []
        var preempting = false
        var complete = false
        var exitCode: Int64?

        init(_ v: Value) throws(WandbProtocolError) {
            guard case .object(let o) = v else { throw WandbProtocolError("a file_stream body is a JSON object") }
            if case .object(let files)? = o["files"] {
                for (name, f) in files {
                    let offset = f["offset"]?.intValue ?? f["offset"]?.doubleValue.map { Int64($0) } ?? 0
                    guard offset >= 0 else { throw WandbProtocolError("negative offset for \(name)") }
                    let content = f["content"]?.arrayValue?.compactMap(\.stringValue) ?? []
                    self.files[name] = Chunk(offset: offset, content: content)
                }
            }
            uploaded = o["uploaded"]?.arrayValue?.compactMap(\.stringValue) ?? []
            preempting = o["preempting"]?.boolValue ?? false
            complete = o["complete"]?.boolValue ?? false
            exitCode = o["exitcode"]?.intValue
        }
    }

    static let historyFile = "wandb-history.jsonl"
    static let eventsFile = "wandb-events.jsonl"
    static let summaryFile = "wandb-summary.json"
    static let consoleFile = "output.log"

    /// The result of folding a file_stream request.
    struct FileStreamOutcome: Sendable {
        var records: [Record] = []
        /// Lines that were already stored (a retry, or a re-sync of the same run).
        var duplicateLines = 0
        /// History lines whose step is not after the last one held (dropped, as W&B does).
        var outOfOrderLines = 0
        /// Lines that could not be stored (not JSON, or a value over the format's limits).
        var rejectedLines: [String] = []
    }

    /// The records of a file_stream request. Streams are positional: a line's offset is its
    /// identity, so a line below the stream's count is one the server already holds and is
    /// skipped — which makes retries and re-syncs idempotent. A history line must also step
    /// past the last row held, so a re-sent session adds nothing after a rewind either. Console lines the client
    /// rewrites (a `\r` progress bar) are kept as first received; the `output.log` the
    /// client uploads at the end has their final text.
    static func fileStreamRecords(_ fs: FileStream, now: Int64, book: inout WandbRunBook) -> FileStreamOutcome {
        var out = FileStreamOutcome()
        if let h = fs.files[historyFile] {
            for (i, line) in h.content.enumerated() {
                let index = h.offset + Int64(i)
                guard index >= book.historyLines else { out.duplicateLines += 1; continue }
                book.historyLines = index + 1
                do {
                    let row = try historyRow(line, index: index)
                    if let last = book.lastStep, row.step <= last {
                        out.outOfOrderLines += 1
                        continue
                    }
                    try Record.history(row).validateForStorage()
                    out.records.append(.history(row))
                    book.lastStep = row.step
                    book.lastHistory = line
                } catch {
                    out.rejectedLines.append("\(historyFile)[\(index)]: \(error)")
                }
            }
        }
        if let e = fs.files[eventsFile] {
            for (i, line) in e.content.enumerated() {
                let index = e.offset + Int64(i)
                guard index >= book.eventsLines else { out.duplicateLines += 1; continue }
                book.eventsLines = index + 1
                guard case .object(var o)? = try? WandbJSON.parse(line) else {
                    out.rejectedLines.append("\(eventsFile)[\(index)]: not a JSON object")
                    continue
                }
                let ts = o["_timestamp"]?.doubleValue.map { Int64($0 * 1e6) } ?? now
                for k in ["_timestamp", "_runtime", "_wandb"] { o[k] = nil }
                out.records.append(.systemMetrics(SystemSample(timestamp: ts, values: o)))
            }
        }
        if let c = fs.files[consoleFile] {
            for (i, line) in c.content.enumerated() {
                let index = c.offset + Int64(i)
                guard index >= book.logLines else { out.duplicateLines += 1; continue }
                book.logLines = index + 1
                let (ts, text, stream) = consoleLine(line, now: now)
                out.records.append(.console(ConsoleLine(stream: stream, timestamp: ts, text: text)))
            }
        }
        if let s = fs.files[summaryFile], let line = s.content.last {
            if case .object(let o)? = try? WandbJSON.parse(line) {
                out.records.append(.summary(SummaryChange(replace: true, values: o.filter { $0.key != "_wandb" })))
            } else {
                out.rejectedLines.append("\(summaryFile): not a JSON object")
            }
        }
        if fs.preempting { out.records.append(.runMetadata(RunMetadata(["preempting": true]))) }
        if fs.complete {
            let code = fs.exitCode ?? 0
            var runtime = 0.0
            if case .summary(let s)? = out.records.last(where: { if case .summary = $0 { true } else { false } }) {
                runtime = s.values["_runtime"]?.doubleValue ?? 0
            }
            out.records.append(.exit(ExitRecord(state: code == 0 ? "finished" : "failed", exitCode: code, runtime: runtime, timestamp: now)))
        }
        if !out.records.isEmpty { out.records.append(book.record) }
        return out
    }

    /// A history line as a row: `_step` is the step (the line's offset when missing),
    /// `_timestamp` (seconds) the row's time; every other key, `_runtime` included, is a value.
    static func historyRow(_ line: String, index: Int64) throws(WandbProtocolError) -> HistoryRow {
        guard case .object(var o) = try parse(line, what: "history line") else { throw WandbProtocolError("a history line is a JSON object") }
        let step = o["_step"]?.intValue ?? o["_step"]?.doubleValue.map { Int64($0) } ?? index
        let ts = o["_timestamp"]?.doubleValue.map { Int64(($0 * 1e6).rounded()) } ?? 0
        o["_step"] = nil
        o["_timestamp"] = nil
        return HistoryRow(step: step, timestamp: ts, values: o)
    }

    /// A console line without what the client prefixes: `ERROR ` for stderr, then the
    /// ISO-8601 time (`ERROR 2026-11-26T17:46:21.322008 text`); that time in µs, or `now`.
    static func consoleLine(_ line: String, now: Int64) -> (Int64, String, ConsoleLine.Stream) {
        var text = Substring(line)
        var stream = ConsoleLine.Stream.stdout
        if text.hasPrefix("ERROR ") {
            stream = .stderr
            text = text.dropFirst(6)
        }
        var ts = now
        if let space = text.firstIndex(of: " "), let t = parseISO(text[..<space]) {
            ts = t
            text = text[text.index(after: space)...]
        }
        return (ts, String(text), stream)
    }

    /// `YYYY-MM-DDTHH:MM:SS[.ffffff][Z]` in UTC, as µs since the epoch.
    static func parseISO(_ s: Substring) -> Int64? {
        let u = Array(s.utf8)
        guard u.count >= 19, u[4] == 0x2D, u[7] == 0x2D, u[10] == 0x54, u[13] == 0x3A, u[16] == 0x3A else { return nil }
        func num(_ a: Int, _ b: Int) -> Int? {
            var v = 0
            for i in a..<b { guard u[i] >= 0x30, u[i] <= 0x39 else { return nil }; v = v * 10 + Int(u[i] - 0x30) }
            return v
        }
        guard let y = num(0, 4), let mo = num(5, 7), let d = num(8, 10), let h = num(11, 13), let mi = num(14, 16), let se = num(17, 19) else { return nil }
        var micros = 0
        var i = 19
        if i < u.count, u[i] == 0x2E {
            i += 1
            var digits = 0
            while i < u.count, u[i] >= 0x30, u[i] <= 0x39 {
                if digits < 6 { micros = micros * 10 + Int(u[i] - 0x30); digits += 1 }
                i += 1
            }
            while digits < 6 { micros *= 10; digits += 1 }
        }
        if i < u.count, u[i] == 0x5A { i += 1 }
        guard i == u.count else { return nil }
        var tmv = tm()
        tmv.tm_year = Int32(y - 1900); tmv.tm_mon = Int32(mo - 1); tmv.tm_mday = Int32(d)
        tmv.tm_hour = Int32(h); tmv.tm_min = Int32(mi); tmv.tm_sec = Int32(se)
        return Int64(timegm(&tmv)) * 1_000_000 + Int64(micros)
    }

    // MARK: Resume

    /// A config as the client reads it back: `{"key": {"value": v}}`.
    static func wandbConfigJSON(_ config: [String: Value]) -> String {
        Value.object(config.mapValues { .object(["value": $0]) }).description
    }

    static func parse(_ text: String, what: String) throws(WandbProtocolError) -> Value {
        do { return try WandbJSON.parse(text) } catch { throw WandbProtocolError("\(what) is not valid JSON: \(error)") }
    }
}

/// A request the W&B protocol handlers refuse; the message goes back in a GraphQL error or
/// a 400.
struct WandbProtocolError: Error, Sendable, CustomStringConvertible {
    var message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}
