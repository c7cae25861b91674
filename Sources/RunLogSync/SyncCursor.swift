import Foundation

/// The per-run sync cursor, persisted in the run directory as `sync.json`: for each
/// server and remote run, the highest frame sequence it acknowledged. Only a hint: the
/// server's own acknowledgement is asked for before sending.
public enum SyncCursor {
    public static let fileName = "sync.json"

    static func key(server: String, run: RemoteRun) -> String { "\(server)#\(run)" }

    public static func load(directory: String, server: String, run: RemoteRun) -> UInt64 {
        all(directory)[key(server: server, run: run)] ?? 0
    }

    public static func all(_ directory: String) -> [String: UInt64] {
        guard let data = FileManager.default.contents(atPath: directory + "/" + fileName),
              let o = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return [:] }
        var out: [String: UInt64] = [:]
        for (k, v) in o { if let n = v as? NSNumber { out[k] = n.uint64Value } }
        return out
    }

    /// Saves atomically (temporary file, then rename), without forcing it to the device: a
    /// cursor lost to a power cut only makes the next sync ask the server from further back.
    public static func save(directory: String, server: String, run: RemoteRun, acknowledged: UInt64) throws {
        var current = all(directory)
        current[key(server: server, run: run)] = acknowledged
        let data = try JSONSerialization.data(withJSONObject: current.mapValues { NSNumber(value: $0) }, options: [.sortedKeys])
        let path = directory + "/" + fileName
        try LocalFile.replace(path, with: data)
    }
}
