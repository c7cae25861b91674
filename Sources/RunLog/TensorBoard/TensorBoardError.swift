/// A failure while reading a TensorBoard event file.
///
/// A record cut short at the end of a file is *not* an error (the writer may still be
/// appending); only a whole record that fails its checks, or a file that cannot be read, is.
public struct TensorBoardError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong.
    public enum Code: String, Sendable, Equatable {
        /// The masked CRC32C of a record's 8-byte length field does not match.
        case lengthChecksumMismatch
        /// The masked CRC32C of a record's payload does not match.
        case dataChecksumMismatch
        /// The record's length is implausibly large.
        case recordTooLarge
        /// The payload passed its checksum but is not a valid `tensorflow.Event` protobuf.
        case malformedEvent
        /// The file could not be opened or read.
        case unreadable
    }

    /// What went wrong.
    public var code: Code
    /// Byte offset in the file of the start of the offending record (or of the read that failed).
    public var offset: Int
    /// The event file.
    public var path: String
    /// Human-readable detail.
    public var message: String

    /// Creates an error.
    public init(_ code: Code, offset: Int, path: String, message: String = "") {
        self.code = code
        self.offset = offset
        self.path = path
        self.message = message
    }

    public var description: String {
        "TensorBoardError.\(code.rawValue) at byte \(offset) of \(path)" + (message.isEmpty ? "" : ": \(message)")
    }
}
