/// The sync of one run as a state machine with no I/O inside: it takes events (what the
/// server answered, what the log grew by, a timer) and returns actions (what to send, what
/// to persist, how long to wait), so every transition is unit-tested.
///
/// The cursor is the highest frame sequence the server acknowledged. Only frames after it
/// are sent, as stored, each request naming the local frame before its first one
/// (`after`), so every send is idempotent and a sync killed at any moment resumes where the
/// server's acknowledgement says.
public struct RunSyncMachine: Sendable {
    /// A local frame, as far as syncing cares.
    public struct Frame: Sendable, Hashable {
        public var sequence: UInt64
        public var size: Int
        public var records: Int
        public init(sequence: UInt64, size: Int, records: Int) {
            self.sequence = sequence
            self.size = size
            self.records = records
        }
    }

    public struct Configuration: Sendable {
        /// Bytes of frames per request. Default 8 MiB.
        public var batchBytes = 8 << 20
        /// Frames per request. Default 4,096.
        public var batchFrames = 4096
        /// Retries of one request before the run is reported failed. Default 8.
        public var maxAttempts = 8
        /// First backoff, doubled per attempt up to `maxBackoff`. Defaults 0.25 s and 30 s.
        public var initialBackoff = 0.25
        public var maxBackoff = 30.0
        /// Follow a run that is still being written until it finishes.
        public var live = false
        /// How often a live run's log is checked for new frames. Default 0.5 s.
        public var pollInterval = 0.5
        public init() {}
    }

    public enum State: Sendable, Equatable {
        case idle
        case fetchingAck
        case sending(range: Range<Int>, after: UInt64)
        case backingOff(attempt: Int)
        case watching
        case finished
        case failed(String)
    }

    public enum Event: Sendable, Equatable {
        case start
        case ackFetched(UInt64)
        /// The server stored a batch and acknowledges through `acknowledged`.
        case sent(acknowledged: UInt64)
        /// The server holds less than `after` claimed: it acknowledges through `acknowledged`.
        case conflict(acknowledged: UInt64)
        /// A failure worth retrying (connection error, 429, 5xx), with the server's `Retry-After`.
        case retryableFailure(retryAfter: Double?, message: String)
        /// A failure retrying will not fix (4xx other than 409/429).
        case fatalFailure(String)
        case backoffElapsed
        /// The log grew (live mode), or the writer went away.
        case polled(newFrames: [Frame], writerActive: Bool)
    }

    public enum Action: Sendable, Equatable {
        case fetchAck
        /// Send `frames[range]`; `after` is the sequence of the local frame before them (0 at the start).
        case send(range: Range<Int>, after: UInt64)
        case persist(acknowledged: UInt64)
        case sleep(seconds: Double)
        /// Wait `seconds`, then report the log's new frames with `.polled`.
        case poll(seconds: Double)
        case finish
        case fail(String)
    }

    public private(set) var state: State = .idle
    public private(set) var frames: [Frame]
    public private(set) var acknowledged: UInt64
    public private(set) var attempt = 0
    public let configuration: Configuration
    private var writerActive: Bool
    private var pendingAfterBackoff: Action?
    /// A number in [0, 1) per call: injected so tests are deterministic.
    private let jitter: @Sendable () -> Double

    public init(frames: [Frame], acknowledged: UInt64 = 0, writerActive: Bool = false, configuration: Configuration = Configuration(),
                jitter: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }) {
        self.frames = frames
        self.acknowledged = acknowledged
        self.writerActive = writerActive
        self.configuration = configuration
        self.jitter = jitter
    }

    /// Frames the server has not acknowledged.
    public var unsentFrames: ArraySlice<Frame> { frames[firstUnsent...] }

    private var firstUnsent: Int {
        var lo = 0, hi = frames.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if frames[mid].sequence <= acknowledged { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    public mutating func handle(_ event: Event) -> [Action] {
        switch (state, event) {
        case (.idle, .start):
            state = .fetchingAck
            return [.fetchAck]

        case (.fetchingAck, .ackFetched(let n)):
            // The server's word replaces the local cursor (lower too: a server restored from
            // an older backup); it is saved only when it differs.
            attempt = 0
            let persist = n != acknowledged
            acknowledged = n
            return (persist ? [.persist(acknowledged: n)] : []) + next()

        case (.sending, .sent(let n)), (.sending, .conflict(let n)):
            attempt = 0
            let persist = n != acknowledged
            acknowledged = n
            return (persist ? [.persist(acknowledged: n)] : []) + next()

        case (.fetchingAck, .retryableFailure(let retryAfter, let message)), (.sending, .retryableFailure(let retryAfter, let message)):
            let retry: Action
            if case .sending(let range, let after) = state { retry = .send(range: range, after: after) } else { retry = .fetchAck }
            attempt += 1
            guard attempt < configuration.maxAttempts else {
                state = .failed("gave up after \(attempt) attempts: \(message)")
                return [.fail("gave up after \(attempt) attempts: \(message)")]
            }
            pendingAfterBackoff = retry
            state = .backingOff(attempt: attempt)
            return [.sleep(seconds: backoff(attempt: attempt, retryAfter: retryAfter))]

        case (.backingOff, .backoffElapsed):
            guard let retry = pendingAfterBackoff else { return next() }
            pendingAfterBackoff = nil
            if case .send(let range, let after) = retry { state = .sending(range: range, after: after) } else { state = .fetchingAck }
            return [retry]

        case (.fetchingAck, .fatalFailure(let message)), (.sending, .fatalFailure(let message)):
            state = .failed(message)
            return [.fail(message)]

        case (.watching, .polled(let newFrames, let active)):
            writerActive = active
            if let last = frames.last?.sequence {
                frames.append(contentsOf: newFrames.filter { $0.sequence > last })
            } else {
                frames.append(contentsOf: newFrames)
            }
            return next()

        default:
            return []
        }
    }

    /// Seconds to wait before attempt `attempt`: exponential with jitter, or the server's
    /// `Retry-After` when it is longer.
    func backoff(attempt: Int, retryAfter: Double?) -> Double {
        let base = min(configuration.maxBackoff, configuration.initialBackoff * Double(1 << min(attempt - 1, 20)))
        let jittered = base / 2 + base / 2 * jitter()
        return max(jittered, retryAfter ?? 0)
    }

    /// What to do once the cursor moved: send the next batch, watch, or finish.
    private mutating func next() -> [Action] {
        let i = firstUnsent
        if acknowledged > 0, i < frames.count, i == 0 || frames[i - 1].sequence != acknowledged {
            // The server holds a frame this log does not have at that place: a different or
            // compacted log. Resending would duplicate history.
            let message = "the server acknowledges frame \(acknowledged), which is not a frame of this log (was it compacted after a partial sync?)"
            state = .failed(message)
            return [.fail(message)]
        }
        guard i < frames.count else {
            if configuration.live && writerActive {
                state = .watching
                return [.poll(seconds: configuration.pollInterval)]
            }
            state = .finished
            return [.finish]
        }
        var end = i
        var bytes = 0
        while end < frames.count, end - i < configuration.batchFrames, bytes == 0 || bytes + frames[end].size <= configuration.batchBytes {
            bytes += frames[end].size
            end += 1
        }
        let after = i > 0 ? frames[i - 1].sequence : 0
        state = .sending(range: i..<end, after: after)
        return [.send(range: i..<end, after: after)]
    }
}
