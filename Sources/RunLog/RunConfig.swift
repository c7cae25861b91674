import RunLogStore
import Synchronization

/// A run's config: the input parameters of the run.
///
/// Keys must not contain `.` (nest with a dictionary instead) and each value must encode to
/// less than 10 MB. Once set, a key keeps its value: setting a different value throws a
/// usage error unless `allowValChange` is true (at `start` or per call); setting the same
/// value again is fine. Log values that change over time as history instead.
///
/// ```swift
/// try run.config.update(["architecture": "resnet", "depth": 34])
/// let lr = run.config["lr"]?.doubleValue
/// ```
public final class RunConfig: @unchecked Sendable {
    /// The largest encoded size of one config value, as in the reference client.
    public static let maxValueBytes = 10_000_000

    private let state: Mutex<[String: Value]>
    private let allowValChange: Bool
    private let writer: LogWriter?

    init(values: [String: Value], allowValChange: Bool, writer: LogWriter?) {
        self.state = Mutex(values)
        self.allowValChange = allowValChange
        self.writer = writer
    }

    public subscript(key: String) -> Value? { state.withLock { $0[key] } }

    /// All keys and values.
    public var values: [String: Value] { state.withLock { $0 } }

    /// Sets one key.
    public func set(_ key: String, _ value: any ValueConvertible, allowValChange: Bool? = nil) throws(RunLogError) {
        try update([key: value.runLogValue], allowValChange: allowValChange)
    }

    /// Merges keys into the config.
    public func update(_ values: [String: any ValueConvertible], allowValChange: Bool? = nil) throws(RunLogError) {
        try update(values.mapValues { $0.runLogValue }, allowValChange: allowValChange)
    }

    /// Merges keys into the config.
    /// - Throws: a usage error for a dotted key, an oversize value, or a changed value
    ///   without `allowValChange`; nothing is applied then.
    public func update(_ values: [String: Value], allowValChange: Bool? = nil) throws(RunLogError) {
        for (k, v) in values { try Self.validate(k, v) }
        let allow = allowValChange ?? self.allowValChange
        let changed: [String: Value] = try state.withLock { (current) throws(RunLogError) -> [String: Value] in
            var changed: [String: Value] = [:]
            for (k, v) in values {
                if let old = current[k] {
                    if old == v { continue }
                    if !allow {
                        throw RunLogError.usage("Attempted to change value of key \"\(k)\" from \(old) to \(v). If you really want to do this, pass allowValChange: true to update() or start(); log values that change as history instead.")
                    }
                }
                changed[k] = v
            }
            current.merge(changed) { _, new in new }
            return changed
        }
        guard !changed.isEmpty, let writer else { return }
        do { try writer.append(.config(ConfigChange(values: changed))) } catch {
            throw RunLogError(.generic, "config could not be recorded: \(error.message)", underlying: error)
        }
    }

    /// Removes a key.
    public func remove(_ key: String) throws(RunLogError) {
        let existed = state.withLock { $0.removeValue(forKey: key) != nil }
        guard existed, let writer else { return }
        do { try writer.append(.config(ConfigChange(values: [:], removed: [key]))) } catch {
            throw RunLogError(.generic, "config could not be recorded: \(error.message)", underlying: error)
        }
    }

    /// Checks a key (no `.` at any depth) and the value's size.
    static func validate(_ key: String, _ value: Value) throws(RunLogError) {
        guard !key.isEmpty else { throw .usage("config keys must not be empty") }
        guard !key.contains(".") else {
            throw .usage("config key \"\(key)\" contains \".\"; dotted keys are not allowed: nest with a dictionary instead, e.g. [\"\(key.split(separator: ".").first ?? "")\": [...]]")
        }
        if case .object(let o) = value { for (k, v) in o { try validate(k, v) } }
        if case .array(let a) = value { for v in a { if case .object(let o) = v { for (k, v2) in o { try validate(k, v2) } } } }
        try checkSize(key, value, what: "config value")
    }

    /// Rejects values whose encoding would exceed ``maxValueBytes``.
    static func checkSize(_ key: String, _ value: Value, what: String) throws(RunLogError) {
        switch value {
        case .null, .bool, .int, .double: return
        case .string(let s):
            if s.utf8.count >= maxValueBytes { throw .usage("\(what) \"\(key)\" is \(s.utf8.count) bytes; values must be smaller than 10 MB") }
        case .array, .object:
            let size = value.approximateEncodedSize(limit: maxValueBytes)
            if size >= maxValueBytes { throw .usage("\(what) \"\(key)\" is \(size) bytes or more; values must be smaller than 10 MB") }
        }
    }

    /// Applies include/exclude filters from `start`.
    static func filter(_ values: [String: Value], include: [String]?, exclude: [String]?) -> [String: Value] {
        var v = values
        if let include { v = v.filter { include.contains($0.key) } }
        if let exclude { for k in exclude { v[k] = nil } }
        return v
    }
}

extension Value {
    /// The encoded size, counting up to `limit` and stopping there.
    func approximateEncodedSize(limit: Int) -> Int {
        var total = 0
        var stack: [Value] = [self]
        while let v = stack.popLast() {
            switch v {
            case .null, .bool: total += 1
            case .int, .double: total += 9
            case .string(let s): total += 5 + s.utf8.count
            case .array(let a): total += 5; stack.append(contentsOf: a)
            case .object(let o): total += 5; for (k, x) in o { total += 5 + k.utf8.count; stack.append(x) }
            }
            if total >= limit { return total }
        }
        return total
    }
}
