import Foundation

#if canImport(RunLogStore)
import RunLogStore
#endif

/// Turns an `Encodable` config (a struct, a command-line options type, a dictionary) into
/// config key/values.
///
/// The top level must encode as keyed (struct, class, `[String: X]`); its properties become
/// the keys, and nested structs become ``Value/object(_:)`` values. A custom encoder, not a
/// JSON round trip, so integers stay ``Value/int(_:)``, floating point stays
/// ``Value/double(_:)`` with NaN and infinities intact, and `Float` values keep their short
/// decimal form (`Float(0.1)` becomes `0.1`, not `0.10000000149011612`).
///
/// Mappings beyond the `Encodable` defaults:
/// - `nil` optionals become ``Value/null`` (the synthesized `encodeIfPresent` would drop them),
/// - `Date` becomes an ISO 8601 string, `URL` its absolute string, `Data` Base64 text,
///   `Decimal` a double.
///
/// ```swift
/// struct Options: Encodable { var lr = 3e-4; var layers = [64, 64]; var warmup: Int? }
/// try ConfigFlattener.flatten(Options())
/// // ["lr": .double(0.0003), "layers": .array([.int(64), .int(64)]), "warmup": .null]
/// ```
package enum ConfigFlattener {
    /// The key/values of `value`, which must encode as keyed.
    package static func flatten<T: Encodable>(_ value: T) throws(ConfigFlattenError) -> [String: Value] {
        let encoded = try encode(value)
        guard case .object(let object) = encoded else {
            throw .notKeyed(found: Self.kind(of: encoded))
        }
        return object
    }

    /// `value` as a ``Value`` of any shape.
    package static func encode<T: Encodable>(_ value: T) throws(ConfigFlattenError) -> Value {
        do {
            return try ValueEncoder.box(value, codingPath: []).resolve()
        } catch let error as ConfigFlattenError {
            throw error
        } catch {
            throw .encodingFailed(path: "", message: "\(error)")
        }
    }

    static func kind(of value: Value) -> String {
        switch value {
        case .null: return "null"
        case .bool: return "a boolean"
        case .int: return "an integer"
        case .double: return "a floating-point number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    /// `a.b[2].c` for a coding path.
    static func describe(_ path: [any CodingKey]) -> String {
        var out = ""
        for key in path {
            if key is IndexKey, let index = key.intValue {
                out += "[\(index)]"
            } else {
                if !out.isEmpty { out += "." }
                out += key.stringValue
            }
        }
        return out
    }
}

/// Why a value could not be turned into config.
package enum ConfigFlattenError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The top level encoded as something other than keyed, e.g. an array or a number.
    case notKeyed(found: String)
    /// A value has no ``Value`` form (an unsigned integer above `Int64.max`).
    case unrepresentable(path: String, reason: String)
    /// The value's own `encode(to:)` threw.
    case encodingFailed(path: String, message: String)

    package var description: String {
        switch self {
        case .notKeyed(let found):
            return "config must encode as keyed values (a struct or a dictionary), not \(found)"
        case let .unrepresentable(path, reason):
            return "config value at \(path.isEmpty ? "top level" : path) cannot be stored: \(reason)"
        case let .encodingFailed(path, message):
            return "encoding config failed\(path.isEmpty ? "" : " at \(path)"): \(message)"
        }
    }
}

// MARK: - Encoder

/// A node of the value being built; containers share nodes, so it is a reference.
private final class Node {
    enum Kind { case empty, leaf, keyed, unkeyed }

    private(set) var kind = Kind.empty
    private var leaf = Value.null
    private var children: [String: Node] = [:]
    private var elements: [Node] = []

    init() {}
    init(_ value: Value) { setLeaf(value) }

    /// The finished value; a container nobody wrote to is an empty object, as in JSON.
    func resolve() -> Value {
        switch kind {
        case .empty: return .object([:])
        case .leaf: return leaf
        case .keyed: return .object(children.mapValues { $0.resolve() })
        case .unkeyed: return .array(elements.map { $0.resolve() })
        }
    }

    func setLeaf(_ value: Value) {
        become(.leaf)
        leaf = value
    }

    /// Takes over another node's content (a single-value container encoding a nested value).
    func adopt(_ other: Node) {
        kind = other.kind
        leaf = other.leaf
        children = other.children
        elements = other.elements
    }

    /// The child at `key`, created empty if missing (a later write through another container
    /// for the same key, as class hierarchies do, reuses it).
    func child(forKey key: String) -> Node {
        become(.keyed)
        if let existing = children[key] { return existing }
        let node = Node()
        children[key] = node
        return node
    }

    func set(_ node: Node, forKey key: String) {
        become(.keyed)
        children[key] = node
    }

    func append(_ node: Node) {
        become(.unkeyed)
        elements.append(node)
    }

    var count: Int { elements.count }

    /// Switches to `newKind`, dropping content of another kind.
    func become(_ newKind: Kind) {
        guard kind != newKind else { return }
        kind = newKind
        leaf = .null
        children = [:]
        elements = []
    }
}

private struct IndexKey: CodingKey {
    var intValue: Int?
    var stringValue: String { "\(intValue!)" }
    init(_ index: Int) { intValue = index }
    init?(stringValue: String) { nil }
    init?(intValue: Int) { self.intValue = intValue }
}

private struct NamedKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ name: String) { stringValue = name }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

private struct ValueEncoder: Encoder {
    let node: Node
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        node.become(.keyed)
        return KeyedEncodingContainer(KeyedContainer<Key>(node: node, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        node.become(.unkeyed)
        return UnkeyedContainer(node: node, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        SingleValueContainer(node: node, codingPath: codingPath)
    }

    /// The node for `value`, encoding it with the special cases of ``ConfigFlattener``.
    static func box<T: Encodable>(_ value: T, codingPath: [any CodingKey]) throws -> Node {
        switch value {
        case let date as Date:
            return Node(.string(date.formatted(.iso8601)))
        case let url as URL:
            return Node(.string(url.absoluteString))
        case let data as Data:
            return Node(.string(data.base64EncodedString()))
        case let decimal as Decimal:
            return Node(.double(NSDecimalNumber(decimal: decimal).doubleValue))
        default:
            let node = Node()
            do {
                try value.encode(to: ValueEncoder(node: node, codingPath: codingPath))
            } catch let error as ConfigFlattenError {
                throw error
            } catch {
                throw ConfigFlattenError.encodingFailed(
                    path: ConfigFlattener.describe(codingPath), message: "\(error)")
            }
            return node
        }
    }

    static func int<T: BinaryInteger>(_ value: T, codingPath: [any CodingKey]) throws -> Value {
        guard let exact = Int64(exactly: value) else {
            throw ConfigFlattenError.unrepresentable(
                path: ConfigFlattener.describe(codingPath),
                reason: "\(value) is larger than the largest storable integer (Int64.max)")
        }
        return .int(exact)
    }

    /// A `Float` as the `Double` its shortest decimal form denotes.
    static func float(_ value: Float) -> Value {
        guard value.isFinite, let double = Double(value.description) else { return .double(Double(value)) }
        return .double(double)
    }
}

private struct KeyedContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let node: Node
    let codingPath: [any CodingKey]

    private func put(_ value: Value, _ key: Key) { node.set(Node(value), forKey: key.stringValue) }
    private func path(_ key: Key) -> [any CodingKey] { codingPath + [key] }

    mutating func encodeNil(forKey key: Key) throws { put(.null, key) }
    mutating func encode(_ value: Bool, forKey key: Key) throws { put(.bool(value), key) }
    mutating func encode(_ value: String, forKey key: Key) throws { put(.string(value), key) }
    mutating func encode(_ value: Double, forKey key: Key) throws { put(.double(value), key) }
    mutating func encode(_ value: Float, forKey key: Key) throws { put(ValueEncoder.float(value), key) }
    mutating func encode(_ value: Int, forKey key: Key) throws { put(.int(Int64(value)), key) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { put(.int(Int64(value)), key) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { put(.int(Int64(value)), key) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { put(.int(Int64(value)), key) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { put(.int(value), key) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { put(try ValueEncoder.int(value, codingPath: path(key)), key) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { put(.int(Int64(value)), key) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { put(.int(Int64(value)), key) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { put(.int(Int64(value)), key) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { put(try ValueEncoder.int(value, codingPath: path(key)), key) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        node.set(try ValueEncoder.box(value, codingPath: path(key)), forKey: key.stringValue)
    }

    // Record nil optionals as null instead of dropping the key.
    mutating func encodeIfPresent(_ value: Bool?, forKey key: Key) throws { try encodeOrNull(value, key) }
    mutating func encodeIfPresent(_ value: String?, forKey key: Key) throws { try encodeOrNull(value, key) }
    mutating func encodeIfPresent(_ value: Double?, forKey key: Key) throws { try encodeOrNull(value, key) }
    mutating func encodeIfPresent(_ value: Float?, forKey key: Key) throws { try encodeOrNull(value, key) }
    mutating func encodeIfPresent(_ value: Int?, forKey key: Key) throws { try encodeOrNull(value, key) }
    mutating func encodeIfPresent(_ value: Int8?, forKey key: Key) throws { try encodeOrNull(value, key) }
    mutating func encodeIfPresent(_ value: Int16?, forKey key: Key) throws { try encodeOrNull(value, key) }
    mutating func encodeIfPresent(_ value: Int32?, forKey key: Key) throws { try encodeOrNull(value, key) }
    mutating func encodeIfPresent(_ value: Int64?, forKey key: Key) throws { try encodeOrNull(value, key) }
    mutating func encodeIfPresent(_ value: UInt?, forKey key: Key) throws { try encodeOrNull(value, key) }
    mutating func encodeIfPresent(_ value: UInt8?, forKey key: Key) throws { try encodeOrNull(value, key) }
    mutating func encodeIfPresent(_ value: UInt16?, forKey key: Key) throws { try encodeOrNull(value, key) }
    mutating func encodeIfPresent(_ value: UInt32?, forKey key: Key) throws { try encodeOrNull(value, key) }
    mutating func encodeIfPresent(_ value: UInt64?, forKey key: Key) throws { try encodeOrNull(value, key) }
    mutating func encodeIfPresent<T: Encodable>(_ value: T?, forKey key: Key) throws { try encodeOrNull(value, key) }

    private mutating func encodeOrNull<T: Encodable>(_ value: T?, _ key: Key) throws {
        if let value { try encode(value, forKey: key) } else { put(.null, key) }
    }

    mutating func nestedContainer<NestedKey: CodingKey>(
        keyedBy keyType: NestedKey.Type, forKey key: Key
    ) -> KeyedEncodingContainer<NestedKey> {
        let child = node.child(forKey: key.stringValue)
        child.become(.keyed)
        return KeyedEncodingContainer(KeyedContainer<NestedKey>(node: child, codingPath: path(key)))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let child = node.child(forKey: key.stringValue)
        child.become(.unkeyed)
        return UnkeyedContainer(node: child, codingPath: path(key))
    }

    mutating func superEncoder() -> any Encoder {
        ValueEncoder(node: node.child(forKey: "super"), codingPath: codingPath + [NamedKey("super")])
    }

    mutating func superEncoder(forKey key: Key) -> any Encoder {
        ValueEncoder(node: node.child(forKey: key.stringValue), codingPath: path(key))
    }
}

private struct UnkeyedContainer: UnkeyedEncodingContainer {
    let node: Node
    let codingPath: [any CodingKey]
    var count: Int { node.count }

    private var nextPath: [any CodingKey] { codingPath + [IndexKey(node.count)] }
    private func put(_ value: Value) { node.append(Node(value)) }

    mutating func encodeNil() throws { put(.null) }
    mutating func encode(_ value: Bool) throws { put(.bool(value)) }
    mutating func encode(_ value: String) throws { put(.string(value)) }
    mutating func encode(_ value: Double) throws { put(.double(value)) }
    mutating func encode(_ value: Float) throws { put(ValueEncoder.float(value)) }
    mutating func encode(_ value: Int) throws { put(.int(Int64(value))) }
    mutating func encode(_ value: Int8) throws { put(.int(Int64(value))) }
    mutating func encode(_ value: Int16) throws { put(.int(Int64(value))) }
    mutating func encode(_ value: Int32) throws { put(.int(Int64(value))) }
    mutating func encode(_ value: Int64) throws { put(.int(value)) }
    mutating func encode(_ value: UInt) throws { put(try ValueEncoder.int(value, codingPath: nextPath)) }
    mutating func encode(_ value: UInt8) throws { put(.int(Int64(value))) }
    mutating func encode(_ value: UInt16) throws { put(.int(Int64(value))) }
    mutating func encode(_ value: UInt32) throws { put(.int(Int64(value))) }
    mutating func encode(_ value: UInt64) throws { put(try ValueEncoder.int(value, codingPath: nextPath)) }
    mutating func encode<T: Encodable>(_ value: T) throws {
        node.append(try ValueEncoder.box(value, codingPath: nextPath))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let path = nextPath
        let child = Node()
        child.become(.keyed)
        node.append(child)
        return KeyedEncodingContainer(KeyedContainer<NestedKey>(node: child, codingPath: path))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let path = nextPath
        let child = Node()
        child.become(.unkeyed)
        node.append(child)
        return UnkeyedContainer(node: child, codingPath: path)
    }

    mutating func superEncoder() -> any Encoder {
        let path = nextPath
        let child = Node()
        node.append(child)
        return ValueEncoder(node: child, codingPath: path)
    }
}

private struct SingleValueContainer: SingleValueEncodingContainer {
    let node: Node
    let codingPath: [any CodingKey]

    private func put(_ value: Value) { node.setLeaf(value) }

    mutating func encodeNil() throws { put(.null) }
    mutating func encode(_ value: Bool) throws { put(.bool(value)) }
    mutating func encode(_ value: String) throws { put(.string(value)) }
    mutating func encode(_ value: Double) throws { put(.double(value)) }
    mutating func encode(_ value: Float) throws { put(ValueEncoder.float(value)) }
    mutating func encode(_ value: Int) throws { put(.int(Int64(value))) }
    mutating func encode(_ value: Int8) throws { put(.int(Int64(value))) }
    mutating func encode(_ value: Int16) throws { put(.int(Int64(value))) }
    mutating func encode(_ value: Int32) throws { put(.int(Int64(value))) }
    mutating func encode(_ value: Int64) throws { put(.int(value)) }
    mutating func encode(_ value: UInt) throws { put(try ValueEncoder.int(value, codingPath: codingPath)) }
    mutating func encode(_ value: UInt8) throws { put(.int(Int64(value))) }
    mutating func encode(_ value: UInt16) throws { put(.int(Int64(value))) }
    mutating func encode(_ value: UInt32) throws { put(.int(Int64(value))) }
    mutating func encode(_ value: UInt64) throws { put(try ValueEncoder.int(value, codingPath: codingPath)) }
    mutating func encode<T: Encodable>(_ value: T) throws {
        let boxed = try ValueEncoder.box(value, codingPath: codingPath)
        node.adopt(boxed)
    }
}
