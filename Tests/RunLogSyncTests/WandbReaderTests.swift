import Foundation
import Testing
import RunLogStore
@testable import RunLogSync

// Golden answers: Fixtures/wandb-offline/expected/*, written by wandb 0.31.0's own tools
// (`wandb leet inspect`, the wandb protobuf classes; see Fixtures/wandb-offline/README.md).
// Nothing below hard-codes a fixture value: every expectation is read from a golden file.

/// `Fixtures/<relativePath>`, found by walking up from this file to the directory holding `Fixtures/`.
private func fixtureURL(_ relativePath: String, from file: String = #filePath) -> URL {
    var directory = URL(fileURLWithPath: file).deletingLastPathComponent()
    while directory.path != "/" {
        let fixtures = directory.appendingPathComponent("Fixtures")
        if FileManager.default.fileExists(atPath: fixtures.path) {
            return fixtures.appendingPathComponent(relativePath)
        }
        directory.deleteLastPathComponent()
    }
    fatalError("no Fixtures/ directory above \(file)")
}

private let fixtureRoot = fixtureURL("wandb-offline")

/// The run directories (`offline-run-*`), sorted.
private let runDirectories: [String] = {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: fixtureRoot.path)) ?? []
    return names.filter { $0.hasPrefix("offline-run-") }.sorted()
}()

/// The run directories that have `records.jsonl` / `raw.jsonl` goldens.
private let smallRunDirectories: [String] = runDirectories.filter {
    FileManager.default.fileExists(atPath: expectedURL($0, "raw.jsonl").path)
}

private func expectedURL(_ run: String, _ suffix: String) -> URL {
    fixtureRoot.appendingPathComponent("expected").appendingPathComponent("\(run).\(suffix)")
}

// MARK: Golden JSON

/// A JSON value from a golden file. Integers stay exact (`Int64`), other numbers are doubles.
private indirect enum Golden: Decodable, CustomStringConvertible {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([Golden])
    case object([String: Golden])

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int64.self) { self = .int(i) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([Golden].self) { self = .array(a) }
        else { self = .object(try c.decode([String: Golden].self)) }
    }

    static func load(_ url: URL) throws -> Golden {
        try JSONDecoder().decode(Golden.self, from: Data(contentsOf: url))
    }

    static func lines(_ url: URL) throws -> [Golden] {
        let text = try String(contentsOf: url, encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONDecoder().decode(Golden.self, from: Data($0.utf8)) }
    }

    subscript(key: String) -> Golden? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    var object: [String: Golden] { if case .object(let o) = self { return o }; return [:] }
    var array: [Golden] { if case .array(let a) = self { return a }; return [] }
    var string: String? { if case .string(let s) = self { return s }; return nil }
    var int: Int64? {
        switch self {
        case .int(let i): return i
        case .string(let s): return Int64(s)  // MessageToDict writes int64 fields as strings
        default: return nil
        }
    }
    var double: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }
    var bool: Bool? { if case .bool(let b) = self { return b }; return nil }
    var isNull: Bool { if case .null = self { return true }; return false }

    var description: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return "\(b)"
        case .int(let i): return "\(i)"
        case .double(let d): return "\(d)"
        case .string(let s): return "\"\(s)\""
        case .array(let a): return "[" + a.map(\.description).joined(separator: ",") + "]"
        case .object(let o): return "{" + o.keys.sorted().map { "\"\($0)\":\(o[$0]!)" }.joined(separator: ",") + "}"
        }
    }
}

/// Whether a decoded value is what the golden shows, as `wandb leet` prints values: NaN and
/// the infinities as the strings `"NaN"`, `"Infinity"`, `"-Infinity"`, and an integral float
/// without a fraction (Go prints float64 8625969 as `8625969`; the file has `8.625969e+06`).
/// Otherwise exact: golden integers must be `.int` with the same value, golden fractions
/// `.double` with the same bits. `numeric` also accepts an int for an equal double.
private func matches(_ golden: Golden, _ value: Value, numeric: Bool = false) -> Bool {
    switch (golden, value) {
    case (.null, .null): return true
    case let (.bool(a), .bool(b)): return a == b
    case let (.int(a), .int(b)): return a == b
    case let (.double(a), .double(b)): return a.bitPattern == b.bitPattern
    case let (.int(a), .double(b)): return abs(b) < 0x1p53 && Double(a) == b
    case let (.double(a), .int(b)): return numeric && a == Double(b)
    case let (.string(s), .double(d)):
        return (s == "NaN" && d.isNaN) || (s == "Infinity" && d == .infinity) || (s == "-Infinity" && d == -.infinity)
    case let (.string(a), .string(b)): return a == b
    case let (.array(a), .array(b)):
        return a.count == b.count && zip(a, b).allSatisfy { matches($0, $1, numeric: numeric) }
    case let (.object(a), .object(b)):
        return Set(a.keys) == Set(b.keys) && a.allSatisfy { matches($0.value, b[$0.key]!, numeric: numeric) }
    default: return false
    }
}

private func matches(_ golden: Golden?, _ object: [String: Value], numeric: Bool = false) -> Bool {
    matches(golden ?? .object([:]), .object(object), numeric: numeric)
}

// MARK: Reading helpers

private struct ReadResult {
    var reader: WandbLogReader
    var records: [WandbRecord]
}

private func readAll(_ run: String) throws -> ReadResult {
    var reader = try WandbLogReader(url: fixtureRoot.appendingPathComponent(run))
    let records = try reader.readAll()
    return ReadResult(reader: reader, records: records)
}

private func rawRecords(of url: URL, options: WandbLogReader.Options = .init()) throws -> (WandbLogReader, [WandbRawRecord]) {
    var reader = try WandbLogReader(url: url, options: options)
    var records: [WandbRawRecord] = []
    while let r = try reader.nextRaw() { records.append(r) }
    return (reader, records)
}

/// A scratch directory, removed when the test ends.
private final class TemporaryDirectory {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("wandb-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }

    func write(_ bytes: [UInt8], to name: String) throws -> URL {
        let file = url.appendingPathComponent(name)
        try Data(bytes).write(to: file)
        return file
    }
}

private func fileBytes(_ run: String) throws -> [UInt8] {
    let file = try WandbLogReader.locateLogFile(at: fixtureRoot.appendingPathComponent(run))
    return Array(try Data(contentsOf: file))
}

// MARK: - Golden files

@Suite struct WandbGoldenTests {
    @Test func fixturesArePresent() {
        #expect(runDirectories.count >= 6)
        #expect(smallRunDirectories.count >= 4)
    }

    /// `expected/<run>.counts.json`: records and bytes per type, chunk counts, padding, size.
    @Test(arguments: runDirectories)
    func countsMatch(run: String) throws {
        let golden = try Golden.load(expectedURL(run, "counts.json"))
        let result = try readAll(run)
        let stats = result.reader.statistics

        #expect(result.reader.url.lastPathComponent == golden["file"]?.string)
        #expect(stats.fileBytes == golden["file_bytes"]?.int)
        #expect(Double(stats.fileBytes) / Double(WandbLogReader.blockSize) == golden["blocks_32k"]?.double)
        #expect(stats.records == golden["total_records"]?.int.map(Int.init))
        #expect(result.records.count == stats.records)

        var byType: [String: Int64] = [:]
        var bytesByType: [String: Int64] = [:]
        for (kind, n) in stats.recordsByKind { byType[kind.name] = Int64(n) }
        for (kind, n) in stats.recordBytesByKind { bytesByType[kind.name] = n }
        #expect(byType == golden["records_by_type"]?.object.mapValues { $0.int! })
        #expect(bytesByType == golden["record_bytes_by_type"]?.object.mapValues { $0.int! })

        // The decoded records agree with the raw counts.
        var decodedByType: [String: Int64] = [:]
        for r in result.records { decodedByType[r.kind.name, default: 0] += 1 }
        #expect(decodedByType == byType)

        var chunks: [String: Int64] = [:]
        for (name, n) in [("FULL", stats.chunks.full), ("FIRST", stats.chunks.first), ("MIDDLE", stats.chunks.middle),
                          ("LAST", stats.chunks.last), ("zero_length", stats.chunks.zeroLength)] where n > 0 {
            chunks[name] = Int64(n)
        }
        #expect(chunks == golden["chunks"]?.object.mapValues { $0.int! })
        #expect(stats.paddingBytes == golden["padding_bytes"]?.int)
        #expect(stats.trailingBytes == golden["trailing_bytes"]?.int)
        #expect(result.records.contains { $0.kind == .exit } == golden["has_exit_record"]?.bool)

        // A FIRST chunk without its LAST at the end is a torn tail, reported, not thrown.
        let open = (golden["chunks"]?["FIRST"]?.int ?? 0) - (golden["chunks"]?["LAST"]?.int ?? 0)
        if open > 0 {
            let tail = try #require(result.reader.tornTail)
            #expect(tail.reason == .incompleteRecord)
            #expect(tail.offset + tail.byteCount == stats.fileBytes)
            #expect(tail.offset >= result.records.last.map { $0.offset + Int64($0.byteCount) } ?? 0)
        } else {
            #expect(result.reader.tornTail == nil)
        }
    }

    /// `expected/<run>.counts.txt`: `wandb_reader.py`'s table (records and bytes per type, total).
    @Test(arguments: runDirectories)
    func countsTextMatches(run: String) throws {
        let text = try String(contentsOf: expectedURL(run, "counts.txt"), encoding: .utf8)
        let stats = try readAll(run).reader.statistics
        var rows = 0
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.first == "TOTAL" {
                #expect(Int(fields[1]) == stats.records)
                continue
            }
            #expect(fields.count == 5, "\(line)")
            guard fields.count == 5, let kind = WandbRecordKind(name: String(fields[0])) else {
                Issue.record("unknown record type in \(line)")
                continue
            }
            rows += 1
            #expect(Int(fields[1]) == stats.recordsByKind[kind], "\(line)")
            #expect(Int64(fields[3]) == stats.recordBytesByKind[kind], "\(line)")
        }
        #expect(rows == stats.recordsByKind.count)
    }

    /// `expected/<run>.summary.json`: `wandb leet inspect --summary --json`.
    @Test(arguments: runDirectories)
    func summaryMatches(run: String) throws {
        let golden = try Golden.load(expectedURL(run, "summary.json"))
        let wandbRun = try WandbRun(contentsOf: fixtureRoot.appendingPathComponent(run))

        #expect(wandbRun.state.rawValue == golden["state"]?.string)
        if golden["exit_code"]?.isNull ?? true {
            #expect(wandbRun.exitCode == nil)
        } else {
            #expect(wandbRun.exitCode.map(Int64.init) == golden["exit_code"]?.int)
        }
        #expect(wandbRun.step == golden["step"]?.int)
        #expect(matches(golden["summary"], wandbRun.summary), "summary: \(Value.object(wandbRun.summary)) vs \(golden["summary"]!)")
        #expect(matches(golden["config"], wandbRun.config), "config: \(Value.object(wandbRun.config)) vs \(golden["config"]!)")
        #expect(wandbRun.tags == golden["tags"]?.array.compactMap(\.string))
        #expect(wandbRun.id == golden["run_id"]?.string)
        #expect(wandbRun.project == golden["project"]?.string)
        #expect(wandbRun.entity == golden["entity"]?.string)
        #expect(wandbRun.name == golden["name"]?.string)
        #expect(wandbRun.notes == golden["notes"]?.string)
        #expect(wandbRun.startTime?.description == golden["start_time"]?.string)

        let console = golden["console"]?.array ?? []
        #expect(wandbRun.console.count == golden["console_lines"]?.int.map(Int.init))
        #expect(wandbRun.console.count == console.count)
        for (line, expected) in zip(wandbRun.console, console) {
            #expect(line.text == expected["line"]?.string)
            #expect(line.stream.description == expected["stream"]?.string)
            #expect(line.time?.description == expected["time"]?.string)
        }
    }

    /// `expected/<run>.history.json`: rows, first/last step, contiguity, per-key count/first/last.
    @Test(arguments: runDirectories)
    func historyMatches(run: String) throws {
        let golden = try Golden.load(expectedURL(run, "history.json"))
        let history = try WandbRun(contentsOf: fixtureRoot.appendingPathComponent(run)).history

        #expect(history.count == golden["history_rows"]?.int.map(Int.init))
        #expect(history.first?.step == golden["first_step"]?.int)
        #expect(history.last?.step == golden["last_step"]?.int)
        let contiguous = zip(history, history.dropFirst()).allSatisfy { $1.step == $0.step + 1 }
        #expect(contiguous == golden["steps_contiguous"]?.bool)

        let keys = golden["keys"]?.object ?? [:]
        var seen: Set<String> = []
        for row in history { seen.formUnion(row.values.keys) }
        #expect(seen == Set(keys.keys))
        for (key, expected) in keys {
            let values = history.compactMap { $0.values[key] }
            #expect(Int64(values.count) == expected["count"]?.int, "\(key)")
            if let first = expected["first"] {
                #expect(values.first.map { matches(first, $0) } == true, "\(key) first: \(String(describing: values.first)) vs \(first)")
            }
            if let last = expected["last"] {
                #expect(values.last.map { matches(last, $0) } == true, "\(key) last: \(String(describing: values.last)) vs \(last)")
            }
            // `_step` in the values is the row's step.
            if key == "_step" { #expect(history.allSatisfy { $0.values["_step"] == .int($0.step) }) }
        }
    }

    /// `expected/<run>.raw.jsonl`: every record as the wandb protobuf classes decode it, with
    /// `value_json` kept raw.
    @Test(arguments: smallRunDirectories)
    func rawRecordsMatch(run: String) throws {
        let golden = try Golden.lines(expectedURL(run, "raw.jsonl"))
        let records = try readAll(run).records
        #expect(records.count == golden.count)
        for (record, g) in zip(records, golden) {
            let context = "record \(record.number) \(record.kind)"
            #expect(record.number == g["num"]?.int, "\(context)")
            #expect(record.kind.name == g["_type"]?.string, "\(context)")
            #expect(record.streamID == g["_info"]?["stream_id"]?.string, "\(context)")
            let body = g[record.kind.name] ?? .object([:])
            switch record.content {
            case .history(let h):
                expectItems(h.items, body["item"], context)
                #expect(h.step == body["step"].map { $0["num"]?.int ?? 0 }, "\(context)")
            case .summary(let u), .config(let u):
                expectItems(u.updates, body["update"], context)
                expectItems(u.removals, body["remove"], context)
            case .run(let r):
                #expect(r.runID == (body["run_id"]?.string ?? ""), "\(context)")
                #expect(r.entity == (body["entity"]?.string ?? ""), "\(context)")
                #expect(r.project == (body["project"]?.string ?? ""), "\(context)")
                #expect(r.displayName == (body["display_name"]?.string ?? ""), "\(context)")
                #expect(r.notes == (body["notes"]?.string ?? ""), "\(context)")
                #expect(r.group == (body["run_group"]?.string ?? ""), "\(context)")
                #expect(r.jobType == (body["job_type"]?.string ?? ""), "\(context)")
                #expect(r.host == (body["host"]?.string ?? ""), "\(context)")
                #expect(r.tags == (body["tags"]?.array.compactMap(\.string) ?? []), "\(context)")
                #expect(r.startTime?.protoJSONString == body["start_time"]?.string, "\(context)")
                #expect(r.resume == (body["resume"]?.bool ?? false), "\(context)")
                #expect(r.resumed == (body["resumed"]?.bool ?? false), "\(context)")
                #expect(r.forked == (body["forked"]?.bool ?? false), "\(context)")
                #expect(r.startingStep == (body["starting_step"]?.int ?? 0), "\(context)")
                if let bp = body["branch_point"] {
                    #expect(r.branchPoint == WandbBranchPoint(run: bp["run"]?.string ?? "", value: bp["value"]?.double ?? 0,
                                                              metric: bp["metric"]?.string ?? ""), "\(context)")
                } else {
                    #expect(r.branchPoint == nil, "\(context)")
                }
                expectItems(r.config?.updates ?? [], body["config"]?["update"], context)
            case .output(let o):
                #expect(o.line == (body["line"]?.string ?? ""), "\(context)")
                #expect(o.stream == (body["output_type"]?.string == "STDOUT" ? .stdout : .stderr), "\(context)")
                #expect(o.timestamp?.protoJSONString == body["timestamp"]?.string, "\(context)")
            case .stats(let s):
                expectItems(s.items, body["item"], context)
                #expect(s.timestamp?.protoJSONString == body["timestamp"]?.string, "\(context)")
            case .files(let f):
                let files = body["files"]?.array ?? []
                #expect(f.files.count == files.count, "\(context)")
                for (file, gf) in zip(f.files, files) {
                    #expect(file.path == gf["path"]?.string, "\(context)")
                    #expect(file.type.map { "\($0)".uppercased() } == (gf["type"]?.string ?? "OTHER"), "\(context)")
                    #expect(file.policy.map { "\($0)".uppercased() } == (gf["policy"]?.string ?? "NOW"), "\(context)")
                }
            case .exit(let e):
                #expect(Int64(e.exitCode) == (body["exit_code"]?.int ?? 0), "\(context)")
                #expect(Int64(e.runtime) == (body["runtime"]?.int ?? 0), "\(context)")
            case .header(let h):
                #expect(h.producer == body["version_info"]?["producer"]?.string, "\(context)")
                #expect(h.minConsumer == body["version_info"]?["min_consumer"]?.string, "\(context)")
            case .other:
                #expect([WandbRecordKind.telemetry, .environment].contains(record.kind), "\(context)")
            }
        }
    }

    /// `expected/<run>.records.jsonl`: `wandb leet inspect --json`, values decoded by wandb.
    @Test(arguments: smallRunDirectories)
    func leetRecordsMatch(run: String) throws {
        let golden = try Golden.lines(expectedURL(run, "records.jsonl"))
        let records = try readAll(run).records
        #expect(records.count == golden.count)
        var builder = WandbRun.Builder()
        for (record, g) in zip(records, golden) {
            let context = "record \(record.number) \(record.kind)"
            #expect(record.number == g["num"]?.int, "\(context)")
            #expect(record.kind.name == g["type"]?.string, "\(context)")
            try builder.apply(record)
            let body = g[record.kind.name] ?? .object([:])
            switch record.content {
            case .history(let h):
                let row = try #require(try builder.finish().history.last)
                #expect(matches(body["item"], row.values), "\(context): \(Value.object(row.values)) vs \(body["item"]!)")
                #expect(h.step == body["step"]?["num"]?.int, "\(context)")
            case .summary(let u), .config(let u):
                #expect(matches(body["update"], try flat(u.updates)), "\(context)")
                if let remove = body["remove"] { #expect(Set(u.removals.map(\.flatKey)) == Set(remove.object.keys), "\(context)") }
            case .run(let r):
                #expect(r.runID == body["run_id"]?.string, "\(context)")
                #expect(r.project == body["project"]?.string, "\(context)")
                #expect(r.displayName == (body["display_name"]?.string ?? ""), "\(context)")
                #expect(r.host == (body["host"]?.string ?? ""), "\(context)")
                #expect(r.resume == (body["resume"]?.bool ?? false), "\(context)")
                #expect(r.startTime?.protoJSONString == body["start_time"]?.string, "\(context)")
                #expect(matches(body["config"]?["update"], try flat(r.config?.updates ?? [])), "\(context)")
                if let bp = body["branch_point"] {
                    #expect(r.branchPoint?.run == bp["run"]?.string, "\(context)")
                    #expect(r.branchPoint?.value == bp["value"]?.double, "\(context)")
                    #expect(r.branchPoint?.metric == bp["metric"]?.string, "\(context)")
                }
            case .output(let o):
                #expect(o.line == body["line"]?.string, "\(context)")
                #expect(o.stream.map { "\($0)".uppercased() } == body["output_type"]?.string, "\(context)")
                #expect(o.timestamp?.protoJSONString == body["timestamp"]?.string, "\(context)")
            case .stats(let s):
                #expect(matches(body["item"], try flat(s.items), numeric: true), "\(context)")
                #expect(s.timestamp?.protoJSONString == body["timestamp"]?.string, "\(context)")
            case .files(let f):
                #expect(f.files.map(\.path) == body["files"]?.array.compactMap { $0["path"]?.string }, "\(context)")
            case .exit(let e):
                #expect(Int64(e.exitCode) == body["exit_code"]?.int, "\(context)")
            case .header(let h):
                #expect(h.producer == body["version_info"]?["producer"]?.string, "\(context)")
            case .other:
                break
            }
        }
    }

    /// The run record's markers: resume flag, branch point, fork versus rewind.
    @Test(arguments: smallRunDirectories)
    func branchAndResumeMarkers(run: String) throws {
        let golden = try Golden.lines(expectedURL(run, "raw.jsonl"))
        let runRecord = try #require(golden.first { $0["_type"]?.string == "run" }?["run"])
        let wandbRun = try WandbRun(contentsOf: fixtureRoot.appendingPathComponent(run))
        #expect(wandbRun.resume == (runRecord["resume"]?.bool ?? false))
        if let bp = runRecord["branch_point"] {
            #expect(wandbRun.branchPoint?.run == bp["run"]?.string)
            #expect(wandbRun.branchPoint?.value == bp["value"]?.double)
            #expect(wandbRun.branchPoint?.metric == bp["metric"]?.string)
            #expect(wandbRun.branchKind == (bp["run"]?.string == runRecord["run_id"]?.string ? .rewind : .fork))
            // The `_wandb` config entry carries the branch point too, and is kept out of `config`.
            #expect(wandbRun.internalConfig["branch_point"]?["run_id"] == bp["run"]?.string.map(Value.string))
        } else {
            #expect(wandbRun.branchPoint == nil)
            #expect(wandbRun.branchKind == nil)
        }
        #expect(wandbRun.config["_wandb"] == nil)
        #expect(wandbRun.summary["_wandb"] == nil)
    }

    /// Every integer `value_json` survives exactly (2^53+1 included), and nested keys keep
    /// their path.
    @Test(arguments: smallRunDirectories)
    func integersAndPathsAreExact(run: String) throws {
        let golden = try Golden.lines(expectedURL(run, "raw.jsonl")).filter { $0["_type"]?.string == "history" }
        let history = try WandbRun(contentsOf: fixtureRoot.appendingPathComponent(run)).history
        #expect(history.count == golden.count)
        for (row, g) in zip(history, golden) {
            for item in g["history"]?["item"]?.array ?? [] {
                let path = item["nested_key"]?.array.compactMap(\.string) ?? [item["key"]?.string ?? ""]
                let key = path.joined(separator: ".")
                #expect(row.path(of: key) == path)
                if let text = item["value_json"]?.string, let exact = Int64(text) {
                    #expect(row.values[key] == .int(exact), "\(key): \(text)")
                }
            }
        }
    }
}

/// Items as one flat object (`flatKey: value`), as leet prints an update.
private func flat(_ items: [WandbItem]) throws -> [String: Value] {
    var out: [String: Value] = [:]
    for item in items { out[item.flatKey] = try item.value() ?? .null }
    return out
}

/// Items against `MessageToDict`'s list of `{key, nested_key, value_json}`.
private func expectItems(_ items: [WandbItem], _ golden: Golden?, _ context: String,
                         sourceLocation: SourceLocation = #_sourceLocation) {
    let expected = golden?.array ?? []
    #expect(items.count == expected.count, "\(context)", sourceLocation: sourceLocation)
    for (item, g) in zip(items, expected) {
        #expect(item.key == (g["key"]?.string ?? ""), "\(context)", sourceLocation: sourceLocation)
        #expect(item.nestedKey == (g["nested_key"]?.array.compactMap(\.string) ?? []), "\(context)", sourceLocation: sourceLocation)
        #expect(item.valueJSON == (g["value_json"]?.string ?? ""), "\(context)", sourceLocation: sourceLocation)
    }
}

/// Runs `body`, expecting a ``WandbFormatError`` with `code` (and `offset`, when given).
private func expectFormatError(_ code: WandbFormatError.Code, offset: Int64? = nil,
                               sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
    let error = #expect(throws: WandbFormatError.self, sourceLocation: sourceLocation) { try body() }
    #expect(error?.code == code, "\(String(describing: error))", sourceLocation: sourceLocation)
    if let offset { #expect(error?.offset == offset, "\(String(describing: error))", sourceLocation: sourceLocation) }
}

// MARK: - Framing: truncation, damage, headers

@Suite struct WandbFramingTests {
    /// Cut points: around every block boundary, and a stride through the file.
    private func cutPoints(size: Int, stride step: Int) -> [Int] {
        var cuts: Set<Int> = [0, 1, 6, 7, 8, size - 1]
        var boundary = WandbLogReader.blockSize
        while boundary < size {
            for d in [-7, -6, -1, 0, 1, 7] where boundary + d > 0 && boundary + d < size { cuts.insert(boundary + d) }
            boundary += WandbLogReader.blockSize
        }
        for c in Swift.stride(from: 13, to: size, by: step) { cuts.insert(c) }
        return cuts.sorted()
    }

    /// A file cut anywhere yields exactly the whole records before the cut, and never throws.
    @Test(arguments: ["offline-run-20261126_174542-fixt0001", "offline-run-20261126_174603-type0001"].filter(runDirectories.contains))
    func truncationYieldsEveryWholeRecord(run: String) throws {
        let bytes = try fileBytes(run)
        let temp = try TemporaryDirectory()
        let (_, full) = try rawRecords(of: temp.write(bytes, to: "full.wandb"))
        for cut in cutPoints(size: bytes.count, stride: bytes.count > 100_000 ? 19_997 : 97) {
            let url = try temp.write(Array(bytes[..<cut]), to: "cut.wandb")
            let (reader, records) = try rawRecords(of: url)
            let whole = full.filter { $0.end <= Int64(cut) }
            #expect(records == whole, "cut at \(cut)")
            let lastEnd = whole.last?.end ?? Int64(min(cut, WandbLogReader.headerSize))
            let clean = bytes[Int(lastEnd)..<cut].allSatisfy { $0 == 0 } && cut >= WandbLogReader.headerSize
            if clean {
                #expect(reader.tornTail == nil, "cut at \(cut)")
            } else {
                let tail = try #require(reader.tornTail, "cut at \(cut)")
                #expect(tail.offset >= (cut < WandbLogReader.headerSize ? 0 : lastEnd), "cut at \(cut)")
                #expect(tail.offset + tail.byteCount == Int64(cut), "cut at \(cut)")
            }
            #expect(reader.statistics.fileBytes == Int64(cut))
        }
    }

    /// The killed fixture, cut further: still no throw, still a prefix.
    @Test func killedFileCutFurther() throws {
        guard let run = runDirectories.first(where: { $0.hasSuffix("kill0001") }) else { return }
        let bytes = try fileBytes(run)
        let temp = try TemporaryDirectory()
        let (_, full) = try rawRecords(of: fixtureRoot.appendingPathComponent(run))
        for cut in [bytes.count - 1, bytes.count - 30, bytes.count - WandbLogReader.blockSize - 3, bytes.count / 2 + 11] {
            let (reader, records) = try rawRecords(of: temp.write(Array(bytes[..<cut]), to: "cut.wandb"))
            #expect(records == full.filter { $0.end <= Int64(cut) }, "cut at \(cut)")
            #expect(reader.tornTail != nil, "cut at \(cut)")
        }
    }

    /// A reader that hit the end carries on when the file grows (following a live file).
    @Test func followsAGrowingFile() throws {
        guard let run = smallRunDirectories.first else { return }
        let bytes = try fileBytes(run)
        let temp = try TemporaryDirectory()
        let url = try temp.write(Array(bytes[..<(bytes.count / 2)]), to: "live.wandb")
        var reader = try WandbLogReader(url: url)
        var records: [WandbRawRecord] = []
        while let r = try reader.nextRaw() { records.append(r) }
        #expect(reader.tornTail != nil)
        let handle = try FileHandle(forWritingTo: url)
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(bytes[(bytes.count / 2)...]))
        try handle.close()
        while let r = try reader.nextRaw() { records.append(r) }
        #expect(reader.tornTail == nil)
        let (_, full) = try rawRecords(of: fixtureRoot.appendingPathComponent(run))
        #expect(records == full)
    }

    /// A damaged chunk with data after it is a typed error at the chunk's offset; records
    /// before it are returned first.
    @Test func checksumDamageInTheMiddleThrows() throws {
        guard let run = runDirectories.first(where: { $0.hasSuffix("fixt0001") }) else { return }
        let bytes = try fileBytes(run)
        let (_, full) = try rawRecords(of: fixtureRoot.appendingPathComponent(run))
        let victim = try #require(full[full.count / 2 ..< full.count].first { $0.chunkCount == 1 && $0.bytes.count > 4 })
        var damaged = bytes
        damaged[Int(victim.offset) + WandbLogReader.headerSize + 2] ^= 0x40
        let temp = try TemporaryDirectory()
        var reader = try WandbLogReader(url: temp.write(damaged, to: "damaged.wandb"))
        var before = 0
        do {
            while try reader.nextRaw() != nil { before += 1 }
            Issue.record("no error")
        } catch {
            #expect(error.code == .checksumMismatch)
            #expect(error.offset == victim.offset)
        }
        #expect(before == full.firstIndex(of: victim))
    }

    /// With skipToNextBlock, the damage is reported and reading goes on at the next block.
    @Test func checksumDamageCanBeSkipped() throws {
        guard let run = runDirectories.first(where: { $0.hasSuffix("fixt0001") }) else { return }
        let bytes = try fileBytes(run)
        let (_, full) = try rawRecords(of: fixtureRoot.appendingPathComponent(run))
        let victim = try #require(full[full.count / 2 ..< full.count].first { $0.chunkCount == 1 && $0.bytes.count > 4 })
        var damaged = bytes
        damaged[Int(victim.offset) + WandbLogReader.headerSize + 2] ^= 0x40
        let temp = try TemporaryDirectory()
        let (reader, records) = try rawRecords(of: temp.write(damaged, to: "damaged.wandb"),
                                               options: .init(corruption: .skipToNextBlock))
        #expect(reader.skipped.map(\.code) == [.checksumMismatch])
        #expect(reader.skipped.first?.offset == victim.offset)
        let nextBlock = (victim.offset / Int64(WandbLogReader.blockSize) + 1) * Int64(WandbLogReader.blockSize)
        let expected = full.filter { $0.end <= victim.offset || $0.offset >= nextBlock }
        #expect(records == expected)
    }

    @Test func badChunkTypeAndLengthAreTyped() throws {
        guard let run = runDirectories.first(where: { $0.hasSuffix("fixt0001") }) else { return }
        let bytes = try fileBytes(run)
        let (_, full) = try rawRecords(of: fixtureRoot.appendingPathComponent(run))
        let victim = try #require(full[10...].first { $0.chunkCount == 1 })
        let temp = try TemporaryDirectory()

        var badType = bytes
        badType[Int(victim.offset) + 6] = 9
        var reader = try WandbLogReader(url: temp.write(badType, to: "type.wandb"))
        expectFormatError(.invalidChunkType, offset: victim.offset) { _ = try reader.readAll() }

        var badLength = bytes
        badLength[Int(victim.offset) + 4] = 0xFF
        badLength[Int(victim.offset) + 5] = 0xFF
        reader = try WandbLogReader(url: temp.write(badLength, to: "length.wandb"))
        expectFormatError(.invalidChunkLength, offset: victim.offset) { _ = try reader.readAll() }
    }

    /// Damage to the last chunk with only zeros after it is a torn write, not an error.
    @Test func zeroedTailIsATornTail() throws {
        guard let run = smallRunDirectories.first else { return }
        var bytes = try fileBytes(run)
        let (_, full) = try rawRecords(of: fixtureRoot.appendingPathComponent(run))
        let last = try #require(full.last)
        for i in (Int(last.offset) + WandbLogReader.headerSize + 1)..<bytes.count { bytes[i] = 0 }
        let temp = try TemporaryDirectory()
        let (reader, records) = try rawRecords(of: temp.write(bytes, to: "zeroed.wandb"))
        #expect(records == Array(full.dropLast()))
        #expect(reader.tornTail?.reason == .damagedTail)
        #expect(reader.tornTail?.offset == last.offset)
        #expect(reader.tornTail?.damage?.code == .checksumMismatch)
    }

    @Test func fileHeaderIsChecked() throws {
        guard let run = smallRunDirectories.first else { return }
        let bytes = try fileBytes(run)
        let temp = try TemporaryDirectory()

        var magic = bytes
        magic[1] = UInt8(ascii: "X")
        expectFormatError(.notAWandbFile, offset: 0) { _ = try WandbLogReader(url: temp.write(magic, to: "magic.wandb")) }
        var version = bytes
        version[6] = 1
        expectFormatError(.unsupportedVersion) { _ = try WandbLogReader(url: temp.write(version, to: "version.wandb")) }
        for count in [0, 3, 6] {
            var reader = try WandbLogReader(url: temp.write(Array(bytes[..<count]), to: "short.wandb"))
            #expect(try reader.readAll().isEmpty)
            #expect(reader.tornTail?.reason == .truncatedFileHeader)
        }
        expectFormatError(.notAWandbFile) { _ = try WandbLogReader(url: temp.write(Array("hello".utf8), to: "text.wandb")) }
    }

    @Test func runDirectoryIsResolved() throws {
        for run in runDirectories {
            let directory = fixtureRoot.appendingPathComponent(run)
            let file = try WandbLogReader.locateLogFile(at: directory)
            let id = run.split(separator: "-").last.map(String.init) ?? ""
            #expect(file.lastPathComponent == "run-\(id).wandb")
            #expect(try WandbLogReader.locateLogFile(at: file) == file)
        }
        let temp = try TemporaryDirectory()
        expectFormatError(.notFound) { _ = try WandbLogReader.locateLogFile(at: temp.url.appendingPathComponent("missing")) }
        expectFormatError(.notFound) { _ = try WandbLogReader.locateLogFile(at: temp.url) }
        _ = try temp.write(WandbLogReader.fileHeader, to: "run-a.wandb")
        _ = try temp.write(WandbLogReader.fileHeader, to: "run-a.wandb.synced")
        #expect(try WandbLogReader.locateLogFile(at: temp.url).lastPathComponent == "run-a.wandb")
        _ = try temp.write(WandbLogReader.fileHeader, to: "run-b.wandb")
        expectFormatError(.ambiguousRunDirectory) { _ = try WandbLogReader.locateLogFile(at: temp.url) }
    }
}

// MARK: - Synthetic files: multi-chunk records, zero-length FIRST, order errors

/// Frames records the way wandb-core's writer does: 32 KiB blocks, padding under 7 bytes,
/// a zero-length FIRST where exactly 7 bytes are left.
private func frame(_ records: [[UInt8]], chunkTypes: inout [UInt8]) -> [UInt8] {
    var out = WandbLogReader.fileHeader
    for record in records {
        var rest = record[...]
        var begin = true
        while true {
            let left = WandbLogReader.blockSize - out.count % WandbLogReader.blockSize
            if left < WandbLogReader.headerSize {
                out += [UInt8](repeating: 0, count: left)
                continue
            }
            let n = min(left - WandbLogReader.headerSize, rest.count)
            let end = n == rest.count
            let type: UInt8 = begin && end ? 1 : begin ? 2 : end ? 4 : 3
            out += chunk(type, Array(rest.prefix(n)))
            chunkTypes.append(type)
            rest = rest.dropFirst(n)
            begin = false
            if end { break }
        }
    }
    return out
}

private func chunk(_ type: UInt8, _ payload: [UInt8]) -> [UInt8] {
    let crc = CRC32IEEE.checksum([type] + payload)
    return [UInt8(crc & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 24),
            UInt8(payload.count & 0xFF), UInt8(payload.count >> 8), type] + payload
}

private func varint(_ v: UInt64) -> [UInt8] {
    var v = v
    var out: [UInt8] = []
    while v >= 0x80 { out.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
    return out + [UInt8(v)]
}

private func field(_ number: Int, _ bytes: [UInt8]) -> [UInt8] {
    varint(UInt64(number << 3 | 2)) + varint(UInt64(bytes.count)) + bytes
}

private func field(_ number: Int, varint value: UInt64) -> [UInt8] {
    varint(UInt64(number << 3)) + varint(value)
}

/// A `Record{num, history{item{nested_key..., value_json}, step{num}}}`.
private func historyRecord(num: Int, step: Int, items: [([String], String)]) -> [UInt8] {
    var history: [UInt8] = []
    for (path, json) in items {
        var item: [UInt8] = []
        for k in path { item += field(2, Array(k.utf8)) }
        item += field(16, Array(json.utf8))
        history += field(1, item)
    }
    history += field(2, step == 0 ? [] : field(1, varint: UInt64(step)))
    return field(1, varint: UInt64(num)) + field(2, history)
}

@Suite struct WandbSyntheticTests {
    @Test func crcIsIEEE() {
        #expect(CRC32IEEE.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(CRC32IEEE.checksum([UInt8]()) == 0)
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        #expect(CRC32IEEE.checksum(data[500...], continuing: CRC32IEEE.checksum(data[..<500])) == CRC32IEEE.checksum(data))
    }

    /// The PCLMULQDQ path (where the CPU has it) agrees with the table path for every length
    /// from 0 to 300 (the block loop, the 16-byte tail, the byte tail) and for long buffers,
    /// at every alignment, continuing from any value; and both agree with a bitwise CRC.
    @Test func crcPathsAgree() {
        func bitwise(_ bytes: [UInt8]) -> UInt32 {
            var c: UInt32 = 0xFFFF_FFFF
            for b in bytes {
                c ^= UInt32(b)
                for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0xEDB8_8320 : c >> 1 }
            }
            return ~c
        }
        var rng = SplitMix64(seed: 32)
        let data = (0..<70_000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        for n in 0...300 {
            let slice = Array(data[(n * 13 % 64)...].prefix(n))
            #expect(CRC32IEEE.checksum(slice) == CRC32IEEE.portableChecksum(slice), "length \(n)")
            #expect(CRC32IEEE.checksum(slice) == bitwise(slice), "length \(n)")
        }
        for n in [1023, 4096, 32_761, 65_536 + 7] {
            let slice = Array(data[3..<3 + n])
            #expect(CRC32IEEE.checksum(slice, continuing: 0xDEAD_BEEF) == CRC32IEEE.portableChecksum(slice, continuing: 0xDEAD_BEEF))
        }
        #expect(CRC32IEEE.checksum(data) == bitwise(data))
        print("CRC-32/IEEE hardware path: \(CRC32IEEE.isHardware)")
    }

    /// Records larger than a block (FIRST, MIDDLE..., LAST), records that end 7 bytes before a
    /// block boundary (zero-length FIRST), padding: all reassembled.
    @Test func multiChunkRecordsAndZeroLengthFirst() throws {
        let block = WandbLogReader.blockSize
        var records: [[UInt8]] = []
        var types: [UInt8] = []
        func size() -> Int { frame(records, chunkTypes: &types).count }
        func make(_ num: Int, _ pad: Int) -> [UInt8] {
            historyRecord(num: num, step: num, items: [(["k"], "\"" + String(repeating: "y", count: pad) + "\"")])
        }
        /// A record whose last chunk ends `target` bytes before a block boundary.
        func recordEnding(withLeft target: Int, num: Int) throws -> [UInt8] {
            var start = size() % block
            if block - start < WandbLogReader.headerSize { start = 0 }
            var want = block - target - start - WandbLogReader.headerSize
            if want < 64 { want += block - WandbLogReader.headerSize }  // FIRST here, LAST in the next block
            let overhead = make(num, 0).count
            for pad in max(0, want - overhead - 16)...max(0, want - overhead + 16) where make(num, pad).count == want {
                return make(num, pad)
            }
            throw CocoaError(.featureUnsupported)
        }
        var num = 1
        records.append(historyRecord(num: num, step: 0, items: [(["big"], "\"" + String(repeating: "x", count: 100_000) + "\"")]))
        // 7 bytes left: the next record starts with a zero-length FIRST; 3 left: padding;
        // 0 left: the next record starts a block.
        for target in [7, 3, 0] {
            num += 1
            records.append(try recordEnding(withLeft: target, num: num))
            num += 1
            records.append(historyRecord(num: num, step: num, items: [(["nested", "a"], "1"), (["v"], "NaN")]))
        }
        types = []
        let bytes = frame(records, chunkTypes: &types)
        #expect(types.contains(3))  // MIDDLE
        let temp = try TemporaryDirectory()
        var reader = try WandbLogReader(url: temp.write(bytes, to: "synthetic.wandb"))
        var raws: [WandbRawRecord] = []
        while let r = try reader.nextRaw() { raws.append(r) }
        #expect(raws.map(\.bytes) == records)
        #expect(reader.tornTail == nil)
        #expect(reader.statistics.chunks.total == types.count)
        #expect(reader.statistics.chunks.middle == types.filter { $0 == 3 }.count)
        #expect(reader.statistics.chunks.zeroLength >= 1)
        #expect(reader.statistics.paddingBytes > 0)
        #expect(raws.allSatisfy { $0.kind == .history })

        let run = try WandbRun(contentsOf: temp.url.appendingPathComponent("synthetic.wandb"))
        #expect(run.history.count == records.count)
        #expect(run.history.last?.values["nested.a"] == .int(1))
        #expect(run.history.last?.nestedPaths["nested.a"] == ["nested", "a"])
        #expect(run.history.last?.values["v"]?.doubleValue?.isNaN == true)
        #expect(run.history.first?.step == 0)
    }

    @Test func chunkOrderErrors() throws {
        let a = historyRecord(num: 1, step: 0, items: [(["a"], "1")])
        let b = historyRecord(num: 2, step: 1, items: [(["a"], "2")])
        let temp = try TemporaryDirectory()
        let header = WandbLogReader.fileHeader
        // FIRST, then FULL: the open record never ended.
        let firstThenFull = header + chunk(2, Array(a.prefix(5))) + chunk(1, b) + chunk(1, b)
        var reader = try WandbLogReader(url: temp.write(firstThenFull, to: "a.wandb"))
        expectFormatError(.unexpectedChunk, offset: Int64(header.count)) { _ = try reader.readAll() }
        var skipping = try WandbLogReader(url: temp.write(firstThenFull, to: "a.wandb"), options: .init(corruption: .skipToNextBlock))
        #expect(try skipping.readAll().map(\.number) == [2, 2])
        #expect(skipping.skipped.map(\.code) == [.unexpectedChunk])
        // LAST with no FIRST.
        let lastAlone = header + chunk(4, a) + chunk(1, b)
        reader = try WandbLogReader(url: temp.write(lastAlone, to: "b.wandb"))
        expectFormatError(.unexpectedChunk, offset: Int64(header.count)) { _ = try reader.readAll() }
        // A whole chunk that is not a protobuf message.
        let garbage = header + chunk(1, [0xFF, 0xFF, 0xFF]) + chunk(1, b)
        reader = try WandbLogReader(url: temp.write(garbage, to: "c.wandb"))
        expectFormatError(.malformedRecord, offset: Int64(header.count)) { _ = try reader.readAll() }
        skipping = try WandbLogReader(url: temp.write(garbage, to: "c.wandb"), options: .init(corruption: .skipToNextBlock))
        #expect(try skipping.readAll().map(\.number) == [2])
        // A zeroed block tail is skipped like padding.
        let zeroed = header + chunk(1, a) + [UInt8](repeating: 0, count: WandbLogReader.blockSize - header.count - 7 - a.count) + chunk(1, b)
        reader = try WandbLogReader(url: temp.write(zeroed, to: "d.wandb"))
        #expect(try reader.readAll().map(\.number) == [1, 2])
    }

    @Test func summaryAndConfigSemantics() throws {
        func item(_ path: [String], _ json: String, key: Bool = false) -> WandbItem {
            key ? WandbItem(key: path[0], valueJSON: json) : WandbItem(nestedKey: path, valueJSON: json)
        }
        func record(_ n: Int64, _ content: WandbRecord.Content, _ kind: WandbRecordKind) -> WandbRecord {
            WandbRecord(number: n, kind: kind, offset: 0, byteCount: 0, content: content)
        }
        var runRecord = WandbRunRecord()
        runRecord.runID = "r1"
        runRecord.config = WandbUpdateRecord(updates: [item(["_wandb"], "{}", key: true), item(["opt"], "{\"lr\":1,\"m\":{\"b\":2}}", key: true)])
        let records = [
            record(1, .run(runRecord), .run),
            record(2, .config(WandbUpdateRecord(updates: [item(["opt", "m", "c"], "3")], removals: [item(["opt", "lr"], "")])), .config),
            record(3, .summary(WandbUpdateRecord(updates: [item(["a", "b"], "1"), item(["a.b"], "2"), item(["_wandb", "runtime"], "5")])), .summary),
            record(4, .summary(WandbUpdateRecord(removals: [item(["a", "b"], "")])), .summary),
            record(5, .output(WandbOutputRecord(stream: .stdout, line: "50%\r100%\r\n")), .outputRaw),
            record(6, .output(WandbOutputRecord(stream: .stderr, line: "err ")), .outputRaw),
            record(7, .output(WandbOutputRecord(stream: .stdout, line: "done")), .outputRaw),
            record(8, .exit(WandbExitRecord(exitCode: 1)), .exit),
        ]
        let run = try WandbRun(records: records)
        #expect(run.config == ["opt": ["m": ["b": 2, "c": 3]]])
        #expect(run.internalConfig == [:])
        #expect(run.summary == ["a": .object([:]), "a.b": 2])
        #expect(run.internalSummary == ["runtime": 5])
        #expect(run.console.map(\.text) == ["100%", "done", "err "])
        #expect(run.state == .failed)
        #expect(run.exitCode == 1)

        let bad = record(9, .summary(WandbUpdateRecord(updates: [item(["x"], "{oops")])), .summary)
        expectFormatError(.malformedValue) { _ = try WandbRun(records: [bad]) }
    }
}

// MARK: - value_json

@Suite struct WandbJSONTests {
    @Test func nonFiniteTokens() throws {
        #expect(try WandbJSON.parse("NaN").doubleValue?.isNaN == true)
        #expect(try WandbJSON.parse("Infinity") == .double(.infinity))
        #expect(try WandbJSON.parse("-Infinity") == .double(-.infinity))
        #expect(try WandbJSON.parse("[NaN, -Infinity, {\"a\": Infinity}]") == [.double(.nan), .double(-.infinity), ["a": .double(.infinity)]])
    }

    @Test func integersAreExact() throws {
        for text in ["9007199254740993", "-9007199254740993", "9223372036854775807", "-9223372036854775808", "0", "42"] {
            #expect(try WandbJSON.parse(text) == .int(Int64(text)!))
        }
        #expect(try WandbJSON.parse("9223372036854775808") == .double(9223372036854775808.0))
        #expect(try WandbJSON.parse("-0") == .double(-0.0))
        #expect(try WandbJSON.parse("2.0") == .double(2))
        #expect(try WandbJSON.parse("1.7957126205276792e+09") == .double(1.7957126205276792e+09))
        #expect(try WandbJSON.parse("1e3") == .double(1000))
        #expect(try WandbJSON.parse("0.1") == .double(0.1))
    }

    /// Numbers parse to what `Double(String)` (strtod, correctly rounded) gives, bit for bit:
    /// through the fast path (up to 19 digits, powers of ten up to 22) and around it.
    @Test func floatsAreCorrectlyRounded() throws {
        var rng = SplitMix64(seed: 7)
        var texts = ["0.1", "0.2", "0.3", "1e22", "1e23", "9007199254740993.0", "9007199254740992.5", "0.8951944822460306",
                     "1.7957347814108572e+09", "0.000999519538478809", "5e-324", "1.7976931348623157e308", "2.2250738585072014e-308",
                     "123456789012345678901234567890.5", "-0.0", "0.0e5", "1E-22", "4.35e-23", "1.000000000000000000000001"]
        for _ in 0..<20_000 {
            let d = Double(bitPattern: rng.next()) 
            guard d.isFinite else { continue }
            texts.append("\(d)")
            texts.append(String(format: "%.\(Int(rng.next() % 18))g", d))
            texts.append(String(format: "%.\(Int(rng.next() % 20))f", Double(Int64(bitPattern: rng.next()) % 1_000_000) / 997))
        }
        for text in texts {
            guard case .double(let parsed)? = try? WandbJSON.parse(text), let expected = Double(text) else { continue }
            #expect(parsed.bitPattern == expected.bitPattern, "\(text)")
        }
    }

    /// Eisel–Lemire against `strtod` over the whole range: random bit patterns (subnormals
    /// included) printed shortest and with 1 to 19 significant digits, significands of up to
    /// 19 random digits at every exponent from −350 to 315, halfway cases, and the extremes.
    @Test func eiselLemireMatchesStrtod() {
        var rng = SplitMix64(seed: 1921)
        var checked = 0
        func check(_ w: UInt64, _ q: Int) {
            guard w != 0 else { return }
            let text = "\(w)e\(q)"
            let expected = strtod(text, nil)
            for negative in [false, true] {
                if let d = DecimalToDouble.double(significand: w, exponent: q, negative: negative) {
                    #expect(d.bitPattern == (negative ? -expected : expected).bitPattern, "\(negative ? "-" : "")\(text)")
                    checked += 1
                } else {
                    #expect(q < DecimalToDouble.smallestPower || q > DecimalToDouble.largestPower, "no result for \(text)")
                }
            }
        }
        for _ in 0..<60_000 {
            let d = Double(bitPattern: rng.next() & ~(1 << 63))
            guard d.isFinite, d != 0 else { continue }
            // Shortest round-trip digits, and a rounded form with 1 to 19 digits.
            for text in ["\(d)", String(format: "%.\(Int(rng.next() % 19))e", d)] {
                let parts = text.lowercased().split(separator: "e")
                let mantissa = parts[0].replacingOccurrences(of: ".", with: "")
                let fraction = parts[0].split(separator: ".").dropFirst().first?.count ?? 0
                guard let w = UInt64(mantissa), mantissa.count <= 19 else { continue }
                check(w, (parts.count > 1 ? Int(parts[1])! : 0) - fraction)
            }
        }
        for q in -350...315 {
            for _ in 0..<40 {
                let digits = Int(rng.next() % 19) + 1
                var w: UInt64 = 0
                for _ in 0..<digits { w = w * 10 + rng.next() % 10 }
                check(w, q)
            }
        }
        // Halfway between two doubles: 2^53 + 1, and 5 × 10^-324-style boundaries.
        for (w, q) in [(9_007_199_254_740_993 as UInt64, 0), (9_007_199_254_740_995, 0), (1, -324), (25, -325), (24703282292062328, -340),
                       (17976931348623157, 292), (17976931348623159, 292), (22250738585072014, -324), (22250738585072011, -324),
                       (1, 23), (1, 22), (9_999_999_999_999_999_999, -4), (4_503_599_627_370_497, 0)] {
            check(w, q)
        }
        #expect(checked > 100_000)
    }

    @Test func powersOfFiveAreExact() {
        // q ≥ 0: 5^q shifted to the top of 128 bits, exact while it fits (q ≤ 55).
        var p: UInt128 = 1
        for q in 0...55 {
            let shifted = p << UInt128(p.leadingZeroBitCount)
            let i = 2 * (q - DecimalToDouble.smallestPower)
            #expect(DecimalToDouble.powersOfFive[i] == UInt64(shifted >> 64) && DecimalToDouble.powersOfFive[i + 1] == UInt64(truncatingIfNeeded: shifted), "5^\(q)")
            if q < 55 { p *= 5 }
        }
        // −27 ≤ q < 0: floor(2^(z+127) / 5^−q) + 1, z the bit length of 5^−q: entry × 5^−q is
        // just above 2^(z+127), by less than 5^−q.
        var f: UInt64 = 1
        for n in 1...27 {
            f *= 5
            let z = 64 - f.leadingZeroBitCount
            let i = 2 * (-n - DecimalToDouble.smallestPower)
            let entry = UInt128(DecimalToDouble.powersOfFive[i]) << 64 | UInt128(DecimalToDouble.powersOfFive[i + 1])
            let (high, low) = entry.multipliedFullWidth(by: UInt128(f))
            // entry × 5^n − 2^(z+127), as a 256-bit (high, low) pair, must be in (0, 5^n].
            let target: (UInt128, UInt128) = z + 127 >= 128 ? (UInt128(1) << UInt128(z + 127 - 128), 0) : (0, UInt128(1) << UInt128(z + 127))
            let (dl, borrow) = low.subtractingReportingOverflow(target.1)
            let dh = high &- target.0 &- (borrow ? 1 : 0)
            #expect(dh == 0 && dl > 0 && dl <= UInt128(f), "5^-\(n)")
        }
    }

    @Test func structuresAndStrings() throws {
        #expect(try WandbJSON.parse(" {\"x\":true,\"y\":null, \"z\":[1,\"s\"]} ") == ["x": true, "y": nil, "z": [1, "s"]])
        #expect(try WandbJSON.parse("\"h\\u00e9llo \\u2713 \\ud83d\\ude00 \\n\\t\\\"\\\\\\/\"") == .string("héllo ✓ 😀 \n\t\"\\/"))
        #expect(try WandbJSON.parse("\"héllo ✓\"") == .string("héllo ✓"))
        #expect(try WandbJSON.parse("{}") == .object([:]))
        #expect(try WandbJSON.parse("[]") == .array([]))
    }

    @Test func malformedInputThrows() {
        for text in ["", "{", "[1,", "01", "1.", "-", "\"abc", "tru", "{\"a\" 1}", "1 2", "nan", "+1", "{'a':1}"] {
            #expect(throws: WandbJSON.ParseError.self, "\(text)") { _ = try WandbJSON.parse(text) }
        }
        let deep = String(repeating: "[", count: WandbJSON.maxDepth + 1) + String(repeating: "]", count: WandbJSON.maxDepth + 1)
        #expect(throws: WandbJSON.ParseError.self) { _ = try WandbJSON.parse(deep) }
    }

    @Test func timestampsFormat() {
        let t = WandbTimestamp(seconds: 1_795_715_142, nanos: 945_690_000)
        #expect(t.description == "2026-11-26T17:45:42.94569Z")
        #expect(t.protoJSONString == "2026-11-26T17:45:42.945690Z")
        #expect(WandbTimestamp(seconds: 0, nanos: 0).description == "1970-01-01T00:00:00Z")
        #expect(WandbTimestamp(seconds: 951_782_400, nanos: 5_000_000).protoJSONString == "2000-02-29T00:00:00.005Z")
        #expect(WandbTimestamp(seconds: -1, nanos: 1).protoJSONString == "1969-12-31T23:59:59.000000001Z")
    }
}

// MARK: - Streaming fold (`runlog sync wandb/…`) against the whole-run import

/// `Item{key | nested_key..., value_json | typed}` as bytes.
private func itemBytes(key: String? = nil, path: [String] = [], json: String? = nil, typedInt: Int64? = nil) -> [UInt8] {
    var item: [UInt8] = []
    if let key { item += field(1, Array(key.utf8)) }
    for k in path { item += field(2, Array(k.utf8)) }
    if let typedInt { item += field(5, varint: UInt64(bitPattern: (typedInt << 1) ^ (typedInt >> 63))) }
    if let json { item += field(16, Array(json.utf8)) }
    return item
}

/// `Record{num, history{items..., step?}}` from item bytes.
private func historyRecord(num: Int, step: Int?, items: [[UInt8]]) -> [UInt8] {
    var history: [UInt8] = []
    for item in items { history += field(1, item) }
    if let step { history += field(2, step == 0 ? [] : field(1, varint: UInt64(step))) }
    return field(1, varint: UInt64(num)) + field(2, history)
}

/// `Record{num, summary{update..., remove...}}`.
private func summaryRecord(num: Int, updates: [[UInt8]], removals: [[UInt8]] = []) -> [UInt8] {
    var summary: [UInt8] = []
    for u in updates { summary += field(1, u) }
    for r in removals { summary += field(2, r) }
    return field(1, varint: UInt64(num)) + field(3, summary)
}

/// `Record{num, run{run_id, project, start_time}}`.
private func runRecord(num: Int, id: String, project: String, seconds: UInt64) -> [UInt8] {
    let run = field(1, Array(id.utf8)) + field(3, Array(project.utf8)) + field(17, field(1, varint: seconds))
    return field(1, varint: UInt64(num)) + field(17, run)
}

@Suite struct WandbStreamingFoldTests {
    /// What a RunLog run directory reads back as.
    private func contents(_ directory: String) throws -> RunContents {
        let reader = try RunDirectory.reader(directory)
        defer { reader.close() }
        return try reader.contents()
    }

    /// `runlog sync` folds a session by streaming its records (history rows straight from
    /// the record bytes where it can); `runlog import` decodes the whole run first. Both must
    /// write the same run.
    private func expectSameRun(_ wandbFile: URL, id: String, project: String, _ temp: TemporaryDirectory) throws {
        let cache = temp.url.appendingPathComponent("cache").path
        let prepared = try WandbSyncImport.prepare([wandbFile.path], cache: cache)
        #expect(prepared.count == 1)
        let imported = temp.url.appendingPathComponent("imported").path
        try WandbImport.write(try WandbRun(contentsOf: wandbFile), to: imported)
        let folded = try contents(prepared[0].directory)
        let whole = try contents(imported)
        #expect(folded.history.count == whole.history.count)
        for (a, b) in zip(folded.history, whole.history) where a != b {
            Issue.record("row at step \(a.step): streamed \(a.values), whole \(b.values)")
            break
        }
        #expect(folded == whole)
    }

    @Test(arguments: runDirectories)
    func fixtureFoldsAsItImports(_ name: String) throws {
        let temp = try TemporaryDirectory()
        let file = try WandbLogReader.locateLogFile(at: fixtureRoot.appendingPathComponent(name))
        let run = try WandbRun(contentsOf: file)
        try expectSameRun(file, id: run.id, project: run.project, temp)
    }

    /// Summary records with keys in shifting orders, some repeated, nested paths and removals
    /// (drawn at random from a small pool): the raw summary path, which matches each change to
    /// the key group of the previous record's change at the same position, gives what
    /// decoding every record gives.
    @Test func summaryChangesInShiftingOrders() throws {
        var rng = SplitMix64(seed: 2611)
        let pool: [[String]] = [["loss"], ["acc"], ["lr"], ["a", "b"], ["a"], ["val", "loss"], ["val"]]
        var n = 1
        var records: [[UInt8]] = [runRecord(num: n, id: "ord1", project: "p", seconds: 1_700_000_000)]
        for i in 0..<400 {
            var updates: [[UInt8]] = [], removals: [[UInt8]] = []
            for _ in 0..<Int(rng.next() % 5) {
                let path = pool[Int(rng.next() % UInt64(pool.count))]
                if rng.next() % 6 == 0 { removals.append(itemBytes(path: path, json: "")) } else { updates.append(itemBytes(path: path, json: "\(i)")) }
            }
            // Every few records, the same keys in the same order as the one before.
            if i % 3 == 0, let last = records.last, i > 0 { records.append(last); continue }
            n += 1
            records.append(summaryRecord(num: n, updates: updates, removals: removals))
        }
        let temp = try TemporaryDirectory()
        var types: [UInt8] = []
        let file = try temp.write(frame(records, chunkTypes: &types), to: "run-ord1.wandb")
        var reader = try WandbLogReader(url: file)
        let decoded = try WandbRun(records: reader.readAll())
        let streamed = try WandbRun(contentsOf: file)
        #expect(!decoded.summary.isEmpty)
        #expect(streamed.summary == decoded.summary)
    }

    /// Rows that take the fast path and rows that cannot (ints, nested paths, duplicate keys,
    /// typed values, odd `_step` and `_timestamp`), and summary changes that overwrite, remove
    /// and name a path two ways.
    @Test func everyKindOfRowAndSummaryChange() throws {
        var n = 0
        func num() -> Int { n += 1; return n }
        let t = "1700000000.25"
        var records: [[UInt8]] = [runRecord(num: num(), id: "syn1", project: "p", seconds: 1_700_000_000)]
        let rows: [(Int?, [[UInt8]])] = [
            (0, [itemBytes(path: ["_step"], json: "0"), itemBytes(path: ["_timestamp"], json: t), itemBytes(path: ["loss"], json: "0.5"), itemBytes(path: ["acc"], json: "0.25")]),
            (1, [itemBytes(path: ["_step"], json: "1"), itemBytes(path: ["_timestamp"], json: "1700000001"), itemBytes(path: ["loss"], json: "1")]),  // int value
            (2, [itemBytes(path: ["acc"], json: "0.5"), itemBytes(path: ["_step"], json: "2.0"), itemBytes(key: "loss", json: "2.5")]),  // _step a float, a plain key
            (7, [itemBytes(path: ["loss"], json: "7.5")]),  // no _step item: step.num
            (nil, [itemBytes(path: ["loss"], json: "8.5")]),  // no step at all: the previous + 1
            (9, [itemBytes(path: ["a", "b"], json: "9.5"), itemBytes(path: ["loss"], json: "9.25")]),  // a nested path
            (10, [itemBytes(path: ["loss"], json: "10.5"), itemBytes(key: "loss", json: "10.75")]),  // a key twice: the later wins
            (11, [itemBytes(path: ["_timestamp"], json: "\"late\""), itemBytes(path: ["loss"], json: "NaN"), itemBytes(path: ["acc"], json: "-0")]),
            (12, [itemBytes(path: ["loss"], json: "Infinity"), itemBytes(path: ["n"], typedInt: 12)]),  // a typed value
            (3, [itemBytes(path: ["_step"], json: "3"), itemBytes(path: ["loss"], json: "3.5")]),  // goes back: dropped
            (13, [itemBytes(path: ["loss"], json: "13.5"), itemBytes(path: ["note"], json: "\"text\""), itemBytes(path: ["_step"], json: "\"x\"")]),
        ]
        for (i, (step, items)) in rows.enumerated() {
            records.append(historyRecord(num: num(), step: step, items: items))
            // wandb writes the row's values into the summary after each row.
            records.append(summaryRecord(num: num(), updates: [itemBytes(path: ["loss"], json: "\(i).125"), itemBytes(path: ["x"], json: "\(i)")]))
        }
        records.append(summaryRecord(num: num(), updates: [itemBytes(key: "y", json: "3"), itemBytes(path: ["z", "w"], json: "4")]))
        records.append(summaryRecord(num: num(), updates: [itemBytes(key: "x", json: "5")], removals: [itemBytes(key: "y")]))
        records.append(summaryRecord(num: num(), updates: [itemBytes(path: ["z", "v"], json: "{\"k\": [1, 2]}")], removals: [itemBytes(path: ["z", "w"])]))
        // Key fields not contiguous (a value between them): never merged with another change.
        records.append(summaryRecord(num: num(), updates: [field(2, Array("q".utf8)) + field(16, Array("1".utf8)) + field(2, Array("r".utf8))]))
        records.append(summaryRecord(num: num(), updates: [itemBytes(path: ["q", "r"], json: "2")]))
        var types: [UInt8] = []
        let temp = try TemporaryDirectory()
        let file = try temp.write(frame(records, chunkTypes: &types), to: "run-syn1.wandb")

        // The raw summary path gives what decoding every record gives.
        var reader = try WandbLogReader(url: file)
        let decoded = try WandbRun(records: reader.readAll())
        let streamed = try WandbRun(contentsOf: file)
        #expect(streamed.summary == decoded.summary)
        #expect(streamed.summary["x"] == 5 && streamed.summary["y"] == nil && streamed.summary["loss"] == .double(10.125))
        #expect(streamed.summary["z"] == ["v": ["k": [1, 2]]])
        #expect(streamed.summary["q"] == ["r": 2])
        #expect(streamed.history.map(\.step) == [0, 1, 2, 7, 8, 9, 10, 11, 12, 3, 13])

        try expectSameRun(file, id: "syn1", project: "p", temp)
        let folded = try contents(temp.url.appendingPathComponent("cache/p/syn1").path)
        #expect(folded.history.map(\.step) == [0, 1, 2, 7, 8, 9, 10, 11, 12, 13])
        #expect(folded.history[0].timestamp == 1_700_000_000_250_000)
        #expect(folded.history[1].values["loss"] == 1)
        #expect(folded.history[6].values["loss"] == .double(10.75))
        #expect(folded.history[7].timestamp == 1_700_000_000_000_000, "a _timestamp that is not a number: the run's start")
        #expect(folded.history[9].values["note"] == "text" && folded.history[9].values["_step"] == nil)
    }
}
