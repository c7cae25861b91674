/// Decodes serialized `wandb_internal.Record` messages (wandb 0.31.0 schema, field numbers
/// from `wandb-0.31.0-internal.protoset`) by hand from the protobuf wire format.
///
/// Unknown fields, and known fields with an unexpected wire type, are skipped, as protobuf
/// parsers do; only bytes that are not a protobuf message at all fail.
package enum WandbRecordDecoder {
    package typealias Reader = ProtoReader
    package typealias ProtoError = ProtoReader.ProtoError

    /// Whether a top-level field of `Record` is a member of the `record_type` oneof: every
    /// field but `num` (1), `control` (16), `uuid` (19) and `_info` (200).
    @inline(__always) static func isMember(_ number: Int) -> Bool {
        number != 1 && number != 16 && number != 19 && number != 200
    }

    /// Runs `body` over the bytes of `array`, keeping typed errors.
    @inline(__always) static func borrowing<R>(_ array: [UInt8], _ body: (UnsafeBufferPointer<UInt8>) throws(ProtoError) -> R) throws(ProtoError) -> R {
        try array.withUnsafeBufferPointer { b in Result { () throws(ProtoError) -> R in try body(b) } }.get()
    }

    /// The oneof member of a serialized record, from a scan of its top-level fields (the last
    /// member present wins, as in protobuf). Validates the top-level structure.
    package static func kind(of bytes: [UInt8]) throws(ProtoError) -> WandbRecordKind {
        try borrowing(bytes) { b throws(ProtoError) in try kind(of: b) }
    }

    static func kind(of bytes: UnsafeBufferPointer<UInt8>) throws(ProtoError) -> WandbRecordKind {
        var r = Reader(bytes)
        var kind = WandbRecordKind.none
        while let (number, wire) = try r.nextField() {
            if wire == .lengthDelimited, isMember(number) {
                kind = WandbRecordKind(rawValue: number)
            }
            try r.skip(wire)
        }
        return kind
    }

    /// Decodes a record's number, kind and (for the kinds RunLog uses) content.
    package static func decode(_ raw: WandbRawRecord) throws(ProtoError) -> WandbRecord {
        try borrowing(raw.bytes) { b throws(ProtoError) in try decode(raw, b) }
    }

    static func decode(_ raw: WandbRawRecord, _ bytes: UnsafeBufferPointer<UInt8>) throws(ProtoError) -> WandbRecord {
        var r = Reader(bytes)
        var record = WandbRecord(number: 0, kind: .none, offset: raw.offset, byteCount: raw.bytes.count, content: .other)
        while let (number, wire) = try r.nextField() {
            switch (number, wire) {
            case (1, .varint): record.number = try r.int64()
            case (19, .lengthDelimited): record.uuid = try r.string()
            case (200, .lengthDelimited):
                var info = try r.message()
                while let (n, w) = try info.nextField() {
                    if n == 1, w == .lengthDelimited { record.streamID = try info.string() } else { try info.skip(w) }
                }
            case (_, .lengthDelimited) where isMember(number):
                let kind = WandbRecordKind(rawValue: number)
                record.kind = kind
                var m = try r.message()
                switch kind {
                case .history: record.content = .history(try history(&m))
                case .summary: record.content = .summary(try update(&m))
                case .config: record.content = .config(try update(&m))
                case .run: record.content = .run(try run(&m))
                case .output, .outputRaw: record.content = .output(try output(&m))
                case .stats: record.content = .stats(try stats(&m))
                case .files: record.content = .files(try files(&m))
                case .exit: record.content = .exit(try exit(&m))
                case .header: record.content = .header(try header(&m))
                default: record.content = .other
                }
            default: try r.skip(wire)
            }
        }
        return record
    }

    /// The record's number and the byte range of its oneof member's message (the last one,
    /// as ``decode(_:)`` takes it); the range is empty when the record has none.
    static func member(of bytes: UnsafeBufferPointer<UInt8>) throws(ProtoError) -> (number: Int64, body: Range<Int>) {
        var r = Reader(bytes)
        var number: Int64 = 0
        var body = 0..<0
        while let (n, wire) = try r.nextField() {
            switch (n, wire) {
            case (1, .varint): number = try r.int64()
            case (200, .lengthDelimited):
                // `_info`, read as `decode` reads it, so that damage in it fails here too.
                var info = try r.message()
                while let (_, w) = try info.nextField() { try info.skip(w) }
            case (_, .lengthDelimited) where isMember(n): body = try r.lengthDelimited()
            default: try r.skip(wire)
            }
        }
        return (number, body)
    }

    /// Where a summary record's items are, without decoding them: for each item in order, its
    /// message's range, whether it is a removal, and the bytes of its key fields (`key` and
    /// `nested_key`) when they are contiguous: two items with equal key bytes have the same path.
    /// Reads every field, so it fails wherever ``decode(_:)`` would.
    /// - Returns: the record's number.
    static func summaryItems(_ array: [UInt8], _ visit: (_ item: Range<Int>, _ removal: Bool, _ keyBytes: Range<Int>?) -> Void) throws(ProtoError) -> Int64 {
        try borrowing(array) { bytes throws(ProtoError) in try summaryItems(bytes, visit) }
    }

    static func summaryItems(_ bytes: UnsafeBufferPointer<UInt8>, _ visit: (_ item: Range<Int>, _ removal: Bool, _ keyBytes: Range<Int>?) -> Void) throws(ProtoError) -> Int64 {
        let (number, body) = try member(of: bytes)
        var r = Reader(bytes, range: body)
        while let (n, w) = try r.nextField() {
            guard n == 1 || n == 2, w == .lengthDelimited else { try r.skip(w); continue }
            let range = try r.lengthDelimited()
            var m = Reader(bytes, range: range)
            var keyStart = range.lowerBound, keyEnd = range.lowerBound
            var sawKeys = false, inKeys = false, contiguous = true
            while true {
                let start = m.index
                guard let (f, fw) = try m.nextField() else { break }
                try m.skip(fw)
                if (f == 1 || f == 2) && fw == .lengthDelimited {
                    if !sawKeys {
                        keyStart = start
                        sawKeys = true
                        inKeys = true
                    } else if !inKeys {
                        contiguous = false
                    }
                    keyEnd = m.index
                } else {
                    inKeys = false
                }
            }
            let keys: Range<Int>? = contiguous ? keyStart..<keyEnd : nil
            visit(range, n == 2, keys)
        }
        return number
    }

    /// One item of a history record, located but not decoded.
    struct ItemSpan {
        /// `key` (field 1).
        var key: Range<Int>?
        /// The last `nested_key` component (field 2), and how many there are.
        var nested: Range<Int>?
        var nestedCount = 0
        /// `value_json` (field 16).
        var value: Range<Int>?
        /// A typed value (fields 3–8) is present.
        var typed = false
    }

    /// Locates the items of a history record (see ``ItemSpan``) without decoding them, into
    /// `items` (emptied first), and reads its `step.num`. Fails wherever ``decode(_:)`` would.
    /// - Returns: the record's number and its `step.num` (nil without a `step` message).
    static func historyItems(_ array: [UInt8], into items: inout [ItemSpan]) throws(ProtoError) -> (number: Int64, step: Int64?) {
        try borrowing(array) { bytes throws(ProtoError) in try historyItems(bytes, into: &items) }
    }

    static func historyItems(_ bytes: UnsafeBufferPointer<UInt8>, into items: inout [ItemSpan]) throws(ProtoError) -> (number: Int64, step: Int64?) {
        items.removeAll(keepingCapacity: true)
        let (number, body) = try member(of: bytes)
        var r = Reader(bytes, range: body)
        var step: Int64?
        while let (n, w) = try r.nextField() {
            switch (n, w) {
            case (1, .lengthDelimited):
                var m = try r.message()
                var span = ItemSpan()
                while let (f, fw) = try m.nextField() {
                    switch (f, fw) {
                    case (1, .lengthDelimited): span.key = try m.lengthDelimited()
                    case (2, .lengthDelimited): span.nested = try m.lengthDelimited(); span.nestedCount += 1
                    case (16, .lengthDelimited): span.value = try m.lengthDelimited()
                    case (3, .varint), (4, .varint), (5, .varint), (6, .fixed64), (7, .lengthDelimited), (8, .lengthDelimited):
                        span.typed = true
                        try m.skip(fw)
                    default: try m.skip(fw)
                    }
                }
                items.append(span)
            case (2, .lengthDelimited):
                var m = try r.message()
                var s: Int64 = 0
                while let (sn, sw) = try m.nextField() {
                    if sn == 1, sw == .varint { s = try m.int64() } else { try m.skip(sw) }
                }
                step = s
            default: try r.skip(w)
            }
        }
        return (number, step)
    }

    static func item(_ r: inout Reader) throws(ProtoError) -> WandbItem {
        var item = WandbItem()
        while let (n, w) = try r.nextField() {
            switch (n, w) {
            case (1, .lengthDelimited): item.key = try r.string()
            case (2, .lengthDelimited): item.nestedKey.append(try r.string())
            case (16, .lengthDelimited): item.valueJSON = try r.string()
            case (3, .varint): _ = try r.varint(); item.typedValue = .null
            case (4, .varint): item.typedValue = .bool(try r.bool())
            case (5, .varint): item.typedValue = .int(try r.sint64())
            case (6, .fixed64): item.typedValue = .double(try r.double())
            case (7, .lengthDelimited): item.typedValue = .text(try r.string())
            case (8, .lengthDelimited): item.typedValue = .json(try r.string())
            default: try r.skip(w)
            }
        }
        return item
    }

    static func history(_ r: inout Reader) throws(ProtoError) -> WandbHistoryRecord {
        var h = WandbHistoryRecord()
        while let (n, w) = try r.nextField() {
            switch (n, w) {
            case (1, .lengthDelimited):
                var m = try r.message()
                h.items.append(try item(&m))
            case (2, .lengthDelimited):
                var m = try r.message()
                var step: Int64 = 0
                while let (sn, sw) = try m.nextField() {
                    if sn == 1, sw == .varint { step = try m.int64() } else { try m.skip(sw) }
                }
                h.step = step
            default: try r.skip(w)
            }
        }
        return h
    }

    static func update(_ r: inout Reader) throws(ProtoError) -> WandbUpdateRecord {
        var u = WandbUpdateRecord()
        while let (n, w) = try r.nextField() {
            switch (n, w) {
            case (1, .lengthDelimited):
                var m = try r.message()
                u.updates.append(try item(&m))
            case (2, .lengthDelimited):
                var m = try r.message()
                u.removals.append(try item(&m))
            default: try r.skip(w)
            }
        }
        return u
    }

    static func timestamp(_ r: inout Reader) throws(ProtoError) -> WandbTimestamp {
        var m = try r.message()
        var t = WandbTimestamp(seconds: 0, nanos: 0)
        while let (n, w) = try m.nextField() {
            switch (n, w) {
            case (1, .varint): t.seconds = try m.int64()
            case (2, .varint): t.nanos = try m.int32()
            default: try m.skip(w)
            }
        }
        return t
    }

    static func run(_ r: inout Reader) throws(ProtoError) -> WandbRunRecord {
        var run = WandbRunRecord()
        while let (n, w) = try r.nextField() {
            switch (n, w) {
            case (1, .lengthDelimited): run.runID = try r.string()
            case (2, .lengthDelimited): run.entity = try r.string()
            case (3, .lengthDelimited): run.project = try r.string()
            case (4, .lengthDelimited):
                var m = try r.message()
                run.config = try update(&m)
            case (5, .lengthDelimited):
                var m = try r.message()
                run.summary = try update(&m)
            case (6, .lengthDelimited): run.group = try r.string()
            case (7, .lengthDelimited): run.jobType = try r.string()
            case (8, .lengthDelimited): run.displayName = try r.string()
            case (9, .lengthDelimited): run.notes = try r.string()
            case (10, .lengthDelimited): run.tags.append(try r.string())
            case (12, .lengthDelimited): run.sweepID = try r.string()
            case (13, .lengthDelimited): run.host = try r.string()
            case (14, .varint): run.startingStep = try r.int64()
            case (17, .lengthDelimited): run.startTime = try timestamp(&r)
            case (18, .varint): run.resumed = try r.bool()
            case (20, .varint): run.runtime = try r.int32()
            case (22, .varint): run.forked = try r.bool()
            case (23, .lengthDelimited):
                var m = try r.message()
                var bp = WandbBranchPoint(run: "", value: 0, metric: "")
                while let (bn, bw) = try m.nextField() {
                    switch (bn, bw) {
                    case (1, .lengthDelimited): bp.run = try m.string()
                    case (2, .fixed64): bp.value = try m.double()
                    case (3, .lengthDelimited): bp.metric = try m.string()
                    default: try m.skip(bw)
                    }
                }
                run.branchPoint = bp
            case (24, .varint): run.resume = try r.bool()
            default: try r.skip(w)
            }
        }
        return run
    }

    static func output(_ r: inout Reader) throws(ProtoError) -> WandbOutputRecord {
        var o = WandbOutputRecord()
        while let (n, w) = try r.nextField() {
            switch (n, w) {
            case (1, .varint): o.stream = WandbOutputStream(rawValue: try r.int32())
            case (2, .lengthDelimited): o.timestamp = try timestamp(&r)
            case (3, .lengthDelimited): o.line = try r.string()
            default: try r.skip(w)
            }
        }
        return o
    }

    static func stats(_ r: inout Reader) throws(ProtoError) -> WandbStatsRecord {
        var s = WandbStatsRecord()
        while let (n, w) = try r.nextField() {
            switch (n, w) {
            case (1, .varint): s.statsType = try r.int32()
            case (2, .lengthDelimited): s.timestamp = try timestamp(&r)
            case (3, .lengthDelimited):
                var m = try r.message()
                s.items.append(try item(&m))
            default: try r.skip(w)
            }
        }
        return s
    }

    static func files(_ r: inout Reader) throws(ProtoError) -> WandbFilesRecord {
        var f = WandbFilesRecord()
        while let (n, w) = try r.nextField() {
            guard n == 1, w == .lengthDelimited else { try r.skip(w); continue }
            var m = try r.message()
            var file = WandbFileItem(path: "")
            while let (fn, fw) = try m.nextField() {
                switch (fn, fw) {
                case (1, .lengthDelimited): file.path = try m.string()
                case (2, .varint): file.policyValue = try m.int32()
                case (3, .varint): file.typeValue = try m.int32()
                default: try m.skip(fw)
                }
            }
            f.files.append(file)
        }
        return f
    }

    static func exit(_ r: inout Reader) throws(ProtoError) -> WandbExitRecord {
        var e = WandbExitRecord()
        while let (n, w) = try r.nextField() {
            switch (n, w) {
            case (1, .varint): e.exitCode = try r.int32()
            case (2, .varint): e.runtime = try r.int32()
            case (3, .varint): e.notComplete = try r.bool()
            default: try r.skip(w)
            }
        }
        return e
    }

    static func header(_ r: inout Reader) throws(ProtoError) -> WandbHeaderRecord {
        var h = WandbHeaderRecord()
        while let (n, w) = try r.nextField() {
            guard n == 1, w == .lengthDelimited else { try r.skip(w); continue }
            var m = try r.message()
            while let (vn, vw) = try m.nextField() {
                switch (vn, vw) {
                case (1, .lengthDelimited): h.producer = try m.string()
                case (2, .lengthDelimited): h.minConsumer = try m.string()
                default: try m.skip(vw)
                }
            }
        }
        return h
    }
}
