import Foundation
import RunLogTestSupport
import Testing
import RunLog
import RunLogStore

/// The README's training-loop example, compiled and run: `readmeExample` holds it verbatim
/// between the markers, and a test checks the README still shows exactly this code.
@Suite(.exclusiveProcessState) struct ReadmeExampleTests {
    func trainStep(_ step: Int) -> (Double, Double) { (1 / Double(step + 1), Double(step) / 1000) }

    func readmeExample() throws -> Run {
        do {
            // README BEGIN
            let run = try Run.start(project: "mnist", tags: ["baseline"], config: ["lr": 0.01, "batch_size": 64])
            run.summary.define("loss", summary: .min)
            for step in 0..<1_000 {
                let (loss, accuracy) = trainStep(step)
                try run.log(["loss": loss, "accuracy": accuracy])
            }
            try run.finish()
            // README END
            return run
        }
    }

    @Test func theExampleRunsAndLogsWhatItSays() throws {
        let dir = NSTemporaryDirectory() + "runlog-readme-" + UUID().uuidString.prefix(8)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // Where runs go without `dir:` (process-wide, so only this test relies on it).
        setenv("RUNLOG_DIR", dir, 1)
        defer { unsetenv("RUNLOG_DIR") }
        // The example uses default settings; keep the test process's signal handling as it is.
        setenv("RUNLOG_HANDLE_SIGNALS", "0", 1)
        let run = try readmeExample()
        let contents = try RunDirectory.reader(run.directory!).contents()
        #expect(contents.history.count == 1_000)
        #expect(contents.config["lr"] == 0.01)
        #expect(contents.tags == ["baseline"])
        #expect(contents.summary["loss"] == .double(1 / 1000.0))
        #expect(contents.exit?.state == "finished")
    }

    @Test func theReadmeShowsThisCode() throws {
        var url = URL(fileURLWithPath: #filePath)
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("README.md").path) { url.deleteLastPathComponent() }
        let readme = try String(contentsOf: url.appendingPathComponent("README.md"), encoding: .utf8)
        let source = try String(contentsOfFile: #filePath, encoding: .utf8)
        let begin = source.range(of: "// README BEGIN\n")!.upperBound
        let end = source.range(of: "            // README END")!.lowerBound
        let lines: [String] = source[begin..<end].split(separator: "\n", omittingEmptySubsequences: false).map { line in
            let indent = min(12, line.prefix(while: { $0 == " " }).count)
            return String(line.dropFirst(indent))
        }
        let code = lines.joined(separator: "\n")
        #expect(readme.contains(code), "README.md must show the example exactly as compiled here")
    }
}
