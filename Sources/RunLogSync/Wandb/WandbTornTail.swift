/// How a `.wandb` file ends short: the bytes after the last whole record that could not be
/// used. Not an error: a killed writer leaves this (wandb-core writes whole 32 KiB blocks and
/// loses the partial block in memory), and so does a copy taken while the run is live.
public struct WandbTornTail: Sendable, Hashable, CustomStringConvertible {
    public enum Reason: String, Sendable, Hashable {
        /// The file is shorter than the 7-byte file header (but what is there matches it).
        case truncatedFileHeader
        /// The file ends inside a chunk header or a chunk's payload.
        case truncatedChunk
        /// The file ends after a FIRST (or MIDDLE) chunk whose LAST chunk never came.
        case incompleteRecord
        /// The last chunk fails its checks and nothing but zero bytes follows it: a write that
        /// did not reach the disk whole. (Damage to the final chunk of a file cannot be told
        /// from this.)
        case damagedTail
    }

    public var reason: Reason
    /// Where the unusable bytes start: the first chunk of the record that was dropped, or
    /// the cut chunk when no record was open.
    public var offset: Int64
    /// Bytes from ``offset`` to the end of the file.
    public var byteCount: Int64
    /// For ``Reason/damagedTail``: the check that failed.
    public var damage: WandbFormatError?

    public init(reason: Reason, offset: Int64, byteCount: Int64, damage: WandbFormatError? = nil) {
        self.reason = reason
        self.offset = offset
        self.byteCount = byteCount
        self.damage = damage
    }

    public var description: String {
        "\(reason.rawValue): \(byteCount) bytes from offset \(offset) dropped" + (damage.map { " (\($0.code.rawValue))" } ?? "")
    }
}
