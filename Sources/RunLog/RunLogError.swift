/// An error from the RunLog SDK.
///
/// The codes mirror the reference client's error classes: usage (bad arguments),
/// authentication, communication (the server), interrupted (the user stopped
/// initialisation) and generic. Every message says what to do.
public struct RunLogError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        /// Invalid arguments: a bad id, a dotted config key, conflicting options, ...
        public static let usage = Code("usage")
        /// Bad or missing credentials.
        public static let authentication = Code("authentication")
        /// The server cannot be reached or answered wrongly.
        public static let communication = Code("communication")
        /// The user stopped initialisation (SIGINT/SIGTERM while starting).
        public static let interrupted = Code("interrupted")
        /// Anything else, including storage errors (see `underlying`).
        public static let generic = Code("generic")
        public var description: String { name }
    }

    public var code: Code
    public var message: String
    /// The error behind this one, e.g. a `StoreError`.
    public var underlying: (any Error & Sendable)?

    public init(_ code: Code, _ message: String, underlying: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    public var description: String {
        "\(code) error: \(message)" + (underlying.map { " (\($0))" } ?? "")
    }

    static func usage(_ message: String) -> RunLogError { RunLogError(.usage, message) }
}
