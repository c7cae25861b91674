import Dispatch
import Foundation
import Logging
import RunLogStore
import Synchronization

/// Brings wandb offline runs into RunLog's model so that `runlog sync` sends them with the
/// native engine (frames as stored, acknowledged, resumable), incrementally.
///
/// wandb writes one `offline-run-*/` directory per *session*: a run resumed offline, or
/// rewound with `resume_from`, is a second directory with the same run id, and a `fork_from`
/// run is a new id with a branch point. RunLog keeps one log per run, so the sessions of a
/// run are folded, in start order, into one RunLog run under a cache directory:
///
/// | session | becomes |
/// | --- | --- |
/// | the first of a run | a new RunLog run (metadata, config, tags, history, console, system metrics, summary, exit) |
/// | `resume` (same id) | a resume marker, then the session's rows with a step after the last one held (wandb's steps only increase) |
/// | `resume_from` (same id, branch point) | a rewind to the branch step (the rows after it archived), then the session |
/// | `fork_from` (new id) | a RunLog fork of the parent's run at the branch step (when the parent is in the cache), then the session |
///
/// Each cache run lists the sessions folded into it (`wandb-sessions.json`: file, size,
/// rows/lines taken), so running again folds only new sessions, and only the new part of a
/// session whose file grew. The cache runs are ordinary RunLog runs: the sync cursor lives
/// in them, and they can be shown, forked and compacted.
public enum WandbSyncImport {
    public struct Prepared: Sendable, Hashable {
        /// The RunLog run directory to sync.
        public var directory: String
        /// The `.wandb` files folded into it.
        public var sessions: [String]
        /// Sessions (or parts) this call added.
        public var added: Int
        /// The run's id, project and entity (empty offline), as its folded metadata names them
        /// (the entity of the last session that names one).
        public var remoteID: String
        public var project: String
        public var entity: String
        /// The run its first session forks from (`fork_from`).
        public var forkedFrom: String?

        /// The sync job for the run (what ``RunDiscovery/job(for:defaultEntity:)`` reads from the log).
        public func job(defaultEntity: String) -> SyncJob {
            SyncJob(directory: directory, remote: RemoteRun(entity: entity.isEmpty ? defaultEntity : entity, project: project, id: remoteID),
                    parentID: forkedFrom)
        }
    }

    static let manifestName = "wandb-sessions.json"

    /// The default cache: `$XDG_CACHE_HOME/runlog/wandb` or `~/.cache/runlog/wandb`.
    public static var defaultCache: String {
        let env = ProcessInfo.processInfo.environment
        let base = env["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? (NSHomeDirectory() + "/.cache")
        return base + "/runlog/wandb"
    }

    /// The `.wandb` file of every wandb offline run at `path`: the path itself (an
    /// `offline-run-*/` directory or a `.wandb` file), or the runs directly under it (e.g. a
    /// `wandb/` folder). Empty when there are none.
    public static func discover(_ path: String) -> [String] {
        if let file = WandbImport.logFile(of: path) { return [file] }
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: path) else { return [] }
        return names.sorted().compactMap { WandbImport.logFile(of: path + "/" + $0) }
    }

    /// `path` with symbolic links resolved (`realpath`), or as given when it cannot be.
    static func resolved(_ path: String) -> String {
        guard let r = realpath(path, nil) else { return path }
        defer { free(r) }
        return String(cString: r)
    }

    /// A session to fold: its file, and the run as its first records describe it (identity,
    /// start time, branch point; no history).
    struct Session {
        var file: String
        var size: Int64
        var run: WandbRun
        var start: Int64 { WandbSyncImport.micros(run.startTime) }

        /// Reads records up to the run record (the second, after the header), not the rest.
        static func head(of file: String, size: Int64) throws(WandbFormatError) -> Session {
            var reader = try WandbLogReader(url: URL(fileURLWithPath: file), readSize: 64 << 10)
            var builder = WandbRun.Builder(path: reader.url.path, keepsHistory: false)
            while let raw = try reader.nextRaw() {
                guard raw.kind == .header || raw.kind == .run, let record = try reader.decode(raw) else { continue }
                try builder.apply(record)
                if raw.kind == .run { break }
            }
            return Session(file: file, size: size, run: try builder.finish())
        }
    }

    /// A session already folded into a cache run.
    struct Folded: Codable, Hashable {
        var file: String
        var size: Int64
        var history: Int
        var console: Int
        var system: Int
    }

    /// Folds the sessions at `paths` into RunLog runs under `cache` and returns the runs
    /// to sync, parents before forks. A `.wandb` file cut short by a kill contributes every
    /// whole record.
    /// - Throws: `WandbFormatError` for a file that is not a wandb log; `StoreError` for the cache.
    public static func prepare(_ paths: [String], cache: String, logger: Logger = Logger(label: "runlog.sync")) throws -> [Prepared] {
        let plan = try Plan(paths, cache: cache)
        let out = Mutex<[Prepared]>([])
        let failure = Mutex<(any Error)?>(nil)
        plan.fold { result in
            switch result {
            case .success(let p): out.withLock { $0.append(p) }
            case .failure(let e): failure.withLock { if $0 == nil { $0 = e } }
            }
        }
        if let e = failure.withLock({ $0 }) { throw (e as? PlanError)?.underlying ?? e }
        let order = Dictionary(uniqueKeysWithValues: plan.runs.enumerated().map { ($1.directory, $0) })
        return out.withLock { $0 }.sorted { order[$0.directory]! < order[$1.directory]! }
    }

    /// What `prepare` will fold: every session's identity (read from the first records of its
    /// file only), grouped by run, runs in waves (a fork after the run it forks from).
    public struct Plan: Sendable {
        /// The runs, parents before forks; ``Prepared/added`` is 0 until folded.
        public let runs: [Prepared]
        let cache: String
        fileprivate let groups: [String: [Session]]
        fileprivate let waves: [[String]]

        /// - Throws: `WandbFormatError` for a file that is not a wandb log.
        public init(_ paths: [String], cache: String) throws {
            // Each session's identity, from its first records; one thread per core.
            let files = paths.compactMap { WandbImport.logFile(of: $0) }.map(resolved)
            let heads = parallelMap(files) { real in
                let size = LocalFile.size(real) ?? 0
                return Result { () throws(WandbFormatError) -> Session in try Session.head(of: real, size: size) }
            }
            let sessions = try heads.map { try $0.get() }
            // Group by run; a run whose first session forks from another run of this batch is
            // folded in a later wave than that run, so that the parent's rows are there to fork.
            var groups: [String: [Session]] = [:]
            for s in sessions { groups[key(s.run.project, s.run.id), default: []].append(s) }
            for (k, list) in groups { groups[k] = list.sorted { ($0.start, $0.file) < ($1.start, $1.file) } }
            var wave: [String: Int] = [:]
            func waveOf(_ k: String, _ depth: Int = 0) -> Int {
                if let w = wave[k] { return w }
                let first = groups[k]![0].run
                var w = 0
                if depth < groups.count, let bp = first.branchPoint, first.branchKind == .fork, groups[key(first.project, bp.run)] != nil {
                    w = waveOf(key(first.project, bp.run), depth + 1) + 1
                }
                wave[k] = w
                return w
            }
            let keys = groups.keys.sorted()
            for k in keys { _ = waveOf(k) }
            let ordered = keys.sorted { (wave[$0]!, $0) < (wave[$1]!, $1) }
            self.cache = cache
            self.groups = groups
            self.waves = Dictionary(grouping: ordered) { wave[$0]! }.sorted { $0.key < $1.key }.map(\.value)
            self.runs = ordered.map { k in Self.prepared(k, groups[k]!, cache: cache, added: 0) }
        }

        fileprivate static func prepared(_ k: String, _ list: [Session], cache: String, added: Int) -> Prepared {
            let first = list[0].run
            let meta = metadata(first)
            return Prepared(directory: cache + "/" + k, sessions: list.map(\.file), added: added,
                            remoteID: meta["id"]?.stringValue ?? first.id, project: meta["project"]?.stringValue ?? "uncategorized",
                            entity: list.last { !$0.run.entity.isEmpty }?.run.entity ?? "",
                            forkedFrom: first.branchKind == .fork ? first.branchPoint?.run : nil)
        }

        /// Runs folded at once: two per core. Each fold waits on the device about 3 ms (the
        /// cache log's creation and its sync at close), which another fold fills: 100 runs of
        /// the wandb-sync benchmark fold in 0.35–0.5 s this way against 0.5–0.55 s with one per core.
        static var foldWidth: Int { 2 * ProcessInfo.processInfo.activeProcessorCount }

        /// Folds every run (two threads per core, a wave at a time), calling `ready` with each
        /// as soon as it is folded, so that it can be synced while the others are folded.
        /// `ready` is called from several threads.
        public func fold(_ ready: @escaping @Sendable (Result<Prepared, any Error>) -> Void) {
            for batch in waves {
                // Runs are independent within a wave: each streams its sessions' records into
                // its own cache run.
                _ = parallelMap(batch, width: Self.foldWidth) { k in
                    let list = groups[k]!
                    do {
                        let added = try WandbSyncImport.fold(list, into: cache + "/" + k, cache: cache)
                        ready(.success(Self.prepared(k, list, cache: cache, added: added)))
                    } catch {
                        ready(.failure(PlanError(directory: cache + "/" + k, sessions: list.map(\.file), underlying: error)))
                    }
                }
            }
        }
    }

    /// Why a run of a ``Plan`` could not be folded.
    public struct PlanError: Error, CustomStringConvertible {
        public var directory: String
        public var sessions: [String]
        public var underlying: any Error
        public var description: String { "\(sessions.joined(separator: ", ")): \(underlying)" }
    }

    /// `transform` of every element, in order, computed on `width` threads (default one per
    /// core). The threads are its own, not Dispatch's workers: those also run Swift concurrency's jobs (the sync
    /// engine's), which must not wait for a whole batch of folds to finish.
    static func parallelMap<T: Sendable, R: Sendable>(_ items: [T], width: Int = ProcessInfo.processInfo.activeProcessorCount, _ transform: @escaping @Sendable (T) -> R) -> [R] {
        let results = Mutex([R?](repeating: nil, count: items.count))
        let next = Atomic<Int>(0)
        let threads = max(1, min(width, items.count))
        let done = DispatchSemaphore(value: 0)
        for _ in 0..<threads {
            let thread = Thread {
                while case let i = next.add(1, ordering: .relaxed).oldValue, i < items.count {
                    let r = transform(items[i])
                    results.withLock { $0[i] = r }
                }
                done.signal()
            }
            thread.stackSize = 4 << 20
            thread.start()
        }
        for _ in 0..<threads { done.wait() }
        return results.withLock { $0.map { $0! } }
    }

    static func key(_ project: String, _ id: String) -> String {
        func clean(_ s: String) -> String {
            let t = s.isEmpty ? "uncategorized" : s
            return String(t.map { $0 == "/" || $0 == "\0" ? "_" : $0 }).replacingOccurrences(of: "..", with: "__")
        }
        return clean(project) + "/" + clean(id)
    }

    static func loadManifest(_ dir: String) -> [Folded] {
        guard let data = FileManager.default.contents(atPath: dir + "/" + manifestName) else { return [] }
        return (try? JSONDecoder().decode([Folded].self, from: data)) ?? []
    }

    static func saveManifest(_ m: [Folded], _ dir: String) throws {
        let data = try JSONEncoder().encode(m)
        try LocalFile.replace(dir + "/" + manifestName, with: data)
    }

    /// Folds `sessions` (one run's, in start order) into the cache run at `dir`; returns how many were added to.
    static func fold(_ sessions: [Session], into dir: String, cache: String) throws -> Int {
        var manifest = loadManifest(dir)
        var added = 0
        for s in sessions {
            let previous = manifest.firstIndex { $0.file == s.file }
            if let i = previous, manifest[i].size == s.size { continue }
            let existed = FileManager.default.fileExists(atPath: RunDirectory.logPath(dir))
            var from = previous.map { manifest[$0] } ?? Folded(file: s.file, size: s.size, history: 0, console: 0, system: 0)
            let run = s.run
            let newSession = previous == nil
            var forked = false
            if !existed, newSession, let bp = run.branchPoint, run.branchKind == .fork {
                let parent = cache + "/" + key(run.project, bp.run)
                if FileManager.default.fileExists(atPath: RunDirectory.logPath(parent)) {
                    try FileManager.default.createDirectory(atPath: (dir as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                    try RunDirectory.fork(source: parent, atStep: Int64(bp.value), to: dir, metadata: RunMetadata(metadata(run)))
                    forked = true
                }
            }
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            var config = LogWriter.Configuration()
            config.flushInterval = .seconds(3600)
            config.durability = .none
            let w = try LogWriter.open(directory: dir, configuration: config)
            var lastStep: Int64?
            do {
                let r = try RunDirectory.reader(dir)
                defer { r.close() }
                lastStep = try r.lastLiveStep()
            }
            if existed, newSession {
                // A later session of a run held already: rewound (resume_from), or resumed.
                if let bp = run.branchPoint, run.branchKind == .rewind {
                    try w.rewind(toStep: Int64(bp.value))
                    lastStep = min(lastStep ?? Int64(bp.value), Int64(bp.value))
                }
                try w.append(.resume(ResumeMarker(reason: run.branchKind == .rewind ? "rewind" : "resume",
                                                  nextStep: (lastStep ?? -1) + 1, timestamp: s.start)))
            }
            try append(session: s, to: w, from: &from, lastStep: &lastStep, lineage: !existed && newSession && !forked)
            try w.close()
            from.size = s.size
            if let i = previous { manifest[i] = from } else { manifest.append(from) }
            try saveManifest(manifest, dir)
            added += 1
        }
        return added
    }

    static func micros(_ t: WandbTimestamp?) -> Int64 { t.map { $0.seconds * 1_000_000 + Int64($0.nanos) / 1000 } ?? 0 }
    /// `_timestamp` (seconds, a float) in microseconds.
    static func micros(seconds: Double) -> Int64 { Int64((seconds * 1e6).rounded()) }

    static func metadata(_ run: WandbRun) -> [String: Value] {
        var meta: [String: Value] = ["id": .string(run.id), "project": .string(run.project.isEmpty ? "uncategorized" : run.project),
                                     "imported_from": "wandb"]
        if !run.entity.isEmpty { meta["entity"] = .string(run.entity) }
        if !run.name.isEmpty { meta["name"] = .string(run.name) }
        if !run.notes.isEmpty { meta["notes"] = .string(run.notes) }
        if !run.group.isEmpty { meta["group"] = .string(run.group) }
        if !run.jobType.isEmpty { meta["job_type"] = .string(run.jobType) }
        if !run.host.isEmpty { meta["host"] = .string(run.host) }
        if let t = run.startTime { meta["start_time"] = .int(micros(t)) }
        return meta
    }

    /// Appends a session's records after those already taken (`from`): its identity, then
    /// the rows, console lines and samples not taken yet, its config and tags, the summary
    /// and the exit. History rows at or before `lastStep` are dropped (wandb's steps only
    /// increase).
    static func append(_ run: WandbRun, to w: LogWriter, from: inout Folded, lastStep: inout Int64?, lineage: Bool) throws {
        try appendIdentity(run, to: w, lineage: lineage)
        for row in run.history.dropFirst(from.history) {
            if let l = lastStep, row.step <= l { continue }
            try appendRow(row, to: w, defaultTime: micros(run.startTime))
            lastStep = row.step
        }
        from.history = run.history.count
        try appendRest(run, to: w, from: &from)
    }

    /// ``append(_:to:from:lastStep:lineage:)`` for a session read as it goes: history rows
    /// go to the log as they are read (through ``RowReader``), never held as a whole; the
    /// rest of the run is built alongside and written at the end.
    static func append(session: Session, to w: LogWriter, from: inout Folded, lastStep: inout Int64?, lineage: Bool) throws {
        try appendIdentity(session.run, to: w, lineage: lineage)
        var reader = try WandbLogReader(url: URL(fileURLWithPath: session.file))
        var builder = WandbRun.Builder(path: reader.url.path, keepsHistory: false)
        var rows = RowReader()
        let defaultTime = micros(session.run.startTime)
        var seen = 0
        while let raw = try reader.nextRaw() {
            switch raw.kind {
            case .history:
                guard let row = try rows.read(raw, reader: &reader, builder: &builder) else { continue }
                seen += 1
                if seen <= from.history { continue }
                if let l = lastStep, row.step <= l { continue }
                try rows.append(row, to: w, defaultTime: defaultTime)
                lastStep = row.step
            case .summary:
                try builder.deferSummary(raw, reader: &reader)
            default:
                if let record = try reader.decode(raw) { try builder.apply(record) }
            }
        }
        from.history = seen
        let run = try builder.finish()
        if metadata(run) != metadata(session.run) { try w.append(.runMetadata(RunMetadata(metadata(run)))) }
        try appendRest(run, to: w, from: &from)
    }

    /// The run's metadata and, for a fork whose parent is not in the cache, its lineage.
    static func appendIdentity(_ run: WandbRun, to w: LogWriter, lineage: Bool) throws {
        try w.append(.runMetadata(RunMetadata(metadata(run))))
        if lineage, let bp = run.branchPoint, run.branchKind == .fork {
            // The parent is not in the cache: keep the lineage without its rows.
            try w.append(.forkOrigin(ForkOrigin(sourceID: bp.run, sourceProject: run.project.isEmpty ? nil : run.project,
                                                step: Int64(bp.value), timestamp: micros(run.startTime))))
        }
    }

    /// A row as read: `_step` and `_timestamp` become the row's step and time.
    static func appendRow(_ row: WandbHistoryRow, to w: LogWriter, defaultTime: Int64) throws {
        var values = row.values
        let t = values.removeValue(forKey: "_timestamp")?.doubleValue.map(micros(seconds:)) ?? defaultTime
        values["_step"] = nil
        try w.appendRow(step: row.step, timestamp: t, values: values)
    }

    /// Config, tags, the console lines and samples not taken yet, the summary and the exit.
    static func appendRest(_ run: WandbRun, to w: LogWriter, from: inout Folded) throws {
        if !run.config.isEmpty { try w.append(.config(ConfigChange(values: run.config))) }
        if !run.tags.isEmpty { try w.append(.tags(run.tags)) }
        for line in run.console.dropFirst(from.console) {
            try w.append(.console(ConsoleLine(stream: line.stream == .stderr ? .stderr : .stdout, timestamp: micros(line.time), text: line.text)))
        }
        from.console = run.console.count
        for s in run.systemMetrics.dropFirst(from.system) { try w.append(.systemMetrics(SystemSample(timestamp: micros(s.time), values: s.values))) }
        from.system = run.systemMetrics.count
        var summary = run.summary
        for k in summary.keys where k.hasPrefix("_") { summary[k] = nil }
        // A session's summary is its whole summary (what wandb sends at the end of a sync).
        if !summary.isEmpty { try w.append(.summary(SummaryChange(replace: true, values: summary))) }
        if let exit = run.exit {
            try w.append(.exit(ExitRecord(state: exit.exitCode == 0 ? "finished" : "failed", exitCode: Int64(exit.exitCode),
                                          runtime: Double(exit.runtime), timestamp: micros(run.startTime) + Int64(exit.runtime) * 1_000_000)))
        }
    }

    /// Reads history records into rows for the log. The common row (every value a JSON
    /// float, plain keys) is read straight from the record's bytes into parallel key and
    /// double arrays, reusing the previous row's key strings; any other row is decoded in
    /// full as ``WandbRun`` does, so both give the same rows.
    struct RowReader {
        enum Row {
            /// In ``keys`` and ``doubles``; `time` is `_timestamp` in seconds.
            case fast(step: Int64, time: Double?)
            case full(WandbHistoryRow)

            var step: Int64 {
                switch self {
                case .fast(let step, _): return step
                case .full(let row): return row.step
                }
            }
        }

        private var spans: [WandbRecordDecoder.ItemSpan] = []
        private(set) var keys: [String] = []
        private(set) var doubles: [Double] = []
        private var previousKeys: [String] = []

        /// The row of a history record; nil when it is damaged and the reader's options skip damage.
        mutating func read(_ raw: WandbRawRecord, reader: inout WandbLogReader, builder: inout WandbRun.Builder) throws(WandbFormatError) -> Row? {
            if let row = fast(raw, defaultStep: builder.defaultStep) {
                builder.noteRow(step: row.step)
                return row
            }
            guard let record = try reader.decode(raw), case .history(let h) = record.content else { return nil }
            return .full(try builder.row(h, record))
        }

        mutating func append(_ row: Row, to w: LogWriter, defaultTime: Int64) throws {
            switch row {
            case .fast(let step, let time):
                // `fast` found the keys distinct.
                try w.appendRow(step: step, timestamp: time.map(WandbSyncImport.micros(seconds:)) ?? defaultTime, distinctKeys: keys, doubles: doubles)
            case .full(let r):
                try WandbSyncImport.appendRow(r, to: w, defaultTime: defaultTime)
            }
        }

        private static let stepKey = Array("_step".utf8), timestampKey = Array("_timestamp".utf8)

        /// The row when it takes the fast path, else nil.
        private mutating func fast(_ raw: WandbRawRecord, defaultStep: Int64) -> Row? {
            guard let (_, recordStep) = try? WandbRecordDecoder.historyItems(raw.bytes, into: &spans) else { return nil }
            swap(&keys, &previousKeys)
            keys.removeAll(keepingCapacity: true)
            doubles.removeAll(keepingCapacity: true)
            var step: Int64?, time: Double?
            var sawStep = false, sawTime = false
            let ok = raw.bytes.withUnsafeBufferPointer { bytes -> Bool in
                for span in spans {
                    guard span.nestedCount <= 1, let valueRange = span.value, !valueRange.isEmpty else { return false }
                    let keyRange = span.nestedCount == 1 ? span.nested! : (span.key ?? 0..<0)
                    let key = UnsafeBufferPointer(rebasing: bytes[keyRange])
                    guard let value = try? WandbJSON.parse(UnsafeBufferPointer(rebasing: bytes[valueRange])) else { return false }
                    if key.count == 5, key.elementsEqual(Self.stepKey) {
                        guard !sawStep else { return false }
                        sawStep = true
                        step = WandbRun.Builder.step(value)
                    } else if key.count == 10, key.elementsEqual(Self.timestampKey) {
                        guard !sawTime else { return false }
                        sawTime = true
                        time = value.doubleValue
                    } else {
                        guard case .double(let d) = value else { return false }
                        keys.append(string(key, at: keys.count))
                        doubles.append(d)
                    }
                }
                return true
            }
            guard ok, !keys.isEmpty, !LogWriter.hasDuplicate(keys) else { return nil }
            return .fast(step: step ?? recordStep ?? defaultStep, time: time)
        }

        /// The key as a string: the previous row's string when the bytes match it (no new string).
        private func string(_ key: UnsafeBufferPointer<UInt8>, at position: Int) -> String {
            if position < previousKeys.count, Self.same(previousKeys[position], key) { return previousKeys[position] }
            for k in previousKeys where Self.same(k, key) { return k }
            return String(decoding: key, as: UTF8.self)
        }

        /// Whether `s` is exactly the bytes `b`.
        private static func same(_ s: String, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
            guard s.utf8.count == b.count else { return false }
            guard let base = b.baseAddress else { return true }
            return s.utf8.withContiguousStorageIfAvailable { memcmp($0.baseAddress!, base, b.count) == 0 } ?? s.utf8.elementsEqual(b)
        }

    }
}
