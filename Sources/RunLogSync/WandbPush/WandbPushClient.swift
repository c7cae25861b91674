import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import RunLogStore

/// A failure pushing to a W&B-protocol server.
public struct WandbPushError: Error, Sendable, CustomStringConvertible {
    /// Whether trying again may help (5xx, 429, 409, a dropped connection).
    public var retryable: Bool
    public var status: Int?
    public var retryAfter: Double?
    public var message: String

    public init(retryable: Bool, status: Int? = nil, retryAfter: Double? = nil, message: String) {
        self.retryable = retryable
        self.status = status
        self.retryAfter = retryAfter
        self.message = message
    }

    public var description: String { (status.map { "HTTP \($0): " } ?? "") + message }

    static func fatal(_ message: String) -> WandbPushError { WandbPushError(retryable: false, message: message) }
}

/// The requests of the W&B server protocol that a push makes, as the wandb 0.31 client
/// makes them: GraphQL over `POST /graphql` (dispatched by the server on `operationName`,
/// with the client's own query texts), `POST /files/{entity}/{project}/{run}/file_stream`,
/// and `PUT` to the upload URLs that `CreateRunFiles` hands out (no credentials, the URL
/// authorizes itself). GraphQL and file_stream carry HTTP Basic `api:KEY`.
///
/// Every request is retried with exponential backoff (honouring `Retry-After`) on 5xx, 429,
/// 409, 408 and connection errors; any other 4xx, and a GraphQL error, is fatal for the run.
public struct WandbPushClient: Sendable {
    public struct Retry: Sendable {
        /// Tries per request, the first included.
        public var attempts = 8
        public var initialDelay = 0.5
        public var maxDelay = 30.0
        public init() {}
    }

    public let baseURL: String
    public let apiKey: String
    public let retry: Retry
    private let session: URLSession

    public init(baseURL: String, apiKey: String, retry: Retry = Retry(), timeout: TimeInterval = 120) {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        self.baseURL = base
        self.apiKey = apiKey
        self.retry = retry
        let config = URLSessionConfiguration.ephemeral
        config.timeoutIntervalForRequest = timeout
        config.httpMaximumConnectionsPerHost = 16
        session = URLSession(configuration: config)
    }

    /// Called before each backoff: attempt (1 for the first retry), delay in seconds, why.
    public typealias RetryHandler = @Sendable (Int, Double, String) -> Void

    private var authorization: String { "Basic " + Data("api:\(apiKey)".utf8).base64EncodedString() }

    // MARK: GraphQL

    /// Runs one GraphQL operation; returns its `data` object.
    func graphQL(_ operation: String, query: String, variables: [(String, Value?)], onRetry: RetryHandler) async throws(WandbPushError) -> Value {
        var body = "{\"operationName\":" + WandbPushEncoding.quoted(operation) + ",\"variables\":{"
        for (i, (k, v)) in variables.enumerated() {
            if i > 0 { body += "," }
            WandbPushEncoding.quote(k, into: &body)
            body += ":"
            WandbPushEncoding.write(v ?? .null, into: &body)
        }
        body += "},\"query\":" + WandbPushEncoding.quoted(query) + "}"
        guard let url = URL(string: baseURL + "/graphql") else { throw .fatal("invalid server URL \(baseURL)") }
        var request = URLRequest(url: url)
        request.httpMethod = "POST"
        request.setValue(authorization, forHTTPHeaderField: "Authorization")
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = Data(body.utf8)
        let data = try await send(request, what: operation, onRetry: onRetry)
        let answer: Value
        do { answer = try WandbJSON.parse(String(decoding: data, as: UTF8.self)) } catch {
            throw .fatal("\(operation): the answer is not JSON: \(String(decoding: data.prefix(300), as: UTF8.self))")
        }
        if case .array(let errors)? = answer["errors"], !errors.isEmpty {
            let messages = errors.map { $0["message"]?.stringValue ?? WandbPushEncoding.json($0) }
            throw .fatal("\(operation): \(messages.joined(separator: "; "))")
        }
        guard let d = answer["data"], d != .null else { throw .fatal("\(operation): the answer has no data") }
        return d
    }

    /// The query texts of the wandb 0.31 client (genqlient generates them; servers that
    /// run a real GraphQL engine need a real query, ours dispatches on the name).
    static let upsertBucketQuery = """

        mutation UpsertBucket ($id: String, $name: String, $project: String, $entity: String, $groupName: String, $description: String, $displayName: String, $notes: String, $commit: String, $config: JSONString, $host: String, $debug: Boolean, $program: String, $repo: String, $jobType: String, $state: String, $sweep: String, $tags: [String!], $summaryMetrics: JSONString) {
        \tupsertBucket(input: {id:$id,name:$name,groupName:$groupName,modelName:$project,entityName:$entity,description:$description,displayName:$displayName,notes:$notes,config:$config,commit:$commit,host:$host,debug:$debug,jobProgram:$program,jobRepo:$repo,jobType:$jobType,state:$state,sweep:$sweep,tags:$tags,summaryMetrics:$summaryMetrics}) {
        \t\tbucket {
        \t\t\tid
        \t\t\tname
        \t\t\tdisplayName
        \t\t\tdescription
        \t\t\tconfig
        \t\t\tsweepName
        \t\t\tproject {
        \t\t\t\tid
        \t\t\t\tname
        \t\t\t\tentity {
        \t\t\t\t\tid
        \t\t\t\t\tname
        \t\t\t\t}
        \t\t\t}
        \t\t\thistoryLineCount
        \t\t}
        \t\tinserted
        \t}
        }

        """

    static let rewindRunQuery = """

        mutation RewindRun ($runName: String!, $entity: String, $project: String, $metricName: String!, $metricValue: Float!) {
        \trewindRun(input: {runName:$runName,entityName:$entity,projectName:$project,metricName:$metricName,metricValue:$metricValue}) {
        \t\trewoundRun {
        \t\t\tid
        \t\t\tname
        \t\t\tdisplayName
        \t\t\tdescription
        \t\t\tconfig
        \t\t\tsweepName
        \t\t\tproject {
        \t\t\t\tid
        \t\t\t\tname
        \t\t\t\tentity {
        \t\t\t\t\tid
        \t\t\t\t\tname
        \t\t\t\t}
        \t\t\t}
        \t\t\thistoryLineCount
        \t\t}
        \t}
        }

        """

    static let createRunFilesQuery = """

        mutation CreateRunFiles ($entity: String!, $project: String!, $run: String!, $files: [String!]!) {
        \tcreateRunFiles(input: {entityName:$entity,projectName:$project,runName:$run,files:$files}) {
        \t\trunID
        \t\tuploadHeaders
        \t\tfiles {
        \t\t\tname
        \t\t\tuploadUrl
        \t\t}
        \t}
        }

        """

    /// What `UpsertBucket` and `RewindRun` answer about a run.
    struct Bucket: Sendable {
        var id: String?
        var name: String?
        var entity: String?
        var project: String?
        var historyLineCount: Int64?
        var inserted: Bool?

        init(_ v: Value?, inserted: Value?) {
            id = v?["id"]?.stringValue
            name = v?["name"]?.stringValue
            project = v?["project"]?["name"]?.stringValue
            entity = v?["project"]?["entity"]?["name"]?.stringValue
            historyLineCount = v?["historyLineCount"]?.intValue ?? v?["historyLineCount"]?.doubleValue.map { Int64($0) }
            self.inserted = inserted?.boolValue
        }
    }

    func upsertBucket(_ variables: [(String, Value?)], onRetry: RetryHandler) async throws(WandbPushError) -> Bucket {
        let data = try await graphQL("UpsertBucket", query: Self.upsertBucketQuery, variables: variables, onRetry: onRetry)
        return Bucket(data["upsertBucket"]?["bucket"], inserted: data["upsertBucket"]?["inserted"])
    }

    func rewindRun(entity: String?, project: String?, run: String, step: Int64, onRetry: RetryHandler) async throws(WandbPushError) -> Bucket {
        let data = try await graphQL("RewindRun", query: Self.rewindRunQuery, variables: [
            ("runName", .string(run)), ("entity", entity.map(Value.string)), ("project", project.map(Value.string)),
            ("metricName", .string("_step")), ("metricValue", .double(Double(step))),
        ], onRetry: onRetry)
        guard let r = data["rewindRun"]?["rewoundRun"], r != .null else { throw .fatal("RewindRun: the answer has no rewoundRun") }
        return Bucket(r, inserted: nil)
    }

    /// Upload URLs for `files`, in the same order, with the headers every PUT carries.
    func createRunFiles(entity: String, project: String, run: String, files: [String], onRetry: RetryHandler)
        async throws(WandbPushError) -> (urls: [String: String], headers: [String])
    {
        let data = try await graphQL("CreateRunFiles", query: Self.createRunFilesQuery, variables: [
            ("entity", .string(entity)), ("project", .string(project)), ("run", .string(run)), ("files", .array(files.map(Value.string))),
        ], onRetry: onRetry)
        let answer = data["createRunFiles"]
        var urls: [String: String] = [:]
        for f in answer?["files"]?.arrayValue ?? [] {
            if let name = f["name"]?.stringValue, let url = f["uploadUrl"]?.stringValue { urls[name] = url }
        }
        let headers = answer?["uploadHeaders"]?.arrayValue?.compactMap(\.stringValue) ?? []
        return (urls, headers)
    }

    // MARK: file_stream and uploads

    /// One file_stream request (a JSON body); returns whether the server asked the run to stop.
    func fileStream(entity: String, project: String, run: String, body: String, onRetry: RetryHandler) async throws(WandbPushError) -> Bool {
        guard let url = URL(string: baseURL + "/files/\(Self.pathComponent(entity))/\(Self.pathComponent(project))/\(Self.pathComponent(run))/file_stream") else {
            throw .fatal("cannot build the file_stream URL for \(entity)/\(project)/\(run)")
        }
        var request = URLRequest(url: url)
        request.httpMethod = "POST"
        request.setValue(authorization, forHTTPHeaderField: "Authorization")
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = Data(body.utf8)
        let data = try await send(request, what: "file_stream", onRetry: onRetry)
        return ((try? WandbJSON.parse(String(decoding: data, as: UTF8.self)))?["stopped"]?.boolValue) ?? false
    }

    /// PUTs `body` to an upload URL, with `headers` (`Name:Value`) and no credentials.
    func put(_ urlString: String, headers: [String], body: Data, what: String, onRetry: RetryHandler) async throws(WandbPushError) {
        guard let url = URL(string: urlString), url.scheme == "http" || url.scheme == "https" else {
            throw .fatal("\(what): the upload URL \(urlString) is not an absolute http(s) URL")
        }
        var request = URLRequest(url: url)
        request.httpMethod = "PUT"
        for h in headers {
            guard let colon = h.firstIndex(of: ":") else { continue }
            request.setValue(String(h[h.index(after: colon)...]).trimmingCharacters(in: .whitespaces),
                             forHTTPHeaderField: String(h[..<colon]).trimmingCharacters(in: .whitespaces))
        }
        request.httpBody = body
        _ = try await send(request, what: what, onRetry: onRetry)
    }

    static func pathComponent(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/;?#%"))) ?? s
    }

    // MARK: Sending with retries

    private func send(_ request: URLRequest, what: String, onRetry: RetryHandler) async throws(WandbPushError) -> Data {
        var attempt = 0
        while true {
            attempt += 1
            let error: WandbPushError
            do {
                return try await once(request)
            } catch let e {
                error = e
            }
            guard error.retryable, attempt < retry.attempts else {
                var e = error
                e.message = "\(what): \(e.message)" + (error.retryable ? " (gave up after \(attempt) tries)" : "")
                throw e
            }
            let backoff = min(retry.maxDelay, retry.initialDelay * pow(2, Double(attempt - 1)))
            let delay = min(retry.maxDelay, max(error.retryAfter ?? 0, backoff * Double.random(in: 0.75...1.25)))
            onRetry(attempt, delay, "\(what): \(error)")
            try? await Task.sleep(for: .milliseconds(Int(delay * 1000)))
            if Task.isCancelled { throw .fatal("\(what): cancelled") }
        }
    }

    private func once(_ request: URLRequest) async throws(WandbPushError) -> Data {
        let data: Data
        let response: URLResponse
        do { (data, response) = try await session.data(for: request) } catch {
            throw WandbPushError(retryable: true, message: error.localizedDescription)
        }
        guard let http = response as? HTTPURLResponse else { throw WandbPushError(retryable: true, message: "not an HTTP response") }
        let status = http.statusCode
        if (200..<300).contains(status) { return data }
        let retryAfter = http.allHeaderFields.first { ($0.key as? String)?.lowercased() == "retry-after" }.flatMap { Double("\($0.value)") }
        var text = String(decoding: data.prefix(500), as: UTF8.self)
        if let v = try? WandbJSON.parse(text) {
            if let m = v["error"]?.stringValue { text = m } else if let m = v["errors"]?.arrayValue?.first?["message"]?.stringValue { text = m }
        }
        let retryable = status >= 500 || status == 429 || status == 409 || status == 408
        throw WandbPushError(retryable: retryable, status: status, retryAfter: retryAfter, message: text.isEmpty ? "HTTP \(status)" : text)
    }
}
