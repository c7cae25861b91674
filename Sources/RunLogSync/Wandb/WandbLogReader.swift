import Foundation

/// Reads the records of a wandb `.wandb` transaction log (wandb-core store version 0, as
/// wandb 0.31.0 writes offline runs), incrementally.
///
/// The format: a 7-byte file header (`":W&B"`, uint16 LE 0xBEE1, version byte 0), then a
/// LevelDB-log-style stream cut into 32 KiB blocks at absolute file offsets. A chunk is
/// `crc32 uint32 LE | length uint16 LE | type uint8 | payload`, never crosses a block, and
/// its checksum is plain CRC-32/IEEE over the type byte and payload (not CRC32C, not masked).
/// A block tail under 7 bytes is padding; an all-zero chunk header means the rest of the
/// block is zeroed. A record is one FULL chunk, or FIRST, MIDDLE×n, LAST; each record is one
/// serialized `wandb_internal.Record`.
///
/// The end of the file is never an error: ``next()`` returns `nil` there, and when the file
/// ends short (a killed writer, a cut copy) it has returned every whole record and
/// ``tornTail`` says what was dropped. The reader is a value that keeps its place, so calling
/// ``next()`` again after the file has grown carries on (a live run's file can be followed).
/// Damage with data after it throws ``WandbFormatError`` with the offset of the bad chunk, or,
/// with ``Options/Corruption/skipToNextBlock``, is skipped as wandb's own reader does.
public struct WandbLogReader: Sendable {
    public struct Options: Sendable {
        /// What to do about a bad chunk (checksum, length, type, order) or an undecodable
        /// record that has data after it.
        public enum Corruption: Sendable {
            /// Throw ``WandbFormatError``.
            case `throw`
            /// Record the error in ``WandbLogReader/skipped``, drop the record it was part
            /// of, and go on at the next block's first FULL or FIRST chunk (wandb-core's
            /// recovery). An undecodable record is dropped alone.
            case skipToNextBlock
        }

        public var corruption: Corruption

        public init(corruption: Corruption = .throw) {
            self.corruption = corruption
        }
    }

    /// Block size: chunks never cross a multiple of it.
    public static let blockSize = 32_768
    /// Size of a chunk header, and of the file header.
    public static let headerSize = 7
    /// The file header of store version 0.
    public static let fileHeader: [UInt8] = [0x3A, 0x57, 0x26, 0x42, 0xE1, 0xBE, 0x00]

    /// Two blocks: records are checked and decoded while the bytes are still in the core's
    /// cache, and the buffer is small enough for the allocator to reuse (a 1 MiB read-ahead
    /// was mapped fresh for each file, and its page faults and cache misses cost more than
    /// the 8 extra reads of a 512 KiB file).
    static let readSize = 64 << 10
    /// Bytes read at a time (at least what a chunk needs).
    private let readSize: Int

    /// The `.wandb` file.
    public let url: URL
    public let options: Options
    /// What the reader has seen so far.
    public var statistics: WandbLogStatistics {
        var s = counts
        for (kind, c) in kindCounts.enumerated() where c.records > 0 {
            s.recordsByKind[WandbRecordKind(rawValue: kind), default: 0] += c.records
            s.recordBytesByKind[WandbRecordKind(rawValue: kind), default: 0] += c.bytes
        }
        return s
    }
    /// The counts, but those by kind for kinds under ``countedKinds`` (in ``kindCounts``: no hashing per record).
    private var counts = WandbLogStatistics()
    private var kindCounts = [(records: Int, bytes: Int64)](repeating: (0, 0), count: WandbLogReader.countedKinds)
    private static let countedKinds = 128
    /// How the file ended short, as of the last ``next()`` that returned `nil`; `nil` when the
    /// file ended cleanly (or the end has not been reached).
    public private(set) var tornTail: WandbTornTail?
    /// Damage passed over with ``Options/Corruption/skipToNextBlock``, in file order.
    public private(set) var skipped: [WandbFormatError] = []
    /// Where the next chunk starts (after the file header, chunks and padding read so far).
    public private(set) var offset: Int64 = Int64(WandbLogReader.headerSize)

    private var headerChecked = false
    /// Read-ahead: `buffer` holds the file's bytes from `bufferStart`.
    private var buffer: [UInt8] = []
    private var bufferStart: Int64 = 0
    /// The end of the file, when the last read reached it.
    private var knownEnd: Int64?
    /// The open record: payloads of its FIRST and MIDDLE chunks.
    private var pending: [UInt8] = []
    private var pendingStart: Int64?
    private var pendingChunks = 0
    /// After skipping damage: MIDDLE and LAST chunks are dropped until a FULL or FIRST.
    private var resyncing = false

    /// Opens a `.wandb` file, or the run directory holding one (`offline-run-…-<id>/` with
    /// `run-<id>.wandb`), and checks the file header.
    ///
    /// - Throws: ``WandbFormatError`` `.notFound`, `.ambiguousRunDirectory`, `.unreadable`,
    ///   `.notAWandbFile`, `.unsupportedVersion`. A file shorter than its header whose bytes
    ///   match it is not an error (it reads as empty, with a torn tail).
    public init(url: URL, options: Options = Options()) throws(WandbFormatError) {
        try self.init(url: url, options: options, readSize: Self.readSize)
    }

    /// `readSize`: bytes read at a time; small for a reader that stops after the first records.
    init(url: URL, options: Options = Options(), readSize: Int) throws(WandbFormatError) {
        self.url = try Self.locateLogFile(at: url)
        self.options = options
        self.readSize = readSize
        _ = try checkHeader()
    }

    /// The `.wandb` file for `url`: `url` itself when it is a file; for a directory, the
    /// `run-<id>.wandb` in it, `<id>` taken from a directory named `…-<id>`, or else its only
    /// `*.wandb` file. Sidecars (`.wandb.synced`, `.wandb.syncstate`) are not candidates.
    public static func locateLogFile(at url: URL) throws(WandbFormatError) -> URL {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw WandbFormatError(.notFound, path: url.path, message: "no such file or directory")
        }
        guard isDirectory.boolValue else { return url }
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: url.path)
        } catch {
            throw WandbFormatError(.unreadable, path: url.path, message: "cannot list the directory: \(error)")
        }
        let candidates = names.filter { $0.hasSuffix(".wandb") }.sorted()
        let directoryName = url.standardizedFileURL.lastPathComponent
        if let dash = directoryName.lastIndex(of: "-") {
            let id = directoryName[directoryName.index(after: dash)...]
            if !id.isEmpty, candidates.contains("run-\(id).wandb") {
                return url.appendingPathComponent("run-\(id).wandb")
            }
        }
        switch candidates.count {
        case 0: throw WandbFormatError(.notFound, path: url.path, message: "no run-<id>.wandb file in the directory")
        case 1: return url.appendingPathComponent(candidates[0])
        default:
            throw WandbFormatError(.ambiguousRunDirectory, path: url.path,
                                   message: "several .wandb files: \(candidates.joined(separator: ", "))")
        }
    }

    // MARK: Records

    /// The next whole record, decoded.
    ///
    /// - Returns: the record, or `nil` at the end of the file (see ``tornTail``).
    /// - Throws: ``WandbFormatError`` for damage that has data after it (with
    ///   ``Options/Corruption/throw``; the reader then stays at the bad chunk), or when the
    ///   file cannot be read.
    public mutating func next() throws(WandbFormatError) -> WandbRecord? {
        while let raw = try nextRaw() {
            if let record = try decode(raw) { return record }
        }
        return nil
    }

    /// Decodes a record from ``nextRaw()``; `nil` when it is damaged inside a nested message
    /// and the options skip damage (it is then in ``skipped``).
    /// - Throws: `.malformedRecord` for such damage under ``Options/Corruption/throw``.
    package mutating func decode(_ raw: WandbRawRecord) throws(WandbFormatError) -> WandbRecord? {
        do {
            return try WandbRecordDecoder.decode(raw)
        } catch {
            try malformed(raw, error)
            return nil
        }
    }

    /// Reports `raw` as damaged inside (`error`): throws `.malformedRecord`, or records it in
    /// ``skipped`` when the options skip damage.
    package mutating func malformed(_ raw: WandbRawRecord, _ error: ProtoReader.ProtoError) throws(WandbFormatError) {
        // `nextRaw` validated the top level; this is damage inside a nested message.
        let failure = WandbFormatError(.malformedRecord, offset: raw.offset, path: url.path, message: error.description)
        guard options.corruption == .skipToNextBlock else { throw failure }
        skipped.append(failure)
    }

    /// Every whole record from here to the end of the file.
    public mutating func readAll() throws(WandbFormatError) -> [WandbRecord] {
        var records: [WandbRecord] = []
        while let record = try next() { records.append(record) }
        return records
    }

    /// The next whole record, reassembled and checked but not decoded (its kind is found from
    /// its top-level fields, which validates them).
    public mutating func nextRaw() throws(WandbFormatError) -> WandbRawRecord? {
        while true {
            guard var raw = try nextPayload() else { return nil }
            do {
                raw.kind = try WandbRecordDecoder.kind(of: raw.bytes)
            } catch {
                let failure = WandbFormatError(.malformedRecord, offset: raw.offset, path: url.path, message: error.description)
                guard options.corruption == .skipToNextBlock else { throw failure }
                skipped.append(failure)
                continue
            }
            counts.records += 1
            if raw.kind.rawValue >= 0, raw.kind.rawValue < Self.countedKinds {
                kindCounts[raw.kind.rawValue].records += 1
                kindCounts[raw.kind.rawValue].bytes += Int64(raw.bytes.count)
            } else {
                counts.recordsByKind[raw.kind, default: 0] += 1
                counts.recordBytesByKind[raw.kind, default: 0] += Int64(raw.bytes.count)
            }
            return raw
        }
    }

    // MARK: Chunks

    private static let full: UInt8 = 1, first: UInt8 = 2, middle: UInt8 = 3, last: UInt8 = 4

    /// Reassembles the next record from chunks.
    private mutating func nextPayload() throws(WandbFormatError) -> WandbRawRecord? {
        guard try checkHeader() else { return nil }
        let h = Self.headerSize
        while true {
            let blockLeft = Self.blockSize - Int(offset % Int64(Self.blockSize))
            let available = try ensure(offset, h)
            if available < h { return try reachEnd(trailing: available) }
            if blockLeft < h {
                counts.paddingBytes += Int64(blockLeft)
                offset += Int64(blockLeft)
                continue
            }
            let at = Int(offset - bufferStart)
            let crc = UInt32(buffer[at]) | UInt32(buffer[at + 1]) << 8 | UInt32(buffer[at + 2]) << 16 | UInt32(buffer[at + 3]) << 24
            let length = Int(buffer[at + 4]) | Int(buffer[at + 5]) << 8
            let type = buffer[at + 6]
            if crc == 0, length == 0, type == 0 {
                // A zeroed block tail: wandb-core's reader skips to the next block.
                counts.paddingBytes += Int64(blockLeft)
                offset += Int64(blockLeft)
                continue
            }
            let chunkSize = h + length
            let chunkStart = offset
            if chunkSize > blockLeft {
                // A cut file never shows this (chunk headers are written whole): damage.
                if try damage(.invalidChunkLength, at: chunkStart, end: chunkStart + Int64(blockLeft),
                              "chunk of \(length) bytes runs past its block (\(blockLeft - h) bytes left)") { return nil }
                continue
            }
            if try ensure(offset, chunkSize) < chunkSize {
                // The file ends inside this chunk.
                let end = knownEnd ?? offset
                let start = pendingStart ?? offset
                counts.fileBytes = end
                counts.trailingBytes = end - offset
                tornTail = WandbTornTail(reason: .truncatedChunk, offset: start, byteCount: end - start)
                dropReadAhead()
                return nil
            }
            guard (Self.full...Self.last).contains(type) else {
                if try damage(.invalidChunkType, at: chunkStart, end: chunkStart + Int64(chunkSize), "chunk type \(type)") { return nil }
                continue
            }
            let base = Int(chunkStart - bufferStart)
            let computed = CRC32IEEE.checksum(buffer[base + 6..<base + chunkSize])
            guard computed == crc else {
                if try damage(.checksumMismatch, at: chunkStart, end: chunkStart + Int64(chunkSize),
                              "stored CRC-32 0x\(String(crc, radix: 16)), computed 0x\(String(computed, radix: 16)) over \(length) bytes") {
                    return nil
                }
                continue
            }
            let payload = buffer[base + h..<base + chunkSize]

            // Chunk order.
            if (type == Self.full || type == Self.first), let open = pendingStart {
                let failure = WandbFormatError(.unexpectedChunk, offset: open, path: url.path,
                                               message: "the record begun at byte \(open) has no LAST chunk before the \(type == Self.full ? "FULL" : "FIRST") chunk at byte \(chunkStart)")
                guard options.corruption == .skipToNextBlock else { throw failure }
                skipped.append(failure)
                counts.skippedBytes += Int64(pending.count)
                clearPending()
            }
            if (type == Self.middle || type == Self.last), pendingStart == nil {
                if !resyncing {
                    let failure = WandbFormatError(.unexpectedChunk, offset: chunkStart, path: url.path,
                                                   message: "\(type == Self.middle ? "MIDDLE" : "LAST") chunk with no FIRST chunk before it")
                    guard options.corruption == .skipToNextBlock else { throw failure }
                    skipped.append(failure)
                }
                count(type, length: length)
                counts.skippedBytes += Int64(chunkSize)
                offset += Int64(chunkSize)
                continue
            }
            resyncing = false
            count(type, length: length)
            offset += Int64(chunkSize)
            switch type {
            case Self.full:
                return WandbRawRecord(offset: chunkStart, end: offset, bytes: Array(payload), chunkCount: 1, kind: .none)
            case Self.first:
                pending = Array(payload)
                pendingStart = chunkStart
                pendingChunks = 1
            case Self.middle:
                pending.append(contentsOf: payload)
                pendingChunks += 1
            default:  // LAST
                pending.append(contentsOf: payload)
                let record = WandbRawRecord(offset: pendingStart!, end: offset, bytes: pending, chunkCount: pendingChunks + 1, kind: .none)
                clearPending()
                return record
            }
        }
    }

    private mutating func count(_ type: UInt8, length: Int) {
        switch type {
        case Self.full: counts.chunks.full += 1
        case Self.first: counts.chunks.first += 1
        case Self.middle: counts.chunks.middle += 1
        default: counts.chunks.last += 1
        }
        if length == 0 { counts.chunks.zeroLength += 1 }
    }

    private mutating func clearPending() {
        pending = []
        pendingStart = nil
        pendingChunks = 0
    }

    /// The data ends `trailing` (< 7) bytes after ``offset``.
    private mutating func reachEnd(trailing: Int) throws(WandbFormatError) -> WandbRawRecord? {
        let end = offset + Int64(trailing)
        counts.fileBytes = end
        counts.trailingBytes = Int64(trailing)
        if let start = pendingStart {
            tornTail = WandbTornTail(reason: trailing > 0 ? .truncatedChunk : .incompleteRecord, offset: start, byteCount: end - start)
        } else if trailing > 0, try !isZero(from: offset, to: end) {
            tornTail = WandbTornTail(reason: .truncatedChunk, offset: offset, byteCount: Int64(trailing))
        } else {
            tornTail = nil
        }
        dropReadAhead()
        return nil
    }

    /// A chunk at `start` (claiming to end at `end`) fails a check. Returns `true` when it is
    /// the file's torn tail (reported, end of data), `false` when skipped; otherwise throws.
    private mutating func damage(_ code: WandbFormatError.Code, at start: Int64, end: Int64, _ message: String) throws(WandbFormatError) -> Bool {
        let failure = WandbFormatError(code, offset: start, path: url.path, message: message)
        let fileEnd = try fileSize()
        if try isZero(from: min(end, fileEnd), to: fileEnd) {
            let dropFrom = pendingStart ?? start
            counts.fileBytes = fileEnd
            counts.trailingBytes = fileEnd - start
            tornTail = WandbTornTail(reason: .damagedTail, offset: dropFrom, byteCount: fileEnd - dropFrom, damage: failure)
            dropReadAhead()
            return true
        }
        guard options.corruption == .skipToNextBlock else {
            dropReadAhead()
            throw failure
        }
        skipped.append(failure)
        let nextBlock = (start / Int64(Self.blockSize) + 1) * Int64(Self.blockSize)
        counts.skippedBytes += nextBlock - start + Int64(pending.count)
        clearPending()
        resyncing = true
        offset = nextBlock
        return false
    }

    // MARK: File access

    /// Checks the file header once; `false` while the file is shorter than the header.
    private mutating func checkHeader() throws(WandbFormatError) -> Bool {
        if headerChecked { return true }
        let h = Self.headerSize
        let available = try ensure(0, h)
        let bytes = Array(buffer[Int(0 - bufferStart)..<Int(0 - bufferStart) + available])
        let magic = min(available, 6)
        guard bytes.prefix(magic).elementsEqual(Self.fileHeader.prefix(magic)) else {
            dropReadAhead()
            throw WandbFormatError(.notAWandbFile, offset: 0, path: url.path,
                                   message: "the file does not start with \":W&B\" and magic 0xBEE1")
        }
        if available == h, bytes[6] != 0 {
            dropReadAhead()
            throw WandbFormatError(.unsupportedVersion, offset: 6, path: url.path,
                                   message: "store version \(bytes[6]); only version 0 is known")
        }
        guard available == h else {
            counts.fileBytes = Int64(available)
            counts.trailingBytes = Int64(available)
            tornTail = WandbTornTail(reason: .truncatedFileHeader, offset: 0, byteCount: Int64(available))
            dropReadAhead()
            return false
        }
        headerChecked = true
        return true
    }

    /// Makes the read-ahead cover `count` bytes from `position` if the file has them; returns
    /// how many it has (at most `count`).
    private mutating func ensure(_ position: Int64, _ count: Int) throws(WandbFormatError) -> Int {
        if position >= bufferStart, position + Int64(count) <= bufferStart + Int64(buffer.count) { return count }
        bufferStart = position
        knownEnd = nil
        // Read straight into the buffer (no `Data` in between); the file is opened for each
        // read so that a file still being written is seen as it grows.
        let fd = open(url.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            buffer = []
            throw WandbFormatError(.unreadable, offset: position, path: url.path, message: String(cString: strerror(errno)))
        }
        defer { close(fd) }
        let want = max(count, readSize)
        var failure: Int32 = 0
        buffer = [UInt8](unsafeUninitializedCapacity: want) { p, n in
            n = 0
            while n < want {
                let got = pread(fd, p.baseAddress! + n, want - n, off_t(position) + off_t(n))
                if got < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    return
                }
                if got == 0 { break }
                n += got
            }
        }
        if failure != 0 {
            buffer = []
            throw WandbFormatError(.unreadable, offset: position, path: url.path, message: String(cString: strerror(failure)))
        }
        if buffer.count < want { knownEnd = position + Int64(buffer.count) }
        return min(count, buffer.count)
    }

    private func fileSize() throws(WandbFormatError) -> Int64 {
        guard let size = LocalFile.size(url.path) else {
            throw WandbFormatError(.unreadable, path: url.path, message: String(cString: strerror(errno)))
        }
        return size
    }

    /// Whether the file's bytes in `start..<end` are all zero.
    private mutating func isZero(from start: Int64, to end: Int64) throws(WandbFormatError) -> Bool {
        var position = start
        while position < end {
            let want = Int(min(end - position, Int64(readSize)))
            let got = try ensure(position, want)
            if got == 0 { return true }
            let at = Int(position - bufferStart)
            if buffer[at..<at + got].contains(where: { $0 != 0 }) { return false }
            position += Int64(got)
        }
        return true
    }

    /// Drops the read-ahead, so that the next call rereads the file (which may have grown).
    private mutating func dropReadAhead() {
        buffer = []
        bufferStart = 0
        knownEnd = nil
    }
}
