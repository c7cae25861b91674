import Foundation
import Testing
@testable import RunLogStore

@Suite struct WriterReaderTests {
    @Test func roundTripsRecordsAndRows() throws {
        let dir = TempDir()
        let run = dir.sub("run")
        let w = try LogWriter.open(directory: run, configuration: .test)
        try w.append(.runMetadata(RunMetadata(["id": "abc", "project": "p"])))
        try w.append(.config(ConfigChange(values: ["lr": 0.1, "layers": [1, 2, 3]])))
        for s in 0..<100 {
            try w.appendRow(step: Int64(s), timestamp: 1_000 + Int64(s), values: ["loss": .double(1 / Double(s + 1)), "n": .int(Int64(s))])
        }
        try w.appendRow(step: 100, timestamp: 2_000, values: ["nan": .double(.nan), "inf": .double(-.infinity), "s": "x", "z": .null])
        try w.append(.summary(SummaryChange(values: ["loss": 0.01])))
        try w.flush()
        try w.close()

        let r = try RunDirectory.reader(run)
        let c = try r.contents()
        #expect(c.metadata["id"] == "abc")
        #expect(c.config["lr"] == 0.1)
        #expect(c.history.count == 101)
        #expect(c.history[5].values["n"] == .int(5))
        #expect(c.history[5].timestamp == 1_005)
        #expect(c.history[100].values["nan"] == .double(.nan))
        #expect(c.history[100].values["inf"] == .double(-.infinity))
        #expect(c.summary["loss"] == 0.01)
        #expect(try r.row(atStep: 42)?.values["n"] == .int(42))
        #expect(try r.history(from: 98).map(\.step) == [98, 99, 100])
    }

    @Test func rewindArchivesAndForkCopies() throws {
        let dir = TempDir()
        let run = dir.sub("run")
        let w = try LogWriter.open(directory: run, configuration: .test)
        try w.append(.runMetadata(RunMetadata(["id": "src"])))
        for s in 0..<50 { try w.appendRow(step: Int64(s), values: ["x": .int(Int64(s))]) }
        try w.flush()
        for s in 50..<100 { try w.appendRow(step: Int64(s), values: ["x": .int(Int64(s))]) }
        let m = try w.rewind(toStep: 30)
        #expect(m.branch == 1)
        for s in 31..<40 { try w.appendRow(step: Int64(s), values: ["x": .int(Int64(-s))]) }
        try w.close()
        let c = try RunDirectory.reader(run).contents()
        #expect(c.history.map(\.step) == Array(0...39))
        #expect(c.history.last?.values["x"] == .int(-39))
        #expect(c.archived[1]?.map(\.step) == Array(31..<100))

        let fork = dir.sub("fork")
        let result = try RunDirectory.fork(source: run, atStep: 35, to: fork, metadata: RunMetadata(["id": "child"]))
        #expect(result.lastStep == 35)
        let f = try RunDirectory.reader(fork).contents()
        #expect(f.history.map(\.step) == Array(0...35))
        #expect(f.metadata["id"] == "child")
        #expect(f.forkOrigin?.sourceID == "src")
        #expect(f.forkOrigin?.step == 35)

        let before = try RunDirectory.reader(run).contents()
        let res = try Compaction.compact(directory: run)
        #expect(!res.skipped)
        let after = try RunDirectory.reader(run).contents()
        #expect(after == before)
        #expect(try Compaction.compact(directory: run).skipped)
    }

    @Test func secondWriterIsRefused() throws {
        let dir = TempDir()
        let w = try LogWriter.open(directory: dir.sub("run"), configuration: .test)
        #expect(throws: StoreError.self) { try LogWriter.open(directory: dir.sub("run")) }
        do { _ = try LogWriter.open(directory: dir.sub("run")) } catch { #expect(error.code == .locked); #expect(error.message.contains("pid")) }
        try w.close()
        try LogWriter.open(directory: dir.sub("run")).close()
    }
}
