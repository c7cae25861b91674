// swift-tools-version: 6.1
// Benchmarks for RunLog, kept out of the root package so that `swift build` / `swift test`
// at the root never compile them. Run from the repository root:
//
//   swift run -c release --package-path Benchmarks store-figures     # the README's table
//   swift package --package-path Benchmarks benchmark                # package-benchmark suite
import PackageDescription

let package = Package(
    name: "RunLogBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "RunLog", path: "../"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // sync-figures --transport ahc: the SyncTransport on SwiftNIO, to compare with URLSession's.
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        // The MallocInterposer trait alone: the default traits pull in a package that is not available here.
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // Workload W (shared/bench/WORKLOAD.md) as a deterministic Swift generator.
        .target(name: "Workload"),
        // The figure executables' command-line options and output.
        .target(name: "BenchCLI"),
        // The store scenarios every figure is made of, shared by the two runners below.
        .target(
            name: "StoreScenarios",
            dependencies: ["Workload", "CBenchSys", .product(name: "RunLogStore", package: "RunLog")]
        ),
        .target(name: "CBenchSys"),
        // Plain executable: runs every scenario once and prints the Markdown table the README quotes.
        .executableTarget(
            name: "store-figures",
            dependencies: ["BenchCLI", "StoreScenarios", "Workload", .product(name: "RunLogStore", package: "RunLog")]
        ),
        // `Run.log` cost through the SDK (median/p99 per call, bytes/step, peak RSS).
        .executableTarget(
            name: "sdk-figures",
            dependencies: [
                "BenchCLI", "StoreScenarios", "Workload",
                .product(name: "RunLog", package: "RunLog"), .product(name: "RunLogStore", package: "RunLog"),
            ]
        ),
        // Server ingest and chart-query figures (ServerBenchmark.run), SQLite and PostgreSQL.
        .executableTarget(
            name: "server-figures",
            dependencies: ["BenchCLI", .product(name: "RunLogServer", package: "RunLog"), .product(name: "Logging", package: "swift-log")]
        ),
        // Bulk sync end to end: LogWriter runs → SyncEngine over HTTP → embedded server.
        .executableTarget(
            name: "sync-figures",
            dependencies: [
                "BenchCLI", "StoreScenarios", "Workload",
                .product(name: "RunLogStore", package: "RunLog"), .product(name: "RunLogSync", package: "RunLog"),
                .product(name: "RunLogServer", package: "RunLog"), .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]
        ),
        // package-benchmark suite (`swift package benchmark`).
        .executableTarget(
            name: "StoreBenchmarks",
            dependencies: [
                "StoreScenarios", "Workload",
                .product(name: "RunLogStore", package: "RunLog"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/StoreBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // package-benchmark suite for the SDK's `Run.log`.
        .executableTarget(
            name: "SDKBenchmarks",
            dependencies: [
                "StoreScenarios", "Workload",
                .product(name: "RunLog", package: "RunLog"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/SDKBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
