/// What a reader sees in a run's log: the logical contents that rewinds, forks and
/// compaction are defined against.
///
/// Two logs with equal `RunContents` are the same run to every reader; compaction keeps it
/// unchanged (a property test checks this).
public struct RunContents: Sendable, Hashable {
    /// Run metadata, all `runMetadata` records merged field by field.
    public var metadata: [String: Value] = [:]
    public var config: [String: Value] = [:]
    public var summary: [String: Value] = [:]
    public var tags: [String] = []
    /// The live history, in log order (steps increase when written through the SDK).
    public var history: [HistoryRow] = []
    /// Rows moved out of the live history by rewinds, by branch number; each row's
    /// `branch` is its branch number.
    public var archived: [UInt32: [HistoryRow]] = [:]
    /// Rewinds in the order they happened (cut positions are not part of the contents).
    public var rewinds: [RewindInfo] = []
    public var forkOrigin: ForkOrigin?
    /// Every other record, in log order: console lines, system metrics, files, resumes,
    /// exits and unknown kinds.
    public var events: [Record] = []

    public struct RewindInfo: Sendable, Hashable {
        public var step: Int64
        public var branch: UInt32
        public var timestamp: Int64
    }

    public init() {}

    /// The last exit record, if the run's last lifecycle record is an exit.
    public var exit: ExitRecord? {
        for e in events.reversed() {
            switch e {
            case .exit(let x): return x
            case .resume: return nil
            default: continue
            }
        }
        return nil
    }

    /// The last live step, if any.
    public var lastStep: Int64? { history.last?.step }
}

/// Which positions of a log rewinds have archived, and into which branch.
struct ArchiveMap: Sendable {
    struct Interval: Sendable {
        var cut: RecordPosition
        var marker: RecordPosition
        var branch: UInt32
    }
    /// In marker (file) order: the first interval that covers a row decides its branch.
    var intervals: [Interval] = []
    var markers: [(position: RecordPosition, marker: RewindMarker)] = []

    mutating func add(_ marker: RewindMarker, at position: RecordPosition) {
        markers.append((position, marker))
        if let cut = marker.cut, cut < position {
            intervals.append(Interval(cut: cut, marker: position, branch: marker.branch))
        }
    }

    /// The branch a live-written row at `p` was archived into, or nil if it is live.
    func branch(at p: RecordPosition) -> UInt32? {
        for i in intervals where i.cut <= p && p < i.marker { return i.branch }
        return nil
    }

    /// Whether any row of a frame with `recordCount` records at `sequence` may be archived,
    /// and whether all of them are.
    func coverage(sequence: UInt64, recordCount: UInt32) -> (any: Bool, all: Bool) {
        let first = RecordPosition(sequence: sequence, index: 0)
        let last = RecordPosition(sequence: sequence, index: recordCount == 0 ? 0 : recordCount - 1)
        var any = false
        for i in intervals {
            if i.cut <= first && last < i.marker { return (true, true) }
            if i.cut <= last && first < i.marker { any = true }
        }
        return (any, false)
    }

    var nextBranch: UInt32 { (markers.map(\.marker.branch).max() ?? 0) + 1 }
}

/// Folds records into `RunContents`.
struct ContentsBuilder {
    var contents = RunContents()
    let archive: ArchiveMap

    mutating func apply(_ record: Record, at position: RecordPosition) {
        switch record {
        case .runMetadata(let m): contents.metadata.merge(m.fields) { _, new in new }
        case .config(let c): Self.applyChange(&contents.config, c.replace, c.values, c.removed)
        case .summary(let s): Self.applyChange(&contents.summary, s.replace, s.values, s.removed)
        case .tags(let t): contents.tags = t
        case .history(var row):
            if row.branch != 0 {
                contents.archived[row.branch, default: []].append(row)
            } else if let b = archive.branch(at: position) {
                row.branch = b
                contents.archived[b, default: []].append(row)
            } else {
                contents.history.append(row)
            }
        case .rewind(let r):
            contents.rewinds.append(.init(step: r.step, branch: r.branch, timestamp: r.timestamp))
        case .forkOrigin(let f): contents.forkOrigin = f
        case .console, .systemMetrics, .file, .resume, .exit, .unknown:
            contents.events.append(record)
        }
    }

    static func applyChange(_ target: inout [String: Value], _ replace: Bool, _ values: [String: Value], _ removed: [String]) {
        if replace { target = values } else { target.merge(values) { _, new in new } }
        for k in removed { target[k] = nil }
    }
}

/// A frame's live history rows, for seeking by step.
struct LiveFrame: Sendable {
    var frame: FrameInfo
    var firstStep: Int64
    var lastStep: Int64
}

extension LogReader {
    /// The rewind markers of the log, read from the frames flagged as holding one.
    func archiveMap() throws(StoreError) -> ArchiveMap {
        var map = ArchiveMap()
        for f in frames where f.header.flags.contains(.hasRewind) {
            for (i, r) in try records(in: f).enumerated() {
                if case .rewind(let m) = r { map.add(m, at: RecordPosition(sequence: f.header.sequence, index: UInt32(i))) }
            }
        }
        return map
    }

    /// Reads and folds the whole log.
    public func contents() throws(StoreError) -> RunContents {
        var builder = ContentsBuilder(archive: try archiveMap())
        for f in frames {
            for (i, r) in try records(in: f).enumerated() {
                builder.apply(r, at: RecordPosition(sequence: f.header.sequence, index: UInt32(i)))
            }
        }
        return builder.contents
    }

    /// Folds only the frames that hold something other than history rows: metadata,
    /// config, summary, tags, lineage and events, without decoding history.
    public func state() throws(StoreError) -> RunContents {
        var builder = ContentsBuilder(archive: ArchiveMap())
        for f in frames where f.header.flags.contains(.hasState) {
            for (i, r) in try stateRecords(in: f) {
                builder.apply(r, at: RecordPosition(sequence: f.header.sequence, index: i))
            }
        }
        return builder.contents
    }

    /// The live history's frames with their live step ranges, in log order (steps
    /// ascending when written through the SDK). Only frames that a rewind cut through are decoded.
    func liveFrames(_ map: ArchiveMap) throws(StoreError) -> [LiveFrame] {
        var out: [LiveFrame] = []
        for f in frames where f.header.flags.contains(.hasHistory) {
            let cover = map.coverage(sequence: f.header.sequence, recordCount: f.header.recordCount)
            if cover.all { continue }
            if !cover.any {
                out.append(LiveFrame(frame: f, firstStep: f.header.firstStep, lastStep: f.header.lastStep))
                continue
            }
            var lo = Int64.max, hi = Int64.min
            for block in try historySteps(in: f).blocks where block.branch == 0 {
                for (i, step) in block.steps.enumerated()
                where map.branch(at: RecordPosition(sequence: f.header.sequence, index: block.firstIndex + UInt32(i))) == nil {
                    lo = min(lo, step)
                    hi = max(hi, step)
                }
            }
            if lo <= hi { out.append(LiveFrame(frame: f, firstStep: lo, lastStep: hi)) }
        }
        return out
    }

    /// Finds live rows by step in O(log frames): the first live row whose step is `>= step`
    /// (or `> step` when `after` is true), with its position.
    func seekLive(_ step: Int64, after: Bool, map: ArchiveMap, live: [LiveFrame]) throws(StoreError) -> (position: RecordPosition, row: HistoryRow)? {
        let target = after ? step &+ 1 : step
        if after && step == .max { return nil }
        var lo = 0, hi = live.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if live[mid].lastStep < target { lo = mid + 1 } else { hi = mid }
        }
        guard lo < live.count else { return nil }
        for lf in live[lo...] {
            let seq = lf.frame.header.sequence
            let frameSteps = try historySteps(in: lf.frame)
            for (k, block) in frameSteps.blocks.enumerated() where block.branch == 0 {
                for i in 0..<block.steps.count where block.steps[i] >= target {
                    let p = RecordPosition(sequence: seq, index: block.firstIndex + UInt32(i))
                    if map.branch(at: p) == nil { return (p, try frameSteps.row(block: k, i, frame: lf.frame, path: path)) }
                }
            }
        }
        return nil
    }

    /// The last live row with a step `<= step`, with its position.
    func lastLive(atOrBefore step: Int64, map: ArchiveMap, live: [LiveFrame]) throws(StoreError) -> (position: RecordPosition, row: HistoryRow)? {
        var lo = 0, hi = live.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if live[mid].firstStep <= step { lo = mid + 1 } else { hi = mid }
        }
        for lf in live[..<lo].reversed() {
            let seq = lf.frame.header.sequence
            let frameSteps = try historySteps(in: lf.frame)
            for (k, block) in frameSteps.blocks.enumerated().reversed() where block.branch == 0 {
                for i in (0..<block.steps.count).reversed() where block.steps[i] <= step {
                    let p = RecordPosition(sequence: seq, index: block.firstIndex + UInt32(i))
                    if map.branch(at: p) == nil { return (p, try frameSteps.row(block: k, i, frame: lf.frame, path: path)) }
                }
            }
        }
        return nil
    }

    /// The live history row with exactly `step`, found in O(log frames).
    public func row(atStep step: Int64) throws(StoreError) -> HistoryRow? {
        let map = try archiveMap()
        guard let hit = try seekLive(step, after: false, map: map, live: try liveFrames(map)), hit.row.step == step else { return nil }
        return hit.row
    }

    /// Live history rows with `step >= from`, in order, decoding only the frames from there on.
    public func history(from step: Int64 = .min, limit: Int = .max) throws(StoreError) -> [HistoryRow] {
        guard limit > 0 else { return [] }
        let map = try archiveMap()
        let live = try liveFrames(map)
        var lo = 0, hi = live.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if live[mid].lastStep < step { lo = mid + 1 } else { hi = mid }
        }
        var out: [HistoryRow] = []
        guard lo < live.count else { return out }
        for lf in live[lo...] {
            let seq = lf.frame.header.sequence
            for (i, r) in try records(in: lf.frame).enumerated() {
                guard case .history(let row) = r, row.branch == 0, row.step >= step,
                      map.branch(at: RecordPosition(sequence: seq, index: UInt32(i))) == nil else { continue }
                out.append(row)
                if out.count >= limit { return out }
            }
        }
        return out
    }
}

extension LogReader {
    /// The last step of the live history, found without decoding the whole log.
    public func lastLiveStep() throws(StoreError) -> Int64? {
        let map = try archiveMap()
        return try liveFrames(map).last?.lastStep
    }
}

/// A frame's decompressed payload with the steps of its history blocks: finding a row by step
/// reads the step deltas alone; only the block holding the row found is decoded, column by
/// column, and no dictionary is built for any other row.
struct FrameSteps {
    struct Block {
        var branch: UInt32
        var steps: [Int64]
        /// Record index of the block's first row.
        var firstIndex: UInt32
        /// The block body in `raw`.
        var body: Range<Int>
    }
    var raw: [UInt8]
    var blocks: [Block]

    func row(block k: Int, _ i: Int, frame: FrameInfo, path: String) throws(StoreError) -> HistoryRow {
        do {
            var r = ByteReader(raw, offset: blocks[k].body.lowerBound, end: blocks[k].body.upperBound)
            return try FrameCodec.decodeBlock(&r).row(i)
        } catch {
            throw StoreError(.corrupted, "frame \(frame.header.sequence) is malformed: \(error)", path: path, offset: frame.offset)
        }
    }
}

extension FrameCodec.HistoryBlock {
    /// Row `i` of the block as a `HistoryRow`.
    func row(_ i: Int) -> HistoryRow {
        var values: [String: Value] = [:]
        for c in columns {
            if let rows = c.rows {
                // `rows` is ascending: binary search for row i.
                var lo = 0, hi = rows.count
                while lo < hi { let mid = (lo + hi) / 2; if Int(rows[mid]) < i { lo = mid + 1 } else { hi = mid } }
                if lo < rows.count, Int(rows[lo]) == i { values[c.key] = c.values[lo] }
            } else {
                values[c.key] = c.values[i]
            }
        }
        return HistoryRow(step: steps[i], timestamp: timestamps[i], values: values, branch: branch)
    }
}
