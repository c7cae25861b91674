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
    }

    static let manifestName = "wandb-sessions.json"

    /// The default cache: `$XDG_CACHE_HOME/runlog/wandb` or `~/.cache/runlog/wandb`.
    public static var defaultCache: String {
        let env = ProcessInfo.processInfo.environment
        let base = env["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? (NSHomeDirectory() + "/.cache")
        return base + "/runlog/wandb"
    }

    /// Every wandb offline run at `path`: the path itself (an `offline-run-*/` directory or
    /// a `.wandb` file), or the runs directly under it (e.g. a `wandb/` folder).
    public static func discover(_ path: String) -> [String] {
        if WandbImport.isWandb(path) { return [path] }
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: path) else { return [] }
        return names.sorted().map { path + "/" + $0 }.filter { WandbImport.isWandb($0) }
    }

    /// The `.wandb` file of a run directory (or the file itself).
    static func file(of path: String) -> String? {
        if path.hasSuffix(".wandb") { return path }
        return (try? FileManager.default.contentsOfDirectory(atPath: path))?.sorted().first { $0.hasSuffix(".wandb") }.map { path + "/" + $0 }
    }

    struct Session {
        var file: String
        var size: Int64
        var run: WandbRun
        var start: Int64 { WandbSyncImport.micros(run.startTime) }
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
        // Decoding is most of the work and each file is independent: one thread per core.
        let files = paths.compactMap { file(of: $0) }.map { URL(fileURLWithPath: $0).resolvingSymlinksInPath().path }
        let decoded = Mutex([Result<Session, WandbFormatError>?](repeating: nil, count: files.count))
        DispatchQueue.concurrentPerform(iterations: files.count) { i in
            let real = files[i]
            let size = (try? FileManager.default.attributesOfItem(atPath: real)[.size] as? NSNumber)?.int64Value ?? 0
            let r = Result { () throws(WandbFormatError) -> Session in
                Session(file: real, size: size, run: try WandbRun(contentsOf: URL(fileURLWithPath: real)))
            }
            decoded.withLock { $0[i] = r }
        }
        let sessions = try decoded.withLock { $0 }.map { try $0!.get() }
        // Group by run; runs whose sessions fork from another run come after it.
        var groups: [String: [Session]] = [:]
        for s in sessions { groups[key(s.run.project, s.run.id), default: []].append(s) }
        var order: [String] = []
        var placed = Set<String>()
        var pending = groups.keys.sorted()
        while !pending.isEmpty {
            let before = pending.count
            pending.removeAll { k in
                let first = groups[k]!.min { $0.start < $1.start }!.run
                if let bp = first.branchPoint, first.branchKind == .fork, groups[key(first.project, bp.run)] != nil, !placed.contains(key(first.project, bp.run)) {
                    return false
                }
                order.append(k)
                placed.insert(k)
                return true
            }
            if pending.count == before { order += pending; break }  // a cycle cannot happen; be safe
        }
        var out: [Prepared] = []
        for k in order {
            let list = groups[k]!.sorted { ($0.start, $0.file) < ($1.start, $1.file) }
            let dir = cache + "/" + k
            let added = try fold(list, into: dir, cache: cache)
            out.append(Prepared(directory: dir, sessions: list.map(\.file), added: added))
        }
        return out
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
        try data.write(to: URL(fileURLWithPath: dir + "/" + manifestName), options: .atomic)
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
            try append(run, to: w, from: &from, lastStep: &lastStep, lineage: !existed && newSession && !forked)
            try w.close()
            from.size = s.size
            if let i = previous { manifest[i] = from } else { manifest.append(from) }
            try saveManifest(manifest, dir)
            added += 1
        }
        return added
    }

    static func micros(_ t: WandbTimestamp?) -> Int64 { t.map { $0.seconds * 1_000_000 + Int64($0.nanos) / 1000 } ?? 0 }

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

    /// Appends a session's records after those already taken (`from`): its identity and
    /// config, then the rows, console lines and samples not taken yet, the summary and the
    /// exit. History rows at or before `lastStep` are dropped (wandb's steps only increase).
    static func append(_ run: WandbRun, to w: LogWriter, from: inout Folded, lastStep: inout Int64?, lineage: Bool) throws {
        try w.append(.runMetadata(RunMetadata(metadata(run))))
        if lineage, let bp = run.branchPoint, run.branchKind == .fork {
            // The parent is not in the cache: keep the lineage without its rows.
            try w.append(.forkOrigin(ForkOrigin(sourceID: bp.run, sourceProject: run.project.isEmpty ? nil : run.project,
                                                step: Int64(bp.value), timestamp: micros(run.startTime))))
        }
        if !run.config.isEmpty { try w.append(.config(ConfigChange(values: run.config))) }
        if !run.tags.isEmpty { try w.append(.tags(run.tags)) }
        for row in run.history.dropFirst(from.history) {
            if let l = lastStep, row.step <= l { continue }
            var values = row.values
            let t = values.removeValue(forKey: "_timestamp")?.doubleValue.map { Int64(($0 * 1e6).rounded()) } ?? micros(run.startTime)
            values["_step"] = nil
            try w.appendRow(step: row.step, timestamp: t, values: values)
            lastStep = row.step
        }
        from.history = run.history.count
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
}
