import Foundation

#if canImport(RunLogStore)
import RunLogStore
#endif

/// A small YAML reader for config files: the subset that experiment configs use.
///
/// Supported: block mappings nested by indentation; block lists (`- x`, also lists of
/// mappings and `key:` followed by `- x` at the same indentation); flow lists and mappings
/// (`[a, b]`, `{k: v}`, also spread over several lines); `#` comments; a leading `---`.
/// Scalars follow YAML 1.2's core schema: `null`/`~`/empty, `true`/`false` (plus PyYAML's
/// `yes`/`no`/`on`/`off`), integers (decimal, `0x`, `0o`, with `_` separators), floats (`1.5`,
/// `1e-3`, `.nan`, `.inf`, `-.inf`), single- and double-quoted strings, and plain strings.
/// Unlike PyYAML, `1e-3` is a float, not a string.
///
/// Not supported, with an error naming the line: block scalars (`|`, `>`), anchors and
/// aliases, tags, multi-line plain or quoted scalars, several documents, tab indentation.
/// Duplicate keys are an error.
package enum ConfigYAML {
    /// The top-level mapping of the YAML document `text` (an empty document gives `[:]`).
    package static func parse(_ text: String) throws(ConfigYAMLError) -> [String: Value] {
        var parser = try BlockParser(text)
        return try parser.parseDocument()
    }

    /// Config key/values from YAML `text`, accepting wandb's config-file shape: a top-level
    /// key mapped to `{desc: ..., value: X}` gives X, and `wandb_version` and `_wandb` are dropped.
    package static func config(fromYAML text: String) throws(ConfigYAMLError) -> [String: Value] {
        unwrapWandbShape(try parse(text))
    }

    /// Config key/values from the YAML file at `url` (see ``config(fromYAML:)``).
    package static func config(contentsOf url: URL) throws(ConfigYAMLError) -> [String: Value] {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw ConfigYAMLError(line: 0, message: "cannot read \(url.path): \(error.localizedDescription)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigYAMLError(line: 0, message: "\(url.path) is not UTF-8 text")
        }
        return try config(fromYAML: text)
    }

    /// Replaces each `{desc: ..., value: X}` (keys `value` and optionally `desc`, nothing
    /// else) by X, and drops the bookkeeping keys `wandb_version` and `_wandb`.
    package static func unwrapWandbShape(_ config: [String: Value]) -> [String: Value] {
        var out: [String: Value] = [:]
        for (key, value) in config where key != "wandb_version" && key != "_wandb" {
            if case .object(let fields) = value, let inner = fields["value"],
                fields.keys.allSatisfy({ $0 == "value" || $0 == "desc" })
            {
                out[key] = inner
            } else {
                out[key] = value
            }
        }
        return out
    }
}

/// A YAML document RunLog cannot read, with the 1-based line of the problem (0: the whole file).
package struct ConfigYAMLError: Error, Equatable, Sendable, CustomStringConvertible {
    package var line: Int
    package var message: String

    package init(line: Int, message: String) {
        self.line = line
        self.message = message
    }

    package var description: String { line > 0 ? "YAML line \(line): \(message)" : "YAML: \(message)" }
}

// MARK: - Block structure

private struct Line {
    var number: Int
    var indent: Int
    /// Content without indentation, comment and trailing blanks; never empty.
    var text: String
}

private struct BlockParser {
    var lines: [Line] = []
    var i = 0

    init(_ text: String) throws(ConfigYAMLError) {
        var started = false
        // "\r\n" is a single Character, so it must be named as a separator of its own.
        var rawLines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
        if let first = rawLines.first, first.hasPrefix("\u{FEFF}") { rawLines[0] = first.dropFirst() }
        for (offset, raw) in rawLines.enumerated() {
            let number = offset + 1
            var line = Substring(raw)
            if line.hasSuffix("\r") { line = line.dropLast() }
            let content = try Self.stripComment(line, number: number)
            let body = content.drop { $0 == " " || $0 == "\t" }
            if body.isEmpty { continue }
            let indentation = content[..<body.startIndex]
            if indentation.contains("\t") {
                throw ConfigYAMLError(line: number, message: "tabs are not allowed in indentation")
            }
            var trimmed = String(body)
            while let last = trimmed.last, last == " " || last == "\t" { trimmed.removeLast() }
            if indentation.isEmpty && (trimmed.hasPrefix("%") && !started) { continue }
            if indentation.isEmpty && (trimmed == "---" || trimmed.hasPrefix("--- ")) {
                if started {
                    throw ConfigYAMLError(line: number, message: "several documents in one file are not supported")
                }
                if trimmed != "---" {
                    throw ConfigYAMLError(line: number, message: "content on the --- line is not supported")
                }
                started = true
                continue
            }
            if indentation.isEmpty && (trimmed == "..." || trimmed.hasPrefix("... ")) { break }
            started = true
            lines.append(Line(number: number, indent: indentation.count, text: trimmed))
        }
    }

    /// `line` without a trailing `# comment` (a `#` at the start or after a blank, outside quotes).
    static func stripComment(_ line: Substring, number: Int) throws(ConfigYAMLError) -> Substring {
        var quote: Character?
        var previous: Character?
        var index = line.startIndex
        while index < line.endIndex {
            let c = line[index]
            if let open = quote {
                if open == "\"" && c == "\\" {
                    index = line.index(after: index)
                    if index == line.endIndex { break }
                } else if c == open {
                    quote = nil
                }
            } else if c == "#" && (previous == nil || previous == " " || previous == "\t") {
                return line[..<index]
            } else if (c == "\"" || c == "'") && Self.quoteCanOpen(after: previous) {
                quote = c
            }
            previous = c
            index = line.index(after: index)
        }
        return line
    }

    /// A quote starts a quoted scalar only where a token starts (not in `don't`).
    static func quoteCanOpen(after previous: Character?) -> Bool {
        guard let previous else { return true }
        return " \t[{,:-".contains(previous)
    }

    mutating func parseDocument() throws(ConfigYAMLError) -> [String: Value] {
        guard let first = lines.first else { return [:] }
        if Self.isListItem(first.text) {
            throw ConfigYAMLError(line: first.number, message: "the top level must be a mapping (`key: value`), not a list")
        }
        if Self.splitKey(first.text) == nil {
            throw ConfigYAMLError(line: first.number, message: "the top level must be a mapping (`key: value`)")
        }
        let value = try parseMapping(indent: first.indent)
        if i < lines.count {
            throw ConfigYAMLError(line: lines[i].number, message: "indentation does not match any enclosing block")
        }
        guard case .object(let object) = value else { return [:] }
        return object
    }

    static func isListItem(_ text: String) -> Bool { text == "-" || text.hasPrefix("- ") }

    /// The node that starts at `lines[i]`, whose indentation is `indent`.
    mutating func parseBlock(indent: Int) throws(ConfigYAMLError) -> Value {
        let line = lines[i]
        if Self.isListItem(line.text) { return try parseSequence(indent: indent) }
        if Self.splitKey(line.text) != nil { return try parseMapping(indent: indent) }
        i += 1
        return try parseInlineValue(line.text, line: line, parentIndent: indent - 1)
    }

    mutating func parseMapping(indent: Int) throws(ConfigYAMLError) -> Value {
        var object: [String: Value] = [:]
        while i < lines.count {
            let line = lines[i]
            if line.indent < indent { break }
            if line.indent > indent {
                throw ConfigYAMLError(line: line.number, message: "unexpected indentation")
            }
            if Self.isListItem(line.text) {
                throw ConfigYAMLError(line: line.number, message: "a list item where a `key: value` was expected")
            }
            guard let (key, rest) = Self.splitKey(line.text) else {
                throw ConfigYAMLError(line: line.number, message: "expected `key: value`, found \"\(line.text)\"")
            }
            let keyText = try Self.keyString(key, line: line)
            if object[keyText] != nil {
                throw ConfigYAMLError(line: line.number, message: "duplicate key \"\(keyText)\"")
            }
            i += 1
            if rest.isEmpty {
                if i < lines.count, lines[i].indent > indent {
                    object[keyText] = try parseBlock(indent: lines[i].indent)
                } else if i < lines.count, lines[i].indent == indent, Self.isListItem(lines[i].text) {
                    object[keyText] = try parseSequence(indent: indent)
                } else {
                    object[keyText] = .null
                }
            } else {
                object[keyText] = try parseInlineValue(rest, line: line, parentIndent: indent)
            }
        }
        return .object(object)
    }

    mutating func parseSequence(indent: Int) throws(ConfigYAMLError) -> Value {
        var items: [Value] = []
        while i < lines.count {
            let line = lines[i]
            if line.indent < indent || (line.indent == indent && !Self.isListItem(line.text)) { break }
            if line.indent > indent {
                throw ConfigYAMLError(line: line.number, message: "unexpected indentation")
            }
            let afterDash = line.text.dropFirst()
            let rest = afterDash.drop { $0 == " " }
            if rest.isEmpty {
                i += 1
                if i < lines.count, lines[i].indent > indent {
                    items.append(try parseBlock(indent: lines[i].indent))
                } else {
                    items.append(.null)
                }
            } else if Self.isListItem(String(rest)) || Self.splitKey(String(rest)) != nil {
                // `- key: v` or `- - x`: the item is a block that starts after the dash.
                let itemIndent = indent + 1 + (afterDash.count - rest.count)
                lines[i] = Line(number: line.number, indent: itemIndent, text: String(rest))
                items.append(try parseBlock(indent: itemIndent))
            } else {
                i += 1
                items.append(try parseInlineValue(String(rest), line: line, parentIndent: indent))
            }
        }
        return .array(items)
    }

    /// A value written on the line of its key or dash. A flow collection may continue on the
    /// following lines that are indented more than `parentIndent`.
    mutating func parseInlineValue(_ text: String, line: Line, parentIndent: Int) throws(ConfigYAMLError) -> Value {
        guard let first = text.first else { return .null }
        switch first {
        case "[", "{":
            var source = text
            while true {
                var flow = FlowParser(Array(source), line: line.number)
                do {
                    return try flow.parseWhole()
                } catch is FlowParser.NeedMore {
                    guard i < lines.count, lines[i].indent > parentIndent else {
                        throw ConfigYAMLError(line: line.number, message: "unclosed \(first == "[" ? "[" : "{")")
                    }
                    source += " " + lines[i].text
                    i += 1
                } catch let error as ConfigYAMLError {
                    throw error
                } catch {
                    throw ConfigYAMLError(line: line.number, message: "\(error)")
                }
            }
        case "|", ">":
            throw ConfigYAMLError(line: line.number, message: "block scalars (| and >) are not supported")
        case "&", "*":
            throw ConfigYAMLError(line: line.number, message: "anchors and aliases (& and *) are not supported")
        case "!":
            throw ConfigYAMLError(line: line.number, message: "tags (!) are not supported")
        case "\"", "'":
            var flow = FlowParser(Array(text), line: line.number)
            let value: String
            do { value = try flow.parseQuoted() } catch let error as ConfigYAMLError { throw error } catch {
                throw ConfigYAMLError(line: line.number, message: "unterminated quoted string (multi-line strings are not supported)")
            }
            flow.skipBlanks()
            if !flow.atEnd {
                throw ConfigYAMLError(line: line.number, message: "unexpected text after a quoted string")
            }
            try rejectContinuation(after: line, parentIndent: parentIndent)
            return .string(value)
        default:
            try rejectContinuation(after: line, parentIndent: parentIndent)
            return try Scalar.resolve(text, line: line.number)
        }
    }

    /// A scalar cannot continue on a more indented line (no multi-line plain scalars).
    func rejectContinuation(after line: Line, parentIndent: Int) throws(ConfigYAMLError) {
        if i < lines.count, lines[i].indent > parentIndent, lines[i].indent > line.indent {
            throw ConfigYAMLError(
                line: lines[i].number,
                message: "unexpected indentation (multi-line scalars are not supported)")
        }
    }

    /// Splits `key: rest` at the first `:` that is followed by a blank or the end of the line,
    /// outside quotes. Nil when the line is not a mapping entry.
    static func splitKey(_ text: String) -> (key: Substring, rest: String)? {
        guard let first = text.first, first != "[", first != "{", !isListItem(text) else { return nil }
        var index = text.startIndex
        if first == "\"" || first == "'" {
            // Skip the quoted key.
            index = text.index(after: index)
            while index < text.endIndex {
                if first == "\"" && text[index] == "\\" {
                    index = text.index(after: index)
                    if index == text.endIndex { return nil }
                } else if text[index] == first {
                    let next = text.index(after: index)
                    if first == "'" && next < text.endIndex && text[next] == "'" { index = next } else { break }
                }
                index = text.index(after: index)
            }
            guard index < text.endIndex else { return nil }
            index = text.index(after: index)
        }
        while index < text.endIndex {
            if text[index] == ":" {
                let next = text.index(after: index)
                if next == text.endIndex || text[next] == " " || text[next] == "\t" {
                    let key = text[..<index]
                    var rest = text[next...].drop { $0 == " " || $0 == "\t" }
                    while let last = rest.last, last == " " { rest = rest.dropLast() }
                    return (key, String(rest))
                }
            }
            index = text.index(after: index)
        }
        return nil
    }

    /// The key's text: quoted keys unquoted, plain keys as written.
    static func keyString(_ key: Substring, line: Line) throws(ConfigYAMLError) -> String {
        var trimmed = key
        while let last = trimmed.last, last == " " || last == "\t" { trimmed = trimmed.dropLast() }
        guard let first = trimmed.first else {
            throw ConfigYAMLError(line: line.number, message: "empty key")
        }
        if first == "\"" || first == "'" {
            var flow = FlowParser(Array(trimmed), line: line.number)
            do {
                let value = try flow.parseQuoted()
                flow.skipBlanks()
                if flow.atEnd { return value }
            } catch let error as ConfigYAMLError { throw error } catch {}
            throw ConfigYAMLError(line: line.number, message: "malformed quoted key")
        }
        if first == "?" || first == "&" || first == "*" || first == "!" {
            throw ConfigYAMLError(line: line.number, message: "complex keys, anchors, aliases and tags are not supported")
        }
        return String(trimmed)
    }
}

// MARK: - Flow collections and quoted strings

private struct FlowParser {
    /// Thrown when the text ends inside an open collection: the caller adds the next line.
    struct NeedMore: Error {}

    let chars: [Character]
    let line: Int
    var p = 0

    init(_ chars: [Character], line: Int) {
        self.chars = chars
        self.line = line
    }

    var atEnd: Bool { p >= chars.count }

    mutating func skipBlanks() {
        while p < chars.count, chars[p] == " " || chars[p] == "\t" { p += 1 }
    }

    func error(_ message: String) -> ConfigYAMLError { ConfigYAMLError(line: line, message: message) }

    mutating func parseWhole() throws -> Value {
        let value = try parseValue()
        skipBlanks()
        if !atEnd { throw error("unexpected text after a flow collection: \"\(String(chars[p...]))\"") }
        return value
    }

    mutating func parseValue() throws -> Value {
        skipBlanks()
        guard p < chars.count else { throw NeedMore() }
        switch chars[p] {
        case "[":
            p += 1
            var items: [Value] = []
            while true {
                skipBlanks()
                guard p < chars.count else { throw NeedMore() }
                if chars[p] == "]" { p += 1; return .array(items) }
                items.append(try parseValue())
                skipBlanks()
                guard p < chars.count else { throw NeedMore() }
                if chars[p] == "," { p += 1; continue }
                if chars[p] == "]" { p += 1; return .array(items) }
                throw error("expected , or ] in a flow list, found \"\(chars[p])\"")
            }
        case "{":
            p += 1
            var object: [String: Value] = [:]
            while true {
                skipBlanks()
                guard p < chars.count else { throw NeedMore() }
                if chars[p] == "}" { p += 1; return .object(object) }
                let key: String
                if chars[p] == "\"" || chars[p] == "'" {
                    key = try parseQuoted()
                } else {
                    key = plain(until: [":", ",", "}"])
                }
                skipBlanks()
                guard p < chars.count else { throw NeedMore() }
                guard chars[p] == ":" else { throw error("expected : after key \"\(key)\" in a flow mapping") }
                p += 1
                if object[key] != nil { throw error("duplicate key \"\(key)\"") }
                skipBlanks()
                guard p < chars.count else { throw NeedMore() }
                object[key] = (chars[p] == "," || chars[p] == "}") ? .null : try parseValue()
                skipBlanks()
                guard p < chars.count else { throw NeedMore() }
                if chars[p] == "," { p += 1; continue }
                if chars[p] == "}" { p += 1; return .object(object) }
                throw error("expected , or } in a flow mapping, found \"\(chars[p])\"")
            }
        case "\"", "'":
            return .string(try parseQuoted())
        case "]", "}", ",":
            throw error("unexpected \"\(chars[p])\"")
        default:
            let text = plain(until: [",", "]", "}"])
            if let first = text.first, "&*!|>".contains(first) {
                throw error("anchors, aliases, tags and block scalars are not supported")
            }
            return try Scalar.resolve(text, line: line)
        }
    }

    /// A plain scalar up to one of `stops`, trailing blanks removed.
    mutating func plain(until stops: Set<Character>) -> String {
        let start = p
        while p < chars.count, !stops.contains(chars[p]) { p += 1 }
        var text = String(chars[start..<p])
        while let last = text.last, last == " " || last == "\t" { text.removeLast() }
        return text
    }

    /// A single- or double-quoted string starting at `p`. Throws ``NeedMore`` when unterminated.
    mutating func parseQuoted() throws -> String {
        let quote = chars[p]
        p += 1
        var out = ""
        while p < chars.count {
            let c = chars[p]
            p += 1
            if quote == "'" {
                if c == "'" {
                    if p < chars.count, chars[p] == "'" { out.append("'"); p += 1; continue }
                    return out
                }
                out.append(c)
            } else if c == "\"" {
                return out
            } else if c == "\\" {
                guard p < chars.count else { throw NeedMore() }
                let e = chars[p]
                p += 1
                switch e {
                case "\\": out.append("\\")
                case "\"": out.append("\"")
                case "/": out.append("/")
                case "n": out.append("\n")
                case "t": out.append("\t")
                case "r": out.append("\r")
                case "0": out.append("\u{0}")
                case "b": out.append("\u{8}")
                case "f": out.append("\u{C}")
                case "e": out.append("\u{1B}")
                case " ": out.append(" ")
                case "x": out.append(try hexScalar(digits: 2))
                case "u": out.append(try hexScalar(digits: 4))
                case "U": out.append(try hexScalar(digits: 8))
                default: throw error("unknown escape \\\(e) in a double-quoted string")
                }
            } else {
                out.append(c)
            }
        }
        throw NeedMore()
    }

    private mutating func hexScalar(digits: Int) throws -> Character {
        guard p + digits <= chars.count,
            let code = UInt32(String(chars[p..<p + digits]), radix: 16),
            let scalar = Unicode.Scalar(code)
        else { throw error("invalid \\x, \\u or \\U escape") }
        p += digits
        return Character(scalar)
    }
}

// MARK: - Plain scalars

private enum Scalar {
    /// The typed value of a plain (unquoted) scalar.
    static func resolve(_ text: String, line: Int) throws(ConfigYAMLError) -> Value {
        switch text {
        case "", "~", "null", "Null", "NULL": return .null
        case "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON": return .bool(true)
        case "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF": return .bool(false)
        case ".nan", ".NaN", ".NAN": return .double(.nan)
        case ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF": return .double(.infinity)
        case "-.inf", "-.Inf", "-.INF": return .double(-.infinity)
        default: break
        }
        if let int = try integer(text, line: line) { return .int(int) }
        if isFloat(text), let double = Double(text.replacingOccurrences(of: "_", with: "")) {
            return .double(double)
        }
        return .string(text)
    }

    /// `[-+]?` then decimal digits, `0x` hex or `0o` octal, `_` allowed between digits.
    static func integer(_ text: String, line: Int) throws(ConfigYAMLError) -> Int64? {
        var body = Substring(text)
        var negative = false
        if let sign = body.first, sign == "-" || sign == "+" {
            negative = sign == "-"
            body = body.dropFirst()
        }
        var radix = 10
        if body.hasPrefix("0x") { radix = 16; body = body.dropFirst(2) }
        else if body.hasPrefix("0o") { radix = 8; body = body.dropFirst(2) }
        guard let first = body.first, first != "_",
            body.allSatisfy({ $0 == "_" || $0.isHexDigit && Int(String($0), radix: radix) != nil })
        else { return nil }
        let digits = (negative ? "-" : "") + body.replacingOccurrences(of: "_", with: "")
        guard let value = Int64(digits, radix: radix) else {
            throw ConfigYAMLError(line: line, message: "integer \(text) is out of the 64-bit range")
        }
        return value
    }

    /// `[-+]? ( .digits | digits [. digits?] ) ([eE][-+]?digits)?` with a dot or an exponent.
    static func isFloat(_ text: String) -> Bool {
        var chars = Substring(text)
        if let sign = chars.first, sign == "-" || sign == "+" { chars = chars.dropFirst() }
        func digits() -> Int {
            var n = 0
            while let c = chars.first, c.isASCII && c.isNumber || (c == "_" && n > 0) {
                chars = chars.dropFirst()
                n += 1
            }
            return n
        }
        let whole = digits()
        var fraction = 0
        var hasDot = false
        if chars.first == "." {
            hasDot = true
            chars = chars.dropFirst()
            fraction = digits()
        }
        guard whole + fraction > 0 else { return false }
        var hasExponent = false
        if let e = chars.first, e == "e" || e == "E" {
            chars = chars.dropFirst()
            if let sign = chars.first, sign == "-" || sign == "+" { chars = chars.dropFirst() }
            guard digits() > 0 else { return false }
            hasExponent = true
        }
        return chars.isEmpty && (hasDot || hasExponent)
    }
}
