import CCRC32C
import Foundation
import Testing
@testable import RunLogStore

/// Pins `FORMAT.md` and the code to each other.
///
/// The expected bytes below were assembled by hand from `FORMAT.md` (each field commented),
/// not by running the encoder; the CRCs are computed by the bitwise reference CRC32C in
/// this file, which is itself checked against the check value of the spec. The encoder must
/// produce exactly these bytes, and the reader must decode them into exactly these records.
@Suite struct GoldenVectorTests {
    // MARK: CRC32C

    /// Bit-at-a-time CRC32C straight from the definition in FORMAT.md: reflected polynomial
    /// 0x82F63B78, initial value and final XOR 0xFFFFFFFF. Shares no code with CCRC32C.
    static func referenceCRC(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            crc ^= UInt32(b)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        }
        return crc ^ 0xFFFF_FFFF
    }

    static func portable(_ bytes: [UInt8], extending crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { runlog_crc32c_extend_portable(crc, $0.baseAddress, $0.count) }
    }

    static func dispatched(_ bytes: [UInt8], extending crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { runlog_crc32c_extend(crc, $0.baseAddress, $0.count) }
    }

    @Test func crc32cCheckValueOnEveryPath() {
        let check = Array("123456789".utf8)
        #expect(Self.referenceCRC(check) == 0xE306_9283)
        #expect(Self.portable(check) == 0xE306_9283)
        #expect(Self.dispatched(check) == 0xE306_9283)
        #expect(CRC32C.checksum(check) == 0xE306_9283)
        // The iSCSI test vectors (RFC 3720 B.4).
        #expect(Self.portable([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(Self.dispatched([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(Self.portable([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(Self.dispatched([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(Self.portable((0..<32).map { UInt8($0) }) == 0x46DD_794E)
        #expect(Self.dispatched((0..<32).map { UInt8($0) }) == 0x46DD_794E)
        #expect(Self.dispatched([]) == 0)
    }

    @Test func crc32cPathsAgreeOnEveryLengthAndAlignment() {
        var rng = SplitMix64(seed: 0xC0FFEE)
        let buffer = (0..<600).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        for start in 0..<9 {
            for length in stride(from: 0, through: buffer.count - start, by: 7) {
                let slice = Array(buffer[start..<start + length])
                let expected = Self.referenceCRC(slice)
                #expect(Self.portable(slice) == expected, "portable, start \(start) length \(length)")
                #expect(Self.dispatched(slice) == expected, "dispatched, start \(start) length \(length)")
                // Unaligned starting addresses, which the SSE4.2 path handles byte by byte.
                let unaligned = buffer.withUnsafeBytes {
                    runlog_crc32c_extend(0, $0.baseAddress! + start, length)
                }
                #expect(unaligned == expected)
            }
        }
        // Extending over two pieces equals the CRC of the whole.
        for cut in [0, 1, 7, 8, 9, 63, 64, 300, 600] {
            let a = Array(buffer[..<cut]), b = Array(buffer[cut...])
            #expect(Self.dispatched(b, extending: Self.dispatched(a)) == Self.referenceCRC(buffer))
            #expect(Self.portable(b, extending: Self.portable(a)) == Self.referenceCRC(buffer))
        }
    }

    // MARK: Hand-assembled vector

    static let created: Int64 = 1_700_000_000_000_000

    /// The 32-byte file header, field by field.
    static var fileHeader: [UInt8] {
        var b: [UInt8] = [0x89, 0x52, 0x55, 0x4E, 0x4C, 0x4F, 0x47, 0x0A]  // magic "\x89RUNLOG\n"
        b += [0x01, 0x00]  // major 1
        b += [0x00, 0x00]  // minor 0
        b += [0x20, 0x00, 0x00, 0x00]  // header length 32
        b += [0x00, 0x40, 0x1E, 0x18, 0x24, 0x0A, 0x06, 0x00]  // created 1_700_000_000_000_000 µs
        b += [0x00, 0x00, 0x00, 0x00]  // flags
        b += le32(referenceCRC(b))
        return b
    }

    /// run_metadata {id: "golden", start_time: 1000}
    static let metadataRecord: [UInt8] = [
        0x01, 0x1A,  // kind run_metadata, body length 26
        0x02,  // object: 2 entries, keys sorted by UTF-8 bytes
        0x02, 0x69, 0x64,  // "id"
        0x05, 0x06, 0x67, 0x6F, 0x6C, 0x64, 0x65, 0x6E,  // string "golden"
        0x0A, 0x73, 0x74, 0x61, 0x72, 0x74, 0x5F, 0x74, 0x69, 0x6D, 0x65,  // "start_time"
        0x03, 0xD0, 0x0F,  // int 1000 (zigzag 2000)
    ]

    /// A history block of three rows:
    /// step 0, t 1_000_000, {loss: 0.1}; step 1, t 1_000_500, {loss: 1/3, n: 7};
    /// step 2, t 1_001_000, {loss: -0.0, n: 9, tag: "x"}.
    static let historyRecord: [UInt8] = [
        0x03, 0x40,  // kind history_block, body length 64
        0x00,  // branch 0
        0x03,  // 3 rows
        0x00, 0x02, 0x02,  // step deltas 0, +1, +1 (zigzag)
        0x80, 0x89, 0x7A, 0xE8, 0x07, 0xE8, 0x07,  // time deltas 1_000_000, +500, +500 (zigzag)
        0x03,  // 3 columns, in order of first appearance
        0x04, 0x6C, 0x6F, 0x73, 0x73,  // "loss"
        0x00,  // presence: every row
        0x01,  // encoding: double XOR shuffle
        0x18,  // 24 bytes: 8 planes of 3 bytes of x[i] = bits[i] ^ bits[i-1]
        0x9A, 0xCF, 0x55,  // plane 0
        0x99, 0xCC, 0x55,  // plane 1
        0x99, 0xCC, 0x55,  // plane 2
        0x99, 0xCC, 0x55,  // plane 3
        0x99, 0xCC, 0x55,  // plane 4
        0x99, 0xCC, 0x55,  // plane 5
        0xB9, 0x6C, 0xD5,  // plane 6
        0x3F, 0x00, 0xBF,  // plane 7 (sign of -0.0 kept)
        0x01, 0x6E,  // "n"
        0x01, 0x06,  // presence: bitmap 0b110 (rows 1 and 2)
        0x02,  // encoding: int delta
        0x02, 0x0E, 0x04,  // 2 bytes: +7, +2 (zigzag)
        0x03, 0x74, 0x61, 0x67,  // "tag"
        0x01, 0x04,  // presence: bitmap 0b100 (row 2)
        0x00,  // encoding: generic
        0x03, 0x05, 0x01, 0x78,  // 3 bytes: string "x"
    ]

    /// console {stream: 1, t: 5, text: "hi"}
    static let consoleRecord: [UInt8] = [
        0x06, 0x17,  // kind console, body length 23
        0x03,  // 3 entries
        0x06, 0x73, 0x74, 0x72, 0x65, 0x61, 0x6D, 0x03, 0x02,  // "stream": int 1
        0x01, 0x74, 0x03, 0x0A,  // "t": int 5
        0x04, 0x74, 0x65, 0x78, 0x74, 0x05, 0x02, 0x68, 0x69,  // "text": "hi"
    ]

    /// rewind {step: 0, branch: 1, t: 7, cut_seq: 1, cut_index: 2}
    static let rewindRecord: [UInt8] = [
        0x09, 0x2B,  // kind rewind, body length 43
        0x05,  // 5 entries
        0x06, 0x62, 0x72, 0x61, 0x6E, 0x63, 0x68, 0x03, 0x02,  // "branch": 1
        0x09, 0x63, 0x75, 0x74, 0x5F, 0x69, 0x6E, 0x64, 0x65, 0x78, 0x03, 0x04,  // "cut_index": 2
        0x07, 0x63, 0x75, 0x74, 0x5F, 0x73, 0x65, 0x71, 0x03, 0x02,  // "cut_seq": 1
        0x04, 0x73, 0x74, 0x65, 0x70, 0x03, 0x00,  // "step": 0
        0x01, 0x74, 0x03, 0x0E,  // "t": 7
    ]

    static func frameHeader(payload: [UInt8], recordCount: UInt32, sequence: UInt64, firstStep: Int64, lastStep: Int64,
                            codec: UInt8 = 0, flags: UInt8) -> [UInt8] {
        var h: [UInt8] = [0x52, 0x4C, 0x46, 0x52]  // "RLFR"
        h += le32(UInt32(payload.count))  // stored_length
        h += le32(UInt32(payload.count))  // raw_length (codec none)
        h += le32(recordCount)
        h += le64(sequence)
        h += le64(UInt64(bitPattern: firstStep))
        h += le64(UInt64(bitPattern: lastStep))
        h += [codec, flags, 0x00, 0x00]
        h += le32(referenceCRC(payload))
        h += le32(referenceCRC(h))
        return h
    }

    static var frame1Payload: [UInt8] { metadataRecord + historyRecord + consoleRecord }
    /// Frame 1: metadata, 3 rows, console: 5 records, steps 0...2, flags has_history|has_state.
    static var frame1: [UInt8] {
        frameHeader(payload: frame1Payload, recordCount: 5, sequence: 1, firstStep: 0, lastStep: 2, flags: 0x09) + frame1Payload
    }
    /// Frame 2: the rewind alone: flags has_rewind|has_state.
    static var frame2: [UInt8] {
        frameHeader(payload: rewindRecord, recordCount: 1, sequence: 2, firstStep: 0, lastStep: 0, flags: 0x0A) + rewindRecord
    }

    /// The whole file, frozen: any change to the format shows up here.
    static let frozenHex =
        "8952554e4c4f470a010000002000000000401e18240a06000000000091cfbca1524c46527700000077000000050000000100000000000000"
        + "00000000000000000200000000000000000900001d02cfb8db2b4bc7011a020269640506676f6c64656e0a73746172745f74696d6503d0"
        + "0f0340000300020280897ae807e80703046c6f73730001189acf5599cc5599cc5599cc5599cc5599cc55b96cd53f00bf016e010602020e"
        + "0403746167010400030501780617030673747265616d03020174030a047465787405026869524c46522d0000002d000000010000000200"
        + "00000000000000000000000000000000000000000000000a0000f81ce54a5d6f9046092b05066272616e63680302096375745f696e6465"
        + "780304076375745f7365710302047374657003000174030e"

    static let rows: [HistoryRow] = [
        HistoryRow(step: 0, timestamp: 1_000_000, values: ["loss": .double(0.1)]),
        HistoryRow(step: 1, timestamp: 1_000_500, values: ["loss": .double(1.0 / 3.0), "n": .int(7)]),
        HistoryRow(step: 2, timestamp: 1_001_000, values: ["loss": .double(-0.0), "n": .int(9), "tag": "x"]),
    ]
    static let metadata = RunMetadata(["id": "golden", "start_time": 1000])
    static let console = ConsoleLine(stream: .stderr, timestamp: 5, text: "hi")
    static let rewind = RewindMarker(step: 0, branch: 1, cut: RecordPosition(sequence: 1, index: 2), timestamp: 7)

    @Test func handAssemblyMatchesFrozenVector() {
        let file = Self.fileHeader + Self.frame1 + Self.frame2
        #expect(file.count == 300)
        #expect(hex(file) == Self.frozenHex)
        #expect(Self.historyRecord.count == 66 && Self.rewindRecord.count == 45)
    }

    @Test func fileHeaderEncoderMatches() throws {
        #expect(FileHeader(created: Self.created).encode() == Self.fileHeader)
        let parsed = try #require(try FileHeader.parse(Self.fileHeader, path: "golden"))
        #expect(parsed.created == Self.created && parsed.major == 1 && parsed.minor == 0)
    }

    @Test func frameEncoderMatches() throws {
        let zstd = ZstdContext()
        var b1 = FrameBuilder()
        b1.append(.runMetadata(Self.metadata))
        for r in Self.rows { b1.appendRow(step: r.step, timestamp: r.timestamp, values: r.values) }
        b1.append(.console(Self.console))
        #expect(try b1.encodePayload() == Self.frame1Payload)
        let (h1, bytes1) = try b1.encodeFrame(sequence: 1, zstd: zstd, level: 1)
        #expect(h1.codec == .none, "zstd does not shrink this payload, so it is stored as is")
        #expect(bytes1 == Self.frame1)

        // The same rows through `.history` records.
        var b1b = FrameBuilder()
        b1b.append(.runMetadata(Self.metadata))
        for r in Self.rows { b1b.append(.history(r)) }
        b1b.append(.console(Self.console))
        #expect(try b1b.encodeFrame(sequence: 1, zstd: zstd, level: 1).bytes == Self.frame1)

        var b2 = FrameBuilder()
        b2.append(.rewind(Self.rewind))
        let (h2, bytes2) = try b2.encodeFrame(sequence: 2, zstd: zstd, level: 1)
        #expect(h2.flags == [.hasRewind, .hasState])
        #expect(bytes2 == Self.frame2)
    }

    @Test func frameHeaderFieldsParse() throws {
        let h = try FrameHeader.parse(Self.frame1).get()
        #expect(h.storedLength == 119 && h.rawLength == 119 && h.recordCount == 5 && h.sequence == 1)
        #expect(h.firstStep == 0 && h.lastStep == 2 && h.codec == .none && h.flags == [.hasHistory, .hasState])
        #expect(h.frameSize == 52 + 119)
        #expect(h.encode() == Array(Self.frame1[0..<52]))
    }

    @Test func readerDecodesHandMadeBytes() throws {
        let dir = TempDir()
        let path = dir.sub("run.rlog")
        writeBytes(Self.fileHeader + Self.frame1 + Self.frame2, to: path)
        let r = try LogReader(path: path)
        defer { r.close() }
        #expect(r.created == Self.created)
        #expect(r.frames.map(\.offset) == [32, 32 + 171])
        #expect(r.validEnd == 300 && r.tornTailBytes == 0)
        let records = try r.allRecords()
        #expect(records.map(\.position) == [
            RecordPosition(sequence: 1, index: 0), RecordPosition(sequence: 1, index: 1), RecordPosition(sequence: 1, index: 2),
            RecordPosition(sequence: 1, index: 3), RecordPosition(sequence: 1, index: 4), RecordPosition(sequence: 2, index: 0),
        ])
        #expect(records.map(\.record) == [
            .runMetadata(Self.metadata), .history(Self.rows[0]), .history(Self.rows[1]), .history(Self.rows[2]),
            .console(Self.console), .rewind(Self.rewind),
        ])
        // -0.0 keeps its sign.
        if case .history(let row) = records[3].record, case .double(let d)? = row.values["loss"] {
            #expect(d.bitPattern == 0x8000_0000_0000_0000)
        } else {
            Issue.record("row 2 lost its loss value")
        }

        // Contents: the rewind archives the rows at (1,2) and (1,3) into branch 1.
        let c = try r.contents()
        #expect(c.metadata == Self.metadata.fields)
        #expect(c.history == [Self.rows[0]])
        var archived = Array(Self.rows[1...])
        for i in archived.indices { archived[i].branch = 1 }
        #expect(c.archived == [1: archived])
        #expect(c.rewinds == [RunContents.RewindInfo(step: 0, branch: 1, timestamp: 7)])
        #expect(c.events == [.console(Self.console)])
        #expect(try r.row(atStep: 0) == Self.rows[0])
        #expect(try r.row(atStep: 1) == nil)
    }

    // MARK: Values

    static func encoded(_ v: Value) throws -> [UInt8] {
        var w = ByteWriter()
        try w.value(v)
        return w.bytes
    }

    static func decoded(_ bytes: [UInt8]) throws -> Value {
        var r = ByteReader(bytes)
        let v = try r.value()
        #expect(r.isAtEnd)
        return v
    }

    @Test(arguments: [
        (Value.null, [0x00] as [UInt8]),
        (.bool(false), [0x01]),
        (.bool(true), [0x02]),
        (.int(0), [0x03, 0x00]),
        (.int(-1), [0x03, 0x01]),
        (.int(1), [0x03, 0x02]),
        (.int(-64), [0x03, 0x7F]),
        (.int(64), [0x03, 0x80, 0x01]),
        (.int(.max), [0x03, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
        (.int(.min), [0x03, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
        (.double(1.0), [0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xF0, 0x3F]),
        (.double(-0.0), [0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80]),
        (.double(.infinity), [0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xF0, 0x7F]),
        (.double(Double(bitPattern: 0x7FF8_0000_0000_1234)), [0x04, 0x34, 0x12, 0x00, 0x00, 0x00, 0x00, 0xF8, 0x7F]),
        (.double(Double(bitPattern: 0xFFF0_0000_0000_0001)), [0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0xF0, 0xFF]),
        (.string(""), [0x05, 0x00]),
        (.string("é"), [0x05, 0x02, 0xC3, 0xA9]),
        (.array([]), [0x06, 0x00]),
        (.array([.int(1), .null, .array([.bool(true)])]), [0x06, 0x03, 0x03, 0x02, 0x00, 0x06, 0x01, 0x02]),
        (.object([:]), [0x07, 0x00]),
        // Keys sorted by UTF-8 bytes: "B" (0x42) < "a" (0x61) < "ab" < "é" (0xC3 0xA9).
        (.object(["é": .int(1), "ab": .null, "a": .bool(false), "B": .string("")]),
         [0x07, 0x04, 0x01, 0x42, 0x05, 0x00, 0x01, 0x61, 0x01, 0x02, 0x61, 0x62, 0x00, 0x02, 0xC3, 0xA9, 0x03, 0x02]),
    ])
    func valueEncoding(_ value: Value, _ bytes: [UInt8]) throws {
        #expect(try Self.encoded(value) == bytes)
        #expect(try Self.decoded(bytes) == value)
    }

    @Test func tenByteVarintsAndOverflow() throws {
        var r = ByteReader([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])
        #expect(try r.uvarint() == .max)
        var over = ByteReader([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02])
        #expect(throws: DecodeError.self) { try over.uvarint() }
        var long = ByteReader([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00])
        #expect(throws: DecodeError.self) { try long.uvarint() }
        var short = ByteReader([0x80])
        #expect(throws: DecodeError.self) { try short.uvarint() }
    }

    // MARK: Variants a reader must accept

    /// A block using the other encodings: double shuffle (3) and generic doubles, a column
    /// present in no row, and a row with no columns.
    @Test func readerDecodesEveryColumnEncoding() throws {
        let bits: [UInt64] = [0x3FF0_0000_0000_0000, 0x4000_0000_0000_0000]  // 1.0, 2.0
        var planes: [UInt8] = []
        for p in 0..<8 { for b in bits { planes.append(UInt8(truncatingIfNeeded: b >> (8 * UInt64(p)))) } }
        var body: [UInt8] = [0x00, 0x03]  // branch 0, 3 rows
        body += [0x0A, 0x02, 0x02]  // steps 5, 6, 7
        body += [0x02, 0x02, 0x02]  // times 1, 2, 3
        body += [0x03]  // 3 columns
        body += [0x01, 0x61, 0x01, 0x03, 0x03, 0x10] + planes  // "a": bitmap rows 0,1; double shuffle; 16 bytes
        body += [0x01, 0x62, 0x01, 0x04, 0x00, 0x09, 0x04] + le64(0xC000_0000_0000_0000)  // "b": row 2; generic double -2.0
        body += [0x01, 0x63, 0x01, 0x00, 0x00, 0x00]  // "c": bitmap with no rows, generic, 0 bytes
        let payload: [UInt8] = [0x03, UInt8(body.count)] + body
        let frame = Self.frameHeader(payload: payload, recordCount: 3, sequence: 9, firstStep: 5, lastStep: 7, flags: 0x01) + payload
        let dir = TempDir()
        writeBytes(Self.fileHeader + frame, to: dir.sub("run.rlog"))
        let r = try LogReader(path: dir.sub("run.rlog"))
        #expect(try r.contents().history == [
            HistoryRow(step: 5, timestamp: 1, values: ["a": 1.0]),
            HistoryRow(step: 6, timestamp: 2, values: ["a": 2.0]),
            HistoryRow(step: 7, timestamp: 3, values: ["b": -2.0]),
        ])
    }

    @Test func unknownKindsAndFieldsAreSkippedAndMinorVersionsAccepted() throws {
        var header = Self.fileHeader
        header[10] = 7  // minor version 7
        header.replaceSubrange(28..<32, with: le32(Self.referenceCRC(Array(header[0..<28]))))
        // An unknown record kind 0x7F, then a console record with an extra field "zz".
        var payload: [UInt8] = [0x7F, 0x03, 0xAA, 0xBB, 0xCC]
        let console: [UInt8] = [0x04,
                                0x06, 0x73, 0x74, 0x72, 0x65, 0x61, 0x6D, 0x03, 0x00,  // "stream": 0
                                0x01, 0x74, 0x03, 0x02,  // "t": 1
                                0x04, 0x74, 0x65, 0x78, 0x74, 0x05, 0x01, 0x6F,  // "text": "o"
                                0x02, 0x7A, 0x7A, 0x02]  // "zz": true
        payload += [0x06, UInt8(console.count)] + console
        let frame = Self.frameHeader(payload: payload, recordCount: 2, sequence: 1, firstStep: 0, lastStep: 0, flags: 0x08) + payload
        let dir = TempDir()
        writeBytes(header + frame, to: dir.sub("run.rlog"))
        let r = try LogReader(path: dir.sub("run.rlog"))
        let c = try r.contents()
        #expect(c.events == [.unknown(kind: 0x7F, body: [0xAA, 0xBB, 0xCC]), .console(ConsoleLine(stream: .stdout, timestamp: 1, text: "o"))])
        #expect(r.unknownKinds == [0x7F: 1])
    }

    @Test func zstdFramesDecode() throws {
        // A payload zstd shrinks: the encoder picks codec 1, and the frame reads back.
        var b = FrameBuilder()
        for s in 0..<200 { b.appendRow(step: Int64(s), timestamp: 0, values: ["x": .int(0)]) }
        let (h, bytes) = try b.encodeFrame(sequence: 1, zstd: ZstdContext(), level: 3)
        #expect(h.codec == .zstd && h.storedLength < h.rawLength)
        #expect(bytes[40] == 1)
        let dir = TempDir()
        writeBytes(Self.fileHeader + bytes, to: dir.sub("run.rlog"))
        let rows = try LogReader(path: dir.sub("run.rlog")).contents().history
        #expect(rows.map(\.step) == (0..<200).map(Int64.init))
    }

    @Test func indexFileLayout() throws {
        let dir = TempDir()
        let h1 = try FrameHeader.parse(Self.frame1).get()
        let h2 = try FrameHeader.parse(Self.frame2).get()
        LogIndex.write(frames: [FrameInfo(offset: 32, header: h1), FrameInfo(offset: 203, header: h2)], coveredLength: 300, directory: dir.path)
        var expected: [UInt8] = [0x52, 0x4C, 0x49, 0x58]  // "RLIX"
        expected += le32(1) + le64(300) + le32(2)
        expected += le64(32) + Array(Self.frame1[0..<52])
        expected += le64(203) + Array(Self.frame2[0..<52])
        expected += le32(Self.referenceCRC(expected))
        #expect(readBytes(dir.sub("run.idx")) == expected)
    }
}

// MARK: Helpers shared by the store tests

func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * UInt32($0))) } }
func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }
func hex(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined() }

