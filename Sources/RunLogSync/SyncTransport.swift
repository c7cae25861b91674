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

/// The native protocol over HTTP (see `Sources/RunLogServer/PROTOCOL.md`): over plain
/// keep-alive sockets for `http://` (``SocketHTTPClient``), over URLSession for `https://`.
public struct HTTPSyncTransport: SyncTransport {
    public let baseURL: URL
    public let apiKey: String
    private let session: URLSession
    private let socket: SocketHTTPClient?
    /// The base URL's path, percent-encoded, without a trailing slash (a server mounted under a prefix).
    private let basePath: String

    public init(baseURL: URL, apiKey: String, timeout: TimeInterval = 60) {
        self.baseURL = baseURL
        self.apiKey = apiKey
        let config = URLSessionConfiguration.ephemeral
        config.timeoutIntervalForRequest = timeout
        config.httpMaximumConnectionsPerHost = 16
        session = URLSession(configuration: config)
        let components = URLComponents(url: baseURL, resolvingAgainstBaseURL: false)
        var path = components?.percentEncodedPath ?? ""
        while path.hasSuffix("/") { path.removeLast() }
        basePath = path
        if baseURL.scheme?.lowercased() == "http", let host = baseURL.host, ProcessInfo.processInfo.environment["RUNLOG_SYNC_URLSESSION"] == nil {
            socket = SocketHTTPClient(host: host, port: baseURL.port ?? 80, timeout: timeout)
        } else {
            socket = nil
        }
    }

    private func path(_ run: RemoteRun, _ tail: String) -> String {
        func esc(_ s: String) -> String { s.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? s }
        return basePath + "/api/v1/runs/\(esc(run.entity))/\(esc(run.project))/\(esc(run.id))/\(tail)"
    }

    public func acknowledged(_ run: RemoteRun) async throws(TransportError) -> UInt64 {
        let (status, body, headers) = try await perform("GET", path(run, "ack"), [("Authorization", "Bearer \(apiKey)")], [])
        guard status == 200 else { throw Self.classify(status, body, headers) }
        return try Self.ack(body)
    }

    public func send(_ run: RemoteRun, after: UInt64, frames: [UInt8]) async throws(TransportError) -> SendOutcome {
        let headers = [("Authorization", "Bearer \(apiKey)"), ("Content-Type", "application/x-runlog-frames"), ("X-RunLog-After", String(after))]
        let (status, body, responseHeaders) = try await perform("POST", path(run, "frames"), headers, frames)
        switch status {
        case 200: return .stored(acknowledged: try Self.ack(body))
        case 409: return .conflict(acknowledged: try Self.ack(body))
        default: throw Self.classify(status, body, responseHeaders)
        }
    }

    private func perform(_ method: String, _ path: String, _ headers: [(String, String)], _ body: [UInt8]) async throws(TransportError) -> (Int, Data, [AnyHashable: Any]) {
        do {
            if let socket {
                let r = try await socket.request(method, path, headers: headers, body: body)
                return (r.status, Data(r.body), r.headers)
            }
            var origin = baseURL.absoluteString
            if let range = origin.range(of: "://"), let slash = origin[range.upperBound...].firstIndex(of: "/") { origin = String(origin[..<slash]) }
            var request = URLRequest(url: URL(string: origin + path)!)
            request.httpMethod = method
            for (k, v) in headers { request.setValue(v, forHTTPHeaderField: k) }
            if method == "POST" { request.httpBody = Data(body) }
            let (data, response) = try await session.data(for: request)
            guard let http = response as? HTTPURLResponse else { throw TransportError(retryable: true, message: "not an HTTP response") }
            return (http.statusCode, data, http.allHeaderFields)
        } catch let e as TransportError {
            throw e
        } catch {
            throw TransportError(retryable: true, message: "\(error)")
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
