import Foundation

/// What a W&B-protocol server holds of one run, as far as this client knows: persisted in the
/// run directory as `wandb-push.json`, one entry per server URL, so that a later push sends
/// only what is new.
///
/// ```json
/// {"version": 1, "servers": {"http://127.0.0.1:8080": {
///    "entity": "me", "project": "mnist", "run": "abc123", "storage_id": "UnVuOm1l...",
///    "history_lines": 1000, "last_step": 999, "rewinds": 1,
///    "console_lines": 12, "console_offset": 12, "events_lines": 4, "events_offset": 4,
///    "upsert_digest": "fnv1a64:...", "summary_digest": "fnv1a64:...",
///    "files": {"config.yaml": "fnv1a64:...", "model.txt": "crc32c:1a2b3c4d/120"},
///    "completed_lifecycle": 1, "exit_code": 0, "updated": "2026-11-26T17:46:21.283125"}}}
/// ```
///
/// file_stream is positional, so the cursor is only an optimization: a push that resends
/// lines the server already holds (the cursor was saved before a failure, or lost) sends
/// them at the same offsets, and the server keeps one copy.
public struct WandbPushCursor: Codable, Sendable, Hashable {
    /// Where the run went (the entity the server picked when the run named none).
    public var entity: String?
    public var project: String?
    public var run: String?
    /// The server's id of the run (`bucket.id`), sent as `id` when the run is reopened.
    public var storageID: String?
    /// `wandb-history.jsonl` lines the server holds: the offset of the next history line.
    /// Equal to the number of live rows sent, fork prefix included.
    public var historyLines: Int64 = 0
    /// The step of the last history row the server holds; rows after it are sent next.
    public var lastStep: Int64?
    /// Local rewinds already accounted for (the run's rewind records at the last push).
    public var rewinds: Int = 0
    /// Local console lines sent, and the `output.log` offset of the next one (they differ
    /// only by lines too long to send).
    public var consoleLines: Int = 0
    public var consoleOffset: Int64 = 0
    /// Local system-metric samples sent, and the `wandb-events.jsonl` offset of the next one.
    public var eventsLines: Int = 0
    public var eventsOffset: Int64 = 0
    /// The last `UpsertBucket` variables sent, and the last summary line sent.
    public var upsertDigest: String?
    public var summaryDigest: String?
    /// Files uploaded: name → digest of the content uploaded.
    public var files: [String: String] = [:]
    /// The run's count of lifecycle records (resumes and exits) when `complete` was last
    /// sent; nil before. A different count means the run was resumed since.
    public var completedLifecycle: Int?
    public var exitCode: Int64?
    /// When the cursor was last saved (UTC).
    public var updated: String?

    public init() {}

    enum CodingKeys: String, CodingKey {
        case entity, project, run
        case storageID = "storage_id"
        case historyLines = "history_lines"
        case lastStep = "last_step"
        case rewinds
        case consoleLines = "console_lines"
        case consoleOffset = "console_offset"
        case eventsLines = "events_lines"
        case eventsOffset = "events_offset"
        case upsertDigest = "upsert_digest"
        case summaryDigest = "summary_digest"
        case files
        case completedLifecycle = "completed_lifecycle"
        case exitCode = "exit_code"
        case updated
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        entity = try c.decodeIfPresent(String.self, forKey: .entity)
        project = try c.decodeIfPresent(String.self, forKey: .project)
        run = try c.decodeIfPresent(String.self, forKey: .run)
        storageID = try c.decodeIfPresent(String.self, forKey: .storageID)
        historyLines = try c.decodeIfPresent(Int64.self, forKey: .historyLines) ?? 0
        lastStep = try c.decodeIfPresent(Int64.self, forKey: .lastStep)
        rewinds = try c.decodeIfPresent(Int.self, forKey: .rewinds) ?? 0
        consoleLines = try c.decodeIfPresent(Int.self, forKey: .consoleLines) ?? 0
        consoleOffset = try c.decodeIfPresent(Int64.self, forKey: .consoleOffset) ?? 0
        eventsLines = try c.decodeIfPresent(Int.self, forKey: .eventsLines) ?? 0
        eventsOffset = try c.decodeIfPresent(Int64.self, forKey: .eventsOffset) ?? 0
        upsertDigest = try c.decodeIfPresent(String.self, forKey: .upsertDigest)
        summaryDigest = try c.decodeIfPresent(String.self, forKey: .summaryDigest)
        files = try c.decodeIfPresent([String: String].self, forKey: .files) ?? [:]
        completedLifecycle = try c.decodeIfPresent(Int.self, forKey: .completedLifecycle)
        exitCode = try c.decodeIfPresent(Int64.self, forKey: .exitCode)
        updated = try c.decodeIfPresent(String.self, forKey: .updated)
    }

    // MARK: The file

    public static let fileName = "wandb-push.json"

    struct File: Codable {
        var version = 1
        var servers: [String: WandbPushCursor] = [:]
    }

    /// A server URL as a cursor key: without trailing slashes.
    public static func key(server: String) -> String {
        var s = server
        while s.hasSuffix("/") { s.removeLast() }
        return s
    }

    /// The cursor of `server` in the run directory, nil when there is none (or the file is unreadable).
    public static func load(directory: String, server: String) -> WandbPushCursor? {
        loadFile(directory).servers[key(server: server)]
    }

    static func loadFile(_ directory: String) -> File {
        guard let data = FileManager.default.contents(atPath: directory + "/" + fileName),
              let f = try? JSONDecoder().decode(File.self, from: data) else { return File() }
        return f
    }

    /// Saves atomically (a temporary file, then rename), keeping other servers' entries.
    public static func save(_ cursor: WandbPushCursor, directory: String, server: String) throws {
        var file = loadFile(directory)
        var c = cursor
        c.updated = WandbPushEncoding.isoTime(Int64(Date().timeIntervalSince1970 * 1e6))
        file.servers[key(server: server)] = c
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = try encoder.encode(file)
        try LocalFile.replace(directory + "/" + fileName, with: data)
    }

    /// Removes the cursor of `server` (the next push starts over, idempotently).
    public static func remove(directory: String, server: String) throws {
        var file = loadFile(directory)
        guard file.servers.removeValue(forKey: key(server: server)) != nil else { return }
        let data = try JSONEncoder().encode(file)
        try LocalFile.replace(directory + "/" + fileName, with: data)
    }
}
