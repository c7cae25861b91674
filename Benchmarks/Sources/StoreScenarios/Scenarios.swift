import CBenchSys
import Foundation
import RunLogStore
import Workload

/// The store scenarios behind every figure: one function per thing measured, shared by
/// `store-figures` (one run, a Markdown table) and the package-benchmark suite.
///
/// Everything is written under a scratch directory (``Scratch``) and uses the store's public
/// API only, with the writer's default configuration (durability `.interval(1 s)`) unless a
/// scenario says otherwise.
public enum Scenarios {
    /// Which `appendRow` overload a write uses.
    public enum AppendPath: String, Sendable, CaseIterable, CustomStringConvertible {
        /// `appendRow(step:timestamp:keys:doubles:)`.
        case fastPath = "keys/doubles"
        /// `appendRow(step:timestamp:values:)` with a `[String: Value]` built for every step.
        case dictionary = "[String: Value]"
        public var description: String { rawValue }
    }

    public struct WriteResult: Sendable {
        public var steps: Int
        /// The append loop alone.
        public var appendSeconds: Double
        /// `flush()` after the last append: until every row is written.
        public var flushSeconds: Double
        /// `close()`: fdatasync, index, unlock.
        public var closeSeconds: Double
        /// Size of `run.rlog` after close.
        public var logBytes: UInt64
        /// CPU time of the appending thread from the first append until `flush()` returned.
        public var appenderCPUSeconds: Double = 0
        /// CPU time of the whole process (appender + flusher) over the same span.
        public var processCPUSeconds: Double = 0

        /// Steps per second from the first append until `flush()` returned.
        public var stepsPerSecond: Double { Double(steps) / (appendSeconds + flushSeconds) }
        public var bytesPerStep: Double { Double(logBytes) / Double(steps) }
    }

    /// Builds the `[String: Value]` of one step, as a caller of the dictionary API does.
    @inline(__always)
    public static func dictionary(_ values: UnsafeBufferPointer<Double>) -> [String: Value] {
        var d = [String: Value](minimumCapacity: Workload.metricCount)
        for j in 0..<Workload.metricCount { d[Workload.names[j]] = .double(values[j]) }
        return d
    }

    /// What building (and dropping) one `[String: Value]` per step costs the caller, with no
    /// store involved: the floor under the dictionary path. Nanoseconds per step.
    public static func dictionaryBuildCost(_ table: WorkloadTable) -> Double {
        var sink = 0
        let t0 = Stopwatch.threadCPU
        table.values.withUnsafeBufferPointer { all in
            for i in 0..<table.steps {
                let d = dictionary(UnsafeBufferPointer(rebasing: all[i * Workload.metricCount..<(i + 1) * Workload.metricCount]))
                sink &+= d.count
            }
        }
        let t1 = Stopwatch.threadCPU
        precondition(sink == table.steps * Workload.metricCount)
        return (t1 - t0) / Double(table.steps) * 1e9
    }

    /// Writes a pre-generated workload into a new run directory and closes it.
    public static func write(_ table: WorkloadTable, to directory: String, path: AppendPath = .fastPath,
                             configuration: LogWriter.Configuration = .init()) throws -> WriteResult {
        let writer = try LogWriter.open(directory: directory, configuration: configuration)
        let keys = Workload.names
        // The caller's reused buffer of this step's values, as a training loop keeps one.
        var values = [Double](repeating: 0, count: Workload.metricCount)
        let (c0, p0) = (Stopwatch.threadCPU, Stopwatch.processCPU)
        let t0 = Stopwatch.now
        try table.values.withUnsafeBufferPointer { all in
            for i in 0..<table.steps {
                let row = UnsafeBufferPointer(rebasing: all[i * Workload.metricCount..<(i + 1) * Workload.metricCount])
                switch path {
                case .fastPath:
                    values.withUnsafeMutableBufferPointer { v in _ = v.update(fromContentsOf: row) }
                    try writer.appendRow(step: Int64(i), keys: keys, doubles: values)
                case .dictionary:
                    try writer.appendRow(step: Int64(i), values: dictionary(row))
                }
            }
        }
        let t1 = Stopwatch.now
        try writer.flush()
        let t2 = Stopwatch.now
        let (c2, p2) = (Stopwatch.threadCPU, Stopwatch.processCPU)
        try writer.close()
        let t3 = Stopwatch.now
        return WriteResult(steps: table.steps, appendSeconds: t1 - t0, flushSeconds: t2 - t1, closeSeconds: t3 - t2,
                           logBytes: FileSystemInfo.size(RunDirectory.logPath(directory)),
                           appenderCPUSeconds: c2 - c0, processCPUSeconds: p2 - p0)
    }

    /// Writes `steps` steps of workload W straight from the generator (O(1) memory on the
    /// caller's side), through the keys/doubles fast path.
    public static func writeStreaming(steps: Int, precision: Workload.Precision, to directory: String,
                                      configuration: LogWriter.Configuration = .init()) throws -> WriteResult {
        let writer = try LogWriter.open(directory: directory, configuration: configuration)
        let keys = Workload.names
        var gen = WorkloadGenerator(steps: steps, precision: precision)
        var values = [Double](repeating: 0, count: Workload.metricCount)
        let (c0, p0) = (Stopwatch.threadCPU, Stopwatch.processCPU)
        let t0 = Stopwatch.now
        while let step = gen.next(into: &values) {
            try writer.appendRow(step: step, keys: keys, doubles: values)
        }
        let t1 = Stopwatch.now
        try writer.flush()
        let t2 = Stopwatch.now
        let (c2, p2) = (Stopwatch.threadCPU, Stopwatch.processCPU)
        try writer.close()
        let t3 = Stopwatch.now
        return WriteResult(steps: steps, appendSeconds: t1 - t0, flushSeconds: t2 - t1, closeSeconds: t3 - t2,
                           logBytes: FileSystemInfo.size(RunDirectory.logPath(directory)),
                           appenderCPUSeconds: c2 - c0, processCPUSeconds: p2 - p0)
    }

    public struct CompactResult: Sendable {
        public var seconds: Double
        public var bytesBefore: UInt64
        public var bytesAfter: UInt64
    }

    /// `Compaction.compact` with its default options.
    public static func compact(_ directory: String) throws -> CompactResult {
        let t0 = Stopwatch.now
        let r = try Compaction.compact(directory: directory)
        let t1 = Stopwatch.now
        return CompactResult(seconds: t1 - t0, bytesBefore: r.bytesBefore,
                             bytesAfter: FileSystemInfo.size(RunDirectory.logPath(directory)))
    }

    /// Appends the first `fraction` of the log's last frame again at the end: a whole frame
    /// header promising more payload than the file holds, as a writer killed mid-`pwrite` leaves.
    /// - Returns: the bytes added.
    @discardableResult
    public static func tearTail(_ directory: String, fraction: Double = 0.5) throws -> Int {
        let path = RunDirectory.logPath(directory)
        let reader = try LogReader(path: path)
        guard let last = reader.frames.last else { reader.close(); return 0 }
        let frame = try reader.storedFrame(last)
        reader.close()
        let count = max(60, Int(Double(frame.count) * fraction))
        let fh = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try fh.seekToEnd()
        try fh.write(contentsOf: Data(frame[..<min(count, frame.count - 1)]))
        try fh.close()
        return min(count, frame.count - 1)
    }

    public struct OpenResult: Sendable {
        /// `LogReader(path:)` on the torn log.
        public var readerSeconds: Double
        public var readerFrames: Int
        public var tornBytes: UInt64
        /// `LogWriter.open`: lock, scan, truncate the tail, fsync, start the flusher.
        public var writerOpenSeconds: Double
        public var writerTornBytes: UInt64
    }

    /// Opens a log that has a torn tail: first a reader, then a writer, which cuts the tail.
    /// - Parameter dropIndex: delete `run.idx` first, so both scan every frame header.
    public static func openAndRecover(_ directory: String, dropIndex: Bool = false) throws -> OpenResult {
        if dropIndex { unlink(directory + "/run.idx") }
        let path = RunDirectory.logPath(directory)
        let t0 = Stopwatch.now
        let reader = try LogReader(path: path)
        let t1 = Stopwatch.now
        let frames = reader.frames.count, torn = reader.tornTailBytes
        reader.close()
        if dropIndex { unlink(directory + "/run.idx") }
        let t2 = Stopwatch.now
        let writer = try LogWriter.open(directory: directory)
        let t3 = Stopwatch.now
        let writerTorn = writer.recoveredTornBytes
        try writer.close()
        return OpenResult(readerSeconds: t1 - t0, readerFrames: frames, tornBytes: torn, writerOpenSeconds: t3 - t2,
                          writerTornBytes: writerTorn)
    }

    /// Times `row(atStep:)` on an open reader for each of `steps`; checks each row was found.
    public static func seek(_ reader: LogReader, steps: [Int64]) throws -> [Double] {
        var times: [Double] = []
        times.reserveCapacity(steps.count)
        for s in steps {
            let t0 = Stopwatch.now
            let row = try reader.row(atStep: s)
            let t1 = Stopwatch.now
            guard row?.step == s else { throw ScenarioError("row(atStep: \(s)) returned \(String(describing: row?.step))") }
            times.append(t1 - t0)
        }
        return times
    }

    public struct RewindResult: Sendable {
        public var openSeconds: Double
        /// `rewind(toStep:)` alone (it flushes, finds the cut, appends the marker and syncs).
        public var rewindSeconds: Double
        public var closeSeconds: Double
        public var cutFound: Bool
    }

    /// Opens a writer on the run, rewinds it to `step`, closes it.
    public static func rewind(_ directory: String, toStep step: Int64) throws -> RewindResult {
        let t0 = Stopwatch.now
        let writer = try LogWriter.open(directory: directory)
        let t1 = Stopwatch.now
        let marker = try writer.rewind(toStep: step)
        let t2 = Stopwatch.now
        try writer.close()
        let t3 = Stopwatch.now
        return RewindResult(openSeconds: t1 - t0, rewindSeconds: t2 - t1, closeSeconds: t3 - t2, cutFound: marker.cut != nil)
    }

    public struct ForkResult: Sendable {
        public var seconds: Double
        public var bytesCopied: UInt64
        public var framesCopied: Int
        public var lastStep: Int64
    }

    /// `RunDirectory.fork` of `source` at `step` into `destination` (which must not exist).
    public static func fork(_ source: String, atStep step: Int64, to destination: String) throws -> ForkResult {
        let t0 = Stopwatch.now
        let r = try RunDirectory.fork(source: source, atStep: step, to: destination,
                                      metadata: RunMetadata(["id": .string("fork-\(step)"), "project": .string("bench")]))
        let t1 = Stopwatch.now
        return ForkResult(seconds: t1 - t0, bytesCopied: r.bytesCopied, framesCopied: r.framesCopied, lastStep: r.lastStep)
    }

    /// A floor for fork: the same number of bytes through `copy_file_range`, then one `fdatasync`.
    public static func copyFloor(_ source: String, bytes: UInt64, scratch: String) throws -> (copy: Double, sync: Double) {
        let src = open(RunDirectory.logPath(source), O_RDONLY)
        let dst = open(scratch, O_RDWR | O_CREAT | O_TRUNC, 0o644)
        guard src >= 0, dst >= 0 else { throw ScenarioError("open failed: errno \(errno)") }
        defer { close(src); close(dst); unlink(scratch) }
        let t0 = Stopwatch.now
        var inOff: Int64 = 0, outOff: Int64 = 0
        var left = Int(bytes)
        while left > 0 {
            let n = bench_copy_file_range(src, &inOff, dst, &outOff, left)
            if n <= 0 { break }
            left -= n
        }
        let t1 = Stopwatch.now
        fdatasync(dst)
        return (t1 - t0, Stopwatch.now - t1)
    }
}

public struct ScenarioError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Monotonic wall-clock seconds, and CPU seconds (which a loaded machine disturbs far less).
public enum Stopwatch {
    public static var now: Double { seconds(CLOCK_MONOTONIC) }
    /// CPU time of the calling thread.
    public static var threadCPU: Double { seconds(CLOCK_THREAD_CPUTIME_ID) }
    /// CPU time of the whole process, all threads.
    public static var processCPU: Double { seconds(CLOCK_PROCESS_CPUTIME_ID) }

    static func seconds(_ clock: clockid_t) -> Double {
        var ts = timespec()
        clock_gettime(clock, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

public enum FileSystemInfo {
    public static func size(_ path: String) -> UInt64 {
        var st = stat()
        return stat(path, &st) == 0 ? UInt64(st.st_size) : 0
    }

    /// Sum of the sizes of the regular files under `directory`.
    public static func treeSize(_ directory: String) -> UInt64 {
        guard let e = FileManager.default.enumerator(atPath: directory) else { return 0 }
        var total: UInt64 = 0
        while let name = e.nextObject() as? String { total += size(directory + "/" + name) }
        return total
    }
}

/// Resident memory of this process, from `/proc/self/status` (bytes).
public enum ProcessMemory {
    /// Peak resident set (VmHWM).
    public static var peakResident: UInt64 { field("VmHWM:") }
    /// Current resident set (VmRSS).
    public static var resident: UInt64 { field("VmRSS:") }

    /// Resets VmHWM to the current RSS (Linux ≥ 4.0: `echo 5 > /proc/self/clear_refs`).
    @discardableResult
    public static func resetPeak() -> Bool {
        let fd = open("/proc/self/clear_refs", O_WRONLY)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return write(fd, "5", 1) == 1
    }

    static func field(_ name: String) -> UInt64 {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in s.split(separator: "\n") where line.hasPrefix(name) {
            let kb = line.dropFirst(name.count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first.flatMap { UInt64($0) } ?? 0
            return kb * 1024
        }
        return 0
    }
}

/// A scratch directory removed on `remove()`; under `$RUNLOG_BENCH_DIR` or the system temp dir.
public final class Scratch: @unchecked Sendable {
    public let path: String
    public init(_ name: String) throws {
        let base = ProcessInfo.processInfo.environment["RUNLOG_BENCH_DIR"] ?? NSTemporaryDirectory()
        path = (base.hasSuffix("/") ? base : base + "/") + "runlog-bench-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    /// An existing directory, used as it is (not created).
    public init(existing path: String) { self.path = path }
    public func sub(_ name: String) -> String { path + "/" + name }
    public func remove() { try? FileManager.default.removeItem(atPath: path) }
    public func removeItem(_ path: String) { try? FileManager.default.removeItem(atPath: path) }
}

/// A large log of workload W, built once and reused across processes (package-benchmark runs
/// each benchmark in its own process). It is keyed by the running executable's size and
/// modification time, so rebuilding the benchmarks (and so the store) builds it again.
public enum SharedFixture {
    public static func directory(steps: Int, precision: Workload.Precision) throws -> String {
        let base = ProcessInfo.processInfo.environment["RUNLOG_BENCH_DIR"] ?? NSTemporaryDirectory()
        let root = (base.hasSuffix("/") ? base : base + "/") + "runlog-bench-fixtures"
        let dir = root + "/\(precision)-\(steps)"
        let stampPath = root + "/\(precision)-\(steps).stamp"
        let stamp = executableStamp()
        if (try? String(contentsOfFile: stampPath, encoding: .utf8)) == stamp, FileManager.default.fileExists(atPath: dir) {
            return dir
        }
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        _ = try Scenarios.writeStreaming(steps: steps, precision: precision, to: dir)
        try stamp.write(toFile: stampPath, atomically: true, encoding: .utf8)
        return dir
    }

    static func executableStamp() -> String {
        var st = stat()
        guard stat("/proc/self/exe", &st) == 0 else { return "unknown" }
        return "\(st.st_size)-\(st.st_mtim.tv_sec)-\(st.st_mtim.tv_nsec)"
    }

    /// Copies a run directory's log and index (as bytes, in the kernel) to a new directory.
    public static func copyRun(_ source: String, to destination: String) throws {
        try FileManager.default.createDirectory(atPath: destination, withIntermediateDirectories: true)
        for name in ["run.rlog", "run.idx"] where FileManager.default.fileExists(atPath: source + "/" + name) {
            let src = open(source + "/" + name, O_RDONLY)
            let dst = open(destination + "/" + name, O_RDWR | O_CREAT | O_TRUNC, 0o644)
            defer { close(src); close(dst) }
            var left = Int(FileSystemInfo.size(source + "/" + name))
            var inOff: Int64 = 0, outOff: Int64 = 0
            while left > 0 {
                let n = bench_copy_file_range(src, &inOff, dst, &outOff, left)
                if n <= 0 { throw ScenarioError("copy_file_range failed: errno \(errno)") }
                left -= n
            }
            fsync(dst)  // so the copy's dirty pages are not flushed by the first timed fsync
        }
    }
}

/// Median and percentiles of a sample.
public extension Array where Element == Double {
    func percentile(_ p: Double) -> Double {
        guard !isEmpty else { return .nan }
        let s = sorted()
        let i = Swift.min(s.count - 1, Swift.max(0, Int((p / 100 * Double(s.count - 1)).rounded())))
        return s[i]
    }
    var median: Double { percentile(50) }
}
