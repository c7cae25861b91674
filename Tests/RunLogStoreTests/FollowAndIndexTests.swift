import Foundation
import Testing
@testable import RunLogStore

@Suite struct FollowAndIndexTests {
    // MARK: Following a log another writer appends to

    @Test func refreshPicksUpFramesWrittenLater() throws {
        let dir = TempDir()
        let run = dir.sub("run")
        let w = try LogWriter.open(directory: run, configuration: .test)
        let r = try RunDirectory.reader(run)
        defer { r.close() }
        #expect(r.frames.isEmpty && r.tornTailBytes == 0)
        #expect(try r.refresh().isEmpty)

        var expected: [Record] = []
        var step: Int64 = 0
        for round in 0..<6 {
            var batch: [Record] = [.console(ConsoleLine(stream: .stdout, timestamp: Int64(round), text: "round \(round)"))]
            for _ in 0..<5 {
                batch.append(.history(HistoryRow(step: step, timestamp: step, values: ["x": .int(step)])))
                step += 1
            }
            for rec in batch { try w.append(rec) }
            // Appended but not flushed: not visible yet.
            #expect(try r.refresh().isEmpty)
            try w.flush()
            let new = try r.refresh()
            #expect(new.count == 1, "round \(round)")
            #expect(try new.flatMap { try r.records(in: $0) } == batch)
            expected += batch
            #expect(try r.allRecords().map(\.record) == expected)
            #expect(try r.refresh().isEmpty, "nothing new")
        }
        // A rewind written later changes what the follower's contents show.
        let m = try w.rewind(toStep: 9)
        #expect(try r.refresh().count == 1)
        let c = try r.contents()
        #expect(c.history.map(\.step) == Array(0...9))
        #expect(c.archived[m.branch]?.map(\.step) == Array(10..<step))
        try w.close()
        #expect(try r.refresh().isEmpty)
        #expect(r.tornTailBytes == 0)
    }

    /// A follower that sees the log grow one byte at a time, from an empty file: a partial
    /// frame (or a partial file header) at the end is never an error, and each frame shows up
    /// as soon as its last byte does.
    @Test func partialFramesAtTheEndAreNotErrors() throws {
        let dir = TempDir()
        let log = try SampleLog.make(in: dir, frameCount: 3, rowsPerFrame: 6)
        let run = dir.sub("follow")
        try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
        let path = run + "/run.rlog"
        writeBytes([], to: path)
        let r = try LogReader(path: path)
        defer { r.close() }
        let out = try FileHandleFD(path: path, flags: O_RDWR)
        defer { out.close() }
        var seen = 0
        for size in 1...log.bytes.count {
            try out.write([log.bytes[size - 1]], at: UInt64(size - 1))
            do {
                let new = try r.refresh()
                seen += new.count
                let whole = log.frames.filter { $0.end <= UInt64(size) }
                #expect(r.frames == whole, "at \(size) bytes")
                #expect(seen == whole.count)
                if size >= 32 {  // (below 32 bytes: see refreshReportsATornFileHeader)
                    let torn = size - log.lastEnd(before: size)
                    #expect(Int(r.tornTailBytes) == torn, "at \(size) bytes: torn \(r.tornTailBytes), want \(torn)")
                }
                if new.count > 0 {
                    #expect(try r.allRecords().map(\.record) == log.records(before: size))
                }
            } catch {
                Issue.record("at \(size) bytes: \(error)")
            }
        }
        #expect(try r.contents() == log.contents)
    }

    /// `tornTailBytes` after a refresh describes the file as it is now, also while the file
    /// header itself is still incomplete.
    @Test func refreshReportsATornFileHeader() throws {
        let dir = TempDir()
        let path = dir.sub("run.rlog")
        let header = FileHeader(created: 1).encode()
        writeBytes(Array(header[..<3]), to: path)
        let r = try LogReader(path: path)
        defer { r.close() }
        #expect(r.tornTailBytes == 3)
        try putBytes(Array(header[..<20]), to: path)
        #expect(try r.refresh().isEmpty)
        #expect(r.tornTailBytes == 20)
        try putBytes(header + [0x52, 0x4C], to: path)
        #expect(try r.refresh().isEmpty)
        #expect(r.tornTailBytes == 2 && r.validEnd == 32)
    }

    /// A writer thread flushing continuously and a follower refreshing as fast as it can: the
    /// follower never sees an error, decodes each new frame once, and ends with every row.
    @Test func followerAndWriterConcurrently() throws {
        final class Done: @unchecked Sendable {
            let lock = NSLock()
            var finished = false
            var error: (any Error)?
        }
        let dir = TempDir()
        let run = dir.sub("run")
        let w = try LogWriter.open(directory: run, configuration: .test)
        let r = try RunDirectory.reader(run)
        defer { r.close() }
        let total = 3_000
        let done = Done()
        let thread = Thread {
            do {
                for s in 0..<total {
                    try w.appendRow(step: Int64(s), timestamp: 0,
                                    values: ["x": .double(Double(s)), "pad": .string(String(repeating: "p", count: s % 50))])
                    if s % 25 == 24 { try w.flush() }
                }
                try w.close()
            } catch {
                done.lock.lock(); done.error = error; done.lock.unlock()
            }
            done.lock.lock(); done.finished = true; done.lock.unlock()
        }
        thread.start()
        var rows: [Int64] = []
        var refreshes = 0
        func follow() throws {
            for f in try r.refresh() {
                for case .history(let row) in try r.records(in: f) { rows.append(row.step) }
            }
            refreshes += 1
        }
        while true {
            done.lock.lock(); let finished = done.finished; done.lock.unlock()
            if finished { break }
            do { try follow() } catch { Issue.record("refresh while the writer runs: \(error)"); break }
        }
        #expect(done.error == nil)
        try follow()
        #expect(rows == (0..<Int64(total)).map { $0 })
        #expect(r.tornTailBytes == 0)
        #expect(refreshes >= 1)
    }

    // MARK: The index

    /// A run with several sessions (so several frames) and a closed writer (so an index).
    static func indexedRun(_ dir: TempDir) throws -> (run: String, frames: [FrameInfo], contents: RunContents) {
        let run = dir.sub("run")
        let w = try LogWriter.open(directory: run, configuration: .test)
        try w.append(.runMetadata(RunMetadata(["id": "idx"])))
        for f in 0..<8 {
            for s in 0..<10 { try w.appendRow(step: Int64(f * 10 + s), timestamp: 0, values: ["x": .int(Int64(s))]) }
            try w.append(.summary(SummaryChange(values: ["f": .int(Int64(f))])))
            try w.flush()
        }
        try w.close()
        #expect(FileManager.default.fileExists(atPath: run + "/run.idx"))
        let scan = try LogReader(path: run + "/run.rlog", options: .init(verifyPayloads: true))  // ignores the index
        defer { scan.close() }
        return (run, scan.frames, try scan.contents())
    }

    static func check(_ run: String, frames: [FrameInfo], contents: RunContents?, _ context: String,
                      sourceLocation: SourceLocation = #_sourceLocation) throws {
        let r = try RunDirectory.reader(run)
        defer { r.close() }
        #expect(r.frames == frames, "\(context): frames", sourceLocation: sourceLocation)
        #expect(r.validEnd == frames.last!.end && r.tornTailBytes == 0, "\(context)", sourceLocation: sourceLocation)
        if let contents { #expect(try r.contents() == contents, "\(context): contents", sourceLocation: sourceLocation) }
    }

    @Test func indexAgreesWithAFullScan() throws {
        let dir = TempDir()
        let (run, frames, contents) = try Self.indexedRun(dir)
        #expect(LogIndex.load(directory: run, log: try FileHandleFD(path: run + "/run.rlog", flags: O_RDONLY),
                              logSize: UInt64(readBytes(run + "/run.rlog").count))?.frames == frames)
        try Self.check(run, frames: frames, contents: contents, "with the index")
        try FileManager.default.removeItem(atPath: run + "/run.idx")
        try Self.check(run, frames: frames, contents: contents, "index deleted")
    }

    @Test func damagedIndexIsIgnored() throws {
        let dir = TempDir()
        let (run, frames, contents) = try Self.indexedRun(dir)
        let idxPath = run + "/run.idx"
        let good = readBytes(idxPath)
        // Every single-byte change anywhere in the index.
        for i in 0..<good.count {
            var bad = good
            bad[i] ^= 0x20
            try putBytes(bad, to: idxPath)
            try Self.check(run, frames: frames, contents: i % 23 == 0 ? contents : nil, "index byte \(i) changed")
        }
        // Truncated, empty, garbage.
        for bad in [Array(good[..<(good.count / 2)]), Array(good.dropLast()), [], Array(repeating: 0x41, count: 500), good + [0]] {
            try putBytes(bad, to: idxPath)
            try Self.check(run, frames: frames, contents: contents, "index of \(bad.count) bytes")
        }
        // Well-formed (valid CRC) but wrong: another version, a covered length past the log's end.
        func resealed(_ b: [UInt8]) -> [UInt8] { Array(b.dropLast(4)) + le32(GoldenVectorTests.referenceCRC(Array(b.dropLast(4)))) }
        var version = good
        version[4] = 2
        writeBytes(resealed(version), to: idxPath)
        try Self.check(run, frames: frames, contents: contents, "index version 2")
        var covered = good
        covered.replaceSubrange(8..<16, with: le64(frames.last!.end + 52))
        writeBytes(resealed(covered), to: idxPath)
        try Self.check(run, frames: frames, contents: contents, "index covering more than its frames")
        // A directory where the index should be.
        try FileManager.default.removeItem(atPath: idxPath)
        try FileManager.default.createDirectory(atPath: idxPath, withIntermediateDirectories: true)
        try Self.check(run, frames: frames, contents: contents, "index is a directory")
    }

    /// A well-formed index whose entries do not match the log (say, copied from another run)
    /// must not make a reader return different values: reading the frame finds the mismatch.
    @Test func indexEntriesAreCheckedAgainstTheLog() throws {
        let dir = TempDir()
        let (run, frames, _) = try Self.indexedRun(dir)
        let idxPath = run + "/run.idx"
        var b = readBytes(idxPath)
        // Entry 1 gets entry 2's header; the last entry (which open checks) is left alone.
        let e1 = 20 + 60, e2 = 20 + 2 * 60
        b.replaceSubrange(e1 + 8..<e1 + 60, with: Array(b[e2 + 8..<e2 + 60]))
        let body = Array(b.dropLast(4))
        writeBytes(body + le32(GoldenVectorTests.referenceCRC(body)), to: idxPath)
        let r = try RunDirectory.reader(run)
        defer { r.close() }
        let e = storeError { _ = try r.contents() }
        #expect(e?.code == .corrupted && e?.offset == frames[1].offset)
    }

    /// A log of fewer than `LogIndex.minimumFrames` frames gets no index (reading its headers
    /// costs what reading an index would, and the run directory is one file smaller); once it
    /// grows to that many, closing writes one that agrees with a full scan.
    @Test func shortLogsHaveNoIndex() throws {
        let dir = TempDir()
        let run = dir.sub("run")
        var w = try LogWriter.open(directory: run, configuration: .test)
        for s in 0..<2 { try w.appendRow(step: Int64(s), timestamp: 0, values: ["x": .int(Int64(s))]); try w.flush() }
        try w.close()
        #expect(!FileManager.default.fileExists(atPath: run + "/run.idx"))
        let short = try RunDirectory.reader(run)
        let shortRows = try short.contents().history.count
        #expect(short.frames.count == 2 && shortRows == 2)
        short.close()
        w = try LogWriter.open(directory: run, configuration: .test)
        for s in 2..<LogIndex.minimumFrames { try w.appendRow(step: Int64(s), timestamp: 0, values: ["x": .int(Int64(s))]); try w.flush() }
        try w.close()
        #expect(FileManager.default.fileExists(atPath: run + "/run.idx"))
        let scan = try LogReader(path: run + "/run.rlog", options: .init(verifyPayloads: true))
        defer { scan.close() }
        #expect(scan.frames.count == LogIndex.minimumFrames)
        try Self.check(run, frames: scan.frames, contents: try scan.contents(), "grown to the minimum")
    }

    @Test func staleIndexAfterTheLogGrew() throws {
        let dir = TempDir()
        let run = dir.sub("run")
        var w = try LogWriter.open(directory: run, configuration: .test)
        // Six frames: logs of fewer than LogIndex.minimumFrames get no index.
        for s in 0..<30 { try w.appendRow(step: Int64(s), timestamp: 0, values: ["x": .int(Int64(s))]); if s % 5 == 4 { try w.flush() } }
        try w.close()
        let oldIndex = readBytes(run + "/run.idx")

        // A second session appends (and a third is killed mid-frame: simulated by a torn tail).
        w = try LogWriter.open(directory: run, configuration: .test)
        for s in 30..<60 { try w.appendRow(step: Int64(s), timestamp: 0, values: ["x": .int(Int64(s))]); if s % 10 == 9 { try w.flush() } }
        try w.append(.config(ConfigChange(values: ["late": true])))
        try w.close()
        writeBytes(oldIndex, to: run + "/run.idx")
        let full = try LogReader(path: run + "/run.rlog", options: .init(verifyPayloads: true))
        let frames = full.frames, contents = try full.contents()
        full.close()
        try Self.check(run, frames: frames, contents: contents, "stale index")
        #expect(contents.history.count == 60 && contents.config == ["late": true])

        // A partial frame after the indexed ones: still a torn tail.
        let bytes = readBytes(run + "/run.rlog")
        let lastFrame = Array(bytes[Int(frames.last!.offset)...])
        writeBytes(bytes + Array(lastFrame.prefix(40)), to: run + "/run.rlog")
        let r = try RunDirectory.reader(run)
        #expect(r.frames == frames && r.tornTailBytes == 40)
        r.close()
        // A writer opened with the stale index cuts the tail and continues after the last frame.
        w = try LogWriter.open(directory: run, configuration: .test)
        #expect(w.recoveredTornBytes == 40)
        #expect(w.writtenFrames == frames)
        try w.appendRow(step: 60, timestamp: 0, values: ["x": 60])
        try w.close()
        try FileManager.default.removeItem(atPath: run + "/run.idx")
        let after = try RunDirectory.reader(run)
        defer { after.close() }
        #expect(try after.contents().history.map(\.step) == Array(0...60))
        #expect(after.frames.map(\.header.sequence) == frames.map(\.header.sequence) + [frames.last!.header.sequence + 1])
    }

    /// FORMAT.md rule 3: the last frame's payload is checked when the log is opened. The
    /// index is only a cache, so it must not change that: with or without it, a damaged last
    /// frame makes the open fail (and a writer must not append after it).
    @Test func indexDoesNotHideADamagedLastFrame() throws {
        let dir = TempDir()
        let (run, frames, _) = try Self.indexedRun(dir)
        let last = frames.last!
        let at = Int(last.offset) + 52 + 2
        let bytes = readBytes(run + "/run.rlog")
        try patch(run + "/run.rlog", at: at, [bytes[at] ^ 0x04])
        let idx = readBytes(run + "/run.idx")
        try FileManager.default.removeItem(atPath: run + "/run.idx")
        let without = storeError { _ = try RunDirectory.reader(run) }
        #expect(without?.code == .corrupted && without?.offset == last.offset)
        writeBytes(idx, to: run + "/run.idx")
        let with = storeError { _ = try RunDirectory.reader(run) }
        #expect(with?.code == .corrupted && with?.offset == last.offset, "the index hid the damaged last frame")
        let writer = storeError { try LogWriter.open(directory: run, configuration: .test).close() }
        #expect(writer?.code == .corrupted, "a writer appended after a damaged frame")
    }

    @Test func indexCoveringMoreThanTheLog() throws {
        let dir = TempDir()
        let (run, frames, _) = try Self.indexedRun(dir)
        // The log loses its last two frames (a restore from an older copy, say).
        let bytes = readBytes(run + "/run.rlog")
        writeBytes(Array(bytes[..<Int(frames[frames.count - 2].offset)]), to: run + "/run.rlog")
        let r = try RunDirectory.reader(run)
        defer { r.close() }
        #expect(r.frames == Array(frames.dropLast(2)))
        #expect(try r.contents().history.count == (frames.count - 2) * 10)
    }

    @Test func indexAfterCompactionAndRewind() throws {
        let dir = TempDir()
        let (run, _, _) = try Self.indexedRun(dir)
        let w = try LogWriter.open(directory: run, configuration: .test)
        try w.rewind(toStep: 35)
        try w.close()
        let before = try RunDirectory.reader(run).contents()
        try Compaction.compact(directory: run)
        let scan = try LogReader(path: run + "/run.rlog", options: .init(verifyPayloads: true))
        defer { scan.close() }
        try Self.check(run, frames: scan.frames, contents: before, "index written by compaction")
        #expect(LogIndex.load(directory: run, log: try FileHandleFD(path: run + "/run.rlog", flags: O_RDONLY),
                              logSize: scan.validEnd)?.frames == scan.frames)
    }
}
