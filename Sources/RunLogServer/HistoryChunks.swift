import RunLogStore

/// History as the server stores it: per-metric column chunks.
///
/// Every history block of an ingested frame becomes one chunk per metric (column): the
/// metric's steps and values over the block's rows, with the step range, the number of
/// points and the minimum and maximum finite value. Ingest is then a handful of inserts per
/// frame, and reading one metric over a step range touches only the chunks that overlap it
/// (a log written with the SDK's default of 16,384 rows per frame holds a 1,000,000-step
/// metric in ~62 chunks).
///
/// Every block also gives a `_timestamp` chunk (the rows' times in seconds since the Unix
/// epoch, as wandb's history has them) unless the block has a `_timestamp` column of its
/// own; its chunks count the run's rows.
///
/// Encodings (the first byte of each blob says which):
///
/// ```
/// steps  := 0x00 stride:svarint            ; step[i] = first_step + i * stride
///         | 0x01 delta:svarint{count}      ; step[i] = step[i-1] + delta[i], step[-1] = 0
/// values := 0x00 f64le{count}              ; numbers (ints are stored as doubles)
///         | 0x01 json                      ; any other values, as a JSON array (UTF-8)
///         | 0x02 f32le{count}              ; numbers that are all exactly float32 values
/// ```
///
/// Metrics of training loops are mostly float32 tensors' values (and small integers), which
/// `0x02` stores in half the bytes, bit for bit: chunks are most of what ingest writes, and
/// the writes bound ingest. (zstd over XOR byte planes was tried: a third smaller for full
/// doubles, but twice the decoding CPU on ingest and chart queries, for no faster ingest.)
struct HistoryChunk: Sendable, Hashable {
    var metric: String
    /// 0 for live history; an archived branch (≥ 1) for points a rewind moved out of it.
    var branch: UInt32
    var firstStep: Int64
    var lastStep: Int64
    var count: Int
    /// Smallest and largest finite value; nil for non-numeric chunks or all non-finite ones.
    var min: Double?
    var max: Double?
    var steps: [UInt8]
    var values: [UInt8]
    /// The sequence number of the frame the points came from.
    var sequence: UInt64

    static let timestampMetric = "_timestamp"

    var isNumeric: Bool { values.first == 0 || values.first == 2 }
}

/// A chunk's points, decoded.
struct ChunkPoints: Sendable {
    enum Values: Sendable {
        case doubles([Double])
        case generic([Value])
    }
    var steps: [Int64]
    var values: Values
    var count: Int { steps.count }
}

struct ChunkDecodeError: Error, CustomStringConvertible {
    var message: String
    var description: String { "damaged history chunk: \(message)" }
}

extension HistoryChunk {
    // MARK: Building

    /// The chunks of a frame's history blocks, in order.
    static func chunks(of blocks: [FrameCodec.HistoryBlock], sequence: UInt64) -> [HistoryChunk] {
        blocks.flatMap { chunks(of: $0, sequence: sequence) }
    }

    /// The chunks of one history block: one per column, plus `_timestamp`.
    static func chunks(of block: FrameCodec.HistoryBlock, sequence: UInt64) -> [HistoryChunk] {
        var out: [HistoryChunk] = []
        guard block.rowCount > 0 else { return out }
        out.reserveCapacity(block.columns.count + 1)
        if !block.columns.contains(where: { $0.key == timestampMetric }) {
            let seconds = block.timestamps.map { Double($0) / 1_000_000 }
            out.append(make(metric: timestampMetric, branch: block.branch, steps: block.steps, doubles: seconds, sequence: sequence))
        }
        for column in block.columns {
            let steps: [Int64]
            if let rows = column.rows {
                guard !rows.isEmpty else { continue }
                steps = rows.map { block.steps[Int($0)] }
            } else {
                steps = block.steps
            }
            switch column.values {
            case .doubles(let d):
                out.append(make(metric: column.key, branch: block.branch, steps: steps, doubles: d, sequence: sequence))
            case .ints(let i):
                out.append(make(metric: column.key, branch: block.branch, steps: steps, doubles: i.map { Double($0) }, sequence: sequence))
            case .values(let vs):
                var numbers: [Double] = []
                numbers.reserveCapacity(vs.count)
                for v in vs {
                    switch v {
                    case .double(let d): numbers.append(d)
                    case .int(let i): numbers.append(Double(i))
                    default: break
                    }
                }
                if numbers.count == vs.count {
                    out.append(make(metric: column.key, branch: block.branch, steps: steps, doubles: numbers, sequence: sequence))
                } else {
                    out.append(make(metric: column.key, branch: block.branch, steps: steps, generic: vs, sequence: sequence))
                }
            }
        }
        return out
    }

    static func make(metric: String, branch: UInt32, steps: [Int64], doubles: [Double], sequence: UInt64) -> HistoryChunk {
        precondition(steps.count == doubles.count && !steps.isEmpty)
        var lo = Double.infinity, hi = -Double.infinity
        var anyFinite = false
        doubles.withUnsafeBufferPointer { b in
            for d in b where d.isFinite {
                if d < lo { lo = d }
                if d > hi { hi = d }
                anyFinite = true
            }
        }
        let (first, last, encoded) = encodeSteps(steps)
        let float32 = doubles.withUnsafeBufferPointer { b in
            var exact = true
            for d in b where Double(Float(d)).bitPattern != d.bitPattern { exact = false; break }
            return exact
        }
        let width = float32 ? 4 : 8
        var values = [UInt8](repeating: 0, count: 1 + doubles.count * width)
        values.withUnsafeMutableBytes { out in
            if float32 {
                out[0] = 2
                for (i, d) in doubles.enumerated() { out.storeBytes(of: Float(d).bitPattern.littleEndian, toByteOffset: 1 + i * 4, as: UInt32.self) }
                return
            }
            doubles.withUnsafeBytes { src in
                #if _endian(little)
                UnsafeMutableRawBufferPointer(rebasing: out[1...]).copyMemory(from: src)
                #else
                for (i, d) in doubles.enumerated() { out.storeBytes(of: d.bitPattern.littleEndian, toByteOffset: 1 + i * 8, as: UInt64.self) }
                #endif
            }
        }
        return HistoryChunk(metric: metric, branch: branch, firstStep: first, lastStep: last, count: steps.count,
                            min: anyFinite ? lo : nil, max: anyFinite ? hi : nil, steps: encoded, values: values, sequence: sequence)
    }

    static func make(metric: String, branch: UInt32, steps: [Int64], generic: [Value], sequence: UInt64) -> HistoryChunk {
        var w = JSONWriter(capacity: generic.count * 8)
        w.value(.array(generic))
        let (first, last, encoded) = encodeSteps(steps)
        return HistoryChunk(metric: metric, branch: branch, firstStep: first, lastStep: last, count: steps.count,
                            min: nil, max: nil, steps: encoded, values: [1] + Array(w.out.utf8), sequence: sequence)
    }

    /// Step range and encoding: arithmetic when every delta is the same, deltas otherwise.
    static func encodeSteps(_ steps: [Int64]) -> (first: Int64, last: Int64, encoded: [UInt8]) {
        let n = steps.count
        var arithmetic = true
        let stride = n > 1 ? steps[1] &- steps[0] : 1
        var lo = steps[0], hi = steps[0]
        steps.withUnsafeBufferPointer { s in
            for i in 1..<Swift.max(n, 1) {
                if s[i] &- s[i - 1] != stride { arithmetic = false }
                if s[i] < lo { lo = s[i] }
                if s[i] > hi { hi = s[i] }
            }
        }
        var out: [UInt8] = []
        if arithmetic && steps[0] == lo {
            out.reserveCapacity(11)
            out.append(0)
            appendSVarint(stride, to: &out)
        } else {
            out.reserveCapacity(1 + n * 2)
            out.append(1)
            var prev: Int64 = 0
            for s in steps { appendSVarint(s &- prev, to: &out); prev = s }
        }
        return (lo, hi, out)
    }

    // MARK: Decoding

    /// The chunk's steps, decoded.
    func decodeSteps() throws(ChunkDecodeError) -> [Int64] {
        guard let tag = steps.first else { throw ChunkDecodeError(message: "empty steps") }
        var pos = 1
        switch tag {
        case 0:
            let stride = try Self.readSVarint(steps, &pos)
            var out = [Int64](repeating: 0, count: count)
            var s = firstStep
            for i in 0..<count { out[i] = s; s &+= stride }
            return out
        case 1:
            var out = [Int64](repeating: 0, count: count)
            var s: Int64 = 0
            for i in 0..<count { s &+= try Self.readSVarint(steps, &pos); out[i] = s }
            return out
        default:
            throw ChunkDecodeError(message: "unknown steps encoding \(tag)")
        }
    }

    /// The arithmetic stride, when the steps are `firstStep + i * stride`.
    var arithmeticStride: Int64? {
        guard steps.first == 0 else { return nil }
        var pos = 1
        return try? Self.readSVarint(steps, &pos)
    }

    func decodeDoubles() throws(ChunkDecodeError) -> [Double] {
        if values.first == 2 {
            guard values.count == 1 + count * 4 else { throw ChunkDecodeError(message: "not \(count) float32 numbers") }
            var out = [Double](repeating: 0, count: count)
            values.withUnsafeBytes { src in
                out.withUnsafeMutableBufferPointer { o in
                    for i in 0..<count {
                        o[i] = Double(Float(bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 1 + i * 4, as: UInt32.self))))
                    }
                }
            }
            return out
        }
        guard values.first == 0, values.count == 1 + count * 8 else { throw ChunkDecodeError(message: "not \(count) numbers") }
        var out = [Double](repeating: 0, count: count)
        out.withUnsafeMutableBytes { dst in
            values.withUnsafeBytes { src in
                #if _endian(little)
                dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[1...]))
                #else
                for i in 0..<count { dst.storeBytes(of: UInt64(littleEndian: src.loadUnaligned(fromByteOffset: 1 + i * 8, as: UInt64.self)), toByteOffset: i * 8, as: UInt64.self) }
                #endif
            }
        }
        return out
    }

    func decode() throws(ChunkDecodeError) -> ChunkPoints {
        let s = try decodeSteps()
        switch values.first {
        case 0, 2: return ChunkPoints(steps: s, values: .doubles(try decodeDoubles()))
        case 1:
            let text = String(decoding: values[1...], as: UTF8.self)
            guard case .array(let a)? = try? JSONParser.parse(text), a.count == count else {
                throw ChunkDecodeError(message: "bad JSON values")
            }
            return ChunkPoints(steps: s, values: .generic(a))
        default: throw ChunkDecodeError(message: "unknown values encoding")
        }
    }

    /// Splits the chunk into the points with step ≤ `step` (kept on the chunk's branch) and
    /// the others (moved to `branch`). Either part is nil when it would be empty.
    func split(after step: Int64, into branch: UInt32) throws(ChunkDecodeError) -> (kept: HistoryChunk?, moved: HistoryChunk?) {
        let p = try decode()
        var keepIdx: [Int] = [], moveIdx: [Int] = []
        for i in 0..<p.count { if p.steps[i] <= step { keepIdx.append(i) } else { moveIdx.append(i) } }
        func part(_ idx: [Int], _ b: UInt32) -> HistoryChunk? {
            guard !idx.isEmpty else { return nil }
            let s = idx.map { p.steps[$0] }
            switch p.values {
            case .doubles(let d): return Self.make(metric: metric, branch: b, steps: s, doubles: idx.map { d[$0] }, sequence: sequence)
            case .generic(let g): return Self.make(metric: metric, branch: b, steps: s, generic: idx.map { g[$0] }, sequence: sequence)
            }
        }
        return (part(keepIdx, self.branch), part(moveIdx, branch))
    }

    // MARK: Varints

    static func appendSVarint(_ v: Int64, to out: inout [UInt8]) {
        var u = UInt64(bitPattern: (v << 1) ^ (v >> 63))
        while u >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: u) | 0x80)
            u >>= 7
        }
        out.append(UInt8(u))
    }

    static func readSVarint(_ b: [UInt8], _ pos: inout Int) throws(ChunkDecodeError) -> Int64 {
        var u: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard pos < b.count, shift < 64 else { throw ChunkDecodeError(message: "bad varint") }
            let byte = b[pos]
            pos += 1
            u |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { break }
            shift += 7
        }
        return Int64(bitPattern: u >> 1) ^ -Int64(bitPattern: u & 1)
    }
}

/// One metric over a step range, possibly downsampled.
struct Series: Sendable {
    var steps: [Int64] = []
    var values: [Double] = []
    var mins: [Double] = []
    var maxs: [Double] = []
    /// Non-numeric values (for metrics whose chunks are not numbers), parallel to `steps`.
    var generic: [Value]? = nil
    /// Points stored in the range.
    var total = 0
    var sampled = false
}

enum Downsampler {
    /// Reads the points of `chunks` (one metric, one branch) within `range` and, when there
    /// are more than `points` of them, cuts the range into at most `points` equal step
    /// buckets: each gives its smallest step, the mean of its finite values, and their
    /// minimum and maximum, so that spikes survive.
    static func series(_ chunks: [HistoryChunk], range: ClosedRange<Int64>, points: Int) throws(ChunkDecodeError) -> Series {
        let chunks = chunks.filter { $0.lastStep >= range.lowerBound && $0.firstStep <= range.upperBound }
            .sorted { ($0.firstStep, $0.sequence) < ($1.firstStep, $1.sequence) }
        var out = Series()
        guard !chunks.isEmpty else { return out }
        if chunks.contains(where: { !$0.isNumeric }) { return try genericSeries(chunks, range: range, points: points) }

        // The points in range, and the actual step extent.
        var total = 0
        var lo = Int64.max, hi = Int64.min
        var decoded: [(stride: Int64?, steps: [Int64], values: [Double], first: Int64)] = []
        decoded.reserveCapacity(chunks.count)
        for c in chunks {
            let values = try c.decodeDoubles()
            let stride = c.arithmeticStride
            let steps = stride == nil ? try c.decodeSteps() : []
            decoded.append((stride, steps, values, c.firstStep))
            if range.lowerBound <= c.firstStep && c.lastStep <= range.upperBound {
                total += c.count
                lo = min(lo, c.firstStep)
                hi = max(hi, c.lastStep)
            } else {
                forEach(decoded[decoded.count - 1]) { s, _ in
                    if range.contains(s) { total += 1; lo = min(lo, s); hi = max(hi, s) }
                }
            }
        }
        out.total = total
        guard total > 0 else { return out }
        let points = max(points, 1)

        if total <= points {
            out.steps.reserveCapacity(total)
            out.values.reserveCapacity(total)
            for d in decoded {
                forEach(d) { s, v in
                    if range.contains(s) { out.steps.append(s); out.values.append(v) }
                }
            }
            if zip(out.steps, out.steps.dropFirst()).contains(where: { $0 > $1 }) {
                let order = out.steps.indices.sorted { out.steps[$0] < out.steps[$1] }
                out.steps = order.map { out.steps[$0] }
                out.values = order.map { out.values[$0] }
            }
            out.mins = out.values
            out.maxs = out.values
            return out
        }

        // Buckets of equal step width over [lo, hi].
        let span = UInt64(bitPattern: hi &- lo)
        let width = span / UInt64(points) + 1
        let n = Int(span / width) + 1
        var first = [Int64](repeating: .max, count: n)
        var sum = [Double](repeating: 0, count: n)
        var finite = [Int](repeating: 0, count: n)
        var seen = [Bool](repeating: false, count: n)
        var other = [Double](repeating: .nan, count: n)
        var mn = [Double](repeating: .infinity, count: n)
        var mx = [Double](repeating: -.infinity, count: n)
        for d in decoded {
            if let stride = d.stride, stride > 0, !d.values.isEmpty {
                // Evenly spaced steps: each bucket is a contiguous run of values, summed in a
                // tight loop (no division per point). [lo, hi] holds exactly the points in range.
                let count = Int64(d.values.count)
                var i = d.first >= lo ? 0 : (lo &- d.first &+ stride &- 1) / stride
                let last = min(count - 1, hi >= d.first ? (hi &- d.first) / stride : -1)
                d.values.withUnsafeBufferPointer { v in
                    while i <= last {
                        let step = d.first &+ i &* stride
                        let b = Int(UInt64(bitPattern: step &- lo) / width)
                        let bucketEnd = lo &+ Int64(bitPattern: UInt64(b + 1) &* width) &- 1
                        let end = min(last, (bucketEnd &- d.first) / stride)
                        if step < first[b] { first[b] = step }
                        seen[b] = true
                        var s = 0.0, c = 0, low = mn[b], high = mx[b], odd = other[b]
                        for j in Int(i)...Int(end) {
                            let x = v[j]
                            if x.isFinite {
                                s += x
                                c += 1
                                low = Swift.min(low, x)
                                high = Swift.max(high, x)
                            } else if odd.isNaN {
                                odd = x
                            }
                        }
                        sum[b] += s
                        finite[b] += c
                        mn[b] = low
                        mx[b] = high
                        other[b] = odd
                        i = end + 1
                    }
                }
                continue
            }
            forEach(d) { s, v in
                guard range.contains(s) else { return }
                let b = Int(UInt64(bitPattern: s &- lo) / width)
                if s < first[b] { first[b] = s }
                seen[b] = true
                if v.isFinite {
                    sum[b] += v
                    finite[b] += 1
                    if v < mn[b] { mn[b] = v }
                    if v > mx[b] { mx[b] = v }
                } else if other[b].isNaN {
                    other[b] = v
                }
            }
        }
        out.sampled = true
        for b in 0..<n where seen[b] {
            out.steps.append(first[b])
            if finite[b] > 0 {
                out.values.append(sum[b] / Double(finite[b]))
                out.mins.append(mn[b])
                out.maxs.append(mx[b])
            } else {
                out.values.append(other[b])
                out.mins.append(other[b])
                out.maxs.append(other[b])
            }
        }
        return out
    }

    @inline(__always)
    private static func forEach(_ d: (stride: Int64?, steps: [Int64], values: [Double], first: Int64), _ body: (Int64, Double) -> Void) {
        d.values.withUnsafeBufferPointer { v in
            if let stride = d.stride {
                var s = d.first
                for i in 0..<v.count { body(s, v[i]); s &+= stride }
            } else {
                d.steps.withUnsafeBufferPointer { st in
                    for i in 0..<v.count { body(st[i], v[i]) }
                }
            }
        }
    }

    /// Non-numeric metrics: the points in range, every k-th one when there are too many.
    private static func genericSeries(_ chunks: [HistoryChunk], range: ClosedRange<Int64>, points: Int) throws(ChunkDecodeError) -> Series {
        var steps: [Int64] = []
        var values: [Value] = []
        for c in chunks {
            let p = try c.decode()
            for i in 0..<p.count where range.contains(p.steps[i]) {
                steps.append(p.steps[i])
                switch p.values {
                case .doubles(let d): values.append(.double(d[i]))
                case .generic(let g): values.append(g[i])
                }
            }
        }
        var out = Series()
        out.total = steps.count
        let every = max(1, (steps.count + max(points, 1) - 1) / max(points, 1))
        out.sampled = every > 1
        var g: [Value] = []
        for i in Swift.stride(from: 0, to: steps.count, by: every) {
            out.steps.append(steps[i])
            g.append(values[i])
        }
        out.generic = g
        return out
    }
}
