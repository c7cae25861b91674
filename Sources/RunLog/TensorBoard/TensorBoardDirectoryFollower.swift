import Foundation

/// One scalar value found by ``TensorBoardDirectoryFollower``.
public struct TensorBoardScalarPoint: Sendable, Equatable {
    /// The RunLog metric name: ``tag``, prefixed with ``run`` and `/` when ``run`` is not empty.
    public var metricName: String
    /// The event file's directory relative to the log directory (TensorBoard's run name),
    /// `""` for files directly in it; e.g. `loss/train` for `add_scalars("loss", {"train": ...})`.
    public var run: String
    /// The summary tag as written.
    public var tag: String
    /// The training step.
    public var step: Int64
    /// Seconds since the Unix epoch when the value was written.
    public var wallTime: Double
    /// The value (float32 values widened exactly).
    public var value: Double

    /// Creates a point.
    public init(metricName: String, run: String, tag: String, step: Int64, wallTime: Double, value: Double) {
        self.metricName = metricName
        self.run = run
        self.tag = tag
        self.step = step
        self.wallTime = wallTime
        self.value = value
    }

    /// The metric name for `tag` in `run`: `tag` at the top level, else `run/tag`.
    ///
    /// This matches wandb's TensorBoard sync (wandb-core prefixes every tag with the log
    /// directory's path below the root, its "namespace"), so `add_scalars("loss", {"train": x})`,
    /// which writes tag `loss` under `loss/train/`, becomes `loss/train/loss`.
    public static func metricName(run: String, tag: String) -> String {
        run.isEmpty ? tag : run + "/" + tag
    }
}

/// Follows every TensorBoard event file under a log directory and reports new scalars.
///
/// Each ``poll()`` rescans the directory recursively for files named `events.out.tfevents.*`,
/// reads each one from where the previous poll stopped, and returns the scalar values written
/// since, grouped by file (files in path order), in file order. A file's trailing partial
/// record is left for a later poll. A file with a bad record is recorded in ``failures`` and
/// retried from that record on the next poll; the other files are unaffected.
public struct TensorBoardDirectoryFollower: Sendable {
    /// The log directory (TensorBoard's `--logdir`).
    public let directory: URL
    /// Per event file (path relative to ``directory``), the reader and thus the resume offset.
    public private(set) var readers: [String: TensorBoardEventReader] = [:]
    /// Per event file, the error that stopped its last read; cleared once it reads cleanly.
    public private(set) var failures: [String: TensorBoardError] = [:]

    /// Creates a follower of `directory`, which need not exist yet.
    public init(directory: URL) {
        self.directory = directory
    }

    /// Reads what was appended since the last poll and returns its scalar values.
    public mutating func poll() -> [TensorBoardScalarPoint] {
        var points: [TensorBoardScalarPoint] = []
        for file in Self.eventFiles(in: directory) {
            if readers[file] == nil {
                readers[file] = TensorBoardEventReader(url: directory.appendingPathComponent(file))
            }
            let run = Self.run(ofFile: file)
            do {
                while let event = try readers[file]!.next() {
                    points += Self.scalars(in: event, run: run)
                }
                failures[file] = nil
            } catch {
                failures[file] = error
            }
        }
        return points
    }

    /// The scalar values of one event as points of `run`.
    static func scalars(in event: TensorBoardEvent, run: String) -> [TensorBoardScalarPoint] {
        event.values.compactMap { value in
            guard value.kind == .scalar, let number = value.value else { return nil }
            return TensorBoardScalarPoint(metricName: TensorBoardScalarPoint.metricName(run: run, tag: value.tag),
                                          run: run, tag: value.tag, step: event.step,
                                          wallTime: event.wallTime, value: number)
        }
    }

    /// The run of a file path relative to the log directory: its directory part.
    static func run(ofFile relativePath: String) -> String {
        guard let slash = relativePath.lastIndex(of: "/") else { return "" }
        return String(relativePath[..<slash])
    }

    /// Paths, relative to `directory` and sorted, of the event files below it.
    static func eventFiles(in directory: URL) -> [String] {
        guard let walker = FileManager.default.enumerator(atPath: directory.path) else { return [] }
        var files: [String] = []
        while let path = walker.nextObject() as? String {
            var isDirectory: ObjCBool = false
            guard (path.split(separator: "/").last ?? "").hasPrefix("events.out.tfevents."),
                  FileManager.default.fileExists(atPath: directory.appendingPathComponent(path).path,
                                                 isDirectory: &isDirectory),
                  !isDirectory.boolValue else { continue }
            files.append(path)
        }
        return files.sorted()
    }
}
