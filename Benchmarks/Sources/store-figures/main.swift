// store-figures: runs every store scenario of workload W once (the cheap ones a few times) and
// prints the Markdown table the README quotes.
//
//   swift run -c release --package-path Benchmarks store-figures [--append-steps N] [--large-steps N] [--keep]
//   swift run -c release --package-path Benchmarks store-figures --workload-stats N [--w32]
//
// Scratch data goes under $RUNLOG_BENCH_DIR (default: the system temp directory), about 1.5 GB
// at the default sizes, and is removed at the end unless --keep is given.
import BenchCLI
import Foundation
import RunLogStore
import StoreScenarios
import Workload


let args = Array(CommandLine.arguments.dropFirst())

let MiB = 1024.0 * 1024.0
func fmtG(_ x: Double) -> String { String(format: "%.6g", x) }
func fmt(_ x: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", x) }

// MARK: Child mode: write a large log in a fresh process, so VmHWM is the write's alone.

if args.first == "--child-write", args.count >= 4 {
    // --child-write DIR STEPS W64|W32 [maxFrameRows maxPendingFrames]
    let dir = args[1], steps = Int(args[2])!, precision = Workload.Precision(rawValue: args[3])!
    var config = LogWriter.Configuration()
    if args.count >= 6 { config.maxFrameRows = Int(args[4])!; config.maxPendingFrames = Int(args[5])! }
    let baseline = ProcessMemory.resident
    let r = try Scenarios.writeStreaming(steps: steps, precision: precision, to: dir, configuration: config)
    let peak = ProcessMemory.peakResident
    out("CHILD \(r.appendSeconds) \(r.flushSeconds) \(r.closeSeconds) \(r.logBytes) \(baseline) \(peak) \(r.appenderCPUSeconds) \(r.processCPUSeconds)")
    exit(0)
}

// MARK: Single operations on an existing run, for profilers (perf record, valgrind --tool=callgrind).

if args.first == "--seek", args.count >= 3 {
    // --seek DIR COUNT: COUNT random row(atStep:) on one reader
    let reader = try RunDirectory.reader(args[1])
    let last = reader.frames.last { $0.header.flags.contains(.hasHistory) }?.header.lastStep ?? 0
    var rng = Xoshiro256StarStar(seed: 7)
    let times = try Scenarios.seek(reader, steps: (0..<Int(args[2])!).map { _ in Int64(rng.next() % UInt64(last + 1)) })
    out("seek p50 \(ms(times.median)) p99 \(ms(times.percentile(99)))")
    exit(0)
}
if args.first == "--rewind", args.count >= 3 {
    // --rewind DIR STEP
    let r = try Scenarios.rewind(args[1], toStep: Int64(args[2])!)
    out("rewind \(ms(r.rewindSeconds)) (open \(ms(r.openSeconds)), close \(ms(r.closeSeconds)), cut \(r.cutFound))")
    exit(0)
}
if args.first == "--fork", args.count >= 4 {
    // --fork DIR STEP DEST
    let r = try Scenarios.fork(args[1], atStep: Int64(args[2])!, to: args[3])
    out("fork \(ms(r.seconds)) copied \(r.bytesCopied) bytes, \(r.framesCopied) frames")
    exit(0)
}
if args.first == "--append", args.count >= 4 {
    // --append DIR STEPS fast|dict: pre-generated W64, default writer configuration
    let table = WorkloadTable(steps: Int(args[2])!, precision: .w64)
    if args[3] == "dict" { out("building the dictionaries alone: \(fmt(Scenarios.dictionaryBuildCost(table), 0)) ns/step (CPU)") }
    let r = try Scenarios.write(table, to: args[1], path: args[3] == "dict" ? .dictionary : .fastPath)
    out("append \(rate(r.stepsPerSecond)) steps/s wall, appending thread \(rate(Double(r.steps) / r.appenderCPUSeconds)) steps/CPU-s, process \(fmt(r.processCPUSeconds / Double(r.steps) * 1e9, 0)) ns/step")
    exit(0)
}
if args.first == "--compact", args.count >= 2 {
    let r = try Scenarios.compact(args[1])
    out("compact \(ms(r.seconds)) \(r.bytesBefore) -> \(r.bytesAfter)")
    exit(0)
}

// MARK: Workload statistics, to compare the port with workload.py.

if let n = option("--workload-stats").flatMap({ Int($0) }) {
    let s = WorkloadStats(steps: n, precision: args.contains("--w32") ? .w32 : .w64)
    out("| metric | mean | std | std of step diff | first | last |")
    out("|---|---|---|---|---|---|")
    for j in 0..<Workload.metricCount {
        out("| \(Workload.names[j]) | \(fmtG(s.mean[j])) | \(fmtG(s.std[j])) | \(fmtG(s.diffStd[j])) | \(fmtG(s.first[j])) | \(fmtG(s.last[j])) |")
    }
    exit(0)
}


let appendSteps = intOption("--append-steps", 1_000_000)
let largeSteps = intOption("--large-steps", 10_000_000)
let repeats = intOption("--repeats", 3)
let keep = args.contains("--keep")
let scratch = try Scratch("figures")
say("scratch: \(scratch.path)")

struct Row { var figure: String; var measured: String; var target: String; var met: Bool? }
var rows: [Row] = []
var notes: [String] = []
func check(_ ok: Bool) -> Bool? { ok }

// MARK: 1. Append throughput, W64, default configuration.

say("generating \(appendSteps) steps of W64 and W32 …")
let w64 = WorkloadTable(steps: appendSteps, precision: .w64)
let w32 = WorkloadTable(steps: appendSteps, precision: .w32)

var results: [Scenarios.AppendPath: [Scenarios.WriteResult]] = [:]
var firstW64Dir = ""
for rep in 0..<repeats {
    for p in Scenarios.AppendPath.allCases {
        let dir = scratch.sub("append-\(p == .fastPath ? "fast" : "dict")-\(rep)")
        say("append \(p) rep \(rep + 1)/\(repeats) …")
        let r = try Scenarios.write(w64, to: dir, path: p)
        results[p, default: []].append(r)
        if rep == 0, p == .fastPath { firstW64Dir = dir } else { scratch.removeItem(dir) }
    }
}
for p in Scenarios.AppendPath.allCases {
    let rs = results[p]!
    let sps = rs.map(\.stepsPerSecond)
    let appendOnly = rs.map { Double($0.steps) / $0.appendSeconds }
    rows.append(Row(figure: "append W64, \(p), \(appendSteps.formatted()) steps (until flush returns)",
                    measured: "\(rate(sps.median)) steps/s (runs: \(sps.map { rate($0) }.joined(separator: ", ")))",
                    target: "≥ 1 M steps/s", met: sps.median >= 1e6))
    let appenderCPU = rs.map { Double($0.steps) / $0.appenderCPUSeconds }
    let cpuPerStep = rs.map { $0.processCPUSeconds / Double($0.steps) * 1e9 }
    rows.append(Row(figure: "… CPU: steps per CPU-second of the appending thread; process CPU (appender + flusher) per step",
                    measured: "\(rate(appenderCPU.median)) steps/s; \(fmt(cpuPerStep.median, 0)) ns/step", target: "", met: nil))
    notes.append("append \(p): append loop alone \(rate(appendOnly.median)) steps/s median; final flush \(ms(rs.map(\.flushSeconds).median)); close \(ms(rs.map(\.closeSeconds).median))")
}

notes.append("building one `[String: Value]` per step alone (the caller's share of the dictionary path, no store involved): \(fmt(Scenarios.dictionaryBuildCost(w64), 0)) ns/step of CPU")

// MARK: 2. Bytes per step, live and compacted.

@MainActor func sizes(_ precision: Workload.Precision, dir: String, live: Scenarios.WriteResult) throws {
    let c = try Scenarios.compact(dir)
    let liveBPS = Double(live.logBytes) / Double(live.steps)
    let compBPS = Double(c.bytesAfter) / Double(live.steps)
    let (liveTarget, floor) = precision == .w64 ? (76.0, 58.6) : (29.0, 22.4)
    rows.append(Row(figure: "live log, \(precision), bytes/step", measured: fmt(liveBPS, 2), target: "≤ \(fmt(liveTarget, 0))", met: liveBPS <= liveTarget))
    rows.append(Row(figure: "after `Compaction.compact`, \(precision), bytes/step", measured: "\(fmt(compBPS, 2)) (\(fmt(compBPS / floor, 3))× floor)",
                    target: "≤ \(fmt(floor * 1.1, 2)) (1.1× \(floor))", met: compBPS <= floor * 1.1))
    notes.append("compaction \(precision) of \(live.steps.formatted()) steps: \(ms(c.seconds)), \(c.bytesBefore.formatted()) → \(c.bytesAfter.formatted()) bytes")
}
say("compacting W64 …")
try sizes(.w64, dir: firstW64Dir, live: results[.fastPath]![0])
scratch.removeItem(firstW64Dir)
say("writing + compacting W32 …")
let w32Dir = scratch.sub("w32")
let w32Live = try Scenarios.write(w32, to: w32Dir)
notes.append("append W32 keys/doubles: \(rate(w32Live.stepsPerSecond)) steps/s")
try sizes(.w32, dir: w32Dir, live: w32Live)
scratch.removeItem(w32Dir)

// MARK: 3. Peak memory while writing the large log, in a child process.

say("writing \(largeSteps.formatted()) steps of W64 in a child process …")
let largeDir = scratch.sub("large-w64")
let child = Process()
child.executableURL = URL(fileURLWithPath: "/proc/self/exe")
child.arguments = ["--child-write", largeDir, String(largeSteps), "W64"]
let pipe = Pipe()
child.standardOutput = pipe
try child.run()
let childOut = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
child.waitUntilExit()
guard child.terminationStatus == 0, let line = childOut.split(separator: "\n").first(where: { $0.hasPrefix("CHILD ") }) else {
    say("child failed: \(childOut)"); exit(1)
}
let f = line.split(separator: " ").dropFirst().map { Double($0)! }
let (cAppend, cFlush, cClose, cBytes, cBase, cPeak) = (f[0], f[1], f[2], f[3], f[4], f[5])
let (cAppenderCPU, cProcessCPU) = (f[6], f[7])
rows.append(Row(figure: "peak RSS (VmHWM) writing \(largeSteps.formatted()) steps W64, whole process", measured: "\(fmt(cPeak / MiB)) MiB (\(fmt(cBase / MiB)) MiB at start)",
                target: "≤ 32 MiB", met: cPeak <= 32 * MiB))
notes.append("\(largeSteps.formatted())-step W64 write (generator inline): \(rate(Double(largeSteps) / (cAppend + cFlush))) steps/s wall, appending thread \(fmt(cAppenderCPU, 1)) CPU-s, process \(fmt(cProcessCPU, 1)) CPU-s; \(fmt(cBytes / Double(largeSteps), 2)) bytes/step, close \(ms(cClose)), log \(fmt(cBytes / MiB)) MiB")

// MARK: 4. Open + recovery of the large log with a torn tail.

say("open + recovery …")
let tornBytes = try Scenarios.tearTail(largeDir)
let o1 = try Scenarios.openAndRecover(largeDir)
try Scenarios.tearTail(largeDir)
let o2 = try Scenarios.openAndRecover(largeDir, dropIndex: true)
guard o1.tornBytes == UInt64(tornBytes), o1.writerTornBytes == UInt64(tornBytes), o2.writerTornBytes == UInt64(tornBytes) else {
    say("torn tail not recovered as expected: \(o1) \(o2) vs \(tornBytes)"); exit(1)
}
rows.append(Row(figure: "open \(largeSteps.formatted())-step log with a torn tail (\(tornBytes.formatted()) B): `LogReader` + `LogWriter.open`, with run.idx",
                measured: "\(ms(o1.readerSeconds)) + \(ms(o1.writerOpenSeconds))", target: "—", met: nil))
rows.append(Row(figure: "… the same without run.idx (scan \(o2.readerFrames) frame headers)",
                measured: "\(ms(o2.readerSeconds)) + \(ms(o2.writerOpenSeconds))", target: "—", met: nil))

// MARK: 5. Seek.

say("seek …")
var rng = Xoshiro256StarStar(seed: 7)
let seekSteps = (0..<200).map { _ in Int64(rng.next() % UInt64(largeSteps)) }
let reader = try RunDirectory.reader(largeDir)
let seeks = try Scenarios.seek(reader, steps: seekSteps)
reader.close()
rows.append(Row(figure: "`row(atStep:)` in the \(largeSteps.formatted())-step log, 200 random steps",
                measured: "p50 \(ms(seeks.median)), p99 \(ms(seeks.percentile(99))), first \(ms(seeks[0]))", target: "—", met: nil))

// MARK: 6. Fork at the middle (source untouched), then rewind at the middle.

let middle = Int64(largeSteps / 2)
say("fork …")
var forks: [Scenarios.ForkResult] = []
for i in 0..<repeats {
    let dest = scratch.sub("fork-\(i)")
    forks.append(try Scenarios.fork(largeDir, atStep: middle, to: dest))
    scratch.removeItem(dest)
}
let floorCopy = try Scenarios.copyFloor(largeDir, bytes: forks[0].bytesCopied, scratch: scratch.sub("copy-floor"))
rows.append(Row(figure: "`RunDirectory.fork` at step \(middle.formatted()) (copies \(fmt(Double(forks[0].bytesCopied) / MiB)) MiB, \(forks[0].framesCopied) frames)",
                measured: "\(ms(forks.map(\.seconds).median)) (runs: \(forks.map { ms($0.seconds) }.joined(separator: ", ")))", target: "< 20 ms",
                met: forks.map(\.seconds).median < 0.020))
notes.append("fork floor on this disk: copy_file_range of the same \(fmt(Double(forks[0].bytesCopied) / MiB)) MiB \(ms(floorCopy.copy)) + fdatasync \(ms(floorCopy.sync))")

say("rewind …")
var rewinds: [Scenarios.RewindResult] = []
for i in 0..<repeats {
    let r = try Scenarios.rewind(largeDir, toStep: middle - Int64(i * 1000))
    guard r.cutFound else { say("rewind found no cut"); exit(1) }
    rewinds.append(r)
}
rows.append(Row(figure: "`LogWriter.rewind(toStep:)` at step \(middle.formatted())",
                measured: "\(ms(rewinds.map(\.rewindSeconds).median)) (runs: \(rewinds.map { ms($0.rewindSeconds) }.joined(separator: ", ")))",
                target: "< 20 ms", met: rewinds.map(\.rewindSeconds).median < 0.020))
notes.append("rewind: writer open \(ms(rewinds.map(\.openSeconds).median)), close \(ms(rewinds.map(\.closeSeconds).median)) (median)")

// After a rewind the seek has a rewind marker to honour.
let reader2 = try RunDirectory.reader(largeDir)
let seeks2 = try Scenarios.seek(reader2, steps: seekSteps.filter { $0 < middle - Int64(repeats * 1000) }.prefix(50).map { $0 })
reader2.close()
notes.append("`row(atStep:)` after the rewinds: p50 \(ms(seeks2.median))")

if !keep { scratch.remove() } else { say("kept \(scratch.path)") }

// MARK: Report.

out("")
out("Workload W (`shared/bench/WORKLOAD.md`), release build, writer defaults (durability `.interval(1 s)`), \(ProcessInfo.processInfo.activeProcessorCount) cores.")
out("Command: `swift run -c release --package-path Benchmarks store-figures`")
out("")
out("| figure | measured | target | met |")
out("|---|---|---|---|")
for r in rows {
    out("| \(r.figure) | \(r.measured) | \(r.target) | \(r.met.map { $0 ? "yes" : "**no**" } ?? "") |")
}
out("")
for n in notes { out("- \(n)") }
out("- store-figures process peak RSS (VmHWM, holds two \(appendSteps.formatted())-step tables): \(fmt(Double(ProcessMemory.peakResident) / MiB)) MiB")
