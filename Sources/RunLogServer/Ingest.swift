import HTTPTypes
import Hummingbird
import NIOCore
import RunLogStore

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
                let frames = try prepare(Array(body.readableBytesView))
                switch try await server.store.ingest(key, after: after, frames: frames) {
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

    /// Splits a request body into checked frames and decodes them.
    ///
    /// - Throws: 400 for a bad, truncated or malformed frame, or sequences that do not
    ///   increase; 413 for a frame whose (checked) header claims more than the format allows.
    static func prepare(_ bytes: [UInt8]) throws(ServerError) -> [PreparedFrame] {
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
        var out: [PreparedFrame] = []
        out.reserveCapacity(stored.count)
        for f in stored {
            do { out.append(try PreparedFrame.prepare(f)) } catch {
                throw ServerError(.badRequest, "bad frame: \(error.message)", underlying: error)
            }
        }
        return out
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
