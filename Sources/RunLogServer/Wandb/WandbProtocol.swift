import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import RunLogStore
import RunLogSync

/// The W&B server protocol, as the official `wandb` 0.31 client speaks it (see
/// `PROTOCOL.md`, section "W&B protocol"):
///
/// - `POST /graphql`, dispatched on `operationName` (no GraphQL engine: the client's query
///   texts are fixed per version); unknown operations get HTTP 200 with a GraphQL error.
/// - `POST /files/{entity}/{project}/{run}/file_stream`: positional, idempotent lines.
/// - `PUT /storage/...`: uploads to the absolute, HMAC-signed, expiring URLs that
///   `CreateRunFiles` and the artifact operations hand out.
/// - `POST /sdk/otel/v1/*`: the client's telemetry, accepted and dropped.
///
/// Credentials are the server's API keys, sent as HTTP Basic `api:KEY`.
struct WandbProtocol: Sendable {
    let server: ServerContext
    let runs: WandbRuns
    let signer: UploadSigner
    let blobs: BlobStore

    var store: any ServerStore { server.store }
    var logger: Logger { server.logger }

    static func register(on router: Router<BasicRequestContext>, server: ServerContext) {
        let root = server.configuration.resolvedFilesDirectory
        let key: [UInt8]
        do { key = try UploadSigner.loadKey(directory: root) } catch {
            // Upload URLs then hold only for this process's lifetime.
            server.logger.warning("no persistent upload signing key; using one for this process", metadata: ["error": "\(error)"])
            var rng = SystemRandomNumberGenerator()
            key = (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }
        }
        let w = WandbProtocol(server: server, runs: WandbRuns(store: server.store), signer: UploadSigner(key: key), blobs: BlobStore(root: root))
        router.post("/graphql") { request, _ in await w.graphQL(request) }
        router.post("/files/:entity/:project/:run/file_stream") { request, context in
            await Responses.guarded(w.logger) { try await w.fileStream(request, context) }
        }
        router.put("/storage/run") { request, _ in await Responses.guarded(w.logger) { try await w.uploadRunFile(request) } }
        router.put("/storage/artifact") { request, _ in await Responses.guarded(w.logger) { try await w.uploadArtifactFile(request) } }
        router.get("/storage/run") { request, _ in await Responses.guarded(w.logger) { try await w.downloadRunFile(request) } }
        router.post("/sdk/otel/v1/metrics") { _, _ in Response(status: .ok) }
        router.post("/sdk/otel/v1/logs") { _, _ in Response(status: .ok) }
    }

    // MARK: GraphQL envelope

    func graphQL(_ request: Request) async -> Response {
        let body: Value
        do {
            let buffer = try await request.body.collect(upTo: 16 << 20)
            body = try WandbJSON.parse(String(buffer: buffer))
        } catch {
            return Responses.json(Self.errorBody("the request is not a GraphQL JSON body: \(error)"), status: .badRequest)
        }
        let op = body["operationName"]?.stringValue ?? ""
        let vars = body["variables"] ?? .object([:])
        let principal: Principal?
        do { principal = try await server.principal(request, cookie: false) } catch let e as ServerError {
            return Responses.json(Self.errorBody(e.message), status: .unauthorized)
        } catch {
            return Responses.json(Self.errorBody("\(error)"), status: .internalServerError)
        }
        do {
            let data = try await dispatch(op, vars, principal: principal, request: request)
            return Responses.json("{\"data\":\(data)}")
        } catch let e as WandbProtocolError {
            logger.info("graphql operation refused", metadata: ["op": "\(op)", "error": "\(e.message)"])
            return Responses.json(Self.errorBody(e.message))
        } catch let e as ServerError {
            if e.code == .unauthorized { return Responses.json(Self.errorBody(e.message), status: .unauthorized) }
            if e.status >= 500 { logger.error("graphql operation failed", metadata: ["op": "\(op)", "error": "\(e)"]) }
            // A conflict (another writer changed the run meanwhile) is worth a retry: 409, which
            // the client retries; storage failures are 500s (retried with backoff); a refusal
            // is a GraphQL error, which the client reports.
            if e.code == .conflict { return Responses.json(Self.errorBody(e.message), status: .conflict) }
            return Responses.json(Self.errorBody(e.message), status: e.status >= 500 ? .internalServerError : .ok)
        } catch {
            logger.error("graphql operation failed", metadata: ["op": "\(op)", "error": "\(error)"])
            return Responses.json(Self.errorBody("internal error: \(error)"), status: .internalServerError)
        }
    }

    static func errorBody(_ message: String) -> String {
        "{\"data\":null,\"errors\":[{\"message\":\(JSONWriter.quoted(message))}]}"
    }

    /// The `data` object of an operation, as JSON text.
    func dispatch(_ op: String, _ v: Value, principal: Principal?, request: Request) async throws -> String {
        switch op {
        case "ServerFeaturesQuery": return "{\"serverInfo\":{\"features\":[]}}"
        case "ServerInfo": return "{\"serverInfo\":{\"cliVersionInfo\":{},\"latestLocalVersionInfo\":null,\"features\":[]}}"
        case "OrganizationCoreWeaveOrganizationID": return "{\"entity\":{\"organization\":null}}"
        case "Viewer": return viewer(principal)
        default: break
        }
        guard let principal else { throw ServerError(.unauthorized, "an API key is required (HTTP Basic, user api, the key as password)") }
        switch op {
        case "UpsertBucket": return try await upsertBucket(v, principal)
        case "RunResumeStatus": return try await runResumeStatus(v, principal)
        case "RewindRun": return try await rewindRun(v, principal)
        case "CreateRunFiles": return try await createRunFiles(v, principal, request)
        case "NotifyScriptableRunAlert": return try await alert(v, principal)
        case "CreateArtifact": return try await createArtifact(v, principal)
        case "CreateArtifactManifest": return try await createArtifactManifest(v, principal, request)
        case "CreateArtifactFiles": return try await createArtifactFiles(v, principal, request)
        case "CommitArtifact": return try await commitArtifact(v, principal)
        case "RunStoppedStatus": return "{\"project\":{\"run\":{\"stopped\":false}}}"
        default: throw WandbProtocolError("operation \(op.isEmpty ? "(none)" : op) is not supported by this RunLog server")
        }
    }

    // MARK: Accounts

    func viewer(_ p: Principal?) -> String {
        guard let p else { return "{\"viewer\":null}" }
        var w = JSONWriter()
        w.raw("{\"viewer\":{\"id\":"); w.string(Self.opaqueID("User", p.user))
        w.raw(",\"entity\":"); w.string(defaultEntity(p))
        w.raw(",\"username\":"); w.string(p.user)
        w.raw(",\"email\":\"\",\"admin\":false,\"flags\":\"{}\",\"teams\":{\"edges\":[")
        for (i, e) in p.entities.sorted().filter({ $0 != p.user }).enumerated() {
            if i > 0 { w.raw(",") }
            w.raw("{\"node\":{\"name\":"); w.string(e); w.raw("}}")
        }
        w.raw("]}}}")
        return w.out
    }

    /// The entity of a request that names none: the user's own, else its first team.
    func defaultEntity(_ p: Principal) -> String {
        p.entities.contains(p.user) ? p.user : (p.entities.sorted().first ?? p.user)
    }

    /// The run a request names, checked: valid names and a key that may write the entity.
    func runKey(entity: String?, project: String?, run: String?, _ p: Principal) throws -> RunKey {
        let entity = entity ?? defaultEntity(p)
        let project = project ?? "uncategorized"
        guard let run else { throw WandbProtocolError("a run name is required") }
        for (what, name) in [("entity", entity), ("project", project), ("run", run)] where !Names.isValid(name) {
            throw WandbProtocolError("invalid \(what) name \(name)")
        }
        guard p.entities.contains(entity) else { throw WandbProtocolError("permission denied: this API key may not write entity \(entity)") }
        return RunKey(entity: entity, project: project, run: run)
    }

    static func opaqueID(_ kind: String, _ name: String) -> String { Data("\(kind):\(name)".utf8).base64EncodedString() }

    // MARK: Runs

    /// `bucket { id name displayName description config sweepName project { id name entity { id name } } historyLineCount }`
    func bucketJSON(_ key: RunKey, _ run: MaterializedRun, historyLineCount: Int64) -> String {
        var w = JSONWriter(capacity: 1024)
        w.raw("{\"id\":"); w.string(Self.opaqueID("Run", key.description))
        w.raw(",\"name\":"); w.string(key.run)
        w.raw(",\"displayName\":"); w.string(run.name ?? key.run)
        w.raw(",\"description\":"); w.optional(run.metadata["notes"]?.stringValue)
        w.raw(",\"config\":"); w.string(WandbTranslation.wandbConfigJSON(run.config))
        w.raw(",\"sweepName\":"); w.optional(run.metadata["sweep"]?.stringValue)
        w.raw(",\"project\":{\"id\":"); w.string(Self.opaqueID("Project", "\(key.entity)/\(key.project)"))
        w.raw(",\"name\":"); w.string(key.project)
        w.raw(",\"entity\":{\"id\":"); w.string(Self.opaqueID("Entity", key.entity))
        w.raw(",\"name\":"); w.string(key.entity)
        w.raw("}},\"historyLineCount\":\(historyLineCount)}")
        return w.out
    }

    func upsertBucket(_ v: Value, _ p: Principal) async throws -> String {
        let u = try WandbTranslation.Upsert(v)
        let key = try runKey(entity: u.entity, project: u.project, run: u.name ?? Self.newRunID(), p)
        let now = nowMicros()
        let runs = self.runs
        let (inserted, lines) = try await runs.mutate(key) { detail -> (records: [Record], result: (Bool, Int64)) in
            var book = WandbRunBook(metadata: detail?.info.run.metadata ?? [:], lastStep: detail?.info.run.lastStep)
            let isNew = detail == nil
            var records = try WandbTranslation.upsertRecords(u, key: key, isNew: isNew, now: now, book: &book)
            if isNew, let bp = WandbTranslation.branchPoint(u.wandb), bp.run != key.run {
                // fork_from: the new run starts with the source's history through the step (its
                // config is what the client sends, as on W&B: nothing else is copied).
                let source = RunKey(entity: key.entity, project: key.project, run: bp.run)
                guard let src = try await runs.store.run(source) else {
                    throw WandbProtocolError("cannot fork from run \(bp.run): no such run in \(key.entity)/\(key.project)")
                }
                let prefix = try await runs.rows(source, through: bp.step, metrics: src.metrics)
                records += prefix.map { .history($0) }
                records.append(.forkOrigin(ForkOrigin(sourceID: bp.run, sourceProject: key.project, step: bp.step, timestamp: now)))
                book.historyLines = Int64(prefix.count)
                book.lastStep = prefix.last?.step
                if let last = prefix.last {
                    var o = last.values
                    o["_step"] = .int(last.step)
                    book.lastHistory = Value.object(o).description
                }
            } else if let detail, u.storageID != nil, detail.info.run.state != "running" {
                // resume: the run continues.
                records.append(.resume(ResumeMarker(reason: "resume", nextStep: (detail.info.run.lastStep ?? -1) + 1, timestamp: now)))
            }
            records.append(book.record)
            // The client writes history from the count this returns. A new run starts at 0 (or
            // after a fork's prefix); a resumed or rewound run (the client sends our `id`) after
            // the lines held. A run upserted again without `id` is a re-sync of the same
            // offline run: from 0, so that every line it sends again is recognized and skipped.
            let lines = isNew || u.storageID != nil ? book.historyLines : 0
            return (records, (isNew, lines))
        }
        guard let detail = try await store.run(key, metrics: false) else { throw ServerError(.storage, "run \(key) vanished") }
        return "{\"upsertBucket\":{\"inserted\":\(inserted),\"bucket\":\(bucketJSON(key, detail.info.run, historyLineCount: lines))}}"
    }

    static func newRunID() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        return String((0..<8).map { _ in alphabet.randomElement()! })
    }

    func runResumeStatus(_ v: Value, _ p: Principal) async throws -> String {
        let key = try runKey(entity: v["entity"]?.stringValue, project: v["project"]?.stringValue, run: v["name"]?.stringValue, p)
        var w = JSONWriter(capacity: 2048)
        w.raw("{\"model\":{\"id\":"); w.string(Self.opaqueID("Project", "\(key.entity)/\(key.project)"))
        w.raw(",\"name\":"); w.string(key.project)
        w.raw(",\"entity\":{\"id\":"); w.string(Self.opaqueID("Entity", key.entity))
        w.raw(",\"name\":"); w.string(key.entity)
        w.raw("},\"bucket\":")
        guard let detail = try await store.run(key, metrics: false) else {
            w.raw("null}}")
            return w.out
        }
        let run = detail.info.run
        let book = WandbRunBook(metadata: run.metadata)
        w.raw("{\"id\":"); w.string(Self.opaqueID("Run", key.description))
        w.raw(",\"name\":"); w.string(key.run)
        w.raw(",\"displayName\":"); w.string(run.name ?? key.run)
        w.raw(",\"summaryMetrics\":"); w.string(Value.object(run.summary).description)
        // Runs written natively count their rows; W&B runs their lines.
        let historyLines = run.metadata[WandbRunBook.metadataKey] == nil ? run.historyRows : book.historyLines
        w.raw(",\"logLineCount\":\(book.logLines),\"historyLineCount\":\(historyLines),\"eventsLineCount\":\(book.eventsLines)")
        var tail = "[]"
        if let last = book.lastHistory { tail = Value.array([.string(last)]).description } else if let step = run.lastStep {
            tail = Value.array([.string(Value.object(["_step": .int(step)]).description)]).description
        }
        w.raw(",\"historyTail\":"); w.string(tail)
        w.raw(",\"eventsTail\":\"[]\"")
        w.raw(",\"config\":"); w.string(WandbTranslation.wandbConfigJSON(run.config))
        w.raw(",\"tags\":"); w.strings(run.tags)
        w.raw(",\"notes\":"); w.optional(run.metadata["notes"]?.stringValue)
        w.raw(",\"wandbConfig\":"); w.string(Value.object(["t": book.telemetry ?? .object([:])]).description)
        w.raw("}}}")
        return w.out
    }

    func rewindRun(_ v: Value, _ p: Principal) async throws -> String {
        let key = try runKey(entity: v["entity"]?.stringValue, project: v["project"]?.stringValue, run: v["runName"]?.stringValue, p)
        guard (v["metricName"]?.stringValue ?? "_step") == "_step" else { throw WandbProtocolError("runs can only be rewound by _step") }
        guard let step = v["metricValue"]?.intValue ?? v["metricValue"]?.doubleValue.map({ Int64($0) }) else {
            throw WandbProtocolError("metricValue (the step to rewind to) is required")
        }
        let now = nowMicros()
        let runs = self.runs
        let lines = try await runs.mutate(key) { detail -> (records: [Record], result: Int64) in
            guard let detail else { throw WandbProtocolError("run \(key.run) does not exist in \(key.entity)/\(key.project)") }
            var book = WandbRunBook(metadata: detail.info.run.metadata, lastStep: detail.info.run.lastStep)
            var records: [Record] = []
            var live = detail.info.run.historyRows
            if let (cut, after) = try await runs.rewindCut(key, step: step) {
                let branch = (detail.rewinds.map(\.branch).max() ?? 0) + 1
                records.append(.rewind(RewindMarker(step: step, branch: branch, cut: cut, timestamp: now)))
                live -= after
            }
            records.append(.resume(ResumeMarker(reason: "rewind", nextStep: step + 1, timestamp: now)))
            // History continues after the kept rows; console and system metrics start anew.
            book.historyLines = live
            book.lastHistory = Value.object(["_step": .int(step)]).description
            book.lastStep = min(step, detail.info.run.lastStep ?? step)
            book.logLines = 0
            book.eventsLines = 0
            records.append(book.record)
            return (records, live)
        }
        guard let detail = try await store.run(key, metrics: false) else { throw ServerError(.storage, "run \(key) vanished") }
        return "{\"rewindRun\":{\"rewoundRun\":\(bucketJSON(key, detail.info.run, historyLineCount: lines))}}"
    }

    func alert(_ v: Value, _ p: Principal) async throws -> String {
        let key = try runKey(entity: v["entityName"]?.stringValue, project: v["projectName"]?.stringValue, run: v["runName"]?.stringValue, p)
        let text = "wandb alert [\(v["severity"]?.stringValue ?? "INFO")] \(v["title"]?.stringValue ?? ""): \(v["text"]?.stringValue ?? "")"
        let now = nowMicros()
        try await runs.mutate(key) { detail -> (records: [Record], result: Void) in
            guard detail != nil else { throw WandbProtocolError("no run \(key.run)") }
            return ([.console(ConsoleLine(stream: .stderr, timestamp: now, text: text))], ())
        }
        return "{\"notifyScriptableRunAlert\":{\"success\":true}}"
    }

    // MARK: file_stream

    func fileStream(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let key = RunKey(entity: try context.name("entity"), project: try context.name("project"), run: try context.name("run"))
        _ = try await server.requireWrite(request, entity: key.entity)
        if let enc = request.headers[.contentEncoding], enc.lowercased() != "identity" {
            throw ServerError(.badRequest, "Content-Encoding \(enc) is not supported (this server does not advertise FILESTREAM_GZIP)")
        }
        let buffer = try await request.body.collect(upTo: server.configuration.maxRequestBytes)
        let fs: WandbTranslation.FileStream
        do { fs = try WandbTranslation.FileStream(WandbJSON.parse(String(buffer: buffer))) } catch {
            throw ServerError(.badRequest, "file_stream body: \(error)")
        }
        let now = nowMicros()
        let outcome = try await runs.mutate(key) { detail -> (records: [Record], result: WandbTranslation.FileStreamOutcome) in
            var book = WandbRunBook(metadata: detail?.info.run.metadata ?? [:], lastStep: detail?.info.run.lastStep)
            var outcome = WandbTranslation.fileStreamRecords(fs, now: now, book: &book)
            if detail == nil, !outcome.records.isEmpty {
                // Data before any UpsertBucket: create the run so nothing is lost.
                outcome.records.insert(.runMetadata(RunMetadata(["id": .string(key.run), "project": .string(key.project), "entity": .string(key.entity),
                                                                 "name": .string(key.run), "start_time": .int(now), "client": "wandb"])), at: 0)
            }
            return (outcome.records, outcome)
        }
        if outcome.outOfOrderLines > 0 {
            logger.info("file_stream history lines at or before the last step dropped", metadata: ["run": "\(key)", "count": "\(outcome.outOfOrderLines)"])
        }
        if !outcome.rejectedLines.isEmpty {
            logger.warning("file_stream lines not stored", metadata: ["run": "\(key)", "lines": "\(outcome.rejectedLines.prefix(5))", "count": "\(outcome.rejectedLines.count)"])
        }
        return Responses.json("{\"exitcode\":null,\"limits\":{},\"stopped\":false}")
    }

    // MARK: Files

    /// The URL a client uploads to: absolute (the client refuses relative ones), from the
    /// configured external URL or the request's Host.
    func baseURL(_ request: Request) -> String {
        if let external = server.configuration.externalURL { return external.hasSuffix("/") ? String(external.dropLast()) : external }
        let host = request.head.authority ?? "\(server.configuration.host):\(server.configuration.port)"
        return "http://\(host)"
    }

    func signedURL(_ request: Request, kind: String, _ parts: [(String, String)]) -> String {
        let expires = Int64(Date().timeIntervalSince1970) + signer.lifetime
        let sig = signer.signature([kind] + parts.map(\.1), expires: expires)
        var c = URLComponents()
        c.queryItems = parts.map { URLQueryItem(name: $0.0, value: $0.1) } + [
            URLQueryItem(name: "expires", value: String(expires)), URLQueryItem(name: "sig", value: sig),
        ]
        // `+` is a space to some decoders: encode it.
        let query = (c.percentEncodedQuery ?? "").replacingOccurrences(of: "+", with: "%2B")
        return "\(baseURL(request))/storage/\(kind)?\(query)"
    }

    func createRunFiles(_ v: Value, _ p: Principal, _ request: Request) async throws -> String {
        let key = try runKey(entity: v["entity"]?.stringValue, project: v["project"]?.stringValue, run: v["run"]?.stringValue, p)
        let files = v["files"]?.arrayValue?.compactMap(\.stringValue) ?? []
        var w = JSONWriter(capacity: 256 + files.count * 256)
        w.raw("{\"createRunFiles\":{\"runID\":"); w.string(Self.opaqueID("Run", key.description))
        w.raw(",\"uploadHeaders\":[],\"files\":[")
        for (i, f) in files.enumerated() {
            _ = try blobs.runFile(key, f)  // refuse bad names before handing out a URL
            if i > 0 { w.raw(",") }
            w.raw("{\"name\":"); w.string(f)
            w.raw(",\"uploadUrl\":"); w.string(signedURL(request, kind: "run", [("e", key.entity), ("p", key.project), ("r", key.run), ("f", f)]))
            w.raw("}")
        }
        w.raw("]}}")
        return w.out
    }

    /// Checks an upload URL's signature; returns its query parameters.
    func checkSigned(_ request: Request, kind: String, _ names: [String]) throws -> [String] {
        let values = names.map { request.query($0) ?? "" }
        guard let expires = request.query("expires").flatMap(Int64.init), let sig = request.query("sig"),
              signer.verify([kind] + values, expires: expires, signature: sig, now: Int64(Date().timeIntervalSince1970))
        else { throw ServerError(.forbidden, "upload URL signature invalid or expired") }
        return values
    }

    func uploadRunFile(_ request: Request) async throws -> Response {
        let q = try checkSigned(request, kind: "run", ["e", "p", "r", "f"])
        let key = RunKey(entity: q[0], project: q[1], run: q[2])
        let path = try blobs.runFile(key, q[3])
        let (size, digest) = try await BlobStore.write(path, request.body.map { Array($0.readableBytesView) }, limit: server.configuration.maxUploadBytes)
        let now = nowMicros()
        let name = q[3]
        try await runs.mutate(key) { _ -> (records: [Record], result: Void) in
            ([.file(FileReference(path: name, size: size, digest: "sha256:\(digest)", policy: "now", timestamp: now))], ())
        }
        return Response(status: .ok)
    }

    /// A file uploaded with a run, for a reader allowed to read the run's entity.
    func downloadRunFile(_ request: Request) async throws -> Response {
        guard let e = request.query("e"), let pr = request.query("p"), let r = request.query("r"), let f = request.query("f") else {
            throw ServerError(.badRequest, "e, p, r and f are required")
        }
        try await server.requireRead(request, entity: e)
        let path = try blobs.runFile(RunKey(entity: e, project: pr, run: r), f)
        guard let data = FileManager.default.contents(atPath: path) else { throw ServerError(.notFound, "no file \(f)") }
        return Response(status: .ok, headers: [.contentType: "application/octet-stream"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    // MARK: Artifacts

    func createArtifact(_ v: Value, _ p: Principal) async throws -> String {
        let input = v["input"] ?? v
        let entity = input["entityName"]?.stringValue ?? defaultEntity(p)
        guard p.entities.contains(entity) else { throw WandbProtocolError("permission denied: this API key may not write entity \(entity)") }
        guard let collection = input["artifactCollectionName"]?.stringValue, Names.isValid(collection) else {
            throw WandbProtocolError("artifactCollectionName is required")
        }
        let id = UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        let aliases = input["aliases"]?.arrayValue?.compactMap { $0["alias"]?.stringValue } ?? ["latest"]
        let a = WandbArtifact(id: id, entity: entity, project: input["projectName"]?.stringValue ?? "uncategorized",
                              run: input["runName"]?.stringValue, collection: collection, type: input["artifactTypeName"]?.stringValue ?? "",
                              digest: input["digest"]?.stringValue ?? "", metadata: input["metadata"]?.stringValue, state: "PENDING", aliases: aliases)
        try a.save(in: blobs)
        var w = JSONWriter()
        w.raw("{\"createArtifact\":{\"artifact\":{\"id\":"); w.string(id)
        w.raw(",\"state\":\"PENDING\",\"digest\":"); w.string(a.digest)
        w.raw(",\"artifactSequence\":{\"id\":"); w.string(Self.opaqueID("ArtifactSequence", "\(entity)/\(a.project)/\(collection)"))
        w.raw(",\"latestArtifact\":null}}}}")
        return w.out
    }

    func loadArtifact(_ id: String?, _ p: Principal) throws -> WandbArtifact {
        guard let id, id.allSatisfy({ $0.isLetter || $0.isNumber }), let a = try WandbArtifact.load(id, in: blobs) else {
            throw WandbProtocolError("no artifact \(id ?? "(none)")")
        }
        guard p.entities.contains(a.entity) else { throw WandbProtocolError("permission denied for artifact \(id)") }
        return a
    }

    func createArtifactManifest(_ v: Value, _ p: Principal, _ request: Request) async throws -> String {
        let a = try loadArtifact(v["artifactID"]?.stringValue, p)
        let name = v["name"]?.stringValue ?? "wandb_manifest.json"
        var w = JSONWriter()
        w.raw("{\"createArtifactManifest\":{\"artifactManifest\":{\"id\":"); w.string(Self.opaqueID("ArtifactManifest", a.id))
        w.raw(",\"file\":{\"id\":"); w.string(Self.opaqueID("File", "\(a.id)/\(name)"))
        w.raw(",\"name\":"); w.string(name)
        w.raw(",\"displayName\":"); w.string(name)
        w.raw(",\"uploadUrl\":"); w.string(signedURL(request, kind: "artifact", [("a", a.id), ("f", name)]))
        w.raw(",\"uploadHeaders\":[]}}}}")
        return w.out
    }

    func createArtifactFiles(_ v: Value, _ p: Principal, _ request: Request) async throws -> String {
        let files = (v["input"] ?? v)["artifactFiles"]?.arrayValue ?? v["artifactFiles"]?.arrayValue ?? []
        var w = JSONWriter(capacity: 256 + files.count * 384)
        w.raw("{\"createArtifactFiles\":{\"files\":{\"edges\":[")
        for (i, f) in files.enumerated() {
            let a = try loadArtifact(f["artifactID"]?.stringValue, p)
            guard let name = f["name"]?.stringValue else { throw WandbProtocolError("artifact file without a name") }
            _ = try blobs.artifactPath(a.id, "files/" + name)
            // md5 arrives in base64 (`/`, `+`, `=`): storage keys use hex.
            let md5 = f["md5"]?.stringValue.flatMap { Data(base64Encoded: $0) }.map { $0.map { String(format: "%02x", $0) }.joined() } ?? ""
            if i > 0 { w.raw(",") }
            w.raw("{\"node\":{\"id\":"); w.string(Self.opaqueID("File", "\(a.id)/\(name)"))
            w.raw(",\"name\":"); w.string(name)
            w.raw(",\"displayName\":"); w.string(name)
            w.raw(",\"storagePath\":"); w.string("wandb_artifacts/\(a.id)/\(md5.isEmpty ? name : md5)")
            w.raw(",\"uploadUrl\":"); w.string(signedURL(request, kind: "artifact", [("a", a.id), ("f", "files/" + name)]))
            w.raw(",\"uploadHeaders\":[],\"uploadMultipartUrls\":null,\"artifact\":{\"id\":"); w.string(a.id)
            w.raw("}}}")
        }
        w.raw("]}}}")
        return w.out
    }

    func commitArtifact(_ v: Value, _ p: Principal) async throws -> String {
        var artifact = try loadArtifact(v["artifactID"]?.stringValue, p)
        artifact.state = "COMMITTED"
        let a = artifact
        try a.save(in: blobs)
        if let run = a.run, Names.isValid(a.project), Names.isValid(run) {
            // The producing run lists the artifact's manifest among its files.
            let manifest = try blobs.artifactPath(a.id, "wandb_manifest.json")
            let size = (try? FileManager.default.attributesOfItem(atPath: manifest)[.size] as? Int64) ?? 0
            let now = nowMicros()
            let path = "artifacts/\(a.collection)/\(a.id)/wandb_manifest.json"
            try await runs.mutate(RunKey(entity: a.entity, project: a.project, run: run)) { detail -> (records: [Record], result: Void) in
                guard detail != nil else { return ([], ()) }
                return ([.file(FileReference(path: path, size: size, digest: a.digest.isEmpty ? "" : "md5:\(a.digest)", policy: "artifact", timestamp: now))], ())
            }
        }
        var w = JSONWriter()
        w.raw("{\"commitArtifact\":{\"artifact\":{\"id\":"); w.string(a.id)
        w.raw(",\"digest\":"); w.string(a.digest)
        w.raw(",\"state\":\"COMMITTED\"}}}")
        return w.out
    }

    func uploadArtifactFile(_ request: Request) async throws -> Response {
        let q = try checkSigned(request, kind: "artifact", ["a", "f"])
        let path = try blobs.artifactPath(q[0], q[1])
        _ = try await BlobStore.write(path, request.body.map { Array($0.readableBytesView) }, limit: server.configuration.maxUploadBytes)
        return Response(status: .ok)
    }
}
