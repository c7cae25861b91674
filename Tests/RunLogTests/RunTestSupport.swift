import Foundation
import Logging
import RunLogStore
import Synchronization
import RunLogTestSupport
import Testing
@testable import RunLog

// Helpers for the SDK tests (StartParameterTests, RunAPITests, LifecycleTests, ServicesTests).

// MARK: Temporary directories

/// A temporary directory owned by one test, removed when the test drops it.
final class RunTestDir: @unchecked Sendable {
    let path: String

    init() {
        let base = FileManager.default.temporaryDirectory.resolvingSymlinksInPath().path
        path = base + "/runlog-sdk-test-" + UUID().uuidString.prefix(12)
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// `path/<name>`, not created.
    func sub(_ name: String) -> String { path + "/" + name }

    /// Creates `path/<name>` (and its parents) and returns it.
    @discardableResult
    func makeDirectory(_ name: String) -> String {
        let p = sub(name)
        try! FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return p
    }

    /// Writes `text` to `path/<name>` and returns the file's path.
    @discardableResult
    func write(_ name: String, _ text: String) -> String {
        let p = sub(name)
        try! FileManager.default.createDirectory(atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try! text.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    /// `<path>/runlog/<project>`: where `start(dir: path, project:)` puts run directories.
    func projectDirectory(_ project: String) -> String { path + "/runlog/" + project }

    /// Whether anything at all was created inside the directory.
    var isEmpty: Bool { ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).isEmpty }
}

// MARK: Settings and loggers

extension Settings {
    /// Settings for tests: no signal hooks, no environment, no background sampling, and no
    /// fsync (the tests that are about durability set it themselves).
    static var test: Settings {
        var s = Settings()
        s.handleSignals = false
        s.environment = [:]
        s.systemMetricsInterval = nil
        s.durability = .none
        s.flushInterval = .milliseconds(100)
        return s
    }

    /// ``test`` with `body` applied.
    static func test(_ body: (inout Settings) -> Void) -> Settings {
        var s = Settings.test
        body(&s)
        return s
    }
}

/// A logger that drops everything (keeps expected warnings out of the test output).
let quietLogger = Logger(label: "runlog-test") { _ in SwiftLogNoOpLogHandler() }

/// Records what a run logs, to assert on warnings.
final class LogRecorder: Sendable {
    struct Entry: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]
    }

    private let entries = Mutex<[Entry]>([])

    var all: [Entry] { entries.withLock { $0 } }

    /// Messages at `.warning` or above.
    var warnings: [String] { all.filter { $0.level >= .warning }.map(\.message) }

    var logger: Logger {
        Logger(label: "runlog-test") { _ in Handler(recorder: self) }
    }

    fileprivate func append(_ e: Entry) { entries.withLock { $0.append(e) } }

    private struct Handler: LogHandler {
        let recorder: LogRecorder
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        var metadataProvider: Logger.MetadataProvider?

        func log(event: LogEvent) {
            var md: [String: String] = [:]
            for (k, v) in event.metadata ?? [:] { md[k] = "\(v)" }
            recorder.append(Entry(level: event.level, message: event.message.description, metadata: md))
        }

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
    }
}

// MARK: Starting runs

/// `Run.start` with test defaults: the temp directory as `dir`, project `"test"`, offline,
/// ``Settings/test`` and, unless a test is about `reinit`, `reinit: .createNew` so that a run
/// of a test running in parallel is never returned instead of a new one.
@discardableResult
func startRun(
    in tmp: RunTestDir?, mode: Mode? = .offline, entity: String? = nil, project: String? = "test", id: String? = nil,
    name: String? = nil, notes: String? = nil, tags: [String]? = nil, config: ConfigSource? = nil,
    configExcludeKeys: [String]? = nil, configIncludeKeys: [String]? = nil, allowValChange: Bool? = nil,
    group: String? = nil, jobType: String? = nil, force: Bool? = nil, anonymous: AnonymousMode? = nil,
    reinit: ReinitPolicy? = .createNew, resume: ResumeMode? = nil, resumeFrom: String? = nil, forkFrom: String? = nil,
    saveCode: Bool? = nil, tensorboard: Bool? = nil, syncTensorboard: Bool? = nil, monitorGym: Bool? = nil,
    settings: Settings = .test, logger: Logger = quietLogger, callerFile: String = #filePath
) throws(RunLogError) -> Run {
    try Run.start(
        entity: entity, project: project, dir: tmp?.path, id: id, name: name, notes: notes, tags: tags, config: config,
        configExcludeKeys: configExcludeKeys, configIncludeKeys: configIncludeKeys, allowValChange: allowValChange,
        group: group, jobType: jobType, mode: mode, force: force, anonymous: anonymous, reinit: reinit, resume: resume,
        resumeFrom: resumeFrom, forkFrom: forkFrom, saveCode: saveCode, tensorboard: tensorboard,
        syncTensorboard: syncTensorboard, monitorGym: monitorGym, settings: settings, logger: logger,
        callerFile: callerFile)
}

// MARK: Reading the log back

/// What a reader sees in the run's log (the run may still be live: the reader needs no lock).
func contents(_ run: Run) throws -> RunContents {
    try contents(atPath: try #require(run.directory, "the run has no directory (disabled?)"))
}

func contents(atPath directory: String) throws -> RunContents {
    let reader = try RunDirectory.reader(directory)
    defer { reader.close() }
    return try reader.contents()
}

extension RunContents {
    var exits: [ExitRecord] { events.compactMap { if case .exit(let e) = $0 { e } else { nil } } }
    var resumes: [ResumeMarker] { events.compactMap { if case .resume(let r) = $0 { r } else { nil } } }
    var files: [FileReference] { events.compactMap { if case .file(let f) = $0 { f } else { nil } } }
    var systemSamples: [SystemSample] { events.compactMap { if case .systemMetrics(let s) = $0 { s } else { nil } } }
    var consoleLines: [ConsoleLine] { events.compactMap { if case .console(let c) = $0 { c } else { nil } } }
    var steps: [Int64] { history.map(\.step) }
    /// `metric`'s value in each live row that has it.
    func series(_ metric: String) -> [Value] { history.compactMap { $0.values[metric] } }
}

/// Checks that a disabled run wrote nothing: no directory, nothing created under `tmp`.
func expectNothingWritten(_ run: Run, _ tmp: RunTestDir, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(run.isDisabled, sourceLocation: sourceLocation)
    #expect(run.directory == nil, sourceLocation: sourceLocation)
    #expect(tmp.isEmpty, "a disabled run created files under \(tmp.path)", sourceLocation: sourceLocation)
}

/// A string of `count` ASCII bytes, made fast (building it character by character is slow in debug builds).
func longString(_ count: Int) -> String {
    String(decoding: [UInt8](repeating: UInt8(ascii: "x"), count: count), as: UTF8.self)
}

// MARK: Errors

/// Runs `body`, which must throw a ``RunLogError`` with `code` (and, if given, a message
/// containing `fragment`); returns the error.
@discardableResult
func expectRunLogError(
    _ code: RunLogError.Code, _ fragment: String? = nil, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> Void
) -> RunLogError? {
    do {
        try body()
        Issue.record("expected a \(code) error, but nothing was thrown", sourceLocation: sourceLocation)
        return nil
    } catch let error as RunLogError {
        #expect(error.code == code, "got \(error)", sourceLocation: sourceLocation)
        if let fragment {
            #expect(error.message.contains(fragment), "message \(error.message.debugDescription) lacks \(fragment.debugDescription)",
                    sourceLocation: sourceLocation)
        }
        return error
    } catch {
        Issue.record("expected a RunLogError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

// MARK: Simulated crashes

/// Writes a run's log the way the SDK would have before the process was killed: metadata,
/// config and history, but no exit record. The run is `<tmp>/runlog/<project>/<id>`.
@discardableResult
func writeCrashedRun(
    in tmp: RunTestDir, project: String = "test", id: String, startTime: Int64, steps: Range<Int64> = 0..<3,
    config: [String: Value] = [:], tags: [String] = []
) throws -> String {
    let dir = tmp.projectDirectory(project) + "/" + id
    try FileManager.default.createDirectory(atPath: tmp.projectDirectory(project), withIntermediateDirectories: true)
    let writer = try LogWriter.open(directory: dir)
    try writer.append(.runMetadata(RunMetadata([
        "id": .string(id), "project": .string(project), "name": .string("crashed-\(id)"), "start_time": .int(startTime),
    ])))
    if !config.isEmpty { try writer.append(.config(ConfigChange(values: config))) }
    if !tags.isEmpty { try writer.append(.tags(tags)) }
    for s in steps { try writer.appendRow(step: s, values: ["loss": .double(1 / Double(s + 1))]) }
    try writer.close()
    return dir
}

/// Writes a finished run's log (with an exit record), as a run that ended normally leaves it.
@discardableResult
func writeFinishedRun(in tmp: RunTestDir, project: String = "test", id: String, startTime: Int64) throws -> String {
    let dir = tmp.projectDirectory(project) + "/" + id
    try FileManager.default.createDirectory(atPath: tmp.projectDirectory(project), withIntermediateDirectories: true)
    let writer = try LogWriter.open(directory: dir)
    try writer.append(.runMetadata(RunMetadata([
        "id": .string(id), "project": .string(project), "start_time": .int(startTime),
    ])))
    try writer.appendRow(step: 0, values: ["loss": 1.0])
    try writer.append(.exit(ExitRecord(state: "finished", exitCode: 0, runtime: 1, timestamp: startTime + 1_000_000)))
    try writer.close()
    return dir
}

/// Runs `body` with the working directory set to `path`, then restores it. Only inside an
/// ``ProcessStateTrait/exclusive`` suite.
func withWorkingDirectory<T>(_ path: String, _ body: () throws -> T) throws -> T {
    let previous = FileManager.default.currentDirectoryPath
    guard FileManager.default.changeCurrentDirectoryPath(path) else {
        throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: path])
    }
    defer { _ = FileManager.default.changeCurrentDirectoryPath(previous) }
    return try body()
}

// MARK: Fixtures and processes

/// `Fixtures/<relativePath>` in the repository, found by walking up from this file.
func fixturePath(_ relativePath: String, file: String = #filePath) throws -> String {
    try SupportTestKit.fixture(relativePath, filePath: file).path
}

/// Copies the TensorBoard fixture directory `name` (e.g. `scalars`) to `dest` and returns `dest`.
/// The fixtures are read-only; the copy is made writable so the temp directory can be removed.
@discardableResult
func copyTensorBoardFixture(_ name: String, to dest: String) throws -> String {
    let source = try fixturePath("tensorboard/" + name)
    try FileManager.default.createDirectory(atPath: dest, withIntermediateDirectories: true)
    for file in try FileManager.default.contentsOfDirectory(atPath: source) where file.hasPrefix("events.out.tfevents") {
        let data = try Data(contentsOf: URL(fileURLWithPath: source + "/" + file))
        try data.write(to: URL(fileURLWithPath: dest + "/" + file))
    }
    return dest
}

/// Runs `git` with `arguments` in `directory`; returns its trimmed standard output.
@discardableResult
func git(_ arguments: [String], in directory: String) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/git")
    process.arguments = ["-C", directory, "-c", "user.name=RunLog Test", "-c", "user.email=test@example.com",
                         "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"] + arguments
    var env = ProcessInfo.processInfo.environment
    for k in ["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"] { env[k] = nil }
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    process.environment = env
    let out = Pipe()
    process.standardOutput = out
    process.standardError = FileHandle.nullDevice
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw CocoaError(.executableLoad, userInfo: [NSLocalizedDescriptionKey: "git \(arguments) failed with \(process.terminationStatus)"])
    }
    return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}
