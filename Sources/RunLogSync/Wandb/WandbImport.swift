import Foundation
import RunLogStore

/// Converts a wandb offline run (`offline-run-*/` or a `.wandb` file) into a RunLog run
/// directory, so it can be shown, verified, forked, compacted and synced like a native one.
public enum WandbImport {
    public struct Result: Sendable {
        public var directory: String
        public var rows: Int
        /// Bytes of a torn tail (a killed run) that were not imported.
        public var droppedBytes: Int
    }

    /// Writes `run` as a new RunLog run in `directory`.
    /// - Throws: `StoreError` `.alreadyExists` if the directory holds a run already.
    @discardableResult
    public static func write(_ run: WandbRun, to directory: String) throws -> Result {
        guard !FileManager.default.fileExists(atPath: RunDirectory.logPath(directory)) else {
            throw StoreError(.alreadyExists, "a run already exists here", path: directory)
        }
        var config = LogWriter.Configuration()
        config.flushInterval = .seconds(3600)
        config.durability = .none
        let w = try LogWriter.open(directory: directory, configuration: config)
        func micros(_ t: WandbTimestamp?) -> Int64 { t.map { $0.seconds * 1_000_000 + Int64($0.nanos) / 1000 } ?? 0 }
        var meta: [String: Value] = ["id": .string(run.id), "project": .string(run.project.isEmpty ? "uncategorized" : run.project),
                                     "imported_from": "wandb"]
        if !run.entity.isEmpty { meta["entity"] = .string(run.entity) }
        if !run.name.isEmpty { meta["name"] = .string(run.name) }
        if !run.notes.isEmpty { meta["notes"] = .string(run.notes) }
        if !run.group.isEmpty { meta["group"] = .string(run.group) }
        if !run.jobType.isEmpty { meta["job_type"] = .string(run.jobType) }
        if !run.host.isEmpty { meta["host"] = .string(run.host) }
        if let t = run.startTime { meta["start_time"] = .int(micros(t)) }
        try w.append(.runMetadata(RunMetadata(meta)))
        if let bp = run.branchPoint, run.branchKind == .fork {
            try w.append(.forkOrigin(ForkOrigin(sourceID: bp.run, sourceProject: meta["project"]?.stringValue, step: Int64(bp.value), timestamp: micros(run.startTime))))
        }
        if !run.config.isEmpty { try w.append(.config(ConfigChange(replace: true, values: run.config))) }
        if !run.tags.isEmpty { try w.append(.tags(run.tags)) }
        for row in run.history {
            var values = row.values
            let t = values.removeValue(forKey: "_timestamp")?.doubleValue.map { Int64($0 * 1e6) } ?? micros(run.startTime)
            values["_runtime"] = nil
            values["_step"] = nil
            try w.appendRow(step: row.step, timestamp: t, values: values)
        }
        for line in run.console {
            try w.append(.console(ConsoleLine(stream: line.stream == .stderr ? .stderr : .stdout, timestamp: micros(line.time), text: line.text)))
        }
        for s in run.systemMetrics { try w.append(.systemMetrics(SystemSample(timestamp: micros(s.time), values: s.values))) }
        var summary = run.summary
        for k in summary.keys where k.hasPrefix("_") { summary[k] = nil }
        if !summary.isEmpty { try w.append(.summary(SummaryChange(replace: true, values: summary))) }
        if let exit = run.exit {
            try w.append(.exit(ExitRecord(state: exit.exitCode == 0 ? "finished" : "failed", exitCode: Int64(exit.exitCode),
                                          runtime: Double(exit.runtime), timestamp: micros(run.history.last.flatMap { _ in run.startTime }))))
        }
        try w.close()
        return Result(directory: directory, rows: run.history.count, droppedBytes: Int(run.tornTail?.byteCount ?? 0))
    }

    /// Whether `path` is a wandb offline run directory or `.wandb` file.
    public static func isWandb(_ path: String) -> Bool {
        if path.hasSuffix(".wandb") { return true }
        let name = (path as NSString).lastPathComponent
        return (name.hasPrefix("offline-run-") || name.hasPrefix("run-"))
            && ((try? FileManager.default.contentsOfDirectory(atPath: path))?.contains { $0.hasSuffix(".wandb") } ?? false)
    }
}
