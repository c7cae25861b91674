import Foundation
import Logging
import RunLogStore

/// Server figures, independent of the CLI and of HTTP: ingest throughput into a store and
/// the latency of a downsampled chart query. For the benchmark package (or
/// `runlog server bench`, if the CLI wires it) to call.
///
/// The frames are real: a run of `rows` steps, each `metrics` doubles (random walks, as a
/// training loop logs them), is written with `LogWriter` at its defaults (16,384 rows per
/// frame, zstd level 1) and read back with `LogReader.storedFrame`, so ingest sees frames
/// exactly as stored. Ingest is timed from the request body's bytes to the committed
/// transaction: split and checksum, decode, and the storage transaction (SQLite with
/// `synchronous=FULL`; PostgreSQL also builds the chart chunks in it, SQLite on the first
/// read, timed apart), `framesPerRequest` frames per request, one run after the other.
public enum ServerBenchmark {
    public struct Options: Sendable {
        /// History rows (steps) of the run. Default 1,000,000.
        public var rows = 1_000_000
        /// Doubles per row. Default 10.
        public var metrics = 10
        /// Round every value through `Float`, as a float32 tensor's `item()` gives it (the
        /// common case in training loops). Default false: full doubles, the worst case.
        public var float32 = false
        /// Frames per ingest request. Default 4.
        public var framesPerRequest = 4
        /// Runs ingested concurrently (each its own copy of the frames). Default 1.
        public var concurrentRuns = 1
        /// A SQLite path or `postgres://` URL; nil for a new SQLite file in a temporary directory.
        public var database: String?
        /// Points of the chart query. Default 1,000.
        public var chartPoints = 1000
        /// Times the chart query is repeated. Default 30.
        public var chartRepeats = 30
        public init() {}
    }

    public struct Result: Sendable, CustomStringConvertible {
        public var backend: String
        public var rows: Int
        public var metrics: Int
        public var frames: Int
        public var frameBytes: Int
        /// Bytes of the history chunks stored for one run (steps and values blobs).
        public var chunkBytes: Int
        public var ingestSeconds: Double
        /// One run's requests split, checked and decoded on one core, without storing.
        public var decodeSeconds: Double
        /// The same requests, decoded beforehand, stored.
        public var storeSeconds: Double
        /// The first read of the run's metrics after the ingest (SQLite builds the run's
        /// history chunks from its frames then; PostgreSQL built them during the ingest).
        public var firstReadSeconds: Double
        public var rowsPerSecond: Double { Double(rows) / ingestSeconds }
        public var chartMedianMilliseconds: Double
        public var chartP95Milliseconds: Double
        public var chartChunks: Int
        public var chartPoints: Int

        public var description: String {
            """
            backend \(backend): ingest \(rows) rows × \(metrics) metrics in \(frames) frames (\(frameBytes / 1024) KiB as stored, \
            \(chunkBytes / 1024) KiB of chunks) \
            in \(String(format: "%.3f", ingestSeconds)) s = \(Int(rowsPerSecond)) rows/s \
            (one run's check+decode alone on one core \(String(format: "%.3f", decodeSeconds)) s, store alone \(String(format: "%.3f", storeSeconds)) s); \
            chart query (\(chartPoints) points over \(rows) steps, \(chartChunks) chunks): \
            median \(String(format: "%.2f", chartMedianMilliseconds)) ms, p95 \(String(format: "%.2f", chartP95Milliseconds)) ms
            """
        }
    }

    /// Runs the benchmark and returns its figures.
    public static func run(options: Options = Options(), logger: Logger = Logger(label: "runlog.server.bench")) async throws -> Result {
        let temp = FileManager.default.temporaryDirectory.appendingPathComponent("runlog-server-bench-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: temp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: temp) }
        let frames = try makeFrames(directory: temp + "/run", rows: options.rows, metrics: options.metrics, float32: options.float32)
        let database = options.database ?? temp + "/bench.db"
        let suffix = String(UInt64.random(in: 0..<UInt64.max), radix: 36)
        let entity = "bench-\(suffix)"
        return try await withServerStore(database: database, logger: logger) { store in
            _ = try await store.ensureAccount(user: entity, entity: entity)
            var bodies: [(after: UInt64, body: [UInt8])] = []
            var after: UInt64 = 0
            for group in stride(from: 0, to: frames.count, by: max(options.framesPerRequest, 1)) {
                let slice = frames[group..<min(group + max(options.framesPerRequest, 1), frames.count)]
                bodies.append((after, slice.flatMap(\.bytes)))
                after = slice.last!.sequence
            }
            let requests = bodies
            let clock = ContinuousClock()
            let start = clock.now
            try await withThrowingTaskGroup(of: Void.self) { group in
                for r in 0..<max(options.concurrentRuns, 1) {
                    group.addTask {
                        let key = RunKey(entity: entity, project: "bench", run: "run\(r)")
                        for (after, body) in requests {
                            let frames = try Ingest.split(body)
                            guard case .stored = try await Ingest.ingest(frames, into: store, key, after: after) else {
                                throw ServerError(.conflict, "benchmark ingest was refused")
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
            let seconds = (clock.now - start).seconds
            // The first read of the run's metrics: on SQLite it builds the run's chunks.
            let readStart = clock.now
            let metricsRead = try await store.run(RunKey(entity: entity, project: "bench", run: "run0"))?.metrics ?? []
            let firstReadSeconds = (clock.now - readStart).seconds
            var chunkBytes = 0
            for m in metricsRead {
                for c in try await store.chunks(RunKey(entity: entity, project: "bench", run: "run0"), metric: m.name, branch: 0, range: .min ... .max) {
                    chunkBytes += c.steps.count + c.values.count
                }
            }
            // The same work split in two: checking and decoding alone (one core), then storing
            // alone (into another run).
            let decodeStart = clock.now
            var prepared: [(after: UInt64, frames: FrameFeed)] = []
            for (after, body) in requests { prepared.append((after, try Ingest.prepare(body))) }
            let decodeSeconds = (clock.now - decodeStart).seconds
            let storeStart = clock.now
            for (after, frames) in prepared {
                _ = try await store.ingest(RunKey(entity: entity, project: "bench", run: "split"), after: after, frames: frames)
            }
            let storeSeconds = (clock.now - storeStart).seconds
            let key = RunKey(entity: entity, project: "bench", run: "run0")
            var latencies: [Double] = []
            var chunkCount = 0
            var pointCount = 0
            for _ in 0..<max(options.chartRepeats, 1) {
                let t0 = clock.now
                let chunks = try await store.chunks(key, metric: "m0", branch: 0, range: Int64.min...Int64.max)
                let series = try Downsampler.series(chunks, range: Int64.min...Int64.max, points: options.chartPoints)
                var w = JSONWriter(capacity: 64 * 1024)
                ReadAPI.writeSeries(series, into: &w)
                latencies.append((clock.now - t0).seconds * 1000)
                chunkCount = chunks.count
                pointCount = series.steps.count
                precondition(!w.out.isEmpty)
            }
            latencies.sort()
            return Result(
                backend: store.backend, rows: options.rows * max(options.concurrentRuns, 1), metrics: options.metrics, frames: frames.count,
                frameBytes: frames.reduce(0) { $0 + $1.bytes.count }, chunkBytes: chunkBytes, ingestSeconds: seconds,
                decodeSeconds: decodeSeconds, storeSeconds: storeSeconds, firstReadSeconds: firstReadSeconds,
                chartMedianMilliseconds: latencies[latencies.count / 2],
                chartP95Milliseconds: latencies[min(latencies.count - 1, latencies.count * 95 / 100)],
                chartChunks: chunkCount, chartPoints: pointCount)
        }
    }

    /// Writes a run with `LogWriter` and returns its frames as stored.
    static func makeFrames(directory: String, rows: Int, metrics: Int, float32: Bool = false) throws -> [(sequence: UInt64, bytes: [UInt8])] {
        var config = LogWriter.Configuration()
        config.durability = .none
        let writer = try LogWriter.open(directory: directory, configuration: config)
        let keys = (0..<metrics).map { "m\($0)" }
        var values = [Double](repeating: 0, count: metrics)
        var rng = SplitMix64(seed: 12345)
        try writer.append(.runMetadata(RunMetadata(["id": "bench", "name": "bench"])))
        try writer.append(.config(ConfigChange(values: ["lr": 0.001, "batch_size": 64])))
        let t0 = nowMicros()
        for step in 0..<rows {
            for i in 0..<metrics { values[i] += Double.random(in: -0.01...0.01, using: &rng) * Double(i + 1) }
            let row = float32 ? values.map { Double(Float($0)) } : values
            try writer.appendRow(step: Int64(step), timestamp: t0 + Int64(step) * 1000, keys: keys, doubles: row)
        }
        try writer.close()
        let reader = try LogReader(path: RunDirectory.logPath(directory))
        defer { reader.close() }
        return try reader.frames.map { (sequence: $0.header.sequence, bytes: try reader.storedFrame($0)) }
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

