#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An error from the RunLog store.
///
/// A struct with a ``Code`` rather than an enum, so that codes can be added without
/// breaking users. Every error carries a message that says what happened and what to do,
/// the path and byte offset where it happened when there is one, and the `errno` behind it.
public struct StoreError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: String, Hashable, Sendable {
            case notFound, permissionDenied, ioError, diskFull
            case notARunLog, unsupportedVersion, corrupted, invalidValue, valueTooLarge
            case locked, closed, invalidArgument, stepNotFound, alreadyExists
        }
        fileprivate let base: Base
        private init(_ base: Base) { self.base = base }

        /// The path does not exist.
        public static let notFound = Code(.notFound)
        /// The OS refused access to the path.
        public static let permissionDenied = Code(.permissionDenied)
        /// A read, write or sync failed.
        public static let ioError = Code(.ioError)
        /// The disk (or quota) is full. Nothing that was acknowledged is lost; retry `flush()`.
        public static let diskFull = Code(.diskFull)
        /// The file does not start with the RunLog magic.
        public static let notARunLog = Code(.notARunLog)
        /// The file was written by a newer major version of the format.
        public static let unsupportedVersion = Code(.unsupportedVersion)
        /// A checksum failed or a structure is inconsistent before the end of the log.
        public static let corrupted = Code(.corrupted)
        /// A value cannot be encoded (e.g. nesting too deep).
        public static let invalidValue = Code(.invalidValue)
        /// A record is larger than a frame may hold.
        public static let valueTooLarge = Code(.valueTooLarge)
        /// Another process (or another writer in this one) holds the run's lock.
        public static let locked = Code(.locked)
        /// The writer was closed.
        public static let closed = Code(.closed)
        /// An argument is out of range (e.g. a step below the log's first step).
        public static let invalidArgument = Code(.invalidArgument)
        /// No history row with the requested step exists in the live history.
        public static let stepNotFound = Code(.stepNotFound)
        /// The destination already exists.
        public static let alreadyExists = Code(.alreadyExists)

        public var description: String { base.rawValue }
    }

    public var code: Code
    public var message: String
    public var path: String?
    /// Byte offset in the file where the problem was found.
    public var offset: UInt64?
    /// The `errno` behind the error, if any.
    public var errno: Int32?

    public init(_ code: Code, _ message: String, path: String? = nil, offset: UInt64? = nil, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.path = path
        self.offset = offset
        self.errno = errno
    }

    public var description: String {
        var s = "\(code): \(message)"
        if let path { s += " (path: \(path)" + (offset.map { ", offset: \($0)" } ?? "") + ")" }
        else if let offset { s += " (offset: \(offset))" }
        if let errno { s += " [errno \(errno): \(String(cString: strerror(errno)))]" }
        return s
    }

    /// Maps an `errno` from a system call on `path` to a store error: the one place that does.
    static func system(_ operation: String, path: String, errno e: Int32) -> StoreError {
        let code: Code
        switch e {
        case ENOENT, ENOTDIR: code = .notFound
        case EACCES, EPERM, EROFS: code = .permissionDenied
        case ENOSPC, EDQUOT: code = .diskFull
        case EEXIST: code = .alreadyExists
        default: code = .ioError
        }
        return StoreError(code, "\(operation) failed", path: path, errno: e)
    }
}
