import Foundation
import Testing
@testable import RunLog
#if canImport(RunLogStore)
import RunLogStore
#endif

@Suite("ConfigFlattener")
struct ConfigFlattenerTests {
    enum Optimizer: String, Encodable { case adam, sgd }

    struct Schedule: Encodable {
        var kind = "cosine"
        var warmupSteps: UInt16 = 500
    }

    struct TrainConfig: Encodable {
        var lr = 3e-4
        var epochs = 90
        var batchSize: Int32 = 256
        var ratio: Float = 0.1
        var useAMP = true
        var optimizer = Optimizer.adam
        var layers = [64, 128]
        var schedule = Schedule()
        var warmup: Int? = nil
        var seed: Int? = 7
        var lossScale = Double.infinity
        var clip = Double.nan
        var labels: [String: Int] = ["cat": 0, "dog": 1]
        var matrix: [[Double]] = [[1, 0], [0, 1]]
    }

    @Test("a struct becomes typed key/values; ints stay ints, doubles stay doubles")
    func structFlattening() throws {
        let config = try ConfigFlattener.flatten(TrainConfig())
        #expect(config["lr"] == .double(3e-4))
        #expect(config["epochs"] == .int(90))
        #expect(config["batchSize"] == .int(256))
        #expect(config["ratio"] == .double(0.1))  // Float keeps its short decimal form
        #expect(config["useAMP"] == .bool(true))
        #expect(config["optimizer"] == .string("adam"))
        #expect(config["layers"] == .array([.int(64), .int(128)]))
        #expect(config["schedule"] == .object(["kind": .string("cosine"), "warmupSteps": .int(500)]))
        #expect(config["warmup"] == .null)  // nil is kept, not dropped
        #expect(config["seed"] == .int(7))
        #expect(config["lossScale"] == .double(.infinity))
        #expect(config["labels"] == .object(["cat": .int(0), "dog": .int(1)]))
        #expect(config["matrix"] == .array([.array([.double(1), .double(0)]), .array([.double(0), .double(1)])]))
        #expect(config.count == 14)
    }

    @Test("NaN survives bit for bit")
    func nan() throws {
        struct C: Encodable { var a = Double.nan; var b = -Double.nan; var c = -0.0 }
        let config = try ConfigFlattener.flatten(C())
        guard case .double(let a) = config["a"], case .double(let b) = config["b"], case .double(let c) = config["c"] else {
            Issue.record("not doubles: \(config)")
            return
        }
        #expect(a.bitPattern == Double.nan.bitPattern)
        #expect(b.bitPattern == (-Double.nan).bitPattern)
        #expect(c.bitPattern == (-0.0).bitPattern)
    }

    @Test("a dictionary is flattened like a struct")
    func dictionary() throws {
        let config = try ConfigFlattener.flatten(["dropout": 0.1, "depth": 50.0])
        #expect(config == ["dropout": .double(0.1), "depth": .double(50)])
    }

    @Test("Date, URL, Data and Decimal get readable forms")
    func specialTypes() throws {
        struct C: Encodable {
            var started = Date(timeIntervalSince1970: 1_700_000_000)
            var dataset = URL(string: "https://example.org/data/train.tar")!
            var key = Data([0xDE, 0xAD, 0xBE, 0xEF])
            var price = Decimal(string: "12.5")!
        }
        let config = try ConfigFlattener.flatten(C())
        #expect(config["started"] == .string("2023-11-14T22:13:20Z"))
        #expect(config["dataset"] == .string("https://example.org/data/train.tar"))
        #expect(config["key"] == .string("3q2+7w=="))
        #expect(config["price"] == .double(12.5))
    }

    @Test("enums with payloads, classes with super, and custom encode(to:)")
    func customShapes() throws {
        enum Activation: Encodable { case relu, leaky(slope: Double) }
        class Base: Encodable {
            var name = "base"
        }
        final class Derived: Base {
            var extra = 2
            enum CodingKeys: String, CodingKey { case extra }
            override func encode(to encoder: any Encoder) throws {
                var container = encoder.container(keyedBy: CodingKeys.self)
                try container.encode(extra, forKey: .extra)
                try super.encode(to: container.superEncoder())
            }
        }
        struct Custom: Encodable {
            func encode(to encoder: any Encoder) throws {
                var container = encoder.unkeyedContainer()
                try container.encode(1)
                try container.encodeNil()
                var nested = container.nestedContainer(keyedBy: AnyKey.self)
                try nested.encode("x", forKey: AnyKey("k"))
            }
        }
        struct AnyKey: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(_ s: String) { stringValue = s }
            init?(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }
        struct C: Encodable {
            var act = Activation.leaky(slope: 0.2)
            var model = Derived()
            var custom = Custom()
        }
        let config = try ConfigFlattener.flatten(C())
        #expect(config["act"] == .object(["leaky": .object(["slope": .double(0.2)])]))
        #expect(config["model"] == .object(["extra": .int(2), "super": .object(["name": .string("base")])]))
        #expect(config["custom"] == .array([.int(1), .null, .object(["k": .string("x")])]))
    }

    @Test("the top level must be keyed")
    func topLevelMustBeKeyed() {
        #expect(throws: ConfigFlattenError.notKeyed(found: "an array")) { try ConfigFlattener.flatten([1, 2]) }
        #expect(throws: ConfigFlattenError.notKeyed(found: "an integer")) { try ConfigFlattener.flatten(5) }
        #expect(throws: ConfigFlattenError.notKeyed(found: "a string")) { try ConfigFlattener.flatten("x") }
    }

    @Test("an unsigned value above Int64.max is an error naming its path")
    func overflow() {
        struct Inner: Encodable { var values: [UInt64] = [1, .max] }
        struct C: Encodable { var inner = Inner() }
        do {
            _ = try ConfigFlattener.flatten(C())
            Issue.record("accepted UInt64.max")
        } catch {
            guard case .unrepresentable(let path, _) = error else {
                Issue.record("wrong error \(error)")
                return
            }
            #expect(path == "inner.values[1]")
        }
    }

    @Test("an error thrown by encode(to:) is wrapped with its path")
    func encoderFailure() {
        struct Failing: Encodable {
            struct Boom: Error {}
            func encode(to encoder: any Encoder) throws { throw Boom() }
        }
        struct C: Encodable { var nested = ["ok": [Failing()]] }
        do {
            _ = try ConfigFlattener.flatten(C())
            Issue.record("no error")
        } catch {
            guard case .encodingFailed(let path, let message) = error else {
                Issue.record("wrong error \(error)")
                return
            }
            #expect(path == "nested.ok[0]")
            #expect(message.contains("Boom"))
        }
    }

    @Test("encode gives any shape")
    func encodeAnyShape() throws {
        #expect(try ConfigFlattener.encode([1.5, 2]) == .array([.double(1.5), .double(2)]))
        #expect(try ConfigFlattener.encode(Int8(-3)) == .int(-3))
        #expect(try ConfigFlattener.encode(Optional<Int>.none) == .null)
    }
}
