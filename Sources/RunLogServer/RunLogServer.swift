import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import RunLogStore

/// How `runlog server` runs.
///
/// ```swift
/// var configuration = ServerConfiguration(database: "/var/lib/runlog/runlog.db")
/// configuration.port = 8080
/// try await RunLogServerApp.run(configuration: configuration)
/// ```
public struct ServerConfiguration: Sendable {
    /// The address to listen on. Default `127.0.0.1`.
    public var host: String
    /// The port to listen on; 0 picks a free one. Default 8080.
    public var port: Int
    /// A SQLite file path (created if missing; WAL mode) or a `postgres://user:password@host:port/database`
    /// URL. Default `runlog.db`.
    public var database: String
    /// Whether reads (the read API and the web UI) are open without an API key. Writes always
    /// need one. Default false.
    public var publicRead: Bool
    /// The largest ingest request body, in bytes. Default 64 MiB plus one frame header, so
    /// that one frame of the largest size the format allows fits.
    public var maxRequestBytes: Int
    /// Where the server logs. Default a logger labelled `runlog.server`.
    public var logger: Logger
    /// The URL clients reach this server at, for the absolute upload URLs the W&B protocol
    /// hands out (e.g. `https://runlog.example.com` behind a proxy). Default: `http://` and
    /// the request's Host.
    public var externalURL: String?
    /// Where files uploaded through the W&B protocol are kept. Default: beside a SQLite
    /// database (`<database>.files`), `runlog-files` for PostgreSQL (servers sharing one
    /// PostgreSQL database must share this directory too).
    public var filesDirectory: String?
    /// The largest file upload, in bytes. Default 4 GiB.
    public var maxUploadBytes: Int = 4 << 30

    var resolvedFilesDirectory: String {
        if let filesDirectory { return filesDirectory }
        if database.hasPrefix("postgres://") || database.hasPrefix("postgresql://") { return "runlog-files" }
        return database + ".files"
    }

    public static let defaultMaxRequestBytes = LogFormat.maxStoredPayload + LogFormat.frameHeaderSize

    public init(
        host: String = "127.0.0.1", port: Int = 8080, database: String = "runlog.db", publicRead: Bool = false,
        maxRequestBytes: Int = ServerConfiguration.defaultMaxRequestBytes, logger: Logger = Logger(label: "runlog.server")
    ) {
        self.host = host
        self.port = port
        self.database = database
        self.publicRead = publicRead
        self.maxRequestBytes = maxRequestBytes
        self.logger = logger
    }
}

/// The RunLog server: native ingest, the JSON read API and the web UI over one store.
public enum RunLogServerApp {
    /// Opens the database (running its migrations), serves until the process is told to
    /// stop (SIGINT or SIGTERM), and closes the database.
    ///
    /// - Parameters:
    ///   - configuration: where to listen and which database to use.
    ///   - onListening: called with the bound port once the server accepts connections.
    /// - Throws: ``ServerError`` when the database cannot be opened or migrated; binding errors.
    public static func run(configuration: ServerConfiguration, onListening: (@Sendable (Int) async -> Void)? = nil) async throws {
        try await withServerStore(database: configuration.database, logger: configuration.logger) { store in
            let app = makeApplication(store: store, configuration: configuration) { port in
                configuration.logger.notice(
                    "runlog server listening",
                    metadata: ["address": "\(configuration.host):\(port)", "database": "\(store.backend)", "public_read": "\(configuration.publicRead)"])
                await onListening?(port)
            }
            try await app.runService()
        }
    }

    /// The Hummingbird application over an open store.
    static func makeApplication(
        store: any ServerStore, configuration: ServerConfiguration, onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let router = makeRouter(store: store, configuration: configuration)
        return Application(
            router: router,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "runlog"),
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? configuration.port) },
            logger: configuration.logger)
    }

    static func makeRouter(store: any ServerStore, configuration: ServerConfiguration) -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        let server = ServerContext(store: store, configuration: configuration, assets: Assets.load(logger: configuration.logger))
        router.get("/healthz") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: "ok\n")))
        }
        Ingest.register(on: router, server: server)
        ReadAPI.register(on: router, server: server)
        WebUI.register(on: router, server: server)
        WandbProtocol.register(on: router, server: server)
        return router
    }
}

/// What every handler needs.
struct ServerContext: Sendable {
    let store: any ServerStore
    let configuration: ServerConfiguration
    let assets: Assets

    var logger: Logger { configuration.logger }

    /// The request's principal: nil without a key; 401 for a key the server does not know.
    func principal(_ request: Request, cookie: Bool) async throws -> Principal? {
        guard let key = APIKey.fromRequest(request.headers, cookie: cookie) else { return nil }
        guard APIKey.isWellFormed(key), let p = try await store.principal(keyHash: APIKey.hash(key)) else {
            throw ServerError(.unauthorized, "unknown API key")
        }
        return p
    }

    /// The principal of a request that writes `entity`: 401 without a valid key, 403 when
    /// the key's user is not a member of it.
    func requireWrite(_ request: Request, entity: String) async throws -> Principal {
        guard let p = try await principal(request, cookie: false) else {
            throw ServerError(.unauthorized, "an API key is required (Authorization: Bearer KEY, or Basic with the key as password)")
        }
        guard p.entities.contains(entity) else { throw ServerError(.forbidden, "this key may not write entity \(entity)") }
        return p
    }

    /// Checks a read of `entity` (nil: a listing): open with `publicRead`, otherwise the key
    /// must belong to a member of the entity.
    @discardableResult
    func requireRead(_ request: Request, entity: String?) async throws -> Principal? {
        let p = try await principal(request, cookie: true)
        if configuration.publicRead { return p }
        guard let p else { throw ServerError(.unauthorized, "an API key is required to read (or start the server with --public-read)") }
        if let entity, !p.entities.contains(entity) { throw ServerError(.forbidden, "this key may not read entity \(entity)") }
        return p
    }
}

// MARK: Responses

enum Responses {
    static func json(_ body: String, status: HTTPResponse.Status = .ok) -> Response {
        var buffer = ByteBuffer()
        buffer.writeString(body)
        return Response(status: status, headers: [.contentType: "application/json; charset=utf-8", .cacheControl: "no-store"],
                        body: .init(byteBuffer: buffer))
    }

    static func error(_ e: ServerError) -> Response {
        var w = JSONWriter()
        w.raw("{")
        w.key("error", first: true)
        w.string(e.message)
        w.raw("}")
        var r = json(w.out, status: HTTPResponse.Status(code: e.status))
        if e.code == .unauthorized { r.headers[.wwwAuthenticate] = "Basic realm=\"runlog\"" }
        return r
    }

    /// Runs a handler, turning thrown errors into JSON error responses.
    static func guarded(_ logger: Logger, _ body: () async throws -> Response) async -> Response {
        do {
            return try await body()
        } catch let e as ServerError {
            if e.status >= 500 { logger.error("request failed", metadata: ["error": "\(e)"]) }
            return error(e)
        } catch let e as NIOTooManyBytesError {
            return error(ServerError(.tooLarge, "request body too large", underlying: e))
        } catch {
            logger.error("request failed", metadata: ["error": "\(error)"])
            return Responses.error(ServerError(.storage, "internal error: \(error)"))
        }
    }
}

extension Request {
    func query(_ name: String) -> String? {
        uri.queryParameters[name[...]].map(String.init)
    }
}

extension BasicRequestContext {
    /// A path parameter, percent-decoded and checked as a name.
    func name(_ parameter: String) throws -> String {
        guard let raw = parameters.get(parameter) else { throw ServerError(.badRequest, "missing \(parameter)") }
        let decoded = raw.removingPercentEncoding ?? raw
        guard Names.isValid(decoded) else { throw ServerError(.badRequest, "invalid \(parameter) name") }
        return decoded
    }
}
