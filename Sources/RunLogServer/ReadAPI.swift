import HTTPTypes
import Hummingbird
import NIOCore
import RunLogStore

/// The JSON read API (see `PROTOCOL.md`): entities, projects, runs, one run, its metrics,
/// history over a step range (downsampled keeping minima and maxima), and its raw frames.
enum ReadAPI {
    static let maxPoints = 100_000

    static func register(on router: Router<BasicRequestContext>, server: ServerContext) {
        router.get("/api/v1/entities") { request, _ in
            await Responses.guarded(server.logger) {
                let principal = try await server.requireRead(request, entity: nil)
                var all = try await server.store.entities()
                if !server.configuration.publicRead, let principal { all = all.filter { principal.entities.contains($0.name) } }
                var w = JSONWriter()
                w.raw("[")
                for (i, e) in all.enumerated() {
                    if i > 0 { w.raw(",") }
                    w.raw("{\"name\":"); w.string(e.name); w.raw(",\"kind\":"); w.string(e.kind); w.raw("}")
                }
                w.raw("]")
                return Responses.json(w.out)
            }
        }

        router.get("/api/v1/entities/:entity/projects") { request, context in
            await Responses.guarded(server.logger) {
                let entity = try context.name("entity")
                try await server.requireRead(request, entity: entity)
                var w = JSONWriter()
                w.raw("[")
                for (i, p) in try await server.store.projects(entity: entity).enumerated() {
                    if i > 0 { w.raw(",") }
                    w.raw("{\"name\":"); w.string(p.name); w.raw(",\"runs\":\(p.runs)}")
                }
                w.raw("]")
                return Responses.json(w.out)
            }
        }

        router.get("/api/v1/projects/:entity/:project/runs") { request, context in
            await Responses.guarded(server.logger) {
                let entity = try context.name("entity"), project = try context.name("project")
                try await server.requireRead(request, entity: entity)
                let filter = RunFilter(tag: request.query("tag").nonEmpty, group: request.query("group").nonEmpty, state: request.query("state").nonEmpty)
                var runs = try await server.store.runs(entity: entity, project: project, filter: filter)
                if let sort = request.query("sort").nonEmpty {
                    runs = RunSort.sorted(runs, by: sort, descending: request.query("order") == "desc")
                } else if request.query("order") == "asc" {
                    runs.reverse()
                }
                if let limit = request.query("limit").flatMap(Int.init), limit >= 0 { runs = Array(runs.prefix(limit)) }
                var w = JSONWriter(capacity: runs.count * 512)
                w.raw("[")
                for (i, r) in runs.enumerated() {
                    if i > 0 { w.raw(",") }
                    writeRun(r, detail: nil, into: &w)
                }
                w.raw("]")
                return Responses.json(w.out)
            }
        }

        router.get("/api/v1/runs/:entity/:project/:run") { request, context in
            await Responses.guarded(server.logger) {
                let key = try runKey(context)
                try await server.requireRead(request, entity: key.entity)
                guard let detail = try await server.store.run(key) else { throw ServerError(.notFound, "no run \(key)") }
                var w = JSONWriter(capacity: 4096)
                writeRun(detail.info, detail: detail, into: &w)
                return Responses.json(w.out)
            }
        }

        router.get("/api/v1/runs/:entity/:project/:run/metrics") { request, context in
            await Responses.guarded(server.logger) {
                let key = try runKey(context)
                try await server.requireRead(request, entity: key.entity)
                guard let detail = try await server.store.run(key) else { throw ServerError(.notFound, "no run \(key)") }
                var w = JSONWriter()
                writeMetrics(detail.metrics, into: &w)
                return Responses.json(w.out)
            }
        }

        router.get("/api/v1/runs/:entity/:project/:run/history") { request, context in
            await Responses.guarded(server.logger) {
                let key = try runKey(context)
                try await server.requireRead(request, entity: key.entity)
                let q = try HistoryQuery(request)
                var metrics = q.metrics
                if metrics.isEmpty {
                    guard let detail = try await server.store.run(key) else { throw ServerError(.notFound, "no run \(key)") }
                    metrics = detail.metrics.map(\.name).filter { !$0.hasPrefix("_") }
                }
                var w = JSONWriter(capacity: 64 * 1024)
                w.raw("{\"run\":"); w.string(key.run)
                w.raw(",\"branch\":\(q.branch),\"points\":\(q.points),\"metrics\":{")
                for (i, m) in metrics.enumerated() {
                    let chunks = try await server.store.chunks(key, metric: m, branch: q.branch, range: q.range)
                    let series: Series
                    do { series = try Downsampler.series(chunks, range: q.range, points: q.points) } catch {
                        throw ServerError(.storage, "\(error)")
                    }
                    if i > 0 { w.raw(",") }
                    w.string(m)
                    w.raw(":")
                    writeSeries(series, into: &w)
                }
                w.raw("}}")
                return Responses.json(w.out)
            }
        }

        router.get("/api/v1/runs/:entity/:project/:run/frames") { request, context in
            await Responses.guarded(server.logger) {
                let key = try runKey(context)
                try await server.requireRead(request, entity: key.entity)
                let after = request.query("after").flatMap(UInt64.init) ?? 0
                let limit = min(max(request.query("limit").flatMap(Int.init) ?? 64, 1), 1024)
                let frames = try await server.store.frames(key, after: after, limit: limit)
                var buffer = ByteBuffer()
                for f in frames { buffer.writeBytes(f.bytes) }
                var headers: HTTPFields = [.contentType: Ingest.contentType]
                if let last = frames.last { headers[HTTPField.Name("X-RunLog-Last")!] = String(last.sequence) }
                return Response(status: .ok, headers: headers, body: .init(byteBuffer: buffer))
            }
        }
    }

    static func runKey(_ context: BasicRequestContext) throws -> RunKey {
        RunKey(entity: try context.name("entity"), project: try context.name("project"), run: try context.name("run"))
    }

    struct HistoryQuery {
        var metrics: [String]
        var range: ClosedRange<Int64>
        var points: Int
        var branch: UInt32

        init(_ request: Request) throws(ServerError) {
            metrics = (request.query("metrics") ?? request.query("metric") ?? "").split(separator: ",").map(String.init).filter { !$0.isEmpty }
            func int(_ name: String) throws(ServerError) -> Int64? {
                guard let s = request.query(name).nonEmpty else { return nil }
                guard let v = Int64(s) else { throw ServerError(.badRequest, "\(name) must be an integer") }
                return v
            }
            let lo = try int("min_step") ?? .min, hi = try int("max_step") ?? .max
            guard lo <= hi else { throw ServerError(.badRequest, "min_step is above max_step") }
            range = lo...hi
            let p = try int("points") ?? 1000
            guard p >= 1 else { throw ServerError(.badRequest, "points must be at least 1") }
            points = Int(min(p, Int64(ReadAPI.maxPoints)))
            let b = try int("branch") ?? 0
            guard b >= 0, b <= Int64(UInt32.max) else { throw ServerError(.badRequest, "bad branch") }
            branch = UInt32(b)
        }
    }

    static func writeSeries(_ s: Series, into w: inout JSONWriter) {
        w.raw("{\"count\":\(s.total),\"sampled\":\(s.sampled),\"steps\":")
        w.ints(s.steps)
        if let g = s.generic {
            w.raw(",\"values\":")
            w.value(.array(g))
        } else {
            w.raw(",\"values\":"); w.doubles(s.values)
            w.raw(",\"min\":"); w.doubles(s.mins)
            w.raw(",\"max\":"); w.doubles(s.maxs)
        }
        w.raw("}")
    }

    static func writeMetrics(_ metrics: [MetricInfo], into w: inout JSONWriter) {
        w.raw("[")
        for (i, m) in metrics.enumerated() {
            if i > 0 { w.raw(",") }
            w.raw("{\"name\":"); w.string(m.name)
            w.raw(",\"count\":\(m.count),\"first_step\":\(m.firstStep),\"last_step\":\(m.lastStep)}")
        }
        w.raw("]")
    }

    static func writeRun(_ info: RunInfo, detail: RunDetail?, into w: inout JSONWriter) {
        let r = info.run
        w.raw("{\"entity\":"); w.string(info.key.entity)
        w.raw(",\"project\":"); w.string(info.key.project)
        w.raw(",\"id\":"); w.string(info.key.run)
        w.raw(",\"name\":"); w.string(r.name ?? info.key.run)
        w.raw(",\"state\":"); w.string(r.state)
        w.raw(",\"group\":"); w.optional(r.group)
        w.raw(",\"job_type\":"); w.optional(r.jobType)
        w.raw(",\"notes\":"); w.optional(r.metadata["notes"]?.stringValue)
        w.raw(",\"tags\":"); w.strings(r.tags)
        w.raw(",\"config\":"); w.object(r.config)
        w.raw(",\"summary\":"); w.object(r.summary)
        w.raw(",\"created\":\(info.created),\"updated\":\(info.updated)")
        w.raw(",\"last_step\":"); if let s = r.lastStep { w.number(s) } else { w.raw("null") }
        w.raw(",\"history_rows\":\(r.historyRows),\"acknowledged\":\(r.acknowledged)")
        w.raw(",\"fork\":")
        if let f = r.fork {
            w.raw("{\"source\":"); w.string(f.sourceID)
            w.raw(",\"project\":"); w.string(f.sourceProject ?? info.key.project)
            w.raw(",\"step\":\(f.step)}")
        } else {
            w.raw("null")
        }
        guard let detail else { w.raw("}"); return }
        w.raw(",\"metadata\":"); w.object(r.metadata)
        w.raw(",\"forks\":[")
        for (i, c) in detail.forks.enumerated() {
            if i > 0 { w.raw(",") }
            w.raw("{\"project\":"); w.string(c.project); w.raw(",\"id\":"); w.string(c.run); w.raw(",\"step\":\(c.step)}")
        }
        w.raw("],\"rewinds\":[")
        for (i, rw) in detail.rewinds.enumerated() {
            if i > 0 { w.raw(",") }
            w.raw("{\"step\":\(rw.step),\"branch\":\(rw.branch),\"t\":\(rw.timestamp),\"sequence\":\(rw.sequence)}")
        }
        w.raw("],\"files\":[")
        for (i, f) in detail.files.enumerated() {
            if i > 0 { w.raw(",") }
            w.raw("{\"path\":"); w.string(f.path); w.raw(",\"size\":\(f.size),\"digest\":"); w.string(f.digest)
            w.raw(",\"policy\":"); w.string(f.policy); w.raw(",\"t\":\(f.timestamp)}")
        }
        w.raw("],\"metrics\":")
        writeMetrics(detail.metrics, into: &w)
        w.raw(",\"frames\":\(detail.storedFrames)}")
    }
}

/// Sorting runs by a field or a summary/config value (`summary.loss`, `config.lr`, `name`,
/// `created`, `updated`, `state`, `last_step`). Runs without the value come last either way.
enum RunSort {
    static func sorted(_ runs: [RunInfo], by field: String, descending: Bool) -> [RunInfo] {
        let keyed = runs.map { (run: $0, key: sortKey($0, field)) }
        let (with, without) = (keyed.filter { $0.key != nil }, keyed.filter { $0.key == nil })
        let ordered = with.sorted { a, b in
            let (x, y) = (a.key!, b.key!)
            return descending ? y < x : x < y
        }
        return ordered.map(\.run) + without.map(\.run)
    }

    enum Key: Comparable {
        case number(Double)
        case text(String)
    }

    static func sortKey(_ r: RunInfo, _ field: String) -> Key? {
        switch field {
        case "name": return .text(r.run.name ?? r.key.run)
        case "id": return .text(r.key.run)
        case "state": return .text(r.run.state)
        case "created": return .number(Double(r.created))
        case "updated": return .number(Double(r.updated))
        case "last_step": return r.run.lastStep.map { .number(Double($0)) }
        default: break
        }
        let source: [String: Value]
        let path: Substring
        if field.hasPrefix("summary.") { source = r.run.summary; path = field.dropFirst(8) }
        else if field.hasPrefix("config.") { source = r.run.config; path = field.dropFirst(7) }
        else { source = r.run.summary; path = field[...] }
        guard let v = lookup(source, String(path)) else { return nil }
        switch v {
        case .int(let i): return .number(Double(i))
        case .double(let d): return d.isNaN ? nil : .number(d)
        case .bool(let b): return .number(b ? 1 : 0)
        // Non-finite numbers come back from JSON as these strings.
        case .string("NaN"): return nil
        case .string("Infinity"): return .number(.infinity)
        case .string("-Infinity"): return .number(-.infinity)
        case .string(let s): return .text(s)
        default: return nil
        }
    }

    /// A key as is, or else a dotted path into nested objects.
    static func lookup(_ o: [String: Value], _ path: String) -> Value? {
        if let v = o[path] { return v }
        var current: Value = .object(o)
        for part in path.split(separator: ".") {
            guard let next = current[String(part)] else { return nil }
            current = next
        }
        return current
    }
}

extension Optional where Wrapped == String {
    var nonEmpty: String? {
        guard let s = self, !s.isEmpty else { return nil }
        return s
    }
}
