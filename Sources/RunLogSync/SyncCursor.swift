import Foundation
import RunLogStore

/// The per-run sync cursor, persisted in the run directory as `sync.json`: for each
/// server and remote run, the highest frame sequence it acknowledged. Only a hint: the
/// server's own acknowledgement is asked for before sending.
public enum SyncCursor {
    public static let fileName = "sync.json"

    static func key(server: String, run: RemoteRun) -> String { "\(server)#\(run)" }

    public static func load(directory: String, server: String, run: RemoteRun) -> UInt64 {
        all(directory)[key(server: server, run: run)] ?? 0
    }

    /// Every cursor of the run. The file is a JSON object of integers, read and written here
    /// without `JSONSerialization`, whose boxing into `NSNumber`s was most of a cursor save's
    /// cost (one per run of a bulk sync).
    public static func all(_ directory: String) -> [String: UInt64] {
        guard let data = FileManager.default.contents(atPath: directory + "/" + fileName),
              case .object(let o)? = (data.withUnsafeBytes { try? WandbJSON.parse($0.bindMemory(to: UInt8.self)) }) else { return [:] }
        var out: [String: UInt64] = [:]
        for (k, v) in o {
            switch v {
            case .int(let n) where n >= 0: out[k] = UInt64(n)
            case .double(let d) where d >= 0 && d < 0x1p63: out[k] = UInt64(d)
            default: continue
            }
        }
        return out
    }

    /// Saves atomically (temporary file, then rename), without forcing it to the device: a
    /// cursor lost to a power cut only makes the next sync ask the server from further back.
    public static func save(directory: String, server: String, run: RemoteRun, acknowledged: UInt64) throws {
        var current = all(directory)
        current[key(server: server, run: run)] = acknowledged
        // Sorted keys (`Value` writes objects so), as before.
        let json = Value.object(current.mapValues { .int(Int64(clamping: $0)) }).description
        try LocalFile.replace(directory + "/" + fileName, with: Data(json.utf8))
    }
}
