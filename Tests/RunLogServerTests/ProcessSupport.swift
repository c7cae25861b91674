import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import RunLogStore
import Testing

@testable import RunLogServer

#if canImport(Glibc)
import Glibc
#endif

/// Runs a program to completion with a time limit; returns its exit status and output.
func runProgram(
    _ path: String, _ arguments: [String], timeout: Duration = .seconds(120), environment: [String: String]? = nil, directory: String? = nil
) throws -> (status: Int32, stdout: String, stderr: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = arguments
    if let directory { p.currentDirectoryURL = URL(fileURLWithPath: directory) }
    if let environment { p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new } }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = FileHandle.nullDevice
    try p.run()
    // Drain both pipes on their own threads so a chatty program cannot block on a full pipe.
    let outData = DataBox(), errData = DataBox()
    let t1 = Thread { outData.data = out.fileHandleForReading.readDataToEndOfFile() }
    let t2 = Thread { errData.data = err.fileHandleForReading.readDataToEndOfFile() }
    t1.start(); t2.start()
    let deadline = ContinuousClock.now + timeout
    while p.isRunning {
        if ContinuousClock.now > deadline {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            throw ProgramTimeout(command: ([path] + arguments).joined(separator: " "))
        }
        usleep(20_000)
    }
    p.waitUntilExit()
    while !outData.done || !errData.done { usleep(5_000) }
    return (p.terminationStatus, String(decoding: outData.data, as: UTF8.self), String(decoding: errData.data, as: UTF8.self))
}

struct ProgramTimeout: Error, CustomStringConvertible {
    var command: String
    var description: String { "timed out: \(command)" }
}

final class DataBox: @unchecked Sendable {
    private let lock = NSLock()
    private var _data = Data()
    private var _done = false
    var data: Data {
        get { lock.withLock { _data } }
        set { lock.withLock { _data = newValue; _done = true } }
    }
    var done: Bool { lock.withLock { _done } }
}

/// The `runlog` executable with the `server` command: `RUNLOG_BINARY`, or `runlog` beside
/// the test bundle (what `swift build` makes). Cancels (skips) the test when neither has it.
func serverBinary() throws -> String {
    var candidates: [String] = []
    if let env = ProcessInfo.processInfo.environment["RUNLOG_BINARY"], !env.isEmpty { candidates.append(env) }
    let argv0 = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    candidates.append(argv0.deletingLastPathComponent().appendingPathComponent("runlog").path)
    candidates.append(Bundle.main.bundleURL.appendingPathComponent("runlog").path)
    candidates.append(Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("runlog").path)
    for c in candidates where FileManager.default.isExecutableFile(atPath: c) {
        if let r = try? runProgram(c, ["server", "--help"], timeout: .seconds(30)), r.status == 0, r.stdout.contains("create-key") {
            return c
        }
    }
    try Test.cancel("no runlog binary with the server command (tried \(candidates)); build it with `swift build` or set RUNLOG_BINARY")
}

/// A `runlog server` process.
final class ServerProcess: @unchecked Sendable {
    let process: Process
    let port: Int
    let log: String

    private init(process: Process, port: Int, log: String) {
        self.process = process
        self.port = port
        self.log = log
    }

    /// Starts `runlog server` on a free port and waits for its "listening" line.
    static func start(binary: String, database: String, logDirectory: String, extra: [String] = []) async throws -> ServerProcess {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = ["server", "--database", database, "--host", "127.0.0.1", "--port", "0", "--files-dir", logDirectory + "/files"] + extra
        let logPath = logDirectory + "/server-\(UUID().uuidString.prefix(8)).log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle(forWritingAtPath: logPath)
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let port: Int = try await withCheckedThrowingContinuation { (cont: CheckedContinuation<Int, any Error>) in
            let t = Thread {
                var buffer = ""
                while true {
                    let chunk = out.fileHandleForReading.availableData
                    if chunk.isEmpty {
                        cont.resume(throwing: ServerStartError(log: (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""))
                        return
                    }
                    buffer += String(decoding: chunk, as: UTF8.self)
                    if let range = buffer.range(of: #"listening on http://[^:]+:(\d+)"#, options: .regularExpression) {
                        let line = buffer[range]
                        let port = Int(line.split(separator: ":").last!)!
                        cont.resume(returning: port)
                        // Keep draining so the server never blocks on a full pipe.
                        while !out.fileHandleForReading.availableData.isEmpty {}
                        return
                    }
                }
            }
            t.start()
        }
        return ServerProcess(process: p, port: port, log: logPath)
    }

    func kill9() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}

struct ServerStartError: Error, CustomStringConvertible {
    var log: String
    var description: String { "the server exited before listening:\n\(log)" }
}

/// A connection to a server process, one request at a time.
struct HTTP: Sendable {
    let client: TestClient

    static func connect(port: Int) -> HTTP {
        let c = TestClient(host: "127.0.0.1", port: port, configuration: .init(timeout: .seconds(30)))
        c.connect()
        return HTTP(client: c)
    }

    func close() async { try? await client.shutdown() }

    func post(_ uri: String, key: String, after: UInt64, body: [UInt8]) async throws -> (HTTPResponse.Status, Value) {
        let r = try await client.post(uri, headers: authHeaders(key, after: after), body: ByteBuffer(bytes: body))
        return (r.status, (try? JSONParser.parse(String(buffer: r.body ?? ByteBuffer()))) ?? .null)
    }

    func get(_ uri: String, key: String) async throws -> (HTTPResponse.Status, Value) {
        let r = try await client.get(uri, headers: [.authorization: "Bearer \(key)"])
        return (r.status, (try? JSONParser.parse(String(buffer: r.body ?? ByteBuffer()))) ?? .null)
    }
}
