#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import RunLogStore

/// The text formats a W&B push writes, exactly as the wandb client writes them: JSON with
/// non-finite doubles as the bare tokens `NaN`, `Infinity` and `-Infinity` (what wandb-core
/// emits, and what W&B servers parse), console lines with an ISO-8601 time prefix, and the
/// `config.yaml` the client uploads.
enum WandbPushEncoding {
    // MARK: JSON

    /// `value` as wandb JSON: object keys sorted (so equal values give equal bytes), doubles
    /// bit-exact in shortest form (`1.0`, `0.001`, `1e-05`), non-finite doubles bare.
    static func json(_ value: Value) -> String {
        var out = ""
        write(value, into: &out)
        return out
    }

    static func write(_ value: Value, into out: inout String) {
        switch value {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d): out += number(d)
        case .string(let s): quote(s, into: &out)
        case .array(let a):
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += "," }
                write(v, into: &out)
            }
            out += "]"
        case .object(let o):
            writeObject(o.sorted { $0.key < $1.key }, into: &out)
        }
    }

    /// An object from ordered members.
    static func writeObject(_ members: [(key: String, value: Value)], into out: inout String) {
        out += "{"
        for (i, m) in members.enumerated() {
            if i > 0 { out += "," }
            quote(m.key, into: &out)
            out += ":"
            write(m.value, into: &out)
        }
        out += "}"
    }

    /// A double as wandb writes it. Swift's description is the shortest text that reads back
    /// to the same bits, always with a `.` or an exponent, so it never reads back as an integer.
    static func number(_ d: Double) -> String {
        if d.isNaN { return "NaN" }
        if d == .infinity { return "Infinity" }
        if d == -.infinity { return "-Infinity" }
        return d.description
    }

    /// A JSON string literal.
    static func quote(_ s: String, into out: inout String) { Value.writeJSONString(s, into: &out) }

    static func quoted(_ s: String) -> String {
        var out = ""
        quote(s, into: &out)
        return out
    }

    // MARK: Lines

    /// A `wandb-history.jsonl` line: the row's values, then `_step`, `_timestamp` (seconds,
    /// float) and `_runtime` (seconds since the run started), like the client's lines.
    static func historyLine(_ row: HistoryRow, start: Int64?) -> String {
        var o = row.values
        o["_step"] = .int(row.step)
        o["_timestamp"] = .double(Double(row.timestamp) / 1e6)
        if o["_runtime"] == nil { o["_runtime"] = .double(runtime(row.timestamp, start: start)) }
        return json(.object(o))
    }

    /// A `wandb-events.jsonl` line: the sample's `system.*` values with `_wandb`, `_timestamp`
    /// and `_runtime`.
    static func eventsLine(_ sample: SystemSample, start: Int64?) -> String {
        var o = sample.values
        o["_wandb"] = .bool(true)
        o["_timestamp"] = .double(Double(sample.timestamp) / 1e6)
        o["_runtime"] = .double(runtime(sample.timestamp, start: start))
        return json(.object(o))
    }

    /// An `output.log` line as the client streams it: `2026-11-26T17:46:21.283125 text`, and
    /// `ERROR 2026-11-26T17:46:21.322008 text` for standard error.
    static func consoleLine(_ line: ConsoleLine) -> String {
        let text = line.text.hasSuffix("\n") ? String(line.text.dropLast()) : line.text
        let stamped = isoTime(line.timestamp) + " " + text
        return line.stream == .stderr ? "ERROR " + stamped : stamped
    }

    /// Seconds since `start` (µs), never negative; 0 without a start time.
    static func runtime(_ t: Int64, start: Int64?) -> Double {
        guard let start else { return 0 }
        return max(0, Double(t - start) / 1e6)
    }

    /// `YYYY-MM-DDTHH:MM:SS.ffffff` in UTC, from µs since the epoch.
    static func isoTime(_ micros: Int64) -> String {
        var seconds = micros / 1_000_000
        var fraction = micros % 1_000_000
        if fraction < 0 { fraction += 1_000_000; seconds -= 1 }
        var t = time_t(seconds)
        var parts = tm()
        gmtime_r(&t, &parts)
        func pad(_ v: Int32, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        let f = String(fraction)
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))."
            + String(repeating: "0", count: 6 - f.count) + f
    }

    // MARK: YAML

    /// `config.yaml` as the client uploads it: every key's `{value: v}`, keys sorted,
    /// four-space indentation.
    static func configYAML(_ config: [String: Value]) -> String {
        var out = ""
        for key in config.keys.sorted() {
            out += yamlKey(key) + ":\n"
            out += "    value:"
            yamlValue(config[key]!, indent: 2, into: &out)
        }
        return out
    }

    /// Writes a value after `key:` (a space and a scalar, or a newline and a nested block).
    private static func yamlValue(_ v: Value, indent: Int, into out: inout String) {
        let pad = String(repeating: "    ", count: indent)
        switch v {
        case .object(let o) where !o.isEmpty:
            out += "\n"
            for k in o.keys.sorted() {
                out += pad + yamlKey(k) + ":"
                yamlValue(o[k]!, indent: indent + 1, into: &out)
            }
        case .array(let a) where !a.isEmpty:
            out += "\n"
            for item in a {
                out += pad + "-"
                yamlValue(item, indent: indent + 1, into: &out)
            }
        default:
            out += " " + yamlScalar(v) + "\n"
        }
    }

    private static func yamlScalar(_ v: Value) -> String {
        switch v {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d):
            if d.isNaN { return ".nan" }
            if d == .infinity { return ".inf" }
            if d == -.infinity { return "-.inf" }
            return d.description
        case .string(let s): return yamlString(s)
        case .array: return "[]"
        case .object: return "{}"
        }
    }

    private static let plainReserved: Set<String> = [
        "", "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE",
        "yes", "Yes", "YES", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF", "y", "Y", "n", "N",
    ]

    /// A string as a plain scalar when YAML reads it back as that string, else double-quoted
    /// (JSON's escapes are valid in YAML double-quoted scalars).
    private static func yamlString(_ s: String) -> String {
        let safe = s.unicodeScalars.allSatisfy { c in
            (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9") || "_-./".unicodeScalars.contains(c)
        }
        let first = s.unicodeScalars.first
        let looksNumeric = first.map { ($0 >= "0" && $0 <= "9") || $0 == "-" || $0 == "." } ?? true
        if safe && !looksNumeric && !plainReserved.contains(s) { return s }
        return quoted(s)
    }

    private static func yamlKey(_ k: String) -> String { yamlString(k) }

    // MARK: Digests

    /// FNV-1a (64 bits) of `text`, as hex: enough to tell whether content changed since the
    /// last push.
    static func digest(_ text: String) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in text.utf8 {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01B3
        }
        return "fnv1a64:" + String(h, radix: 16)
    }
}
