import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import RunLogStore

/// Upload URLs that authorize themselves, like S3's presigned URLs: the wandb client PUTs
/// run files and artifact files to the URLs the server hands out, with no credentials of
/// its own. A URL names what it may write and until when, and carries an HMAC-SHA256 of
/// both under the server's signing key.
struct UploadSigner: Sendable {
    let key: SymmetricKey
    /// How long a URL stays valid.
    var lifetime: Int64 = 24 * 3600

    init(key: [UInt8]) { self.key = SymmetricKey(data: key) }

    /// The signature of an upload target (`run`/`artifact` and its path parts) valid until `expires`.
    func signature(_ parts: [String], expires: Int64) -> String {
        let message = (parts + [String(expires)]).joined(separator: "\n")
        let mac = HMAC<SHA256>.authenticationCode(for: Data(message.utf8), using: key)
        return mac.map { String(format: "%02x", $0) }.joined()
    }

    /// Whether `signature` is valid for `parts` and has not expired at `now` (seconds).
    func verify(_ parts: [String], expires: Int64, signature: String, now: Int64) -> Bool {
        guard expires >= now else { return false }
        let expected = Array(self.signature(parts, expires: expires).utf8)
        let given = Array(signature.utf8)
        guard expected.count == given.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<expected.count { diff |= expected[i] ^ given[i] }
        return diff == 0
    }

    /// The signing key in `directory/.signing-key`, made (32 random bytes, mode 0600) if
    /// missing, so that URLs survive restarts and work across server processes sharing the
    /// directory.
    static func loadKey(directory: String) throws -> [UInt8] {
        let path = (directory as NSString).appendingPathComponent(".signing-key")
        if let data = FileManager.default.contents(atPath: path), data.count >= 32 { return Array(data) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let tmp = path + ".\(getpid()).tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: Data(bytes), attributes: [.posixPermissions: 0o600]) else {
            throw ServerError(.configuration, "cannot write the signing key at \(path)")
        }
        // Another process may have made one meanwhile: keep whichever is there first.
        if link(tmp, path) != 0, let data = FileManager.default.contents(atPath: path), data.count >= 32 {
            unlink(tmp)
            return Array(data)
        }
        unlink(tmp)
        return bytes
    }
}

/// Files uploaded through the W&B protocol, on disk under one directory:
/// `runs/<entity>/<project>/<run>/<name>` and `artifacts/<id>/...`.
struct BlobStore: Sendable {
    let root: String

    func runFile(_ key: RunKey, _ name: String) throws(ServerError) -> String {
        try path(["runs", key.entity, key.project, key.run] + Self.components(name))
    }

    func artifactPath(_ id: String, _ name: String) throws(ServerError) -> String {
        try path(["artifacts", id] + Self.components(name))
    }

    /// A relative file name's components, refusing `..`, absolute paths and empty parts.
    static func components(_ name: String) throws(ServerError) -> [String] {
        let parts = name.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard !name.isEmpty, !name.hasPrefix("/"), name.utf8.count <= 1024,
              parts.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." && !$0.contains("\0") })
        else { throw ServerError(.badRequest, "invalid file name \(name)") }
        return parts
    }

    private func path(_ parts: [String]) throws(ServerError) -> String {
        for p in parts where p.isEmpty || p == "." || p == ".." || p.contains("/") || p.contains("\0") {
            throw ServerError(.badRequest, "invalid path component \(p)")
        }
        return ([root] + parts).joined(separator: "/")
    }

    /// Writes `chunks` to `path` atomically (a temporary file, fsync, rename): a reader
    /// sees the old file or the whole new one. Returns the size and SHA-256.
    static func write(_ path: String, _ chunks: some AsyncSequence<[UInt8], any Error>, limit: Int) async throws -> (size: Int64, sha256: String) {
        let dir = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let tmp = path + ".upload-\(UInt64.random(in: 0...UInt64.max))"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ServerError(.storage, "cannot create \(tmp): \(String(cString: strerror(errno)))") }
        var size = 0
        var hasher = SHA256()
        do {
            for try await chunk in chunks {
                size += chunk.count
                guard size <= limit else { throw ServerError(.tooLarge, "upload over the limit of \(limit) bytes") }
                hasher.update(data: chunk)
                var off = 0
                while off < chunk.count {
                    let n = chunk.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + off, chunk.count - off) }
                    guard n > 0 else { throw ServerError(.storage, "write \(tmp): \(String(cString: strerror(errno)))") }
                    off += n
                }
            }
            guard fsync(fd) == 0 else { throw ServerError(.storage, "fsync \(tmp): \(String(cString: strerror(errno)))") }
            close(fd)
            guard rename(tmp, path) == 0 else { throw ServerError(.storage, "rename to \(path): \(String(cString: strerror(errno)))") }
        } catch {
            close(fd)
            unlink(tmp)
            throw error
        }
        let digest = hasher.finalize().map { String(format: "%02x", $0) }.joined()
        return (Int64(size), digest)
    }
}

/// An artifact made through the W&B protocol, kept as `artifacts/<id>/artifact.json`.
struct WandbArtifact: Sendable, Hashable {
    var id: String
    var entity: String
    var project: String
    var run: String?
    var collection: String
    var type: String
    var digest: String
    var metadata: String?
    var state: String
    var aliases: [String]

    var value: Value {
        var o: [String: Value] = [
            "id": .string(id), "entity": .string(entity), "project": .string(project), "collection": .string(collection),
            "type": .string(type), "digest": .string(digest), "state": .string(state), "aliases": .array(aliases.map { .string($0) }),
        ]
        if let run { o["run"] = .string(run) }
        if let metadata { o["metadata"] = .string(metadata) }
        return .object(o)
    }

    init(id: String, entity: String, project: String, run: String?, collection: String, type: String, digest: String, metadata: String?, state: String, aliases: [String]) {
        self.id = id; self.entity = entity; self.project = project; self.run = run; self.collection = collection
        self.type = type; self.digest = digest; self.metadata = metadata; self.state = state; self.aliases = aliases
    }

    init?(_ v: Value) {
        guard let id = v["id"]?.stringValue, let entity = v["entity"]?.stringValue, let project = v["project"]?.stringValue,
              let collection = v["collection"]?.stringValue else { return nil }
        self.init(id: id, entity: entity, project: project, run: v["run"]?.stringValue, collection: collection,
                  type: v["type"]?.stringValue ?? "", digest: v["digest"]?.stringValue ?? "", metadata: v["metadata"]?.stringValue,
                  state: v["state"]?.stringValue ?? "PENDING", aliases: v["aliases"]?.arrayValue?.compactMap(\.stringValue) ?? [])
    }

    func save(in blobs: BlobStore) throws {
        let path = try blobs.artifactPath(id, "artifact.json")
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(value.description.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    static func load(_ id: String, in blobs: BlobStore) throws -> WandbArtifact? {
        let path = try blobs.artifactPath(id, "artifact.json")
        guard let data = FileManager.default.contents(atPath: path), let v = try? JSONParser.parse(String(decoding: data, as: UTF8.self)) else { return nil }
        return WandbArtifact(v)
    }
}
