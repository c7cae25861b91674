import Dispatch
import Foundation
import Synchronization

/// The runs active in this process, and the hooks that finish them when the process ends:
/// at `exit` (state `finished`), and on SIGINT/SIGTERM (flushed, state `killed`, the signal
/// recorded, then the signal's default action).
final class RunRegistry: Sendable {
    static let shared = RunRegistry()

    private struct State {
        var runs: [Run] = []
        var hooksInstalled = false
    }
    private let state = Mutex(State())
    /// Written once, under the `hooksInstalled` guard; kept so the sources stay alive.
    nonisolated(unsafe) private static var signalSources: [any DispatchSourceSignal] = []

    /// The most recently started active run.
    var current: Run? { state.withLock { $0.runs.last } }
    var all: [Run] { state.withLock { $0.runs } }

    func add(_ run: Run, handleSignals: Bool) {
        let install = state.withLock { s -> Bool in
            s.runs.append(run)
            defer { s.hooksInstalled = s.hooksInstalled || handleSignals }
            return handleSignals && !s.hooksInstalled
        }
        if install { installHooks() }
    }

    func remove(_ run: Run) {
        state.withLock { s in s.runs.removeAll { $0 === run } }
    }

    private func installHooks() {
        atexit {
            for run in RunRegistry.shared.all { try? run.finish(exitCode: 0) }
        }
        var sources: [any DispatchSourceSignal] = []
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                for run in RunRegistry.shared.all {
                    try? run.finish(exitCode: 128 + Int(sig), state: "killed", signal: sig, error: "received signal \(sig)")
                }
                // Die of the signal, as the program would have without us. This thread is a
                // dispatch worker, which blocks SIGINT/SIGTERM on Linux (as may every other
                // thread), so a raised signal would stay pending: unblock it here first.
                // Should it still not end the process, exit with the shell's code for it.
                signal(sig, SIG_DFL)
                var set = sigset_t()
                sigemptyset(&set)
                sigaddset(&set, sig)
                pthread_sigmask(SIG_UNBLOCK, &set, nil)
                raise(sig)
                usleep(2_000_000)
                _exit(128 + sig)
            }
            source.resume()
            sources.append(source)
        }
        Self.signalSources = sources
    }
}
