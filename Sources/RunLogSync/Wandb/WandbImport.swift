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
        var taken = WandbSyncImport.Folded(file: "", size: 0, history: 0, console: 0, system: 0)
        var lastStep: Int64?
        try WandbSyncImport.append(run, to: w, from: &taken, lastStep: &lastStep, lineage: true)
        try w.close()
        return Result(directory: directory, rows: run.history.count, droppedBytes: Int(run.tornTail?.byteCount ?? 0))
    }

    /// Whether `path` is a wandb offline run directory or `.wandb` file.
    public static func isWandb(_ path: String) -> Bool { logFile(of: path) != nil }

    /// The `.wandb` file of a wandb offline run: `path` itself when it names one, else the
    /// first (by name) `.wandb` file in `path` when it is a run directory (`offline-run-*`,
    /// `run-*`); nil otherwise. At most one directory listing.
    public static func logFile(of path: String) -> String? {
        if path.hasSuffix(".wandb") { return path }
        let name = (path as NSString).lastPathComponent
        guard name.hasPrefix("offline-run-") || name.hasPrefix("run-"),
              let names = try? FileManager.default.contentsOfDirectory(atPath: path) else { return nil }
        return names.filter { $0.hasSuffix(".wandb") }.min().map { path + "/" + $0 }
    }
}
