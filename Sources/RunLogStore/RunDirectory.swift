import Foundation
import Logging

/// Operations on a whole run directory: fork, compaction, and the paths inside it.
///
/// A run directory holds `run.rlog` (the log), `run.lock` (the writer's lock), `run.idx`
/// (a rebuildable index) and `files/` (files saved with the run).
public enum RunDirectory {
    public static func logPath(_ directory: String) -> String { directory + "/" + LogFormat.logFileName }

    /// Opens a run directory's log for reading.
    public static func reader(_ directory: String, options: LogReader.Options = .init()) throws(StoreError) -> LogReader {
        let path = logPath(directory)
        guard FileSystem.exists(path) else {
            if FileSystem.exists(directory) {
                throw StoreError(.notFound, "no \(LogFormat.logFileName) in this directory: it is not a RunLog run", path: directory)
            }
            throw StoreError(.notFound, "no such run directory", path: directory)
        }
        return try LogReader(path: path, options: options)
    }

    /// Whether a writer (in this or another process) holds the run open.
    public static func isLocked(_ directory: String) -> Bool {
        guard FileSystem.exists(directory + "/" + LogFormat.lockFileName) else { return false }
        guard let lock = try? LogWriter.acquireLock(directory: directory) else { return true }
        lock.close()
        return false
    }

    /// Whether a live process on this host holds the run open for writing, judged from the
    /// lock file's contents without touching the lock (so it never gets in a writer's way).
    public static func hasLiveWriter(_ directory: String) -> Bool {
        guard let data = FileManager.default.contents(atPath: directory + "/" + LogFormat.lockFileName),
              let text = String(data: data, encoding: .utf8) else { return false }
        let words = text.split(separator: " ")
        guard words.count >= 4, words[0] == "pid", let pid = Int32(words[1]) else { return false }
        if words[3] != ProcessInfo.processInfo.hostName { return true }  // another host: assume live
        return kill(pid, 0) == 0 || errno == EPERM
    }

    /// What a fork produced.
    public struct ForkResult: Sendable {
        public var directory: String
        /// Bytes copied from the source as they were stored.
        public var bytesCopied: UInt64
        /// Frames copied as bytes, without decoding.
        public var framesCopied: Int
        /// The last source row the fork holds.
        public var lastStep: Int64
    }

    /// Forks the run in `source` at `step` into a new run directory `destination`.
    ///
    /// The new log holds the source's live history up to and including `step`: whole frames
    /// before the fork point are copied as bytes (in the kernel where it can), the frame the
    /// fork point falls in is re-encoded up to it, and a last frame records the lineage
    /// (``ForkOrigin``), the new run's `metadata`, and the source's current config and
    /// summary. The source is only read. The destination appears atomically (built under a
    /// temporary name, then renamed).
    /// - Throws: `.invalidArgument` when no live row has a step `<= step`, `.alreadyExists`
    ///   when `destination` exists, or an I/O error.
    @discardableResult
    public static func fork(source: String, atStep step: Int64, to destination: String, metadata: RunMetadata,
                            logger: Logger = Logger(label: "runlog.store")) throws(StoreError) -> ForkResult {
        guard !FileSystem.exists(destination) else {
            throw StoreError(.alreadyExists, "the fork's destination already exists", path: destination)
        }
        let reader = try self.reader(source)
        defer { reader.close() }
        let map = try reader.archiveMap()
        guard let last = try reader.lastLive(atOrBefore: step, map: map, live: try reader.liveFrames(map)) else {
            throw StoreError(.invalidArgument, "the source has no history row at or before step \(step)", path: source)
        }
        let state = try reader.state()
        guard let cutFrameIndex = reader.frames.firstIndex(where: { $0.header.sequence == last.position.sequence }) else {
            throw StoreError(.corrupted, "frame \(last.position.sequence) vanished", path: source)
        }
        let cutFrame = reader.frames[cutFrameIndex]

        let tmpDir = destination + ".forking-\(getpid())"
        try FileSystem.makeDirectory(tmpDir)
        var done = false
        defer { if !done { try? FileManager.default.removeItem(atPath: tmpDir) } }
        let out = try FileHandleFD(path: logPath(tmpDir), flags: O_RDWR | O_CREAT | O_TRUNC)
        defer { out.close() }
        let header = FileHeader(created: FileSystem.nowMicros()).encode()
        try out.write(header, at: 0)
        var end = UInt64(header.count)

        // 1. Whole frames before the fork point, as bytes.
        let copyStart = UInt64(LogFormat.fileHeaderSize)
        let copyLength = cutFrame.offset - copyStart
        if copyLength > 0 {
            let src = try FileHandleFD(path: logPath(source), flags: O_RDONLY)
            defer { src.close() }
            try FileSystem.copyRange(from: src, at: copyStart, to: out, at: end, count: copyLength)
            end += copyLength
        }
        // 2. The frame the fork point is in, up to and including that row, same sequence.
        let zstd = ZstdContext()
        var partial = FrameBuilder()
        for r in try reader.records(in: cutFrame).prefix(Int(last.position.index) + 1) { partial.append(r) }
        let encoded = try partial.encodeFrame(sequence: cutFrame.header.sequence, zstd: zstd, level: 3)
        try out.write(encoded.bytes, at: end)
        end += UInt64(encoded.bytes.count)
        // 3. Lineage, identity, config and summary as of the source.
        let now = FileSystem.nowMicros()
        var lineage = FrameBuilder()
        lineage.append(.forkOrigin(ForkOrigin(sourceID: state.metadata["id"]?.stringValue ?? "",
                                              sourceProject: state.metadata["project"]?.stringValue, step: step, timestamp: now)))
        lineage.append(.runMetadata(metadata))
        lineage.append(.config(ConfigChange(replace: true, values: state.config)))
        lineage.append(.summary(SummaryChange(replace: true, values: state.summary)))
        let lineageFrame = try lineage.encodeFrame(sequence: cutFrame.header.sequence + 1, zstd: zstd, level: 3)
        try out.write(lineageFrame.bytes, at: end)
        try out.sync()
        try FileSystem.rename(tmpDir, destination)
        FileSystem.syncDirectory(FileSystem.parent(of: destination))
        done = true
        return ForkResult(directory: destination, bytesCopied: copyLength, framesCopied: cutFrameIndex, lastStep: last.row.step)
    }
}
