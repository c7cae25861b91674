import Foundation
import RunLogStore

/// The background work beside a run, with one owner that starts and stops it: the summary
/// writer, system metrics, TensorBoard following and console capture. One thread ticks every
/// job when it is due; `stop()` drains them (a last tick) before the run writes its exit.
final class RunServices: @unchecked Sendable {
    private struct Job {
        var interval: Double
        var due: Double
        var action: () -> Void
    }
    private let cond = NSCondition()
    private var jobs: [Job] = []
    private var running = false
    private var stopping = false
    private var thread: Thread?
    private(set) var endSaves: [(String, String)] = []
    private var console: ConsoleCapture?

    func saveAtEnd(path: String, name: String) {
        cond.lock(); defer { cond.unlock() }
        if !endSaves.contains(where: { $0.1 == name }) { endSaves.append((path, name)) }
    }

    func start(run: Run, systemMetrics: Bool, console captureConsole: Bool, tensorboardDirectory: String?) {
        let now = Date().timeIntervalSinceReferenceDate
        var jobs: [Job] = []
        let flush = Double(run.settings.flushInterval.components.seconds) + Double(run.settings.flushInterval.components.attoseconds) / 1e18
        jobs.append(Job(interval: max(flush, 0.05), due: now + flush) { [weak run] in run?.summary.writeIfChanged() })
        if systemMetrics, let interval = run.settings.systemMetricsInterval, let writer = run.writer {
            let seconds = Double(interval.components.seconds) + Double(interval.components.attoseconds) / 1e18
            let monitor = SystemMonitor()
            jobs.append(Job(interval: max(seconds, 0.1), due: now) {
                let values = monitor.sample()
                guard !values.isEmpty else { return }
                try? writer.append(.systemMetrics(SystemSample(timestamp: Run.nowMicros(), values: values.mapValues(Value.double))))
            })
        }
        if let tensorboardDirectory {
            let seconds = Double(run.settings.tensorboardPollInterval.components.seconds)
                + Double(run.settings.tensorboardPollInterval.components.attoseconds) / 1e18
            let sync = TensorBoardSync(directory: tensorboardDirectory)
            jobs.append(Job(interval: max(seconds, 0.05), due: now) { [weak run] in
                guard let run else { return }
                sync.poll(into: run)
            })
        }
        if captureConsole, let writer = run.writer {
            console = ConsoleCapture(writer: writer, logger: run.logger)
            console?.start()
        }
        cond.lock()
        self.jobs = jobs
        running = true
        cond.unlock()
        let t = Thread { [self] in loop() }
        t.name = "runlog-services"
        thread = t
        t.start()
    }

    private func loop() {
        cond.lock()
        while !stopping {
            let now = Date().timeIntervalSinceReferenceDate
            var next = now + 1
            for i in jobs.indices {
                if jobs[i].due <= now {
                    let action = jobs[i].action
                    jobs[i].due = now + jobs[i].interval
                    cond.unlock()
                    action()
                    cond.lock()
                }
                next = min(next, jobs[i].due)
            }
            if stopping { break }
            _ = cond.wait(until: Date(timeIntervalSinceReferenceDate: next))
        }
        // Drain: one last run of every job so nothing observed is left behind.
        let last = jobs.map(\.action)
        cond.unlock()
        for action in last { action() }
        cond.lock()
        running = false
        cond.broadcast()
        cond.unlock()
    }

    /// Stops the jobs after a last tick, and console capture.
    func stop() {
        console?.stop()
        console = nil
        cond.lock()
        guard thread != nil else { cond.unlock(); return }
        stopping = true
        cond.broadcast()
        while running { cond.wait() }
        thread = nil
        cond.unlock()
    }
}
