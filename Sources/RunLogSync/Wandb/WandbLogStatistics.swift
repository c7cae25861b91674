/// What a ``WandbLogReader`` has seen so far: chunk and record counts, padding, the file's end.
public struct WandbLogStatistics: Sendable, Hashable {
    /// Chunks read, by type. A record is one FULL chunk, or FIRST, MIDDLE×n, LAST.
    public struct ChunkCounts: Sendable, Hashable {
        public var full = 0
        public var first = 0
        public var middle = 0
        public var last = 0
        /// Zero-length chunks (the writer puts a zero-length FIRST where exactly 7 bytes of a
        /// block are left). Also counted under their type.
        public var zeroLength = 0

        public init() {}

        /// All chunks.
        public var total: Int { full + first + middle + last }
    }

    /// The file's size when the reader last reached its end (0 before that).
    public var fileBytes: Int64 = 0
    public var chunks = ChunkCounts()
    /// Bytes skipped as block padding: block tails under 7 bytes, and the rest of a block
    /// after an all-zero chunk header.
    public var paddingBytes: Int64 = 0
    /// Bytes at the end of the file after the last whole chunk (a cut chunk, or a block tail
    /// too short for a chunk header). 0 for a file a writer closed.
    public var trailingBytes: Int64 = 0
    /// Bytes passed over because of damage (only with ``WandbLogReader/Options/Corruption/skipToNextBlock``).
    public var skippedBytes: Int64 = 0
    /// Whole records returned.
    public var records = 0
    /// Whole records returned, by kind.
    public var recordsByKind: [WandbRecordKind: Int] = [:]
    /// Serialized bytes of the records returned, by kind.
    public var recordBytesByKind: [WandbRecordKind: Int64] = [:]

    public init() {}
}
