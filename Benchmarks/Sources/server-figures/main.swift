// server-figures: the server's ingest throughput and chart-query latency, through
// `ServerBenchmark.run(options:logger:)` (module RunLogServer), for SQLite (a temp file) and,
// when $RUNLOG_BENCH_POSTGRES_URL is set, PostgreSQL.
//
//   swift run -c release --package-path Benchmarks server-figures [--rows N] [--repeats N] [--metrics N]
//   RUNLOG_BENCH_POSTGRES_URL=postgres://runlog:runlog@127.0.0.1:5432/runlog_bench swift run -c release --package-path Benchmarks server-figures
//
// Each configuration (backend × W64/W32) runs `--repeats` times (default 3); the table gives
// the median run and the spread. What ServerBenchmark measures (see its doc comment): a run of
// N rows × 10 doubles written with LogWriter at its defaults and read back as stored frames;
// ingest is timed from the request bodies' bytes (4 frames per request) to the committed
// transactions (split, checksums, decode, chunking, storage; SQLite with synchronous=FULL); the
// chart query reads one metric's chunks over the whole run, downsamples to 1,000 points and
// writes the JSON (30 repeats, median and p95).
import BenchCLI
import Foundation
import Logging
import RunLogServer


let args = Array(CommandLine.arguments.dropFirst())

let rows = intOption("--rows", 1_000_000)
let repeats = max(1, intOption("--repeats", 3))
let metrics = intOption("--metrics", 10)
let postgres = ProcessInfo.processInfo.environment["RUNLOG_BENCH_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : $0 }

var logger = Logger(label: "runlog.server.bench")
logger.logLevel = .warning

func ms(_ x: Double) -> String { String(format: "%.2f ms", x) }
func median<T>(_ a: [T], by key: (T) -> Double) -> T { a.sorted { key($0) < key($1) }[a.count / 2] }

var command = "swift run -c release --package-path Benchmarks server-figures"
if rows != 1_000_000 { command += " --rows \(rows)" }
if repeats != 3 { command += " --repeats \(repeats)" }
if metrics != 10 { command += " --metrics \(metrics)" }

var backends: [(name: String, database: String?, command: String)] = [("SQLite", nil, command)]
if let postgres {
    let redacted = postgres.replacingOccurrences(of: #"//[^@/]*@"#, with: "//…@", options: .regularExpression)
    backends.append(("PostgreSQL", postgres, "RUNLOG_BENCH_POSTGRES_URL=\(redacted) " + command))
}

var lines: [String] = []
var notes: [String] = []
for backend in backends {
    for float32 in [false, true] {
        let w = float32 ? "W32" : "W64"
        var results: [ServerBenchmark.Result] = []
        for r in 0..<repeats {
            var options = ServerBenchmark.Options()
            options.rows = rows
            options.metrics = metrics
            options.float32 = float32
            options.database = backend.database
            say("server-figures: \(backend.name) \(w) run \(r + 1)/\(repeats) …")
            let result = try await ServerBenchmark.run(options: options, logger: logger)
            say("  \(result)")
            results.append(result)
        }
        let m = median(results) { $0.rowsPerSecond }
        let spread = results.map { rate($0.rowsPerSecond) }.joined(separator: ", ")
        let chart = median(results) { $0.chartMedianMilliseconds }
        let target = backend.name == "SQLite" ? 1_000_000.0 : nil
        lines.append("| \(backend.name) | ingest \(w), \(metrics) metrics, \(rows) rows, frames as stored (\(m.frames) frames, 4 per request) | "
                     + "\(rate(m.rowsPerSecond)) rows/s (runs: \(spread)) | \(target.map { "≥ \(rate($0)) rows/s" } ?? "—") | "
                     + "\(target.map { m.rowsPerSecond >= $0 ? "yes" : "**no**" } ?? "") | `\(backend.command)` |")
        lines.append("| \(backend.name) | … check+decode alone (one core); store alone, \(w) | "
                     + "\(String(format: "%.3f", m.decodeSeconds)) s (\(rate(Double(rows) / m.decodeSeconds)) rows/s); "
                     + "\(String(format: "%.3f", m.storeSeconds)) s (\(rate(Double(rows) / m.storeSeconds)) rows/s) |  |  | `\(backend.command)` |")
        lines.append("| \(backend.name) | first read of the run's metrics after the ingest (SQLite builds its chart chunks from the frames then), \(w) | "
                     + "\(String(format: "%.3f", m.firstReadSeconds)) s (\(rate(Double(rows) / m.firstReadSeconds)) rows/s) |  |  | `\(backend.command)` |")
        lines.append("| \(backend.name) | chart query: \(chart.chartPoints) points over \(rows) steps of one metric (\(chart.chartChunks) chunks), \(w) | "
                     + "median \(ms(chart.chartMedianMilliseconds)), p95 \(ms(chart.chartP95Milliseconds)) | < 50 ms | "
                     + "\(chart.chartP95Milliseconds < 50 ? "yes" : "**no**") | `\(backend.command)` |")
        notes.append("- \(backend.name) \(w): frames \(m.frameBytes / 1024) KiB as stored (\(String(format: "%.2f", Double(m.frameBytes) / Double(rows))) bytes/row), "
                     + "history chunks \(m.chunkBytes / 1024) KiB (\(String(format: "%.2f", Double(m.chunkBytes) / Double(rows))) bytes/row)")
    }
}

out("""
Server ingest and chart query (`ServerBenchmark.run`, module RunLogServer), release build, \(ProcessInfo.processInfo.activeProcessorCount) cores; \
\(metrics) doubles per row (ServerBenchmark's own random walks; W32 = `float32: true`), median of \(repeats) runs.

| backend | figure | measured | target | met | command |
|---|---|---|---|---|---|

""" + lines.joined(separator: "\n") + "\n\n" + notes.joined(separator: "\n"))
