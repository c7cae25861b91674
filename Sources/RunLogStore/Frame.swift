/// A frame's fixed header, as stored before its payload (52 bytes, see `FORMAT.md`).
public struct FrameHeader: Sendable, Hashable {
    public var storedLength: UInt32
    public var rawLength: UInt32
    public var recordCount: UInt32
    public var sequence: UInt64
    public var firstStep: Int64
    public var lastStep: Int64
    public var codec: LogFormat.Codec
    public var flags: LogFormat.FrameFlags
    public var payloadCRC: UInt32

    /// The frame's total size on disk, header included.
    public var frameSize: Int { LogFormat.frameHeaderSize + Int(storedLength) }
    /// The steps of the frame's history rows, if it has any.
    public var stepRange: ClosedRange<Int64>? { flags.contains(.hasHistory) ? firstStep...lastStep : nil }

    func encode() -> [UInt8] {
        var w = ByteWriter(capacity: LogFormat.frameHeaderSize)
        w.append(LogFormat.frameMagic)
        w.u32(storedLength)
        w.u32(rawLength)
        w.u32(recordCount)
        w.u64(sequence)
        w.u64(UInt64(bitPattern: firstStep))
        w.u64(UInt64(bitPattern: lastStep))
        w.u8(codec.rawValue)
        w.u8(flags.rawValue)
        w.u16(0)
        w.u32(payloadCRC)
        w.u32(CRC32C.checksum(w.bytes))
        return w.bytes
    }

    enum ParseFailure: Error { case badMagic, badChecksum, badField(String) }

    /// Parses and checks a header: magic, checksum, and field ranges.
    static func parse(_ b: [UInt8], at o: Int = 0) -> Result<FrameHeader, ParseFailure> {
        guard b.count - o >= LogFormat.frameHeaderSize else { return .failure(.badField("short header")) }
        for i in 0..<4 where b[o + i] != LogFormat.frameMagic[i] { return .failure(.badMagic) }
        let crc = b.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[o..<o + 48])) }
        guard crc == b.readLE(UInt32.self, at: o + 48) else { return .failure(.badChecksum) }
        guard let codec = LogFormat.Codec(rawValue: b[o + 40]) else { return .failure(.badField("unknown codec \(b[o + 40])")) }
        let h = FrameHeader(
            storedLength: b.readLE(UInt32.self, at: o + 4), rawLength: b.readLE(UInt32.self, at: o + 8),
            recordCount: b.readLE(UInt32.self, at: o + 12), sequence: b.readLE(UInt64.self, at: o + 16),
            firstStep: b.readLE(Int64.self, at: o + 24), lastStep: b.readLE(Int64.self, at: o + 32),
            codec: codec, flags: LogFormat.FrameFlags(rawValue: b[o + 41]), payloadCRC: b.readLE(UInt32.self, at: o + 44))
        guard Int(h.storedLength) <= LogFormat.maxStoredPayload, Int(h.rawLength) <= LogFormat.maxRawPayload else {
            return .failure(.badField("payload length out of range"))
        }
        return .success(h)
    }
}

/// Records collected for one frame, in order, with history rows kept in columnar blocks.
struct FrameBuilder: Sendable {
    enum Item: Sendable {
        case record(Record)
        case block(HistoryBlockBuilder)
    }
    /// The items before the open block.
    private var sealedItems: [Item] = []
    /// The block rows are appended to, kept out of `sealedItems` so that appending a row
    /// mutates it in place (taking it out of the array and putting it back retained and
    /// released every one of its arrays, per row); it is the last item while there is one.
    private var openBlock: HistoryBlockBuilder?
    /// Every item, in order.
    private var items: [Item] { openBlock.map { sealedItems + [.block($0)] } ?? sealedItems }
    private(set) var recordCount = 0
    private(set) var rowCount = 0
    private(set) var firstStep: Int64 = 0
    private(set) var lastStep: Int64 = 0
    private(set) var flags: LogFormat.FrameFlags = []
    private(set) var approximateBytes = 0
    /// Set on frames written by compaction.
    var compacted = false
    /// Try each double column both ways and keep the smaller (compaction).
    var chooseEncodings = false
    private var rowCapacity: Int

    init(rowCapacity: Int = 1024) { self.rowCapacity = rowCapacity }

    var isEmpty: Bool { recordCount == 0 }

    private mutating func noteStep(_ step: Int64, branch: UInt32) {
        guard branch == 0 else { return }
        if flags.contains(.hasHistory) {
            firstStep = min(firstStep, step)
            lastStep = max(lastStep, step)
        } else {
            flags.insert(.hasHistory)
            firstStep = step
            lastStep = step
        }
    }

    private mutating func withOpenBlock(branch: UInt32, _ body: (inout HistoryBlockBuilder) -> Void) {
        if openBlock?.branch != branch {
            sealOpenBlock()
            openBlock = HistoryBlockBuilder(branch: branch, capacity: rowCapacity)
        }
        let before = openBlock!.approximateBytes
        body(&openBlock!)
        approximateBytes += openBlock!.approximateBytes - before
        recordCount += 1
        rowCount += 1
    }

    private mutating func sealOpenBlock() {
        if let b = openBlock {
            openBlock = nil
            sealedItems.append(.block(b))
        }
    }

    mutating func append(_ record: Record) {
        if case .history(let row) = record {
            appendRow(step: row.step, timestamp: row.timestamp, values: row.values, branch: row.branch)
            return
        }
        sealOpenBlock()
        sealedItems.append(.record(record))
        recordCount += 1
        flags.insert(.hasState)
        if case .rewind = record { flags.insert(.hasRewind) }
        approximateBytes += 64
    }

    mutating func appendRow(step: Int64, timestamp: Int64, values: [String: Value], branch: UInt32 = 0) {
        noteStep(step, branch: branch)
        withOpenBlock(branch: branch) { $0.append(step: step, timestamp: timestamp, values: values) }
    }

    mutating func appendRow(step: Int64, timestamp: Int64, doubles: [String: Double]) {
        noteStep(step, branch: 0)
        withOpenBlock(branch: 0) { $0.append(step: step, timestamp: timestamp, doubles: doubles) }
    }

    mutating func appendRow(step: Int64, timestamp: Int64, keys: [String], doubles: UnsafeBufferPointer<Double>) {
        noteStep(step, branch: 0)
        withOpenBlock(branch: 0) { $0.append(step: step, timestamp: timestamp, keys: keys, doubles: doubles) }
    }

    /// Merges the last value of every live column into `latest`, in row order.
    func mergeLastValues(into latest: inout [String: Value]) {
        func merge(_ b: HistoryBlockBuilder) {
            guard b.branch == 0 else { return }
            for c in b.columns { if let v = c.lastValue { latest[c.key] = v } }
        }
        for case .block(let b) in sealedItems { merge(b) }
        if let openBlock { merge(openBlock) }
    }

    /// The uncompressed payload: each record as kind, body length, body.
    func encodePayload() throws(StoreError) -> [UInt8] {
        var w = ByteWriter(capacity: approximateBytes + 64)
        var body = ByteWriter(capacity: 256)
        for item in items {
            body.bytes.removeAll(keepingCapacity: true)
            switch item {
            case .block(let b):
                w.u8(LogFormat.RecordKind.historyBlock.rawValue)
                try b.encode(into: &body, chooseEncodings: chooseEncodings)
            case .record(.unknown(let kind, let bytes)):
                w.u8(kind)
                body.append(bytes)
            case .record(let r):
                w.u8(r.kind!.rawValue)
                try body.object(r.bodyObject())
            }
            guard body.bytes.count <= LogFormat.maxRawPayload / 2 else {
                throw StoreError(.valueTooLarge, "a record of \(body.bytes.count) bytes exceeds the frame limit of \(LogFormat.maxRawPayload / 2) bytes")
            }
            w.uvarint(UInt64(body.bytes.count))
            w.append(body.bytes)
        }
        return w.bytes
    }

    /// Compresses and checksums the payload into a complete frame.
    func encodeFrame(sequence: UInt64, zstd: ZstdContext, level: Int32) throws(StoreError) -> (header: FrameHeader, bytes: [UInt8]) {
        let raw = try encodePayload()
        var stored = [UInt8]()
        var codec = LogFormat.Codec.zstd
        try raw.withUnsafeBytes { r in Result { () throws(StoreError) in try zstd.compress(r, level: level, into: &stored) } }.get()
        if stored.count >= raw.count {
            stored = raw
            codec = .none
        }
        guard stored.count <= LogFormat.maxStoredPayload else {
            throw StoreError(.valueTooLarge, "frame payload of \(stored.count) bytes exceeds \(LogFormat.maxStoredPayload)")
        }
        var f = flags
        if compacted { f.insert(.compacted) }
        let header = FrameHeader(
            storedLength: UInt32(stored.count), rawLength: UInt32(raw.count), recordCount: UInt32(recordCount),
            sequence: sequence, firstStep: flags.contains(.hasHistory) ? firstStep : 0,
            lastStep: flags.contains(.hasHistory) ? lastStep : 0, codec: codec, flags: f,
            payloadCRC: CRC32C.checksum(stored))
        var bytes = header.encode()
        bytes.append(contentsOf: stored)
        return (header, bytes)
    }
}

/// Decoding of a frame payload back into records.
enum FrameDecoder {
    /// Decompresses a stored payload (already checksummed).
    static func rawPayload(header: FrameHeader, stored: [UInt8], zstd: ZstdContext) throws(DecodeError) -> [UInt8] {
        switch header.codec {
        case .none:
            guard stored.count == Int(header.rawLength) else { throw DecodeError("raw length mismatch") }
            return stored
        case .zstd:
            return try stored.withUnsafeBytes { s in
                Result { () throws(DecodeError) in try zstd.decompress(s, rawLength: Int(header.rawLength)) }
            }.get()
        }
    }

    /// Walks a raw payload's records: for each, its kind byte and a reader over its body
    /// (`visit` need not read it to the end; the walk moves on to the next record either way).
    static func forEachRecord(_ raw: [UInt8], _ visit: (_ kind: UInt8, _ body: inout ByteReader) throws(DecodeError) -> Void) throws(DecodeError) {
        var r = ByteReader(raw)
        while !r.isAtEnd {
            let kind = try r.u8()
            let length = try r.length()
            var body = ByteReader(raw, offset: r.offset, end: r.offset + length)
            r.offset += length
            try visit(kind, &body)
        }
    }

    /// The bytes of a record of a kind this version does not know, kept as they are.
    static func unknown(_ kind: UInt8, _ body: ByteReader) -> Record {
        .unknown(kind: kind, body: Array(body.bytes[body.offset..<body.end]))
    }

    /// The records that are not history rows, each with its index in the frame (rows count
    /// one each), without decoding a history block beyond its row count.
    static func stateRecords(_ raw: [UInt8], recordCount: UInt32, unknownKind: (UInt8) -> Void = { _ in }) throws(DecodeError) -> [(index: UInt32, record: Record)] {
        var out: [(index: UInt32, record: Record)] = []
        var index: UInt32 = 0
        try forEachRecord(raw) { (kindByte, body) throws(DecodeError) in
            guard let kind = LogFormat.RecordKind(rawValue: kindByte) else {
                unknownKind(kindByte)
                out.append((index, unknown(kindByte, body)))
                index += 1
                return
            }
            if kind == .historyBlock {
                _ = try body.uvarint()  // branch
                index += UInt32(try body.length())
                return
            }
            out.append((index, try Record.fromBody(kind: kind, try body.object())))
            index += 1
            guard body.isAtEnd else { throw DecodeError("record of kind \(kind) has \(body.remaining) trailing bytes") }
        }
        guard index == recordCount else { throw DecodeError("header says \(recordCount) records, payload holds \(index)") }
        return out
    }

    /// Decodes a raw payload into records; unknown kinds become `.unknown` and are reported.
    static func records(_ raw: [UInt8], unknownKind: (UInt8) -> Void = { _ in }) throws(DecodeError) -> [Record] {
        var out: [Record] = []
        try forEachRecord(raw) { (kindByte, body) throws(DecodeError) in
            guard let kind = LogFormat.RecordKind(rawValue: kindByte) else {
                unknownKind(kindByte)
                out.append(unknown(kindByte, body))
                return
            }
            if kind == .historyBlock {
                for row in try HistoryBlockBuilder.decodeRows(&body) { out.append(.history(row)) }
            } else {
                out.append(try Record.fromBody(kind: kind, try body.object()))
            }
            guard body.isAtEnd else { throw DecodeError("record of kind \(kind) has \(body.remaining) trailing bytes") }
        }
        return out
    }
}
