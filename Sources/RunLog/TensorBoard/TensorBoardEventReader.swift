import CCRC32C
import Foundation

/// Reads `tensorflow.Event` records from one TensorBoard event file, incrementally.
///
/// The file is a sequence of TFRecords: `uint64 length | uint32 masked_crc32c(length) |
/// data[length] | uint32 masked_crc32c(data)`, little-endian, each `data` one Event protobuf.
/// The reader is a value: ``offset`` is where the next record starts, so a follower can keep
/// it (or just the offset) and call ``next()`` again after the file has grown. A record cut
/// short at the end of the file is not an error: ``next()`` returns `nil` and ``offset`` stays
/// at the start of that record, as TensorBoard does.
public struct TensorBoardEventReader: Sendable {
    /// The event file.
    public let url: URL
    /// Byte offset just past the last whole record read: where the next read starts.
    public private(set) var offset: Int
    /// Plugin name per tag, for values whose metadata was written only on a tag's first value.
    private var pluginByTag: [String: String] = [:]
    /// Bytes read ahead: `buffer[head...]` starts at `offset` (a cache, dropped at the end of the data).
    private var buffer: [UInt8] = []
    private var head = 0

    /// How many bytes one file read asks for, at least.
    static let readSize = 1 << 20
    /// Larger lengths are rejected as corrupt even with a valid checksum (protobuf's own limit).
    static let maxRecordLength: UInt64 = 1 << 31

    /// Creates a reader that starts at `offset`, which must be the start of a record
    /// (0, or an ``offset`` an earlier reader of the same file reached). A reader resumed from
    /// a bare offset does not know plugin names declared before it; keep the reader value instead.
    public init(url: URL, offset: Int = 0) {
        self.url = url
        self.offset = offset
    }

    /// Reads the next whole record.
    ///
    /// - Returns: the event, or `nil` when the file ends at or inside the next record.
    /// - Throws: ``TensorBoardError`` for a whole record whose checksums or protobuf are bad,
    ///   or when the file cannot be read; ``offset`` then stays at the start of that record.
    public mutating func next() throws(TensorBoardError) -> TensorBoardEvent? {
        guard try fill(12) else { return finish() }
        let length = littleEndian(buffer, at: head, count: 8)
        guard maskedCRC32C(buffer[head..<head + 8]) == UInt32(littleEndian(buffer, at: head + 8, count: 4)) else {
            throw fail(.lengthChecksumMismatch, "length field checksum mismatch")
        }
        guard length <= Self.maxRecordLength else { throw fail(.recordTooLarge, "record length \(length)") }
        let size = 12 + Int(length) + 4
        guard try fill(size) else { return finish() }
        let data = head + 12..<head + size - 4
        guard maskedCRC32C(buffer[data]) == UInt32(littleEndian(buffer, at: data.upperBound, count: 4)) else {
            throw fail(.dataChecksumMismatch, "payload checksum mismatch (\(length) bytes)")
        }
        let event: TensorBoardEvent
        do {
            event = try TensorBoardEventDecoder.decodeEvent(buffer, in: data, offset: offset, pluginByTag: &pluginByTag)
        } catch {
            throw fail(.malformedEvent, "payload is not a valid Event protobuf")
        }
        head += size
        offset += size
        return event
    }

    /// Reads every whole record available now.
    ///
    /// All or nothing: if a record is bad this throws and the reader is left unchanged,
    /// so nothing before the bad record is returned. Use ``next()`` to keep those events.
    public mutating func readAvailable() throws(TensorBoardError) -> [TensorBoardEvent] {
        var copy = self
        var events: [TensorBoardEvent] = []
        while let event = try copy.next() { events.append(event) }
        self = copy
        return events
    }

    /// Ensures the read-ahead holds at least `count` bytes from `offset`, reading the file
    /// as needed; `false` when the file ends first.
    private mutating func fill(_ count: Int) throws(TensorBoardError) -> Bool {
        guard buffer.count - head < count else { return true }
        buffer.removeFirst(head)
        head = 0
        let start = offset + buffer.count
        do {
            let handle = try FileHandle(forReadingFrom: url)
            defer { try? handle.close() }
            try handle.seek(toOffset: UInt64(start))
            while buffer.count < count {
                guard let chunk = try handle.read(upToCount: max(count - buffer.count, Self.readSize)),
                      !chunk.isEmpty else { break }
                buffer.append(contentsOf: chunk)
            }
        } catch {
            buffer = []
            throw TensorBoardError(.unreadable, offset: start, path: url.path, message: "\(error)")
        }
        return buffer.count >= count
    }

    /// The end of the data for now: drop the read-ahead so a later call rereads the file.
    private mutating func finish() -> TensorBoardEvent? {
        buffer = []
        head = 0
        return nil
    }

    /// The error for the record at `offset`; drops the read-ahead so a retry rereads the file
    /// (a record being rewritten in place, e.g. through mmap, may be whole on the next try).
    private mutating func fail(_ code: TensorBoardError.Code, _ message: String) -> TensorBoardError {
        buffer = []
        head = 0
        return TensorBoardError(code, offset: offset, path: url.path, message: message)
    }
}

/// The TFRecord checksum: CRC32C, rotated right by 15 bits, plus a constant.
func maskedCRC32C(_ bytes: ArraySlice<UInt8>) -> UInt32 {
    let crc = bytes.withUnsafeBytes { runlog_crc32c_extend(0, $0.baseAddress, $0.count) }
    return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
}

/// The unsigned little-endian integer in `count` bytes of `bytes` at `index`.
private func littleEndian(_ bytes: [UInt8], at index: Int, count: Int) -> UInt64 {
    (0..<count).reduce(0) { $0 | UInt64(bytes[index + $1]) << (8 * UInt64($1)) }
}
