import RunLogStore

@_exported import struct RunLogStore.HistoryRow
@_exported import enum RunLogStore.Value

/// A Swift value that can be logged, stored in config or summary: numbers, strings, bools,
/// arrays and dictionaries of them, and `Value` itself.
public protocol ValueConvertible {
    var runLogValue: Value { get }
}

extension Value: ValueConvertible { public var runLogValue: Value { self } }
extension Double: ValueConvertible { public var runLogValue: Value { .double(self) } }
extension Float: ValueConvertible { public var runLogValue: Value { .double(Double(self)) } }
extension Int: ValueConvertible { public var runLogValue: Value { .int(Int64(self)) } }
extension Int64: ValueConvertible { public var runLogValue: Value { .int(self) } }
extension Int32: ValueConvertible { public var runLogValue: Value { .int(Int64(self)) } }
extension UInt32: ValueConvertible { public var runLogValue: Value { .int(Int64(self)) } }
extension Bool: ValueConvertible { public var runLogValue: Value { .bool(self) } }
extension String: ValueConvertible { public var runLogValue: Value { .string(self) } }
extension Substring: ValueConvertible { public var runLogValue: Value { .string(String(self)) } }
extension Optional: ValueConvertible where Wrapped: ValueConvertible {
    public var runLogValue: Value { self?.runLogValue ?? .null }
}
extension Array: ValueConvertible where Element: ValueConvertible {
    public var runLogValue: Value { .array(map(\.runLogValue)) }
}
extension Dictionary: ValueConvertible where Key == String, Value: ValueConvertible {
    public var runLogValue: RunLogStore.Value { .object(mapValues(\.runLogValue)) }
}
