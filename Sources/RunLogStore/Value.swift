/// A typed value as RunLog stores it: in history rows, config, summary and metadata.
///
/// Doubles are kept bit-exact, NaN payloads and the sign of zero included, and two
/// values compare equal when they are bit-identical (so `.double(.nan) == .double(.nan)`).
/// Objects keep their keys sorted when encoded, so equal objects encode to equal bytes.
///
/// ```swift
/// let config: Value = ["lr": 3e-4, "layers": [64, 64], "optimizer": "adam"]
/// ```
public enum Value: Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([Value])
    case object([String: Value])
}

extension Value: Hashable {
    public static func == (lhs: Value, rhs: Value) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case let (.bool(a), .bool(b)): return a == b
        case let (.int(a), .int(b)): return a == b
        case let (.double(a), .double(b)): return a.bitPattern == b.bitPattern
        case let (.string(a), .string(b)): return a == b
        case let (.array(a), .array(b)): return a == b
        case let (.object(a), .object(b)): return a == b
        default: return false
        }
    }

    public func hash(into hasher: inout Hasher) {
        switch self {
        case .null: hasher.combine(0)
        case .bool(let b): hasher.combine(1); hasher.combine(b)
        case .int(let i): hasher.combine(2); hasher.combine(i)
        case .double(let d): hasher.combine(3); hasher.combine(d.bitPattern)
        case .string(let s): hasher.combine(4); hasher.combine(s)
        case .array(let a): hasher.combine(5); hasher.combine(a)
        case .object(let o): hasher.combine(6); hasher.combine(o)
        }
    }
}

extension Value {
    /// The value as a `Double` when it is numeric (int or double).
    public var doubleValue: Double? {
        switch self {
        case .double(let d): return d
        case .int(let i): return Double(i)
        default: return nil
        }
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var intValue: Int64? {
        if case .int(let i) = self { return i }
        return nil
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    public var objectValue: [String: Value]? {
        if case .object(let o) = self { return o }
        return nil
    }

    public var arrayValue: [Value]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public subscript(key: String) -> Value? {
        if case .object(let o) = self { return o[key] }
        return nil
    }
}

extension Value: ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral,
    ExpressibleByDictionaryLiteral
{
    public init(nilLiteral: ()) { self = .null }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: Value...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, Value)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
}

extension Value: CustomStringConvertible {
    /// A JSON rendering. Non-finite doubles, which JSON cannot carry, are written as the
    /// strings `"NaN"`, `"Infinity"` and `"-Infinity"` (the convention wandb uses).
    public var description: String {
        var out = ""
        writeJSON(into: &out)
        return out
    }

    public func writeJSON(into out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d):
            if d.isNaN { out += "\"NaN\"" }
            else if d == .infinity { out += "\"Infinity\"" }
            else if d == -.infinity { out += "\"-Infinity\"" }
            else if d == d.rounded(), abs(d) < 1e15 { out += String(Int64(d)); out += ".0" }
            else { out += "\(d)" }
        case .string(let s): Value.writeJSONString(s, into: &out)
        case .array(let a):
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += "," }
                v.writeJSON(into: &out)
            }
            out += "]"
        case .object(let o):
            out += "{"
            for (i, k) in o.keys.sorted().enumerated() {
                if i > 0 { out += "," }
                Value.writeJSONString(k, into: &out)
                out += ":"
                o[k]!.writeJSON(into: &out)
            }
            out += "}"
        }
    }

    /// Appends `s` as a JSON string literal: quotes, backslashes and control characters
    /// escaped, and U+2028/U+2029 too (JavaScript parsers of old choke on them). With
    /// `escapingHTML`, `<` becomes `\u003c` so that the JSON can sit inside an HTML page.
    public static func writeJSONString(_ s: String, into out: inout String, escapingHTML: Bool = false) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "<" where escapingHTML: out += "\\u003c"
            default:
                if scalar.value < 0x20 || scalar.value == 0x2028 || scalar.value == 0x2029 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }
}
