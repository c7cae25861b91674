/// Which member of the `wandb_internal.Record.record_type` oneof a record holds.
///
/// The raw value is the protobuf field number; ``name`` is wandb's own name for it (the one
/// `wandb leet inspect --json` prints as `"type"`).
public struct WandbRecordKind: RawRepresentable, Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The field number in `Record` (0 for a record with no oneof member set).
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    public static let none = WandbRecordKind(rawValue: 0)
    public static let history = WandbRecordKind(rawValue: 2)
    public static let summary = WandbRecordKind(rawValue: 3)
    public static let output = WandbRecordKind(rawValue: 4)
    public static let config = WandbRecordKind(rawValue: 5)
    public static let files = WandbRecordKind(rawValue: 6)
    public static let stats = WandbRecordKind(rawValue: 7)
    public static let artifact = WandbRecordKind(rawValue: 8)
    public static let tbrecord = WandbRecordKind(rawValue: 9)
    public static let alert = WandbRecordKind(rawValue: 10)
    public static let telemetry = WandbRecordKind(rawValue: 11)
    public static let metric = WandbRecordKind(rawValue: 12)
    public static let outputRaw = WandbRecordKind(rawValue: 13)
    public static let run = WandbRecordKind(rawValue: 17)
    public static let exit = WandbRecordKind(rawValue: 18)
    public static let final = WandbRecordKind(rawValue: 20)
    public static let header = WandbRecordKind(rawValue: 21)
    public static let footer = WandbRecordKind(rawValue: 22)
    public static let preempting = WandbRecordKind(rawValue: 23)
    public static let noopLinkArtifact = WandbRecordKind(rawValue: 24)
    public static let useArtifact = WandbRecordKind(rawValue: 25)
    public static let environment = WandbRecordKind(rawValue: 26)
    public static let outputLogger = WandbRecordKind(rawValue: 27)
    public static let request = WandbRecordKind(rawValue: 100)

    static let names: [Int: String] = [
        2: "history", 3: "summary", 4: "output", 5: "config", 6: "files", 7: "stats", 8: "artifact",
        9: "tbrecord", 10: "alert", 11: "telemetry", 12: "metric", 13: "output_raw", 17: "run",
        18: "exit", 20: "final", 21: "header", 22: "footer", 23: "preempting",
        24: "noop_link_artifact", 25: "use_artifact", 26: "environment", 27: "output_logger",
        100: "request",
    ]

    /// Whether `fieldNumber` is a member of the `record_type` oneof in wandb 0.31.0.
    public static func isRecordType(fieldNumber: Int) -> Bool { names[fieldNumber] != nil }

    /// wandb's name (`"output_raw"`), `"none"` for no member, `"field_<n>"` for an unknown one.
    public var name: String {
        if rawValue == 0 { return "none" }
        return Self.names[rawValue] ?? "field_\(rawValue)"
    }

    /// The kind wandb calls `name`, if it is one of 0.31.0's.
    public init?(name: String) {
        guard let (number, _) = Self.names.first(where: { $0.value == name }) else { return nil }
        self.rawValue = number
    }

    public var description: String { name }
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}
