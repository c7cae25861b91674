/// Columnar staging of history rows, and the history-block encoding (see `FORMAT.md`).
///
/// Rows are appended one at a time into per-metric columns; doubles stay as raw bit
/// patterns so that sealing a block is a tight loop (XOR with the previous value, split
/// into 8 byte planes) that zstd then compresses well.
struct HistoryBlockBuilder: Sendable {
    var branch: UInt32 = 0
    private(set) var steps: [Int64] = []
    private(set) var timestamps: [Int64] = []
    private(set) var columns: [Column] = []
    private var columnIndex: [String: Int] = [:]
    /// The column the key at each position of the previous row's dictionary went to: rows
    /// built the same way iterate their keys in the same order (though not always the order
    /// the columns were made in), so one string compare usually finds the column.
    private var lastOrder: [Int] = []
    /// For ``append(step:timestamp:keys:doubles:)``: the column after each column in the
    /// last row that had it (the last key's successor is the row's first, `firstColumn`).
    private var successor: [Int] = []
    private var firstColumn = -1
    /// A rough count of the bytes the rows take before compression.
    private(set) var approximateBytes = 0

    var rowCount: Int { steps.count }
    var isEmpty: Bool { steps.isEmpty }

    init(branch: UInt32 = 0, capacity: Int = 0) {
        self.branch = branch
        steps.reserveCapacity(capacity)
        timestamps.reserveCapacity(capacity)
    }

    struct Column: Sendable {
        enum Storage: Sendable {
            case doubles([UInt64])
            case ints([Int64])
            case generic([Value])
        }
        let key: String
        var storage: Storage
        /// Row of the first value.
        let firstRow: Int
        /// Values stored.
        var count = 0
        /// One bit per row once a row lacked this column; nil while rows `firstRow..<firstRow+count` all have it.
        var present: [UInt64]?

        init(key: String, first: Value, row: Int, capacity: Int) {
            self.key = key
            firstRow = row
            switch first {
            case .double: var a = [UInt64](); a.reserveCapacity(capacity); storage = .doubles(a)
            case .int: var a = [Int64](); a.reserveCapacity(capacity); storage = .ints(a)
            default: storage = .generic([])
            }
        }

        mutating func append(_ v: Value, row: Int) {
            if present == nil, firstRow + count != row {
                var bits = [UInt64](repeating: 0, count: row / 64 + 1)
                for r in firstRow..<firstRow + count { bits[r >> 6] |= 1 << UInt64(r & 63) }
                present = bits
            }
            if present != nil {
                while present!.count <= row >> 6 { present!.append(0) }
                present![row >> 6] |= 1 << UInt64(row & 63)
            }
            count += 1
            // Switch on `storage` alone, never on a tuple holding it: a `switch (storage, v)`
            // keeps a second reference to the array alive for the whole case body, so every
            // append copied the column (O(rows) per row, quadratic per frame).
            switch storage {
            case .doubles(var a):
                if case .double(let d) = v {
                    storage = .generic([])  // release the buffer so the append below does not copy
                    a.append(d.bitPattern)
                    storage = .doubles(a)
                    return
                }
            case .ints(var a):
                if case .int(let i) = v {
                    storage = .generic([])
                    a.append(i)
                    storage = .ints(a)
                    return
                }
            case .generic(var a):
                storage = .generic([])
                a.append(v)
                storage = .generic(a)
                return
            }
            var all = values
            all.append(v)
            storage = .generic(all)
        }

        /// The value of the last row that has one.
        var lastValue: Value? {
            switch storage {
            case .doubles(let a): return a.last.map { .double(Double(bitPattern: $0)) }
            case .ints(let a): return a.last.map { .int($0) }
            case .generic(let a): return a.last
            }
        }

        /// The stored values in row order (only present rows).
        var values: [Value] {
            switch storage {
            case .doubles(let a): return a.map { .double(Double(bitPattern: $0)) }
            case .ints(let a): return a.map { .int($0) }
            case .generic(let a): return a
            }
        }

        func isPresent(row: Int) -> Bool {
            if let present { return row >> 6 < present.count && present[row >> 6] & (1 << UInt64(row & 63)) != 0 }
            return row >= firstRow && row < firstRow + count
        }
    }

    mutating func append(step: Int64, timestamp: Int64, values: [String: Value]) {
        let row = steps.count
        steps.append(step)
        timestamps.append(timestamp)
        approximateBytes += 12 + values.count * 9
        // The column this position of the previous row went to first (see `lastOrder`).
        var j = 0
        for (key, v) in values {
            defer { j += 1 }
            if j < lastOrder.count, case let ci = lastOrder[j], columns[ci].key == key {
                columns[ci].append(v, row: row)
            } else if let ci = columnIndex[key] {
                columns[ci].append(v, row: row)
                remember(j, ci)
            } else {
                remember(j, columns.count)
                columnIndex[key] = columns.count
                var c = Column(key: key, first: v, row: row, capacity: steps.capacity)
                c.append(v, row: row)
                columns.append(c)
                approximateBytes += key.utf8.count
            }
        }
    }

    mutating func append(step: Int64, timestamp: Int64, doubles: [String: Double]) {
        let row = steps.count
        steps.append(step)
        timestamps.append(timestamp)
        approximateBytes += 12 + doubles.count * 9
        // The column this position of the previous row went to first (one string compare);
        // then the hash table.
        var j = 0
        for (key, d) in doubles {
            defer { j += 1 }
            if j < lastOrder.count, case let ci = lastOrder[j], columns[ci].key == key {
                columns[ci].append(.double(d), row: row)
            } else if let ci = columnIndex[key] {
                columns[ci].append(.double(d), row: row)
                remember(j, ci)
            } else {
                remember(j, columns.count)
                columnIndex[key] = columns.count
                var c = Column(key: key, first: .double(d), row: row, capacity: steps.capacity)
                c.append(.double(d), row: row)
                columns.append(c)
                approximateBytes += key.utf8.count
            }
        }
    }

    private mutating func remember(_ position: Int, _ column: Int) {
        if position < lastOrder.count { lastOrder[position] = column } else if position == lastOrder.count { lastOrder.append(column) }
    }

    /// Appends a row whose values are all doubles, keyed by `keys` (no dictionary in between).
    mutating func append(step: Int64, timestamp: Int64, keys: [String], doubles: UnsafeBufferPointer<Double>) {
        let row = steps.count
        steps.append(step)
        timestamps.append(timestamp)
        approximateBytes += 12 + keys.count * 9
        // The column guessed for each key is the one that came after the previous key's column
        // in the previous row, cyclically (`successor`): rows with the same keys in the same
        // order, or in a rotation of it (wandb-core writes a row's items from a Go map, which
        // starts its walk at a random place), need one hash lookup at most, for the first key.
        if successor.count < columns.count { successor += repeatElement(-1, count: columns.count - successor.count) }
        var previous = -1
        for i in 0..<keys.count {
            let v = Value.double(doubles[i])
            let guess = previous < 0 ? firstColumn : successor[previous]
            let ci: Int
            if guess >= 0, columns[guess].key == keys[i] {
                ci = guess
                columns[ci].append(v, row: row)
            } else if let found = columnIndex[keys[i]] {
                ci = found
                columns[ci].append(v, row: row)
            } else {
                ci = columns.count
                columnIndex[keys[i]] = ci
                var c = Column(key: keys[i], first: v, row: row, capacity: steps.capacity)
                c.append(v, row: row)
                columns.append(c)
                successor.append(-1)
            }
            // Written only when it changes: a read costs less than a write to the array.
            if previous < 0 { firstColumn = ci } else if successor[previous] != ci { successor[previous] = ci }
            previous = ci
        }
        if previous >= 0, successor[previous] != firstColumn { successor[previous] = firstColumn }
    }

    /// Writes the block body (without the record kind and length).
    func encode(into w: inout ByteWriter, chooseEncodings: Bool = false) throws(StoreError) {
        let n = steps.count
        w.uvarint(UInt64(branch))
        w.uvarint(UInt64(n))
        var prev: Int64 = 0
        for s in steps { w.svarint(s &- prev); prev = s }
        prev = 0
        for t in timestamps { w.svarint(t &- prev); prev = t }
        w.uvarint(UInt64(columns.count))
        var data = ByteWriter(capacity: n * 8 + 16)
        for c in columns {
            w.string(c.key)
            if c.present == nil, c.firstRow == 0, c.count == n {
                w.u8(LogFormat.Presence.everyRow.rawValue)
            } else {
                w.u8(LogFormat.Presence.bitmap.rawValue)
                var bitmap = [UInt8](repeating: 0, count: (n + 7) / 8)
                for r in 0..<n where c.isPresent(row: r) { bitmap[r >> 3] |= 1 << UInt8(r & 7) }
                w.append(bitmap)
            }
            data.bytes.removeAll(keepingCapacity: true)
            switch c.storage {
            case .doubles(let bits):
                Self.shuffleDoubles(bits, xor: true, into: &data.bytes)
                var encoding = LogFormat.ColumnEncoding.doubleXORShuffle
                if chooseEncodings, bits.count >= 64 {
                    var plain: [UInt8] = []
                    Self.shuffleDoubles(bits, xor: false, into: &plain)
                    if Self.compressedSize(plain) < Self.compressedSize(data.bytes) {
                        data.bytes = plain
                        encoding = .doubleShuffle
                    }
                }
                w.u8(encoding.rawValue)
            case .ints(let ints):
                w.u8(LogFormat.ColumnEncoding.intDelta.rawValue)
                var p: Int64 = 0
                for i in ints { data.svarint(i &- p); p = i }
            case .generic(let vs):
                w.u8(LogFormat.ColumnEncoding.generic.rawValue)
                for v in vs { try data.value(v) }
            }
            w.uvarint(UInt64(data.bytes.count))
            w.append(data.bytes)
        }
    }

    /// The zstd-compressed size of `bytes`, to compare encodings.
    static func compressedSize(_ bytes: [UInt8]) -> Int {
        var out: [UInt8] = []
        let ctx = ZstdContext()
        do {
            try bytes.withUnsafeBytes { b in Result { () throws(StoreError) in try ctx.compress(b, level: 3, into: &out) } }.get()
        } catch { return bytes.count }
        return out.count
    }

    /// Byte planes of the (optionally XOR-ed) bit patterns: plane b holds byte b of each value.
    static func shuffleDoubles(_ bits: [UInt64], xor: Bool, into out: inout [UInt8]) {
        let m = bits.count
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: m * 8))
        out.withUnsafeMutableBufferPointer { o in
            bits.withUnsafeBufferPointer { b in
                var prev: UInt64 = 0
                for i in 0..<m {
                    let x = xor ? b[i] ^ prev : b[i]
                    prev = b[i]
                    var v = x
                    for plane in 0..<8 {
                        o[start + plane * m + i] = UInt8(truncatingIfNeeded: v)
                        v >>= 8
                    }
                }
            }
        }
    }

    static func unshuffleDoubles(_ r: inout ByteReader, count m: Int, xor: Bool) throws(DecodeError) -> [UInt64] {
        let planes = try r.take(m * 8)
        // Plane by plane over raw pointers: sequential reads, no bounds checks in the loop.
        return [UInt64](unsafeUninitializedCapacity: m) { o, count in
            planes.withUnsafeBufferPointer { p in
                guard let src = p.baseAddress, let dst = o.baseAddress else { return }
                for i in 0..<m { dst[i] = UInt64(src[i]) }
                for plane in 1..<8 {
                    let s = src + plane * m
                    let shift = UInt64(8 * plane)
                    for i in 0..<m { dst[i] |= UInt64(s[i]) << shift }
                }
                if xor {
                    var prev: UInt64 = 0
                    for i in 0..<m { prev ^= dst[i]; dst[i] = prev }
                }
            }
            count = m
        }
    }

    /// Decodes a block body into rows.
    static func decodeRows(_ r: inout ByteReader) throws(DecodeError) -> [HistoryRow] {
        let branch = UInt32(truncatingIfNeeded: try r.uvarint())
        let n = try r.length()  // each row takes at least two bytes (step and time deltas)
        var rows = [HistoryRow]()
        rows.reserveCapacity(n)
        var step: Int64 = 0
        var steps = [Int64](repeating: 0, count: n)
        for i in 0..<n { step &+= try r.svarint(); steps[i] = step }
        var t: Int64 = 0
        for i in 0..<n {
            t &+= try r.svarint()
            rows.append(HistoryRow(step: steps[i], timestamp: t, values: [:], branch: branch))
        }
        let columnCount = try r.length()
        for _ in 0..<columnCount {
            let key = try r.string()
            let presenceByte = try r.u8()
            var present: [Int]
            switch LogFormat.Presence(rawValue: presenceByte) {
            case .everyRow: present = Array(0..<n)
            case .bitmap:
                let bitmap = try r.take((n + 7) / 8)
                present = []
                for row in 0..<n where bitmap[bitmap.startIndex + row >> 3] & (1 << UInt8(row & 7)) != 0 { present.append(row) }
            case nil: throw DecodeError("unknown presence \(presenceByte) in column \(key)")
            }
            let encodingByte = try r.u8()
            let length = try r.length()
            var c = ByteReader(r.bytes, offset: r.offset, end: r.offset + length)
            r.offset += length
            let m = present.count
            switch LogFormat.ColumnEncoding(rawValue: encodingByte) {
            case .doubleXORShuffle, .doubleShuffle:
                guard length == m * 8 else { throw DecodeError("column \(key): \(length) bytes for \(m) doubles") }
                let bits = try unshuffleDoubles(&c, count: m, xor: encodingByte == LogFormat.ColumnEncoding.doubleXORShuffle.rawValue)
                for (i, row) in present.enumerated() { rows[row].values[key] = .double(Double(bitPattern: bits[i])) }
            case .intDelta:
                var p: Int64 = 0
                for row in present { p &+= try c.svarint(); rows[row].values[key] = .int(p) }
            case .generic:
                for row in present { rows[row].values[key] = try c.value() }
            case nil:
                throw DecodeError("unknown column encoding \(encodingByte) in column \(key)")
            }
            guard c.isAtEnd else { throw DecodeError("column \(key) has \(c.remaining) trailing bytes") }
        }
        return rows
    }
}
