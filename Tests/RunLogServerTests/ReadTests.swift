import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import RunLogStore
import Testing

@testable import RunLogServer

/// The read API against both backends: access, materialized state, listing, history.
@Suite("Read API")
struct ReadTests {
    @Test("reads need a key of the entity unless the server is public-read", arguments: Backend.allCases)
    func readAccess(_ backend: Backend) async throws {
        try await withFixture(backend) { fx, client in
            try await post(client, fx, "r", after: 0, Frames.run(id: "r", count: 1, rowsPerFrame: 3))
            let e = fx.account.entity
            #expect(try await get(client, "/api/v1/entities", key: nil).status == .unauthorized)
            #expect(try await get(client, "/api/v1/projects/\(e)/proj/runs", key: nil).status == .unauthorized)
            #expect(try await get(client, runPath(e, "proj", "r") + "/history?metrics=loss", key: nil).status == .unauthorized)
            #expect(try await get(client, "/api/v1/projects/\(e)/proj/runs", key: fx.other.key).status == .forbidden)
            let mine = try json(try await get(client, "/api/v1/entities", key: fx.account.key))
            #expect(mine.arrayValue?.map { $0["name"] } == [.string(e)])
            #expect(try json(try await get(client, "/api/v1/entities/\(e)/projects", key: fx.account.key)) == [["name": "proj", "runs": 1]])
            // The web UI's cookie carries a key for reads, never for writes.
            var h: HTTPFields = [.cookie: "\(APIKey.cookieName)=\(fx.account.key)"]
            #expect(try await client.execute(uri: "/api/v1/projects/\(e)/proj/runs", method: .get, headers: h).status == .ok)
            h[HTTPField.Name("X-RunLog-After")!] = "1"
            let write = try await client.execute(uri: runPath(e, "proj", "r") + "/frames", method: .post, headers: h,
                                                 body: Frames.body(Frames.run(id: "r", count: 2, rowsPerFrame: 3)))
            #expect(write.status == .unauthorized)
        }
        try await withFixture(backend, publicRead: true) { fx, client in
            try await post(client, fx, "r", after: 0, Frames.run(id: "r", count: 1, rowsPerFrame: 3))
            let e = fx.account.entity
            #expect(try await get(client, "/api/v1/projects/\(e)/proj/runs", key: nil).status == .ok)
            #expect(try await get(client, runPath(e, "proj", "r"), key: nil).status == .ok)
            #expect(try await get(client, runPath(e, "proj", "r") + "/history?metrics=loss", key: nil).status == .ok)
            let all = try json(try await get(client, "/api/v1/entities", key: nil))
            let names = Set((all.arrayValue ?? []).compactMap { $0["name"]?.stringValue })
            #expect(names.isSuperset(of: [e, fx.other.entity]))
            // Public read is not public write.
            #expect(try await post(client, e, "proj", "r", after: 1, key: nil, Frames.body(Frames.run(id: "r", count: 2, rowsPerFrame: 3))).status == .unauthorized)
            // A bad key is still refused rather than ignored.
            #expect(try await get(client, "/api/v1/projects/\(e)/proj/runs", key: APIKey.generate()).status == .unauthorized)
        }
    }

    @Test("metadata, config, summary, tags, state and files are materialized in log order", arguments: Backend.allCases)
    func materialized(_ backend: Backend) async throws {
        try await withFixture(backend) { fx, client in
            let f1 = Frames.frame([
                .runMetadata(RunMetadata(["id": "m", "name": "first name", "group": "sweep-1", "job_type": "train", "host": "box"])),
                .config(ConfigChange(values: ["lr": 0.1, "layers": [64, 64], "optimizer": ["name": "adam", "beta": 0.9]])),
                .tags(["a", "b"]),
                .summary(SummaryChange(values: ["loss": 0.5, "note": "x"])),
            ] + Frames.rows(0..<5), seq: 1)
            let f2 = Frames.frame([
                .runMetadata(RunMetadata(["name": "second name", "notes": "hello"])),
                .config(ConfigChange(values: ["lr": 0.2, "extra": true], removed: ["layers"])),
                .summary(SummaryChange(replace: true, values: ["loss": 0.25, "acc": 0.9])),
                .tags(["b", "c"]),
                .file(FileReference(path: "model.pt", size: 1234, digest: "sha256:ab", policy: "end", timestamp: 5)),
                .exit(ExitRecord(state: "failed", exitCode: 1, runtime: 3.5, timestamp: 6)),
            ], seq: 2)
            try await post(client, fx, "m", after: 0, [f1])
            var run = try await runJSON(client, fx, "m")
            #expect(run["state"] == "running")
            #expect(run["name"] == "first name")
            #expect(run["tags"] == ["a", "b"])
            try await post(client, fx, "m", after: 1, [f2])
            run = try await runJSON(client, fx, "m")
            #expect(run["name"] == "second name")
            #expect(run["notes"] == "hello")
            #expect(run["group"] == "sweep-1")
            #expect(run["job_type"] == "train")
            #expect(run["metadata"]?["host"] == "box")
            #expect(run["config"] == ["lr": 0.2, "extra": true, "optimizer": ["name": "adam", "beta": 0.9]])
            #expect(run["summary"] == ["loss": 0.25, "acc": 0.9])
            #expect(run["tags"] == ["b", "c"])
            #expect(run["state"] == "failed")
            #expect(run["files"] == [["path": "model.pt", "size": 1234, "digest": "sha256:ab", "policy": "end", "t": 5]])
            #expect(run["history_rows"] == 5)

            // A resume after the exit makes the run live again.
            try await post(client, fx, "m", after: 2, [Frames.frame([.resume(ResumeMarker(reason: "resume", nextStep: 5, timestamp: 7))], seq: 3)])
            #expect(try await runJSON(client, fx, "m")["state"] == "running")
            let metrics = try json(try await get(client, runPath(fx.account.entity, "proj", "m") + "/metrics", key: fx.account.key))
            #expect(Set((metrics.arrayValue ?? []).compactMap { $0["name"]?.stringValue }) == ["_timestamp", "acc", "loss"])
        }
    }

    @Test("runs filter by tag, group and state and sort by a summary value", arguments: Backend.allCases)
    func listing(_ backend: Backend) async throws {
        try await withFixture(backend) { fx, client in
            let specs: [(String, Double, [String], String, String?)] = [
                ("r1", 0.3, ["base"], "g1", "finished"),
                ("r2", 0.1, ["base", "best"], "g1", nil),
                ("r3", 0.2, ["other"], "g2", "crashed"),
                ("r4", .nan, [], "g2", nil),
            ]
            for (id, loss, tags, group, exit) in specs {
                var records: [Record] = [
                    .runMetadata(RunMetadata(["id": .string(id), "group": .string(group)])), .tags(tags),
                    .summary(SummaryChange(values: ["loss": .double(loss)])),
                ]
                if let exit { records.append(.exit(ExitRecord(state: exit, exitCode: 0, runtime: 1, timestamp: 1))) }
                try await post(client, fx, id, after: 0, [Frames.frame(records, seq: 1)])
            }
            func ids(_ query: String) async throws -> [String] {
                let r = try await get(client, "/api/v1/projects/\(fx.account.entity)/proj/runs?\(query)", key: fx.account.key)
                #expect(r.status == .ok)
                return (try json(r).arrayValue ?? []).compactMap { $0["id"]?.stringValue }
            }
            #expect(try await ids("sort=summary.loss&order=asc") == ["r2", "r3", "r1", "r4"])
            #expect(try await ids("sort=summary.loss&order=desc") == ["r1", "r3", "r2", "r4"])
            #expect(try await ids("sort=summary.loss&order=asc&limit=2") == ["r2", "r3"])
            #expect(Set(try await ids("tag=base")) == ["r1", "r2"])
            #expect(Set(try await ids("group=g2")) == ["r3", "r4"])
            #expect(try await ids("state=crashed") == ["r3"])
            #expect(Set(try await ids("state=running")) == ["r2", "r4"])
            #expect(try await ids("tag=base&state=finished") == ["r1"])
            let one = try json(try await get(client, "/api/v1/projects/\(fx.account.entity)/proj/runs?tag=best", key: fx.account.key))
            #expect(one[0]?["summary"] == ["loss": 0.1])
            #expect(one[0]?["group"] == "g1")
        }
    }

    @Test("history over a step range, downsampled keeping minima and maxima", arguments: Backend.allCases)
    func historyDownsampling(_ backend: Backend) async throws {
        try await withFixture(backend) { fx, client in
            func loss(_ s: Int64) -> Double { s == 7777 ? 1000 : s == 2222 ? -1000 : sin(Double(s) / 100) }
            var frames: [FrameCodec.StoredFrame] = []
            for i in 0..<10 {
                let start = Int64(i) * 1000
                frames.append(Frames.frame(Frames.rows(start..<start + 1000, loss: loss), seq: UInt64(i + 1)))
            }
            #expect(try await post(client, fx, "h", after: 0, Array(frames[0..<5])).status == .ok)
            #expect(try await post(client, fx, "h", after: 5, Array(frames[5..<10])).status == .ok)

            let h = try await history(client, fx, "h", metrics: "loss,acc", query: "&points=100")
            let l = try #require(h["metrics"]?["loss"])
            #expect(l["count"] == 10000)
            #expect(l["sampled"] == true)
            let steps = l["steps"]!.int64s
            #expect(steps.count <= 100 && steps.count >= 90)
            #expect(steps == steps.sorted())
            #expect(l["max"]!.doubles.max() == 1000)
            #expect(l["min"]!.doubles.min() == -1000)
            // The mean stays inside each bucket's envelope.
            for (i, v) in l["values"]!.doubles.enumerated() { #expect(l["min"]!.doubles[i] <= v && v <= l["max"]!.doubles[i]) }
            #expect(h["metrics"]?["acc"]?["count"] == 10000)

            // A narrow range comes back raw, exactly as logged.
            let raw = try await history(client, fx, "h", query: "&min_step=2200&max_step=2299&points=1000")
            let r = try #require(raw["metrics"]?["loss"])
            #expect(r["sampled"] == false)
            #expect(r["steps"]!.int64s == Array(2200...2299))
            #expect(r["values"]!.doubles == (2200...2299).map { loss(Int64($0)) })
            // A range across a chunk boundary.
            let across = try await history(client, fx, "h", query: "&min_step=990&max_step=1009")
            #expect(across["metrics"]?["loss"]?["steps"]?.int64s == Array(990...1009))

            // Bad parameters are 400.
            #expect(try await get(client, runPath(fx.account.entity, "proj", "h") + "/history?metrics=loss&points=0", key: fx.account.key).status == .badRequest)
            #expect(try await get(client, runPath(fx.account.entity, "proj", "h") + "/history?metrics=loss&min_step=9&max_step=1", key: fx.account.key).status == .badRequest)
            #expect(try await get(client, runPath(fx.account.entity, "proj", "nope"), key: fx.account.key).status == .notFound)
        }
    }

    /// A rewind moves the points after its step out of the live history (splitting the chunk
    /// it cuts through), keeps them as an archived branch, and new points take their place.
    @Test("rewind archives the points after its step", arguments: Backend.allCases)
    func rewind(_ backend: Backend) async throws {
        try await withFixture(backend) { fx, client in
            var frames: [FrameCodec.StoredFrame] = []
            for i in 0..<4 { frames.append(Frames.frame(Frames.rows(Int64(i) * 30..<Int64(i + 1) * 30), seq: UInt64(i + 1))) }  // steps 0…119
            let rewind = Record.rewind(RewindMarker(step: 49, branch: 1, cut: RecordPosition(sequence: 2, index: 20), timestamp: 1))
            frames.append(Frames.frame([rewind] + Frames.rows(50..<70, loss: { Double($0) + 1000 }), seq: 5))
            try await post(client, fx, "rw", after: 0, Array(frames[0..<2]))
            try await post(client, fx, "rw", after: 2, Array(frames[2..<5]))

            let live = try await history(client, fx, "rw", query: "&points=100000")
            let l = try #require(live["metrics"]?["loss"])
            #expect(l["steps"]!.int64s == Array(0..<70))
            let expected: [Double] = (0..<70).map { (s: Int) -> Double in s < 50 ? 1.0 / Double(s + 1) : Double(s) + 1000 }
            #expect(l["values"]!.doubles == expected)
            let archived = try await history(client, fx, "rw", query: "&points=100000&branch=1")
            let a = try #require(archived["metrics"]?["loss"])
            #expect(a["steps"]!.int64s == Array(50..<120))
            #expect(a["values"]!.doubles == (50..<120).map { 1.0 / Double($0 + 1) })
            let run = try await runJSON(client, fx, "rw")
            #expect(run["history_rows"] == 70)
            #expect(run["last_step"] == 69)
            #expect(run["rewinds"] == [["step": 49, "branch": 1, "t": 1, "sequence": 5]])
            // A second rewind to before the first one archives into its own branch.
            let second = Record.rewind(RewindMarker(step: 9, branch: 2, cut: RecordPosition(sequence: 1, index: 10), timestamp: 2))
            try await post(client, fx, "rw", after: 5, [Frames.frame([second], seq: 6)])
            #expect(try await history(client, fx, "rw", query: "&points=100000")["metrics"]?["loss"]?["steps"]?.int64s == Array(0..<10))
            #expect(try await history(client, fx, "rw", query: "&points=100000&branch=2")["metrics"]?["loss"]?["steps"]?.int64s == Array(10..<70))
            #expect(try await runJSON(client, fx, "rw")["history_rows"] == 10)
        }
    }

    /// History chunks may be built when frames arrive or later, when they are first read
    /// (SQLite builds them lazily): either way a reader sees the same points. Two runs get
    /// the same requests, rewinds among them (one in the middle of a request, one whose
    /// frames before it were never read, one to before an earlier rewind, and a compaction's
    /// marker without a cut); one is read after every request, the other only at the end.
    @Test("history reads the same whenever its chunks are built", arguments: Backend.allCases)
    func chunksBuiltLazilyOrEagerly(_ backend: Backend) async throws {
        try await withFixture(backend) { fx, client in
            let rows = { (r: Range<Int64>, k: Double) in Frames.rows(r, loss: { Double($0) * k }) }
            let requests: [(after: UInt64, frames: [FrameCodec.StoredFrame])] = [
                (0, [Frames.frame(rows(0..<40, 1), seq: 1), Frames.frame(rows(40..<80, 1), seq: 2)]),
                (2, [Frames.frame(rows(80..<100, 1), seq: 3),
                     Frames.frame([.rewind(RewindMarker(step: 59, branch: 1, cut: RecordPosition(sequence: 2, index: 20), timestamp: 1))]
                                  + rows(60..<90, 2), seq: 4),
                     Frames.frame(rows(90..<120, 2), seq: 5)]),
                (5, [Frames.frame(rows(120..<130, 2), seq: 6)]),
                (6, [Frames.frame([.rewind(RewindMarker(step: 19, branch: 2, cut: RecordPosition(sequence: 1, index: 20), timestamp: 2))]
                                  + rows(20..<35, 3), seq: 7),
                     Frames.frame([.rewind(RewindMarker(step: 5, branch: 3, cut: nil, timestamp: 3))], seq: 8)]),
                (8, [Frames.frame(rows(35..<50, 3), seq: 9)]),
            ]
            for (after, frames) in requests {
                try await post(client, fx, "eager", after: after, frames)
                _ = try await history(client, fx, "eager", metrics: "loss,acc", query: "&points=100000")
                try await post(client, fx, "lazy", after: after, frames)
            }
            for branch in 0...3 {
                let q = "&points=100000&branch=\(branch)"
                let eager = try await history(client, fx, "eager", metrics: "loss,acc,_timestamp", query: q)["metrics"]
                let lazy = try await history(client, fx, "lazy", metrics: "loss,acc,_timestamp", query: q)["metrics"]
                #expect(lazy == eager, "branch \(branch)")
            }
            // And both are what the rewinds say: live steps 0…19 (k = 1) and 20…49 (k = 3).
            let live = try #require(try await history(client, fx, "lazy", query: "&points=100000")["metrics"]?["loss"])
            #expect(live["steps"]!.int64s == Array(0..<50))
            let expected: [Double] = (0..<50).map { (s: Int) -> Double in Double(s) * (s < 20 ? 1 : 3) }
            #expect(live["values"]!.doubles == expected)
            let branch1 = try #require(try await history(client, fx, "lazy", query: "&points=100000&branch=1")["metrics"]?["loss"])
            #expect(branch1["steps"]!.int64s == Array(60..<100))
            let eagerRun = try await runJSON(client, fx, "eager"), lazyRun = try await runJSON(client, fx, "lazy")
            for k in ["metrics", "rewinds", "history_rows", "last_step", "frames"] {
                #expect(lazyRun[k] == eagerRun[k], "\(k)")
            }
            #expect(lazyRun["history_rows"] == 50)
            #expect(lazyRun["last_step"] == 49)
        }
    }

    /// The server's materialized run is what the store's reader folds from the same log: a
    /// real run written with `LogWriter` (rewinds included), ingested in pieces.
    @Test("a run written with LogWriter reads back as RunContents", arguments: Backend.allCases)
    func mirrorsRunContents(_ backend: Backend) async throws {
        let dir = TempDir()
        var config = LogWriter.Configuration()
        config.maxFrameRows = 40
        config.durability = .none
        let writer = try LogWriter.open(directory: dir.path + "/run", configuration: config)
        try writer.append(.runMetadata(RunMetadata(["id": "w", "project": "proj", "name": "written"])))
        try writer.append(.config(ConfigChange(values: ["lr": 0.1, "depth": 3])))
        try writer.append(.tags(["x"]))
        for s in 0..<150 { try writer.appendRow(step: Int64(s), values: ["loss": .double(Double(s) * 0.5), "step_int": .int(Int64(s))]) }
        try writer.flush()
        try writer.rewind(toStep: 99)
        for s in 100..<130 { try writer.appendRow(step: Int64(s), values: ["loss": .double(-Double(s)), "label": .string("s\(s)")]) }
        try writer.append(.summary(SummaryChange(values: ["loss": -129.0])))
        try writer.append(.config(ConfigChange(values: ["depth": 4], removed: ["lr"])))
        try writer.append(.exit(ExitRecord(state: "finished", exitCode: 0, runtime: 2, timestamp: 3)))
        try writer.close()
        let reader = try LogReader(path: RunDirectory.logPath(dir.path + "/run"))
        let contents = try reader.contents()
        let stored = try reader.frames.map { try reader.storedFrame($0) }
        let seqs = reader.frames.map(\.header.sequence)
        reader.close()

        try await withFixture(backend) { fx, client in
            var after: UInt64 = 0
            for start in stride(from: 0, to: stored.count, by: 2) {
                let end = min(start + 2, stored.count)
                let r = try await post(client, fx.account.entity, "proj", "w", after: after, key: fx.account.key, Frames.body(stored[start..<end].flatMap { $0 }))
                #expect(r.status == .ok, "\(String(buffer: r.body))")
                after = seqs[end - 1]
            }
            let run = try await runJSON(client, fx, "w")
            #expect(run["config"] == .object(contents.config))
            #expect(run["summary"] == .object(contents.summary))
            #expect(run["tags"] == .array(contents.tags.map { .string($0) }))
            #expect(run["metadata"] == .object(contents.metadata))
            #expect(run["state"] == "finished")
            #expect(run["history_rows"] == .int(Int64(contents.history.count)))
            #expect(run["last_step"] == .int(contents.lastStep!))
            #expect(run["rewinds"]?.count == contents.rewinds.count)

            for metric in ["loss", "step_int", "label"] {
                let h = try await history(client, fx, "w", metrics: metric, query: "&points=100000")
                let live = contents.history.filter { $0.values[metric] != nil }
                #expect(h["metrics"]?[metric]?["steps"]?.int64s == live.map(\.step), "\(metric) live steps")
                let expected = live.map { $0.values[metric]! }
                let got = h["metrics"]?[metric]?["values"]?.arrayValue ?? []
                #expect(got.map { $0.doubleValue ?? .nan } == expected.map { $0.doubleValue ?? .nan } || got == expected, "\(metric) live values")
            }
            for (branch, rows) in contents.archived {
                let h = try await history(client, fx, "w", query: "&points=100000&branch=\(branch)")
                #expect(h["metrics"]?["loss"]?["steps"]?.int64s == rows.filter { $0.values["loss"] != nil }.map(\.step))
            }
        }
    }

    @Test("forks keep their lineage both ways", arguments: Backend.allCases)
    func forkLineage(_ backend: Backend) async throws {
        let dir = TempDir()
        var config = LogWriter.Configuration()
        config.maxFrameRows = 25
        config.durability = .none
        let source = dir.path + "/parent"
        let writer = try LogWriter.open(directory: source, configuration: config)
        try writer.append(.runMetadata(RunMetadata(["id": "parent", "project": "proj", "name": "parent"])))
        try writer.append(.config(ConfigChange(values: ["lr": 0.1])))
        for s in 0..<100 { try writer.appendRow(step: Int64(s), values: ["loss": .double(Double(s))]) }
        try writer.close()
        try RunDirectory.fork(source: source, atStep: 40, to: dir.path + "/child", metadata: RunMetadata(["id": "child", "name": "child"]))
        let childWriter = try LogWriter.open(directory: dir.path + "/child", configuration: config)
        for s in 41..<60 { try childWriter.appendRow(step: Int64(s), values: ["loss": .double(Double(s) + 0.5)]) }
        try childWriter.close()

        func frames(_ d: String) throws -> [UInt8] {
            let r = try LogReader(path: RunDirectory.logPath(d))
            defer { r.close() }
            return try r.frames.flatMap { try r.storedFrame($0) }
        }
        let parentBody = try frames(source), childBody = try frames(dir.path + "/child")
        try await withFixture(backend) { fx, client in
            #expect(try await post(client, fx.account.entity, "proj", "parent", after: 0, key: fx.account.key, Frames.body(parentBody)).status == .ok)
            #expect(try await post(client, fx.account.entity, "proj", "child", after: 0, key: fx.account.key, Frames.body(childBody)).status == .ok)
            let child = try await runJSON(client, fx, "child")
            #expect(child["fork"] == ["source": "parent", "project": "proj", "step": 40])
            #expect(child["config"] == ["lr": 0.1])
            #expect(child["name"] == "child")
            let parent = try await runJSON(client, fx, "parent")
            #expect(parent["forks"] == [["project": "proj", "id": "child", "step": 40]])
            #expect(parent["fork"] == .null)
            let h = try await history(client, fx, "child", query: "&points=100000")
            #expect(h["metrics"]?["loss"]?["steps"]?.int64s == Array(0..<60))
            let expected: [Double] = (0..<60).map { (s: Int) -> Double in s <= 40 ? Double(s) : Double(s) + 0.5 }
            #expect(h["metrics"]?["loss"]?["values"]?.doubles == expected)
            let list = try json(try await get(client, "/api/v1/projects/\(fx.account.entity)/proj/runs?sort=name", key: fx.account.key))
            #expect(list[0]?["fork"] == ["source": "parent", "project": "proj", "step": 40])
        }
    }

    @Test("raw frames read back as stored", arguments: Backend.allCases)
    func rawFrames(_ backend: Backend) async throws {
        try await withFixture(backend) { fx, client in
            let frames = Frames.run(id: "x", count: 5, rowsPerFrame: 4)
            try await post(client, fx, "x", after: 0, frames)
            let r = try await get(client, runPath(fx.account.entity, "proj", "x") + "/frames?after=2&limit=2", key: fx.account.key)
            #expect(r.status == .ok)
            #expect(Array(r.body.readableBytesView) == frames[2].bytes + frames[3].bytes)
            #expect(r.headers[HTTPField.Name("X-RunLog-Last")!] == "4")
        }
    }
}
