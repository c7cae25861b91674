import Foundation
import Synchronization

/// Runs a short-lived helper program (git, nvidia-smi) and captures its standard output.
package enum CapturedProcess {
    /// The outcome of a finished run.
    package struct Result: Sendable {
        /// The exit status; non-zero when the program failed or was killed by the time limit.
        package var status: Int32
        /// Everything the program wrote to standard output.
        package var stdout: Data
        /// True when the program was terminated because it ran past the time limit.
        package var timedOut: Bool

        /// Standard output as UTF-8 text (invalid bytes repaired).
        package var text: String { String(decoding: stdout, as: UTF8.self) }
    }

    /// Runs `executable` with `arguments` and returns its output, or nil when it cannot be
    /// started (missing, not executable). Standard input is empty and standard error is
    /// discarded. A program still running after `timeout` seconds gets SIGTERM, then SIGKILL.
    /// Blocks the calling thread until the program ends: call it off the main thread.
    package static func run(
        _ executable: String,
        _ arguments: [String],
        in directory: URL? = nil,
        environment: [String: String]? = nil,
        timeout: Double = 10
    ) -> Result? {
        guard FileManager.default.isExecutableFile(atPath: executable) else { return nil }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = directory }
        if let environment { process.environment = environment }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        do { try spawnWithDefaultSignalMask(process) } catch { return nil }

        // The watchdog is a thread of its own: Dispatch's global pool can be exhausted by
        // blocked callers (Swift concurrency shares it on Linux), which would delay the kill.
        let killed = KilledFlag()
        let finished = DispatchSemaphore(value: 0)
        let pid = process.processIdentifier
        let watchdog = Thread { [process] in
            guard finished.wait(timeout: .now() + timeout) == .timedOut, process.isRunning else { return }
            killed.value.withLock { $0 = true }
            process.terminate()
            if finished.wait(timeout: .now() + 2) == .timedOut, process.isRunning { kill(pid, SIGKILL) }
        }
        watchdog.start()
        // Read to the end before waiting, so that a full pipe cannot block the child.
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        finished.signal()
        let timedOut = killed.value.withLock { $0 }
        return Result(status: timedOut ? -1 : process.terminationStatus, stdout: data, timedOut: timedOut)
    }
}

/// Starts `process` with no signals blocked. A child inherits the signal mask of the thread
/// that spawns it, and Dispatch's worker threads (where Swift concurrency and Swift Testing
/// run on Linux) block nearly all signals: without this, the child would ignore SIGTERM.
private func spawnWithDefaultSignalMask(_ process: Process) throws {
    var empty = sigset_t()
    var previous = sigset_t()
    sigemptyset(&empty)
    pthread_sigmask(SIG_SETMASK, &empty, &previous)
    defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
    try process.run()
}

private final class KilledFlag: Sendable {
    let value = Mutex(false)
}
