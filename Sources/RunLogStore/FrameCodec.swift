/// Frames as bytes in memory: splitting a buffer of stored frames (as a server receives
/// them), checking them, and decoding them either into records or column by column.
public enum FrameCodec {
    /// One frame exactly as stored: its checked header and its bytes (header and payload).
    public struct StoredFrame: Sendable, Hashable {
        public var header: FrameHeader
        public var bytes: [UInt8]
    }

    /// A decoded piece of a frame's payload, in order.
    public enum Item: Sendable {
        /// A record that is not a history row, and its index among the frame's records.
        case record(Record, index: UInt32)
        /// A block of history rows; its rows have the indices `firstIndex..<firstIndex+rowCount`.
        case block(HistoryBlock, firstIndex: UInt32)
    }

    /// History rows column by column, as stored: no per-row dictionaries.
    public struct HistoryBlock: Sendable {
        public var branch: UInt32
        public var steps: [Int64]
        public var timestamps: [Int64]
        public var columns: [HistoryColumn]
        public var rowCount: Int { steps.count }
    }

    public struct HistoryColumn: Sendable {
        public var key: String
        /// The rows (indices into the block) that have a value; nil when every row has one.
        public var rows: [Int32]?
        public var values: ColumnValues
    }

    public enum ColumnValues: Sendable {
        case doubles([Double])
        case ints([Int64])
        case values([Value])

        public var count: Int {
            switch self {
            case .doubles(let d): d.count
            case .ints(let i): i.count
            case .values(let v): v.count
            }
        }

        public subscript(i: Int) -> Value {
            switch self {
            case .doubles(let d): .double(d[i])
            case .ints(let v): .int(v[i])
            case .values(let v): v[i]
            }
        }
    }

    /// Splits a buffer holding whole stored frames one after another, checking each one's
    /// header and payload checksum.
    /// - Throws: `.corrupted` with the offset in `bytes` of the first bad or incomplete frame.
    public static func split(_ bytes: [UInt8]) throws(StoreError) -> [StoredFrame] {
        var out: [StoredFrame] = []
        var pos = 0
        while pos < bytes.count {
            guard bytes.count - pos >= LogFormat.frameHeaderSize else {
                throw StoreError(.corrupted, "truncated frame header", offset: UInt64(pos))
            }
            let header: FrameHeader
            switch FrameHeader.parse(bytes, at: pos) {
            case .success(let h): header = h
            case .failure(let f): throw StoreError(.corrupted, "bad frame header (\(f))", offset: UInt64(pos))
            }
            let end = pos + header.frameSize
            guard end <= bytes.count else { throw StoreError(.corrupted, "truncated frame payload", offset: UInt64(pos)) }
            let crc = bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[(pos + LogFormat.frameHeaderSize)..<end])) }
            guard crc == header.payloadCRC else {
                throw StoreError(.corrupted, "payload checksum mismatch in frame \(header.sequence)", offset: UInt64(pos))
            }
            out.append(StoredFrame(header: header, bytes: Array(bytes[pos..<end])))
            pos = end
        }
        return out
    }

    /// The frame's records, history rows as `Record.history`.
    public static func records(of frame: StoredFrame) throws(StoreError) -> [Record] {
        do {
            let raw = try FrameDecoder.rawPayload(header: frame.header, stored: Array(frame.bytes[LogFormat.frameHeaderSize...]), zstd: ZstdContext())
            return try FrameDecoder.records(raw)
        } catch {
            throw StoreError(.corrupted, "frame \(frame.header.sequence) is malformed: \(error)")
        }
    }

    /// The frame's payload as records and columnar history blocks.
    public static func items(of frame: StoredFrame) throws(StoreError) -> [Item] {
        do {
            let raw = try FrameDecoder.rawPayload(header: frame.header, stored: Array(frame.bytes[LogFormat.frameHeaderSize...]), zstd: ZstdContext())
            var out: [Item] = []
            var index: UInt32 = 0
            try FrameDecoder.forEachRecord(raw) { (kindByte, body) throws(DecodeError) in
                guard let kind = LogFormat.RecordKind(rawValue: kindByte) else {
                    out.append(.record(FrameDecoder.unknown(kindByte, body), index: index))
                    index += 1
                    return
                }
                if kind == .historyBlock {
                    let block = try decodeBlock(&body)
                    out.append(.block(block, firstIndex: index))
                    index += UInt32(block.rowCount)
                } else {
                    out.append(.record(try Record.fromBody(kind: kind, try body.object()), index: index))
                    index += 1
                }
                guard body.isAtEnd else { throw DecodeError("record of kind \(kind) has trailing bytes") }
            }
            guard index == frame.header.recordCount else { throw DecodeError("header says \(frame.header.recordCount) records, payload holds \(index)") }
            return out
        } catch {
            throw StoreError(.corrupted, "frame \(frame.header.sequence) is malformed: \(error)")
        }
    }

    static func decodeBlock(_ r: inout ByteReader) throws(DecodeError) -> HistoryBlock {
        let branch = UInt32(truncatingIfNeeded: try r.uvarint())
        let n = try r.length()
        var steps = [Int64](repeating: 0, count: n)
        var times = [Int64](repeating: 0, count: n)
        var acc: Int64 = 0
        for i in 0..<n { acc &+= try r.svarint(); steps[i] = acc }
        acc = 0
        for i in 0..<n { acc &+= try r.svarint(); times[i] = acc }
        let columnCount = try r.length()
        var columns: [HistoryColumn] = []
        columns.reserveCapacity(columnCount)
        for _ in 0..<columnCount {
            let key = try r.string()
            let presence = try r.u8()
            var rows: [Int32]?
            switch LogFormat.Presence(rawValue: presence) {
            case .everyRow: rows = nil
            case .bitmap:
                let bitmap = try r.take((n + 7) / 8)
                var present: [Int32] = []
                for row in 0..<n where bitmap[bitmap.startIndex + row >> 3] & (1 << UInt8(row & 7)) != 0 { present.append(Int32(row)) }
                rows = present
            case nil: throw DecodeError("unknown presence \(presence)")
            }
            let m = rows?.count ?? n
            let encoding = try r.u8()
            let length = try r.length()
            var c = ByteReader(r.bytes, offset: r.offset, end: r.offset + length)
            r.offset += length
            let values: ColumnValues
            switch LogFormat.ColumnEncoding(rawValue: encoding) {
            case .doubleXORShuffle, .doubleShuffle:
                guard length == m * 8 else { throw DecodeError("column \(key): \(length) bytes for \(m) doubles") }
                let bits = try HistoryBlockBuilder.unshuffleDoubles(&c, count: m, xor: encoding == LogFormat.ColumnEncoding.doubleXORShuffle.rawValue)
                values = .doubles(bits.map { Double(bitPattern: $0) })
            case .intDelta:
                var v = [Int64](repeating: 0, count: m)
                var p: Int64 = 0
                for i in 0..<m { p &+= try c.svarint(); v[i] = p }
                values = .ints(v)
            case .generic:
                var v: [Value] = []
                v.reserveCapacity(m)
                for _ in 0..<m { v.append(try c.value()) }
                values = .values(v)
            case nil: throw DecodeError("unknown column encoding \(encoding)")
            }
            guard c.isAtEnd else { throw DecodeError("column \(key) has trailing bytes") }
            columns.append(HistoryColumn(key: key, rows: rows, values: values))
        }
        return HistoryBlock(branch: branch, steps: steps, timestamps: times, columns: columns)
    }

    /// Encodes records into one stored frame (used by tools and tests that build frames in memory).
    public static func encode(_ records: [Record], sequence: UInt64, compressionLevel: Int32 = 1) throws(StoreError) -> StoredFrame {
        var b = FrameBuilder()
        for r in records {
            try r.validateForStorage()
            b.append(r)
        }
        let (h, bytes) = try b.encodeFrame(sequence: sequence, zstd: ZstdContext(), level: compressionLevel)
        return StoredFrame(header: h, bytes: bytes)
    }
}
