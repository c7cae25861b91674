import Foundation
import Testing
@testable import RunLog

@Suite("SystemMetricsSampler")
struct SystemMetricsSamplerTests {
    // MARK: Recorded-shape /proc text

    /// `/proc/self/stat` with a command name holding spaces and parentheses.
    static func selfStat(utime: Int, stime: Int, threads: Int) -> String {
        "4242 (swift (test) run) S 1 4242 4242 34816 4242 4194304 12000 0 3 0 \(utime) \(stime) 0 0 20 0 \(threads) 0 "
            + "9137 1459617792 40960 18446744073709551615 1 1 0 0 0 0 0 4096 17638 0 0 0 17 1 0 0 0 0 0\n"
    }

    /// `/proc/stat` for two CPUs; `guest` time is part of `user` and must not count twice.
    static func procStat(user: Int, system: Int, idle: Int, iowait: Int, guest: Int = 0) -> String {
        """
        cpu  \(user) 0 \(system) \(idle) \(iowait) 0 0 0 \(guest) 0
        cpu0 \(user / 2) 0 \(system / 2) \(idle / 2) \(iowait / 2) 0 0 0 0 0
        cpu1 \(user / 2) 0 \(system / 2) \(idle / 2) \(iowait / 2) 0 0 0 0 0
        intr 1234567 0 0 0
        ctxt 987654
        btime 1795715179
        processes 4321
        procs_running 2
        procs_blocked 0

        """
    }

    static let meminfo = """
        MemTotal:       16384000 kB
        MemFree:         2048000 kB
        MemAvailable:   12288000 kB
        Buffers:          512000 kB
        Cached:          8192000 kB
        SwapCached:            0 kB

        """

    static let status = """
        Name:\tswift-test
        State:\tS (sleeping)
        Pid:\t4242
        VmPeak:\t 1425408 kB
        VmSize:\t 1425408 kB
        VmRSS:\t  512000 kB
        Threads:\t7

        """

    static func io(read: Int, write: Int) -> String {
        """
        rchar: 99999999
        wchar: 88888888
        syscr: 1000
        syscw: 2000
        read_bytes: \(read)
        write_bytes: \(write)
        cancelled_write_bytes: 0

        """
    }

    static func netDev(_ interfaces: [(String, Int, Int)]) -> String {
        var text = """
            Inter-|   Receive                                                |  Transmit
             face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed

            """
        for (name, rx, tx) in interfaces {
            text += "\(name): \(rx)    2000    0    0    0     0          0         0 \(tx)    1500    0    0    0     0       0          0\n"
        }
        return text
    }

    static func snapshot(
        utime: Int, stime: Int, user: Int, system: Int, idle: Int, iowait: Int, read: Int, write: Int,
        net: [(String, Int, Int)], gpu: String? = nil
    ) -> SystemSnapshot {
        SystemSnapshot(
            procSelfStat: selfStat(utime: utime, stime: stime, threads: 7),
            procStat: procStat(user: user, system: system, idle: idle, iowait: iowait, guest: 50),
            procSelfStatus: status, procMeminfo: meminfo, procSelfIO: io(read: read, write: write),
            procNetDev: netDev(net), nvidiaSmiCSV: gpu)
    }

    // MARK: State machine

    @Test("first sample: memory and zeroed counters, no CPU percentages yet")
    func firstSample() {
        var sampler = SystemMetricsSampler()
        let m = sampler.sample(Self.snapshot(
            utime: 150, stime: 50, user: 1000, system: 500, idle: 8000, iowait: 100,
            read: 1_048_576, write: 0, net: [("lo", 9_999_999, 9_999_999), ("eth0", 1_000_000, 500_000)]))
        #expect(m[SystemMetricKey.cpu] == nil)
        #expect(m[SystemMetricKey.processCPU] == nil)
        #expect(m[SystemMetricKey.processThreads] == 7)
        #expect(m[SystemMetricKey.memory] == 25)
        #expect(m[SystemMetricKey.availableMemory] == 12000)
        #expect(m[SystemMetricKey.processRSS] == 500)
        #expect(m[SystemMetricKey.processMemoryPercent] == 3.125)
        #expect(m[SystemMetricKey.diskIn] == 0)
        #expect(m[SystemMetricKey.diskOut] == 0)
        #expect(m[SystemMetricKey.networkRecv] == 0)
        #expect(m[SystemMetricKey.networkSent] == 0)
        #expect(!m.keys.contains { $0.hasPrefix("system.gpu.") })
    }

    @Test("second sample: CPU from /proc deltas, disk and network since the first")
    func deltas() {
        var sampler = SystemMetricsSampler()
        _ = sampler.sample(Self.snapshot(
            utime: 150, stime: 50, user: 1000, system: 500, idle: 8000, iowait: 100,
            read: 1_048_576, write: 0,
            net: [("lo", 9_999_999, 9_999_999), ("eth0", 1_000_000, 500_000), ("docker0", 0, 0)]))
        let m = sampler.sample(Self.snapshot(
            utime: 260, stime: 80, user: 1300, system: 600, idle: 8500, iowait: 100,
            read: 3_145_728, write: 5_242_880,
            net: [("lo", 19_999_999, 19_999_999), ("eth0", 1_600_000, 700_000), ("docker0", 100, 200)]))
        // Machine: 900 ticks passed, 500 of them idle (guest time not double counted).
        #expect(abs(m[SystemMetricKey.cpu]! - 400.0 / 900 * 100) < 1e-9)
        // Process: 140 of the machine's 900 ticks.
        #expect(abs(m[SystemMetricKey.processCPU]! - 140.0 / 900 * 100) < 1e-9)
        #expect(m[SystemMetricKey.diskIn] == 2)
        #expect(m[SystemMetricKey.diskOut] == 5)
        #expect(m[SystemMetricKey.networkRecv] == 600_100)  // lo excluded
        #expect(m[SystemMetricKey.networkSent] == 200_200)
    }

    @Test("counters that restart or appear are never negative traffic")
    func counterReset() {
        var sampler = SystemMetricsSampler()
        func net(_ interfaces: [(String, Int, Int)], read: Int) -> [String: Double] {
            sampler.sample(SystemSnapshot(procSelfIO: Self.io(read: read, write: 0), procNetDev: Self.netDev(interfaces)))
        }
        _ = net([("eth0", 1_000_000, 500_000)], read: 10_485_760)
        var m = net([("eth0", 1_500_000, 600_000)], read: 11_534_336)
        #expect(m[SystemMetricKey.networkRecv] == 500_000)
        #expect(m[SystemMetricKey.diskIn] == 1)
        // eth0 restarted from zero; wg0 appeared.
        m = net([("eth0", 1_000, 2_000), ("wg0", 50, 70)], read: 1_048_576)
        #expect(m[SystemMetricKey.networkRecv] == Double(500_000 + 1_000 + 50))
        #expect(m[SystemMetricKey.networkSent] == Double(100_000 + 2_000 + 70))
        #expect(m[SystemMetricKey.diskIn] == 2)  // a restarted counter counts from zero
    }

    @Test("missing or garbled sources just leave their keys out")
    func missingSources() {
        var sampler = SystemMetricsSampler()
        let empty = sampler.sample(SystemSnapshot())
        #expect(empty.isEmpty)
        let garbled = sampler.sample(SystemSnapshot(
            procSelfStat: "garbage", procStat: "cpu x y z", procSelfStatus: "", procMeminfo: "MemFree: 1 kB",
            procSelfIO: "rchar: 1", procNetDev: "nothing here", nvidiaSmiCSV: "No devices were found"))
        #expect(garbled.isEmpty)
    }

    @Test("old kernels without MemAvailable: free + buffers + cached")
    func meminfoFallback() throws {
        let parsed = try #require(SystemMetricsSampler.parseMeminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n"))
        #expect(parsed.totalKiB == 1000)
        #expect(parsed.availableKiB == 400)
    }

    @Test("/proc/stat parser counts CPUs and excludes guest time")
    func procStatParser() throws {
        let times = try #require(SystemMetricsSampler.parseProcStat(Self.procStat(user: 1000, system: 500, idle: 8000, iowait: 100, guest: 50)))
        #expect(times.total == 9600)
        #expect(times.idle == 8100)
        #expect(times.cpuCount == 2)
    }

    @Test("/proc/self/stat parser survives parentheses in the command name")
    func selfStatParser() throws {
        let parsed = try #require(SystemMetricsSampler.parseProcSelfStat(Self.selfStat(utime: 11, stime: 22, threads: 9)))
        #expect(parsed.ticks == 33)
        #expect(parsed.threads == 9)
    }

    // MARK: nvidia-smi

    @Test("parses the recorded two-GPU nvidia-smi output")
    func nvidiaSmiFixture() throws {
        let csv = try SupportTestKit.fixtureText("nvidia-smi/query-gpu-2.csv")
        let gpus = SystemMetricsSampler.parseNvidiaSmi(csv)
        #expect(gpus == [
            GPUReading(index: 0, utilizationPercent: 87, memoryUsedMiB: 61234, memoryTotalMiB: 81920,
                       temperatureCelsius: 64, powerWatts: 287.45),
            GPUReading(index: 1, utilizationPercent: 0, memoryUsedMiB: 4, memoryTotalMiB: 81920,
                       temperatureCelsius: 33, powerWatts: 61.20),
        ])

        var sampler = SystemMetricsSampler()
        let m = sampler.sample(SystemSnapshot(nvidiaSmiCSV: csv))
        #expect(m["system.gpu.0.gpu"] == 87)
        #expect(abs(m["system.gpu.0.memoryAllocated"]! - 61234.0 / 81920 * 100) < 1e-9)
        #expect(m["system.gpu.0.memoryUsedMiB"] == 61234)
        #expect(m["system.gpu.0.memoryTotalMiB"] == 81920)
        #expect(m["system.gpu.0.temp"] == 64)
        #expect(m["system.gpu.0.powerWatts"] == 287.45)
        #expect(m["system.gpu.1.gpu"] == 0)
        #expect(m["system.gpu.1.powerWatts"] == 61.2)
        #expect(m.count == 12)
    }

    @Test("[N/A] and [Not Supported] fields are left out")
    func nvidiaSmiUnavailableFields() throws {
        let csv = try SupportTestKit.fixtureText("nvidia-smi/query-gpu-na.csv")
        let gpus = SystemMetricsSampler.parseNvidiaSmi(csv)
        #expect(gpus.count == 2)
        #expect(gpus[0] == GPUReading(index: 0, utilizationPercent: nil, memoryUsedMiB: 10240, memoryTotalMiB: 81920,
                                       temperatureCelsius: 41, powerWatts: nil))
        #expect(gpus[1] == GPUReading(index: 1, utilizationPercent: nil, memoryUsedMiB: nil, memoryTotalMiB: nil,
                                       temperatureCelsius: nil, powerWatts: nil))
        var sampler = SystemMetricsSampler()
        let m = sampler.sample(SystemSnapshot(nvidiaSmiCSV: csv))
        #expect(Set(m.keys) == ["system.gpu.0.memoryAllocated", "system.gpu.0.memoryUsedMiB",
                                "system.gpu.0.memoryTotalMiB", "system.gpu.0.temp"])
        #expect(m["system.gpu.0.memoryAllocated"] == 12.5)
    }

    @Test("tolerates units, a header, CRLF and error text")
    func nvidiaSmiVariants() {
        let csv = "index, utilization.gpu [%], memory.used [MiB], memory.total [MiB], temperature.gpu, power.draw [W]\r\n"
            + "3, 45 %, 1024 MiB, 24576 MiB, 50, 120.5 W\r\n"
            + "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n"
        #expect(SystemMetricsSampler.parseNvidiaSmi(csv) == [
            GPUReading(index: 3, utilizationPercent: 45, memoryUsedMiB: 1024, memoryTotalMiB: 24576,
                       temperatureCelsius: 50, powerWatts: 120.5),
        ])
    }

    // MARK: Live reader

    @Test("live: reads this process from /proc", .enabled(if: FileManager.default.fileExists(atPath: "/proc/self/stat")))
    func live() {
        var live = LiveSystemMetrics(environment: ["PATH": ""])
        #expect(live.nvidiaSmiPath == nil)
        let first = live.sample()
        var x = 0.0
        for i in 0..<3_000_000 { x += Double(i).squareRoot() }  // some CPU time between samples
        #expect(x > 0)
        let second = live.sample()
        #expect(first[SystemMetricKey.cpu] == nil)
        for key in [SystemMetricKey.memory, SystemMetricKey.cpu, SystemMetricKey.processCPU] {
            let value = second[key]
            #expect(value != nil && value! >= 0 && value! <= 100, "\(key) = \(String(describing: value))")
        }
        #expect((second[SystemMetricKey.processRSS] ?? 0) > 1)
        #expect((second[SystemMetricKey.processThreads] ?? 0) >= 1)
        #expect(second[SystemMetricKey.networkRecv] != nil)
    }

    @Test("live: runs nvidia-smi found on PATH, and gives up after repeated failures")
    func liveFakeNvidiaSmi() throws {
        let bin = try SupportTestKit.makeTemporaryDirectory("fake-nvidia-smi")
        defer { try? FileManager.default.removeItem(at: bin) }
        let fixture = try SupportTestKit.fixture("nvidia-smi/query-gpu-2.csv")
        let script = bin.appendingPathComponent("nvidia-smi")
        // Answers only the exact query RunLog sends.
        try """
            #!/bin/sh
            [ "$1" = "\(SystemMetricsSampler.nvidiaSmiArguments[0])" ] && [ "$2" = "\(SystemMetricsSampler.nvidiaSmiArguments[1])" ] || exit 2
            cat '\(fixture.path)'
            """.write(to: script, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: script.path)

        var live = LiveSystemMetrics(environment: ["PATH": "/nonexistent:" + bin.path])
        #expect(live.nvidiaSmiPath == script.path)
        let m = live.sample()
        #expect(m["system.gpu.0.gpu"] == 87)
        #expect(m["system.gpu.1.temp"] == 33)

        try "#!/bin/sh\nexit 9\n".write(to: script, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: script.path)
        for _ in 0..<LiveSystemMetrics.maxNvidiaSmiFailures {
            #expect(!live.sample().keys.contains { $0.hasPrefix("system.gpu.") })
        }
        #expect(live.nvidiaSmiPath == nil)
    }
}
