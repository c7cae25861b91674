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
        // The MallocInterposer trait alone: the default traits pull in a package that is not available here.
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // Workload W (shared/bench/WORKLOAD.md) as a deterministic Swift generator.
        .target(name: "Workload"),
        // The store scenarios every figure is made of, shared by the two runners below.
        .target(
            name: "StoreScenarios",
            dependencies: ["Workload", "CBenchSys", .product(name: "RunLogStore", package: "RunLog")]
        ),
        .target(name: "CBenchSys"),
        // Plain executable: runs every scenario once and prints the Markdown table the README quotes.
        .executableTarget(
            name: "store-figures",
            dependencies: ["StoreScenarios", "Workload", .product(name: "RunLogStore", package: "RunLog")]
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
    ]
)
