import CRunLogSys
import RunLogStore

/// The parser for wandb's `value_json` strings (in `ConfigItem`, `SummaryItem`, `HistoryItem`
/// and `StatsItem`).
///
/// wandb writes JSON with two liberties that a strict JSON parser rejects or damages:
/// - non-finite floats as the bare tokens `NaN`, `Infinity` and `-Infinity`;
/// - integers exactly, beyond 2^53 (`9007199254740993`).
///
/// So a number without a fraction or exponent becomes ``Value/int(_:)`` when it fits in
/// `Int64` (and ``Value/double(_:)`` otherwise); any other number becomes a double. `-0`
/// stays a double negative zero. Floats are written in shortest form (`2.0` is `"2"`), so an
/// integral float comes back as an int: the file cannot tell them apart.
public enum WandbJSON {
    /// Why a `value_json` string could not be parsed.
    public struct ParseError: Error, Sendable, Hashable, CustomStringConvertible {
        public var message: String
        /// UTF-8 offset in the text.
        public var index: Int
        public var description: String { "\(message) at character \(index)" }
    }

    /// Nesting deeper than this is rejected (the parser recurses).
    public static let maxDepth = 512

    /// Parses one JSON value (surrounding whitespace allowed).
    public static func parse(_ text: String) throws(ParseError) -> Value {
        var text = text
        return try text.withUTF8 { bytes in Result { () throws(ParseError) in try parse(bytes) } }.get()
    }

    /// Parses one JSON value from UTF-8 bytes (surrounding whitespace allowed), without
    /// making a `String` of them first.
    public static func parse(_ bytes: UnsafeBufferPointer<UInt8>) throws(ParseError) -> Value {
        var parser = Parser(bytes: bytes)
        parser.skipWhitespace()
        let value = try parser.value(depth: 0)
        parser.skipWhitespace()
        guard parser.index == bytes.count else { throw parser.error("unexpected text after the value") }
        return value
    }

    private struct Parser {
        let bytes: UnsafeBufferPointer<UInt8>
        var index = 0

        func error(_ message: String) -> ParseError { ParseError(message: message, index: index) }

        mutating func skipWhitespace() {
            while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x0A || bytes[index] == 0x0D || bytes[index] == 0x09 {
                index += 1
            }
        }

        mutating func literal(_ word: StaticString) -> Bool {
            let count = word.utf8CodeUnitCount
            guard bytes.count - index >= count else { return false }
            let p = word.utf8Start
            for k in 0..<count where bytes[index + k] != p[k] { return false }
            index += count
            return true
        }

        mutating func value(depth: Int) throws(ParseError) -> Value {
            guard depth < WandbJSON.maxDepth else { throw error("nesting deeper than \(WandbJSON.maxDepth)") }
            guard index < bytes.count else { throw error("unexpected end of text") }
            switch bytes[index] {
            case UInt8(ascii: "{"): return try object(depth: depth)
            case UInt8(ascii: "["): return try array(depth: depth)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): if literal("true") { return .bool(true) }
            case UInt8(ascii: "f"): if literal("false") { return .bool(false) }
            case UInt8(ascii: "n"): if literal("null") { return .null }
            case UInt8(ascii: "N"): if literal("NaN") { return .double(.nan) }
            case UInt8(ascii: "I"): if literal("Infinity") { return .double(.infinity) }
            case UInt8(ascii: "-"):
                if literal("-Infinity") { return .double(-.infinity) }
                return try number()
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
            default: break
            }
            throw error("unexpected character")
        }

        mutating func object(depth: Int) throws(ParseError) -> Value {
            index += 1
            var result: [String: Value] = [:]
            skipWhitespace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "}") { index += 1; return .object(result) }
            while true {
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw error("expected a key") }
                let key = try string()
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw error("expected ':'") }
                index += 1
                skipWhitespace()
                result[key] = try value(depth: depth + 1)
                skipWhitespace()
                guard index < bytes.count else { throw error("unterminated object") }
                if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                if bytes[index] == UInt8(ascii: "}") { index += 1; return .object(result) }
                throw error("expected ',' or '}'")
            }
        }

        mutating func array(depth: Int) throws(ParseError) -> Value {
            index += 1
            var result: [Value] = []
            skipWhitespace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "]") { index += 1; return .array(result) }
            while true {
                skipWhitespace()
                result.append(try value(depth: depth + 1))
                skipWhitespace()
                guard index < bytes.count else { throw error("unterminated array") }
                if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                if bytes[index] == UInt8(ascii: "]") { index += 1; return .array(result) }
                throw error("expected ',' or ']'")
            }
        }

        /// A number, checked against JSON's grammar while its decimal significand (up to 19
        /// significant digits) and power of ten are gathered, so that the common cases need no
        /// second pass: an integer of up to 18 digits, a float that Clinger's fast path gives
        /// exactly (see ``fastDouble(_:scale:negative:)``), and any other float of up to 19
        /// significant digits by Eisel–Lemire (``DecimalToDouble``); `strtod` takes the rest
        /// (longer significands, extreme exponents).
        mutating func number() throws(ParseError) -> Value {
            let start = index
            let count = bytes.count
            var negative = false
            if bytes[index] == UInt8(ascii: "-") {
                negative = true
                index += 1
            }
            var significand: UInt64 = 0
            var significant = 0  // significant digits seen
            var scale = 0  // the value is significand × 10^scale (while significant ≤ 19)
            @inline(__always) func digit(_ d: UInt8, fraction: Bool) {
                if significand == 0 && d == 0 {
                    if fraction { scale -= 1 }
                    return
                }
                significant += 1
                if significant <= 19 {
                    significand = significand &* 10 &+ UInt64(d)
                    if fraction { scale -= 1 }
                } else if !fraction {
                    scale += 1
                }
            }
            @inline(__always) func isDigit(_ i: Int) -> Bool { i < count && bytes[i] &- 0x30 < 10 }
            guard isDigit(index) else { throw error("expected a digit") }
            if bytes[index] == UInt8(ascii: "0") {
                index += 1
                if isDigit(index) { throw error("leading zero") }
            } else {
                while isDigit(index) { digit(bytes[index] &- 0x30, fraction: false); index += 1 }
            }
            var integral = true
            if index < count, bytes[index] == UInt8(ascii: ".") {
                integral = false
                index += 1
                guard isDigit(index) else { throw error("expected a digit after '.'") }
                while isDigit(index) { digit(bytes[index] &- 0x30, fraction: true); index += 1 }
            }
            if index < count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
                integral = false
                index += 1
                var expNegative = false
                if index < count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
                    expNegative = bytes[index] == UInt8(ascii: "-")
                    index += 1
                }
                guard isDigit(index) else { throw error("expected a digit in the exponent") }
                var e = 0
                while isDigit(index) {
                    if e < 100_000 { e = e * 10 + Int(bytes[index] &- 0x30) }
                    index += 1
                }
                scale += expNegative ? -e : e
            }
            if integral {
                if significand == 0 { return negative ? .double(-0.0) : .int(0) }
                if significant <= 18 { return .int(negative ? -Int64(significand) : Int64(significand)) }
            }
            let text = UnsafeBufferPointer(rebasing: bytes[start..<index])
            if integral, let i = Self.int64(text) { return .int(i) }
            if significant <= 19 {
                if let d = Self.fastDouble(significand, scale: scale, negative: negative) { return .double(d) }
                if let d = DecimalToDouble.double(significand: significand, exponent: scale, negative: negative) { return .double(d) }
            }
            guard let d = Self.double(text) else { throw ParseError(message: "unreadable number", index: start) }
            return .double(d)
        }

        /// A JSON integer's digits (an optional `-`, then digits) as an `Int64`; `nil` on overflow.
        static func int64(_ digits: UnsafeBufferPointer<UInt8>) -> Int64? {
            var i = 0
            let negative = digits[0] == UInt8(ascii: "-")
            if negative { i = 1 }
            var magnitude: UInt64 = 0
            while i < digits.count {
                let (m, o1) = magnitude.multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(UInt64(digits[i] &- 0x30))
                if o1 || o2 { return nil }
                magnitude = a
                i += 1
            }
            if negative {
                if magnitude == UInt64(Int64.max) + 1 { return .min }
                return magnitude <= UInt64(Int64.max) ? -Int64(magnitude) : nil
            }
            return magnitude <= UInt64(Int64.max) ? Int64(magnitude) : nil
        }

        /// A JSON number's text (checked against the grammar already) as the nearest double,
        /// correctly rounded, independent of the process's locale.
        static func double(_ digits: UnsafeBufferPointer<UInt8>) -> Double? {
            guard digits.count < 128 else {
                return Double(String(decoding: digits, as: UTF8.self))
            }
            return withUnsafeTemporaryAllocation(of: CChar.self, capacity: digits.count + 1) { buffer in
                for i in 0..<digits.count { buffer[i] = CChar(bitPattern: digits[i]) }
                buffer[digits.count] = 0
                return runlog_strtod_c(buffer.baseAddress!, nil)
            }
        }

        /// Powers of ten that are exact doubles.
        private static let exactPowers: [Double] = (0...22).map(pow10)
        private static func pow10(_ n: Int) -> Double {
            var x = 1.0
            for _ in 0..<n { x *= 10 }
            return x
        }

        /// Clinger's fast path: when the decimal significand fits in 53 bits and the power of
        /// ten is at most 22, significand and power are exact doubles, so one multiplication
        /// or division, rounded once, is the correctly rounded result. `nil` otherwise (then
        /// `strtod` decides). Most metrics written with up to 16 digits take this path.
        static func fastDouble(_ significand: UInt64, scale: Int, negative: Bool) -> Double? {
            guard significand <= 1 << 53, scale >= -22, scale <= 22 else { return nil }
            var value = Double(significand)
            if scale >= 0 { value *= exactPowers[scale] } else { value /= exactPowers[-scale] }
            return negative ? -value : value
        }

        mutating func hex4() throws(ParseError) -> UInt32 {
            guard bytes.count - index >= 4 else { throw error("short \\u escape") }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let c = bytes[index]
                let digit: UInt32
                switch c {
                case 0x30...0x39: digit = UInt32(c - 0x30)
                case 0x41...0x46: digit = UInt32(c - 0x41 + 10)
                case 0x61...0x66: digit = UInt32(c - 0x61 + 10)
                default: throw error("bad hex digit in \\u escape")
                }
                v = v << 4 | digit
                index += 1
            }
            return v
        }

        mutating func string() throws(ParseError) -> String {
            index += 1  // opening quote
            var out: [UInt8] = []
            var runStart = index
            while true {
                guard index < bytes.count else { throw error("unterminated string") }
                let c = bytes[index]
                if c == UInt8(ascii: "\"") {
                    out.append(contentsOf: bytes[runStart..<index])
                    index += 1
                    return String(decoding: out, as: UTF8.self)
                }
                if c != UInt8(ascii: "\\") { index += 1; continue }
                out.append(contentsOf: bytes[runStart..<index])
                index += 1
                guard index < bytes.count else { throw error("unterminated escape") }
                let e = bytes[index]
                index += 1
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
                    if (0xD800..<0xDC00).contains(scalar), bytes.count - index >= 6,
                       bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u")
                    {
                        let save = index
                        index += 2
                        let low = try hex4()
                        if (0xDC00..<0xE000).contains(low) {
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        } else {
                            index = save  // not a pair: the high half alone becomes U+FFFD
                        }
                    }
                    let u = Unicode.Scalar(scalar) ?? "\u{FFFD}"
                    out.append(contentsOf: Array(String(Character(u)).utf8))
                default: throw ParseError(message: "invalid escape", index: index - 2)
                }
                runStart = index
            }
        }
    }
}
