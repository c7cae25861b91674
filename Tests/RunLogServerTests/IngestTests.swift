import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import RunLogStore
import Testing

@testable import RunLogServer

/// Native ingest against both backends: idempotency, the `X-RunLog-After` chain, bad
/// frames stored nowhere, limits and authorization.
@Suite("Ingest")
struct IngestTests {
    @Test("the same frames twice are stored once", arguments: Backend.allCases)
    func idempotent(_ backend: Backend) async throws {
        try await withFixture(backend) { fx, client in
            let frames = Frames.run(id: "r1", count: 4, rowsPerFrame: 10)
            var r = try await post(client, fx, "r1", after: 0, Array(frames[0..<3]))
            #expect(r.status == .ok)
            #expect(try json(r) == ["acknowledged": 3, "stored": 3, "skipped": 0])

            r = try await post(client, fx, "r1", after: 0, Array(frames[0..<3]))
            #expect(r.status == .ok)
            #expect(try json(r) == ["acknowledged": 3, "stored": 0, "skipped": 3])

            // Overlapping resend: frames 2–4 after 1: two already held, one new.
            r = try await post(client, fx, "r1", after: 1, Array(frames[1..<4]))
            #expect(try json(r) == ["acknowledged": 4, "stored": 1, "skipped": 2])

            let run = try await runJSON(client, fx, "r1")
            #expect(run["frames"] == 4)
            #expect(run["history_rows"] == 40)
            #expect(run["acknowledged"] == 4)
            #expect(run["last_step"] == 39)
            let h = try await history(client, fx, "r1", query: "&points=1000")
            #expect(h["metrics"]?["loss"]?["count"] == 40)
            #expect(h["metrics"]?["loss"]?["steps"]?.int64s == Array(0..<40))

            let ack = try await get(client, runPath(fx.account.entity, "proj", "r1") + "/ack", key: fx.account.key)
            #expect(try json(ack) == ["acknowledged": 4])
            let unknown = try await get(client, runPath(fx.account.entity, "proj", "never") + "/ack", key: fx.account.key)
            #expect(try json(unknown) == ["acknowledged": 0])
        }
    }

    @Test("X-RunLog-After beyond the acknowledged sequence is 409 and stores nothing", arguments: Backend.allCases)
    func gap(_ backend: Backend) async throws {
        try await withFixture(backend) { fx, client in
            let frames = Frames.run(id: "g", count: 5, rowsPerFrame: 5)
            var r = try await post(client, fx, "g", after: 2, Array(frames[2..<3]))
            #expect(r.status == .conflict)
            #expect(try json(r)["acknowledged"] == 0)
            let missing = try await get(client, runPath(fx.account.entity, "proj", "g"), key: fx.account.key)
            #expect(missing.status == .notFound)

            r = try await post(client, fx, "g", after: 0, Array(frames[0..<2]))
            #expect(try json(r)["acknowledged"] == 2)
            r = try await post(client, fx, "g", after: 3, Array(frames[3..<5]))
            #expect(r.status == .conflict)
            #expect(try json(r)["acknowledged"] == 2)
            // The client resends from after 2.
            r = try await post(client, fx, "g", after: 2, Array(frames[2..<5]))
            #expect(try json(r) == ["acknowledged": 5, "stored": 3, "skipped": 0])
            #expect(try await runJSON(client, fx, "g")["history_rows"] == 25)
        }
    }

    /// Many requests at once (SQLite commits those queued together in one transaction, a
    /// savepoint each): each good one is stored whole, and a gap or a bad frame fails alone.
    @Test("concurrent requests are stored together, and fail alone", arguments: Backend.allCases)
    func concurrent(_ backend: Backend) async throws {
        try await withFixture(backend) { fx, client in
            let bad = try malformedFrame(payload: [0x02] + [UInt8](repeating: 0xFF, count: 15), sequence: 2)
            let statuses = try await withThrowingTaskGroup(of: (String, HTTPResponse.Status).self) { group in
                for i in 0..<24 {
                    group.addTask {
                        let id = "c\(i)"
                        return (id, try await post(client, fx, id, after: 0, Frames.run(id: id, count: 2, rowsPerFrame: 7)).status)
                    }
                }
                group.addTask {
                    ("gap", try await post(client, fx, "gap", after: 5, Array(Frames.run(id: "gap", count: 7, rowsPerFrame: 3)[5...])).status)
                }
                group.addTask {
                    let good = Frames.run(id: "bad", count: 1, rowsPerFrame: 3)[0].bytes
                    return ("bad", try await post(client, fx.account.entity, "proj", "bad", after: 0, key: fx.account.key, Frames.body(good + bad)).status)
                }
                var out: [String: HTTPResponse.Status] = [:]
                for try await (id, status) in group { out[id] = status }
                return out
            }
            for i in 0..<24 {
                #expect(statuses["c\(i)"] == .ok)
                let run = try await runJSON(client, fx, "c\(i)")
                #expect(run["history_rows"] == 14 && run["acknowledged"] == 2 && run["frames"] == 2, "c\(i): \(run)")
            }
            #expect(statuses["gap"] == .conflict)
            #expect(statuses["bad"] == .badRequest)
            for id in ["gap", "bad"] {
                #expect(try await get(client, runPath(fx.account.entity, "proj", id), key: fx.account.key).status == .notFound)
            }
        }
    }

    /// Every way a body can be damaged: the request is refused and the run does not exist.
    @Test("damaged bodies are 400 and store nothing", arguments: Backend.allCases)
    func damaged(_ backend: Backend) async throws {
        try await withFixture(backend) { fx, client in
            let frames = Frames.run(id: "d", count: 3, rowsPerFrame: 20)
            let good = frames.flatMap(\.bytes)
            let second = frames[0].bytes.count
            var cases: [(String, [UInt8])] = []
            var payloadFlip = good
            payloadFlip[second + LogFormat.frameHeaderSize + 5] ^= 0x01
            cases.append(("payload checksum flip in frame 2", payloadFlip))
            var headerFlip = good
            headerFlip[second + 20] ^= 0x80
            cases.append(("header bit flip in frame 2", headerFlip))
            cases.append(("truncated in frame 3's payload", Array(good.dropLast(7))))
            cases.append(("truncated in frame 2's header", Array(good.prefix(second + 30))))
            cases.append(("garbage after the frames", good + [1, 2, 3]))
            cases.append(("not frames at all", Array("hello, world".utf8)))
            for (name, body) in cases {
                let r = try await post(client, fx.account.entity, "proj", "d", after: 0, key: fx.account.key, Frames.body(body))
                #expect(r.status == .badRequest, "\(name): \(r.status) \(String(buffer: r.body))")
                #expect(try json(r)["error"]?.stringValue != nil)
            }
            let run = try await get(client, runPath(fx.account.entity, "proj", "d"), key: fx.account.key)
            #expect(run.status == .notFound)

            // A frame whose records do not decode (its checksums match): also 400.
            var bad = [UInt8](repeating: 0xFF, count: 16)
            bad[0] = 0x02
            let malformed = try malformedFrame(payload: bad, sequence: 1)
            let r = try await post(client, fx.account.entity, "proj", "d", after: 0, key: fx.account.key, Frames.body(malformed))
            #expect(r.status == .badRequest)
            // Good frames, then one that does not decode: the good ones are rolled back too.
            let mixed = frames[0].bytes + frames[1].bytes + (try malformedFrame(payload: bad, sequence: 3))
            let m = try await post(client, fx.account.entity, "proj", "d", after: 0, key: fx.account.key, Frames.body(mixed))
            #expect(m.status == .badRequest, "\(String(buffer: m.body))")

            // Sequences must increase within a body; an empty body and a missing header are refused.
            let swapped = [frames[1], frames[0]]
            #expect(try await post(client, fx, "d", after: 0, swapped).status == .badRequest)
            #expect(try await post(client, fx.account.entity, "proj", "d", after: 0, key: fx.account.key, ByteBuffer()).status == .badRequest)
            #expect(try await post(client, fx.account.entity, "proj", "d", after: nil, key: fx.account.key, Frames.body(frames)).status == .badRequest)
            #expect(try await get(client, runPath(fx.account.entity, "proj", "d"), key: fx.account.key).status == .notFound)
        }
    }

    @Test("oversize requests and frames are 413 and store nothing", arguments: Backend.allCases)
    func oversize(_ backend: Backend) async throws {
        try await withFixture(backend, maxRequestBytes: 16 * 1024) { fx, client in
            // A body over the server's limit.
            let big = Frames.frame(Frames.rows(0..<3000, loss: { _ in Double.random(in: 0..<1) }), seq: 1)
            #expect(big.bytes.count > 16 * 1024)
            var r = try await post(client, fx, "o", after: 0, [big])
            #expect(r.status == .contentTooLarge, "\(String(buffer: r.body))")

            // A frame header (checksum valid) that claims more than the format allows.
            var header = Array(Frames.frame(Frames.rows(0..<2), seq: 1).bytes.prefix(LogFormat.frameHeaderSize))
            let claimed = UInt32(LogFormat.maxStoredPayload + 1)
            withUnsafeBytes(of: claimed.littleEndian) { for i in 0..<4 { header[4 + i] = $0[i] } }
            let crc = CRC32C.checksum(Array(header[0..<48]))
            withUnsafeBytes(of: crc.littleEndian) { for i in 0..<4 { header[48 + i] = $0[i] } }
            r = try await post(client, fx.account.entity, "proj", "o", after: 0, key: fx.account.key, Frames.body(header + [0, 0, 0, 0]))
            #expect(r.status == .contentTooLarge, "\(String(buffer: r.body))")
            #expect(try await get(client, runPath(fx.account.entity, "proj", "o"), key: fx.account.key).status == .notFound)
        }
    }

    @Test("writes need a key of the entity: 401 without one, 403 for another entity's", arguments: Backend.allCases)
    func authorization(_ backend: Backend) async throws {
        try await withFixture(backend) { fx, client in
            let frames = Frames.run(id: "a", count: 1, rowsPerFrame: 5)
            let body = Frames.body(frames)
            let e = fx.account.entity
            #expect(try await post(client, e, "proj", "a", after: 0, key: nil, body).status == .unauthorized)
            #expect(try await post(client, e, "proj", "a", after: 0, key: "not-a-key", body).status == .unauthorized)
            #expect(try await post(client, e, "proj", "a", after: 0, key: APIKey.generate(), body).status == .unauthorized)
            // Another entity's key may not write here, even to create the run.
            #expect(try await post(client, e, "proj", "a", after: 0, key: fx.other.key, body).status == .forbidden)
            // Nor may this key write an entity that does not exist.
            #expect(try await post(client, unique("nobody"), "proj", "a", after: 0, key: fx.account.key, body).status == .forbidden)
            #expect(try await get(client, runPath(e, "proj", "a"), key: fx.account.key).status == .notFound)

            // HTTP Basic with the key as password, as the wandb client sends it.
            var h = authHeaders(nil, after: 0)
            h[.authorization] = "Basic " + Data("api:\(fx.account.key)".utf8).base64EncodedString()
            let r = try await client.execute(uri: runPath(e, "proj", "a") + "/frames", method: .post, headers: h, body: body)
            #expect(r.status == .ok)
        }
    }

    /// A team entity: every member's key may write it.
    @Test("team members write the team's entity", arguments: Backend.allCases)
    func team(_ backend: Backend) async throws {
        try await withFixture(backend) { fx, client in
            let team = unique("team")
            let alice = try await makeAccount(fx.store, entity: team, user: unique("alice"))
            let bob = try await makeAccount(fx.store, entity: team, user: unique("bob"))
            let frames = Frames.run(id: "t", count: 2, rowsPerFrame: 3)
            #expect(try await post(client, team, "proj", "t", after: 0, key: alice.key, Frames.body([frames[0]])).status == .ok)
            #expect(try await post(client, team, "proj", "t", after: 1, key: bob.key, Frames.body([frames[1]])).status == .ok)
            #expect(try await post(client, team, "proj", "t", after: 2, key: fx.account.key, Frames.body([frames[1]])).status == .forbidden)
            let entities = try json(try await get(client, "/api/v1/entities", key: alice.key))
            let names = Set((entities.arrayValue ?? []).compactMap { $0["name"]?.stringValue })
            #expect(names.contains(team))
        }
    }
}

/// A frame with a checked header and payload whose payload is not valid records.
func malformedFrame(payload: [UInt8], sequence: UInt64) throws -> [UInt8] {
    var h = [UInt8]()
    func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { h += $0 } }
    func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { h += $0 } }
    h += LogFormat.frameMagic
    u32(UInt32(payload.count))
    u32(UInt32(payload.count))
    u32(1)
    u64(sequence)
    u64(0)
    u64(0)
    h += [0, LogFormat.FrameFlags.hasState.rawValue, 0, 0]
    u32(CRC32C.checksum(payload))
    u32(CRC32C.checksum(h))
    return h + payload
}
