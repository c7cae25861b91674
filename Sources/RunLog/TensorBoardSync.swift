import Foundation
import RunLogStore

/// Copies scalars from TensorBoard event files written during the run into its history.
///
/// Each poll reads what was appended to every `events.out.tfevents.*` file under the
/// directory and logs the points of each TensorBoard step as one row, with the TensorBoard
/// step in `global_step` (the run's own step keeps increasing, as with wandb).
final class TensorBoardSync: @unchecked Sendable {
    private var follower: TensorBoardDirectoryFollower
    private let lock = NSLock()

    init(directory: String) {
        follower = TensorBoardDirectoryFollower(directory: URL(fileURLWithPath: directory))
    }

    func poll(into run: Run) {
        lock.lock()
        let points = follower.poll()
        lock.unlock()
        guard !points.isEmpty else { return }
        var byStep: [Int64: [String: Value]] = [:]
        for p in points { byStep[p.step, default: [:]][p.metricName] = .double(p.value) }
        for step in byStep.keys.sorted() {
            var row = byStep[step]!
            row["global_step"] = .int(step)
            try? run.log(row)
        }
    }
}
