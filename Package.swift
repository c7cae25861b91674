// swift-tools-version: 6.1
import PackageDescription

let logging: Target.Dependency = .product(name: "Logging", package: "swift-log")

let package = Package(
    name: "RunLog",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "RunLogStore", targets: ["RunLogStore"]),
        .library(name: "RunLog", targets: ["RunLog"]),
        .library(name: "RunLogSync", targets: ["RunLogSync"]),
        .library(name: "RunLogServer", targets: ["RunLogServer"]),
        .executable(name: "runlog", targets: ["runlog"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
    ],
    targets: [
        // C at the edges: the system libzstd and libsqlite3, a CRC32C with a run-time chosen
        // SSE4.2 path, and copy_file_range.
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .target(name: "CCRC32C"),
        .target(name: "CRunLogSys"),

        // The on-disk format. Knows nothing of the SDK or the network.
        .target(
            name: "RunLogStore",
            dependencies: ["CZstd", "CCRC32C", "CRunLogSys", logging],
            exclude: ["FORMAT.md"]
        ),
        // The SDK: start / log / finish on top of the store.
        .target(name: "RunLog", dependencies: ["RunLogStore", "CCRC32C", logging]),
        // Moves frames to a server.
        .target(name: "RunLogSync", dependencies: ["RunLog", "RunLogStore", "CCRC32C", "CRunLogSys", logging]),
        // Receives and serves them.
        .target(
            name: "RunLogServer",
            dependencies: [
                "RunLogStore", "RunLogSync", "CSQLite", logging,
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            exclude: ["PROTOCOL.md"],
            resources: [.copy("Assets")]
        ),
        .executableTarget(
            name: "runlog",
            dependencies: [
                "RunLog", "RunLogStore", "RunLogSync", "RunLogServer", logging,
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        .testTarget(name: "RunLogStoreTests", dependencies: ["RunLogStore", "CCRC32C"]),
        // The process-wide test gate (active run, working directory, fd 1/2), shared by the
        // test targets that start SDK runs in the test process.
        .target(name: "RunLogTestSupport", path: "Tests/RunLogTestSupport"),
        .testTarget(name: "RunLogTests", dependencies: ["RunLog", "RunLogStore", "RunLogTestSupport"]),
        .testTarget(name: "RunLogSyncTests", dependencies: ["RunLogSync", "RunLog", "RunLogStore"]),
        .testTarget(
            name: "RunLogServerTests",
            dependencies: [
                "RunLogServer", "RunLogStore", "RunLogSync",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
        // Tests that spawn and kill real processes, start servers, or drive a browser.
        .testTarget(name: "RunLogIntegrationTests", dependencies: ["RunLogStore", "RunLog", "RunLogSync", "RunLogTestSupport", "runlog"]),
    ]
)
