import Foundation

/// API keys saved by `runlog login`, in `~/.config/runlog/credentials.json`, a file only
/// its owner can read (mode 0600).
public struct Credentials: Codable, Sendable {
    public struct Host: Codable, Sendable {
        public var apiKey: String
        public var entity: String?
        public init(apiKey: String, entity: String?) {
            self.apiKey = apiKey
            self.entity = entity
        }
    }
    public var hosts: [String: Host] = [:]
    public var defaultHost: String?
    public init() {}

    public static var path: String {
        let env = ProcessInfo.processInfo.environment
        let base = env["RUNLOG_CONFIG_DIR"] ?? ((env["XDG_CONFIG_HOME"] ?? (NSHomeDirectory() + "/.config")) + "/runlog")
        return base + "/credentials.json"
    }

    public static func load() -> Credentials {
        guard let data = FileManager.default.contents(atPath: path),
              let c = try? JSONDecoder().decode(Credentials.self, from: data) else { return Credentials() }
        return c
    }

    /// Writes the file with mode 0600 (created that way, never readable by others in between).
    public func save() throws {
        let dir = (Self.path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let data = try JSONEncoder().encode(self)
        let tmp = Self.path + ".tmp"
        _ = FileManager.default.createFile(atPath: tmp, contents: nil, attributes: [.posixPermissions: 0o600])
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: tmp))
        try handle.write(contentsOf: data)
        try handle.close()
        chmod(tmp, 0o600)
        guard rename(tmp, Self.path) == 0 else { throw CocoaError(.fileWriteUnknown) }
    }

    /// The server and key to use: explicit arguments, then RUNLOG_/WANDB_ environment
    /// variables, then the saved default host.
    public static func resolve(server: String?, apiKey: String?, environment: [String: String] = ProcessInfo.processInfo.environment)
        -> (server: String, apiKey: String, entity: String?)?
    {
        let saved = load()
        let host = server ?? environment["RUNLOG_BASE_URL"] ?? environment["WANDB_BASE_URL"] ?? saved.defaultHost
        guard let host else { return nil }
        let key = apiKey ?? environment["RUNLOG_API_KEY"] ?? environment["WANDB_API_KEY"] ?? saved.hosts[host]?.apiKey
        guard let key else { return nil }
        return (host, key, saved.hosts[host]?.entity)
    }
}
