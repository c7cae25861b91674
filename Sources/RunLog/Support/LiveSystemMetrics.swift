import Foundation

/// Reads this machine's system metrics: the `/proc` files and, when `nvidia-smi` is on
/// `PATH`, the GPUs; the numbers come from a ``SystemMetricsSampler``.
///
/// ```swift
/// var metrics = LiveSystemMetrics()
/// _ = metrics.sample()               // baseline: no CPU percentages yet
/// sleep(10)
/// let values = metrics.sample()      // ["system.cpu": 12.5, "system.memory": 41.0, ...]
/// ```
package struct LiveSystemMetrics: Sendable {
    /// The nvidia-smi found on `PATH` at creation, or nil: then GPUs are not probed.
    package private(set) var nvidiaSmiPath: String?
    private var sampler = SystemMetricsSampler()
    private var nvidiaSmiFailures = 0

    /// After this many failed nvidia-smi runs in a row, GPUs are no longer probed.
    package static let maxNvidiaSmiFailures = 3

    /// How long one nvidia-smi run may take, in seconds.
    package static let nvidiaSmiTimeout = 5.0

    package init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        nvidiaSmiPath = Self.findExecutable("nvidia-smi", searchPath: environment["PATH"])
    }

    /// Reads the sources now and returns the metrics.
    package mutating func sample() -> [String: Double] {
        var snapshot = Self.readProcSnapshot()
        if let path = nvidiaSmiPath {
            if let result = CapturedProcess.run(
                path, SystemMetricsSampler.nvidiaSmiArguments, timeout: Self.nvidiaSmiTimeout),
                result.status == 0
            {
                snapshot.nvidiaSmiCSV = result.text
                nvidiaSmiFailures = 0
            } else {
                nvidiaSmiFailures += 1
                if nvidiaSmiFailures >= Self.maxNvidiaSmiFailures { nvidiaSmiPath = nil }
            }
        }
        return sampler.sample(snapshot)
    }

    /// The `/proc` files of ``SystemSnapshot``, read now (nil where unreadable, e.g. not Linux).
    package static func readProcSnapshot() -> SystemSnapshot {
        SystemSnapshot(
            procSelfStat: read("/proc/self/stat"),
            procStat: read("/proc/stat"),
            procSelfStatus: read("/proc/self/status"),
            procMeminfo: read("/proc/meminfo"),
            procSelfIO: read("/proc/self/io"),
            procNetDev: read("/proc/net/dev"))
    }

    /// The first executable file called `name` in the colon-separated `searchPath`.
    package static func findExecutable(_ name: String, searchPath: String?) -> String? {
        guard let searchPath else { return nil }
        for directory in searchPath.split(separator: ":") where !directory.isEmpty {
            let candidate = String(directory) + "/" + name
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    private static func read(_ path: String) -> String? {
        // /proc files report size 0, so read until end of file rather than by size.
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        guard let data = try? handle.readToEnd() else { return nil }
        return String(decoding: data, as: UTF8.self)
    }
}
