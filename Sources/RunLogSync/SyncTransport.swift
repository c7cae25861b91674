import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Identifies a run on a server.
public struct RemoteRun: Sendable, Hashable, CustomStringConvertible {
    public var entity: String
    public var project: String
    public var id: String
    public init(entity: String, project: String, id: String) {
        self.entity = entity
        self.project = project
        self.id = id
    }
    public var description: String { "\(entity)/\(project)/\(id)" }
}

/// What a send came back with.
public enum SendOutcome: Sendable, Equatable {
    case stored(acknowledged: UInt64)
    case conflict(acknowledged: UInt64)
}

/// A failure talking to the server, classified for retrying.
public struct TransportError: Error, Sendable, CustomStringConvertible {
    public var retryable: Bool
    public var retryAfter: Double?
    public var status: Int?
    public var message: String
    public init(retryable: Bool, retryAfter: Double? = nil, status: Int? = nil, message: String) {
        self.retryable = retryable
        self.retryAfter = retryAfter
        self.status = status
        self.message = message
    }
    public var description: String { (status.map { "HTTP \($0): " } ?? "") + message }
}

/// The server side of a sync; `HTTPSyncTransport` speaks the native protocol, tests use fakes.
public protocol SyncTransport: Sendable {
    func acknowledged(_ run: RemoteRun) async throws(TransportError) -> UInt64
    func send(_ run: RemoteRun, after: UInt64, frames: [UInt8]) async throws(TransportError) -> SendOutcome
}

/// The native protocol over HTTP (see `Sources/RunLogServer/PROTOCOL.md`).
public struct HTTPSyncTransport: SyncTransport {
    public let baseURL: URL
    public let apiKey: String
    private let session: URLSession

    public init(baseURL: URL, apiKey: String, timeout: TimeInterval = 60) {
        self.baseURL = baseURL
        self.apiKey = apiKey
        let config = URLSessionConfiguration.ephemeral
        config.timeoutIntervalForRequest = timeout
        config.httpMaximumConnectionsPerHost = 16
        session = URLSession(configuration: config)
    }

    private func url(_ run: RemoteRun, _ tail: String) -> URL {
        func esc(_ s: String) -> String { s.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? s }
        return URL(string: baseURL.absoluteString.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
            + "/api/v1/runs/\(esc(run.entity))/\(esc(run.project))/\(esc(run.id))/\(tail)")!
    }

    public func acknowledged(_ run: RemoteRun) async throws(TransportError) -> UInt64 {
        var request = URLRequest(url: url(run, "ack"))
        request.setValue("Bearer \(apiKey)", forHTTPHeaderField: "Authorization")
        let (status, body, headers) = try await perform(request)
        guard status == 200 else { throw Self.classify(status, body, headers) }
        return try Self.ack(body)
    }

    public func send(_ run: RemoteRun, after: UInt64, frames: [UInt8]) async throws(TransportError) -> SendOutcome {
        var request = URLRequest(url: url(run, "frames"))
        request.httpMethod = "POST"
        request.setValue("Bearer \(apiKey)", forHTTPHeaderField: "Authorization")
        request.setValue("application/x-runlog-frames", forHTTPHeaderField: "Content-Type")
        request.setValue(String(after), forHTTPHeaderField: "X-RunLog-After")
        request.httpBody = Data(frames)
        let (status, body, headers) = try await perform(request)
        switch status {
        case 200: return .stored(acknowledged: try Self.ack(body))
        case 409: return .conflict(acknowledged: try Self.ack(body))
        default: throw Self.classify(status, body, headers)
        }
    }

    private func perform(_ request: URLRequest) async throws(TransportError) -> (Int, Data, [AnyHashable: Any]) {
        do {
            let (data, response) = try await session.data(for: request)
            guard let http = response as? HTTPURLResponse else { throw TransportError(retryable: true, message: "not an HTTP response") }
            return (http.statusCode, data, http.allHeaderFields)
        } catch let e as TransportError {
            throw e
        } catch {
            throw TransportError(retryable: true, message: "\(error.localizedDescription)")
        }
    }

    static func ack(_ body: Data) throws(TransportError) -> UInt64 {
        guard let o = try? JSONSerialization.jsonObject(with: body) as? [String: Any], let n = o["acknowledged"] as? NSNumber else {
            throw TransportError(retryable: true, message: "the server's answer has no acknowledged sequence: \(String(decoding: body.prefix(200), as: UTF8.self))")
        }
        return n.uint64Value
    }

    static func classify(_ status: Int, _ body: Data, _ headers: [AnyHashable: Any]) -> TransportError {
        let text = String(decoding: body.prefix(500), as: UTF8.self)
        let retryAfter = headers.first { ($0.key as? String)?.lowercased() == "retry-after" }.flatMap { Double("\($0.value)") }
        let retryable = status == 429 || status >= 500 || status == 408
        return TransportError(retryable: retryable, retryAfter: retryAfter, status: status, message: text.isEmpty ? "HTTP \(status)" : text)
    }
}
