import Foundation
import Logging

final class LogWriterCore: @unchecked Sendable {
    typealias Configuration = LogWriter.Configuration
    typealias Durability = LogWriter.Durability

    public let directory: String
    public let logPath: String
    public let configuration: Configuration
    /// Bytes dropped from a torn tail when the log was opened.
    public let recoveredTornBytes: UInt64

    private let logger: Logger
    private let file: FileHandleFD
    private let lockFile: FileHandleFD
    private let cond = NSCondition()
    private let zstd = ZstdContext()

    // Guarded by `cond`.
    private var open: FrameBuilder
    private var sealed: [(sequence: UInt64, frame: FrameBuilder)] = []
    private var nextSequence: UInt64
    private var writtenSequence: UInt64
    private var syncedSequence: UInt64
    private var failure: StoreError?
    private var closing = false
    /// The flusher wrote and synced a batch after `closing` was set (every batch it writes
    /// then is synced), so `close()` need not sync again.
    private var syncedForClose = false
    private var flusherRunning = false
    private var lastSeal: UInt64
    private var frames: [FrameInfo]
    private var endOffset: UInt64
    private var latest: [String: Value] = [:]

    private init(directory: String, configuration: Configuration, logger: Logger, file: FileHandleFD, lockFile: FileHandleFD,
                 frames: [FrameInfo], end: UInt64, torn: UInt64) {
        self.directory = directory
        self.logPath = directory + "/" + LogFormat.logFileName
        self.configuration = configuration
        self.logger = logger
        self.file = file
        self.lockFile = lockFile
        self.frames = frames
        self.endOffset = end
        self.recoveredTornBytes = torn
        let last = frames.last?.header.sequence ?? 0
        nextSequence = last + 1
        writtenSequence = last
        syncedSequence = last
        open = FrameBuilder(rowCapacity: min(configuration.maxFrameRows, 16_384))
        lastSeal = FileSystem.monotonicNanos()
    }

    /// Opens (creating if needed) the run directory's log for appending.
    ///
    /// A torn tail is cut off and reported in ``recoveredTornBytes``; corruption in the
    /// middle is an error (see `runlog verify --salvage`).
    /// - Throws: `StoreError` `.locked` when another writer holds the run, `.corrupted`,
    ///   `.notARunLog`, `.unsupportedVersion`, or an I/O error.
    static func open(directory: String, configuration: Configuration = Configuration(),
                            logger: Logger = Logger(label: "runlog.store")) throws(StoreError) -> LogWriterCore {
        try FileSystem.makeDirectory(directory)
        let lock = try acquireLock(directory: directory)
        let logPath = directory + "/" + LogFormat.logFileName
        if !FileSystem.exists(logPath) {
            // Not synced for a writer that never syncs (`.none`: survives a kill, not a power
            // loss): a header lost to a power cut reads as a torn log, rewritten just below.
            try createEmptyLog(at: logPath, sync: configuration.durability != .none)
        }
        let reader = try LogReader(path: logPath, logger: logger)
        let file = try FileHandleFD(path: logPath, flags: O_RDWR)
        var end = reader.validEnd
        if end == 0 {
            // Torn while being created: write the header again.
            try file.truncate(to: 0)
            try file.write(FileHeader(created: FileSystem.nowMicros()).encode(), at: 0)
            end = UInt64(LogFormat.fileHeaderSize)
        } else if try file.size() > end {
            logger.warning("recovered a torn tail", metadata: ["path": "\(logPath)", "bytes": "\(reader.tornTailBytes)"])
            try file.truncate(to: end)
            try file.sync()
        }
        let writer = LogWriterCore(directory: directory, configuration: configuration, logger: logger, file: file, lockFile: lock,
                               frames: reader.frames, end: end, torn: reader.tornTailBytes)
        reader.close()
        writer.startFlusher()
        return writer
    }

    /// Writes a new log with only its header, atomically (temp file, fsync, rename).
    static func createEmptyLog(at path: String, sync: Bool = true) throws(StoreError) {
        let tmp = path + ".tmp"
        let f = try FileHandleFD(path: tmp, flags: O_WRONLY | O_CREAT | O_TRUNC)
        try f.write(FileHeader(created: FileSystem.nowMicros()).encode(), at: 0)
        if sync { try f.sync() }
        f.close()
        try FileSystem.rename(tmp, path)
        if sync { FileSystem.syncDirectory(FileSystem.parent(of: path)) }
    }

    /// Takes the run's writer lock or fails naming who holds it.
    static func acquireLock(directory: String) throws(StoreError) -> FileHandleFD {
        let path = directory + "/" + LogFormat.lockFileName
        let lock = try FileHandleFD(path: path, flags: O_RDWR | O_CREAT)
        guard try lock.tryLock() else {
            let holder = String(decoding: (try? lock.read(at: 0, count: 256)) ?? [], as: UTF8.self)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            throw StoreError(.locked, "another writer has this run open (\(holder.isEmpty ? "holder unknown" : holder)); only one process may write a run at a time", path: directory)
        }
        let info = "pid \(getpid()) on \(ProcessInfo.processInfo.hostName) since \(Date())\n"
        try lock.truncate(to: 0)
        try lock.write(Array(info.utf8), at: 0)
        return lock
    }

    // MARK: Appending

    /// Appends one record. History rows may also be appended with ``appendRow(step:timestamp:values:)``.
    /// - Throws: `.invalidValue` or `.valueTooLarge` for a value that cannot be stored (nothing is
    ///   appended then), `.closed` after `close()`, or the error that stopped the flusher.
    public func append(_ record: Record) throws(StoreError) {
        try record.validateForStorage()
        try withOpenFrame { $0.append(record) }
    }

    /// Appends a history row. `timestamp` is microseconds since the Unix epoch (default: now).
    public func appendRow(step: Int64, timestamp: Int64? = nil, values: [String: Value]) throws(StoreError) {
        for v in values.values { try v.validateForStorage() }
        let t = timestamp ?? FileSystem.nowMicros()
        try withOpenFrame { $0.appendRow(step: step, timestamp: t, values: values) }
    }

    /// Appends a row of doubles, without converting the dictionary first.
    public func appendRow(step: Int64, timestamp: Int64? = nil, doubles: [String: Double]) throws(StoreError) {
        let t = timestamp ?? FileSystem.nowMicros()
        try withOpenFrame { $0.appendRow(step: step, timestamp: t, doubles: doubles) }
    }

    /// Appends a row of doubles keyed by `keys`, without building a dictionary: the fast path
    /// for a fixed set of metrics.
    public func appendRow(step: Int64, timestamp: Int64? = nil, keys: [String], doubles: [Double], keysChecked: Bool = false) throws(StoreError) {
        precondition(keys.count == doubles.count, "one key per value")
        if !keysChecked, Self.hasDuplicate(keys) {
            throw StoreError(.invalidArgument, "a key appears twice in one row", path: logPath)
        }
        let t = timestamp ?? FileSystem.nowMicros()
        try doubles.withUnsafeBufferPointer { d in
            Result { () throws(StoreError) in try withOpenFrame { $0.appendRow(step: step, timestamp: t, keys: keys, doubles: d) } }
        }.get()
    }

    /// Pairwise for the usual handful of metrics (no hashing on the hot path; strings of
    /// different UTF-8 lengths, most pairs, are not compared), a set beyond.
    static func hasDuplicate(_ keys: [String]) -> Bool {
        if keys.count <= 16 {
            for i in keys.indices {
                let n = keys[i].utf8.count
                for j in (i + 1)..<keys.count where keys[j].utf8.count == n && keys[i] == keys[j] { return true }
            }
            return false
        }
        return Set(keys).count != keys.count
    }

    @inline(__always)
    private func withOpenFrame(_ body: (inout FrameBuilder) -> Void) throws(StoreError) {
        cond.lock()
        defer { cond.unlock() }
        if closing { throw StoreError(.closed, "the writer is closed", path: logPath) }
        body(&open)
        if open.rowCount >= configuration.maxFrameRows || open.approximateBytes >= configuration.maxFrameBytes {
            // Back-pressure only when the disk has fallen far behind.
            while sealed.count >= configuration.maxPendingFrames, failure == nil, !closing { cond.wait() }
            if let failure, sealed.count >= configuration.maxPendingFrames { throw failure }
            sealLocked()
        }
    }

    private func sealLocked() {
        guard !open.isEmpty else { return }
        open.mergeLastValues(into: &latest)
        sealed.append((nextSequence, open))
        nextSequence += 1
        open = FrameBuilder(rowCapacity: min(configuration.maxFrameRows, 16_384))
        lastSeal = FileSystem.monotonicNanos()
        cond.broadcast()
    }

    /// Seals the open frame and waits until everything appended so far is written (and, with
    /// `.everyFlush`, synced to the device).
    /// - Returns: the sequence number of the last frame now durable.
    /// - Throws: the write error (`.diskFull`, `.ioError`); the data stays queued and the next
    ///   `flush()` tries again.
    @discardableResult
    public func flush() throws(StoreError) -> UInt64 {
        cond.lock()
        defer { cond.unlock() }
        sealLocked()
        let target = nextSequence - 1
        if failure != nil {
            failure = nil  // retry
            cond.broadcast()
        }
        let needSync = configuration.durability == .everyFlush
        while (needSync ? syncedSequence : writtenSequence) < target {
            if let failure { throw failure }
            if !flusherRunning { throw StoreError(.closed, "the writer is closed", path: logPath) }
            cond.wait()
        }
        return target
    }

    /// Flushes, syncs to the device, writes the index, and releases the lock.
    public func close() throws(StoreError) {
        cond.lock()
        if closing && !flusherRunning { cond.unlock(); return }
        sealLocked()
        closing = true
        cond.broadcast()
        while flusherRunning { cond.wait() }
        let failure = self.failure
        let frames = self.frames
        let end = endOffset
        cond.unlock()
        if let failure { throw failure }
        // The flusher syncs after the last batch it writes while closing; one sync is enough.
        if !syncedForClose { try file.sync() }
        if frames.count >= LogIndex.minimumFrames { LogIndex.write(frames: frames, coveredLength: end, directory: directory) }
        file.close()
        try? lockFile.truncate(to: 0)  // no holder left to name
        lockFile.close()
    }


    /// Syncs everything written so far to the device, whatever the durability mode.
    public func syncNow() throws(StoreError) {
        try flush()
        try file.sync()
        cond.lock()
        syncedSequence = max(syncedSequence, writtenSequence)
        cond.unlock()
    }

    /// The last value of every metric appended through this writer, for summaries.
    public func latestValues() -> [String: Value] {
        cond.lock(); defer { cond.unlock() }
        var out = latest
        open.mergeLastValues(into: &out)
        return out
    }

    /// The sequence number of the last frame written.
    public var lastWrittenSequence: UInt64 {
        cond.lock(); defer { cond.unlock() }
        return writtenSequence
    }

    /// The frames written so far (including those found when the log was opened).
    public var writtenFrames: [FrameInfo] {
        cond.lock(); defer { cond.unlock() }
        return frames
    }

    // MARK: The flusher

    private func startFlusher() {
        flusherRunning = true
        let thread = Thread { [self] in flusherLoop() }
        thread.name = "runlog-flusher"
        thread.start()
    }

    private func flusherLoop() {
        let intervalNanos = UInt64(configuration.flushInterval.components.seconds) * 1_000_000_000
            + UInt64(configuration.flushInterval.components.attoseconds / 1_000_000_000)
        var syncIntervalNanos: UInt64?
        if case .interval(let d) = configuration.durability {
            syncIntervalNanos = UInt64(d.components.seconds) * 1_000_000_000 + UInt64(d.components.attoseconds / 1_000_000_000)
        }
        var lastSync = FileSystem.monotonicNanos()
        cond.lock()
        while true {
            let now = FileSystem.monotonicNanos()
            if !open.isEmpty, now &- lastSeal >= intervalNanos { sealLocked() }
            let unsynced = writtenSequence > syncedSequence
            if let s = syncIntervalNanos, unsynced, now &- lastSync >= s {
                cond.unlock()
                let result = Result { () throws(StoreError) in try file.sync() }
                lastSync = FileSystem.monotonicNanos()
                cond.lock()
                if case .failure(let e) = result { failure = e } else { syncedSequence = max(syncedSequence, writtenSequence) }
                cond.broadcast()
                continue
            }
            if !sealed.isEmpty && failure == nil {
                let batch = sealed
                cond.unlock()
                let (written, error) = writeBatch(batch)
                var needSync = configuration.durability == .everyFlush
                if closing { needSync = true }
                var syncError: StoreError?
                if needSync && written > 0 {
                    do throws(StoreError) { try file.sync() } catch { syncError = error }
                    lastSync = FileSystem.monotonicNanos()
                }
                cond.lock()
                sealed.removeFirst(written)
                if written > 0 {
                    writtenSequence = batch[written - 1].sequence
                    if needSync && syncError == nil {
                        syncedSequence = writtenSequence
                        if closing && written == batch.count && error == nil { syncedForClose = true }
                    }
                }
                if let e = error ?? syncError {
                    failure = e
                    logger.error("log write failed; data stays queued", metadata: ["path": "\(logPath)", "error": "\(e)"])
                }
                cond.broadcast()
                continue
            }
            if closing && (sealed.isEmpty || failure != nil) { break }
            // Sleep until the next seal or sync is due, or until woken.
            var wait = open.isEmpty ? UInt64(1_000_000_000) : intervalNanos &- min(intervalNanos, now &- lastSeal)
            if let s = syncIntervalNanos, unsynced { wait = min(wait, s &- min(s, now &- lastSync)) }
            if failure != nil { wait = 1_000_000_000 }
            _ = cond.wait(until: Date(timeIntervalSinceNow: Double(max(wait, 1_000_000)) / 1e9))
        }
        flusherRunning = false
        cond.broadcast()
        cond.unlock()
    }

    /// Encodes and writes frames in order. Stops at the first failure, truncating what that
    /// frame left behind so the log never holds a partial frame followed by more data.
    private func writeBatch(_ batch: [(sequence: UInt64, frame: FrameBuilder)]) -> (written: Int, error: StoreError?) {
        var written = 0
        for (sequence, builder) in batch {
            do throws(StoreError) {
                let (header, bytes) = try builder.encodeFrame(sequence: sequence, zstd: zstd, level: configuration.compressionLevel)
                let offset = endOffset
                do throws(StoreError) {
                    try file.write(bytes, at: offset)
                } catch {
                    try? file.truncate(to: offset)
                    throw error
                }
                cond.lock()
                endOffset = offset + UInt64(bytes.count)
                frames.append(FrameInfo(offset: offset, header: header))
                cond.unlock()
                written += 1
            } catch {
                return (written, error)
            }
        }
        return (written, nil)
    }
}

/// The one writer of a run's log.
///
/// Appends are synchronous and never touch the disk: they go into the open frame, behind a
/// lock. A background flusher seals frames (when they reach ``Configuration/maxFrameRows``
/// rows or ``Configuration/maxFrameBytes`` bytes, every ``Configuration/flushInterval``, and
/// on ``flush()``), compresses and checksums them, and writes them at the end of the log.
///
/// Exactly one writer may have a run open: ``open(directory:configuration:logger:)`` takes an
/// exclusive `flock` on the run's lock file, which the OS drops when the process dies, so a
/// crashed writer never blocks the next one. A second writer gets `.locked`, naming the holder.
///
/// ```swift
/// let writer = try LogWriter.open(directory: "runs/abc")
/// try writer.append(.config(ConfigChange(values: ["lr": 3e-4])))
/// for step in 0..<1000 { try writer.appendRow(step: Int64(step), values: ["loss": .double(1 / Double(step + 1))]) }
/// try writer.flush()   // returns when the rows are durable under the chosen mode
/// try writer.close()
/// ```
public final class LogWriter: @unchecked Sendable {
    /// How hard `flush()` works to make data survive.
    public enum Durability: Sendable, Hashable {
        /// Written to the OS: survives the process being killed, not a power loss.
        case none
        /// As `.none`, plus an `fdatasync` at most this often in the background.
        case interval(Duration)
        /// `fdatasync` before every `flush()` returns: survives a power loss.
        case everyFlush
    }

    /// Writer settings, with documented defaults.
    public struct Configuration: Sendable {
        /// Default `.interval(.seconds(1))`.
        public var durability: Durability = .interval(.seconds(1))
        /// The open frame is sealed and written at least this often. Default 250 ms: a
        /// killed process loses at most this much of what it never flushed.
        public var flushInterval: Duration = .milliseconds(250)
        /// Seal a frame once it holds this many history rows. Default 8,192: about 700 KB of
        /// staged columns for workload W, and the unit a seek or rewind decodes.
        public var maxFrameRows = 8_192
        /// Seal a frame once its records take about this many bytes. Default 4 MiB.
        public var maxFrameBytes = 4 << 20
        /// zstd level for live frames. Default 1.
        public var compressionLevel: Int32 = 1
        /// Sealed frames waiting to be written before appends wait for the disk. Default 8
        /// (about 6 MB for workload W): each pending frame is held whole in memory until the
        /// flusher has written it, and 8 cover the flusher's periodic `fdatasync` (tens of ms
        /// on a slow disk) at a million rows a second, so `log` does not wait for it.
        public var maxPendingFrames = 8
        public init() {}
    }

    let core: LogWriterCore

    private init(core: LogWriterCore) { self.core = core }

    /// Opens (creating if needed) the run directory's log for appending.
    ///
    /// A torn tail is cut off and reported in ``recoveredTornBytes``; corruption in the
    /// middle is an error (see `runlog verify --salvage`).
    /// - Throws: `StoreError` `.locked` when another writer holds the run, `.corrupted`,
    ///   `.notARunLog`, `.unsupportedVersion`, or an I/O error.
    public static func open(directory: String, configuration: Configuration = Configuration(),
                            logger: Logger = Logger(label: "runlog.store")) throws(StoreError) -> LogWriter {
        LogWriter(core: try LogWriterCore.open(directory: directory, configuration: configuration, logger: logger))
    }

    /// A writer dropped without `close()` still writes what it holds and releases the lock.
    deinit { try? core.close() }

    public var directory: String { core.directory }
    public var logPath: String { core.logPath }
    public var configuration: Configuration { core.configuration }
    /// Bytes dropped from a torn tail when the log was opened.
    public var recoveredTornBytes: UInt64 { core.recoveredTornBytes }

    /// Appends one record. History rows may also be appended with ``appendRow(step:timestamp:values:)``.
    /// - Throws: `.invalidValue` or `.valueTooLarge` for a value that cannot be stored (nothing is
    ///   appended then), `.closed` after `close()`, or the error that stopped the flusher.
    public func append(_ record: Record) throws(StoreError) { try core.append(record) }

    /// Appends a history row. `timestamp` is microseconds since the Unix epoch (default: now).
    public func appendRow(step: Int64, timestamp: Int64? = nil, values: [String: Value]) throws(StoreError) {
        try core.appendRow(step: step, timestamp: timestamp, values: values)
    }

    /// Appends a row of doubles, without converting the dictionary first.
    public func appendRow(step: Int64, timestamp: Int64? = nil, doubles: [String: Double]) throws(StoreError) {
        try core.appendRow(step: step, timestamp: timestamp, doubles: doubles)
    }

    /// Appends a row of doubles keyed by `keys`, without building a dictionary: the fast path
    /// for a fixed set of metrics. A key given twice is `.invalidArgument`.
    public func appendRow(step: Int64, timestamp: Int64? = nil, keys: [String], doubles: [Double]) throws(StoreError) {
        try core.appendRow(step: step, timestamp: timestamp, keys: keys, doubles: doubles)
    }

    /// ``appendRow(step:timestamp:keys:doubles:)`` for keys the caller has already found
    /// distinct with ``hasDuplicate(_:)`` (the wandb import checks them to pick its path).
    package func appendRow(step: Int64, timestamp: Int64, distinctKeys keys: [String], doubles: [Double]) throws(StoreError) {
        try core.appendRow(step: step, timestamp: timestamp, keys: keys, doubles: doubles, keysChecked: true)
    }

    /// Seals the open frame and waits until everything appended so far is written (and, with
    /// `.everyFlush`, synced to the device).
    /// - Returns: the sequence number of the last frame now durable.
    /// - Throws: the write error (`.diskFull`, `.ioError`); the data stays queued and the next
    ///   `flush()` tries again.
    @discardableResult
    public func flush() throws(StoreError) -> UInt64 { try core.flush() }

    /// Flushes, syncs to the device, writes the index, and releases the lock.
    public func close() throws(StoreError) { try core.close() }

    /// Syncs everything written so far to the device, whatever the durability mode.
    public func syncNow() throws(StoreError) { try core.syncNow() }

    /// The last value of every metric appended through this writer, for summaries.
    public func latestValues() -> [String: Value] { core.latestValues() }

    /// The sequence number of the last frame written.
    public var lastWrittenSequence: UInt64 { core.lastWrittenSequence }

    /// The frames written so far (including those found when the log was opened).
    public var writtenFrames: [FrameInfo] { core.writtenFrames }

    static func acquireLock(directory: String) throws(StoreError) -> FileHandleFD { try LogWriterCore.acquireLock(directory: directory) }
    static func createEmptyLog(at path: String) throws(StoreError) { try LogWriterCore.createEmptyLog(at: path) }
    /// Whether a key appears twice in `keys` (which ``appendRow(step:timestamp:keys:doubles:)`` rejects).
    public static func hasDuplicate(_ keys: [String]) -> Bool { LogWriterCore.hasDuplicate(keys) }
}

extension Record {
    /// Checks that the record can be encoded, so a bad value fails at `append`, not later in
    /// the flusher.
    public func validateForStorage() throws(StoreError) {
        switch self {
        case .history(let row): for v in row.values.values { try v.validateForStorage() }
        case .unknown(let kind, _):
            guard LogFormat.RecordKind(rawValue: kind) == nil else {
                throw StoreError(.invalidArgument, "an unknown record cannot use the kind byte \(kind) of a known kind")
            }
        default:
            var w = ByteWriter()
            try w.object(bodyObject())
            guard w.bytes.count <= LogFormat.maxRawPayload / 2 else {
                throw StoreError(.valueTooLarge, "a record of \(w.bytes.count) bytes exceeds the limit of \(LogFormat.maxRawPayload / 2) bytes")
            }
        }
    }
}

extension Value {
    /// Checks nesting depth and size of a value before it is queued.
    public func validateForStorage() throws(StoreError) {
        switch self {
        case .null, .bool, .int, .double: return
        case .string(let s):
            guard s.utf8.count <= LogFormat.maxRawPayload / 2 else {
                throw StoreError(.valueTooLarge, "a string of \(s.utf8.count) bytes exceeds the limit of \(LogFormat.maxRawPayload / 2) bytes")
            }
        case .array, .object:
            var w = ByteWriter()
            try w.value(self)
            guard w.bytes.count <= LogFormat.maxRawPayload / 2 else {
                throw StoreError(.valueTooLarge, "a value of \(w.bytes.count) bytes exceeds the limit of \(LogFormat.maxRawPayload / 2) bytes")
            }
        }
    }
}
