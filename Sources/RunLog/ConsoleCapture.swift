import Foundation
import Logging
import RunLogStore

/// Tees the process's stdout and stderr into the run as console lines.
///
/// File descriptors 1 and 2 are replaced by pipes; a thread per stream copies everything to
/// the original descriptor and appends each complete line to the log. `stop()` restores the
/// descriptors and records a last unterminated line.
final class ConsoleCapture: @unchecked Sendable {
    private let writer: LogWriter
    private let logger: Logger
    private var saved: [(fd: Int32, original: Int32, readEnd: Int32, thread: Thread?)] = []
    private let done = DispatchGroup()

    init(writer: LogWriter, logger: Logger) {
        self.writer = writer
        self.logger = logger
    }

    func start() {
        for (fd, stream) in [(Int32(1), ConsoleLine.Stream.stdout), (Int32(2), .stderr)] {
            var fds: [Int32] = [0, 0]
            guard pipe(&fds) == 0 else { logger.warning("console capture unavailable: pipe failed"); continue }
            let original = dup(fd)
            guard original >= 0, dup2(fds[1], fd) >= 0 else {
                close(fds[0]); close(fds[1])
                logger.warning("console capture unavailable: dup failed")
                continue
            }
            close(fds[1])
            let readEnd = fds[0]
            let writer = self.writer
            done.enter()
            let t = Thread { [done] in
                var buffer: [UInt8] = []
                var chunk = [UInt8](repeating: 0, count: 4096)
                while true {
                    let n = chunk.withUnsafeMutableBytes { read(readEnd, $0.baseAddress, 4096) }
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { break }
                    _ = chunk.withUnsafeBytes { write(original, $0.baseAddress, n) }
                    buffer.append(contentsOf: chunk[0..<n])
                    while let nl = buffer.firstIndex(of: 10) {
                        let line = String(decoding: buffer[..<nl], as: UTF8.self)
                        buffer.removeSubrange(...nl)
                        try? writer.append(.console(ConsoleLine(stream: stream, timestamp: Run.nowMicros(), text: line)))
                    }
                }
                if !buffer.isEmpty {
                    try? writer.append(.console(ConsoleLine(stream: stream, timestamp: Run.nowMicros(), text: String(decoding: buffer, as: UTF8.self))))
                }
                close(readEnd)
                // Closed here, not in stop(): until the pipe is drained this thread still copies
                // to it, and a descriptor closed early could be reused by another open().
                close(original)
                done.leave()
            }
            t.name = "runlog-console-\(fd)"
            saved.append((fd, original, readEnd, t))
            t.start()
        }
    }

    func stop() {
        for s in saved {
            // Restoring the descriptor closes the pipe's last write end: the reader drains and ends.
            dup2(s.original, s.fd)
        }
        _ = done.wait(timeout: .now() + 2)
        saved = []
    }
}
