import Testing
@testable import RunLogSync

@Suite struct RunSyncMachineTests {
    func frames(_ seqs: [UInt64], size: Int = 100) -> [RunSyncMachine.Frame] {
        seqs.map { .init(sequence: $0, size: size, records: 10) }
    }

    func machine(_ seqs: [UInt64], ack: UInt64 = 0, configure: (inout RunSyncMachine.Configuration) -> Void = { _ in }) -> RunSyncMachine {
        var c = RunSyncMachine.Configuration()
        configure(&c)
        return RunSyncMachine(frames: frames(seqs), acknowledged: ack, configuration: c, jitter: { 0.5 })
    }

    @Test func startsByAskingTheServer() {
        var m = machine([1, 2, 3])
        #expect(m.handle(.start) == [.fetchAck])
        #expect(m.state == .fetchingAck)
    }

    @Test func sendsOnlyWhatTheServerLacks() {
        var m = machine([1, 2, 3, 4], ack: 0)
        _ = m.handle(.start)
        #expect(m.handle(.ackFetched(2)) == [.persist(acknowledged: 2), .send(range: 2..<4, after: 2)])
        #expect(m.handle(.sent(acknowledged: 4)) == [.persist(acknowledged: 4), .finish])
        #expect(m.state == .finished)
    }

    @Test func nothingToSendFinishesAtOnce() {
        var m = machine([1, 2])
        _ = m.handle(.start)
        #expect(m.handle(.ackFetched(2)) == [.persist(acknowledged: 2), .finish])
    }

    @Test func theCursorIsSavedOnlyWhenTheServerMovesIt() {
        var same = machine([1, 2, 3], ack: 2)
        _ = same.handle(.start)
        #expect(same.handle(.ackFetched(2)) == [.send(range: 2..<3, after: 2)])
        // A server that lost frames (restored from a backup) moves the cursor back.
        var lower = machine([1, 2, 3], ack: 3)
        _ = lower.handle(.start)
        #expect(lower.handle(.ackFetched(1)) == [.persist(acknowledged: 1), .send(range: 1..<3, after: 1)])
    }

    @Test func batchesBySizeAndCount() {
        var m = machine(Array(1...10)) { $0.batchBytes = 350; $0.batchFrames = 100 }
        _ = m.handle(.start)
        #expect(m.handle(.ackFetched(0)) == [.send(range: 0..<3, after: 0)])
        #expect(m.handle(.sent(acknowledged: 3)) == [.persist(acknowledged: 3), .send(range: 3..<6, after: 3)])
        var n = machine(Array(1...10)) { $0.batchFrames = 4 }
        _ = n.handle(.start)
        #expect(n.handle(.ackFetched(0)).last == .send(range: 0..<4, after: 0))
    }

    @Test func oneFrameLargerThanABatchStillGoes() {
        var m = machine([1, 2], configure: { $0.batchBytes = 10 })
        _ = m.handle(.start)
        #expect(m.handle(.ackFetched(0)).last == .send(range: 0..<1, after: 0))
    }

    @Test func gapsInSequencesUseTheLocalPredecessor() {
        var m = machine([1, 2, 7, 9])
        _ = m.handle(.start)
        #expect(m.handle(.ackFetched(2)).last == .send(range: 2..<4, after: 2))
    }

    @Test func conflictResendsFromTheServersAcknowledgement() {
        var m = machine([1, 2, 3, 4], ack: 3)
        _ = m.handle(.start)
        _ = m.handle(.ackFetched(3))
        // The server lost frames (restored from a backup): it now holds only 1.
        #expect(m.handle(.conflict(acknowledged: 1)) == [.persist(acknowledged: 1), .send(range: 1..<4, after: 1)])
    }

    @Test func retriesWithBackoffThenGivesUp() {
        var m = machine([1, 2]) { $0.maxAttempts = 3; $0.initialBackoff = 1 }
        _ = m.handle(.start)
        _ = m.handle(.ackFetched(0))
        #expect(m.handle(.retryableFailure(retryAfter: nil, message: "reset")) == [.sleep(seconds: 0.75)])
        #expect(m.handle(.backoffElapsed) == [.send(range: 0..<2, after: 0)])
        #expect(m.handle(.retryableFailure(retryAfter: nil, message: "reset")) == [.sleep(seconds: 1.5)])
        #expect(m.handle(.backoffElapsed) == [.send(range: 0..<2, after: 0)])
        let last = m.handle(.retryableFailure(retryAfter: nil, message: "reset"))
        #expect(last.count == 1)
        if case .fail(let message) = last[0] { #expect(message.contains("3 attempts")) } else { Issue.record("expected fail, got \(last)") }
    }

    @Test func honoursRetryAfter() {
        var m = machine([1]) { $0.initialBackoff = 0.1 }
        _ = m.handle(.start)
        #expect(m.handle(.retryableFailure(retryAfter: 7, message: "429")) == [.sleep(seconds: 7)])
        #expect(m.handle(.backoffElapsed) == [.fetchAck])
    }

    @Test func successResetsTheAttemptCount() {
        var m = machine([1, 2, 3]) { $0.batchFrames = 1; $0.maxAttempts = 2 }
        _ = m.handle(.start)
        _ = m.handle(.ackFetched(0))
        _ = m.handle(.retryableFailure(retryAfter: nil, message: "x"))
        _ = m.handle(.backoffElapsed)
        _ = m.handle(.sent(acknowledged: 1))
        #expect(m.attempt == 0)
        #expect(m.handle(.retryableFailure(retryAfter: nil, message: "x")).count == 1)
        #expect(m.state == .backingOff(attempt: 1))
    }

    @Test func fatalFailureStopsTheRun() {
        var m = machine([1])
        _ = m.handle(.start)
        #expect(m.handle(.fatalFailure("403")) == [.fail("403")])
        #expect(m.state == .failed("403"))
        #expect(m.handle(.sent(acknowledged: 1)) == [])
    }

    @Test func refusesToResendACompactedLog() {
        // The server acknowledged frame 5 of the old log; compaction renumbered from 6.
        var m = machine([6, 7])
        _ = m.handle(.start)
        let actions = m.handle(.ackFetched(5))
        if case .fail(let message)? = actions.last { #expect(message.contains("compacted")) } else { Issue.record("expected fail, got \(actions)") }
    }

    @Test func liveModeWatchesUntilTheWriterLeaves() {
        var c = RunSyncMachine.Configuration()
        c.live = true
        c.pollInterval = 0.2
        var m = RunSyncMachine(frames: frames([1]), writerActive: true, configuration: c, jitter: { 0 })
        _ = m.handle(.start)
        #expect(m.handle(.ackFetched(1)) == [.persist(acknowledged: 1), .poll(seconds: 0.2)])
        #expect(m.state == .watching)
        #expect(m.handle(.polled(newFrames: frames([2, 3]), writerActive: true)) == [.send(range: 1..<3, after: 1)])
        #expect(m.handle(.sent(acknowledged: 3)) == [.persist(acknowledged: 3), .poll(seconds: 0.2)])
        #expect(m.handle(.polled(newFrames: [], writerActive: false)) == [.finish])
    }

    @Test func ignoresEventsThatDoNotFitTheState() {
        var m = machine([1])
        #expect(m.handle(.sent(acknowledged: 1)) == [])
        #expect(m.handle(.backoffElapsed) == [])
        #expect(m.state == .idle)
    }
}
