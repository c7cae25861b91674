import Foundation
import Testing
@testable import RunLogStore

/// What a run's contents must be, computed from FORMAT.md's rules alone (it shares no code
/// with `ContentsBuilder`): state records fold, rows stay live until a rewind moves every
/// live row after its step into a new branch, events keep their order.
struct ContentsModel {
    var metadata: [String: Value] = [:]
    var config: [String: Value] = [:]
    var summary: [String: Value] = [:]
    var tags: [String] = []
    var live: [HistoryRow] = []
    var archived: [UInt32: [HistoryRow]] = [:]
    var rewinds: [RunContents.RewindInfo] = []
    var forkOrigin: ForkOrigin?
    var events: [Record] = []
    /// Every record in the order the writer was given it (rewinds as written).
    var appended: [Record] = []

    static func change(_ state: inout [String: Value], replace: Bool, values: [String: Value], removed: [String]) {
        if replace {
            state = values
        } else {
            for (k, v) in values { state[k] = v }
        }
        for k in removed { state.removeValue(forKey: k) }
    }

    mutating func apply(_ record: Record) {
        appended.append(record)
        switch record {
        case .runMetadata(let m): for (k, v) in m.fields { metadata[k] = v }
        case .config(let c): Self.change(&config, replace: c.replace, values: c.values, removed: c.removed)
        case .summary(let s): Self.change(&summary, replace: s.replace, values: s.values, removed: s.removed)
        case .tags(let t): tags = t
        case .history(let row): live.append(row)
        case .forkOrigin(let f): forkOrigin = f
        case .rewind: Issue.record("rewinds go through rewind(to:)")
        case .console, .systemMetrics, .file, .resume, .exit, .unknown: events.append(record)
        }
    }

    /// The next branch number: one above every branch used so far.
    var nextBranch: UInt32 { (rewinds.map(\.branch).max() ?? 0) + 1 }

    /// Rewinding to `step` moves the live rows after it, in order, into a new branch.
    mutating func rewind(_ marker: RewindMarker) {
        appended.append(.rewind(marker))
        if let first = live.firstIndex(where: { $0.step > marker.step }) {
            var moved = Array(live[first...])
            for i in moved.indices { moved[i].branch = marker.branch }
            archived[marker.branch, default: []] += moved
            live.removeSubrange(first...)
        }
        rewinds.append(RunContents.RewindInfo(step: marker.step, branch: marker.branch, timestamp: marker.timestamp))
    }

    var contents: RunContents {
        var c = RunContents()
        c.metadata = metadata
        c.config = config
        c.summary = summary
        c.tags = tags
        c.history = live
        c.archived = archived
        c.rewinds = rewinds
        c.forkOrigin = forkOrigin
        c.events = events
        return c
    }
}

/// Compares contents field by field, so a failure says which part differs.
func expectContents(_ actual: RunContents, _ model: ContentsModel, _ context: String, sourceLocation: SourceLocation = #_sourceLocation) {
    let m = model.contents
    #expect(actual.metadata == m.metadata, "\(context): metadata", sourceLocation: sourceLocation)
    #expect(actual.config == m.config, "\(context): config", sourceLocation: sourceLocation)
    #expect(actual.summary == m.summary, "\(context): summary", sourceLocation: sourceLocation)
    #expect(actual.tags == m.tags, "\(context): tags", sourceLocation: sourceLocation)
    #expect(actual.history == m.history, "\(context): live history (\(actual.history.map(\.step)) vs \(m.history.map(\.step)))", sourceLocation: sourceLocation)
    #expect(actual.archived == m.archived, "\(context): archived branches", sourceLocation: sourceLocation)
    #expect(actual.rewinds == m.rewinds, "\(context): rewinds", sourceLocation: sourceLocation)
    #expect(actual.forkOrigin == m.forkOrigin, "\(context): fork origin", sourceLocation: sourceLocation)
    #expect(actual.events == m.events, "\(context): events", sourceLocation: sourceLocation)
    #expect(actual == m, "\(context): contents", sourceLocation: sourceLocation)
}

/// Random values of every kind, NaN payloads and signed zeros included.
struct ValueGenerator {
    var rng: SplitMix64

    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &rng) }
    mutating func chance(_ percent: Int) -> Bool { int(0...99) < percent }

    mutating func double() -> Double {
        switch int(0...12) {
        case 0: return .nan
        case 1: return Double(bitPattern: 0x7FF8_0000_0000_0000 | (rng.next() & 0x0007_FFFF_FFFF_FFFF))  // quiet NaN, payload
        case 2: return Double(bitPattern: 0xFFF0_0000_0000_0001)  // signalling NaN, sign set
        case 3: return .infinity
        case 4: return -.infinity
        case 5: return -0.0
        case 6: return 0.0
        case 7: return .leastNonzeroMagnitude
        case 8: return -.greatestFiniteMagnitude
        case 9: return Double(bitPattern: rng.next())
        default: return Double(int(-1_000_000...1_000_000)) / 977
        }
    }

    mutating func string() -> String {
        let pieces = ["", "a", "loss", "é", "日本語", "🙂", "\n\t\"\\", "\u{0}", "x y", String(repeating: "z", count: 300)]
        return (0..<int(0...2)).map { _ in pieces[int(0...pieces.count - 1)] }.joined()
    }

    mutating func key() -> String {
        let keys = ["loss", "acc", "lr", "x", "y/z", "é", "", "a.b", "k\(int(0...3))"]
        return keys[int(0...keys.count - 1)]
    }

    mutating func value(depth: Int = 0) -> Value {
        switch int(0...(depth > 3 ? 5 : 8)) {
        case 0: return .null
        case 1: return .bool(chance(50))
        case 2: return .int([Int64.min, Int64.max, -1, 0, 1][int(0...4)])
        case 3: return .int(Int64(int(-100_000...100_000)))
        case 4, 5: return .double(double())
        case 6: return .string(string())
        case 7: return .array((0..<int(0...4)).map { _ in value(depth: depth + 1) })
        default: return .object(object(depth: depth + 1))
        }
    }

    mutating func object(depth: Int = 0, maxCount: Int = 4) -> [String: Value] {
        var o: [String: Value] = [:]
        for _ in 0..<int(0...maxCount) { o[key()] = value(depth: depth) }
        return o
    }

    /// Values of a history row: mostly doubles, sometimes a column changes type or is missing.
    mutating func rowValues() -> [String: Value] {
        var o: [String: Value] = [:]
        for k in ["loss", "acc", "lr", "x", "k0"] where chance(70) {
            o[k] = chance(75) ? .double(double()) : (chance(50) ? .int(Int64(int(-9...9))) : value())
        }
        if chance(10) { o[key()] = value() }
        return o
    }

    mutating func timestamp() -> Int64 {
        chance(3) ? [Int64.min, Int64.max, 0, -1][int(0...3)] : 1_700_000_000_000_000 + Int64(int(0...1_000_000_000))
    }

    mutating func event() -> Record {
        switch int(0...5) {
        case 0: return .console(ConsoleLine(stream: chance(50) ? .stdout : .stderr, timestamp: timestamp(), text: string()))
        case 1: return .systemMetrics(SystemSample(timestamp: timestamp(), values: object()))
        case 2: return .file(FileReference(path: "f/\(string())", size: Int64(int(0...1 << 30)), digest: chance(50) ? "sha256:00ff" : "",
                                           policy: ["now", "end", "live"][int(0...2)], timestamp: timestamp()))
        case 3: return .resume(ResumeMarker(reason: ["resume", "auto", string()][int(0...2)], nextStep: Int64(int(0...1000)), timestamp: timestamp()))
        case 4: return .exit(ExitRecord(state: "finished", exitCode: Int64(int(-1...2)), runtime: Double(int(0...100_000)) / 8,
                                        signal: chance(30) ? 9 : nil, error: chance(30) ? string() : nil, timestamp: timestamp()))
        default: return .unknown(kind: UInt8(int(0x0D...0xFF)), body: (0..<int(0...12)).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        }
    }
}

@Suite struct PropertyTests {
    static func randomConfiguration(_ g: inout ValueGenerator) -> LogWriter.Configuration {
        var c = LogWriter.Configuration.test
        c.maxFrameRows = [1, 2, 3, 7, 50, 16_384][g.int(0...5)]
        c.maxFrameBytes = [300, 2_000, 4 << 20][g.int(0...2)]
        c.compressionLevel = Int32(g.int(1...3))
        return c
    }

    /// One random run: records of every kind, flushes, rewinds, reopens and compactions,
    /// checked against the model; then compaction and forks of the result.
    @Test(arguments: 0..<120)
    func randomRunsMatchTheModel(seed: Int) throws {
        var g = ValueGenerator(rng: SplitMix64(seed: 0x5EED_0000 + UInt64(seed)))
        let dir = TempDir()
        let run = dir.sub("run")
        var model = ContentsModel()
        var w = try LogWriter.open(directory: run, configuration: Self.randomConfiguration(&g))
        var step = Int64(g.int(0...5))
        var rewrote = false  // whether a compaction ran, after which the record list differs

        let first = Record.runMetadata(RunMetadata(["id": .string("run-\(seed)"), "project": "props"]))
        try w.append(first)
        model.apply(first)
        for _ in 0..<g.int(5...60) {
            let op = g.int(0...99)
            switch op {
            case 0..<40:
                let row = HistoryRow(step: step, timestamp: g.timestamp(), values: g.rowValues())
                switch g.int(0...2) {
                case 0: try w.appendRow(step: row.step, timestamp: row.timestamp, values: row.values)
                case 1: try w.append(.history(row))
                default:
                    // Subsets of a few keys, often rotated (as wandb-core orders a row's
                    // items) and sometimes shuffled, so that the writer's guess of each key's
                    // column is right, wrong, and for a column it has not seen yet.
                    var keys = ["loss", "acc", "lr", "x", "val/loss"].filter { _ in g.chance(60) }
                    if keys.count > 1 {
                        let r = g.int(0...keys.count - 1)
                        keys = Array(keys[r...] + keys[..<r])
                        if g.chance(20) { keys.swapAt(0, g.int(1...keys.count - 1)) }
                    }
                    let doubles = keys.map { _ in g.double() }
                    try w.appendRow(step: row.step, timestamp: row.timestamp, keys: keys, doubles: doubles)
                    model.apply(.history(HistoryRow(step: row.step, timestamp: row.timestamp,
                                                    values: Dictionary(uniqueKeysWithValues: zip(keys, doubles.map(Value.double))))))
                    step += Int64(g.chance(5) ? 1_000_000_000_000 : g.int(1...3))
                    continue
                }
                model.apply(.history(row))
                step += Int64(g.chance(5) ? 1_000_000_000_000 : g.int(1...3))
            case 40..<46:
                let r = Record.runMetadata(RunMetadata(g.chance(20) ? ["project": g.value()] : g.object()))
                try w.append(r)
                model.apply(r)
            case 46..<53:
                let r = Record.config(ConfigChange(replace: g.chance(20), values: g.object(), removed: g.chance(30) ? [g.key(), g.key()] : []))
                try w.append(r)
                model.apply(r)
            case 53..<59:
                let r = Record.summary(SummaryChange(replace: g.chance(20), values: g.object(), removed: g.chance(30) ? [g.key()] : []))
                try w.append(r)
                model.apply(r)
            case 59..<62:
                let r = Record.tags((0..<g.int(0...3)).map { _ in g.string() })
                try w.append(r)
                model.apply(r)
            case 62..<64:
                let r = Record.forkOrigin(ForkOrigin(sourceID: g.string(), sourceProject: g.chance(50) ? g.string() : nil,
                                                     step: Int64(g.int(0...100)), timestamp: g.timestamp()))
                try w.append(r)
                model.apply(r)
            case 64..<76:
                let r = g.event()
                try w.append(r)
                model.apply(r)
            case 76..<84:
                try w.flush()
            case 84..<92:
                let last = model.live.last?.step ?? step
                let target = g.chance(15) ? Int64(g.int(0...2)) : max(0, last - Int64(g.int(-2...6)))
                let expectedBranch = model.nextBranch
                let marker = try w.rewind(toStep: target)
                #expect(marker.branch == expectedBranch, "seed \(seed): rewind branch")
                #expect(marker.step == target)
                let archives = model.live.contains { $0.step > target }
                model.rewind(marker)
                if archives { step = target + 1 + Int64(g.int(0...2)) }
            case 92..<97:
                try w.close()
                w = try LogWriter.open(directory: run, configuration: Self.randomConfiguration(&g))
            default:
                try w.close()
                try Compaction.compact(directory: run)
                rewrote = true
                expectContents(try RunDirectory.reader(run).contents(), model, "seed \(seed), after a compaction mid-run")
                w = try LogWriter.open(directory: run, configuration: Self.randomConfiguration(&g))
            }
        }
        try w.close()

        let reader = try RunDirectory.reader(run)
        defer { reader.close() }
        if !rewrote {
            let records = try reader.allRecords().map(\.record)
            #expect(records == model.appended, "seed \(seed): the records read back differ from those appended")
        }
        let contents = try reader.contents()
        expectContents(contents, model, "seed \(seed)")

        // The header-only views agree with the model.
        let state = try reader.state()
        #expect(state.history.isEmpty && state.archived.isEmpty)
        #expect(state.metadata == model.metadata && state.config == model.config && state.summary == model.summary)
        #expect(state.tags == model.tags && state.events == model.events && state.rewinds == model.rewinds)
        let steps = model.live.map(\.step)
        for s in Set([steps.first, steps.last, steps.randomElement(using: &g.rng), Optional(step), Optional(0)].compactMap { $0 }) {
            #expect(try reader.row(atStep: s) == model.live.first { $0.step == s }, "seed \(seed): row(atStep: \(s))")
            #expect(try reader.history(from: s) == model.live.filter { $0.step >= s }, "seed \(seed): history(from: \(s))")
        }
        for rows in model.archived.values {
            if let s = rows.first?.step, !steps.contains(s) { #expect(try reader.row(atStep: s) == nil) }
        }
        #expect(try reader.history(from: .min, limit: 3) == Array(model.live.prefix(3)))

        // A fork before compaction.
        let forkStep = Int64(g.int(0...Int(max(0, step))))
        try checkFork(source: run, at: forkStep, model: model, into: dir.sub("fork-before"), seed: seed)

        // Compaction keeps the contents; a second one has nothing to do.
        let result = try Compaction.compact(directory: run)
        #expect(!result.skipped || rewrote)
        let compacted = try RunDirectory.reader(run)
        defer { compacted.close() }
        expectContents(try compacted.contents(), model, "seed \(seed), compacted")
        #expect(compacted.frames.allSatisfy { $0.header.flags.contains(.compacted) })
        #expect(try Compaction.compact(directory: run).skipped, "seed \(seed): a compacted log was compacted again")
        for s in Set([steps.first, steps.last, Optional(forkStep)].compactMap { $0 }) {
            #expect(try compacted.row(atStep: s) == model.live.first { $0.step == s }, "seed \(seed): compacted row(atStep: \(s))")
        }

        // A fork of the compacted log holds the same live history.
        try checkFork(source: run, at: forkStep, model: model, into: dir.sub("fork-after"), seed: seed)

        // The compacted log can be appended to and rewound like any other.
        let w2 = try LogWriter.open(directory: run, configuration: .test)
        let extra = HistoryRow(step: step, timestamp: 1, values: ["after": 1])
        try w2.append(.history(extra))
        model.apply(.history(extra))
        if let target = steps.randomElement(using: &g.rng) {
            let expectedBranch = model.nextBranch
            let marker = try w2.rewind(toStep: target)
            #expect(marker.branch == expectedBranch)
            model.rewind(marker)
        }
        try w2.close()
        expectContents(try RunDirectory.reader(run).contents(), model, "seed \(seed), appended after compaction")
    }

    func checkFork(source: String, at step: Int64, model: ContentsModel, into destination: String, seed: Int) throws {
        let prefix = model.live.filter { $0.step <= step }
        guard let last = prefix.last else {
            #expect(storeError { try RunDirectory.fork(source: source, atStep: step, to: destination, metadata: RunMetadata()) }?.code == .invalidArgument)
            return
        }
        let result = try RunDirectory.fork(source: source, atStep: step, to: destination, metadata: RunMetadata(["id": .string("child-\(seed)")]))
        #expect(result.lastStep == last.step)
        let f = try RunDirectory.reader(destination)
        defer { f.close() }
        let c = try f.contents()
        #expect(c.history == prefix, "seed \(seed): fork at \(step) holds \(c.history.map(\.step)), want \(prefix.map(\.step))")
        #expect(c.config == model.config, "seed \(seed): fork config")
        #expect(c.summary == model.summary, "seed \(seed): fork summary")
        #expect(c.metadata["id"] == .string("child-\(seed)"))
        #expect(c.forkOrigin?.sourceID == model.metadata["id"]?.stringValue ?? "")
        #expect(c.forkOrigin?.sourceProject == model.metadata["project"]?.stringValue)
        #expect(c.forkOrigin?.step == step)
        // The source is untouched and the fork can be written to.
        let w = try LogWriter.open(directory: destination, configuration: .test)
        try w.appendRow(step: last.step + 1, timestamp: 0, values: ["child": 1])
        try w.close()
        #expect(try RunDirectory.reader(destination).contents().history == prefix + [HistoryRow(step: last.step + 1, timestamp: 0, values: ["child": 1])])
    }

    /// Values survive a round trip through every path a row can take, bit for bit.
    @Test func valuesRoundTripBitForBit() throws {
        var g = ValueGenerator(rng: SplitMix64(seed: 2024))
        let dir = TempDir()
        let run = dir.sub("run")
        let w = try LogWriter.open(directory: run, configuration: .test)
        var rows: [HistoryRow] = []
        var config: [String: Value] = [:]
        for s in 0..<500 {
            let values = Dictionary(uniqueKeysWithValues: (0..<g.int(0...6)).map { i in ("c\(i)", g.value()) })
            rows.append(HistoryRow(step: Int64(s), timestamp: g.timestamp(), values: values))
            try w.appendRow(step: rows[s].step, timestamp: rows[s].timestamp, values: values)
            if s % 50 == 0 {
                let v = g.object(maxCount: 8)
                try w.append(.config(ConfigChange(values: v)))
                config.merge(v) { _, new in new }
            }
            if s % 97 == 0 { try w.flush() }
        }
        try w.close()
        let c = try RunDirectory.reader(run).contents()
        #expect(c.history == rows)
        #expect(c.config == config)
        try Compaction.compact(directory: run)
        #expect(try RunDirectory.reader(run).contents().history == rows)
    }

    @Test func historyLimitIsRespected() throws {
        let dir = TempDir()
        let run = dir.sub("run")
        let w = try LogWriter.open(directory: run, configuration: .test)
        for s in 0..<10 { try w.appendRow(step: Int64(s), timestamp: 0, values: ["x": .int(Int64(s))]) }
        try w.close()
        let r = try RunDirectory.reader(run)
        defer { r.close() }
        #expect(try r.history(from: 3, limit: 2).map(\.step) == [3, 4])
        #expect(try r.history(from: 8, limit: 5).map(\.step) == [8, 9])
        #expect(try r.history(from: .min, limit: 0).isEmpty)
        #expect(try r.history(from: 20).isEmpty)
    }

    /// Rewinds in a row, to steps before, inside and after the live history.
    @Test func rewindsInSequence() throws {
        let dir = TempDir()
        let run = dir.sub("run")
        var model = ContentsModel()
        let w = try LogWriter.open(directory: run, configuration: { var c = LogWriter.Configuration.test; c.maxFrameRows = 4; return c }())
        func row(_ s: Int64, _ v: Int64) throws {
            let r = HistoryRow(step: s, timestamp: s, values: ["v": .int(v)])
            try w.append(.history(r))
            model.apply(.history(r))
        }
        for s in 0..<20 { try row(Int64(s), 0) }
        for (target, resumeAt, count) in [(Int64(10), Int64(11), 5), (25, 26, 3), (12, 13, 10), (3, 4, 2), (0, 1, 0), (100, 101, 0)] {
            let m = try w.rewind(toStep: target)
            model.rewind(m)
            for s in 0..<count { try row(resumeAt + Int64(s), target) }
        }
        try w.close()
        expectContents(try RunDirectory.reader(run).contents(), model, "rewinds in sequence")
        #expect(model.rewinds.map(\.branch) == [1, 2, 3, 4, 5, 6])
        #expect(model.live.map(\.step) == [0])
        try Compaction.compact(directory: run)
        expectContents(try RunDirectory.reader(run).contents(), model, "rewinds in sequence, compacted")
    }
}
