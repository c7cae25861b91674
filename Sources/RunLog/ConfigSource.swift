import Foundation
import RunLogStore

/// What `start(config:)` accepts: a dictionary, any `Encodable` value (flattened into keys),
/// or the path of a YAML file.
///
/// ```swift
/// try Run.start(config: ["lr": 3e-4, "batch": 64])
/// try Run.start(config: .encodable(hyperparameters))
/// try Run.start(config: .yamlFile("config.yaml"))
/// ```
public enum ConfigSource: Sendable, ExpressibleByDictionaryLiteral {
    case values([String: Value])
    case encodable(any Encodable & Sendable)
    case yamlFile(String)

    public init(dictionaryLiteral elements: (String, Value)...) {
        self = .values(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }

    /// Resolves the source into config values.
    func resolve() throws(RunLogError) -> [String: Value] {
        switch self {
        case .values(let v): return v
        case .encodable(let e):
            do { return try ConfigFlattener.flatten(e) } catch {
                throw RunLogError(.usage, "config could not be encoded: \(error)", underlying: error)
            }
        case .yamlFile(let path):
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw .usage("config file \(path) cannot be read")
            }
            do { return try ConfigYAML.config(fromYAML: text) } catch {
                throw .usage("config file \(path): \(error)")
            }
        }
    }
}
