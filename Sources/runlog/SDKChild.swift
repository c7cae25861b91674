import ArgumentParser
import Foundation
import RunLog
import RunLogStore

/// Hidden: a program that logs through the SDK, for the signal tests
/// (`Tests/RunLogIntegrationTests/SignalTests.swift`). Starts an offline run (the SDK's
/// signal and exit hooks installed, as in any program), prints `{"run_dir": ..., "id": ...}`,
/// then logs one row per step — `loss` = 1/(step+1), `x` = step — and after every
/// `--flush-every` steps flushes and prints `{"durable_step": N}`. Runs until killed, or
/// until `--steps` rows are logged: then it finishes the run with `--finish`, or else just
/// returns from main without finishing (the exit hook must finish it).
struct SDKChild: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sdk-child", shouldDisplay: false)
    @Option var dir: String
    @Option var project = "sdk-child"
    @Option var id: String
    @Option var steps: Int64 = .max
    @Option var flushEvery: Int64 = 50
    @Flag var finish = false

    func run() throws {
        var settings = Settings()
        settings.systemMetricsInterval = nil
        settings.handleSignals = true
        let run = try Run.start(project: project, dir: dir, id: id, mode: .offline, settings: settings)
        emit(["run_dir": .string(run.directory ?? ""), "id": .string(run.id)])
        var step: Int64 = 0
        while step < steps {
            do {
                try run.log(["loss": 1 / Double(step + 1), "x": Double(step)])
                if (step + 1) % flushEvery == 0 {
                    try run.flush()
                    emit(["durable_step": .int(step)])
                }
            } catch {
                // The signal hook finished the run under us; it re-raises the signal next.
                // Wait for it (15 s) rather than exit with a status of our own: exit code 70
                // says the run was finished but the signal never ended the process.
                for _ in 0..<150 { usleep(100_000) }
                throw ExitCode(70)
            }
            step += 1
        }
        if finish { try run.finish() }
        // Without --finish: return from main with the run still active.
    }

    func emit(_ object: [String: Value]) {
        FileHandle.standardOutput.write(Data((Value.object(object).description + "\n").utf8))
    }
}
