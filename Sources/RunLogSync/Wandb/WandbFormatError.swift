/// A failure while reading a wandb `.wandb` transaction log.
///
/// A file cut short at the end (a killed writer, a partial copy) is *not* an error: the reader
/// returns every whole record and reports the cut as a ``WandbTornTail``. Only damage that is
/// followed by more data, a file that is not a `.wandb` log, or a file that cannot be read is.
public struct WandbFormatError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong.
    public enum Code: String, Sendable, Hashable {
        /// The path does not exist, or a run directory holds no `run-<id>.wandb` file.
        case notFound
        /// A run directory holds more than one candidate `.wandb` file.
        case ambiguousRunDirectory
        /// The file could not be opened or read.
        case unreadable
        /// The file does not start with the `:W&B` magic and 0xBEE1.
        case notAWandbFile
        /// The file header names a store version other than 0.
        case unsupportedVersion
        /// A chunk's CRC-32 (IEEE, over type byte and payload) does not match.
        case checksumMismatch
        /// A chunk's length runs past the end of its 32 KiB block.
        case invalidChunkLength
        /// A chunk's type byte is not FULL (1), FIRST (2), MIDDLE (3) or LAST (4).
        case invalidChunkType
        /// Chunks out of order: MIDDLE or LAST without a FIRST, or FULL or FIRST while a
        /// record begun by a FIRST is still open.
        case unexpectedChunk
        /// A whole record passed its checksums but is not a valid `wandb_internal.Record` protobuf.
        case malformedRecord
        /// A `value_json` string is not JSON (bare `NaN`, `Infinity` and `-Infinity` are accepted).
        case malformedValue
    }

    /// What went wrong.
    public var code: Code
    /// Byte offset in the file of the offending chunk or record (or of the read that failed).
    public var offset: Int64
    /// The `.wandb` file (or the directory searched).
    public var path: String
    /// Human-readable detail.
    public var message: String

    /// Creates an error.
    public init(_ code: Code, offset: Int64 = 0, path: String, message: String = "") {
        self.code = code
        self.offset = offset
        self.path = path
        self.message = message
    }

    public var description: String {
        "WandbFormatError.\(code.rawValue) at byte \(offset) of \(path)" + (message.isEmpty ? "" : ": \(message)")
    }
}
