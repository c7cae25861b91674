/// Decodes the `tensorflow.Event` protobuf by hand (only the fields RunLog needs).
///
/// Field numbers, from `event.proto`, `summary.proto` and `tensor.proto` (checked against
/// tensorboardX output): Event { 1 wall_time double, 2 step int64, 3 file_version string,
/// 5 summary }; Summary { 1 repeated value }; Value { 1 tag, 2 simple_value float,
/// 3 obsolete_old_style_histogram, 4 image, 5 histo, 6 audio, 8 tensor, 9 metadata };
/// SummaryMetadata { 1 plugin_data { 1 plugin_name } }; TensorProto { 1 dtype, 2 tensor_shape
/// { 2 repeated dim { 1 size } }, 4 tensor_content, 5 float_val, 6 double_val }.
enum TensorBoardEventDecoder {
    /// The payload is not valid protobuf.
    struct Malformed: Error {}

    /// Decodes one event. `pluginByTag` remembers each tag's plugin name, because writers such
    /// as TensorFlow 2 store a tag's metadata only on its first value in a file.
    static func decodeEvent(_ bytes: [UInt8], in range: Range<Int>, offset: Int,
                            pluginByTag: inout [String: String]) throws(Malformed) -> TensorBoardEvent {
        var event = TensorBoardEvent(offset: offset, step: 0, wallTime: 0)
        var cursor = ProtoCursor(bytes: bytes, position: range.lowerBound, end: range.upperBound)
        while let (field, wire) = try cursor.nextField() {
            switch (field, wire) {
            case (1, 1): event.wallTime = Double(bitPattern: try cursor.fixed64())
            case (2, 0): event.step = Int64(bitPattern: try cursor.varint())
            case (3, 2): event.fileVersion = try cursor.message().string
            case (5, 2):
                var summary = try cursor.message()
                while let (field, wire) = try summary.nextField() {
                    if field == 1, wire == 2 {
                        event.values.append(try decodeValue(try summary.message(), pluginByTag: &pluginByTag))
                    } else {
                        try summary.skip(wire)
                    }
                }
            default: try cursor.skip(wire)
            }
        }
        return event
    }

    private static func decodeValue(_ message: ProtoCursor,
                                    pluginByTag: inout [String: String]) throws(Malformed) -> TensorBoardSummaryValue {
        var cursor = message
        var tag = "", plugin = "", simple: Float?, legacyPlugin: String?, tensor: ProtoCursor?
        while let (field, wire) = try cursor.nextField() {
            switch (field, wire) {
            case (1, 2): tag = try cursor.message().string
            case (2, 5): simple = Float(bitPattern: try cursor.fixed32())
            case (3, 2), (5, 2): legacyPlugin = "histograms"; try cursor.skip(wire)
            case (4, 2): legacyPlugin = "images"; try cursor.skip(wire)
            case (6, 2): legacyPlugin = "audio"; try cursor.skip(wire)
            case (8, 2): tensor = try cursor.message()
            case (9, 2):
                var metadata = try cursor.message()
                while let (field, wire) = try metadata.nextField() {
                    guard field == 1, wire == 2 else { try metadata.skip(wire); continue }
                    var pluginData = try metadata.message()
                    while let (field, wire) = try pluginData.nextField() {
                        if field == 1, wire == 2 { plugin = try pluginData.message().string } else { try pluginData.skip(wire) }
                    }
                }
            default: try cursor.skip(wire)
            }
        }
        if plugin.isEmpty { plugin = pluginByTag[tag] ?? "" } else { pluginByTag[tag] = plugin }

        if let simple { return TensorBoardSummaryValue(tag: tag, kind: .scalar, value: Double(simple)) }
        if let legacyPlugin { return TensorBoardSummaryValue(tag: tag, kind: .other(legacyPlugin)) }
        if let tensor, plugin == "scalars" || plugin.isEmpty, let number = try scalar(of: tensor) {
            return TensorBoardSummaryValue(tag: tag, kind: .scalar, value: number)
        }
        return TensorBoardSummaryValue(tag: tag, kind: .other(plugin))
    }

    /// The number in a one-element `DT_FLOAT` (1) or `DT_DOUBLE` (2) tensor, else `nil`.
    private static func scalar(of message: ProtoCursor) throws(Malformed) -> Double? {
        var cursor = message
        var dtype: UInt64 = 0, elements: Int64 = 1, numbers: [Double] = [], content: ProtoCursor?
        while let (field, wire) = try cursor.nextField() {
            switch (field, wire) {
            case (1, 0): dtype = try cursor.varint()
            case (2, 2):
                var shape = try cursor.message()
                while let (field, wire) = try shape.nextField() {
                    guard field == 2, wire == 2 else { try shape.skip(wire); continue }
                    var dim = try shape.message()
                    var size: Int64 = -1
                    while let (field, wire) = try dim.nextField() {
                        if field == 1, wire == 0 { size = Int64(bitPattern: try dim.varint()) } else { try dim.skip(wire) }
                    }
                    elements = size < 0 ? -1 : elements.multipliedReportingOverflow(by: size).partialValue
                }
            case (4, 2): content = try cursor.message()
            case (5, 5): numbers.append(Double(Float(bitPattern: try cursor.fixed32())))
            case (5, 2):
                var packed = try cursor.message()
                while !packed.isAtEnd { numbers.append(Double(Float(bitPattern: try packed.fixed32()))) }
            case (6, 1): numbers.append(Double(bitPattern: try cursor.fixed64()))
            case (6, 2):
                var packed = try cursor.message()
                while !packed.isAtEnd { numbers.append(Double(bitPattern: try packed.fixed64())) }
            default: try cursor.skip(wire)
            }
        }
        if var content {  // raw little-endian bytes, used instead of float_val/double_val
            switch (dtype, content.end - content.position) {
            case (1, 4): numbers.append(Double(Float(bitPattern: try content.fixed32())))
            case (2, 8): numbers.append(Double(bitPattern: try content.fixed64()))
            default: return nil
            }
        }
        guard dtype == 1 || dtype == 2, elements == 1, numbers.count == 1 else { return nil }
        return numbers[0]
    }
}

/// A read position in protobuf wire-format bytes; nested messages share the byte array.
struct ProtoCursor {
    let bytes: [UInt8]
    var position: Int
    let end: Int

    var isAtEnd: Bool { position >= end }

    /// The remaining bytes as UTF-8 text.
    var string: String { String(decoding: bytes[position..<end], as: UTF8.self) }

    /// The next field's number and wire type, or `nil` at the end.
    mutating func nextField() throws(TensorBoardEventDecoder.Malformed) -> (Int, Int)? {
        guard !isAtEnd else { return nil }
        let key = try varint()
        guard key >> 3 > 0, key >> 3 <= UInt64(Int32.max) else { throw .init() }
        return (Int(key >> 3), Int(key & 7))
    }

    mutating func varint() throws(TensorBoardEventDecoder.Malformed) -> UInt64 {
        var result: UInt64 = 0
        for shift in stride(from: UInt64(0), to: 64, by: 7) {
            guard position < end else { throw .init() }
            let byte = bytes[position]
            position += 1
            result |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return result }
        }
        throw .init()
    }

    mutating func fixed32() throws(TensorBoardEventDecoder.Malformed) -> UInt32 {
        UInt32(truncatingIfNeeded: try littleEndian(4))
    }

    mutating func fixed64() throws(TensorBoardEventDecoder.Malformed) -> UInt64 {
        try littleEndian(8)
    }

    /// The next length-delimited field as a cursor of its own.
    mutating func message() throws(TensorBoardEventDecoder.Malformed) -> ProtoCursor {
        let length = try varint()
        guard length <= UInt64(end - position) else { throw .init() }
        let start = position
        position += Int(length)
        return ProtoCursor(bytes: bytes, position: start, end: position)
    }

    /// Skips a field's value of the given wire type.
    mutating func skip(_ wire: Int) throws(TensorBoardEventDecoder.Malformed) {
        switch wire {
        case 0: _ = try varint()
        case 1: _ = try littleEndian(8)
        case 2: _ = try message()
        case 5: _ = try littleEndian(4)
        default: throw .init()  // groups (3, 4) are not used by these messages
        }
    }

    private mutating func littleEndian(_ count: Int) throws(TensorBoardEventDecoder.Malformed) -> UInt64 {
        guard end - position >= count else { throw .init() }
        var value: UInt64 = 0
        for index in 0..<count { value |= UInt64(bytes[position + index]) << (8 * UInt64(index)) }
        position += count
        return value
    }
}
