import ArgumentParser
import Foundation
import Logging
import RunLogStore
import RunLogSync

@main
struct RunlogCommand: AsyncParsableCommand {
    /// Logs go to stderr at `warning` and above unless RUNLOG_LOG_LEVEL says otherwise.
    static func main() async {
        let level = ProcessInfo.processInfo.environment["RUNLOG_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .warning
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }

    /// Every command names itself (`commandName`): otherwise ArgumentParser derives the name
    /// from the type with `String(describing:)`, whose protocol-conformance lookups took about
    /// 5 ms of each start (measured on `runlog sync` with 100 paths: 58.5 → 54.1 ms).
    static let configuration = CommandConfiguration(
        commandName: "runlog",
        abstract: "RunLog: a native Swift experiment tracker.",
        subcommands: [
            Demo.self, Verify.self, Show.self, Compact.self, Rewind.self, Fork.self, Sync.self, Ls.self, Login.self, GC.self, Import.self, ServerCommand.self, StressWrite.self, SDKChild.self,
        ]
    )
}

/// Resolves a command-line path to a log file: a run directory or the log itself.
func logPath(for path: String) -> String {
    var isDir: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
        return RunDirectory.logPath(path)
    }
    return path
}

func runDirectory(for path: String) -> String {
    path.hasSuffix("/" + LogFormat.logFileName) ? String(path.dropLast(LogFormat.logFileName.count + 1)) : path
}

/// Prints a JSON object built from a `Value`.
func printJSON(_ v: Value) { print(v.description) }

/// Turns a store error into a failure exit with its message on stderr.
func fail(_ error: any Error) -> ExitCode {
    FileHandle.standardError.write(Data("runlog: \(error)\n".utf8))
    if let e = error as? StoreError {
        switch e.code {
        case .corrupted, .notARunLog, .unsupportedVersion: return ExitCode(3)
        case .notFound: return ExitCode(4)
        case .locked: return ExitCode(5)
        default: return ExitCode(1)
        }
    }
    return ExitCode(1)
}

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check every frame of a run's log.",
        discussion: "Exits 0 when the log is clean (a torn tail left by a killed writer is clean: it is reported and dropped). Exits 3 on corruption, naming the byte offset. With --salvage, skips damaged stretches and lists each one.")

    @Argument(help: "A run directory or a run.rlog file.") var path: String
    @Flag(help: "Skip damaged frames instead of stopping at the first one; report each.") var salvage = false
    @Flag(help: "Print one JSON object.") var json = false

    func run() throws {
        if WandbImport.isWandb(path) { return try verifyWandb() }
        let file = logPath(for: path)
        do {
            let reader = try LogReader(path: file, options: .init(salvage: salvage, verifyPayloads: true))
            var records = 0
            var rows = 0
            var badFrames: [(FrameInfo, StoreError)] = []
            for f in reader.frames {
                do {
                    let rs = try reader.records(in: f)
                    records += rs.count
                    rows += rs.filter { if case .history = $0 { return true } else { return false } }.count
                } catch {
                    if !salvage { throw error }
                    badFrames.append((f, error))
                }
            }
            let damage = reader.damaged.map { Value.object(["offset": .int(Int64($0.offset)), "length": .int(Int64($0.length)), "reason": .string($0.reason)]) }
                + badFrames.map { Value.object(["offset": .int(Int64($0.0.offset)), "length": .int(Int64($0.0.header.frameSize)), "reason": .string($0.1.message)]) }
            let clean = damage.isEmpty
            if json {
                printJSON(["path": .string(file), "clean": .bool(clean), "frames": .int(Int64(reader.frames.count)),
                           "records": .int(Int64(records)), "history_rows": .int(Int64(rows)),
                           "valid_bytes": .int(Int64(reader.validEnd)), "torn_tail_bytes": .int(Int64(reader.tornTailBytes)),
                           "damaged": .array(damage)])
            } else {
                print("\(file): \(reader.frames.count) frames, \(records) records (\(rows) history rows), \(reader.validEnd) bytes")
                if reader.tornTailBytes > 0 { print("torn tail: \(reader.tornTailBytes) bytes after the last whole frame (dropped)") }
                for d in damage { print("damaged: offset \(d["offset"]!), \(d["length"]!) bytes: \(d["reason"]!.stringValue ?? "")") }
                print(clean ? "OK" : "DAMAGED")
            }
            if !clean { throw ExitCode(3) }
        } catch let e as ExitCode {
            throw e
        } catch {
            if json, let e = error as? StoreError {
                printJSON(["path": .string(file), "clean": false, "error": .string(e.message), "code": .string(e.code.description),
                           "offset": e.offset.map { .int(Int64($0)) } ?? .null])
            }
            throw fail(error)
        }
    }
}

extension Verify {
    /// A wandb `.wandb` file: every chunk checksum and record, with the torn tail reported.
    func verifyWandb() throws {
        do {
            var reader = try WandbLogReader(url: URL(fileURLWithPath: path), options: .init(corruption: salvage ? .skipToNextBlock : .throw))
            var records = 0
            while try reader.next() != nil { records += 1 }
            let damage = reader.skipped.map { Value.object(["offset": .int($0.offset), "reason": .string("\($0)")]) }
            if json {
                printJSON(["path": .string(path), "format": "wandb", "clean": .bool(damage.isEmpty), "records": .int(Int64(records)),
                           "torn_tail_bytes": .int(reader.tornTail?.byteCount ?? 0), "damaged": .array(damage)])
            } else {
                print("\(path): wandb log, \(records) records")
                if let t = reader.tornTail { print("torn tail: \(t)") }
                for d in reader.skipped { print("damaged: \(d)") }
                print(damage.isEmpty ? "OK" : "DAMAGED")
            }
            if !damage.isEmpty { throw ExitCode(3) }
        } catch let e as ExitCode {
            throw e
        } catch {
            FileHandle.standardError.write(Data("runlog: \(error)\n".utf8))
            throw ExitCode(3)
        }
    }
}

struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Print a run's metadata, config, summary or history.")

    @Argument(help: "A run directory or a run.rlog file.") var path: String
    @Flag(help: "History rows, one JSON object per line.") var history = false
    @Flag(help: "The config.") var config = false
    @Flag(help: "The summary.") var summary = false
    @Flag(help: "JSON output.") var json = false
    @Option(help: "With --history: only rows from this step on.") var fromStep: Int64?

    func run() throws {
        if WandbImport.isWandb(path) { return try showWandb() }
        do {
            let reader = try LogReader(path: logPath(for: path))
            if history {
                for row in try reader.history(from: fromStep ?? .min) {
                    var o = row.values
                    o["_step"] = .int(row.step)
                    o["_timestamp"] = .double(Double(row.timestamp) / 1e6)
                    print(Value.object(o).description)
                }
                return
            }
            let c = try reader.contents()
            if config { print(Value.object(c.config).description); return }
            if summary { print(Value.object(c.summary).description); return }
            let overview: [String: Value] = [
                "metadata": .object(c.metadata), "config": .object(c.config), "summary": .object(c.summary),
                "tags": .array(c.tags.map(Value.string)), "history_rows": .int(Int64(c.history.count)),
                "first_step": c.history.first.map { .int($0.step) } ?? .null, "last_step": c.lastStep.map { .int($0) } ?? .null,
                "archived_branches": .object(Dictionary(uniqueKeysWithValues: c.archived.map { ("\($0.key)", .int(Int64($0.value.count))) })),
                "rewinds": .array(c.rewinds.map { ["step": .int($0.step), "branch": .int(Int64($0.branch))] }),
                "fork_origin": c.forkOrigin.map { ["source_id": .string($0.sourceID), "step": .int($0.step)] } ?? .null,
                "state": .string(c.exit?.state ?? "running"), "frames": .int(Int64(reader.frames.count)),
                "bytes": .int(Int64(reader.validEnd)), "events": .int(Int64(c.events.count)),
            ]
            if json { print(Value.object(overview).description); return }
            print("run \(c.metadata["id"]?.stringValue ?? "?")  project \(c.metadata["project"]?.stringValue ?? "?")  name \(c.metadata["name"]?.stringValue ?? "?")  state \(c.exit?.state ?? "running")")
            print("history: \(c.history.count) rows" + (c.history.isEmpty ? "" : ", steps \(c.history.first!.step)...\(c.lastStep!)"))
            if !c.archived.isEmpty { print("archived branches: " + c.archived.keys.sorted().map { "\($0) (\(c.archived[$0]!.count) rows)" }.joined(separator: ", ")) }
            if let f = c.forkOrigin { print("forked from \(f.sourceID) at step \(f.step)") }
            if !c.tags.isEmpty { print("tags: \(c.tags.joined(separator: ", "))") }
            print("config: \(Value.object(c.config))")
            print("summary: \(Value.object(c.summary))")
            print("log: \(reader.frames.count) frames, \(reader.validEnd) bytes")
        } catch {
            throw fail(error)
        }
    }
}

extension Show {
    /// A wandb offline run, decoded with RunLog's `.wandb` reader.
    func showWandb() throws {
        let run: WandbRun
        do { run = try WandbRun(contentsOf: URL(fileURLWithPath: path)) } catch {
            FileHandle.standardError.write(Data("runlog: \(error)\n".utf8))
            throw ExitCode(3)
        }
        if history {
            for row in run.history {
                var o = row.values
                o["_step"] = .int(row.step)
                print(Value.object(o).description)
            }
            return
        }
        if config { print(Value.object(run.config).description); return }
        if summary { print(Value.object(run.summary).description); return }
        let overview: [String: Value] = [
            "format": "wandb", "id": .string(run.id), "project": .string(run.project), "name": .string(run.name),
            "state": .string(run.state.rawValue), "tags": .array(run.tags.map(Value.string)), "config": .object(run.config),
            "summary": .object(run.summary), "history_rows": .int(Int64(run.history.count)),
            "last_step": run.step.map { .int($0) } ?? .null, "torn_tail_bytes": .int(run.tornTail?.byteCount ?? 0),
        ]
        if json { print(Value.object(overview).description); return }
        print("wandb run \(run.id)  project \(run.project)  name \(run.name)  state \(run.state.rawValue)")
        print("history: \(run.history.count) rows" + (run.step.map { ", last step \($0)" } ?? ""))
        if let t = run.tornTail { print("torn tail: \(t)") }
        print("config: \(Value.object(run.config))")
        print("summary: \(Value.object(run.summary))")
    }
}

struct Compact: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "compact", abstract: "Rewrite a run's log into fewer, better-compressed frames; what readers see does not change.")
    @Argument(help: "A run directory.") var path: String
    @Option(help: "zstd level (1-19).") var level: Int32 = 9
    @Flag(help: "JSON output.") var json = false

    func run() throws {
        do {
            var options = Compaction.Options()
            options.compressionLevel = level
            let r = try Compaction.compact(directory: runDirectory(for: path), options: options)
            if json {
                printJSON(["bytes_before": .int(Int64(r.bytesBefore)), "bytes_after": .int(Int64(r.bytesAfter)),
                           "frames_before": .int(Int64(r.framesBefore)), "frames_after": .int(Int64(r.framesAfter)), "skipped": .bool(r.skipped)])
            } else if r.skipped {
                print("already compact: \(r.bytesBefore) bytes in \(r.framesBefore) frames")
            } else {
                print("compacted: \(r.bytesBefore) -> \(r.bytesAfter) bytes, \(r.framesBefore) -> \(r.framesAfter) frames")
            }
        } catch {
            throw fail(error)
        }
    }
}

struct Rewind: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rewind", abstract: "Rewind a run to a step: later rows move to an archived branch.")
    @Argument(help: "A run directory.") var path: String
    @Option(help: "The step to keep as the last one.") var step: Int64

    func run() throws {
        guard step >= 0 else { throw ValidationError("--step must be 0 or more") }
        do {
            let w = try LogWriter.open(directory: runDirectory(for: path))
            let m = try w.rewind(toStep: step)
            try w.close()
            print("rewound to step \(step); later rows are archived branch \(m.branch)")
        } catch {
            throw fail(error)
        }
    }
}

struct Fork: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "fork", abstract: "Fork a run at a step into a new run directory beside it.")
    @Argument(help: "A run directory.") var path: String
    @Option(help: "The last step the fork keeps.") var step: Int64
    @Option(help: "The new run's id (default: random).") var id: String?
    @Option(help: "Where to create the fork (default: beside the source, named by the id).") var to: String?

    func run() throws {
        let source = runDirectory(for: path)
        let newID = id ?? String((0..<8).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement()! })
        if newID.contains(where: { "/\\#?%:;,'".contains($0) }) || newID.isEmpty || newID == "." || newID == ".." {
            throw ValidationError("invalid run id \(newID.debugDescription)")
        }
        do {
            let state = try RunDirectory.reader(source).state()
            if newID == state.metadata["id"]?.stringValue { throw ValidationError("the fork's id must differ from the source's") }
            var meta = state.metadata
            meta["id"] = .string(newID)
            let parent = (source as NSString).deletingLastPathComponent
            let dest = to ?? (parent.isEmpty ? newID : parent + "/" + newID)
            let r = try RunDirectory.fork(source: source, atStep: step, to: dest, metadata: RunMetadata(meta))
            print("forked \(state.metadata["id"]?.stringValue ?? source) at step \(r.lastStep) into \(r.directory) (\(r.framesCopied) frames, \(r.bytesCopied) bytes copied as stored)")
        } catch let e as ValidationError {
            throw e
        } catch {
            throw fail(error)
        }
    }
}

/// Hidden: appends rows as fast as it can, printing each durable step as a JSON line. The
/// crash tests SIGKILL it and check that every printed step is in the log.
struct StressWrite: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stress-write", shouldDisplay: false)
    @Argument var path: String
    @Option var rowsPerFlush = 100
    @Option var maxSteps: Int64 = .max

    func run() throws {
        var config = LogWriter.Configuration()
        config.flushInterval = .milliseconds(5)
        config.maxFrameRows = 250
        let w = try LogWriter.open(directory: path, configuration: config)
        let start = (try? RunDirectory.reader(path).history().last?.step).flatMap { $0 }.map { $0 + 1 } ?? 0
        var step = start
        let keys = ["loss", "acc", "lr"]
        while step < maxSteps {
            for _ in 0..<rowsPerFlush {
                try w.appendRow(step: step, keys: keys, doubles: [1 / Double(step + 1), Double(step % 100) / 100, 0.001])
                step += 1
            }
            try w.flush()
            FileHandle.standardOutput.write(Data("{\"durable_step\": \(step - 1)}\n".utf8))
        }
        try w.close()
    }
}
