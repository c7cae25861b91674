import Foundation
import Testing
@testable import RunLog
#if canImport(RunLogStore)
import RunLogStore
#endif

@Suite("ConfigYAML")
struct ConfigYAMLTests {
    @Test("scalars resolve to typed values")
    func scalars() throws {
        let config = try ConfigYAML.parse("""
            i: 42
            neg: -7
            sep: 1_000_000
            hex: 0x1F
            oct: 0o17
            f: 0.001
            exp: 1e-3
            expDot: 3.0e-4
            lead: .5
            trail: 2.
            nan: .nan
            inf: .inf
            ninf: -.inf
            t: true
            y: yes
            off: Off
            n: null
            tilde: ~
            empty:
            s: hello world
            url: http://example.org:8080/x
            dq: "a \\"quoted\\" \\u00e9 \\n end"
            sq: 'it''s'
            numstr: "42"
            version: 1.2.3
            """)
        #expect(config["i"] == .int(42))
        #expect(config["neg"] == .int(-7))
        #expect(config["sep"] == .int(1_000_000))
        #expect(config["hex"] == .int(31))
        #expect(config["oct"] == .int(15))
        #expect(config["f"] == .double(0.001))
        #expect(config["exp"] == .double(0.001))
        #expect(config["expDot"] == .double(3e-4))
        #expect(config["lead"] == .double(0.5))
        #expect(config["trail"] == .double(2))
        #expect(config["nan"]?.doubleValue?.isNaN == true)
        #expect(config["inf"] == .double(.infinity))
        #expect(config["ninf"] == .double(-.infinity))
        #expect(config["t"] == .bool(true))
        #expect(config["y"] == .bool(true))
        #expect(config["off"] == .bool(false))
        #expect(config["n"] == .null)
        #expect(config["tilde"] == .null)
        #expect(config["empty"] == .null)
        #expect(config["s"] == .string("hello world"))
        #expect(config["url"] == .string("http://example.org:8080/x"))
        #expect(config["dq"] == .string("a \"quoted\" é \n end"))
        #expect(config["sq"] == .string("it's"))
        #expect(config["numstr"] == .string("42"))
        #expect(config["version"] == .string("1.2.3"))
    }

    @Test("reads the training config fixture: nesting, lists, flow collections, comments")
    func trainFixture() throws {
        let config = try ConfigYAML.config(contentsOf: SupportTestKit.fixture("config/train.yaml"))
        #expect(config["experiment"] == .string("baseline v2"))
        #expect(config["seed"] == .int(1234))
        #expect(config["lr"] == .double(0.001))
        #expect(config["warmup_ratio"] == .double(0.05))
        #expect(config["loss_scale"] == .double(.infinity))
        #expect(config["grad_clip"]?.doubleValue?.isNaN == true)
        #expect(config["use_amp"] == .bool(true))
        #expect(config["resume_from"] == .null)
        #expect(config["notes"] == .string("it's fine"))
        #expect(config["model"] == .object([
            "name": "resnet50", "depth": 50, "widths": [64, 128, 256, 512],
            "head": ["classes": 1000, "activation": nil],
        ]))
        #expect(config["schedules"] == .array([
            ["name": "warmup", "steps": 500],
            ["name": "cosine", "steps": 99500],
        ]))
        #expect(config["augment"] == ["flip", "crop"])
        #expect(config["devices"] == ["train": [0, 1], "eval": 2])
        #expect(config.count == 13)
    }

    @Test("wandb's {desc, value} shape is unwrapped and bookkeeping keys dropped")
    func wandbShape() throws {
        let url = try SupportTestKit.fixture("config/wandb-config-defaults.yaml")
        let config = try ConfigYAML.config(contentsOf: url)
        #expect(config == [
            "epochs": 100,
            "batch_size": 32,
            "lr": 3e-4,
            "optimizer": ["name": "adamw", "betas": [0.9, 0.999]],
            "layers": [512, 256],
            "dropout": 0.1,
        ])
        // The raw parse keeps the shape.
        let raw = try ConfigYAML.parse(String(contentsOf: url, encoding: .utf8))
        #expect(raw["epochs"] == ["desc": "Number of epochs to train over", "value": 100])
        #expect(raw["wandb_version"] == 1)
    }

    @Test("a mapping that merely contains a value key is not unwrapped")
    func unwrapOnlyExactShape() throws {
        let config = try ConfigYAML.config(fromYAML: "metric:\n  value: 3\n  goal: minimize\n")
        #expect(config["metric"] == ["value": 3, "goal": "minimize"])
    }

    @Test("nested lists, lists of lists, multi-line flow lists, quoted keys")
    func structures() throws {
        let config = try ConfigYAML.parse("""
            grid:
              - - 1
                - 2
              - [3, 4]
            flow: [a, "b, c",
                   {x: 1, y: [true, null]}]
            "quoted key": 1
            'single key': 2
            list_of_maps:
            - a: 1
              b:
                c: 2
            - plain
            -
            """)
        #expect(config["grid"] == [[1, 2], [3, 4]])
        #expect(config["flow"] == ["a", "b, c", ["x": 1, "y": [true, nil]]])
        #expect(config["quoted key"] == 1)
        #expect(config["single key"] == 2)
        #expect(config["list_of_maps"] == [["a": 1, "b": ["c": 2]], "plain", nil])
    }

    @Test("comments, document markers, CRLF, and a hash inside strings")
    func commentsAndMarkers() throws {
        let config = try ConfigYAML.parse("%YAML 1.2\r\n---\r\n# header\r\na: 1 # one\r\nb: \"x # not a comment\"\r\nc: don't # apostrophe\r\nd: a#b\r\n...\r\nignored: after end\r\n")
        #expect(config == ["a": 1, "b": "x # not a comment", "c": "don't", "d": "a#b"])
    }

    @Test("an empty document is an empty config")
    func emptyDocument() throws {
        #expect(try ConfigYAML.parse("") == [:])
        #expect(try ConfigYAML.parse("# only a comment\n\n---\n") == [:])
    }

    @Test("errors carry the line number", arguments: [
        ("a: 1\nb: |\n  text\n", 2, "block scalars"),
        ("a: 1\n\tb: 2\n", 2, "tabs"),
        ("a: 1\na: 2\n", 2, "duplicate key"),
        ("a: 1\n  b: 2\n", 2, "multi-line"),
        ("- 1\n- 2\n", 1, "top level must be a mapping"),
        ("just text\n", 1, "top level must be a mapping"),
        ("a:\n  b: 1\n c: 2\n", 3, "indentation"),
        ("a: [1, 2\nb: 3\n", 1, "unclosed ["),
        ("a: \"open\nb: 1\n", 1, "unterminated"),
        ("a: &anchor 1\n", 1, "anchors"),
        ("a: !!float 1\n", 1, "tags"),
        ("a: 1\n---\nb: 2\n", 2, "several documents"),
        ("x: 1\ny: 99999999999999999999\n", 2, "64-bit"),
        ("a: [1 2] x\n", 1, "unexpected text"),
        ("a: {b 1}\n", 1, "expected :"),
        ("a: \"bad \\q escape\"\n", 1, "unknown escape"),
        ("a:\n  - 1\n  b: 2\n", 3, "unexpected indentation"),
    ])
    func errors(text: String, line: Int, fragment: String) {
        do {
            let parsed = try ConfigYAML.parse(text)
            Issue.record("parsed \(text.debugDescription) as \(parsed)")
        } catch {
            #expect(error.line == line, "\(error)")
            #expect(error.description.contains(fragment), "\(error)")
            #expect(error.description.hasPrefix("YAML line \(line):"))
        }
    }

    @Test("a missing file is an error naming it")
    func missingFile() {
        do {
            _ = try ConfigYAML.config(contentsOf: URL(fileURLWithPath: "/nonexistent/config.yaml"))
            Issue.record("no error")
        } catch {
            #expect(error.line == 0)
            #expect(error.description.contains("/nonexistent/config.yaml"))
        }
    }
}
