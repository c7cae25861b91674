#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import RunLogStore

/// Kills a real writer process with SIGKILL at random moments and checks that every step it
/// reported durable survives, that what survives is a contiguous, correct prefix, and that
/// the run reads cleanly and can be written again.
@Suite struct CrashTests {
    // MARK: Finding and running the binary

    /// The `runlog` executable SwiftPM built beside this test bundle.
    static let runlogBinary: String? = {
        var candidates: [String] = []
        if let arg0 = CommandLine.arguments.first { candidates.append(URL(fileURLWithPath: arg0).resolvingSymlinksInPath().path) }
        candidates.append(Bundle.main.bundlePath)
        candidates.append(Bundle.main.executablePath ?? "")
        for start in candidates where !start.isEmpty {
            var dir = URL(fileURLWithPath: start)
            for _ in 0..<6 {
                dir = dir.deletingLastPathComponent()
                let path = dir.appendingPathComponent("runlog").path
                var isDirectory: ObjCBool = false
                if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue,
                   FileManager.default.isExecutableFile(atPath: path) {
                    return path
                }
            }
        }
        return nil
    }()

    /// A running `runlog stress-write` and the steps it has reported durable.
    final class StressWriter: @unchecked Sendable {
        let process = Process()
        private let lock = NSLock()
        private var reported: [Int64] = []
        private let firstLine = DispatchSemaphore(value: 0)
        private var sawFirst = false
        private let readerDone = DispatchSemaphore(value: 0)
        private(set) var stderrText = ""

        init(binary: String, directory: String, rowsPerFlush: Int = 100) throws {
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = ["stress-write", directory, "--rows-per-flush", String(rowsPerFlush)]
            let out = Pipe(), err = Pipe()
            process.standardOutput = out
            process.standardError = err
            process.standardInput = FileHandle.nullDevice
            try process.run()
            let outHandle = out.fileHandleForReading
            let errHandle = err.fileHandleForReading
            Thread.detachNewThread { [self] in
                var buffer = [UInt8]()
                while true {
                    let chunk = outHandle.availableData
                    if chunk.isEmpty { break }
                    buffer += chunk
                    while let nl = buffer.firstIndex(of: 0x0A) {
                        let line = String(decoding: buffer[..<nl], as: UTF8.self)
                        buffer.removeSubrange(...nl)
                        self.parse(line)
                    }
                }
                // A partial last line was cut by the kill: it reports nothing.
                self.readerDone.signal()
            }
            Thread.detachNewThread { [self] in
                let data = errHandle.readDataToEndOfFile()
                self.lock.lock()
                self.stderrText = String(decoding: data, as: UTF8.self)
                self.lock.unlock()
            }
        }

        private func parse(_ line: String) {
            guard let data = line.data(using: .utf8),
                  let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let step = (object["durable_step"] as? NSNumber)?.int64Value else {
                Issue.record("unexpected output line from stress-write: \(line)")
                return
            }
            lock.lock()
            reported.append(step)
            let first = !sawFirst
            sawFirst = true
            lock.unlock()
            if first { firstLine.signal() }
        }

        /// Waits until the writer reported its first durable step (or `timeout` passed).
        func waitForFirstReport(timeout: Double) -> Bool { firstLine.wait(timeout: .now() + timeout) == .success }

        /// SIGKILLs the process, waits for it, and returns every step it reported durable.
        func kill() -> [Int64] {
            Glibc.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            _ = readerDone.wait(timeout: .now() + 10)
            lock.lock()
            defer { lock.unlock() }
            return reported
        }
    }

    // MARK: Checking what survived

    /// Reads the run as `runlog verify` does (every payload checked) and checks its history
    /// against what the writer reported. Returns the last step present, if any.
    @discardableResult
    static func verify(_ run: String, reported: [Int64], context: String) throws -> Int64? {
        let log = run + "/run.rlog"
        guard FileManager.default.fileExists(atPath: log) else {
            // Killed before the log existed: nothing may have been reported.
            #expect(reported.isEmpty, "\(context): steps were reported but there is no log")
            return nil
        }
        #expect(zip(reported, reported.dropFirst()).allSatisfy { $0 < $1 }, "\(context): reports out of order")
        let reader = try LogReader(path: log, options: .init(verifyPayloads: true))
        defer { reader.close() }
        #expect(reader.damaged.isEmpty)
        _ = try reader.allRecords()
        let history = try reader.contents().history
        let steps = history.map(\.step)
        if let last = steps.last {
            #expect(steps == Array(0...last), "\(context): steps are not exactly 0...\(last) (\(steps.count) rows)")
        }
        if let durable = reported.last {
            #expect((steps.last ?? -1) >= durable, "\(context): step \(durable) was reported durable, the log ends at \(steps.last ?? -1)")
        }
        var bad = 0
        for row in history {
            let ok = row.values["loss"] == .double(1 / Double(row.step + 1))
                && row.values["acc"] == .double(Double(row.step % 100) / 100)
                && row.values["lr"] == .double(0.001) && row.values.count == 3
            if !ok { bad += 1 }
        }
        #expect(bad == 0, "\(context): \(bad) rows hold values that do not belong to their step")
        return steps.last
    }

    // MARK: Trials

    /// One kill at a random moment. Even trials count the delay from the spawn (kills land
    /// during start-up and log creation too); odd trials from the first report (kills land
    /// mid-stream). Flushes of 1, 100 and 3,000 rows vary how frames and reports interleave
    /// (3,000 rows span several 250-row frames, sealed while appending).
    @Test(.enabled(if: CrashTests.runlogBinary != nil, "the runlog executable was not built beside the tests"),
          arguments: 0..<56)
    func killAtARandomMoment(trial: Int) throws {
        let binary = try #require(Self.runlogBinary)
        var rng = SystemRandomNumberGenerator()
        let delay = Double.random(in: 0.005...0.150, using: &rng)
        let dir = TempDir()
        let run = dir.sub("run")
        let rowsPerFlush = [1, 100, 3_000][trial % 3]
        let writer = try StressWriter(binary: binary, directory: run, rowsPerFlush: rowsPerFlush)
        if trial % 2 == 1 {
            #expect(writer.waitForFirstReport(timeout: 20), "trial \(trial): no durable step reported in 20 s")
        }
        Thread.sleep(forTimeInterval: delay)
        let reported = writer.kill()
        let context = "trial \(trial) (\(rowsPerFlush) rows per flush, killed \(Int(delay * 1000)) ms after \(trial % 2 == 1 ? "the first report" : "the spawn"), \(reported.count) reports)"
        let last = try Self.verify(run, reported: reported, context: context)

        // A writer opening the killed run drops the torn tail and reads the same rows.
        if last != nil || FileManager.default.fileExists(atPath: run + "/run.rlog") {
            let w = try LogWriter.open(directory: run)
            try w.close()
            let again = try RunDirectory.reader(run).contents().history.last?.step
            #expect(again == last, "\(context): reopening changed the history")
        }
    }

    /// A killed run is reopened in this process, appended to, killed again through the binary,
    /// and every step stays contiguous and correct.
    @Test(.enabled(if: CrashTests.runlogBinary != nil, "the runlog executable was not built beside the tests"))
    func killedRunIsReopenedAndAppendedTo() throws {
        let binary = try #require(Self.runlogBinary)
        let dir = TempDir()
        let run = dir.sub("run")
        let first = try StressWriter(binary: binary, directory: run)
        #expect(first.waitForFirstReport(timeout: 20))
        Thread.sleep(forTimeInterval: 0.08)
        let reported = first.kill()
        let last = try #require(try Self.verify(run, reported: reported, context: "first kill"))

        let w = try LogWriter.open(directory: run)
        let resumed = last + 1
        for step in resumed..<resumed + 500 {
            try w.appendRow(step: step, keys: ["loss", "acc", "lr"], doubles: [1 / Double(step + 1), Double(step % 100) / 100, 0.001])
            if step % 100 == 0 { try w.flush() }
        }
        try w.close()
        #expect(try Self.verify(run, reported: [resumed + 499], context: "after appending") == resumed + 499)

        // stress-write resumes after the last step; kill it again mid-stream.
        let second = try StressWriter(binary: binary, directory: run)
        #expect(second.waitForFirstReport(timeout: 20))
        Thread.sleep(forTimeInterval: 0.05)
        let reported2 = second.kill()
        #expect(reported2.first.map { $0 > resumed + 499 } ?? true)
        let final = try Self.verify(run, reported: reported2, context: "second kill")
        #expect((final ?? 0) >= resumed + 499)
    }

    @Test func binaryIsFound() {
        #expect(Self.runlogBinary != nil, "no runlog executable found near \(CommandLine.arguments.first ?? "?")")
    }
}

/// A temporary directory owned by one test.
final class TempDir {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "runlog-crash-" + UUID().uuidString.prefix(8)
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    func sub(_ name: String) -> String { path + "/" + name }
}
