#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging

/// A frame found in a log: where it starts and its checked header.
public struct FrameInfo: Sendable, Hashable {
    public var offset: UInt64
    public var header: FrameHeader
    public var end: UInt64 { offset + UInt64(header.frameSize) }
}

/// A stretch of a log that salvage skipped.
public struct DamagedRange: Sendable, Hashable {
    public var offset: UInt64
    public var length: UInt64
    public var reason: String
}

/// Reads a RunLog log: frames, their records, and the run's logical contents.
///
/// Opening scans the frame headers (not the payloads, except the last frame's) and decides
/// where the log ends:
/// - a **torn tail** (the file ends inside a frame, or in zero bytes after the last frame,
///   as a killed writer leaves it) is dropped silently and reported in ``tornTailBytes``;
/// - **corruption in the middle** (a checksum that fails where more data follows) throws a
///   ``StoreError`` with code `.corrupted` and the byte offset, unless the reader was opened
///   with `salvage: true`, which skips each damaged stretch to the next whole frame and
///   reports it in ``damaged``.
///
/// Every payload is checked against its CRC32C again when read, so a reader never decodes
/// damaged bytes into values.
///
/// ```swift
/// let reader = try LogReader(path: "runs/abc/run.rlog")
/// for row in try reader.contents().history { print(row.step, row.values["loss"] ?? .null) }
/// ```
public final class LogReader: @unchecked Sendable {
    public struct Options: Sendable {
        /// Skip damaged frames instead of failing; each one is reported in `damaged`.
        public var salvage = false
        /// Check every payload's checksum while opening (otherwise only when read).
        public var verifyPayloads = false
        public init(salvage: Bool = false, verifyPayloads: Bool = false) {
            self.salvage = salvage
            self.verifyPayloads = verifyPayloads
        }
    }

    public let path: String
    public let options: Options
    public private(set) var frames: [FrameInfo] = []
    /// Bytes after the last whole frame, dropped as a torn tail.
    public private(set) var tornTailBytes: UInt64 = 0
    /// Stretches skipped in salvage mode.
    public private(set) var damaged: [DamagedRange] = []
    /// Unknown record kinds met while decoding, with their count.
    public private(set) var unknownKinds: [UInt8: Int] = [:]
    /// The end of the last whole frame.
    public private(set) var validEnd: UInt64
    /// Microseconds since the epoch at which the log was created (0 for a log torn at creation).
    public private(set) var created: Int64 = 0

    private let file: FileHandleFD
    private let zstd = ZstdContext()
    private let logger: Logger

    public init(path: String, options: Options = Options(), logger: Logger = Logger(label: "runlog.store")) throws(StoreError) {
        self.path = path
        self.options = options
        self.logger = logger
        if FileSystem.isDirectory(path) {
            throw StoreError(.invalidArgument, "this is a directory: pass the run directory to RunDirectory, or the log file \(LogFormat.logFileName)", path: path)
        }
        file = try FileHandleFD(path: path, flags: O_RDONLY)
        let head = try file.read(at: 0, count: LogFormat.fileHeaderSize)
        if let h = try FileHeader.parse(head, path: path) {
            created = h.created
            validEnd = UInt64(LogFormat.fileHeaderSize)
            if !options.salvage, !options.verifyPayloads,
               let cached = LogIndex.load(directory: FileSystem.parent(of: path), log: file, logSize: try file.size()) {
                frames = cached.frames
                validEnd = cached.coveredLength
                // Rule 3 holds with the index too: a last frame's payload is checked at open.
                if let last = frames.last, last.end == (try file.size()) {
                    let stored = try file.read(at: last.offset + UInt64(LogFormat.frameHeaderSize), count: Int(last.header.storedLength))
                    guard CRC32C.checksum(stored) == last.header.payloadCRC else {
                        throw StoreError(.corrupted, "payload checksum mismatch in frame \(last.header.sequence); run `runlog verify --salvage` to recover the frames around it", path: path, offset: last.offset)
                    }
                }
            }
            try scan()
        } else {
            validEnd = 0
            tornTailBytes = UInt64(head.count)
        }
    }

    /// Scans frames appended since the last scan (for following a log another process writes).
    /// - Returns: the new frames.
    @discardableResult
    public func refresh() throws(StoreError) -> ArraySlice<FrameInfo> {
        let before = frames.count
        if validEnd == 0 {
            let head = try file.read(at: 0, count: LogFormat.fileHeaderSize)
            guard let h = try FileHeader.parse(head, path: path) else {
                tornTailBytes = UInt64(head.count)
                return []
            }
            created = h.created
            validEnd = UInt64(LogFormat.fileHeaderSize)
        }
        try scan()
        return frames[before...]
    }

    private func scan() throws(StoreError) {
        let size = try file.size()
        var pos = validEnd
        tornTailBytes = 0
        while pos < size {
            let headerBytes = try file.read(at: pos, count: LogFormat.frameHeaderSize)
            if headerBytes.count < LogFormat.frameHeaderSize {
                tornTailBytes = size - pos
                break
            }
            switch FrameHeader.parse(headerBytes) {
            case .success(let h):
                let end = pos + UInt64(h.frameSize)
                if end > size {
                    tornTailBytes = size - pos
                    validEnd = pos
                    return
                }
                let isLast = end == size
                if options.verifyPayloads || options.salvage || isLast {
                    let stored = try file.read(at: pos + UInt64(LogFormat.frameHeaderSize), count: Int(h.storedLength))
                    if CRC32C.checksum(stored) != h.payloadCRC {
                        if try resync(from: pos, size: size, reason: "payload checksum mismatch in frame \(h.sequence)") { pos = validEnd; continue }
                        return
                    }
                }
                if let last = frames.last, h.sequence <= last.header.sequence {
                    let reason = "frame sequence \(h.sequence) does not follow \(last.header.sequence)"
                    if try resync(from: pos, size: size, reason: reason) { pos = validEnd; continue }
                    return
                }
                frames.append(FrameInfo(offset: pos, header: h))
                pos = end
                validEnd = pos
            case .failure(let failure):
                if try isZero(from: pos, to: size) {
                    tornTailBytes = size - pos  // zero-filled tail left by a crash
                    return
                }
                if try resync(from: pos, size: size, reason: "bad frame header (\(failure))") { pos = validEnd; continue }
                return
            }
            pos = validEnd
        }
        if pos >= size { tornTailBytes = size > validEnd ? size - validEnd : 0 }
    }

    /// Whether every byte from `start` to `end` is zero, read 1 MiB at a time.
    private func isZero(from start: UInt64, to end: UInt64) throws(StoreError) -> Bool {
        var p = start
        while p < end {
            let chunk = try file.read(at: p, count: Int(min(end - p, 1 << 20)))
            guard !chunk.isEmpty, chunk.allSatisfy({ $0 == 0 }) else { return false }
            p += UInt64(chunk.count)
        }
        return true
    }

    /// Handles damage at `pos`: throws in strict mode; in salvage mode records the damage and
    /// moves `validEnd` to the next whole frame. Returns whether scanning should go on.
    private func resync(from pos: UInt64, size: UInt64, reason: String) throws(StoreError) -> Bool {
        guard options.salvage else {
            throw StoreError(.corrupted, "\(reason); run `runlog verify --salvage` to recover the frames around it", path: path, offset: pos)
        }
        var probe = pos + 1
        while probe + UInt64(LogFormat.frameHeaderSize) <= size {
            let window = try file.read(at: probe, count: Int(min(size - probe, 1 << 20)))
            var i = 0
            while i + 4 <= window.count {
                if window[i] == LogFormat.frameMagic[0], window[i + 1] == LogFormat.frameMagic[1],
                   window[i + 2] == LogFormat.frameMagic[2], window[i + 3] == LogFormat.frameMagic[3] {
                    let at = probe + UInt64(i)
                    if let h = try? FrameHeader.parse(try file.read(at: at, count: LogFormat.frameHeaderSize)).get(),
                       at + UInt64(h.frameSize) <= size,
                       CRC32C.checksum(try file.read(at: at + UInt64(LogFormat.frameHeaderSize), count: Int(h.storedLength))) == h.payloadCRC,
                       h.sequence > (frames.last?.header.sequence ?? 0) {
                        damaged.append(DamagedRange(offset: pos, length: at - pos, reason: reason))
                        logger.warning("salvage: skipped damaged bytes", metadata: ["path": "\(path)", "offset": "\(pos)", "length": "\(at - pos)", "reason": "\(reason)"])
                        validEnd = at
                        return true
                    }
                }
                i += 1
            }
            probe += UInt64(max(1, window.count - 3))
        }
        damaged.append(DamagedRange(offset: pos, length: size - pos, reason: reason))
        validEnd = pos
        return false
    }

    /// The frame's bytes exactly as stored (header and payload), checked again.
    public func storedFrame(_ frame: FrameInfo) throws(StoreError) -> [UInt8] {
        let bytes = try file.read(at: frame.offset, count: frame.header.frameSize)
        guard bytes.count == frame.header.frameSize, case .success(let h) = FrameHeader.parse(bytes), h == frame.header,
              bytes.withUnsafeBytes({ CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[LogFormat.frameHeaderSize...])) }) == h.payloadCRC
        else {
            throw StoreError(.corrupted, "frame \(frame.header.sequence) changed or failed its checksum when read", path: path, offset: frame.offset)
        }
        return bytes
    }

    /// The frame's records, in order.
    public func records(in frame: FrameInfo) throws(StoreError) -> [Record] {
        try decodePayload(of: frame) { (raw) throws(DecodeError) in
            let records = try FrameDecoder.records(raw) { noteUnknown($0, in: frame) }
            guard records.count == Int(frame.header.recordCount) else {
                throw DecodeError("header says \(frame.header.recordCount) records, payload holds \(records.count)")
            }
            return records
        }
    }

    /// `decode` of the frame's raw payload; a failure of either is `.corrupted` at the frame.
    private func decodePayload<T>(of frame: FrameInfo, _ decode: ([UInt8]) throws(DecodeError) -> T) throws(StoreError) -> T {
        let bytes = try storedFrame(frame)
        do {
            return try decode(try FrameDecoder.rawPayload(header: frame.header, stored: Array(bytes[LogFormat.frameHeaderSize...]), zstd: zstd))
        } catch {
            throw StoreError(.corrupted, "frame \(frame.header.sequence) is malformed: \(error)", path: path, offset: frame.offset)
        }
    }

    /// Counts and reports a record of a kind this version does not know (it is kept as `.unknown`).
    private func noteUnknown(_ kind: UInt8, in frame: FrameInfo) {
        unknownKinds[kind, default: 0] += 1
        logger.warning("skipping unknown record kind", metadata: ["kind": "\(kind)", "frame": "\(frame.header.sequence)"])
    }

    /// The frame's records other than history rows, with their indices in the frame.
    func stateRecords(in frame: FrameInfo) throws(StoreError) -> [(index: UInt32, record: Record)] {
        try decodePayload(of: frame) { (raw) throws(DecodeError) in
            try FrameDecoder.stateRecords(raw, recordCount: frame.header.recordCount) { noteUnknown($0, in: frame) }
        }
    }

    /// The frame's payload and the steps of its history blocks, without decoding a single
    /// value column (see ``FrameSteps``).
    func historySteps(in frame: FrameInfo) throws(StoreError) -> FrameSteps {
        try decodePayload(of: frame) { (raw) throws(DecodeError) in
            var blocks: [FrameSteps.Block] = []
            var index: UInt32 = 0
            try FrameDecoder.forEachRecord(raw) { (kind, body) throws(DecodeError) in
                guard kind == LogFormat.RecordKind.historyBlock.rawValue else {
                    index += 1
                    return
                }
                let range = body.offset..<body.end
                let branch = UInt32(truncatingIfNeeded: try body.uvarint())
                let n = try body.length()
                var steps = [Int64](repeating: 0, count: n)
                var step: Int64 = 0
                for i in 0..<n { step &+= try body.svarint(); steps[i] = step }
                blocks.append(FrameSteps.Block(branch: branch, steps: steps, firstIndex: index, body: range))
                index += UInt32(n)
            }
            guard index == frame.header.recordCount else {
                throw DecodeError("header says \(frame.header.recordCount) records, payload holds \(index)")
            }
            return FrameSteps(raw: raw, blocks: blocks)
        }
    }

    /// Every record of the log with its position, in order.
    public func allRecords() throws(StoreError) -> [(position: RecordPosition, record: Record)] {
        var out: [(RecordPosition, Record)] = []
        for f in frames {
            for (i, r) in try records(in: f).enumerated() {
                out.append((RecordPosition(sequence: f.header.sequence, index: UInt32(i)), r))
            }
        }
        return out
    }

    public func close() { file.close() }
}
