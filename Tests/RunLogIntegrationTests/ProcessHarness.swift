#if canImport(Glibc)
import Glibc
#endif
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing
import RunLogStore

// Helpers for the integration suites that drive real `runlog` processes (sync, server, SDK
// children): a seeded random generator, child processes whose stdout is read line by line,
// a `runlog server` on a fixed port that can be SIGKILLed and restarted, and JSON over HTTP.

// MARK: Randomness

/// A small, seedable generator, so a failing trial can be replayed.
typealias SeededRandom = SplitMix64

extension SplitMix64 {
    /// `RUNLOG_TEST_SEED` when set (to replay a failure), else a fresh random seed. Printed.
    static func seed(for test: String) -> UInt64 {
        let seed = ProcessInfo.processInfo.environment["RUNLOG_TEST_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 0...UInt64.max)
        print("[\(test)] seed \(seed) (replay with RUNLOG_TEST_SEED=\(seed))")
        return seed
    }
}

// MARK: Waiting

/// Polls `condition` every 20 ms until it holds or `timeout` seconds pass; returns whether it held.
@discardableResult
func poll(timeout: Double, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while true {
        if condition() { return true }
        if Date() > deadline { return false }
        usleep(20_000)
    }
}

// MARK: Child processes

/// A child process whose stdout is collected line by line (and parsed as JSON where it is)
/// and whose stderr goes to a file.
final class ChildProcess: @unchecked Sendable {
    let process = Process()
    let command: String
    let stderrPath: String
    private let lock = NSLock()
    private var _lines: [String] = []
    private var _objects: [[String: Any]] = []
    private var _stdoutClosed = false
    private let onLine: (@Sendable ([String: Any]) -> Void)?

    /// Starts `binary arguments`; `environment` is merged over this process's environment.
    init(_ binary: String, _ arguments: [String], environment: [String: String] = [:], stderrPath: String,
         onLine: (@Sendable ([String: Any]) -> Void)? = nil) throws {
        command = ([binary] + arguments).joined(separator: " ")
        self.stderrPath = stderrPath
        self.onLine = onLine
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        let out = Pipe()
        process.standardOutput = out
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: stderrPath)
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let handle = out.fileHandleForReading
        Thread.detachNewThread { [self] in
            var buffer = [UInt8]()
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                buffer += chunk
                while let nl = buffer.firstIndex(of: 0x0A) {
                    let line = String(decoding: buffer[..<nl], as: UTF8.self)
                    buffer.removeSubrange(...nl)
                    let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
                    lock.withLock {
                        _lines.append(line)
                        if let object { _objects.append(object) }
                    }
                    if let object { self.onLine?(object) }
                }
            }
            // A partial last line (cut by a kill) reports nothing.
            lock.withLock { _stdoutClosed = true }
        }
    }

    var pid: Int32 { process.processIdentifier }
    var lines: [String] { lock.withLock { _lines } }
    var objects: [[String: Any]] { lock.withLock { _objects } }
    var isRunning: Bool { process.isRunning }
    var stderrText: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    /// Waits for a JSON line satisfying `predicate`; returns it, or nil after `timeout` seconds
    /// or when the process's stdout closed without one.
    func waitForObject(timeout: Double, _ predicate: ([String: Any]) -> Bool) -> [String: Any]? {
        var found: [String: Any]?
        poll(timeout: timeout) {
            lock.withLock {
                found = _objects.first(where: predicate)
                return found != nil || _stdoutClosed
            }
        }
        return found
    }

    /// Waits for a line of stdout satisfying `predicate` (nil on timeout, or when stdout closed without one).
    func waitForLine(timeout: Double, _ predicate: (String) -> Bool) -> String? {
        var found: String?
        poll(timeout: timeout) {
            lock.withLock {
                found = _lines.first(where: predicate)
                return found != nil || _stdoutClosed
            }
        }
        return found
    }

    func signal(_ sig: Int32) { kill(process.processIdentifier, sig) }

    /// Waits for the process to end (SIGKILLing it after `timeout` seconds) and for its stdout
    /// to be read to the end. Returns false when it had to be killed.
    @discardableResult
    func wait(timeout: Double) -> Bool {
        let ended = poll(timeout: timeout) { !process.isRunning }
        if !ended { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        poll(timeout: 10) { lock.withLock { _stdoutClosed } }
        return ended
    }

    var terminationStatus: Int32 { process.terminationStatus }
    var terminatedBySignal: Bool { process.terminationReason == .uncaughtSignal }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}

/// Runs a program to the end (SIGKILLed after `timeout` seconds); its status and output.
func runToEnd(_ binary: String, _ arguments: [String], environment: [String: String] = [:], timeout: Double = 120,
              scratch: String) throws -> (status: Int32, stdout: String, stderr: String, timedOut: Bool) {
    let child = try ChildProcess(binary, arguments, environment: environment,
                                 stderrPath: scratch + "/stderr-\(UUID().uuidString.prefix(8)).txt")
    let ended = child.wait(timeout: timeout)
    return (child.terminationStatus, child.lines.joined(separator: "\n"), child.stderrText, !ended)
}

// MARK: Ports

/// A TCP port on 127.0.0.1 that was free a moment ago.
func freeLocalPort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXFailure(call: "socket") }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = 0
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard bound == 0 else { throw POSIXFailure(call: "bind") }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
    return UInt16(bigEndian: addr.sin_port)
}

struct POSIXFailure: Error, CustomStringConvertible {
    var call: String
    var code = errno
    var description: String { "\(call): \(String(cString: strerror(code)))" }
}

// MARK: The server

/// A `runlog server` on a SQLite file and a fixed port, which the tests SIGKILL and restart.
final class RestartableServer: @unchecked Sendable {
    let binary: String
    let database: String
    let scratch: String
    let port: UInt16
    private(set) var child: ChildProcess?
    private(set) var starts = 0

    init(binary: String, database: String, scratch: String) throws {
        self.binary = binary
        self.database = database
        self.scratch = scratch
        port = try freeLocalPort()
    }

    var baseURL: String { "http://127.0.0.1:\(port)" }

    /// Creates an API key for `entity` (the server need not run).
    func createKey(entity: String) throws -> String {
        let r = try runToEnd(binary, ["server", "create-key", "--entity", entity, "--database", database], timeout: 60, scratch: scratch)
        guard r.status == 0 else { throw HarnessError("create-key failed (\(r.status)): \(r.stderr)") }
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Starts the server and waits for its "listening" line. The port of a server just
    /// SIGKILLed may take a moment to be free again: a start that fails is retried.
    func start(timeout: Double = 60) throws {
        let deadline = Date().addingTimeInterval(timeout)
        var lastError = ""
        while Date() < deadline {
            starts += 1
            let c = try ChildProcess(binary, ["server", "--database", database, "--host", "127.0.0.1", "--port", String(port)],
                                     stderrPath: scratch + "/server-\(starts).log")
            if c.waitForLine(timeout: max(1, deadline.timeIntervalSinceNow), { $0.contains("listening on http://") }) != nil {
                child = c
                return
            }
            c.wait(timeout: 5)
            lastError = c.stderrText
            usleep(200_000)
        }
        throw HarnessError("the server did not start on port \(port): \(lastError)")
    }

    func kill9() {
        guard let child else { return }
        child.signal(SIGKILL)
        child.wait(timeout: 30)
        self.child = nil
    }

    func stop() {
        guard let child else { return }
        child.signal(SIGTERM)
        if !child.wait(timeout: 20) { Issue.record("the server did not stop on SIGTERM within 20 s") }
        self.child = nil
    }

    deinit { if let child, child.isRunning { child.signal(SIGKILL) } }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

// MARK: HTTP

/// GET `url` with the key; the status and the body parsed as JSON (nil when it is not).
func getJSON(_ url: String, key: String, timeout: Double = 60) async throws -> (status: Int, json: Any?) {
    var request = URLRequest(url: URL(string: url)!)
    request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization")
    request.timeoutInterval = timeout
    let (data, response) = try await URLSession.shared.data(for: request)
    let status = (response as? HTTPURLResponse)?.statusCode ?? -1
    return (status, try? JSONSerialization.jsonObject(with: data))
}

extension Dictionary where Key == String, Value == Any {
    func int(_ key: String) -> Int64? { (self[key] as? NSNumber)?.int64Value }
    func string(_ key: String) -> String? { self[key] as? String }
}
