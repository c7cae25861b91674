// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "RunLog",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "RunLogStore", targets: ["RunLogStore"]),
        .library(name: "RunLog", targets: ["RunLog"]),
        .executable(name: "runlog", targets: ["runlog"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // C at the edges: the system libzstd and a CRC32C with a run-time chosen SSE4.2 path.
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .target(name: "CCRC32C"),
        .target(name: "CRunLogSys"),

        // The on-disk format. Knows nothing of the SDK or the network.
        .target(
            name: "RunLogStore",
            dependencies: ["CZstd", "CCRC32C", "CRunLogSys", .product(name: "Logging", package: "swift-log")],
            exclude: ["FORMAT.md"]
        ),
        // The SDK: init / Run / log / finish on top of the store.
        .target(
            name: "RunLog",
            dependencies: ["RunLogStore", "CCRC32C", .product(name: "Logging", package: "swift-log")]
        ),
        .executableTarget(
            name: "runlog",
            dependencies: [
                "RunLog", "RunLogStore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        .testTarget(name: "RunLogStoreTests", dependencies: ["RunLogStore", "CCRC32C"]),
        .testTarget(name: "RunLogTests", dependencies: ["RunLog", "RunLogStore"]),
        // Tests that spawn and kill real processes.
        .testTarget(name: "RunLogIntegrationTests", dependencies: ["RunLogStore", "RunLog", "runlog"]),
    ]
)
