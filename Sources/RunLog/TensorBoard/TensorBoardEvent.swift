/// One `tensorflow.Event` read from an event file.
public struct TensorBoardEvent: Sendable, Equatable {
    /// Byte offset of the event's record in the file.
    public var offset: Int
    /// The training step (`Event.step`).
    public var step: Int64
    /// Seconds since the Unix epoch when the event was written (`Event.wall_time`).
    public var wallTime: Double
    /// Set on the first event of a file (e.g. `brain.Event:2`); `nil` otherwise.
    public var fileVersion: String?
    /// The summary values; empty for events that carry no summary.
    public var values: [TensorBoardSummaryValue]

    /// Creates an event.
    public init(offset: Int, step: Int64, wallTime: Double, fileVersion: String? = nil,
                values: [TensorBoardSummaryValue] = []) {
        self.offset = offset
        self.step = step
        self.wallTime = wallTime
        self.fileVersion = fileVersion
        self.values = values
    }
}

/// One `Summary.Value` of an event.
public struct TensorBoardSummaryValue: Sendable, Equatable {
    /// What kind of data a value holds.
    public enum Kind: Sendable, Hashable {
        /// A number: `simple_value`, or a one-element float32/float64 tensor of the `scalars` plugin.
        case scalar
        /// Anything else, by TensorBoard plugin name: `histograms` (also the legacy `histo` field),
        /// `text`, `images`, `audio`, ... or `""` for a tensor that names no plugin.
        case other(String)
    }

    /// The tag, e.g. `train/loss`.
    public var tag: String
    /// What kind of data the value holds.
    public var kind: Kind
    /// The number, for `.scalar` (float32 values widened exactly); `nil` otherwise.
    public var value: Double?

    /// Creates a value.
    public init(tag: String, kind: Kind, value: Double? = nil) {
        self.tag = tag
        self.kind = kind
        self.value = value
    }
}
