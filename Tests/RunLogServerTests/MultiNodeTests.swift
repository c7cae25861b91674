import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import RunLogStore
import Testing

@testable import RunLogServer

/// Two server instances on one database, each with its own store (its own connection pool
/// or SQLite connections), ingesting the same run at once: the run's row lock serializes
/// them, so every frame is stored once and the acknowledged sequence only grows.
///
/// The instances run in this process (two applications, two stores); `ProcessTests` does the
/// same with two `runlog server` processes when the binary is built.
@Suite("Several server instances on one database")
struct MultiNodeTests {
    @Test("two instances ingesting the same run store every frame once", arguments: Backend.allCases)
    func twoInstances(_ backend: Backend) async throws {
        let dir = TempDir()
        let database = try backend.database(in: dir)
        let frames = Frames.run(id: "shared", count: 60, rowsPerFrame: 50)
        try await withServerStore(database: database, logger: testLogger()) { storeA in
            let account = try await makeAccount(storeA)
            try await withServerStore(database: database, logger: testLogger()) { storeB in
                var config = ServerConfiguration(database: database, logger: testLogger())
                config.filesDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("runlog-multinode-files").path
                let appA = RunLogServerApp.makeApplication(store: storeA, configuration: config)
                let appB = RunLogServerApp.makeApplication(store: storeB, configuration: config)
                try await appA.test(.router) { a in
                    try await appB.test(.router) { b in
                        try await withThrowingTaskGroup(of: Int.self) { group in
                            group.addTask { try await feed(a, account, "shared", frames, perRequest: 3) }
                            group.addTask { try await feed(b, account, "shared", frames, perRequest: 2) }
                            // Meanwhile each node also takes a run of its own.
                            group.addTask { try await feed(a, account, "only-a", Frames.run(id: "only-a", count: 20, rowsPerFrame: 10), perRequest: 1) }
                            group.addTask { try await feed(b, account, "only-b", Frames.run(id: "only-b", count: 20, rowsPerFrame: 10), perRequest: 4) }
                            var requests = 0
                            for try await n in group { requests += n }
                            #expect(requests > 0)
                        }
                        for client in [a, b] {
                            let run = try json(try await get(client, runPath(account.entity, "proj", "shared"), key: account.key))
                            #expect(run["acknowledged"] == 60)
                            #expect(run["frames"] == 60)
                            #expect(run["history_rows"] == 3000)
                            let h = try json(try await get(client, runPath(account.entity, "proj", "shared") + "/history?metrics=loss&points=100000", key: account.key))
                            #expect(h["metrics"]?["loss"]?["steps"]?.int64s == Array(0..<3000))
                            for other in ["only-a", "only-b"] {
                                let r = try json(try await get(client, runPath(account.entity, "proj", other), key: account.key))
                                #expect(r["history_rows"] == 200)
                                #expect(r["frames"] == 20)
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Sends `frames` (sequences 1…n) as a client would: `perRequest` at a time, chaining
/// `X-RunLog-After`, and on 409 or a skip resuming from the acknowledged sequence.
/// Returns the number of requests.
func feed(_ client: any TestClientProtocol, _ account: Account, _ run: String, _ frames: [FrameCodec.StoredFrame], perRequest: Int) async throws -> Int {
    var next = 0
    var after: UInt64 = 0
    var requests = 0
    while next < frames.count {
        let slice = Array(frames[next..<min(next + perRequest, frames.count)])
        let r = try await post(client, account.entity, "proj", run, after: after, key: account.key, Frames.body(slice))
        requests += 1
        guard r.status == .ok || r.status == .conflict else {
            Issue.record("unexpected \(r.status): \(String(buffer: r.body))")
            return requests
        }
        let ack = UInt64(try json(r)["acknowledged"]?.intValue ?? 0)
        if r.status == .ok { #expect(ack >= slice.last!.header.sequence) }
        after = max(ack, r.status == .ok ? slice.last!.header.sequence : ack)
        next = Int(after)  // sequence s is frames[s - 1]
    }
    return requests
}
