import Foundation
import HTTPTypes
import RunLogStore
import Testing

@testable import RunLogServer

@Suite("JSON")
struct JSONTests {
    @Test func roundTrip() throws {
        let v: Value = [
            "a": 1, "b": -2.5, "c": "x\"y\\z\n\u{1}é😀", "d": [true, false, nil], "e": ["nested": [1, 2, ["k": "v"]]],
            "big": .int(Int64.max), "small": 1e-300, "neg": .int(Int64.min), "empty": [:], "list": [],
        ]
        #expect(try JSONParser.parse(v.description) == v)
        var w = JSONWriter()
        w.value(v)
        #expect(try JSONParser.parse(w.out) == v)
    }

    @Test func parsesEscapesAndNumbers() throws {
        #expect(try JSONParser.parse(#" {"s": "\u00e9\ud83d\ude00\/", "n": 1E3, "i": -0, "f": 0.5} "#)
            == ["s": "é😀/", "n": 1000.0, "i": .double(-0.0), "f": 0.5])
        for bad in ["", "{", "[1,]", "{\"a\"}", "tru", "\"abc", "1 2", "{\"a\":1,}", "[1 2]"] {
            #expect(throws: JSONParseError.self, "\(bad)") { try JSONParser.parse(bad) }
        }
    }

    @Test func nonFiniteNumbersAreStrings() {
        var w = JSONWriter()
        w.doubles([.nan, .infinity, -.infinity, 1.5])
        #expect(w.out == #"["NaN","Infinity","-Infinity",1.5]"#)
    }
}

@Suite("History chunks")
struct HistoryChunkTests {
    @Test func arithmeticStepsCostTwoBytes() throws {
        let c = HistoryChunk.make(metric: "m", branch: 0, steps: Array(stride(from: Int64(10), to: 1010, by: 2)), doubles: (0..<500).map(Double.init), sequence: 7)
        #expect(c.steps.count == 2)
        #expect(c.firstStep == 10 && c.lastStep == 1008 && c.count == 500)
        #expect(c.min == 0 && c.max == 499)
        #expect(try c.decodeSteps() == Array(stride(from: Int64(10), to: 1010, by: 2)))
        #expect(try c.decodeDoubles() == (0..<500).map(Double.init))
        #expect(c.values.count == 1 + 500 * 4)  // small integers are float32 values
    }

    @Test func irregularStepsAndNonFiniteValues() throws {
        let steps: [Int64] = [5, 3, 9, 100, -4]
        let values: [Double] = [1, .nan, -.infinity, 2, -7]
        let c = HistoryChunk.make(metric: "m", branch: 2, steps: steps, doubles: values, sequence: 1)
        #expect(c.firstStep == -4 && c.lastStep == 100)
        #expect(c.min == -7 && c.max == 2)
        #expect(try c.decodeSteps() == steps)
        #expect(try c.decodeDoubles().map(\.bitPattern) == values.map(\.bitPattern))
        let allNaN = HistoryChunk.make(metric: "m", branch: 0, steps: [1], doubles: [.nan], sequence: 1)
        #expect(allNaN.min == nil && allNaN.max == nil)
    }

    @Test func float32ValuesTakeHalfTheBytesBitExact() throws {
        func value(_ i: Int) -> Double {
            if i % 997 == 0 { return .nan }
            if i == 7 { return -0.0 }
            if i == 8 { return .infinity }
            let x: Double = sin(Double(i) / 50) * 3
            return Double(Float(x))
        }
        let values: [Double] = (0..<5000).map(value)
        let c = HistoryChunk.make(metric: "m", branch: 0, steps: Array(0..<5000), doubles: values, sequence: 1)
        #expect(c.values.first == 2)
        #expect(c.values.count == 1 + 5000 * 4)
        #expect(try c.decodeDoubles().map(\.bitPattern) == values.map(\.bitPattern))
        let finite = values.filter(\.isFinite)
        #expect(c.isNumeric && c.max == finite.max() && c.min == finite.min())
        let (kept, moved) = try c.split(after: 2499, into: 1)
        #expect(try kept!.decodeDoubles().map(\.bitPattern) + moved!.decodeDoubles().map(\.bitPattern) == values.map(\.bitPattern))
        // One value that is not a float32 keeps the whole chunk in doubles.
        var doubles = values
        doubles[4321] = 0.1
        let d = HistoryChunk.make(metric: "m", branch: 0, steps: Array(0..<5000), doubles: doubles, sequence: 1)
        #expect(d.values.first == 0)
        #expect(try d.decodeDoubles().map(\.bitPattern) == doubles.map(\.bitPattern))
    }

    @Test func genericValues() throws {
        let c = HistoryChunk.make(metric: "img", branch: 0, steps: [1, 2], generic: ["a", ["w": 3]], sequence: 1)
        #expect(!c.isNumeric)
        let p = try c.decode()
        guard case .generic(let g) = p.values else { Issue.record("not generic"); return }
        #expect(g == ["a", ["w": 3]])
    }

    @Test func splitAtAStep() throws {
        let c = HistoryChunk.make(metric: "m", branch: 0, steps: Array(0..<10), doubles: (0..<10).map { Double($0) * 2 }, sequence: 3)
        let (kept, moved) = try c.split(after: 4, into: 7)
        #expect(try kept!.decodeSteps() == Array(0...4))
        #expect(try moved!.decodeSteps() == Array(5..<10))
        #expect(moved!.branch == 7 && kept!.branch == 0)
        #expect(try moved!.decodeDoubles() == [10, 12, 14, 16, 18])
        #expect(moved!.min == 10 && kept!.max == 8)
        #expect(try c.split(after: 100, into: 1).moved == nil)
        #expect(try c.split(after: -1, into: 1).kept == nil)
    }

    @Test func blockColumnsBecomeChunks() throws {
        let frame = try FrameCodec.encode([
            .history(HistoryRow(step: 0, timestamp: 1_000_000, values: ["a": 1.0, "i": 4])),
            .history(HistoryRow(step: 1, timestamp: 2_000_000, values: ["a": 2.0, "s": "x"])),
            .history(HistoryRow(step: 2, timestamp: 3_000_000, values: ["a": 3.0, "i": 6])),
        ], sequence: 1)
        let prepared = try PreparedFrame.prepare(frame)
        guard case .block(let block, _, let last) = prepared.pieces.first else { Issue.record("no block"); return }
        #expect(block.rowCount == 3 && last == 2)
        let chunks = HistoryChunk.chunks(of: [block], sequence: 1)
        let byName = Dictionary(uniqueKeysWithValues: chunks.map { ($0.metric, $0) })
        #expect(Set(byName.keys) == ["_timestamp", "a", "i", "s"])
        #expect(try byName["i"]!.decodeSteps() == [0, 2])
        #expect(try byName["i"]!.decodeDoubles() == [4, 6])
        #expect(try byName["_timestamp"]!.decodeDoubles() == [1, 2, 3])
        #expect(!byName["s"]!.isNumeric)
    }
}

@Suite("Downsampling")
struct DownsamplerTests {
    func chunks(_ n: Int, per: Int, value: (Int64) -> Double) -> [HistoryChunk] {
        stride(from: 0, to: n, by: per).map { start in
            let steps = (Int64(start)..<Int64(min(start + per, n))).map { $0 }
            return HistoryChunk.make(metric: "m", branch: 0, steps: steps, doubles: steps.map(value), sequence: UInt64(start))
        }
    }

    @Test func keepsExtremes() throws {
        let cs = chunks(100_000, per: 16384) { s in s == 54_321 ? 99 : s == 12_345 ? -99 : Double(s % 7) }
        let s = try Downsampler.series(cs, range: .min ... .max, points: 1000)
        #expect(s.total == 100_000 && s.sampled)
        #expect(s.steps.count <= 1000)
        #expect(s.maxs.max() == 99 && s.mins.min() == -99)
        #expect(s.steps == s.steps.sorted())
        let spike = s.maxs.firstIndex(of: 99)!
        #expect(s.steps[spike] <= 54_321 && (spike + 1 == s.steps.count || s.steps[spike + 1] > 54_321))
    }

    /// Evenly spaced steps take a fast path; it must agree with the general one.
    @Test func fastPathAgreesWithGeneralPath() throws {
        let fast = chunks(50_000, per: 7000) { s in s % 1234 == 0 ? .nan : s == 33_333 ? 1e9 : cos(Double(s) / 77) }
        let general = fast.map { c -> HistoryChunk in
            var d = c
            var blob: [UInt8] = [1]
            var prev: Int64 = 0
            for s in try! c.decodeSteps() { HistoryChunk.appendSVarint(s &- prev, to: &blob); prev = s }
            d.steps = blob
            return d
        }
        #expect(general[0].arithmeticStride == nil && fast[0].arithmeticStride == 1)
        for (range, points) in [(Int64.min...Int64.max, 1000), (1000...40_000, 333), (6999...7001, 2), (-5...12, 7), (49_990...60_000, 3)] {
            let a = try Downsampler.series(fast, range: range, points: points)
            let b = try Downsampler.series(general, range: range, points: points)
            #expect(a.steps == b.steps, "\(range)")
            #expect(a.total == b.total && a.sampled == b.sampled)
            #expect(a.mins.map(\.bitPattern) == b.mins.map(\.bitPattern) && a.maxs.map(\.bitPattern) == b.maxs.map(\.bitPattern))
            #expect(zip(a.values, b.values).allSatisfy { $0.bitPattern == $1.bitPattern || abs($0 - $1) <= 1e-9 * max(1, abs($0)) })
        }
    }

    @Test func rawWhenFewPoints() throws {
        let cs = chunks(50, per: 16) { Double($0) }
        let s = try Downsampler.series(cs, range: 10...19, points: 1000)
        #expect(!s.sampled && s.total == 10)
        #expect(s.steps == Array(10...19) && s.values == (10...19).map(Double.init))
    }

    @Test func nonFiniteBuckets() throws {
        let cs = chunks(1000, per: 1000) { $0 < 500 ? .nan : 1 }
        let s = try Downsampler.series(cs, range: .min ... .max, points: 10)
        #expect(s.values.first!.isNaN)
        #expect(s.values.last == 1)
    }

    @Test func oneMillionStepsQuickly() throws {
        let cs = chunks(1_000_000, per: 16384) { sin(Double($0) / 1000) }
        let clock = ContinuousClock()
        let t = clock.measure { _ = try? Downsampler.series(cs, range: .min ... .max, points: 1000) }
        let s = try Downsampler.series(cs, range: .min ... .max, points: 1000)
        #expect(s.total == 1_000_000 && s.steps.count == 1000)
        // Debug builds are slow; this only guards against accidental quadratic work.
        #expect(t < .seconds(5))
    }
}

@Suite("API keys")
struct APIKeyTests {
    @Test func generatedKeysHaveTheWandbShape() {
        let k = APIKey.generate()
        #expect(k.hasPrefix("runlog-"))
        #expect(APIKey.isWellFormed(k))
        #expect(APIKey.hash(k).count == 32)
        #expect(APIKey.hash(k) != APIKey.hash(APIKey.generate()))
    }

    @Test func shapes() {
        let forty = String(repeating: "a", count: 40)
        #expect(APIKey.isWellFormed(forty))
        #expect(APIKey.isWellFormed("local-" + forty))
        #expect(APIKey.isWellFormed(String(repeating: "Z9_", count: 14)))
        #expect(!APIKey.isWellFormed(String(repeating: "a", count: 39)))
        #expect(!APIKey.isWellFormed("local-" + String(repeating: "a", count: 39)))
        #expect(!APIKey.isWellFormed(forty + "!"))
        #expect(!APIKey.isWellFormed("-" + forty))
    }

    @Test func whereRequestsCarryKeys() {
        #expect(APIKey.fromRequest([.authorization: "Bearer abc"], cookie: false) == "abc")
        let basic = "Basic " + Data("api:secret".utf8).base64EncodedString()
        #expect(APIKey.fromRequest([.authorization: basic], cookie: false) == "secret")
        #expect(APIKey.fromRequest([.cookie: "x=1; runlog_key=k2"], cookie: true) == "k2")
        #expect(APIKey.fromRequest([.cookie: "runlog_key=k2"], cookie: false) == nil)
        #expect(APIKey.fromRequest([:], cookie: true) == nil)
    }

    @Test func createKeyMakesAccounts() async throws {
        let dir = TempDir()
        let db = dir.path + "/keys.db"
        let key = try await createKey(database: db, entity: "team-x", user: "carol")
        #expect(APIKey.isWellFormed(key))
        let principal = try await withServerStore(database: db, logger: testLogger()) { store in
            try await store.principal(keyHash: APIKey.hash(key))
        }
        #expect(principal?.user == "carol")
        let entities: Set<String>? = principal?.entities
        #expect(entities == Set(["team-x", "carol"]))
        await #expect(throws: ServerError.self) { try await createKey(database: db, entity: "bad/name") }
    }
}

@Suite("Materializer")
struct MaterializerTests {
    func prepared(_ records: [Record], _ seq: UInt64) throws -> PreparedFrame {
        try PreparedFrame.prepare(try FrameCodec.encode(records, sequence: seq))
    }

    @Test func gapSkipAndFold() throws {
        let f1 = try prepared([.config(ConfigChange(values: ["a": 1]))] + Frames.rows(0..<3), 1)
        let f2 = try prepared([.config(ConfigChange(values: ["b": 2])), .tags(["t"])] + Frames.rows(3..<5), 2)
        var run = MaterializedRun()
        guard case .gap(let ack) = Materializer.plan(run: run, after: 1, frames: [f2]) else { Issue.record("expected a gap"); return }
        #expect(ack == 0)
        guard case .apply(let p1) = Materializer.plan(run: run, after: 0, frames: [f1, f2]) else { Issue.record("expected a plan"); return }
        #expect(p1.stored == 2 && p1.skipped == 0)
        #expect(p1.run.acknowledged == 2 && p1.run.historyRows == 5 && p1.run.lastStep == 4)
        #expect(p1.run.config == ["a": 1, "b": 2] && p1.run.tags == ["t"])
        #expect(p1.documentsChanged && p1.tagsChanged && !p1.archived)
        run = p1.run
        guard case .apply(let p2) = Materializer.plan(run: run, after: 0, frames: [f1, f2]) else { Issue.record("expected a plan"); return }
        #expect(p2.stored == 0 && p2.skipped == 2 && p2.operations.isEmpty && !p2.documentsChanged)
    }

    @Test func rewindOrdersArchiveAfterEarlierChunks() throws {
        let f = try prepared(Frames.rows(0..<5) + [.rewind(RewindMarker(step: 2, branch: 1, cut: RecordPosition(sequence: 1, index: 3), timestamp: 0))]
                             + Frames.rows(3..<4), 1)
        guard case .apply(let p) = Materializer.plan(run: MaterializedRun(), after: 0, frames: [f]) else { Issue.record("expected a plan"); return }
        let kinds = p.operations.map { op -> String in
            switch op {
            case .frame: "frame"
            case .chunks: "chunks"
            case .archive: "archive"
            case .rewind: "rewind"
            case .file: "file"
            }
        }
        #expect(kinds == ["frame", "chunks", "rewind", "archive", "chunks"])
        #expect(p.archived)
        // A compaction's rewind (no cut) archives nothing.
        let g = try prepared([.rewind(RewindMarker(step: 2, branch: 1, cut: nil, timestamp: 0))], 1)
        guard case .apply(let q) = Materializer.plan(run: MaterializedRun(), after: 0, frames: [g]) else { return }
        #expect(!q.archived)
    }
}

@Suite("SQLite schema")
struct SQLiteSchemaTests {
    /// A database from before lazy chunks (schema 1) holds the chunks of every frame it
    /// acknowledged: migration 2 must say so (`chunked = acknowledged`), or the first read
    /// would build them a second time.
    @Test func migrationKeepsChunksBuiltAtIngest() async throws {
        let dir = TempDir()
        let path = dir.path + "/v1.db"
        let frames = [Frames.frame(Frames.rows(0..<10), seq: 1), Frames.frame(Frames.rows(10..<20), seq: 2)]
        do {
            let db = try SQLiteConnection(path: path)
            try db.exec(SQLiteStore.migrations[0])
            try db.exec("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied INTEGER NOT NULL); INSERT INTO schema_migrations VALUES (1, 0)")
            try db.exec("""
                INSERT INTO entities (id, name, kind, created) VALUES (1, 'e', 'user', 0);
                INSERT INTO projects (id, entity_id, name, created) VALUES (1, 1, 'p', 0);
                INSERT INTO runs (id, project_id, run_id, state, tags, metadata, config, summary, acknowledged, last_step, history_rows, created, updated)
                VALUES (1, 1, 'r', 'running', '[]', '{}', '{}', '{}', 2, 19, 20, 0, 0);
                """)
            for f in frames {
                try db.run("INSERT INTO frames (run, seq, bytes) VALUES (1, ?, ?)", [.int(Int64(f.header.sequence)), .blob(f.bytes)])
                for p in try PreparedFrame.prepare(f).pieces {
                    guard case .block(let b, _, _) = p else { continue }
                    for c in HistoryChunk.chunks(of: b, sequence: f.header.sequence) {
                        try db.run(
                            "INSERT INTO history_chunks (run, metric, branch, first_step, last_step, count, min_value, max_value, seq, steps, vals) VALUES (1, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?)",
                            [.text(c.metric), .int(c.firstStep), .int(c.lastStep), .int(Int64(c.count)), .optional(c.min), .optional(c.max),
                             .int(Int64(c.sequence)), .blob(c.steps), .blob(c.values)])
                    }
                }
            }
        }
        let store = try await SQLiteStore.open(path: path, logger: testLogger())
        let key = RunKey(entity: "e", project: "p", run: "r")
        let loss = try await store.chunks(key, metric: "loss", branch: 0, range: .min ... .max)
        #expect(loss.count == 2 && loss.map(\.count) == [10, 10])
        let metrics = try await store.run(key)?.metrics
        #expect(metrics?.first { $0.name == "loss" }?.count == 20)
        await store.close()
    }
}
