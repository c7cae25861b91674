import Foundation
import Testing
@testable import RunLog

// Golden answers: Fixtures/tensorboard/expected/*.json, computed by tensorboard's own readers
// (see Fixtures/tensorboard/README.md). Nothing below hard-codes a fixture value.

/// `Fixtures/<relativePath>`, found by walking up from this file to the directory holding `Fixtures/`.
private func fixtureURL(_ relativePath: String, from file: String = #filePath) -> URL {
    var directory = URL(fileURLWithPath: file).deletingLastPathComponent()
    while directory.path != "/" {
        let fixtures = directory.appendingPathComponent("Fixtures")
        if FileManager.default.fileExists(atPath: fixtures.path) {
            return fixtures.appendingPathComponent(relativePath)
        }
        directory.deleteLastPathComponent()
    }
    fatalError("no Fixtures/ directory above \(file)")
}

/// The shape of `expected/<run>.json`.
private struct Expected: Decodable {
    struct File: Decodable {
        var file: String
        var bytes: Int
        var events: Int
        var fileVersion: String?
        var tags: [String: Tag]
    }
    struct Tag: Decodable {
        var kind: String
        var plugin: String?
        var count: Int
        var first: Point
        var last: Point
    }
    struct Point: Decodable {
        var step: Int64
        var wallTime: Double
        var value: Double?  // scalars only; histogram/text values are not compared

        enum CodingKeys: CodingKey { case step, wallTime, value }
        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            step = try container.decode(Int64.self, forKey: .step)
            wallTime = try container.decode(Double.self, forKey: .wallTime)
            value = try? container.decode(Double.self, forKey: .value)
        }
    }
    struct Accumulated: Decodable {
        var scalars: [String: Series]
    }
    struct Series: Decodable {
        var count: Int
        var first: [Double]  // [step, value]
        var last: [Double]
    }
    var run: String
    var files: [File]
    var accumulator: [String: Accumulated]

    static func load(_ run: String) throws -> Expected {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(Expected.self, from: Data(contentsOf: fixtureURL("tensorboard/expected/\(run).json")))
    }
}

/// Start offsets of the records in TFRecord bytes, found from the length fields alone.
private func recordOffsets(_ bytes: [UInt8]) -> [Int] {
    var offsets: [Int] = [], position = 0
    while position + 12 <= bytes.count {
        let length = (0..<8).reduce(0) { $0 | Int(bytes[position + $1]) << (8 * $1) }
        guard position + 16 + length <= bytes.count else { break }
        offsets.append(position)
        position += 16 + length
    }
    return offsets
}

/// A fresh, empty temporary directory.
private func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("tb-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

private func bytes(_ relativePath: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: fixtureURL(relativePath)))
}

private func append(_ bytes: some Sequence<UInt8>, to url: URL) throws {
    let handle = try FileHandle(forWritingTo: url)
    defer { try? handle.close() }
    try handle.seekToEnd()
    try handle.write(contentsOf: Data(bytes))
}

@Suite("TensorBoard event files")
struct TensorBoardTests {
    @Test func maskedCRC32CKnownAnswer() {
        // CRC32C("123456789") = 0xE3069283; masked: rotate right by 15, add 0xA282EAD8.
        #expect(maskedCRC32C(Array("123456789".utf8)[...]) == 0xC78A_B0E5)
    }

    @Test("every event file matches tensorboard's reading", arguments: ["scalars", "multi", "mixed", "truncated"])
    func matchesExpected(run: String) throws {
        let expected = try Expected.load(run)
        #expect(!expected.files.isEmpty)
        for file in expected.files {
            var reader = TensorBoardEventReader(url: fixtureURL("tensorboard/" + file.file))
            let events = try reader.readAvailable()
            #expect(events.count == file.events, "\(file.file)")
            #expect(events.first?.fileVersion == file.fileVersion)
            #expect(reader.offset <= file.bytes)

            var seen: [String: [(event: TensorBoardEvent, value: TensorBoardSummaryValue)]] = [:]
            for event in events {
                for value in event.values { seen[value.tag, default: []].append((event, value)) }
            }
            #expect(Set(seen.keys) == Set(file.tags.keys), "\(file.file)")
            for (tag, want) in file.tags {
                let got = try #require(seen[tag])
                #expect(got.count == want.count, "\(file.file) \(tag)")
                let kind: TensorBoardSummaryValue.Kind = switch want.kind {
                case "scalar": .scalar
                case "histogram": .other("histograms")
                default: .other(want.plugin ?? want.kind)
                }
                #expect(got.allSatisfy { $0.value.kind == kind }, "\(file.file) \(tag)")
                let ends: [(Expected.Point, TensorBoardEvent, TensorBoardSummaryValue)] = [
                    (want.first, got[0].event, got[0].value), (want.last, got[got.count - 1].event, got[got.count - 1].value),
                ]
                for (point, event, value) in ends {
                    #expect(event.step == point.step, "\(file.file) \(tag)")
                    #expect(event.wallTime == point.wallTime, "\(file.file) \(tag)")
                    #expect(value.value == (kind == .scalar ? point.value : nil), "\(file.file) \(tag)")
                }
            }
        }
    }

    @Test func truncatedFileStopsAtLastWholeRecordAndResumes() throws {
        let expected = try Expected.load("truncated").files[0]
        let cut = try bytes("tensorboard/" + expected.file)
        let full = try bytes("tensorboard/scalars/events.out.tfevents.1795715179.vm")
        #expect(full.starts(with: cut))
        let offsets = recordOffsets(full)

        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("events.out.tfevents.1.vm")
        try Data(cut).write(to: url)

        var reader = TensorBoardEventReader(url: url)
        let first = try reader.readAvailable()
        #expect(first.count == expected.events)
        #expect(reader.offset == offsets[expected.events])  // start of the cut record
        #expect(reader.offset < cut.count)
        #expect(try reader.next() == nil)  // asking again changes nothing
        #expect(reader.offset == offsets[expected.events])

        try append(full[cut.count...], to: url)
        let rest = try reader.readAvailable()
        var wholeReader = TensorBoardEventReader(url: fixtureURL("tensorboard/scalars/events.out.tfevents.1795715179.vm"))
        #expect(first + rest == (try wholeReader.readAvailable()))
        #expect(reader.offset == full.count)
    }

    @Test("a flipped bit in a whole record is a typed error at that record", arguments: [
        (5, 20, TensorBoardError.Code.dataChecksumMismatch),  // inside the payload
        (7, 3, .lengthChecksumMismatch),  // inside the length field
        (9, 10, .lengthChecksumMismatch),  // inside the length's checksum
        (11, -1, .dataChecksumMismatch),  // inside the payload's checksum (last byte)
    ])
    func bitFlip(record: Int, byte: Int, code: TensorBoardError.Code) throws {
        var data = try bytes("tensorboard/scalars/events.out.tfevents.1795715179.vm")
        let offsets = recordOffsets(data)
        let position = byte >= 0 ? offsets[record] + byte : offsets[record + 1] + byte
        data[position] ^= 0x10
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("events.out.tfevents.1.vm")
        try Data(data).write(to: url)

        var reader = TensorBoardEventReader(url: url)
        for _ in 0..<record { #expect(try reader.next() != nil) }
        let error = #expect(throws: TensorBoardError.self) { try reader.next() }
        #expect(error?.code == code)
        #expect(error?.offset == offsets[record])
        #expect(error?.path == url.path)
        #expect(reader.offset == offsets[record])  // a retry starts at the bad record

        var allOrNothing = TensorBoardEventReader(url: url)
        #expect(throws: TensorBoardError.self) { try allOrNothing.readAvailable() }
        #expect(allOrNothing.offset == 0)
    }

    @Test func followerPollsAGrowingDirectoryIncrementally() throws {
        let source = try bytes("tensorboard/scalars/events.out.tfevents.1795715179.vm")
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("events.out.tfevents.1795715179.vm")
        let half = source.count / 2
        try Data(source[..<half]).write(to: url)

        var follower = TensorBoardDirectoryFollower(directory: directory)
        let firstHalf = follower.poll()
        #expect(!firstHalf.isEmpty)
        #expect(follower.poll().isEmpty)
        #expect(follower.readers["events.out.tfevents.1795715179.vm"]!.offset <= half)

        try append(source[half...], to: url)
        let subdirectory = directory.appendingPathComponent("loss/train")  // a new run appears
        try FileManager.default.createDirectory(at: subdirectory, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: fixtureURL("tensorboard/multi/loss/train/events.out.tfevents.1795715179.vm"),
                                         to: subdirectory.appendingPathComponent("events.out.tfevents.1795715179.vm"))
        let secondHalf = follower.poll()
        #expect(follower.poll().isEmpty)
        #expect(follower.failures.isEmpty)

        var oneShot = TensorBoardDirectoryFollower(directory: fixtureURL("tensorboard/scalars"))
        let all = oneShot.poll()
        let scalars = try Expected.load("scalars").files[0].tags
        #expect(all.count == scalars.values.map(\.count).reduce(0, +))
        #expect(firstHalf + secondHalf.filter { $0.run.isEmpty } == all)
        #expect(Set(secondHalf.filter { !$0.run.isEmpty }.map(\.metricName)) == ["loss/train/loss"])
    }

    @Test func followerNamesSubdirectoryMetricsLikeWandb() throws {
        let expected = try Expected.load("multi")
        var follower = TensorBoardDirectoryFollower(directory: fixtureURL("tensorboard/multi"))
        let points = follower.poll()
        let byMetric = Dictionary(grouping: points, by: \.metricName)

        var wanted: Set<String> = []
        for (directory, accumulated) in expected.accumulator {
            let run = directory == "multi" ? "" : String(directory.dropFirst("multi/".count))
            for (tag, series) in accumulated.scalars {
                let name = TensorBoardScalarPoint.metricName(run: run, tag: tag)
                wanted.insert(name)
                let got = try #require(byMetric[name])
                #expect(got.count == series.count, "\(name)")
                #expect(got.allSatisfy { $0.run == run && $0.tag == tag })
                #expect([Double(got[0].step), got[0].value] == series.first, "\(name)")
                #expect([Double(got[got.count - 1].step), got[got.count - 1].value] == series.last, "\(name)")
            }
        }
        #expect(Set(byMetric.keys) == wanted)
        #expect(wanted.contains("loss/train/loss") && wanted.contains("epoch"))
        #expect(follower.poll().isEmpty)
    }

    @Test func followerKeepsGoingPastACorruptFile() throws {
        var data = try bytes("tensorboard/scalars/events.out.tfevents.1795715179.vm")
        let offsets = recordOffsets(data)
        data[offsets[4] + 20] ^= 0x01
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try Data(data).write(to: directory.appendingPathComponent("events.out.tfevents.1.vm"))
        try FileManager.default.copyItem(at: fixtureURL("tensorboard/mixed/events.out.tfevents.1795715179.vm"),
                                         to: directory.appendingPathComponent("events.out.tfevents.2.vm"))

        var follower = TensorBoardDirectoryFollower(directory: directory)
        let points = follower.poll()
        #expect(points.filter { $0.tag != "loss" }.count == 3)  // records 1...3 precede the bad one
        #expect(points.filter { $0.tag == "loss" }.count == (try Expected.load("mixed")).files[0].tags["loss"]?.count)
        #expect(follower.failures.keys.sorted() == ["events.out.tfevents.1.vm"])
        #expect(follower.failures["events.out.tfevents.1.vm"]?.offset == offsets[4])
        #expect(follower.poll().isEmpty)  // retried, still failing, nothing new
        #expect(follower.failures.count == 1)
    }

    @Test func scalarTensorsAndRememberedPluginNames() throws {
        // TF2-style summaries: scalars as rank-0 tensors, metadata only on a tag's first value.
        func field(_ number: Int, _ payload: [UInt8]) -> [UInt8] { varint(number << 3 | 2) + varint(payload.count) + payload }
        func varint(_ value: Int) -> [UInt8] {
            var value = UInt64(value), out: [UInt8] = []
            while value >= 0x80 { out.append(UInt8(value & 0x7F) | 0x80); value >>= 7 }
            return out + [UInt8(value)]
        }
        func littleEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }
        let scalarsPlugin = field(9, field(1, field(1, Array("scalars".utf8))))
        let otherPlugin = field(9, field(1, field(1, Array("custom".utf8))))
        let float = field(8, [0x08, 1] + field(2, []) + field(5, littleEndian(Float(0.1).bitPattern)))
        let double = field(8, [0x08, 2] + field(4, littleEndian(Double(0.1).bitPattern)))
        let events: [[UInt8]] = [
            [0x10, 1] + field(5, field(1, field(1, Array("f".utf8)) + scalarsPlugin + float)),
            [0x10, 2] + field(5, field(1, field(1, Array("f".utf8)) + float)),  // no metadata
            [0x10, 3] + field(5, field(1, field(1, Array("d".utf8)) + scalarsPlugin + double)),
            [0x10, 4] + field(5, field(1, field(1, Array("c".utf8)) + otherPlugin + float)),
            [0x10, 5] + field(5, field(1, field(1, Array("c".utf8)) + float)),  // still `custom`
        ]
        var file: [UInt8] = []
        for event in events {
            let length = littleEndian(UInt64(event.count))
            file += length + littleEndian(maskedCRC32C(length[...])) + event + littleEndian(maskedCRC32C(event[...]))
        }
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("events.out.tfevents.1.vm")
        try Data(file).write(to: url)

        var reader = TensorBoardEventReader(url: url)
        let values = try reader.readAvailable().flatMap(\.values)
        #expect(values == [
            TensorBoardSummaryValue(tag: "f", kind: .scalar, value: Double(Float(0.1))),
            TensorBoardSummaryValue(tag: "f", kind: .scalar, value: Double(Float(0.1))),
            TensorBoardSummaryValue(tag: "d", kind: .scalar, value: 0.1),
            TensorBoardSummaryValue(tag: "c", kind: .other("custom")),
            TensorBoardSummaryValue(tag: "c", kind: .other("custom")),
        ])
    }
}
