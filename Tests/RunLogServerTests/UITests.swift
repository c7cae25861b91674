import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import RunLogStore
import Testing

@testable import RunLogServer

/// The web UI in headless Chromium (Debian's `chromium`, installed here when missing): a
/// live server, a logged run, the page's DOM after its scripts ran, and a screenshot.
///
/// Set `RUNLOG_SCREENSHOT_DIR` to keep the screenshots; otherwise they go to the test's
/// temporary directory.
@Suite("Web UI in headless Chromium", .serialized)
struct UITests {
    @Test("the run page draws one chart per metric with every logged point")
    func runPage() async throws {
        let chromium = try Chromium.find()
        try await withUIServer { fx, client, port, dir in
            let e = fx.account.entity
            let page = try await chromium.dumpDOM("http://127.0.0.1:\(port)/ui/\(e)/proj/small", in: dir)
            #expect(page.contains(#"data-ready="true""#), "the page's script did not finish:\n\(page.prefix(2000))")
            let loss = try #require(Chromium.chart(page, metric: "loss"))
            #expect(loss.dataPoints == 50)
            #expect(loss.polylinePoints == [50])
            #expect(Chromium.chart(page, metric: "acc")?.dataPoints == 50)
            #expect(Chromium.chart(page, metric: "_timestamp") == nil)
            #expect(page.contains("Forked from"))
            #expect(page.contains(">lr<") && page.contains(">0.003<"))
            #expect(page.contains(">best<"))  // a tag

            // 10,000 steps: downsampled to at most 1,000 points, min/max band drawn.
            let big = try await chromium.dumpDOM("http://127.0.0.1:\(port)/ui/\(e)/proj/big", in: dir)
            let chart = try #require(Chromium.chart(big, metric: "loss"))
            #expect(chart.dataPoints > 500 && chart.dataPoints <= 1000)
            #expect(big.contains(#"data-count="10000""#))
            #expect(big.contains("<polygon"))
            _ = try await chromium.screenshot("http://127.0.0.1:\(port)/ui/\(e)/proj/big", in: dir, name: "run-page-downsampled.png")

            // Hover shows the values under the cursor; a drag zooms into a step range
            // (reloading it), a double-click resets (see `selfTest` in app.js).
            let interactive = try await chromium.dumpDOM("http://127.0.0.1:\(port)/ui/\(e)/proj/small#selftest", in: dir)
            let report = try #require(Chromium.attribute(interactive, "data-selftest"))
            let result = try JSONParser.parse(report)
            #expect(result["hover"]?.stringValue?.contains("step 2") == true, "\(report)")
            #expect(result["before"] == 50)
            let range = (result["range"]?.stringValue ?? "").split(separator: "-").compactMap { Int($0) }
            #expect(range.count == 2 && range[0] >= 10 && range[1] <= 35 && range[0] < range[1], "\(report)")
            if range.count == 2 { #expect(result["zoomed"] == .int(Int64(range[1] - range[0] + 1))) }
            #expect(result["reset"] == 50)

            let png = try await chromium.screenshot("http://127.0.0.1:\(port)/ui/\(e)/proj/small", in: dir, name: "run-page.png")
            #expect(png.count > 10_000)
            #expect(png.prefix(8) == Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]))
        }
    }

    @Test("the project page lists runs with state, tags, group and summary columns")
    func projectPage() async throws {
        let chromium = try Chromium.find()
        try await withUIServer { fx, client, port, dir in
            let page = try await chromium.dumpDOM("http://127.0.0.1:\(port)/ui/\(fx.account.entity)/proj", in: dir)
            #expect(page.contains(#"data-ready="true""#), "\(page.prefix(2000))")
            #expect(page.contains(#"data-run="small""#) && page.contains(#"data-run="big""#) && page.contains(#"data-run="parent""#))
            #expect(page.contains(#"data-column="loss""#))
            #expect(page.contains("sweep"))
            #expect(page.contains(#"class="state finished""#))
            // Rows are sorted by created, newest first; the big run came last.
            let order = ["big", "small", "parent"].compactMap { page.range(of: #"data-run="\#($0)""#)?.lowerBound }
            #expect(order.count == 3 && order == order.sorted())
            _ = try await chromium.screenshot("http://127.0.0.1:\(port)/ui/\(fx.account.entity)/proj", in: dir, name: "project-page.png")
        }
    }

    @Test("the compare view draws the metric of every chosen run")
    func compareView() async throws {
        let chromium = try Chromium.find()
        try await withUIServer { fx, client, port, dir in
            let url = "http://127.0.0.1:\(port)/ui/\(fx.account.entity)/proj/compare?runs=small,parent&metric=loss"
            let page = try await chromium.dumpDOM(url, in: dir)
            #expect(page.contains(#"data-ready="true""#), "\(page.prefix(2000))")
            let chart = try #require(Chromium.chart(page, metric: "loss"))
            #expect(chart.polylinePoints.sorted() == [30, 50])
            #expect(chart.dataPoints == 80)
            #expect(page.contains("class=\"legend\""))
            _ = try await chromium.screenshot(url, in: dir, name: "compare.png")
        }
    }

    @Test("the home page lists entities and projects; unknown keys cannot sign in")
    func homeAndLogin() async throws {
        let chromium = try Chromium.find()
        try await withUIServer { fx, client, port, dir in
            let page = try await chromium.dumpDOM("http://127.0.0.1:\(port)/", in: dir)
            #expect(page.contains(#"href="/ui/\#(fx.account.entity)/proj""#), "\(page.prefix(2000))")
            var h: HTTPFields = [.contentType: "application/x-www-form-urlencoded"]
            var r = try await client.execute(uri: "/login", method: .post, headers: h, body: ByteBuffer(string: "key=\(APIKey.generate())"))
            #expect(r.status == .unauthorized)
            r = try await client.execute(uri: "/login", method: .post, headers: h, body: ByteBuffer(string: "key=\(fx.account.key)"))
            #expect(r.status == .seeOther)
            #expect(r.headers[.setCookie]?.contains("runlog_key=\(fx.account.key)") == true)
            h = [:]
            #expect(try await client.execute(uri: "/assets/app.js", method: .get, headers: h).status == .ok)
            #expect(try await client.execute(uri: "/assets/../Package.swift", method: .get, headers: h).status != .ok)
        }
    }
}

/// A live public-read server holding three runs: `small` (50 steps, forked from `parent`),
/// `parent` (30 steps), and `big` (10,000 steps with a spike).
func withUIServer(_ body: @escaping @Sendable (Fixture, any TestClientProtocol, Int, String) async throws -> Void) async throws {
    let dir = TempDir()
    try await withFixture(.sqlite, publicRead: true, testing: .live) { fx, client in
        let port = try #require(client.port)
        let parent = Frames.frame([
            .runMetadata(RunMetadata(["id": "parent", "project": "proj", "name": "parent", "group": "sweep"])),
            .config(ConfigChange(values: ["lr": 0.01])),
            .summary(SummaryChange(values: ["loss": 0.5])),
            .exit(ExitRecord(state: "finished", exitCode: 0, runtime: 1, timestamp: 1)),
        ] + Frames.rows(0..<30, loss: { 0.8 / Double($0 + 1) + 0.1 }), seq: 1)
        #expect(try await post(client, fx, "parent", after: 0, [parent]).status == .ok)
        let small = Frames.frame([
            .runMetadata(RunMetadata(["id": "small", "name": "small run", "group": "sweep"])),
            .forkOrigin(ForkOrigin(sourceID: "parent", sourceProject: "proj", step: 20, timestamp: 1)),
            .config(ConfigChange(values: ["lr": 0.003, "layers": 4])),
            .tags(["best", "baseline"]),
            .summary(SummaryChange(values: ["loss": 0.02, "acc": 0.93])),
        ] + Frames.rows(0..<50), seq: 1)
        #expect(try await post(client, fx, "small", after: 0, [small]).status == .ok)
        var big: [FrameCodec.StoredFrame] = []
        for i in 0..<5 {
            let start = Int64(i) * 2000
            big.append(Frames.frame(Frames.rows(start..<start + 2000, loss: { $0 == 6000 ? 50 : 1 + sin(Double($0) / 300) }), seq: UInt64(i + 1)))
        }
        #expect(try await post(client, fx, "big", after: 0, big).status == .ok)
        try await body(fx, client, port, ProcessInfo.processInfo.environment["RUNLOG_SCREENSHOT_DIR"] ?? dir.path)
    }
}

/// Headless Chromium from Debian's package.
struct Chromium: Sendable {
    let path: String

    /// The browser, installed with apt-get when missing; the test is skipped (cancelled, with
    /// the reason) when it cannot be had.
    static func find() throws -> Chromium {
        let candidates = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
        if let p = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) { return Chromium(path: p) }
        let aptGet = "/usr/bin/apt-get"
        guard FileManager.default.isExecutableFile(atPath: aptGet) else { try Test.cancel("chromium is not installed and there is no apt-get") }
        let env = ["DEBIAN_FRONTEND": "noninteractive"]
        var r = try runProgram(aptGet, ["install", "-y", "-qq", "--no-install-recommends", "chromium"], timeout: .seconds(900), environment: env)
        if r.status != 0 {
            _ = try? runProgram(aptGet, ["update", "-qq"], timeout: .seconds(300), environment: env)
            r = try runProgram(aptGet, ["install", "-y", "-qq", "--no-install-recommends", "chromium"], timeout: .seconds(900), environment: env)
        }
        if let p = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) { return Chromium(path: p) }
        try Test.cancel("chromium is not installed and apt-get could not install it (\(r.status)): \(r.stderr.suffix(300))")
    }

    /// Flags for one headless run with a throwaway profile (in `profile`).
    func arguments(_ profile: TempDir) -> [String] {
        ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--hide-scrollbars",
         "--user-data-dir=\(profile.path)", "--virtual-time-budget=20000"]
    }

    /// The page's DOM after its scripts ran (`--dump-dom`).
    func dumpDOM(_ url: String, in dir: String) async throws -> String {
        let profile = TempDir()
        let r = try await runOffPool { try runProgram(path, arguments(profile) + ["--dump-dom", url], timeout: .seconds(180)) }
        #expect(r.status == 0, "chromium: \(r.stderr.suffix(500))")
        return r.stdout
    }

    /// A PNG screenshot of the page, saved as `dir/name`; returns its bytes.
    func screenshot(_ url: String, in dir: String, name: String) async throws -> Data {
        let file = dir + "/" + name
        let profile = TempDir()
        let r = try await runOffPool { try runProgram(path, arguments(profile) + ["--window-size=1280,1500", "--screenshot=\(file)", url], timeout: .seconds(180)) }
        #expect(r.status == 0, "chromium: \(r.stderr.suffix(500))")
        return (try? Data(contentsOf: URL(fileURLWithPath: file))) ?? Data()
    }

    /// An attribute's value in a dumped DOM, HTML entities decoded.
    static func attribute(_ html: String, _ name: String) -> String? {
        guard let r = html.range(of: #"\#(name)="([^"]*)""#, options: .regularExpression) else { return nil }
        let raw = html[r].dropFirst(name.count + 2).dropLast()
        return raw.replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&lt;", with: "<")
            .replacingOccurrences(of: "&gt;", with: ">").replacingOccurrences(of: "&amp;", with: "&")
    }

    struct Chart {
        var dataPoints: Int
        var polylinePoints: [Int]
    }

    /// The chart SVG for `metric` in a dumped DOM: its `data-points` and each polyline's
    /// number of `x,y` pairs.
    static func chart(_ html: String, metric: String) -> Chart? {
        guard let start = html.range(of: #"<svg[^>]*data-metric="\#(NSRegularExpression.escapedPattern(for: metric))"[^>]*>"#, options: .regularExpression),
              let end = html.range(of: "</svg>", range: start.upperBound..<html.endIndex)
        else { return nil }
        let tag = String(html[start])
        guard let dp = tag.range(of: #"data-points="(\d+)""#, options: .regularExpression) else { return nil }
        let points = Int(tag[dp].filter(\.isNumber))!
        let body = String(html[start.upperBound..<end.lowerBound])
        var lines: [Int] = []
        var search = body.startIndex..<body.endIndex
        while let p = body.range(of: #"<polyline[^>]* points="([^"]*)""#, options: .regularExpression, range: search) {
            let attr = body[p]
            let q = attr.range(of: #" points=""#)!
            let list = attr[q.upperBound...].dropLast()
            lines.append(list.split(separator: " ").count)
            search = p.upperBound..<body.endIndex
        }
        return Chart(dataPoints: points, polylinePoints: lines)
    }
}

/// Runs blocking work on a thread of its own, off Swift's cooperative pool (which the live
/// server shares).
func runOffPool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { cont in
        Thread { cont.resume(with: Result { try work() }) }.start()
    }
}
