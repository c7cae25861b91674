import RunLogStore
import RunLogSync

/// JSON as the server writes and reads it: a small writer that appends to a `String`, and
/// a parser from JSON text to ``Value`` (for the config, summary and metadata documents the
/// server keeps materialized).
///
/// Non-finite doubles, which JSON cannot carry, are written as the strings `"NaN"`,
/// `"Infinity"` and `"-Infinity"` (wandb's convention, and `Value.description`'s).
struct JSONWriter {
    var out = ""

    init(capacity: Int = 256) { out.reserveCapacity(capacity) }

    mutating func raw(_ s: String) { out += s }

    mutating func string(_ s: String) { Self.appendString(s, to: &out) }

    mutating func number(_ d: Double) { Self.appendDouble(d, to: &out) }

    mutating func number(_ i: Int64) { out += String(i) }

    mutating func value(_ v: Value) { v.writeJSON(into: &out) }

    mutating func optional(_ s: String?) {
        if let s { string(s) } else { out += "null" }
    }

    /// `"key":` (with a leading comma unless `first`).
    mutating func key(_ k: String, first: Bool = false) {
        if !first { out += "," }
        string(k)
        out += ":"
    }

    mutating func doubles(_ a: [Double]) {
        out += "["
        for (i, d) in a.enumerated() {
            if i > 0 { out += "," }
            Self.appendDouble(d, to: &out)
        }
        out += "]"
    }

    mutating func ints(_ a: [Int64]) {
        out += "["
        for (i, v) in a.enumerated() {
            if i > 0 { out += "," }
            out += String(v)
        }
        out += "]"
    }

    mutating func strings(_ a: [String]) {
        out += "["
        for (i, s) in a.enumerated() {
            if i > 0 { out += "," }
            string(s)
        }
        out += "]"
    }

    mutating func object(_ o: [String: Value]) { Value.object(o).writeJSON(into: &out) }

    static func appendDouble(_ d: Double, to out: inout String) {
        if d.isNaN { out += "\"NaN\"" }
        else if d == .infinity { out += "\"Infinity\"" }
        else if d == -.infinity { out += "\"-Infinity\"" }
        else { out += d.description }
    }

    static func appendString(_ s: String, to out: inout String) { Value.writeJSONString(s, into: &out, escapingHTML: true) }

    static func quoted(_ s: String) -> String {
        var out = ""
        appendString(s, to: &out)
        return out
    }
}

/// A JSON text that does not parse.
struct JSONParseError: Error, CustomStringConvertible {
    var message: String
    var offset: Int
    var description: String { "invalid JSON at byte \(offset): \(message)" }
}

/// Parses JSON text into a ``Value`` with the one parser RunLog has (``WandbJSON``, which
/// also takes wandb's bare `NaN`/`Infinity` tokens): integers without a fraction or exponent
/// become `.int` (exactly, up to Int64), other numbers `.double` (`-0` stays a double).
enum JSONParser {
    static func parse(_ text: String) throws(JSONParseError) -> Value {
        do { return try WandbJSON.parse(text) } catch { throw JSONParseError(message: error.message, offset: error.index) }
    }

    /// Parses an object; anything else (or nothing) gives an empty object.
    static func object(_ text: String?) -> [String: Value] {
        guard let text, !text.isEmpty, let v = try? parse(text), case .object(let o) = v else { return [:] }
        return o
    }

    static func stringArray(_ text: String?) -> [String] {
        guard let text, !text.isEmpty, let v = try? parse(text), case .array(let a) = v else { return [] }
        return a.compactMap(\.stringValue)
    }
}
