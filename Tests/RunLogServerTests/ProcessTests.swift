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

/// Real `runlog server` processes: killed mid-ingest, and two of them on one PostgreSQL.
/// Skipped (with the reason) when the `runlog` binary is not built.
@Suite("Server processes", .serialized)
struct ProcessTests {
    /// SIGKILL a server while a client streams frames into it; start it again on the same
    /// database: every frame it acknowledged is there (and nothing half-applied), and the
    /// client carries on from the acknowledged sequence.
    @Test("a server killed mid-ingest loses no frame it acknowledged", arguments: Backend.allCases)
    func killedMidIngest(_ backend: Backend) async throws {
        let binary = try serverBinary()
        let dir = TempDir()
        let database = try backend.database(in: dir)
        let entity = unique("kill")
        let created = try runProgram(binary, ["server", "create-key", "--entity", entity, "--database", database])
        #expect(created.status == 0, "\(created.stderr)")
        let key = created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(APIKey.isWellFormed(key))

        let rowsPerFrame: Int64 = 500
        let frames = Frames.run(id: "k", count: 300, rowsPerFrame: rowsPerFrame)
        let uri = runPath(entity, "proj", "k")

        for round in 0..<3 {
            let server = try await ServerProcess.start(binary: binary, database: database, logDirectory: dir.path)
            let http = HTTP.connect(port: server.port)
            let (_, ackValue) = try await http.get(uri + "/ack", key: key)
            var ack = UInt64(ackValue["acknowledged"]?.intValue ?? -1)
            if round > 0 {
                // Everything acknowledged before the kill is there, and consistent.
                let (status, run) = try await http.get(uri, key: key)
                #expect(status == .ok)
                #expect(run["frames"] == .int(Int64(ack)))
                #expect(run["history_rows"] == .int(Int64(ack) * rowsPerFrame))
                let (_, h) = try await http.get(uri + "/history?metrics=loss&points=1000000", key: key)
                #expect(h["metrics"]?["loss"]?["steps"]?.int64s == Array(0..<Int64(ack) * rowsPerFrame))
            }
            let maxAcknowledged = Acknowledged(ack)
            // Stream from the acknowledged point; once a random number of frames is in, kill
            // the server within a few milliseconds, while requests are in flight.
            let threshold = min(ack + UInt64.random(in: 10...80), UInt64(frames.count) - 10)
            let killer = Task {
                while maxAcknowledged.value < threshold { try await Task.sleep(for: .milliseconds(1)) }
                try await Task.sleep(for: .microseconds(Int.random(in: 0...3000)))
                server.kill9()
            }
            var failed = false
            while ack < UInt64(frames.count) {
                let slice = frames[Int(ack)..<min(Int(ack) + 2, frames.count)]
                guard let response = try? await http.post(uri + "/frames", key: key, after: ack, body: slice.flatMap(\.bytes)) else {
                    failed = true
                    break
                }
                guard response.0 == .ok else { Issue.record("status \(response.0): \(response.1)"); break }
                ack = UInt64(response.1["acknowledged"]?.intValue ?? 0)
                maxAcknowledged.set(ack)
            }
            #expect(failed, "the server was killed before the stream ended")
            _ = try? await killer.value
            server.kill9()
            await http.close()
            #expect(maxAcknowledged.value <= UInt64(frames.count))
            // The next round checks it all came back.
            let restarted = try await ServerProcess.start(binary: binary, database: database, logDirectory: dir.path)
            let check = HTTP.connect(port: restarted.port)
            let (_, after) = try await check.get(uri + "/ack", key: key)
            #expect(UInt64(after["acknowledged"]?.intValue ?? 0) >= maxAcknowledged.value, "acknowledged \(maxAcknowledged.value) before the kill")
            await check.close()
            restarted.stop()
        }

        // Finish the run and check the whole of it.
        let server = try await ServerProcess.start(binary: binary, database: database, logDirectory: dir.path)
        defer { server.stop() }
        let http = HTTP.connect(port: server.port)
        var ack = UInt64(try await http.get(uri + "/ack", key: key).1["acknowledged"]?.intValue ?? 0)
        while ack < UInt64(frames.count) {
            let slice = frames[Int(ack)..<min(Int(ack) + 10, frames.count)]
            let (status, body) = try await http.post(uri + "/frames", key: key, after: ack, body: slice.flatMap(\.bytes))
            #expect(status == .ok)
            ack = UInt64(body["acknowledged"]?.intValue ?? 0)
        }
        let (_, run) = try await http.get(uri, key: key)
        #expect(run["frames"] == 300)
        #expect(run["history_rows"] == .int(300 * rowsPerFrame))
        await http.close()
    }

    /// Two `runlog server` processes on one PostgreSQL database, clients feeding the same run
    /// through both at once.
    @Test("two server processes on one PostgreSQL ingest the same run without duplicates")
    func twoProcessesOnPostgres() async throws {
        guard let url = Backend.postgresURL else { try Test.cancel(Backend.skipMessage) }
        let binary = try serverBinary()
        let dir = TempDir()
        let entity = unique("two")
        let created = try runProgram(binary, ["server", "create-key", "--entity", entity, "--database", url])
        #expect(created.status == 0, "\(created.stderr)")
        let account = Account(entity: entity, key: created.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        let a = try await ServerProcess.start(binary: binary, database: url, logDirectory: dir.path)
        let b = try await ServerProcess.start(binary: binary, database: url, logDirectory: dir.path)
        defer { a.stop(); b.stop() }
        let frames = Frames.run(id: "both", count: 80, rowsPerFrame: 100)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (server, per) in [(a, 3), (b, 2), (a, 5), (b, 1)] {
                group.addTask {
                    let http = HTTP.connect(port: server.port)
                    defer { Task { await http.close() } }
                    var ack: UInt64 = 0
                    while ack < UInt64(frames.count) {
                        let slice = frames[Int(ack)..<min(Int(ack) + per, frames.count)]
                        let (status, body) = try await http.post(runPath(entity, "proj", "both") + "/frames", key: account.key, after: ack, body: slice.flatMap(\.bytes))
                        #expect(status == .ok || status == .conflict, "\(status) \(body)")
                        let acknowledged = UInt64(body["acknowledged"]?.intValue ?? 0)
                        ack = status == .ok ? max(acknowledged, slice.last!.header.sequence) : acknowledged
                    }
                }
            }
            try await group.waitForAll()
        }
        for server in [a, b] {
            let http = HTTP.connect(port: server.port)
            let (_, run) = try await http.get(runPath(entity, "proj", "both"), key: account.key)
            #expect(run["acknowledged"] == 80)
            #expect(run["frames"] == 80)
            #expect(run["history_rows"] == 8000)
            let (_, h) = try await http.get(runPath(entity, "proj", "both") + "/history?metrics=loss&points=100000", key: account.key)
            #expect(h["metrics"]?["loss"]?["steps"]?.int64s == Array(0..<8000))
            await http.close()
        }
    }
}

final class Acknowledged: @unchecked Sendable {
    private let lock = NSLock()
    private var v: UInt64
    init(_ v: UInt64) { self.v = v }
    func set(_ x: UInt64) { lock.withLock { v = max(v, x) } }
    var value: UInt64 { lock.withLock { v } }
}
