import Foundation

/// Samples system metrics for a run's background loop (see `LiveSystemMetrics` for the keys).
final class SystemMonitor: @unchecked Sendable {
    private var metrics = LiveSystemMetrics()
    private let lock = NSLock()

    func sample() -> [String: Double] {
        lock.lock(); defer { lock.unlock() }
        return metrics.sample()
    }
}
