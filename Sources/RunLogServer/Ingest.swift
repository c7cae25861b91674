import Dispatch
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import RunLogStore
import Synchronization

/// Native ingest: `POST /api/v1/runs/{entity}/{project}/{run}/frames` (see `PROTOCOL.md`).
enum Ingest {
    static let afterHeader = HTTPField.Name("X-RunLog-After")!
    static let contentType = "application/x-runlog-frames"

    static func register(on router: Router<BasicRequestContext>, server: ServerContext) {
        router.post("/api/v1/runs/:entity/:project/:run/frames") { request, context in
            await Responses.guarded(server.logger) {
                let key = RunKey(entity: try context.name("entity"), project: try context.name("project"), run: try context.name("run"))
                _ = try await server.requireWrite(request, entity: key.entity)
                guard let afterText = request.headers[afterHeader], let after = UInt64(afterText.trimmingCharacters(in: .whitespaces)) else {
                    throw ServerError(.badRequest, "X-RunLog-After (the sequence before the body's first frame, 0 at the start) is required")
                }
                if let length = request.headers[.contentLength].flatMap(Int.init), length > server.configuration.maxRequestBytes {
                    throw ServerError(.tooLarge, "request body of \(length) bytes is over the limit of \(server.configuration.maxRequestBytes)")
                }
                let body = try await request.body.collect(upTo: server.configuration.maxRequestBytes)
                let frames = try split(Array(body.readableBytesView))
                switch try await ingest(frames, into: server.store, key, after: after) {
                case .stored(let ack, let stored, let skipped):
                    return Responses.json("{\"acknowledged\":\(ack),\"stored\":\(stored),\"skipped\":\(skipped)}")
                case .gap(let ack):
                    return Responses.json(
                        "{\"acknowledged\":\(ack),\"error\":\"X-RunLog-After \(after) is beyond the acknowledged sequence \(ack): resend from after it\"}",
                        status: .conflict)
                }
            }
        }

        router.get("/api/v1/runs/:entity/:project/:run/ack") { request, context in
            await Responses.guarded(server.logger) {
                let key = RunKey(entity: try context.name("entity"), project: try context.name("project"), run: try context.name("run"))
                try await server.requireRead(request, entity: key.entity)
                return Responses.json("{\"acknowledged\":\(try await server.store.acknowledged(key))}")
            }
        }
    }

    /// Splits a request body into frames and checks them: sizes, header and payload
    /// checksums, increasing sequences.
    ///
    /// - Throws: 400 for a bad or truncated frame, sequences that do not increase, or an
    ///   empty body; 413 for a frame whose (checked) header claims more than the format allows.
    static func split(_ bytes: [UInt8]) throws(ServerError) -> [FrameCodec.StoredFrame] {
        guard !bytes.isEmpty else { throw ServerError(.badRequest, "empty body: send one or more frames") }
        try checkSizes(bytes)
        let stored: [FrameCodec.StoredFrame]
        do { stored = try FrameCodec.split(bytes) } catch {
            throw ServerError(.badRequest, "bad frame: \(error.message)\(error.offset.map { " at byte \($0) of the body" } ?? "")", underlying: error)
        }
        var previous: UInt64?
        for f in stored {
            if let previous, f.header.sequence <= previous {
                throw ServerError(.badRequest, "frame sequences must increase: \(f.header.sequence) follows \(previous)")
            }
            previous = f.header.sequence
        }
        return stored
    }

    /// Decodes one checked frame; 400 when its records do not decode.
    static func decode(_ frame: FrameCodec.StoredFrame) -> Result<PreparedFrame, ServerError> {
        do { return .success(try PreparedFrame.prepare(frame)) } catch {
            return .failure(ServerError(.badRequest, "bad frame \(frame.header.sequence): \(error.message)", underlying: error))
        }
    }

    /// Stores checked frames: decodes them all first (one task per core for a large body),
    /// then hands the request to the store. Decoding before the store's transaction begins
    /// keeps the single writer busy only with writing, so that the requests of concurrent
    /// syncs decode in parallel while another request commits (and can share its commit).
    static func ingest(_ frames: [FrameCodec.StoredFrame], into store: any ServerStore, _ key: RunKey, after: UInt64) async throws -> IngestResult {
        let feed = FrameFeed(frames.map(\.header.sequence))
        let decoders = max(1, min(ProcessInfo.processInfo.activeProcessorCount, frames.count))
        if decoders == 1 {
            while let i = feed.claim() { feed.fill(i, decode(frames[i])) }
        } else {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<decoders {
                    group.addTask {
                        while let i = feed.claim() {
                            feed.fill(i, Task.isCancelled ? .failure(ServerError(.badRequest, "request cancelled")) : decode(frames[i]))
                        }
                    }
                }
            }
        }
        return try await store.ingest(key, after: after, frames: feed)
    }

    /// Checks and decodes a whole body before storing (for tools and benchmarks).
    static func prepare(_ bytes: [UInt8]) throws(ServerError) -> FrameFeed {
        let frames = try split(bytes)
        return FrameFeed(decoded: try frames.map { f throws(ServerError) in try decode(f).get() })
    }

    /// Walks the frame headers: one whose magic and header checksum check but whose lengths
    /// are over the format's limits is "too large" (413) rather than damaged (400).
    static func checkSizes(_ b: [UInt8]) throws(ServerError) {
        var pos = 0
        let h = LogFormat.frameHeaderSize
        while b.count - pos >= h {
            guard b[pos] == 0x52, b[pos + 1] == 0x4C, b[pos + 2] == 0x46, b[pos + 3] == 0x52 else { return }
            let crc = b.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[pos..<pos + 48])) }
            guard crc == le32(b, pos + 48) else { return }
            let stored = Int(le32(b, pos + 4)), raw = Int(le32(b, pos + 8))
            if stored > LogFormat.maxStoredPayload || raw > LogFormat.maxRawPayload {
                throw ServerError(.tooLarge, "frame at byte \(pos) is \(stored) bytes stored, \(raw) raw: over the format's limits")
            }
            pos += h + stored
        }
    }

    private static func le32(_ b: [UInt8], _ o: Int) -> UInt32 {
        UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24
    }
}

/// A request's frames, filled in as they are decoded and taken in order by the store's
/// transaction: ``get(_:)`` blocks (for a database thread), ``value(_:)`` suspends.
final class FrameFeed: Sendable {
    let sequences: [UInt64]
    private struct State {
        var slots: [Result<PreparedFrame, ServerError>?]
        var claimed = 0
        var waiters: [Int: [CheckedContinuation<Void, Never>]] = [:]
        var blocked: [Int: [DispatchSemaphore]] = [:]
    }
    private let state: Mutex<State>

    var count: Int { sequences.count }

    init(_ sequences: [UInt64]) {
        self.sequences = sequences
        state = Mutex(State(slots: Array(repeating: nil, count: sequences.count)))
    }

    /// A feed whose frames are all decoded.
    init(decoded: [PreparedFrame]) {
        sequences = decoded.map(\.sequence)
        state = Mutex(State(slots: decoded.map { .success($0) }, claimed: decoded.count))
    }

    /// The next frame a decoder should decode, if any is left.
    func claim() -> Int? {
        state.withLock { s in
            guard s.claimed < s.slots.count else { return nil }
            s.claimed += 1
            return s.claimed - 1
        }
    }

    func fill(_ i: Int, _ result: Result<PreparedFrame, ServerError>) {
        let (waiters, blocked) = state.withLock { s in
            s.slots[i] = result
            return (s.waiters.removeValue(forKey: i) ?? [], s.blocked.removeValue(forKey: i) ?? [])
        }
        for w in waiters { w.resume() }
        for b in blocked { b.signal() }
    }

    /// Frame `i`, waiting on this thread until it is decoded.
    func get(_ i: Int) throws(ServerError) -> PreparedFrame {
        while true {
            let semaphore = DispatchSemaphore(value: 0)
            let ready = state.withLock { s -> Result<PreparedFrame, ServerError>? in
                if let r = s.slots[i] { return r }
                s.blocked[i, default: []].append(semaphore)
                return nil
            }
            if let ready { return try ready.get() }
            semaphore.wait()
        }
    }

    /// Frame `i`, suspending until it is decoded.
    func value(_ i: Int) async throws(ServerError) -> PreparedFrame {
        while true {
            if let r = state.withLock({ $0.slots[i] }) { return try r.get() }
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let ready = state.withLock { s -> Bool in
                    if s.slots[i] != nil { return true }
                    s.waiters[i, default: []].append(c)
                    return false
                }
                if ready { c.resume() }
            }
        }
    }

    /// About how many bytes the decoded frames write when stored.
    var storedBytes: Int {
        state.withLock { s in
            s.slots.reduce(0) { n, slot in if case .success(let f)? = slot { return n + f.storedBytes } else { return n } }
        }
    }
}
