/// Validation and generation of run ids.
///
/// A run id must be unique within its project, is used to resume a run, and names the
/// run's folder on disk. It must therefore be a single, portable directory name and must
/// not contain any character the server or a URL path gives a meaning to.
///
/// Rejected (``RunIDError``):
/// - the empty string and anything longer than ``maxUTF8Count`` bytes,
/// - leading or trailing whitespace,
/// - any of `/ \ # ? % : ; , '` and NUL,
/// - the names `.` and `..`.
package enum RunID {
    /// Characters a run id must not contain: the documented set `/ \ # ? % :`, the reference
    /// client's extra `; , '`, and NUL (which no file name can hold).
    package static let forbiddenCharacters: Set<Unicode.Scalar> = [
        "/", "\\", "#", "?", "%", ":", ";", ",", "'", "\u{0}",
    ]

    /// The longest id accepted, in UTF-8 bytes: leaves room under Linux's 255-byte `NAME_MAX`
    /// for the prefix a run folder's name adds to the id.
    package static let maxUTF8Count = 128

    /// The alphabet of generated ids: lowercase ASCII letters and digits.
    package static let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")

    /// The length of generated ids.
    package static let generatedLength = 8

    /// Checks that `id` can be used as a run id, throwing an error that names the problem.
    package static func validate(_ id: String) throws(RunIDError) {
        if id.isEmpty { throw .empty }
        // Checked scalar by scalar: a combining mark after "/" makes a different Character,
        // but the file system still sees the slash.
        let scalars = id.unicodeScalars
        if let first = scalars.first, first.properties.isWhitespace {
            throw .leadingWhitespace(id: id, character: Character(first))
        }
        if let last = scalars.last, last.properties.isWhitespace {
            throw .trailingWhitespace(id: id, character: Character(last))
        }
        if let bad = scalars.first(where: { forbiddenCharacters.contains($0) }) {
            throw .forbiddenCharacter(id: id, character: Character(bad))
        }
        if id == "." || id == ".." { throw .reservedName(id) }
        if id.utf8.count > maxUTF8Count { throw .tooLong(id: id, utf8Count: id.utf8.count) }
    }

    /// A fresh random id: 8 lowercase letters and digits, like `"3kf9zq0a"`.
    package static func random() -> String {
        var generator = SystemRandomNumberGenerator()
        return random(using: &generator)
    }

    /// A random id drawn from `generator` (deterministic in tests).
    package static func random<G: RandomNumberGenerator>(using generator: inout G) -> String {
        var id = ""
        id.reserveCapacity(generatedLength)
        for _ in 0..<generatedLength {
            id.append(alphabet.randomElement(using: &generator)!)
        }
        return id
    }
}

/// Why a string cannot be a run id. The description names the offending character.
package enum RunIDError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The id is the empty string.
    case empty
    /// The id starts with a whitespace character.
    case leadingWhitespace(id: String, character: Character)
    /// The id ends with a whitespace character.
    case trailingWhitespace(id: String, character: Character)
    /// The id contains one of ``RunID/forbiddenCharacters``.
    case forbiddenCharacter(id: String, character: Character)
    /// The id is `.` or `..`, which cannot name a directory.
    case reservedName(String)
    /// The id is longer than ``RunID/maxUTF8Count`` UTF-8 bytes.
    case tooLong(id: String, utf8Count: Int)

    package var description: String {
        switch self {
        case .empty:
            return "run id must not be empty"
        case let .leadingWhitespace(id, c):
            return "run id \(Self.quote(id)) must not start with whitespace (\(Self.name(of: c)))"
        case let .trailingWhitespace(id, c):
            return "run id \(Self.quote(id)) must not end with whitespace (\(Self.name(of: c)))"
        case let .forbiddenCharacter(id, c):
            return "run id \(Self.quote(id)) contains the forbidden character \(Self.name(of: c)); "
                + "ids must not contain any of / \\ # ? % : ; , ' or NUL"
        case let .reservedName(id):
            return "run id \(Self.quote(id)) is not allowed: \".\" and \"..\" cannot name a run directory"
        case let .tooLong(id, count):
            return "run id \(Self.quote(String(id.prefix(20))))... is \(count) bytes long; "
                + "the limit is \(RunID.maxUTF8Count) UTF-8 bytes"
        }
    }

    /// A readable name for a character: printable ones quoted, others as `U+XXXX` with a name.
    static func name(of c: Character) -> String {
        let scalars = c.unicodeScalars
        let code = scalars.map { "U+" + String($0.value, radix: 16, uppercase: true).leftPadded(to: 4) }
            .joined(separator: " ")
        switch c {
        case "\u{0}": return "NUL (U+0000)"
        case " ": return "space (U+0020)"
        case "\t": return "tab (U+0009)"
        case "\n": return "newline (U+000A)"
        case "\r": return "carriage return (U+000D)"
        case "\r\n": return "CR LF (U+000D U+000A)"
        default:
            if c.isWhitespace || scalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
                return code
            }
            return "\"\(c)\""
        }
    }

    /// The id in double quotes, with control characters escaped so the message stays on one line.
    static func quote(_ id: String) -> String {
        var out = "\""
        for scalar in id.unicodeScalars {
            if scalar.value < 0x20 || scalar.value == 0x7F {
                out += "\\u{" + String(scalar.value, radix: 16) + "}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
