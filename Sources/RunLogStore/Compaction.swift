import Foundation
import Logging

/// Compaction: rewrites a run's log into fewer, larger, better-compressed frames without
/// changing its ``RunContents``.
///
/// - History rows go into blocks of up to ``Options/rowsPerFrame`` rows; for each double
///   column the smaller of two encodings is kept (XOR with the previous value, or the raw
///   bits, both split into byte planes), then the frame is compressed at
///   ``Options/compressionLevel``.
/// - Rows that rewinds archived are stored in blocks tagged with their branch number, and
///   the rewind markers are kept without cut positions.
/// - Config, summary, metadata and tags collapse to one record each with their final value.
/// - Console lines, system metrics, files, resumes and exits keep their order.
///
/// The new log is written beside the old one, checked against it (a digest of the contents
/// of both must match), synced, and renamed over it: a crash leaves the old log or the new
/// one. A log whose frames were all written by compaction is left alone, so compacting
/// twice is a no-op. Compaction takes the run's writer lock.
public enum Compaction {
    public struct Options: Sendable {
        /// Rows per history block. Default 65,536.
        public var rowsPerFrame = 65_536
        /// zstd level. Default 9.
        public var compressionLevel: Int32 = 9
        /// Re-read the new log and compare its contents digest before swapping it in. Default on.
        public var verify = true
        public init() {}
    }

    public struct Result: Sendable, Hashable {
        public var bytesBefore: UInt64
        public var bytesAfter: UInt64
        public var framesBefore: Int
        public var framesAfter: Int
        /// True when the log was already compact and nothing was written.
        public var skipped: Bool
    }

    @discardableResult
    public static func compact(directory: String, options: Options = Options(),
                               logger: Logger = Logger(label: "runlog.store")) throws(StoreError) -> Result {
        let lock = try LogWriter.acquireLock(directory: directory)
        defer { lock.close() }
        let path = RunDirectory.logPath(directory)
        let reader = try RunDirectory.reader(directory)
        defer { reader.close() }
        let sizeBefore = reader.validEnd
        if reader.frames.allSatisfy({ $0.header.flags.contains(.compacted) }), reader.tornTailBytes == 0 {
            return Result(bytesBefore: sizeBefore, bytesAfter: sizeBefore, framesBefore: reader.frames.count,
                          framesAfter: reader.frames.count, skipped: true)
        }
        let map = try reader.archiveMap()
        let tmp = path + ".compact.tmp"
        let out = try FileHandleFD(path: tmp, flags: O_RDWR | O_CREAT | O_TRUNC)
        var swapped = false
        defer {
            out.close()
            if !swapped { FileSystem.remove(tmp) }
        }
        var emitter = FrameEmitter(file: out, nextSequence: (reader.frames.last?.header.sequence ?? 0) + 1, options: options)
        try emitter.start()

        var digest = ContentsDigest(archive: map)
        var state = ContentsBuilder(archive: ArchiveMap())
        var live = emitter.newBuilder()
        var branches: [UInt32: FrameBuilder] = [:]
        for f in reader.frames {
            for (i, record) in try reader.records(in: f).enumerated() {
                let p = RecordPosition(sequence: f.header.sequence, index: UInt32(i))
                digest.apply(record, at: p)
                switch record {
                case .history(var row):
                    let b = row.branch != 0 ? row.branch : (map.branch(at: p) ?? 0)
                    if b == 0 {
                        live.append(record)
                        if live.rowCount >= options.rowsPerFrame { try emitter.emit(&live) }
                    } else {
                        row.branch = b
                        branches[b, default: emitter.newBuilder()].append(.history(row))
                        if branches[b]!.rowCount >= options.rowsPerFrame { try emitter.emit(&branches[b]!) }
                    }
                case .console, .systemMetrics, .file, .resume, .exit, .unknown:
                    live.append(record)
                    if live.approximateBytes >= 8 << 20 { try emitter.emit(&live) }
                default:
                    state.apply(record, at: p)
                }
            }
        }
        try emitter.emit(&live)
        for b in branches.keys.sorted() { try emitter.emit(&branches[b]!) }
        var tail = emitter.newBuilder()
        let c = state.contents
        if !c.metadata.isEmpty { tail.append(.runMetadata(RunMetadata(c.metadata))) }
        if !c.config.isEmpty { tail.append(.config(ConfigChange(replace: true, values: c.config))) }
        if !c.summary.isEmpty { tail.append(.summary(SummaryChange(replace: true, values: c.summary))) }
        if !c.tags.isEmpty { tail.append(.tags(c.tags)) }
        if let fork = c.forkOrigin { tail.append(.forkOrigin(fork)) }
        for r in c.rewinds { tail.append(.rewind(RewindMarker(step: r.step, branch: r.branch, cut: nil, timestamp: r.timestamp))) }
        try emitter.emit(&tail)
        try out.sync()

        if options.verify {
            let check = try LogReader(path: tmp)
            defer { check.close() }
            var after = ContentsDigest(archive: try check.archiveMap())
            for f in check.frames {
                for (i, r) in try check.records(in: f).enumerated() {
                    after.apply(r, at: RecordPosition(sequence: f.header.sequence, index: UInt32(i)))
                }
            }
            guard after.finish() == digest.finish() else {
                throw StoreError(.corrupted, "compaction check failed: the rewritten log's contents differ; the original is untouched", path: path)
            }
        }
        try FileSystem.rename(tmp, path)
        swapped = true
        FileSystem.syncDirectory(directory)
        LogIndex.write(frames: emitter.frames, coveredLength: emitter.end, directory: directory)
        logger.info("compacted", metadata: ["path": "\(path)", "before": "\(sizeBefore)", "after": "\(emitter.end)"])
        return Result(bytesBefore: sizeBefore, bytesAfter: emitter.end, framesBefore: reader.frames.count,
                      framesAfter: emitter.frames.count, skipped: false)
    }
}

/// Writes compacted frames one after another.
private struct FrameEmitter {
    let file: FileHandleFD
    var nextSequence: UInt64
    let options: Compaction.Options
    let zstd = ZstdContext()
    var end: UInt64 = 0
    var frames: [FrameInfo] = []

    init(file: FileHandleFD, nextSequence: UInt64, options: Compaction.Options) {
        self.file = file
        self.nextSequence = nextSequence
        self.options = options
    }

    mutating func start() throws(StoreError) {
        let h = FileHeader(created: FileSystem.nowMicros()).encode()
        try file.write(h, at: 0)
        end = UInt64(h.count)
    }

    func newBuilder() -> FrameBuilder {
        var b = FrameBuilder(rowCapacity: 0)
        b.compacted = true
        b.chooseEncodings = true
        return b
    }

    mutating func emit(_ builder: inout FrameBuilder) throws(StoreError) {
        guard !builder.isEmpty else { return }
        let (header, bytes) = try builder.encodeFrame(sequence: nextSequence, zstd: zstd, level: options.compressionLevel)
        try file.write(bytes, at: end)
        frames.append(FrameInfo(offset: end, header: header))
        end += UInt64(bytes.count)
        nextSequence += 1
        builder = newBuilder()
    }
}

/// A streaming digest of `RunContents`: equal contents give equal digests, without holding
/// the history in memory.
struct ContentsDigest {
    private var state: ContentsBuilder
    private let archive: ArchiveMap
    private var liveCRC: UInt32 = 0
    private var liveCount = 0
    private var eventCRC: UInt32 = 0
    private var branchCRC: [UInt32: (crc: UInt32, count: Int)] = [:]

    init(archive: ArchiveMap) {
        self.archive = archive
        state = ContentsBuilder(archive: ArchiveMap())
    }

    private static func encode(_ row: HistoryRow) -> [UInt8] {
        var w = ByteWriter()
        w.svarint(row.step)
        w.svarint(row.timestamp)
        try? w.object(row.values)
        return w.bytes
    }

    mutating func apply(_ record: Record, at p: RecordPosition) {
        switch record {
        case .history(let row):
            let b = row.branch != 0 ? row.branch : (archive.branch(at: p) ?? 0)
            let bytes = Self.encode(row)
            if b == 0 {
                liveCRC = CRC32C.checksum(bytes, extending: liveCRC)
                liveCount += 1
            } else {
                let old = branchCRC[b] ?? (0, 0)
                branchCRC[b] = (CRC32C.checksum(bytes, extending: old.crc), old.count + 1)
            }
        case .console, .systemMetrics, .file, .resume, .exit:
            var w = ByteWriter()
            w.u8(record.kind!.rawValue)
            try? w.object(record.bodyObject())
            eventCRC = CRC32C.checksum(w.bytes, extending: eventCRC)
        case .unknown(let kind, let body):
            eventCRC = CRC32C.checksum([kind] + body, extending: eventCRC)
        default:
            state.apply(record, at: p)
        }
    }

    func finish() -> [UInt64] {
        var w = ByteWriter()
        let c = state.contents
        try? w.object(c.metadata)
        try? w.object(c.config)
        try? w.object(c.summary)
        for t in c.tags { w.string(t) }
        if let f = c.forkOrigin { try? w.object(Record.forkOrigin(f).bodyObject()) }
        for r in c.rewinds { w.svarint(r.step); w.uvarint(UInt64(r.branch)); w.svarint(r.timestamp) }
        var out: [UInt64] = [UInt64(CRC32C.checksum(w.bytes)), UInt64(liveCRC), UInt64(liveCount), UInt64(eventCRC)]
        for b in branchCRC.keys.sorted() { out += [UInt64(b), UInt64(branchCRC[b]!.crc), UInt64(branchCRC[b]!.count)] }
        return out
    }
}
