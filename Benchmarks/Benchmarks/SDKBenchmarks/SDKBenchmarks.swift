// package-benchmark suite for the SDK's `Run.log` under workload W (shared/bench/WORKLOAD.md).
//
//   swift package --package-path Benchmarks benchmark --target SDKBenchmarks
//
// One offline run per benchmark process (package-benchmark runs each benchmark in its own),
// opened in `setup` under $RUNLOG_BENCH_DIR or the system temp dir and finished in `teardown`.
// One scaled iteration is one `run.log` call (scalingFactor .kilo: 1,000 calls per measured
// iteration), so wallClock and cpuTotal read per call.
//
// - "Run.log W 10 metrics": 4,096 dictionaries of workload W built in setup, logged in turn
//   (the caller's dictionary is not part of the figure, as in `sdk-figures`).
// - "Run.log W 10 metrics + building the dictionary": each call's `[String: Double]` built
//   from a pre-generated workload table inside the loop, as a training loop does.
import Benchmark
import Foundation
import RunLog
import StoreScenarios
import Workload

/// The run and its inputs, created once per benchmark process.
final class SDKFixture: @unchecked Sendable {
    nonisolated(unsafe) static var current: SDKFixture?
    let scratch: Scratch
    let run: Run
    let dictionaries: [[String: Double]]
    let table: WorkloadTable

    init() throws {
        scratch = try Scratch("sdk-benchmark")
        var settings = Settings()
        settings.handleSignals = false
        settings.environment = [:]
        run = try Run.start(project: "bench", dir: scratch.path, name: "sdk-benchmark", mode: .offline, settings: settings)
        let table = WorkloadTable(steps: 1 << 16)
        self.table = table
        dictionaries = (0..<4096).map { i in table.withRow(i) { SDKFixture.dictionary($0) } }
    }

    @inline(__always) static func dictionary(_ v: UnsafeBufferPointer<Double>) -> [String: Double] {
        var d = [String: Double](minimumCapacity: Workload.metricCount)
        for j in 0..<Workload.metricCount { d[Workload.names[j]] = v[j] }
        return d
    }

    func finish() {
        try? run.finish()
        scratch.remove()
    }
}

let benchmarks: @Sendable () -> Void = {
    let configuration = Benchmark.Configuration(
        metrics: [.wallClock, .throughput, .peakMemoryResident, .mallocCountTotal],
        timeUnits: .nanoseconds,
        warmupIterations: 10,
        scalingFactor: .kilo,
        maxDuration: .seconds(10),
        maxIterations: 2_000,
        setup: { SDKFixture.current = try SDKFixture() },
        teardown: { SDKFixture.current?.finish(); SDKFixture.current = nil }
    )

    Benchmark("Run.log W 10 metrics", configuration: configuration) { benchmark in
        guard let f = SDKFixture.current else { fatalError("no fixture") }
        let run = f.run, dicts = f.dictionaries
        var i = Int.random(in: 0..<4096)
        for _ in benchmark.scaledIterations {
            try run.log(dicts[i & 4095])
            i &+= 1
        }
    }

    Benchmark("Run.log W 10 metrics + building the dictionary", configuration: configuration) { benchmark in
        guard let f = SDKFixture.current else { fatalError("no fixture") }
        let run = f.run, table = f.table
        var i = Int.random(in: 0..<table.steps)
        for _ in benchmark.scaledIterations {
            let d = table.withRow(i & (table.steps - 1)) { SDKFixture.dictionary($0) }
            try run.log(d)
            i &+= 1
        }
    }
}
