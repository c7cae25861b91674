import Foundation

/// A `google.protobuf.Timestamp`: seconds and nanoseconds since the Unix epoch, UTC.
public struct WandbTimestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var seconds: Int64
    public var nanos: Int32

    public init(seconds: Int64, nanos: Int32) {
        self.seconds = seconds
        self.nanos = nanos
    }

    /// Seconds since the Unix epoch, as a double (loses sub-microsecond precision).
    public var timeIntervalSince1970: Double { Double(seconds) + Double(nanos) / 1e9 }

    public var date: Date { Date(timeIntervalSince1970: timeIntervalSince1970) }

    /// RFC 3339 in UTC with the fraction trimmed of trailing zeros (Go's `time.RFC3339Nano`,
    /// as `wandb leet inspect --summary` prints it): `2026-11-26T17:45:42.94569Z`.
    public var description: String { format(fractionDigits: nil) }

    /// RFC 3339 in UTC with 0, 3, 6 or 9 fraction digits (the protobuf JSON mapping, as
    /// `wandb leet inspect --json` and `MessageToDict` print it): `2026-11-26T17:45:45.948330Z`.
    public var protoJSONString: String {
        let n = nanos
        let digits = n == 0 ? 0 : n % 1_000_000 == 0 ? 3 : n % 1_000 == 0 ? 6 : 9
        return format(fractionDigits: digits)
    }

    private func format(fractionDigits: Int?) -> String {
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = seconds - days * 86_400
        let (y, m, d) = Self.civil(fromDays: days)
        func pad(_ v: Int64, _ width: Int) -> String {
            let s = String(v)
            return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
        }
        var out = "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(secondOfDay / 3600, 2)):\(pad(secondOfDay / 60 % 60, 2)):\(pad(secondOfDay % 60, 2))"
        var fraction = pad(Int64(max(0, min(nanos, 999_999_999))), 9)
        if let digits = fractionDigits {
            fraction = String(fraction.prefix(digits))
        } else {
            while fraction.hasSuffix("0") { fraction.removeLast() }
        }
        if !fraction.isEmpty { out += "." + fraction }
        return out + "Z"
    }

    /// Year, month, day of the proleptic Gregorian calendar for days since 1970-01-01
    /// (Howard Hinnant's `civil_from_days`).
    static func civil(fromDays z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }

    public static func < (a: Self, b: Self) -> Bool { (a.seconds, a.nanos) < (b.seconds, b.nanos) }
}
