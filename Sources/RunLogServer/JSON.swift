import RunLogStore

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

    static func appendString(_ s: String, to out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "<": out += "\\u003c"  // safe to embed in HTML
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }

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

/// Parses JSON text into a ``Value``: integers without a fraction or exponent become
/// `.int`, other numbers `.double`.
enum JSONParser {
    static func parse(_ text: String) throws(JSONParseError) -> Value {
        var utf8 = Array(text.utf8)
        utf8.append(0)
        var p = Parser(bytes: utf8, end: utf8.count - 1)
        p.skipSpace()
        let v = try p.value(depth: 0)
        p.skipSpace()
        guard p.pos == p.end else { throw JSONParseError(message: "trailing characters", offset: p.pos) }
        return v
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

    private struct Parser {
        let bytes: [UInt8]
        let end: Int
        var pos = 0

        init(bytes: [UInt8], end: Int) {
            self.bytes = bytes
            self.end = end
        }

        mutating func skipSpace() {
            while pos < end, bytes[pos] == 0x20 || bytes[pos] == 0x0A || bytes[pos] == 0x0D || bytes[pos] == 0x09 { pos += 1 }
        }

        func fail(_ m: String) -> JSONParseError { JSONParseError(message: m, offset: pos) }

        mutating func expect(_ literal: String, _ v: Value) throws(JSONParseError) -> Value {
            for b in literal.utf8 {
                guard pos < end, bytes[pos] == b else { throw fail("expected \(literal)") }
                pos += 1
            }
            return v
        }

        mutating func value(depth: Int) throws(JSONParseError) -> Value {
            guard depth < 512 else { throw fail("nesting too deep") }
            guard pos < end else { throw fail("unexpected end") }
            switch bytes[pos] {
            case UInt8(ascii: "{"):
                pos += 1
                var o: [String: Value] = [:]
                skipSpace()
                if pos < end, bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(o) }
                while true {
                    skipSpace()
                    guard pos < end, bytes[pos] == UInt8(ascii: "\"") else { throw fail("expected a key") }
                    let k = try string()
                    skipSpace()
                    guard pos < end, bytes[pos] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                    pos += 1
                    skipSpace()
                    o[k] = try value(depth: depth + 1)
                    skipSpace()
                    guard pos < end else { throw fail("unterminated object") }
                    if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
                    if bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(o) }
                    throw fail("expected ',' or '}'")
                }
            case UInt8(ascii: "["):
                pos += 1
                var a: [Value] = []
                skipSpace()
                if pos < end, bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(a) }
                while true {
                    skipSpace()
                    a.append(try value(depth: depth + 1))
                    skipSpace()
                    guard pos < end else { throw fail("unterminated array") }
                    if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
                    if bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(a) }
                    throw fail("expected ',' or ']'")
                }
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): return try expect("true", .bool(true))
            case UInt8(ascii: "f"): return try expect("false", .bool(false))
            case UInt8(ascii: "n"): return try expect("null", .null)
            default: return try number()
            }
        }

        mutating func number() throws(JSONParseError) -> Value {
            let start = pos
            var isDouble = false
            if pos < end, bytes[pos] == UInt8(ascii: "-") { pos += 1 }
            while pos < end {
                let c = bytes[pos]
                if c >= 0x30 && c <= 0x39 { pos += 1; continue }
                if c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") || c == UInt8(ascii: "+") || c == UInt8(ascii: "-") {
                    isDouble = true
                    pos += 1
                    continue
                }
                break
            }
            guard pos > start else { throw fail("unexpected character") }
            let text = String(decoding: bytes[start..<pos], as: UTF8.self)
            if !isDouble, let i = Int64(text) { return .int(i) }
            guard let d = Double(text) else { throw fail("bad number \(text)") }
            return .double(d)
        }

        mutating func hex4() throws(JSONParseError) -> UInt32 {
            guard pos + 4 <= end else { throw fail("short \\u escape") }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let c = bytes[pos]
                pos += 1
                v <<= 4
                switch c {
                case 0x30...0x39: v |= UInt32(c - 0x30)
                case 0x41...0x46: v |= UInt32(c - 0x41 + 10)
                case 0x61...0x66: v |= UInt32(c - 0x61 + 10)
                default: throw fail("bad \\u escape")
                }
            }
            return v
        }

        mutating func string() throws(JSONParseError) -> String {
            pos += 1  // opening quote
            var out: [UInt8] = []
            let start = pos
            // Fast path: no escapes.
            while pos < end, bytes[pos] != UInt8(ascii: "\""), bytes[pos] != UInt8(ascii: "\\") { pos += 1 }
            if pos < end, bytes[pos] == UInt8(ascii: "\"") {
                let s = String(decoding: bytes[start..<pos], as: UTF8.self)
                pos += 1
                return s
            }
            out.append(contentsOf: bytes[start..<pos])
            while pos < end {
                let c = bytes[pos]
                pos += 1
                if c == UInt8(ascii: "\"") { return String(decoding: out, as: UTF8.self) }
                guard c == UInt8(ascii: "\\") else { out.append(c); continue }
                guard pos < end else { break }
                let e = bytes[pos]
                pos += 1
                switch e {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5C)
                case UInt8(ascii: "/"): out.append(0x2F)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if scalar >= 0xD800 && scalar < 0xDC00, pos + 6 <= end, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u") {
                        pos += 2
                        let low = try hex4()
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low &- 0xDC00)
                    }
                    let u = Unicode.Scalar(scalar) ?? "\u{FFFD}"
                    out.append(contentsOf: Array(String(Character(u)).utf8))
                default: throw fail("bad escape")
                }
            }
            throw fail("unterminated string")
        }
    }
}
