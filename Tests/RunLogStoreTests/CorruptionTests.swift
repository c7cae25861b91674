#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
@testable import RunLogStore

/// A log written through `LogWriter`, with what a reader must find in it.
struct SampleLog {
    /// The bytes of `run.rlog`.
    var bytes: [UInt8]
    var frames: [FrameInfo]
    /// Records of each frame, in order.
    var recordsByFrame: [[Record]]
    var contents: RunContents

    /// The records of the frames that end at or before `offset`.
    func records(before offset: Int) -> [Record] {
        zip(frames, recordsByFrame).filter { $0.0.end <= UInt64(offset) }.flatMap(\.1)
    }

    /// The end of the last whole frame at or before `offset` (32 when there is none).
    func lastEnd(before offset: Int) -> Int {
        Int(frames.last { $0.end <= UInt64(offset) }?.end ?? 32)
    }

    /// Writes a run with `frameCount` frames, each holding state records and `rowsPerFrame` rows.
    static func make(in dir: TempDir, name: String = "sample", frameCount: Int = 4, rowsPerFrame: Int = 8, seed: UInt64 = 1) throws -> SampleLog {
        var rng = SplitMix64(seed: seed)
        let run = dir.sub(name)
        let w = try LogWriter.open(directory: run, configuration: .test)
        var step: Int64 = 0
        for f in 0..<frameCount {
            switch f % 4 {
            case 0: try w.append(.runMetadata(RunMetadata(["id": "sample", "frame": .int(Int64(f))])))
            case 1: try w.append(.config(ConfigChange(values: ["lr": .double(0.001 * Double(f)), "f\(f)": .int(Int64(f))])))
            case 2: try w.append(.console(ConsoleLine(stream: .stdout, timestamp: 5_000 + Int64(f), text: "line \(f)")))
            default: try w.append(.summary(SummaryChange(values: ["best": .double(Double(f))])))
            }
            for _ in 0..<rowsPerFrame {
                var values: [String: Value] = ["loss": .double(Double(rng.next() % 1000) / 7), "n": .int(step)]
                if rng.next() % 3 == 0 { values["note"] = .string("s\(step)") }
                try w.appendRow(step: step, timestamp: 1_000_000 + step * 1_000, values: values)
                step += 1
            }
            try w.flush()
        }
        try w.close()
        let bytes = readBytes(run + "/run.rlog")
        // Read through a copy without the index, so the scan covers every header.
        let check = dir.sub(name + "-check")
        try FileManager.default.createDirectory(atPath: check, withIntermediateDirectories: true)
        writeBytes(bytes, to: check + "/run.rlog")
        let r = try LogReader(path: check + "/run.rlog")
        defer { r.close() }
        #expect(r.frames.count == frameCount)
        let byFrame = try r.frames.map { try r.records(in: $0) }
        return SampleLog(bytes: bytes, frames: r.frames, recordsByFrame: byFrame, contents: try r.contents())
    }
}

/// Runs `body` and returns the `StoreError` it threw, recording an issue when it threw
/// nothing or something else.
func storeError(_ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) -> StoreError? {
    do {
        try body()
        Issue.record("expected a StoreError, got none", sourceLocation: sourceLocation)
        return nil
    } catch let e as StoreError {
        return e
    } catch {
        Issue.record("expected a StoreError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// Replaces a file's contents in place (same inode, so open readers see the change; and no
/// temporary file and rename, which `writeBytes` may do).
func putBytes(_ bytes: [UInt8], to path: String) throws {
    let f = try FileHandleFD(path: path, flags: O_WRONLY | O_CREAT | O_TRUNC)
    defer { f.close() }
    try f.write(bytes, at: 0)
}

/// Overwrites bytes of a file in place.
func patch(_ path: String, at offset: Int, _ bytes: [UInt8]) throws {
    let f = try FileHandleFD(path: path, flags: O_RDWR)
    defer { f.close() }
    try f.write(bytes, at: UInt64(offset))
}

@Suite struct CorruptionTests {
    // MARK: Truncation

    @Test func truncationAtEveryByteOffset() throws {
        let dir = TempDir()
        let log = try SampleLog.make(in: dir, frameCount: 5, rowsPerFrame: 40)
        #expect((1_500...4_500).contains(log.bytes.count), "the sweep wants a log of a few KB, got \(log.bytes.count)")
        let cutDir = dir.sub("cut")
        try FileManager.default.createDirectory(atPath: cutDir, withIntermediateDirectories: true)
        let path = cutDir + "/run.rlog"
        // Offsets where a writer reopen is also checked: inside the file header, around every
        // frame boundary and header end, and a stride through the rest.
        // (Each reopen syncs the log on close, so they are picked, not swept.)
        var reopenAt: Set<Int> = [0, 5, 31, 32, 33, log.bytes.count]
        for f in log.frames {
            reopenAt.formUnion([Int(f.offset) + 51, Int(f.offset) + 52 + Int(f.header.storedLength) / 2, Int(f.end) - 1, Int(f.end) + 1])
        }

        for cut in 0...log.bytes.count {
            try putBytes(Array(log.bytes[..<cut]), to: path)
            let expectedRecords = log.records(before: cut)
            let expectedTorn = cut < 32 ? cut : cut - log.lastEnd(before: cut)
            do {
                let r = try LogReader(path: path)
                let records = try r.allRecords().map(\.record)
                let ok = records == expectedRecords && Int(r.tornTailBytes) == expectedTorn
                    && r.frames == log.frames.filter { $0.end <= UInt64(cut) }
                #expect(ok, "cut at \(cut): \(records.count) records (want \(expectedRecords.count)), torn \(r.tornTailBytes) (want \(expectedTorn))")
                r.close()
            } catch {
                Issue.record("cut at \(cut): \(error)")
                continue
            }

            guard reopenAt.contains(cut) else { continue }
            do {
                let w = try LogWriter.open(directory: cutDir, configuration: .test)
                #expect(Int(w.recoveredTornBytes) == expectedTorn, "cut at \(cut)")
                try w.appendRow(step: 10_000, timestamp: 7, values: ["after": .int(Int64(cut))])
                try w.append(.console(ConsoleLine(stream: .stderr, timestamp: 8, text: "reopened")))
                try w.close()
                try? FileManager.default.removeItem(atPath: cutDir + "/run.idx")
                let r = try LogReader(path: path)
                let records = try r.allRecords().map(\.record)
                #expect(r.tornTailBytes == 0)
                #expect(records == expectedRecords + [
                    .history(HistoryRow(step: 10_000, timestamp: 7, values: ["after": .int(Int64(cut))])),
                    .console(ConsoleLine(stream: .stderr, timestamp: 8, text: "reopened")),
                ], "reopen after cut at \(cut)")
                let sequences = r.frames.map(\.header.sequence)
                #expect(zip(sequences, sequences.dropFirst()).allSatisfy { $0 < $1 })
                r.close()
            } catch {
                Issue.record("reopen after cut at \(cut): \(error)")
            }
        }
    }

    /// FORMAT.md rule 4: a header that fails its checks is a torn tail when every byte from
    /// there to the end is zero (the file grew, the data never reached the disk).
    @Test(arguments: [1, 51, 52, 4_096, 1 << 20, (1 << 20) + 1, 3 << 20])
    func zeroFilledTailIsTorn(zeros: Int) throws {
        let dir = TempDir()
        let log = try SampleLog.make(in: dir, frameCount: 2)
        let run = dir.sub("zeros")
        try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
        writeBytes(log.bytes + [UInt8](repeating: 0, count: zeros), to: run + "/run.rlog")
        let r = try LogReader(path: run + "/run.rlog")
        #expect(Int(r.tornTailBytes) == zeros)
        #expect(try r.allRecords().map(\.record) == log.recordsByFrame.flatMap { $0 })
        r.close()
        let w = try LogWriter.open(directory: run, configuration: .test)
        #expect(Int(w.recoveredTornBytes) == zeros)
        try w.close()
        #expect(readBytes(run + "/run.rlog").count == log.bytes.count)
    }

    /// What a kill during creation leaves, and what a power cut may leave of a log that a
    /// writer with durability `.none` created (its header is not synced).
    @Test func logTornWhileBeingCreatedHasNoFrames() throws {
        for length in [0, 1, 5, 8, 20, 31] {
            let dir = TempDir()
            let run = dir.sub("run")
            try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
            let header = FileHeader(created: 42).encode()
            writeBytes(Array(header[..<length]), to: run + "/run.rlog")
            let r = try LogReader(path: run + "/run.rlog")
            #expect(r.frames.isEmpty && r.validEnd == 0 && Int(r.tornTailBytes) == length)
            #expect(try r.contents() == RunContents())
            let w = try LogWriter.open(directory: run, configuration: .test)
            try w.appendRow(step: 0, timestamp: 1, values: ["x": 1])
            try w.close()
            #expect(try RunDirectory.reader(run).contents().history == [HistoryRow(step: 0, timestamp: 1, values: ["x": 1])])
        }
    }

    // MARK: Bit flips

    /// Reads the whole log; returns the records, or the error code when it threw.
    static func readAll(_ path: String) -> Result<[Record], StoreError> {
        do {
            let r = try LogReader(path: path)
            defer { r.close() }
            return .success(try r.allRecords().map(\.record))
        } catch {
            return .failure(error)
        }
    }

    static let detectionCodes: Set<StoreError.Code> = [.corrupted, .notARunLog, .unsupportedVersion]

    @Test func everySingleBitFlipOfASmallLogIsDetected() throws {
        let dir = TempDir()
        let log = try SampleLog.make(in: dir, frameCount: 3, rowsPerFrame: 3)
        #expect(log.bytes.count < 1_200)
        let original = log.recordsByFrame.flatMap { $0 }
        let run = dir.sub("flip")
        try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
        let path = run + "/run.rlog"
        writeBytes(log.bytes, to: path)
        var detected = 0, undetected: [Int] = [], wrong: [Int] = []
        for bit in 0..<log.bytes.count * 8 {
            let at = bit / 8
            try patch(path, at: at, [log.bytes[at] ^ (1 << UInt8(bit % 8))])
            switch Self.readAll(path) {
            case .failure(let e):
                if Self.detectionCodes.contains(e.code) { detected += 1 } else { Issue.record("bit \(bit): unexpected error \(e)") }
            case .success(let records):
                if records == original { undetected.append(bit) } else { wrong.append(bit) }
            }
            try patch(path, at: at, [log.bytes[at]])
        }
        #expect(wrong.isEmpty, "bit flips that decoded into different records: \(wrong.prefix(20))")
        #expect(undetected.isEmpty, "bit flips that went unnoticed: \(undetected.prefix(20))")
        #expect(detected == log.bytes.count * 8 - undetected.count - wrong.count)
    }

    @Test func randomBitFlipsOfACompressedLogAreDetected() throws {
        let dir = TempDir()
        let log = try SampleLog.make(in: dir, frameCount: 6, rowsPerFrame: 80, seed: 7)
        #expect(log.frames.contains { $0.header.codec == .zstd })
        let original = log.recordsByFrame.flatMap { $0 }
        let run = dir.sub("flip")
        try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
        let path = run + "/run.rlog"
        writeBytes(log.bytes, to: path)
        var rng = SplitMix64(seed: 0xF11F)
        var wrong: [Int] = [], undetected: [Int] = []
        for _ in 0..<2_000 {
            let bit = Int(rng.next() % UInt64(log.bytes.count * 8))
            let at = bit / 8
            try patch(path, at: at, [log.bytes[at] ^ (1 << UInt8(bit % 8))])
            switch Self.readAll(path) {
            case .failure(let e): #expect(Self.detectionCodes.contains(e.code), "bit \(bit): \(e)")
            case .success(let records): if records == original { undetected.append(bit) } else { wrong.append(bit) }
            }
            try patch(path, at: at, [log.bytes[at]])
        }
        #expect(wrong.isEmpty, "bit flips that decoded into different records: \(wrong.prefix(20))")
        #expect(undetected.isEmpty, "bit flips that went unnoticed: \(undetected.prefix(20))")
    }

    /// With the writer's index in place the scan skips the indexed headers, so damage must be
    /// caught when the frames are read.
    @Test func bitFlipsAreDetectedWithAValidIndex() throws {
        let dir = TempDir()
        let run = dir.sub("run")
        let w = try LogWriter.open(directory: run, configuration: .test)
        for f in 0..<4 {
            try w.append(.config(ConfigChange(values: ["f": .int(Int64(f))])))
            for s in 0..<20 { try w.appendRow(step: Int64(f * 20 + s), timestamp: 1, values: ["x": .double(Double(s))]) }
            try w.flush()
        }
        try w.close()
        #expect(FileManager.default.fileExists(atPath: run + "/run.idx"))
        let path = run + "/run.rlog"
        let bytes = readBytes(path)
        let original = try LogReader(path: path).allRecords().map(\.record)
        var rng = SplitMix64(seed: 99)
        for _ in 0..<600 {
            let bit = 32 * 8 + Int(rng.next() % UInt64((bytes.count - 32) * 8))
            let at = bit / 8
            try patch(path, at: at, [bytes[at] ^ (1 << UInt8(bit % 8))])
            switch Self.readAll(path) {
            case .failure(let e): #expect(Self.detectionCodes.contains(e.code), "bit \(bit): \(e)")
            case .success(let records): Issue.record(records == original ? "bit \(bit) went unnoticed" : "bit \(bit) changed the records")
            }
            try patch(path, at: at, [bytes[at]])
        }
    }

    /// Payloads whose checksums were recomputed (a buggy writer or a hand-made file) must be
    /// refused with `.corrupted` or decode to something, never crash the reader.
    @Test func malformedPayloadsWithValidChecksumsAreRefusedNotTrapped() throws {
        let payload = GoldenVectorTests.frame1Payload
        let dir = TempDir()
        let path = dir.sub("run.rlog")
        var refused = 0
        for i in 0..<payload.count {
            for mask: UInt8 in [0x01, 0x10, 0x80, 0xFF] {
                var p = payload
                p[i] ^= mask
                let frame = GoldenVectorTests.frameHeader(payload: p, recordCount: 5, sequence: 1, firstStep: 0, lastStep: 2, flags: 0x09) + p
                try putBytes(GoldenVectorTests.fileHeader + frame, to: path)
                switch Self.readAll(path) {
                case .failure(let e): #expect(e.code == .corrupted, "byte \(i) ^ \(mask): \(e)"); refused += 1
                case .success: break
                }
            }
            // Truncated payloads too.
            let p = Array(payload[..<i])
            let frame = GoldenVectorTests.frameHeader(payload: p, recordCount: 5, sequence: 1, firstStep: 0, lastStep: 2, flags: 0x09) + p
            try putBytes(GoldenVectorTests.fileHeader + frame, to: path)
            if case .success = Self.readAll(path) { Issue.record("a payload cut to \(i) bytes decoded as 5 records") }
        }
        #expect(refused > 0)
    }

    // MARK: Salvage

    static func salvageSetup(_ dir: TempDir) throws -> (log: SampleLog, path: String) {
        let log = try SampleLog.make(in: dir, frameCount: 5, rowsPerFrame: 10)
        let run = dir.sub("damaged")
        try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
        let path = run + "/run.rlog"
        writeBytes(log.bytes, to: path)
        return (log, path)
    }

    @Test func damagedHeaderInTheMiddle() throws {
        let dir = TempDir()
        let (log, path) = try Self.salvageSetup(dir)
        let f = log.frames[2]
        try patch(path, at: Int(f.offset) + 20, [log.bytes[Int(f.offset) + 20] ^ 0x40])  // the sequence field

        let e = storeError { _ = try LogReader(path: path) }
        #expect(e?.code == .corrupted && e?.offset == f.offset, "\(String(describing: e))")
        let we = storeError { _ = try LogWriter.open(directory: FileSystem.parent(of: path), configuration: .test) }
        #expect(we?.code == .corrupted && we?.offset == f.offset)

        for verify in [false, true] {
            let r = try LogReader(path: path, options: .init(salvage: true, verifyPayloads: verify))
            #expect(r.damaged.map { [$0.offset, $0.length] } == [[f.offset, log.frames[3].offset - f.offset]])
            #expect(r.frames.map(\.header.sequence) == [1, 2, 4, 5].map { log.frames[$0 - 1].header.sequence })
            #expect(try r.allRecords().map(\.record) == [0, 1, 3, 4].flatMap { log.recordsByFrame[$0] })
            #expect(r.tornTailBytes == 0)
        }
    }

    @Test func damagedPayloadInTheMiddle() throws {
        let dir = TempDir()
        let (log, path) = try Self.salvageSetup(dir)
        let f = log.frames[1]
        let at = Int(f.offset) + 52 + Int(f.header.storedLength) / 2
        try patch(path, at: at, [log.bytes[at] ^ 0x01])

        // Strict: headers check, so opening works; reading the damaged frame throws.
        let r = try LogReader(path: path)
        let e = storeError { _ = try r.contents() }
        #expect(e?.code == .corrupted && e?.offset == f.offset)
        #expect(try r.records(in: r.frames[0]) == log.recordsByFrame[0])
        // Strict with payload checks: opening throws at the frame.
        let e2 = storeError { _ = try LogReader(path: path, options: .init(verifyPayloads: true)) }
        #expect(e2?.code == .corrupted && e2?.offset == f.offset)
        // Salvage with payload checks (what `runlog verify --salvage` uses).
        let s = try LogReader(path: path, options: .init(salvage: true, verifyPayloads: true))
        #expect(s.damaged.map { [$0.offset, $0.length] } == [[f.offset, log.frames[2].offset - f.offset]])
        #expect(try s.allRecords().map(\.record) == [0, 2, 3, 4].flatMap { log.recordsByFrame[$0] })
    }

    /// `LogReader.Options.salvage` promises to skip damaged frames; a payload that fails its
    /// checksum in the middle must be skipped too, not thrown later by `contents()`.
    @Test func salvageAloneSkipsADamagedPayload() throws {
        let dir = TempDir()
        let (log, path) = try Self.salvageSetup(dir)
        let f = log.frames[1]
        let at = Int(f.offset) + 52 + Int(f.header.storedLength) / 2
        try patch(path, at: at, [log.bytes[at] ^ 0x01])
        let s = try LogReader(path: path, options: .init(salvage: true))
        #expect(s.damaged.map(\.offset) == [f.offset])
        #expect(throws: Never.self) { _ = try s.contents() }
    }

    @Test func damagedLastFrame() throws {
        let dir = TempDir()
        let (log, path) = try Self.salvageSetup(dir)
        let f = log.frames[4]
        let at = Int(f.offset) + 52 + 3
        try patch(path, at: at, [log.bytes[at] ^ 0x80])
        let e = storeError { _ = try LogReader(path: path) }  // rule 3: the last payload is checked at open
        #expect(e?.code == .corrupted && e?.offset == f.offset)
        let s = try LogReader(path: path, options: .init(salvage: true))
        #expect(s.damaged.map { [$0.offset, $0.length] } == [[f.offset, UInt64(log.bytes.count) - f.offset]])
        #expect(try s.allRecords().map(\.record) == log.recordsByFrame[0..<4].flatMap { $0 })
    }

    @Test func zeroedAndInsertedStretchesAndSeveralRanges() throws {
        let dir = TempDir()
        let (log, path) = try Self.salvageSetup(dir)
        // Frame 2 zeroed (not at the end, so not a torn tail), garbage inserted before frame 4.
        var bytes = log.bytes
        let f1 = log.frames[1], f3 = log.frames[3]
        for i in Int(f1.offset)..<Int(f1.end) { bytes[i] = 0 }
        let garbage: [UInt8] = Array("RLFR not a frame header, just text that starts like one".utf8)
        bytes.insert(contentsOf: garbage, at: Int(f3.offset))
        writeBytes(bytes, to: path)
        let e = storeError { _ = try LogReader(path: path) }
        #expect(e?.code == .corrupted && e?.offset == f1.offset)
        let s = try LogReader(path: path, options: .init(salvage: true, verifyPayloads: true))
        #expect(s.damaged.map { [$0.offset, $0.length] } == [
            [f1.offset, f1.end - f1.offset],
            [f3.offset, UInt64(garbage.count)],
        ])
        #expect(try s.allRecords().map(\.record) == [0, 2, 3, 4].flatMap { log.recordsByFrame[$0] })
    }

    @Test func sequenceNotIncreasingIsCorruption() throws {
        let dir = TempDir()
        let (log, path) = try Self.salvageSetup(dir)
        // A copy of frame 1 appended at the end: sequence goes back.
        let first = Array(log.bytes[Int(log.frames[0].offset)..<Int(log.frames[0].end)])
        writeBytes(log.bytes + first, to: path)
        let e = storeError { _ = try LogReader(path: path) }
        #expect(e?.code == .corrupted && e?.offset == UInt64(log.bytes.count))
        let s = try LogReader(path: path, options: .init(salvage: true))
        #expect(s.damaged.map { [$0.offset, $0.length] } == [[UInt64(log.bytes.count), UInt64(first.count)]])
        #expect(try s.allRecords().map(\.record) == log.recordsByFrame.flatMap { $0 })
    }

    // MARK: Typed errors

    @Test func notARunLog() throws {
        let dir = TempDir()
        for bytes in [Array("hello, world, this is not a RunLog log at all".utf8), Array("hi".utf8), [0x89, 0x52, 0x00],
                      [0x89, 0x52, 0x55, 0x4E, 0x4C, 0x4F, 0x47, 0x0D, 0x0A] + [UInt8](repeating: 0, count: 40)] {
            let run = dir.sub("run-\(bytes.count)")
            try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
            writeBytes(bytes, to: run + "/run.rlog")
            #expect(storeError { _ = try LogReader(path: run + "/run.rlog") }?.code == .notARunLog)
            #expect(storeError { _ = try RunDirectory.reader(run) }?.code == .notARunLog)
            #expect(storeError { _ = try LogWriter.open(directory: run, configuration: .test) }?.code == .notARunLog)
            #expect(readBytes(run + "/run.rlog") == bytes, "a failed open must leave the file alone")
        }
    }

    @Test func newerMajorVersionIsRefused() throws {
        let dir = TempDir()
        let run = dir.sub("run")
        try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
        var header = FileHeader(major: 2, minor: 0, created: 1).encode()
        #expect(header[8] == 2)
        writeBytes(header, to: run + "/run.rlog")
        let e = storeError { _ = try LogReader(path: run + "/run.rlog") }
        #expect(e?.code == .unsupportedVersion)
        #expect(e?.message.contains("upgrade") == true)
        #expect(storeError { _ = try LogWriter.open(directory: run, configuration: .test) }?.code == .unsupportedVersion)
        // The same header with a bad checksum is corruption at offset 0.
        header[20] ^= 1
        writeBytes(header, to: run + "/run.rlog")
        let c = storeError { _ = try LogReader(path: run + "/run.rlog") }
        #expect(c?.code == .corrupted && c?.offset == 0)
    }

    @Test func missingPaths() throws {
        let dir = TempDir()
        #expect(storeError { _ = try LogReader(path: dir.sub("nope/run.rlog")) }?.code == .notFound)
        #expect(storeError { _ = try LogReader(path: dir.sub("nope.rlog")) }?.code == .notFound)
        #expect(storeError { _ = try RunDirectory.reader(dir.sub("nope")) }?.code == .notFound)
        #expect(storeError { _ = try RunDirectory.reader(dir.path) }?.code == .notFound)  // a directory without a log
        #expect(storeError { _ = try Compaction.compact(directory: dir.sub("nope")) }?.code == .notFound)
        #expect(storeError { try RunDirectory.fork(source: dir.sub("nope"), atStep: 0, to: dir.sub("f"), metadata: RunMetadata()) }?.code == .notFound)
        // A writer creates missing parents, like `mkdir -p`.
        let nested = try LogWriter.open(directory: dir.sub("a/b/c"), configuration: .test)
        try nested.close()
        #expect(FileManager.default.fileExists(atPath: dir.sub("a/b/c/run.rlog")))
        #expect(storeError { _ = try LogReader(path: dir.path) }?.code == .invalidArgument)
    }

    @Test func unusableDirectories() throws {
        let dir = TempDir()
        // A run directory under a regular file: works the same as root or not.
        writeBytes([1, 2, 3], to: dir.sub("file"))
        let e = storeError { _ = try LogWriter.open(directory: dir.sub("file/run"), configuration: .test) }
        #expect(e?.code == .notFound && e?.errno == ENOTDIR, "\(String(describing: e))")

        if geteuid() != 0 {
            let ro = dir.sub("ro")
            try FileManager.default.createDirectory(atPath: ro, withIntermediateDirectories: true)
            chmod(ro, 0o555)
            defer { chmod(ro, 0o755) }
            #expect(storeError { _ = try LogWriter.open(directory: ro + "/run", configuration: .test) }?.code == .permissionDenied)
        } else {
            // Root ignores modes; a directory the kernel refuses (sysfs) still does.
            let probe = "/sys/runlog-test-\(getpid())"
            if mkdir(probe, 0o755) != 0, [EPERM, EACCES, EROFS].contains(errno) {
                #expect(storeError { _ = try LogWriter.open(directory: probe, configuration: .test) }?.code == .permissionDenied)
            } else {
                rmdir(probe)
            }
        }
    }

    static func nested(_ depth: Int) -> Value {
        var v: Value = .int(1)
        for _ in 0..<depth { v = .array([v]) }
        return v
    }

    @Test func valuesNestedTooDeepAreRefusedAtAppend() throws {
        let dir = TempDir()
        let run = dir.sub("run")
        let w = try LogWriter.open(directory: run, configuration: .test)
        try w.append(.config(ConfigChange(values: ["ok": 1])))
        try w.appendRow(step: 0, timestamp: 1, values: ["x": 1])
        let deep = Self.nested(100)
        #expect(storeError { try w.appendRow(step: 1, timestamp: 2, values: ["x": 2, "deep": deep]) }?.code == .invalidValue)
        #expect(storeError { try w.append(.history(HistoryRow(step: 1, timestamp: 2, values: ["deep": deep]))) }?.code == .invalidValue)
        #expect(storeError { try w.append(.config(ConfigChange(values: ["deep": deep]))) }?.code == .invalidValue)
        #expect(storeError { try w.append(.summary(SummaryChange(values: ["deep": .object(["a": deep])]))) }?.code == .invalidValue)
        #expect(storeError { try w.append(.runMetadata(RunMetadata(["deep": deep]))) }?.code == .invalidValue)
        #expect(storeError { try w.append(.systemMetrics(SystemSample(timestamp: 1, values: ["deep": deep]))) }?.code == .invalidValue)
        try w.appendRow(step: 1, timestamp: 3, values: ["x": 3])
        try w.close()
        let c = try RunDirectory.reader(run).contents()
        #expect(c.config == ["ok": 1])
        #expect(c.history == [HistoryRow(step: 0, timestamp: 1, values: ["x": 1]), HistoryRow(step: 1, timestamp: 3, values: ["x": 3])])
        #expect(c.summary.isEmpty && c.metadata.isEmpty && c.events.isEmpty)
    }

    /// Whatever depth the writer accepts, the reader must read back: the two limits agree.
    @Test func deepestAcceptedValueReadsBack() throws {
        let dir = TempDir()
        let run = dir.sub("run")
        let w = try LogWriter.open(directory: run, configuration: .test)
        var acceptedRows: [HistoryRow] = [], acceptedConfig: [String: Value] = [:], rejected = 0
        for depth in 58...68 {
            let v = Self.nested(depth)
            let row = HistoryRow(step: Int64(depth), timestamp: 0, values: ["v": v])
            do { try w.append(.history(row)); acceptedRows.append(row) } catch { rejected += 1; #expect(error.code == .invalidValue) }
            do { try w.append(.config(ConfigChange(values: ["d\(depth)": v]))); acceptedConfig["d\(depth)"] = v } catch { rejected += 1 }
        }
        try w.close()
        #expect(rejected > 0 && !acceptedRows.isEmpty && !acceptedConfig.isEmpty)
        let c = try RunDirectory.reader(run).contents()
        #expect(c.history == acceptedRows)
        #expect(c.config == acceptedConfig)
    }

    @Test func valueTooLargeIsRefusedAtAppend() throws {
        let dir = TempDir()
        let run = dir.sub("run")
        let w = try LogWriter.open(directory: run, configuration: .test)
        let big = Value.string(String(decoding: [UInt8](repeating: 0x61, count: LogFormat.maxRawPayload / 2 + 1), as: UTF8.self))
        #expect(storeError { try w.appendRow(step: 0, timestamp: 0, values: ["big": big]) }?.code == .valueTooLarge)
        try w.appendRow(step: 0, timestamp: 0, values: ["x": 1])
        try w.close()
        #expect(try RunDirectory.reader(run).contents().history.count == 1)
    }

    @Test func secondWriterAndCompactionAreLockedOut() throws {
        let dir = TempDir()
        let run = dir.sub("run")
        let w = try LogWriter.open(directory: run, configuration: .test)
        try w.appendRow(step: 0, timestamp: 0, values: ["x": 1])
        let e = storeError { _ = try LogWriter.open(directory: run, configuration: .test) }
        #expect(e?.code == .locked)
        #expect(e?.message.contains("pid \(getpid())") == true)
        #expect(storeError { _ = try Compaction.compact(directory: run) }?.code == .locked)
        // Readers are never locked out.
        try w.flush()
        #expect(try RunDirectory.reader(run).contents().history.count == 1)
        try w.close()
        #expect(storeError { try w.append(.tags(["late"])) }?.code == .closed)
        try LogWriter.open(directory: run, configuration: .test).close()
    }

    /// `LogWriter.deinit` closes a writer that was dropped without `close()`: the run must
    /// not stay locked for the rest of the process, and what was appended must be written.
    @Test func droppedWriterReleasesTheLock() throws {
        let dir = TempDir()
        let run = dir.sub("run")
        do {
            let w = try LogWriter.open(directory: run, configuration: .test)
            try w.appendRow(step: 0, timestamp: 0, values: ["x": 1])
        }
        var reopened: LogWriter?
        for _ in 0..<20 where reopened == nil {
            reopened = try? LogWriter.open(directory: run, configuration: .test)
            if reopened == nil { Thread.sleep(forTimeInterval: 0.01) }
        }
        #expect(reopened != nil, "the dropped writer still holds the run's lock")
        try reopened?.close()
        #expect(try RunDirectory.reader(run).contents().history.count == 1)
    }

    @Test func otherArgumentErrors() throws {
        let dir = TempDir()
        let run = dir.sub("run")
        let w = try LogWriter.open(directory: run, configuration: .test)
        for s in 5..<10 { try w.appendRow(step: Int64(s), timestamp: 0, values: ["x": .int(Int64(s))]) }
        #expect(storeError { try w.rewind(toStep: -1) }?.code == .invalidArgument)
        try w.close()
        #expect(storeError { try RunDirectory.fork(source: run, atStep: 4, to: dir.sub("f"), metadata: RunMetadata()) }?.code == .invalidArgument)
        try FileManager.default.createDirectory(atPath: dir.sub("exists"), withIntermediateDirectories: true)
        #expect(storeError { try RunDirectory.fork(source: run, atStep: 7, to: dir.sub("exists"), metadata: RunMetadata()) }?.code == .alreadyExists)
        #expect(!FileManager.default.fileExists(atPath: dir.sub("f")))
    }

    // MARK: Inputs the writer accepts must never make a frame unreadable

    /// `appendRow(keys:doubles:)` with a key twice: the row must be refused or stored, but
    /// never poison the frame (which also holds the config appended before it).
    @Test func duplicateKeysInTheDoublesFastPath() throws {
        let dir = TempDir()
        let run = dir.sub("run")
        let w = try LogWriter.open(directory: run, configuration: .test)
        try w.append(.config(ConfigChange(values: ["lr": 0.1])))
        try w.appendRow(step: 0, timestamp: 0, keys: ["a", "b"], doubles: [1, 2])
        _ = try? w.appendRow(step: 1, timestamp: 0, keys: ["a", "a"], doubles: [3, 4])
        try w.appendRow(step: 2, timestamp: 0, keys: ["a", "b"], doubles: [5, 6])
        try w.close()
        let c = try RunDirectory.reader(run).contents()
        #expect(c.config == ["lr": 0.1])
        #expect(c.history.map(\.step).contains(2))
    }

    /// An `.unknown` record whose kind byte is a known kind is decoded as that kind by every
    /// reader: the writer must refuse it, not write a frame no reader can decode.
    @Test func unknownRecordWithAKnownKindByte() throws {
        let dir = TempDir()
        let run = dir.sub("run")
        let w = try LogWriter.open(directory: run, configuration: .test)
        try w.append(.config(ConfigChange(values: ["lr": 0.1])))
        _ = try? w.append(.unknown(kind: LogFormat.RecordKind.config.rawValue, body: [0xFF]))
        try w.append(.unknown(kind: 0x70, body: [1, 2, 3]))
        try w.close()
        let c = try RunDirectory.reader(run).contents()
        #expect(c.config == ["lr": 0.1])
        #expect(c.events.last == .unknown(kind: 0x70, body: [1, 2, 3]))
    }
}
