import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// The web UI's files (`Assets/`: one HTML shell, `app.js`, `app.css`), read once at start.
///
/// They are the target's resources (`RunLog_RunLogServer.resources/Assets` beside the
/// executable). The lookup does not use `Bundle.module`, which stops the process when the
/// bundle is missing: it tries `RUNLOG_ASSETS`, the bundle beside the executable, then the
/// source tree this file was built from; without any, the UI answers 500 and the API works.
struct Assets: Sendable {
    var files: [String: [UInt8]]

    static let bundleName = "RunLog_RunLogServer.resources"

    static func load(logger: Logger) -> Assets {
        var candidates: [String] = []
        if let env = ProcessInfo.processInfo.environment["RUNLOG_ASSETS"] { candidates.append(env) }
        candidates.append(Bundle.main.bundleURL.appendingPathComponent(bundleName).appendingPathComponent("Assets").path)
        if let exe = Bundle.main.executableURL?.resolvingSymlinksInPath().deletingLastPathComponent() {
            candidates.append(exe.appendingPathComponent(bundleName).appendingPathComponent("Assets").path)
        }
        candidates.append(URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Assets").path)
        for dir in candidates {
            var files: [String: [UInt8]] = [:]
            for name in ["page.html", "login.html", "app.js", "app.css"] {
                if let data = FileManager.default.contents(atPath: dir + "/" + name) { files[name] = Array(data) }
            }
            if files.count == 4 {
                logger.debug("web UI assets", metadata: ["directory": "\(dir)"])
                return Assets(files: files)
            }
        }
        logger.warning("web UI assets not found; set RUNLOG_ASSETS to the Assets directory", metadata: ["tried": "\(candidates)"])
        return Assets(files: [:])
    }

    func text(_ name: String) -> String? { files[name].map { String(decoding: $0, as: UTF8.self) } }
}

/// Server-rendered shells around the client-side UI in `Assets/app.js` (vanilla JavaScript,
/// SVG charts): `/`, `/ui/{entity}/{project}`, `/ui/{entity}/{project}/{run}`,
/// `/ui/{entity}/{project}/compare?runs=a,b&metric=loss`, and `/login` to keep an API key
/// in a cookie for the UI's reads.
enum WebUI {
    static func register(on router: Router<BasicRequestContext>, server: ServerContext) {
        router.get("/") { _, _ in page(server, "home", title: "RunLog") }
        router.get("/ui/:entity") { _, context in
            await Responses.guarded(server.logger) { page(server, "home", title: try context.name("entity"), entity: try context.name("entity")) }
        }
        router.get("/ui/:entity/:project") { _, context in
            await Responses.guarded(server.logger) {
                page(server, "project", title: try context.name("project"), entity: try context.name("entity"), project: try context.name("project"))
            }
        }
        router.get("/ui/:entity/:project/compare") { _, context in
            await Responses.guarded(server.logger) {
                page(server, "compare", title: "compare", entity: try context.name("entity"), project: try context.name("project"))
            }
        }
        router.get("/ui/:entity/:project/:run") { _, context in
            await Responses.guarded(server.logger) {
                page(server, "run", title: try context.name("run"), entity: try context.name("entity"), project: try context.name("project"),
                     run: try context.name("run"))
            }
        }
        router.get("/assets/:file") { _, context in
            let name = context.parameters.get("file") ?? ""
            guard name == "app.js" || name == "app.css", let bytes = server.assets.files[name] else {
                return Response(status: .notFound)
            }
            let type = name.hasSuffix(".js") ? "text/javascript; charset=utf-8" : "text/css; charset=utf-8"
            return Response(status: .ok, headers: [.contentType: type, .cacheControl: "no-cache"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
        router.get("/login") { _, _ in login(server, message: "") }
        router.post("/login") { request, _ in
            await Responses.guarded(server.logger) {
                let form = try await request.body.collect(upTo: 4096)
                let key = formValue(String(buffer: form), "key") ?? ""
                guard APIKey.isWellFormed(key), try await server.store.principal(keyHash: APIKey.hash(key)) != nil else {
                    var r = login(server, message: "That key is not known to this server.")
                    r.status = .unauthorized
                    return r
                }
                return Response(status: .seeOther, headers: [
                    .location: "/",
                    .setCookie: "\(APIKey.cookieName)=\(key); Path=/; HttpOnly; SameSite=Strict; Max-Age=31536000",
                ])
            }
        }
        router.get("/logout") { _, _ in
            Response(status: .seeOther, headers: [.location: "/login", .setCookie: "\(APIKey.cookieName)=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"])
        }
    }

    static func html(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
                 body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func page(_ server: ServerContext, _ kind: String, title: String, entity: String = "", project: String = "", run: String = "") -> Response {
        guard let template = server.assets.text("page.html") else {
            return html("<p>The web UI's files were not found (set RUNLOG_ASSETS).</p>", status: .internalServerError)
        }
        let text = template
            .replacingOccurrences(of: "{{TITLE}}", with: escape(title))
            .replacingOccurrences(of: "{{PAGE}}", with: kind)
            .replacingOccurrences(of: "{{ENTITY}}", with: escape(entity))
            .replacingOccurrences(of: "{{PROJECT}}", with: escape(project))
            .replacingOccurrences(of: "{{RUN}}", with: escape(run))
        return html(text)
    }

    static func login(_ server: ServerContext, message: String) -> Response {
        guard let template = server.assets.text("login.html") else { return html("<p>Web UI files missing.</p>", status: .internalServerError) }
        return html(template.replacingOccurrences(of: "{{MESSAGE}}", with: escape(message)))
    }

    /// HTML-escapes text for element content and quoted attribute values.
    static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }

    /// A field of an `application/x-www-form-urlencoded` body.
    static func formValue(_ body: String, _ name: String) -> String? {
        for pair in body.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1)
            guard kv.count == 2, kv[0] == name[...] else { continue }
            return String(kv[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding
        }
        return nil
    }
}
