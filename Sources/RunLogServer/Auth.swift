import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging

/// API keys: their shape, their hash, and where a request carries one.
///
/// A key has the shape the wandb client accepts: an optional `prefix-`, then at least 40
/// characters of `[A-Za-z0-9_]`. The server stores only the SHA-256 of the whole key (and
/// its first characters as a hint for listings), so a leaked database gives no usable key.
enum APIKey {
    /// The prefix of keys this server makes.
    static let prefix = "runlog"
    /// Random characters after the prefix (62 symbols each, ~285 bits).
    static let randomLength = 48

    /// A new random key, `runlog-` followed by 48 letters and digits.
    static func generate() -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
        var rng = SystemRandomNumberGenerator()
        var s = prefix + "-"
        for _ in 0..<randomLength { s.append(alphabet[Int.random(in: 0..<alphabet.count, using: &rng)]) }
        return s
    }

    /// Whether `key` has the accepted shape.
    static func isWellFormed(_ key: String) -> Bool {
        let body: Substring
        if let dash = key.lastIndex(of: "-") {
            let prefix = key[..<dash]
            guard !prefix.isEmpty, prefix.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }) else { return false }
            body = key[key.index(after: dash)...]
        } else {
            body = key[...]
        }
        return body.count >= 40 && body.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F
        }
    }

    static func hash(_ key: String) -> [UInt8] { Array(SHA256.hash(data: Data(key.utf8))) }

    /// What a listing may show of a key.
    static func hint(_ key: String) -> String { String(key.prefix(key.count > 12 ? 12 : 4)) + "…" }

    /// The name of the cookie the web UI's sign-in sets.
    static let cookieName = "runlog_key"

    /// The key a request carries: `Authorization: Bearer KEY`, or HTTP Basic with the key as
    /// the password (what the wandb client sends, `api:KEY`), or — only where `cookie` is
    /// true, for the web UI's reads — the sign-in cookie.
    static func fromRequest(_ headers: HTTPFields, cookie: Bool) -> String? {
        if let auth = headers[.authorization] {
            let parts = auth.split(separator: " ", maxSplits: 1)
            if parts.count == 2 {
                let scheme = parts[0].lowercased()
                let value = parts[1].trimmingCharacters(in: .whitespaces)
                if scheme == "bearer" { return value }
                if scheme == "basic", let data = Data(base64Encoded: value), let text = String(data: data, encoding: .utf8),
                   let colon = text.firstIndex(of: ":")
                {
                    return String(text[text.index(after: colon)...])
                }
            }
        }
        if cookie, let header = headers[.cookie] {
            for part in header.split(separator: ";") {
                let kv = part.trimmingCharacters(in: .whitespaces)
                if kv.hasPrefix(cookieName + "=") { return String(kv.dropFirst(cookieName.count + 1)) }
            }
        }
        return nil
    }
}

/// Creates an API key for a user of an entity, creating both if missing, and prints nothing:
/// the caller shows the key once. This is what `runlog server create-key` calls.
///
/// The user defaults to the entity's name (a personal entity); with another user name the
/// entity is a team and the user becomes one of its members.
///
/// ```swift
/// let key = try await createKey(database: "runlog.db", entity: "alice")
/// ```
/// - Parameters:
///   - database: a SQLite file path or a `postgres://` URL, as ``ServerConfiguration/database``.
///   - entity: the entity the key may write.
///   - user: the user the key belongs to; nil for the entity's name.
/// - Returns: the key, in the shape the wandb client accepts.
/// - Throws: ``ServerError`` when the database cannot be opened or written, or a name is empty.
public func createKey(database: String, entity: String, user: String? = nil, logger: Logger = Logger(label: "runlog.server")) async throws -> String {
    let user = user ?? entity
    guard Names.isValid(entity), Names.isValid(user) else {
        throw ServerError(.badRequest, "entity and user names must be 1–128 bytes without / \\ # ? % : or control characters")
    }
    return try await withServerStore(database: database, logger: logger) { store in
        let userID = try await store.ensureAccount(user: user, entity: entity)
        let key = APIKey.generate()
        try await store.addKey(hash: APIKey.hash(key), hint: APIKey.hint(key), userID: userID)
        return key
    }
}

/// Names of entities, projects and runs as they appear in URLs.
enum Names {
    /// 1 to 128 bytes, not `.` or `..`, without `/ \\ # ? % :` or control characters (the
    /// characters wandb refuses in names too).
    static func isValid(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 128 && s != "." && s != ".." && s.unicodeScalars.allSatisfy { c in
            c.value >= 0x20 && c.value != 0x7F && !"/\\#?%:".unicodeScalars.contains(c)
        }
    }
}

