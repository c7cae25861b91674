/// A protobuf wire-format reader over a slice of bytes: just what decoding
/// `wandb_internal.Record` needs (varints, fixed 32/64, length-delimited fields, skipping).
///
/// It never traps on bad input: every read is checked against the message's end and throws
/// ``ProtoError``. It borrows the bytes (no reference counting per nested message), so it
/// lives inside the `withUnsafeBufferPointer` of the array that holds them.
package struct ProtoReader {
    /// The protobuf wire types.
    package enum WireType: UInt8 {
        case varint = 0, fixed64 = 1, lengthDelimited = 2, startGroup = 3, endGroup = 4, fixed32 = 5
    }

    package struct ProtoError: Error, CustomStringConvertible {
        package var message: String
        /// Index in the byte array where decoding failed.
        package var index: Int
        package var description: String { "\(message) at payload byte \(index)" }
    }

    package let bytes: UnsafeBufferPointer<UInt8>
    package private(set) var index: Int
    package let end: Int

    /// `range` must lie within `bytes`.
    package init(_ bytes: UnsafeBufferPointer<UInt8>, range: Range<Int>? = nil) {
        self.bytes = bytes
        let r = range ?? 0..<bytes.count
        self.index = r.lowerBound
        self.end = r.upperBound
    }

    package var isAtEnd: Bool { index >= end }

    /// The next field's number and wire type, or `nil` at the end of the message.
    package mutating func nextField() throws(ProtoError) -> (number: Int, wireType: WireType)? {
        guard index < end else { return nil }
        let start = index
        let key = try varint()
        guard let wire = WireType(rawValue: UInt8(key & 7)) else {
            throw ProtoError(message: "invalid wire type \(key & 7)", index: start)
        }
        let number = key >> 3
        guard number >= 1, number <= 536_870_911 else {
            throw ProtoError(message: "invalid field number \(number)", index: start)
        }
        return (Int(number), wire)
    }

    package mutating func varint() throws(ProtoError) -> UInt64 {
        // One byte: field keys, and the lengths and numbers of small fields.
        if index < end, bytes[index] < 0x80 {
            defer { index += 1 }
            return UInt64(bytes[index])
        }
        var result: UInt64 = 0
        var shift: UInt64 = 0
        let start = index
        while true {
            guard index < end else { throw ProtoError(message: "varint runs past the end", index: start) }
            let byte = bytes[index]
            index += 1
            if shift == 63 && byte > 1 { throw ProtoError(message: "varint overflows 64 bits", index: start) }
            result |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return result }
            shift += 7
            if shift > 63 { throw ProtoError(message: "varint longer than 10 bytes", index: start) }
        }
    }

    package mutating func fixed64() throws(ProtoError) -> UInt64 {
        guard end - index >= 8 else { throw ProtoError(message: "fixed64 runs past the end", index: index) }
        var v: UInt64 = 0
        for k in 0..<8 { v |= UInt64(bytes[index + k]) << (8 * UInt64(k)) }
        index += 8
        return v
    }

    package mutating func fixed32() throws(ProtoError) -> UInt32 {
        guard end - index >= 4 else { throw ProtoError(message: "fixed32 runs past the end", index: index) }
        var v: UInt32 = 0
        for k in 0..<4 { v |= UInt32(bytes[index + k]) << (8 * UInt32(k)) }
        index += 4
        return v
    }

    /// The range of a length-delimited field's contents; the reader moves past it.
    package mutating func lengthDelimited() throws(ProtoError) -> Range<Int> {
        let start = index
        let length = try varint()
        guard length <= UInt64(end - index) else {
            throw ProtoError(message: "length \(length) runs past the end", index: start)
        }
        let range = index..<index + Int(length)
        index = range.upperBound
        return range
    }

    /// A reader for the embedded message in the current length-delimited field.
    package mutating func message() throws(ProtoError) -> ProtoReader {
        ProtoReader(bytes, range: try lengthDelimited())
    }

    package mutating func string() throws(ProtoError) -> String {
        let range = try lengthDelimited()
        return String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self)
    }

    package mutating func int64() throws(ProtoError) -> Int64 { Int64(bitPattern: try varint()) }
    package mutating func int32() throws(ProtoError) -> Int32 { Int32(truncatingIfNeeded: Int64(bitPattern: try varint())) }
    package mutating func uint32() throws(ProtoError) -> UInt32 { UInt32(truncatingIfNeeded: try varint()) }
    package mutating func bool() throws(ProtoError) -> Bool { try varint() != 0 }
    package mutating func sint64() throws(ProtoError) -> Int64 {
        let v = try varint()
        return Int64(bitPattern: (v >> 1) ^ (0 &- (v & 1)))
    }
    package mutating func double() throws(ProtoError) -> Double { Double(bitPattern: try fixed64()) }

    /// Skips the value of a field of wire type `wireType` (groups included, nested).
    package mutating func skip(_ wireType: WireType, depth: Int = 0) throws(ProtoError) {
        switch wireType {
        case .varint: _ = try varint()
        case .fixed64: _ = try fixed64()
        case .fixed32: _ = try fixed32()
        case .lengthDelimited: _ = try lengthDelimited()
        case .startGroup:
            guard depth < 64 else { throw ProtoError(message: "groups nested too deep", index: index) }
            while true {
                guard let (_, wire) = try nextField() else {
                    throw ProtoError(message: "unterminated group", index: index)
                }
                if wire == .endGroup { return }
                try skip(wire, depth: depth + 1)
            }
        case .endGroup: throw ProtoError(message: "unexpected end-group", index: index)
        }
    }
}
