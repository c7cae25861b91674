import Foundation
import Testing
@testable import RunLogStore

/// A temporary directory owned by one test.
final class TempDir {
    let path: String
    init(_ name: String = #function) {
        let base = NSTemporaryDirectory() + "runlog-tests-" + UUID().uuidString.prefix(8)
        path = base
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    func sub(_ name: String) -> String { path + "/" + name }
}

extension LogWriter.Configuration {
    /// A configuration for tests: no timers in the way, everything durable on flush.
    static var test: LogWriter.Configuration {
        var c = LogWriter.Configuration()
        c.flushInterval = .seconds(3600)
        c.durability = .none
        return c
    }
}

func readBytes(_ path: String) -> [UInt8] { Array(FileManager.default.contents(atPath: path)!) }
func writeBytes(_ bytes: [UInt8], to path: String) { FileManager.default.createFile(atPath: path, contents: Data(bytes)) }
