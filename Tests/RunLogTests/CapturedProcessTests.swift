import Foundation
import Testing
@testable import RunLog

@Suite("CapturedProcess")
struct CapturedProcessTests {
    @Test("captures standard output and the exit status")
    func output() throws {
        let result = try #require(CapturedProcess.run("/bin/sh", ["-c", "echo hello; echo oops >&2; exit 3"]))
        #expect(result.text == "hello\n")
        #expect(result.status == 3)
        #expect(!result.timedOut)
    }

    @Test("large output does not deadlock")
    func largeOutput() throws {
        let result = try #require(CapturedProcess.run("/bin/sh", ["-c", "head -c 1000000 /dev/zero"]))
        #expect(result.stdout.count == 1_000_000)
        #expect(result.status == 0)
    }

    @Test("a program that hangs is terminated at the time limit")
    func timeout() throws {
        let start = Date()
        let result = try #require(CapturedProcess.run("/bin/sh", ["-c", "exec sleep 30"], timeout: 0.5))
        #expect(result.timedOut)
        #expect(result.status != 0)
        #expect(Date().timeIntervalSince(start) < 2, "SIGTERM, not the SIGKILL fallback, should end it")
    }

    @Test("the child starts with no signals blocked, whatever the calling thread blocks",
          .enabled(if: FileManager.default.fileExists(atPath: "/proc/self/status")))
    func signalMask() throws {
        var block = sigset_t()
        var previous = sigset_t()
        sigemptyset(&block)
        sigaddset(&block, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &block, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        let result = try #require(CapturedProcess.run("/bin/cat", ["/proc/self/status"]))
        let line = try #require(result.text.split(separator: "\n").first { $0.hasPrefix("SigBlk:") })
        let mask = try #require(UInt64(line.dropFirst("SigBlk:".count).trimmingCharacters(in: .whitespaces), radix: 16))
        #expect(mask & (1 << (UInt64(SIGTERM) - 1)) == 0, "SIGTERM blocked in the child: \(line)")
    }

    @Test("nil for a missing program")
    func missing() {
        #expect(CapturedProcess.run("/nonexistent/program", []) == nil)
    }
}
