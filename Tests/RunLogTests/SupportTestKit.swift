import Foundation
import RunLogStore

/// Helpers shared by the Support tests.
enum SupportTestKit {
    /// The file `relativePath` under the `Fixtures/` folder found by walking up from this file.
    static func fixture(_ relativePath: String, filePath: String = #filePath) throws -> URL {
        var directory = URL(fileURLWithPath: filePath).deletingLastPathComponent()
        while directory.path != "/" {
            let candidate = directory.appendingPathComponent("Fixtures")
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate.path, isDirectory: &isDirectory), isDirectory.boolValue {
                return candidate.appendingPathComponent(relativePath)
            }
            directory = directory.deletingLastPathComponent()
        }
        throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: "Fixtures/" + relativePath])
    }

    static func fixtureText(_ relativePath: String, filePath: String = #filePath) throws -> String {
        try String(contentsOf: fixture(relativePath, filePath: filePath), encoding: .utf8)
    }

    /// A new empty directory under the system's temporary directory.
    static func makeTemporaryDirectory(_ prefix: String = "support-test") throws -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url.resolvingSymlinksInPath()
    }
}

/// A deterministic random number generator for reproducible draws in tests.
typealias SupportSeededRNG = SplitMix64
