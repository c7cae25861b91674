/// The constants of the RunLog on-disk format, version 1.
///
/// `FORMAT.md` beside this file describes every byte; this file only holds the numbers,
/// so that the spec and the code can be read side by side. A golden byte-vector test
/// (`GoldenVectorTests`) pins both to each other.
public enum LogFormat {
    // MARK: File header (32 bytes)

    /// `0x89 'R' 'U' 'N' 'L' 'O' 'G' '\n'`: the high first byte catches 7-bit transfers,
    /// the newline catches newline translation.
    public static let fileMagic: [UInt8] = [0x89, 0x52, 0x55, 0x4E, 0x4C, 0x4F, 0x47, 0x0A]
    public static let fileHeaderSize = 32
    /// Readers refuse a file whose major version is higher than this.
    public static let majorVersion: UInt16 = 1
    /// Readers accept any minor version; a higher one only adds things a reader may skip.
    public static let minorVersion: UInt16 = 0

    // MARK: Frame header (52 bytes)

    /// `'R' 'L' 'F' 'R'` at the start of every frame, used by salvage to find the next frame.
    public static let frameMagic: [UInt8] = [0x52, 0x4C, 0x46, 0x52]
    public static let frameHeaderSize = 52
    /// A frame whose stored payload is larger than this is rejected before allocating.
    public static let maxStoredPayload = 64 << 20
    /// A frame whose decompressed payload is larger than this is rejected before allocating.
    public static let maxRawPayload = 256 << 20

    /// Frame payload codecs.
    public enum Codec: UInt8, Sendable {
        case none = 0
        case zstd = 1
    }

    /// Bits of the frame header's flags byte.
    public struct FrameFlags: OptionSet, Sendable, Hashable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        /// The frame holds at least one history row (`firstStep`/`lastStep` are meaningful).
        public static let hasHistory = FrameFlags(rawValue: 1 << 0)
        /// The frame holds a rewind marker.
        public static let hasRewind = FrameFlags(rawValue: 1 << 1)
        /// The frame was written by compaction.
        public static let compacted = FrameFlags(rawValue: 1 << 2)
        /// The frame holds at least one record that is not a history row.
        public static let hasState = FrameFlags(rawValue: 1 << 3)
    }

    // MARK: Records

    /// Record kinds. A reader skips kinds it does not know, by length, with a warning.
    public enum RecordKind: UInt8, Sendable, CaseIterable {
        case runMetadata = 0x01
        case config = 0x02
        case historyBlock = 0x03
        case summary = 0x04
        case tags = 0x05
        case console = 0x06
        case systemMetrics = 0x07
        case file = 0x08
        case rewind = 0x09
        case forkOrigin = 0x0A
        case resume = 0x0B
        case exit = 0x0C
    }

    /// Tags of the self-describing value encoding.
    public enum ValueTag: UInt8, Sendable {
        case null = 0
        case `false` = 1
        case `true` = 2
        case int = 3
        case double = 4
        case string = 5
        case array = 6
        case object = 7
    }

    /// Column encodings inside a history block.
    public enum ColumnEncoding: UInt8, Sendable {
        /// Self-describing values back to back.
        case generic = 0
        /// Doubles: each bit pattern XOR the previous one, stored as 8 byte planes.
        case doubleXORShuffle = 1
        /// Int64s: zigzag varints of the difference from the previous one.
        case intDelta = 2
        /// Doubles: raw bit patterns stored as 8 byte planes.
        case doubleShuffle = 3
    }

    /// Presence of a column's values in a history block.
    public enum Presence: UInt8, Sendable {
        case everyRow = 0
        case bitmap = 1
    }

    /// Nesting depth beyond which a value is rejected (encoding and decoding).
    public static let maxValueDepth = 64

    // MARK: Run directory

    /// The log file inside a run directory.
    public static let logFileName = "run.rlog"
    /// The lock file a writer holds (`flock`, released by the OS when the process dies).
    public static let lockFileName = "run.lock"
    /// The frame index: a cache, always rebuildable from the log.
    public static let indexFileName = "run.idx"
    /// Files saved with the run.
    public static let filesDirectoryName = "files"
}
