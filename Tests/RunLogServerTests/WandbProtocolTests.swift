import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import RunLogStore
import Testing

@testable import RunLogServer

/// The rules of the W&B translation, without a server.
@Suite struct WandbTranslationTests {
    func stream(_ files: [String: (Int64, [String])], complete: Bool = false, exitCode: Int64? = nil, preempting: Bool = false) throws -> WandbTranslation.FileStream {
        var o: [String: Value] = [:]
        var f: [String: Value] = [:]
        for (name, (offset, lines)) in files { f[name] = .object(["offset": .int(offset), "content": .array(lines.map { .string($0) })]) }
        o["files"] = .object(f)
        if complete { o["complete"] = true }
        if let exitCode { o["exitcode"] = .int(exitCode) }
        if preempting { o["preempting"] = true }
        return try WandbTranslation.FileStream(.object(o))
    }

    func historyRows(_ records: [Record]) -> [HistoryRow] {
        records.compactMap { if case .history(let r) = $0 { r } else { nil } }
    }

    @Test func historyLinesArePositionalAndRetriesAreSkipped() throws {
        var book = WandbRunBook()
        let lines = (0..<5).map { "{\"_step\":\($0),\"loss\":\(Double($0) / 2),\"_timestamp\":1700000000.5,\"_runtime\":1.5}" }
        let first = WandbTranslation.fileStreamRecords(try stream(["wandb-history.jsonl": (0, Array(lines[0..<3]))]), now: 0, book: &book)
        #expect(historyRows(first.records).map(\.step) == [0, 1, 2])
        #expect(book.historyLines == 3)
        // A retry of the same request, then a request that overlaps it: only new lines are kept.
        let retry = WandbTranslation.fileStreamRecords(try stream(["wandb-history.jsonl": (0, Array(lines[0..<3]))]), now: 0, book: &book)
        #expect(retry.records.isEmpty)
        #expect(retry.duplicateLines == 3)
        let overlap = WandbTranslation.fileStreamRecords(try stream(["wandb-history.jsonl": (2, Array(lines[2..<5]))]), now: 0, book: &book)
        #expect(historyRows(overlap.records).map(\.step) == [3, 4])
        #expect(overlap.duplicateLines == 1)
        #expect(book.historyLines == 5)
        #expect(book.lastHistory == lines[4])
        // The book itself is the last record, so counts and rows commit together.
        guard case .runMetadata(let m)? = overlap.records.last else { Issue.record("no book record"); return }
        #expect(WandbRunBook(metadata: m.fields) == book)
    }

    @Test func stepsMustIncrease() throws {
        // A second session of the same run id that restarts at step 0 (an offline resume, or
        // the original session re-sent after a rewind) adds no row at or before the last step.
        var book = WandbRunBook(metadata: [:], lastStep: 9)
        let out = WandbTranslation.fileStreamRecords(
            try stream(["wandb-history.jsonl": (10, ["{\"_step\":3}", "{\"_step\":9}", "{\"_step\":10}", "{\"_step\":10}", "{\"_step\":12}"])]),
            now: 0, book: &book)
        #expect(historyRows(out.records).map(\.step) == [10, 12])
        #expect(out.outOfOrderLines == 3)
        #expect(book.lastStep == 12 && book.historyLines == 15)
    }

    @Test func historyRowKeepsValuesExactlyAndTakesStepAndTime() throws {
        let row = try WandbTranslation.historyRow(
            "{\"_step\":7,\"_timestamp\":1700000000.25,\"_runtime\":3,\"big\":9007199254740993,\"nan\":NaN,\"inf\":-Infinity,\"nested\":{\"a\":1},\"dot.key\":true}",
            index: 0)
        #expect(row.step == 7)
        #expect(row.timestamp == 1_700_000_000_250_000)
        #expect(row.values["big"] == .int(9_007_199_254_740_993))
        #expect(row.values["nan"]?.doubleValue?.isNaN == true)
        #expect(row.values["inf"] == .double(-.infinity))
        #expect(row.values["nested"] == .object(["a": 1]))
        #expect(row.values["dot.key"] == true)
        #expect(row.values["_runtime"] == 3)
        #expect(row.values["_step"] == nil && row.values["_timestamp"] == nil)
        // Without _step, the line's offset is the step.
        #expect(try WandbTranslation.historyRow("{\"x\":1}", index: 42).step == 42)
        #expect(throws: WandbProtocolError.self) { try WandbTranslation.historyRow("[1,2]", index: 0) }
    }

    @Test func badLinesAreReportedAndTheOthersKept() throws {
        var book = WandbRunBook()
        let out = WandbTranslation.fileStreamRecords(
            try stream(["wandb-history.jsonl": (0, ["{\"_step\":0,\"a\":1}", "not json", "{\"_step\":2,\"a\":3}"])]), now: 0, book: &book)
        #expect(historyRows(out.records).map(\.step) == [0, 2])
        #expect(out.rejectedLines.count == 1)
        #expect(book.historyLines == 3, "a rejected line still takes its position")
    }

    @Test func consoleEventsSummaryAndCompletion() throws {
        var book = WandbRunBook()
        let out = WandbTranslation.fileStreamRecords(
            try stream([
                "output.log": (0, ["2026-11-26T17:46:21.283125 starting", "ERROR 2026-11-26T17:46:22.000001 oops", "no time here"]),
                "wandb-events.jsonl": (0, ["{\"system.cpu\":12.5,\"_timestamp\":1700000001,\"_runtime\":1,\"_wandb\":true}"]),
                "wandb-summary.json": (0, ["{\"loss\":0.5,\"_runtime\":12.5,\"_wandb\":{\"runtime\":12}}"]),
            ], complete: true, exitCode: 3, preempting: true), now: 99, book: &book)
        let console = out.records.compactMap { if case .console(let c) = $0 { c } else { nil } }
        #expect(console.map(\.text) == ["starting", "oops", "no time here"])
        #expect(console.map(\.stream) == [.stdout, .stderr, .stdout])
        #expect(console[0].timestamp == 1_795_715_181_283_125)
        #expect(console[1].timestamp == 1_795_715_182_000_001)
        #expect(console[2].timestamp == 99)
        let samples = out.records.compactMap { if case .systemMetrics(let s) = $0 { s } else { nil } }
        #expect(samples.count == 1 && samples[0].values == ["system.cpu": 12.5] && samples[0].timestamp == 1_700_000_001_000_000)
        let summary = out.records.compactMap { if case .summary(let s) = $0 { s } else { nil } }
        #expect(summary.count == 1 && summary[0].replace && summary[0].values == ["loss": 0.5, "_runtime": 12.5])
        let exits = out.records.compactMap { if case .exit(let e) = $0 { e } else { nil } }
        #expect(exits.count == 1 && exits[0].state == "failed" && exits[0].exitCode == 3 && exits[0].runtime == 12.5)
        #expect(out.records.contains { if case .runMetadata(let m) = $0 { m["preempting"] == true } else { false } })
        #expect(book.logLines == 3 && book.eventsLines == 1)
        // A heartbeat writes nothing.
        var b2 = WandbRunBook()
        #expect(WandbTranslation.fileStreamRecords(try stream([:]), now: 0, book: &b2).records.isEmpty)
    }

    @Test func configIsUnwrappedAndTheClientsObjectSplitOff() throws {
        let (values, wandb) = try WandbTranslation.splitConfig(
            "{\"lr\":{\"value\":0.001},\"opt\":{\"value\":{\"name\":\"adamw\"}},\"bare\":3,\"_wandb\":{\"value\":{\"t\":{\"1\":[2]},\"branch_point\":{\"run_id\":\"abc\",\"step\":20}}}}")
        #expect(values == ["lr": 0.001, "opt": ["name": "adamw"], "bare": 3])
        #expect(WandbTranslation.branchPoint(wandb)! == ("abc", 20))
        #expect(wandb["t"] == ["1": [2]])
        #expect(throws: WandbProtocolError.self) { try WandbTranslation.splitConfig("{not json") }
    }

    @Test func upsertIsAPatch() throws {
        var book = WandbRunBook()
        let key = RunKey(entity: "e", project: "p", run: "r1")
        let first = try WandbTranslation.upsertRecords(
            try WandbTranslation.Upsert(["name": "r1", "displayName": "nice-run", "tags": ["a", "b"], "notes": "n", "groupName": "g",
                                     "config": "{\"lr\":{\"value\":1},\"_wandb\":{\"value\":{\"t\":{\"x\":1}}}}"]),
            key: key, isNew: true, now: 5, book: &book)
        guard case .runMetadata(let m)? = first.first else { Issue.record("no metadata"); return }
        #expect(m["name"] == "nice-run" && m["notes"] == "n" && m["group"] == "g" && m["start_time"] == 5 && m["id"] == "r1")
        #expect(first.contains(.tags(["a", "b"])))
        #expect(first.contains(.config(ConfigChange(values: ["lr": 1]))))
        #expect(book.telemetry == ["x": 1])
        // A later upsert with only name and config changes only the config: no tags record, no name.
        let later = try WandbTranslation.upsertRecords(
            try WandbTranslation.Upsert(["name": "r1", "config": "{\"lr\":{\"value\":2}}"]), key: key, isNew: false, now: 6, book: &book)
        #expect(!later.contains { if case .tags = $0 { true } else { false } })
        guard case .runMetadata(let m2)? = later.first else { Issue.record("no metadata"); return }
        #expect(m2["name"] == nil && m2["start_time"] == nil)
        #expect(later.contains(.config(ConfigChange(values: ["lr": 2]))))
        #expect(book.telemetry == ["x": 1], "telemetry survives an upsert without it")
    }

    @Test func isoTimes() {
        #expect(WandbTranslation.parseISO("1970-01-01T00:00:01") == 1_000_000)
        #expect(WandbTranslation.parseISO("1970-01-01T00:00:01.5Z") == 1_500_000)
        #expect(WandbTranslation.parseISO("2026-11-26T17:46:21.283125") == 1_795_715_181_283_125)
        #expect(WandbTranslation.parseISO("starting") == nil)
        #expect(WandbTranslation.parseISO("2026-11-26T17:46:2x") == nil)
    }

    @Test func uploadSignatures() {
        let s = UploadSigner(key: Array(repeating: 7, count: 32))
        let sig = s.signature(["run", "e", "p", "r", "f.txt"], expires: 100)
        #expect(s.verify(["run", "e", "p", "r", "f.txt"], expires: 100, signature: sig, now: 50))
        #expect(!s.verify(["run", "e", "p", "r", "f.txt"], expires: 100, signature: sig, now: 101), "expired")
        #expect(!s.verify(["run", "e", "p", "r", "g.txt"], expires: 100, signature: sig, now: 50), "another file")
        #expect(!s.verify(["run", "e", "p", "r", "f.txt"], expires: 200, signature: sig, now: 50), "another expiry")
        #expect(!UploadSigner(key: Array(repeating: 8, count: 32)).verify(["run", "e", "p", "r", "f.txt"], expires: 100, signature: sig, now: 50))
    }

    @Test func blobNamesCannotEscape() throws {
        let b = BlobStore(root: "/x")
        #expect(try b.runFile(RunKey(entity: "e", project: "p", run: "r"), "media/images/a.png") == "/x/runs/e/p/r/media/images/a.png")
        for bad in ["../etc/passwd", "/abs", "a//b", "a/./b", "", "a/.."] {
            #expect(throws: ServerError.self, "\(bad)") { try b.runFile(RunKey(entity: "e", project: "p", run: "r"), bad) }
        }
    }
}

/// The recorded conversations of the real wandb 0.31.0 client (`Fixtures/wandb-transcripts`),
/// replayed against the server: every request must get an answer the client accepts, and
/// the runs must end in the state the recording's server held afterwards
/// (`mock-state-after.json`), as seen through RunLog's read API.
@Suite struct WandbTranscriptTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/wandb-transcripts")

    @Test(arguments: Backend.allCases) func replayedConversationsBuildTheRecordedRuns(_ backend: Backend) async throws {
        try await withFixture(backend) { fx, client in
            // Names unique per test, so that runs on a shared PostgreSQL database never meet.
            let user = unique("mock-user"), team = unique("fixture-team")
            _ = try await fx.store.ensureAccount(user: user, entity: user)
            let userID = try await fx.store.ensureAccount(user: user, entity: team)
            let key = APIKey.generate()
            try await fx.store.addKey(hash: APIKey.hash(key), hint: APIKey.hint(key), userID: userID)
            let basic = "Basic " + Data("api:\(key)".utf8).base64EncodedString()
            func rename(_ s: String) -> String { s.replacingOccurrences(of: "fixture-team", with: team).replacingOccurrences(of: "mock-user", with: user) }

            for name in ["a-sync-offline-basic", "b-online-run", "c-resume-must", "d-fork-from", "e-resume-from"] {
                let text = try String(contentsOf: Self.directory.appendingPathComponent(name + ".jsonl"), encoding: .utf8)
                var uploadURLs: [String: String] = [:]
                var firstUpsert = true
                for line in text.split(separator: "\n") {
                    let entry = try JSONParser.parse(rename(String(line)))
                    let path = entry["path"]!.stringValue!
                    let op = entry["op"]!.stringValue!
                    if entry["method"]?.stringValue == "PUT" {
                        let file = String(op.dropFirst(4))
                        let url = try #require(uploadURLs[file], "\(name): no upload URL for \(file)")
                        let body = entry["body"]?.stringValue ?? ""
                        let r = try await client.execute(uri: url, method: .put, headers: [:], body: ByteBuffer(string: body))
                        #expect(r.status == .ok, "\(name) PUT \(file): \(String(buffer: r.body))")
                        continue
                    }
                    let body = entry["body"]!.description
                    let r = try await client.execute(uri: path, method: .post, headers: [.authorization: basic, .contentType: "application/json"],
                                                     body: ByteBuffer(string: body))
                    #expect(r.status == .ok, "\(name) \(op): \(r.status) \(String(buffer: r.body))")
                    let answer = try json(r)
                    #expect(answer["errors"] == nil, "\(name) \(op): \(String(buffer: r.body))")
                    switch op {
                    case "CreateRunFiles":
                        for f in answer["data"]?["createRunFiles"]?["files"]?.arrayValue ?? [] {
                            let u = f["uploadUrl"]!.stringValue!
                            #expect(u.hasPrefix("http://"), "upload URLs are absolute")
                            // The router client takes the path and query only.
                            let pathStart = u.range(of: "/storage/")!.lowerBound
                            uploadURLs[f["name"]!.stringValue!] = String(u[pathStart...])
                        }
                        #expect(answer["data"]?["createRunFiles"]?["files"]?.count == entry["body"]?["variables"]?["files"]?.count,
                                "one URL per requested file")
                    case "UpsertBucket":
                        // The client sets its history offset from the first answer (and ignores
                        // later ones): it must match the recording.
                        let recorded = entry["response_body"]?["data"]?["upsertBucket"]?["bucket"]?["historyLineCount"]?.intValue
                        let ours = answer["data"]?["upsertBucket"]?["bucket"]?["historyLineCount"]?.intValue
                        if firstUpsert { #expect(ours == recorded, "\(name) UpsertBucket historyLineCount") }
                        firstUpsert = false
                    case "RunResumeStatus":
                        let b = answer["data"]?["model"]?["bucket"]
                        for field in ["historyLineCount", "eventsLineCount", "logLineCount", "config", "summaryMetrics", "historyTail", "eventsTail"] {
                            #expect(b?[field] != nil && b?[field] != .null, "RunResumeStatus.\(field) must be non-null")
                        }
                        let recorded = entry["response_body"]!["data"]!["model"]!["bucket"]!
                        #expect(b?["historyLineCount"] == recorded["historyLineCount"])
                        #expect(b?["logLineCount"] == recorded["logLineCount"])
                        #expect(b?["eventsLineCount"] == recorded["eventsLineCount"])
                    case "RewindRun":
                        let recorded = entry["response_body"]?["data"]?["rewindRun"]?["rewoundRun"]?["historyLineCount"]
                        #expect(answer["data"]?["rewindRun"]?["rewoundRun"]?["historyLineCount"] == recorded)
                    default: break
                    }
                }
            }

            // The state the recording's server held afterwards.
            let expected = try JSONParser.parse(rename(try String(contentsOf: Self.directory.appendingPathComponent("mock-state-after.json"), encoding: .utf8)))
            for (path, want) in expected.objectValue! {
                let r = try await get(client, "/api/v1/runs/" + path, key: key)
                #expect(r.status == .ok, "\(path)")
                let got = try json(r)
                #expect(got["history_rows"]?.intValue == want["history_lines"]?.intValue, "\(path) history rows")
                #expect(got["last_step"]?.intValue == want["history_steps"]?[1]?.intValue, "\(path) last step")
                #expect(got["state"]?.stringValue == want["state"]?.stringValue, "\(path) state")
                #expect(got["tags"] == want["tags"], "\(path) tags")
                if let notes = want["notes"]?.stringValue { #expect(got["notes"]?.stringValue == notes, "\(path) notes") }
                let wantConfig = Set(want["config_keys"]!.arrayValue!.compactMap(\.stringValue)).subtracting(["_wandb"])
                #expect(Set(got["config"]?.objectValue?.keys.map { $0 } ?? []) == wantConfig, "\(path) config keys")
                for (k, v) in want["summary"]!.objectValue! where k != "_wandb" {
                    #expect(got["summary"]?[k]?.description == v.description, "\(path) summary \(k)")
                }
                if let fork = want["forked_from"], fork != .null {
                    #expect(got["fork"]?["source"] == fork["run_id"], "\(path) fork source")
                    #expect(got["fork"]?["step"]?.intValue == fork["step"]?.intValue, "\(path) fork step")
                }
                let files = Dictionary(uniqueKeysWithValues: (got["files"]?.arrayValue ?? []).map { ($0["path"]!.stringValue!, $0["size"]!.intValue!) })
                for (f, info) in want["files"]!.objectValue! where info["uploaded"] == true {
                    #expect(files[f] == info["size"]?.intValue, "\(path) file \(f)")
                }
            }
        }
    }

    @Test func authAndErrors() async throws {
        try await withFixture(.sqlite) { fx, client in
            func gql(_ body: String, key: String?) async throws -> (HTTPResponse.Status, Value) {
                var h: HTTPFields = [.contentType: "application/json"]
                if let key { h[.authorization] = "Basic " + Data("api:\(key)".utf8).base64EncodedString() }
                let r = try await client.execute(uri: "/graphql", method: .post, headers: h, body: ByteBuffer(string: body))
                return (r.status, try json(r))
            }
            let upsert = "{\"operationName\":\"UpsertBucket\",\"variables\":{\"name\":\"r1\",\"project\":\"p\",\"entity\":\"\(fx.account.entity)\"}}"
            // No key: 401 with a GraphQL error body; an unknown key: 401.
            var (status, body) = try await gql(upsert, key: nil)
            #expect(status == .unauthorized && body["errors"]?[0]?["message"] != nil)
            (status, _) = try await gql(upsert, key: "runlog-" + String(repeating: "x", count: 48))
            #expect(status == .unauthorized)
            // Another entity's key: a GraphQL error, nothing written.
            (status, body) = try await gql(upsert, key: fx.other.key)
            #expect(status == .ok && body["errors"]?[0]?["message"]?.stringValue?.contains("permission") == true)
            #expect(try await fx.store.run(RunKey(entity: fx.account.entity, project: "p", run: "r1")) == nil)
            // Unknown operations: HTTP 200 and a GraphQL error.
            (status, body) = try await gql("{\"operationName\":\"NoSuchOp\",\"variables\":{}}", key: fx.account.key)
            #expect(status == .ok && body["errors"]?[0]?["message"]?.stringValue?.contains("NoSuchOp") == true)
            // Viewer: the key's user and entity; without a key, null.
            (_, body) = try await gql("{\"operationName\":\"Viewer\"}", key: fx.account.key)
            #expect(body["data"]?["viewer"]?["entity"]?.stringValue == fx.account.entity)
            (_, body) = try await gql("{\"operationName\":\"Viewer\"}", key: nil)
            #expect(body["data"]?["viewer"] == .null)
            // entity null: the server picks the key's own entity.
            (_, body) = try await gql("{\"operationName\":\"UpsertBucket\",\"variables\":{\"name\":\"r2\",\"project\":null,\"entity\":null}}", key: fx.account.key)
            #expect(body["data"]?["upsertBucket"]?["bucket"]?["project"]?["entity"]?["name"]?.stringValue == fx.account.entity)
            #expect(body["data"]?["upsertBucket"]?["bucket"]?["project"]?["name"]?.stringValue == "uncategorized")
            // Rewinding a run that does not exist, or by another metric: a GraphQL error.
            (_, body) = try await gql("{\"operationName\":\"RewindRun\",\"variables\":{\"runName\":\"nope\",\"project\":\"p\",\"metricName\":\"_step\",\"metricValue\":3}}", key: fx.account.key)
            #expect(body["errors"] != nil)
            (_, body) = try await gql("{\"operationName\":\"RewindRun\",\"variables\":{\"runName\":\"r2\",\"project\":\"uncategorized\",\"metricName\":\"loss\",\"metricValue\":3}}", key: fx.account.key)
            #expect(body["errors"] != nil)
            // file_stream: a bad body is a 400 and stores nothing; another entity's key is a 403.
            let fsPath = "/files/\(fx.account.entity)/uncategorized/r2/file_stream"
            let bearer: HTTPFields = [.authorization: "Bearer \(fx.account.key)"]
            var r = try await client.execute(uri: fsPath, method: .post, headers: bearer, body: ByteBuffer(string: "{\"files\": [1,"))
            #expect(r.status == .badRequest)
            r = try await client.execute(uri: fsPath, method: .post, headers: [.authorization: "Bearer \(fx.other.key)"], body: ByteBuffer(string: "{}"))
            #expect(r.status == .forbidden)
            // Upload URLs: a tampered one is refused.
            (_, body) = try await gql("{\"operationName\":\"CreateRunFiles\",\"variables\":{\"entity\":\"\(fx.account.entity)\",\"project\":\"uncategorized\",\"run\":\"r2\",\"files\":[\"a.txt\",\"../x\"]}}", key: fx.account.key)
            #expect(body["errors"] != nil, "a file name that escapes the run is refused")
            (_, body) = try await gql("{\"operationName\":\"CreateRunFiles\",\"variables\":{\"entity\":\"\(fx.account.entity)\",\"project\":\"uncategorized\",\"run\":\"r2\",\"files\":[\"a.txt\"]}}", key: fx.account.key)
            let url = body["data"]!["createRunFiles"]!["files"]![0]!["uploadUrl"]!.stringValue!
            let local = String(url[url.range(of: "/storage/")!.lowerBound...])
            r = try await client.execute(uri: local.replacingOccurrences(of: "a.txt", with: "b.txt"), method: .put, headers: [:], body: ByteBuffer(string: "x"))
            #expect(r.status == .forbidden)
            r = try await client.execute(uri: local, method: .put, headers: [:], body: ByteBuffer(string: "hello"))
            #expect(r.status == .ok)
            let run = try await fx.store.run(RunKey(entity: fx.account.entity, project: "uncategorized", run: "r2"))
            #expect(run?.files.first { $0.path == "a.txt" }?.size == 5)
            r = try await client.execute(uri: local.replacingOccurrences(of: "sig=", with: "sig=0"), method: .put, headers: [:], body: ByteBuffer(string: "x"))
            #expect(r.status == .forbidden)
        }
    }
}
