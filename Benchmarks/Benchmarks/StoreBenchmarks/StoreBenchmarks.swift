// package-benchmark suite for the RunLog store under workload W (shared/bench/WORKLOAD.md).
//
//   swift package --package-path Benchmarks benchmark                       # all
//   swift package --package-path Benchmarks benchmark --filter 'Append.*'   # some
//
// package-benchmark runs every benchmark in its own process. The 10M-step log that the
// open/seek/rewind/fork benchmarks share is built once (by whichever runs first) under
// $RUNLOG_BENCH_DIR or the system temp directory, and rebuilt when the benchmark binary changes.
// Custom metrics: `steps/s`, and bytes/step in thousandths (`mB/step`: 61_630 = 61.63 bytes).
import Benchmark
import Foundation
import RunLogStore
import StoreScenarios
import Workload

let appendSteps = 1_000_000
let largeSteps = 10_000_000
let middle = Int64(largeSteps / 2)

let stepsPerSecond = BenchmarkMetric.custom("steps/s", polarity: .prefersLarger, useScalingFactor: false)
let liveBytes = BenchmarkMetric.custom("live mB/step", polarity: .prefersSmaller, useScalingFactor: false)
let compactedBytes = BenchmarkMetric.custom("compacted mB/step", polarity: .prefersSmaller, useScalingFactor: false)
/// Print custom metrics as plain numbers (61_440 mB/step, not "61 K").
nonisolated(unsafe) let plainUnits: [BenchmarkMetric: BenchmarkUnits] = [stepsPerSecond: .kilo, liveBytes: .count, compactedBytes: .count]

/// Tables are generated lazily, once per process, outside any measurement.
final class Tables: @unchecked Sendable {
    static let shared = Tables()
    private let lock = NSLock()
    private var tables: [Workload.Precision: WorkloadTable] = [:]
    func table(_ p: Workload.Precision) -> WorkloadTable {
        lock.lock(); defer { lock.unlock() }
        if let t = tables[p] { return t }
        let t = WorkloadTable(steps: appendSteps, precision: p)
        tables[p] = t
        return t
    }
}

func fail(_ error: Error) -> Never { fatalError("\(error)") }

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .cpuTotal, .peakMemoryResident, .syscalls, .mallocCountTotal],
        timeUnits: .milliseconds,
        warmupIterations: 0,
        maxDuration: .seconds(20),
        maxIterations: 5
    )

    // MARK: Append throughput: 1M steps W64, default writer configuration, until flush() returns.

    // One iteration = 1M appends (scalingFactor .mega): throughput reads in M steps/s, wallClock per step.
    for path in Scenarios.AppendPath.allCases {
        Benchmark("Append W64 1M steps \(path == .fastPath ? "keys-doubles" : "dictionary")",
                  configuration: .init(metrics: Benchmark.defaultConfiguration.metrics + [stepsPerSecond], units: plainUnits,
                                       scalingFactor: .mega, maxIterations: 5)) { benchmark in
            let table = Tables.shared.table(.w64)
            let scratch = try Scratch("append")
            defer { scratch.remove() }
            benchmark.startMeasurement()
            let r = try Scenarios.write(table, to: scratch.sub("run"), path: path)
            benchmark.stopMeasurement()
            benchmark.measurement(stepsPerSecond, Int(r.stepsPerSecond))
        } setup: {
            _ = Tables.shared.table(.w64)
        }
    }

    // MARK: Bytes per step, live and after Compaction.compact (wallClock is the compaction's).

    for precision in Workload.Precision.allCases {
        Benchmark("Bytes per step \(precision) 1M steps (compaction timed)",
                  configuration: .init(metrics: [.wallClock, .peakMemoryResident, liveBytes, compactedBytes], units: plainUnits, maxDuration: .seconds(60), maxIterations: 2)) { benchmark in
            let scratch = try Scratch("bytes")
            defer { scratch.remove() }
            let dir = scratch.sub("run")
            let live = try Scenarios.write(Tables.shared.table(precision), to: dir)
            benchmark.startMeasurement()
            let c = try Scenarios.compact(dir)
            benchmark.stopMeasurement()
            benchmark.measurement(liveBytes, Int((Double(live.logBytes) / Double(live.steps) * 1000).rounded()))
            benchmark.measurement(compactedBytes, Int((Double(c.bytesAfter) / Double(live.steps) * 1000).rounded()))
        } setup: {
            _ = Tables.shared.table(precision)
        }
    }

    // MARK: Peak memory writing 10M steps W64 (generator inline, O(1) on the caller's side).

    Benchmark("Write 10M steps W64 peak memory",
              configuration: .init(metrics: [.wallClock, .peakMemoryResident, .peakMemoryResidentDelta, stepsPerSecond], units: plainUnits, maxIterations: 1)) { benchmark in
        let scratch = try Scratch("write10m")
        defer { scratch.remove() }
        benchmark.startMeasurement()
        let r = try Scenarios.writeStreaming(steps: largeSteps, precision: .w64, to: scratch.sub("run"))
        benchmark.stopMeasurement()
        benchmark.measurement(stepsPerSecond, Int(r.stepsPerSecond))
    }

    // MARK: Open + recovery of the 10M-step log with a torn tail (run.idx present).

    Benchmark("Open 10M torn tail LogReader",
              configuration: .init(metrics: [.wallClock, .syscalls, .readSyscalls], timeUnits: .microseconds, maxIterations: 20)) { benchmark, dir in
        try Scenarios.tearTail(dir)
        benchmark.startMeasurement()
        let reader = try LogReader(path: RunDirectory.logPath(dir))
        benchmark.stopMeasurement()
        precondition(reader.tornTailBytes > 0)
        reader.close()
        let w = try LogWriter.open(directory: dir)  // cut the tail again
        try w.close()
    } setup: {
        try copiedFixture("open-reader")
    } teardown: {
        removeCopiedFixtures("open-reader")
    }

    Benchmark("Open 10M torn tail LogWriter.open",
              configuration: .init(metrics: [.wallClock, .syscalls], timeUnits: .microseconds, maxIterations: 20)) { benchmark, dir in
        try Scenarios.tearTail(dir)
        benchmark.startMeasurement()
        let w = try LogWriter.open(directory: dir)
        benchmark.stopMeasurement()
        precondition(w.recoveredTornBytes > 0)
        try w.close()
    } setup: {
        try copiedFixture("open-writer")
    } teardown: {
        removeCopiedFixtures("open-writer")
    }

    // MARK: Seek in the 10M-step log.

    Benchmark("Seek row(atStep:) 10M",
              configuration: .init(metrics: [.wallClock, .mallocCountTotal], timeUnits: .microseconds, maxDuration: .seconds(10), maxIterations: 200)) { benchmark, reader in
        var rng = Xoshiro256StarStar(seed: UInt64(benchmark.currentIteration))
        let step = Int64(rng.next() % UInt64(largeSteps))
        benchmark.startMeasurement()
        let row = try reader.row(atStep: step)
        benchmark.stopMeasurement()
        precondition(row?.step == step)
    } setup: {
        try RunDirectory.reader(try SharedFixture.directory(steps: largeSteps, precision: .w64))
    }

    // MARK: Fork and rewind at the middle of the 10M-step log.

    Benchmark("Fork 10M at middle",
              configuration: .init(metrics: [.wallClock, .writeBytesLogical, .syscalls], maxIterations: 5)) { benchmark in
        let source = try SharedFixture.directory(steps: largeSteps, precision: .w64)
        let scratch = try Scratch("fork")
        defer { scratch.remove() }
        benchmark.startMeasurement()
        let r = try Scenarios.fork(source, atStep: middle, to: scratch.sub("fork"))
        benchmark.stopMeasurement()
        precondition(r.lastStep == middle)
    } setup: {
        _ = try SharedFixture.directory(steps: largeSteps, precision: .w64)
    }

    Benchmark("Rewind 10M at middle",
              configuration: .init(metrics: [.wallClock, .syscalls], timeUnits: .microseconds, maxIterations: 10)) { benchmark, dir in
        let writer = try LogWriter.open(directory: dir)
        benchmark.startMeasurement()
        let marker = try writer.rewind(toStep: middle - Int64(benchmark.currentIteration * 1000))
        benchmark.stopMeasurement()
        precondition(marker.cut != nil)
        try writer.close()
    } setup: {
        try copiedFixture("rewind")
    } teardown: {
        removeCopiedFixtures("rewind")
    }
}

/// A private copy of the shared 10M-step log for a benchmark that changes it.
func copiedFixture(_ name: String) throws -> String {
    let source = try SharedFixture.directory(steps: largeSteps, precision: .w64)
    let dir = source + "-copy-\(name)"
    try? FileManager.default.removeItem(atPath: dir)
    try SharedFixture.copyRun(source, to: dir)
    return dir
}

func removeCopiedFixtures(_ name: String) {
    guard let source = try? SharedFixture.directory(steps: largeSteps, precision: .w64) else { return }
    try? FileManager.default.removeItem(atPath: source + "-copy-\(name)")
}
