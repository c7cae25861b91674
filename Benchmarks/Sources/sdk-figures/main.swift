// sdk-figures: the cost of `Run.log` for workload W (10 metrics), through the public SDK.
//
//   swift run -c release --package-path Benchmarks sdk-figures                   # 1,000,000 steps, the table
//   swift run -c release --package-path Benchmarks sdk-figures --steps 100000 --json   # one JSON line (wandb-side-by-side/run.sh)
//   Benchmarks/.build/release/sdk-figures --profile 1000000                       # only the log loop, for perf / callgrind
//
// Opens an offline run (`Run.start(mode: .offline)`, default settings otherwise) in a temp
// directory under $RUNLOG_BENCH_DIR or the system temp dir, logs one `[String: Double]` of the
// 10 workload-W metrics per step, and measures:
//   - each `run.log(dict)` call alone, with CLOCK_MONOTONIC read before and after it (the clock's
//     own cost, measured back to back, is printed and NOT subtracted); the dictionary is built
//     before the first clock read, so the caller's dictionary is not part of the figure;
//   - the same calls in batches of 100 (one clock pair per 100 calls, divided by 100), as a check
//     that the clock does not dominate;
//   - building the dictionary alone (the caller's share, no run involved);
//   - bytes/step of the run directory after `finish`, and the process's peak RSS (VmHWM).
import BenchCLI
import Foundation
import RunLog
import RunLogStore
import StoreScenarios
import Workload


let args = Array(CommandLine.arguments.dropFirst())

@inline(__always) func nanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

func ns(_ x: Double) -> String { x < 10_000 ? String(format: "%.0f ns", x) : String(format: "%.1f µs", x / 1000) }

/// One step's dictionary, as a training loop builds it: `["loss": …, "acc": …, …]`.
@inline(__always) func dictionary(_ v: UnsafeBufferPointer<Double>) -> [String: Double] {
    var d = [String: Double](minimumCapacity: Workload.metricCount)
    for j in 0..<Workload.metricCount { d[Workload.names[j]] = v[j] }
    return d
}

func startRun(_ dir: String) throws -> Run {
    var settings = Settings()
    settings.handleSignals = false
    settings.environment = [:]  // no WANDB_*/RUNLOG_* from the caller's shell
    return try Run.start(project: "bench", dir: dir, name: "sdk-figures", config: ["workload": "W64"], mode: .offline,
                         settings: settings)
}

// MARK: --profile N: only the log loop (dictionary built per step), for perf record / callgrind.

if let n = option("--profile").flatMap({ Int($0.replacingOccurrences(of: "_", with: "")) }) {
    let scratch = try Scratch("sdk-profile")
    let run = try startRun(scratch.path)
    var g = WorkloadGenerator(steps: n)
    var v = [Double](repeating: 0, count: Workload.metricCount)
    let t0 = Stopwatch.now
    while g.next(into: &v) != nil {
        let d = v.withUnsafeBufferPointer { dictionary($0) }
        try run.log(d)
    }
    let t1 = Stopwatch.now
    try run.finish()
    scratch.remove()  // (exit() below skips defers)
    out("profile: \(n) steps (dictionary + log) in \(String(format: "%.3f", t1 - t0)) s = \(ns((t1 - t0) / Double(n) * 1e9))/step")
    exit(0)
}

// MARK: The measurement.

let steps = intOption("--steps", 1_000_000)
let json = args.contains("--json")
let keep = args.contains("--keep")
let batch = 100
/// --slow: list every call over 100 µs (step, position in the frame, monotonic time), to match against `strace -T -tt`.
let listSlow = args.contains("--slow")

struct Figures {
    var steps = 0
    var perCall: [UInt64] = []          // ns per call, clock pair included
    var batchMeans: [Double] = []       // ns per call, per batch of 100
    var over100us = 0, over1ms = 0
    var maxCall: UInt64 = 0
    var wallSeconds = 0.0               // whole loop, dictionary building included
    var logSeconds = 0.0                // sum of the timed log calls
    var finishSeconds = 0.0
    var startSeconds = 0.0
    var runBytes: UInt64 = 0, logBytes: UInt64 = 0
    var rssStart: UInt64 = 0, rssTenth: UInt64 = 0, peak: UInt64 = 0
    var cpuSeconds = 0.0
}

/// Median cost of one clock read (the floor under every per-call figure).
func clockCost() -> Double {
    var samples: [UInt64] = []
    for _ in 0..<200_000 { let a = nanos(); let b = nanos(); samples.append(b &- a) }
    samples.sort()
    return Double(samples[samples.count / 2])
}

/// Building the [String: Double] alone: the caller's share, outside every timed log call.
func dictionaryCost(_ n: Int) -> Double {
    var g = WorkloadGenerator(steps: n)
    var v = [Double](repeating: 0, count: Workload.metricCount)
    var sink = 0.0
    let t0 = nanos()
    while g.next(into: &v) != nil { sink += v.withUnsafeBufferPointer { dictionary($0) }["loss"]! }
    let genT0 = nanos()
    var g2 = WorkloadGenerator(steps: n)
    while g2.next(into: &v) != nil { sink += v[0] }
    let genT1 = nanos()
    if sink == .infinity { print(sink) }
    return (Double(genT0 - t0) - Double(genT1 - genT0)) / Double(n)
}

func measure(steps: Int) throws -> Figures {
    var f = Figures()
    f.steps = steps
    let scratch = try Scratch("sdk")
    defer { if keep { say("kept \(scratch.path)") } else { scratch.remove() } }
    f.rssStart = ProcessMemory.resident
    let s0 = nanos()
    let run = try startRun(scratch.path)
    f.startSeconds = Double(nanos() - s0) / 1e9
    var g = WorkloadGenerator(steps: steps)
    var v = [Double](repeating: 0, count: Workload.metricCount)
    f.perCall.reserveCapacity(steps)
    f.batchMeans.reserveCapacity(steps / batch + 1)
    let cpu0 = Stopwatch.processCPU
    let w0 = nanos()
    var i = 0
    // Alternating: 1,000 steps timed call by call, then 1,000 steps in batches of 100 (ten
    // dictionaries built first, untimed), so that both see the same state of the writer.
    var pre: [[String: Double]] = []
    pre.reserveCapacity(batch)
    while i < steps {
        let perCallEnd = min(steps, i + 1000)
        while i < perCallEnd, g.next(into: &v) != nil {
            let d = v.withUnsafeBufferPointer { dictionary($0) }
            let a = nanos()
            try run.log(d)
            let b = nanos()
            let dt = b &- a
            f.perCall.append(dt)
            if dt > 100_000, listSlow { say("slow call: step \(i) (row \(i % 8192) of an 8,192-row frame) took \(ns(Double(dt))) at t=\(String(format: "%.6f", Double(a) / 1e9))") }
            f.logSeconds += Double(dt) / 1e9
            i += 1
        }
        if f.rssTenth == 0, i >= steps / 10 { f.rssTenth = ProcessMemory.resident }
        let batchEnd = min(steps, i + 1000)
        while i + batch <= batchEnd {
            pre.removeAll(keepingCapacity: true)
            for _ in 0..<batch {
                _ = g.next(into: &v)
                pre.append(v.withUnsafeBufferPointer { dictionary($0) })
            }
            let a = nanos()
            for d in pre { try run.log(d) }
            let b = nanos()
            f.batchMeans.append(Double(b &- a) / Double(batch))
            f.logSeconds += Double(b &- a) / 1e9
            i += batch
        }
        while i < batchEnd, g.next(into: &v) != nil {  // a tail shorter than one batch
            let d = v.withUnsafeBufferPointer { dictionary($0) }
            let a = nanos()
            try run.log(d)
            f.perCall.append(nanos() &- a)
            i += 1
        }
    }
    f.wallSeconds = Double(nanos() - w0) / 1e9
    let fin0 = nanos()
    try run.finish()
    f.finishSeconds = Double(nanos() - fin0) / 1e9
    f.cpuSeconds = Stopwatch.processCPU - cpu0
    f.peak = ProcessMemory.peakResident
    guard let dir = run.directory else { throw ScenarioError("the run has no directory") }
    f.runBytes = FileSystemInfo.treeSize(dir)
    f.logBytes = FileSystemInfo.size(RunDirectory.logPath(dir))
    // Check that every step is in the log.
    let reader = try RunDirectory.reader(dir)
    defer { reader.close() }
    let last = try reader.lastLiveStep() ?? -1
    guard last == Int64(steps - 1) else { throw ScenarioError("the log's last step is \(last), expected \(steps - 1)") }
    f.perCall.sort()
    for t in f.perCall { if t > 100_000 { f.over100us += 1 }; if t > 1_000_000 { f.over1ms += 1 } }
    f.maxCall = f.perCall.last ?? 0
    return f
}

func pct(_ a: [UInt64], _ p: Double) -> Double {
    guard !a.isEmpty else { return .nan }
    return Double(a[min(a.count - 1, Int((p / 100 * Double(a.count - 1)).rounded()))])
}

say("sdk-figures: \(steps) steps of workload W (10 metrics, W64) through Run.log …")
// (Skipped with --json, so that the whole process's time and RSS are the run's alone.)
let clock = json ? 0 : clockCost()
let dictNs = json ? 0 : dictionaryCost(min(steps, 200_000))
let f = try measure(steps: steps)
let p50 = pct(f.perCall, 50), p99 = pct(f.perCall, 99), p999 = pct(f.perCall, 99.9)
let batchP50 = f.batchMeans.median, batchP99 = f.batchMeans.percentile(99)
let bytesPerStep = Double(f.runBytes) / Double(steps)

if json {
    // One line for wandb-side-by-side/run.sh.
    out("{\"steps\":\(steps),\"log_p50_ns\":\(p50),\"log_p99_ns\":\(p99),\"batch_p50_ns\":\(batchP50)," + "\"start_seconds\":\(f.startSeconds),\"loop_seconds\":\(f.wallSeconds),\"finish_seconds\":\(f.finishSeconds),"
        + "\"run_bytes\":\(f.runBytes),\"log_bytes\":\(f.logBytes),\"bytes_per_step\":\(bytesPerStep),\"peak_rss\":\(f.peak)}")
    exit(0)
}

let cmd = "swift run -c release --package-path Benchmarks sdk-figures" + (steps == 1_000_000 ? "" : " --steps \(steps)")
let per = f.perCall.count, batches = f.batchMeans.count * batch
let c = "`\(cmd)`"
out("""
Workload W (10 metrics, W64), one `run.log([String: Double])` per step, offline run with default settings, release build, \(ProcessInfo.processInfo.activeProcessorCount) cores; \
\(per) calls timed one by one (CLOCK_MONOTONIC around each, clock read \(ns(clock)), not subtracted), \(batches) in batches of \(batch) (one clock pair per batch).

| figure | measured | target | met | command |
|---|---|---|---|---|
| `log` of a 10-metric dictionary, per call: median | \(ns(p50)) | ≤ 1 µs | \(p50 <= 1000 ? "yes" : "**no**") | \(c) |
| … per call: p99 / p99.9 / max | \(ns(p99)) / \(ns(p999)) / \(ns(Double(f.maxCall))) | never waits on disk | \(f.over1ms == 0 ? "yes" : "**no**") (\(f.over100us) calls > 100 µs, \(f.over1ms) > 1 ms) | \(c) |
| … batches of \(batch) calls ÷ \(batch): median, p99 | \(ns(batchP50)), \(ns(batchP99)) | ≤ 1 µs | \(batchP50 <= 1000 ? "yes" : "**no**") | \(c) |
| building the caller's 10-key `[String: Double]` alone (not in the figures above) | \(ns(dictNs)) |  |  | \(c) |
| whole loop (generator + dictionary + `log`) for \(steps) steps; `finish` | \(String(format: "%.3f", f.wallSeconds)) s (\(String(format: "%.0f", Double(steps) / f.wallSeconds)) steps/s); \(String(format: "%.1f", f.finishSeconds * 1e3)) ms |  |  | \(c) |
| process CPU per step, all threads (the writer's flusher included) | \(ns(f.cpuSeconds / Double(steps) * 1e9)) |  |  | \(c) |
| run directory on disk after `finish`, bytes/step (log alone) | \(String(format: "%.2f", bytesPerStep)) (\(String(format: "%.2f", Double(f.logBytes) / Double(steps)))) |  |  | \(c) |
| peak RSS (VmHWM), whole process; RSS before `Run.start`, at 10% of the steps | \(mib(f.peak)); \(mib(f.rssStart)), \(mib(f.rssTenth)) | bounded | \(f.peak < f.rssStart + 64 << 20 ? "yes" : "**no**") | \(c) |
""")
