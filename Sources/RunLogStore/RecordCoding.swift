// Encoding of values and of every record kind except history blocks (see HistoryBlock.swift).

extension ByteWriter {
    /// Appends the self-describing encoding of `value`.
    mutating func value(_ value: Value, depth: Int = 0) throws(StoreError) {
        guard depth < LogFormat.maxValueDepth else {
            throw StoreError(.invalidValue, "value nested deeper than \(LogFormat.maxValueDepth) levels")
        }
        switch value {
        case .null: u8(LogFormat.ValueTag.null.rawValue)
        case .bool(let b): u8(b ? LogFormat.ValueTag.true.rawValue : LogFormat.ValueTag.false.rawValue)
        case .int(let i): u8(LogFormat.ValueTag.int.rawValue); svarint(i)
        case .double(let d): u8(LogFormat.ValueTag.double.rawValue); u64(d.bitPattern)
        case .string(let s): u8(LogFormat.ValueTag.string.rawValue); string(s)
        case .array(let a):
            u8(LogFormat.ValueTag.array.rawValue)
            uvarint(UInt64(a.count))
            for v in a { try self.value(v, depth: depth + 1) }
        case .object(let o):
            u8(LogFormat.ValueTag.object.rawValue)
            try object(o, depth: depth)
        }
    }

    /// Appends an object's entries (count, then key/value pairs sorted by the keys' UTF-8 bytes).
    mutating func object(_ o: [String: Value], depth: Int = 0) throws(StoreError) {
        uvarint(UInt64(o.count))
        for key in o.keys.sorted(by: utf8Less) {
            string(key)
            try value(o[key]!, depth: depth + 1)
        }
    }
}

/// Orders strings by their UTF-8 bytes, the order the format requires for object keys.
func utf8Less(_ a: String, _ b: String) -> Bool {
    a.utf8.lexicographicallyPrecedes(b.utf8)
}

extension ByteReader {
    mutating func value(depth: Int = 0) throws(DecodeError) -> Value {
        guard depth < LogFormat.maxValueDepth else { throw DecodeError("value nested too deep") }
        let tag = try u8()
        switch LogFormat.ValueTag(rawValue: tag) {
        case .null: return .null
        case .false: return .bool(false)
        case .true: return .bool(true)
        case .int: return .int(try svarint())
        case .double: return .double(Double(bitPattern: try u64()))
        case .string: return .string(try string())
        case .array:
            let n = try length()  // each element takes at least one byte
            var a: [Value] = []
            a.reserveCapacity(n)
            for _ in 0..<n { a.append(try value(depth: depth + 1)) }
            return .array(a)
        case .object:
            return .object(try object(depth: depth))
        case nil:
            throw DecodeError("unknown value tag \(tag)")
        }
    }

    mutating func object(depth: Int = 0) throws(DecodeError) -> [String: Value] {
        let n = try length()
        var o: [String: Value] = [:]
        o.reserveCapacity(n)
        for _ in 0..<n {
            let k = try string()
            o[k] = try value(depth: depth + 1)
        }
        return o
    }
}

// MARK: - Record bodies as objects

extension Record {
    /// The object a non-history record is stored as. Field names are part of the format.
    func bodyObject() -> [String: Value] {
        switch self {
        case .runMetadata(let m): return m.fields
        case .config(let c): return change(c.replace, c.values, c.removed)
        case .summary(let s): return change(s.replace, s.values, s.removed)
        case .tags(let t): return ["tags": .array(t.map(Value.string))]
        case .console(let c): return ["stream": .int(c.stream.rawValue), "t": .int(c.timestamp), "text": .string(c.text)]
        case .systemMetrics(let s): return ["t": .int(s.timestamp), "values": .object(s.values)]
        case .file(let f):
            return ["path": .string(f.path), "size": .int(f.size), "digest": .string(f.digest),
                    "policy": .string(f.policy), "t": .int(f.timestamp)]
        case .rewind(let r):
            var o: [String: Value] = ["step": .int(r.step), "branch": .int(Int64(r.branch)), "t": .int(r.timestamp)]
            if let cut = r.cut {
                o["cut_seq"] = .int(Int64(bitPattern: cut.sequence))
                o["cut_index"] = .int(Int64(cut.index))
            }
            return o
        case .forkOrigin(let f):
            var o: [String: Value] = ["source_id": .string(f.sourceID), "step": .int(f.step), "t": .int(f.timestamp)]
            if let p = f.sourceProject { o["source_project"] = .string(p) }
            return o
        case .resume(let r):
            return ["reason": .string(r.reason), "next_step": .int(r.nextStep), "t": .int(r.timestamp)]
        case .exit(let e):
            var o: [String: Value] = ["state": .string(e.state), "exit_code": .int(e.exitCode),
                                      "runtime": .double(e.runtime), "t": .int(e.timestamp)]
            if let s = e.signal { o["signal"] = .int(s) }
            if let err = e.error { o["error"] = .string(err) }
            return o
        case .history, .unknown:
            preconditionFailure("history rows and unknown records have no object body")
        }
    }

    private func change(_ replace: Bool, _ values: [String: Value], _ removed: [String]) -> [String: Value] {
        var o: [String: Value] = ["values": .object(values)]
        if replace { o["replace"] = .bool(true) }
        if !removed.isEmpty { o["removed"] = .array(removed.map(Value.string)) }
        return o
    }

    /// Rebuilds a record from its kind and object body.
    static func fromBody(kind: LogFormat.RecordKind, _ o: [String: Value]) throws(DecodeError) -> Record {
        func int(_ k: String) throws(DecodeError) -> Int64 {
            guard let v = o[k]?.intValue else { throw DecodeError("record \(kind) lacks integer field \(k)") }
            return v
        }
        func str(_ k: String) throws(DecodeError) -> String {
            guard let v = o[k]?.stringValue else { throw DecodeError("record \(kind) lacks string field \(k)") }
            return v
        }
        func strings(_ k: String) -> [String] { (o[k]?.arrayValue ?? []).compactMap(\.stringValue) }
        switch kind {
        case .runMetadata: return .runMetadata(RunMetadata(o))
        case .config:
            return .config(ConfigChange(replace: o["replace"]?.boolValue ?? false,
                                        values: o["values"]?.objectValue ?? [:], removed: strings("removed")))
        case .summary:
            return .summary(SummaryChange(replace: o["replace"]?.boolValue ?? false,
                                          values: o["values"]?.objectValue ?? [:], removed: strings("removed")))
        case .tags: return .tags(strings("tags"))
        case .console:
            return .console(ConsoleLine(stream: ConsoleLine.Stream(rawValue: try int("stream")) ?? .stdout,
                                        timestamp: try int("t"), text: try str("text")))
        case .systemMetrics:
            return .systemMetrics(SystemSample(timestamp: try int("t"), values: o["values"]?.objectValue ?? [:]))
        case .file:
            return .file(FileReference(path: try str("path"), size: try int("size"), digest: o["digest"]?.stringValue ?? "",
                                       policy: o["policy"]?.stringValue ?? "now", timestamp: try int("t")))
        case .rewind:
            var cut: RecordPosition?
            if let s = o["cut_seq"]?.intValue, let i = o["cut_index"]?.intValue {
                cut = RecordPosition(sequence: UInt64(bitPattern: s), index: UInt32(truncatingIfNeeded: i))
            }
            return .rewind(RewindMarker(step: try int("step"), branch: UInt32(truncatingIfNeeded: try int("branch")),
                                        cut: cut, timestamp: try int("t")))
        case .forkOrigin:
            return .forkOrigin(ForkOrigin(sourceID: try str("source_id"), sourceProject: o["source_project"]?.stringValue,
                                          step: try int("step"), timestamp: try int("t")))
        case .resume:
            return .resume(ResumeMarker(reason: try str("reason"), nextStep: try int("next_step"), timestamp: try int("t")))
        case .exit:
            return .exit(ExitRecord(state: try str("state"), exitCode: try int("exit_code"),
                                    runtime: o["runtime"]?.doubleValue ?? 0, signal: o["signal"]?.intValue,
                                    error: o["error"]?.stringValue, timestamp: try int("t")))
        case .historyBlock:
            throw DecodeError("history blocks have no object body")
        }
    }
}
