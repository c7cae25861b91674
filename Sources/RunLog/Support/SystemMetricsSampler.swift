/// The keys of the system metrics RunLog records, wandb-style, with their units.
///
/// | key | meaning |
/// |---|---|
/// | `system.cpu` | whole-machine CPU utilization, % (0–100), from `/proc/stat` |
/// | `system.proc.cpu.percent` | CPU used by this process, % of the whole machine (0–100; one busy core of 8 is 12.5) |
/// | `system.proc.cpu.threads` | threads of this process |
/// | `system.memory` | machine memory in use, % of `MemTotal` (`MemTotal - MemAvailable`) |
/// | `system.proc.memory.rssMB` | resident set size of this process, MiB |
/// | `system.proc.memory.percent` | resident set size of this process, % of `MemTotal` |
/// | `system.proc.memory.availableMB` | `MemAvailable`, MiB |
/// | `system.disk.in` | MiB this process read from storage since the first sample (`/proc/self/io` `read_bytes`) |
/// | `system.disk.out` | MiB this process wrote to storage since the first sample (`write_bytes`) |
/// | `system.network.recv` | bytes received on all interfaces but `lo` since the first sample |
/// | `system.network.sent` | bytes sent on all interfaces but `lo` since the first sample |
/// | `system.gpu.N.gpu` | GPU N utilization, % |
/// | `system.gpu.N.memoryAllocated` | GPU N memory in use, % of its total |
/// | `system.gpu.N.memoryUsedMiB` | GPU N memory in use, MiB |
/// | `system.gpu.N.memoryTotalMiB` | GPU N memory, MiB |
/// | `system.gpu.N.temp` | GPU N temperature, °C |
/// | `system.gpu.N.powerWatts` | GPU N power draw, W |
///
/// A key is absent when its source is missing or unreadable, or reports `[N/A]`.
/// The CPU percentages need two samples, so the first sample has none.
package enum SystemMetricKey {
    package static let cpu = "system.cpu"
    package static let processCPU = "system.proc.cpu.percent"
    package static let processThreads = "system.proc.cpu.threads"
    package static let memory = "system.memory"
    package static let processRSS = "system.proc.memory.rssMB"
    package static let processMemoryPercent = "system.proc.memory.percent"
    package static let availableMemory = "system.proc.memory.availableMB"
    package static let diskIn = "system.disk.in"
    package static let diskOut = "system.disk.out"
    package static let networkRecv = "system.network.recv"
    package static let networkSent = "system.network.sent"

    /// The GPU metrics' field names, as in `system.gpu.<index>.<field>`.
    package enum GPUField: String, Sendable, CaseIterable {
        case utilization = "gpu"
        case memoryAllocated
        case memoryUsedMiB
        case memoryTotalMiB
        case temperature = "temp"
        case powerWatts
    }

    /// The key of `field` for the GPU with nvidia-smi index `index`.
    package static func gpu(_ index: Int, _ field: GPUField) -> String {
        "system.gpu.\(index).\(field.rawValue)"
    }
}

/// The text of the sources system metrics are read from, taken at one instant.
///
/// Each field holds a file's whole content (nil when it could not be read), so a test can
/// feed recorded text to ``SystemMetricsSampler``.
package struct SystemSnapshot: Sendable, Equatable {
    /// `/proc/self/stat`
    package var procSelfStat: String?
    /// `/proc/stat`
    package var procStat: String?
    /// `/proc/self/status`
    package var procSelfStatus: String?
    /// `/proc/meminfo`
    package var procMeminfo: String?
    /// `/proc/self/io`
    package var procSelfIO: String?
    /// `/proc/net/dev`
    package var procNetDev: String?
    /// Output of `nvidia-smi --query-gpu=index,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw --format=csv,noheader,nounits`
    package var nvidiaSmiCSV: String?

    package init(
        procSelfStat: String? = nil, procStat: String? = nil, procSelfStatus: String? = nil,
        procMeminfo: String? = nil, procSelfIO: String? = nil, procNetDev: String? = nil,
        nvidiaSmiCSV: String? = nil
    ) {
        self.procSelfStat = procSelfStat
        self.procStat = procStat
        self.procSelfStatus = procSelfStatus
        self.procMeminfo = procMeminfo
        self.procSelfIO = procSelfIO
        self.procNetDev = procNetDev
        self.nvidiaSmiCSV = nvidiaSmiCSV
    }
}

/// Turns successive ``SystemSnapshot``s into metrics (see ``SystemMetricKey``).
///
/// A value type that remembers the previous sample's counters: CPU percentages are computed
/// from the change between two samples, and disk and network totals accumulate the change
/// since the first one. A counter that goes down (an interface that went away and came back)
/// counts as a restart from zero, never as negative traffic.
package struct SystemMetricsSampler: Sendable {
    private var previousCPU: CPUTimes?
    private var previousProcessTicks: UInt64?
    private var previousDisk: (read: UInt64, write: UInt64)?
    private var previousNetwork: [String: NetworkCounters] = [:]
    private var diskReadTotal: UInt64 = 0
    private var diskWriteTotal: UInt64 = 0
    private var networkRecvTotal: UInt64 = 0
    private var networkSentTotal: UInt64 = 0
    private var hasNetworkBaseline = false

    package init() {}

    /// The metrics for `snapshot`, updating the remembered counters.
    package mutating func sample(_ snapshot: SystemSnapshot) -> [String: Double] {
        var metrics: [String: Double] = [:]
        sampleCPU(snapshot, into: &metrics)
        sampleMemory(snapshot, into: &metrics)
        sampleDisk(snapshot, into: &metrics)
        sampleNetwork(snapshot, into: &metrics)
        if let csv = snapshot.nvidiaSmiCSV {
            for gpu in Self.parseNvidiaSmi(csv) { gpu.addMetrics(into: &metrics) }
        }
        return metrics
    }

    private mutating func sampleCPU(_ snapshot: SystemSnapshot, into metrics: inout [String: Double]) {
        let cpu = snapshot.procStat.flatMap(Self.parseProcStat)
        let process = snapshot.procSelfStat.flatMap(Self.parseProcSelfStat)
        if let process { metrics[SystemMetricKey.processThreads] = Double(process.threads) }
        if let cpu, let previous = previousCPU, cpu.total > previous.total {
            let total = Double(cpu.total - previous.total)
            let idle = Double(cpu.idle &- previous.idle)
            metrics[SystemMetricKey.cpu] = Self.percent(total - min(idle, total), of: total)
            if let process, let previousTicks = previousProcessTicks, process.ticks >= previousTicks {
                metrics[SystemMetricKey.processCPU] = Self.percent(Double(process.ticks - previousTicks), of: total)
            }
        }
        previousCPU = cpu
        previousProcessTicks = process?.ticks
    }

    private func sampleMemory(_ snapshot: SystemSnapshot, into metrics: inout [String: Double]) {
        let memory = snapshot.procMeminfo.flatMap(Self.parseMeminfo)
        let rssKiB = snapshot.procSelfStatus.flatMap(Self.parseRSSKiB)
        if let memory, memory.totalKiB > 0 {
            let total = Double(memory.totalKiB)
            let available = Double(min(memory.availableKiB, memory.totalKiB))
            metrics[SystemMetricKey.memory] = (total - available) / total * 100
            metrics[SystemMetricKey.availableMemory] = available / 1024
            if let rssKiB { metrics[SystemMetricKey.processMemoryPercent] = Double(rssKiB) / total * 100 }
        }
        if let rssKiB { metrics[SystemMetricKey.processRSS] = Double(rssKiB) / 1024 }
    }

    private mutating func sampleDisk(_ snapshot: SystemSnapshot, into metrics: inout [String: Double]) {
        guard let io = snapshot.procSelfIO.flatMap(Self.parseProcSelfIO) else { return }
        if let previous = previousDisk {
            diskReadTotal += Self.increase(from: previous.read, to: io.read)
            diskWriteTotal += Self.increase(from: previous.write, to: io.write)
        }
        previousDisk = io
        metrics[SystemMetricKey.diskIn] = Double(diskReadTotal) / 1_048_576
        metrics[SystemMetricKey.diskOut] = Double(diskWriteTotal) / 1_048_576
    }

    private mutating func sampleNetwork(_ snapshot: SystemSnapshot, into metrics: inout [String: Double]) {
        guard let interfaces = snapshot.procNetDev.flatMap(Self.parseNetDev) else { return }
        if hasNetworkBaseline {
            for (name, now) in interfaces {
                // An interface first seen after the baseline counts from zero.
                let before = previousNetwork[name] ?? NetworkCounters(received: 0, sent: 0)
                networkRecvTotal += Self.increase(from: before.received, to: now.received)
                networkSentTotal += Self.increase(from: before.sent, to: now.sent)
            }
        }
        hasNetworkBaseline = true
        previousNetwork = interfaces
        metrics[SystemMetricKey.networkRecv] = Double(networkRecvTotal)
        metrics[SystemMetricKey.networkSent] = Double(networkSentTotal)
    }

    /// How much a counter grew; a counter that went down restarted from zero.
    static func increase(from old: UInt64, to new: UInt64) -> UInt64 {
        new >= old ? new - old : new
    }

    static func percent(_ part: Double, of whole: Double) -> Double {
        guard whole > 0 else { return 0 }
        return min(max(part / whole * 100, 0), 100)
    }
}

// MARK: - Parsers

extension SystemMetricsSampler {
    /// Aggregate CPU time from the `cpu` line of `/proc/stat`, in clock ticks.
    struct CPUTimes: Sendable, Equatable {
        /// user + nice + system + idle + iowait + irq + softirq + steal (guest time is already
        /// inside user and nice).
        var total: UInt64
        /// idle + iowait.
        var idle: UInt64
        /// The number of `cpuN` lines.
        var cpuCount: Int
    }

    static func parseProcStat(_ text: String) -> CPUTimes? {
        var times: CPUTimes?
        var cpuCount = 0
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard let name = fields.first, name.hasPrefix("cpu") else { continue }
            if name == "cpu" {
                let values = fields.dropFirst().prefix(8).compactMap { UInt64($0) }
                guard values.count >= 4 else { return nil }
                let idle = values[3] + (values.count > 4 ? values[4] : 0)
                times = CPUTimes(total: values.reduce(0, +), idle: idle, cpuCount: 0)
            } else if name.dropFirst(3).allSatisfy(\.isNumber) {
                cpuCount += 1
            }
        }
        times?.cpuCount = cpuCount
        return times
    }

    /// utime + stime (clock ticks) and the thread count from `/proc/self/stat`.
    static func parseProcSelfStat(_ text: String) -> (ticks: UInt64, threads: Int)? {
        // The command name (field 2) is in parentheses and may itself hold spaces and ")".
        guard let close = text.lastIndex(of: ")") else { return nil }
        let rest = text[text.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
        // rest[0] is field 3 (state): utime is field 14, stime 15, num_threads 20.
        guard rest.count > 17, let utime = UInt64(rest[11]), let stime = UInt64(rest[12]),
            let threads = Int(rest[17])
        else { return nil }
        return (utime + stime, threads)
    }

    /// `VmRSS` from `/proc/self/status`, in KiB.
    static func parseRSSKiB(_ text: String) -> UInt64? {
        kibValues(in: text)["VmRSS"]
    }

    /// `MemTotal` and `MemAvailable` from `/proc/meminfo`, in KiB. Kernels older than 3.14
    /// have no `MemAvailable`; `MemFree + Buffers + Cached` stands in for it.
    static func parseMeminfo(_ text: String) -> (totalKiB: UInt64, availableKiB: UInt64)? {
        let values = kibValues(in: text)
        guard let total = values["MemTotal"] else { return nil }
        if let available = values["MemAvailable"] { return (total, available) }
        guard let free = values["MemFree"] else { return nil }
        return (total, free + (values["Buffers"] ?? 0) + (values["Cached"] ?? 0))
    }

    /// `read_bytes` and `write_bytes` from `/proc/self/io`.
    static func parseProcSelfIO(_ text: String) -> (read: UInt64, write: UInt64)? {
        let values = kibValues(in: text)
        guard let read = values["read_bytes"], let write = values["write_bytes"] else { return nil }
        return (read, write)
    }

    struct NetworkCounters: Sendable, Equatable {
        var received: UInt64
        var sent: UInt64
    }

    /// Received and sent bytes per interface from `/proc/net/dev`, without `lo`.
    static func parseNetDev(_ text: String) -> [String: NetworkCounters]? {
        var interfaces: [String: NetworkCounters] = [:]
        var sawHeader = false
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].trimmingSpaces()
            if name.contains("|") || name.isEmpty { continue }
            let fields = line[line.index(after: colon)...].split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 9, let received = UInt64(fields[0]), let sent = UInt64(fields[8]) else {
                continue
            }
            sawHeader = true
            if name == "lo" { continue }
            interfaces[String(name)] = NetworkCounters(received: received, sent: sent)
        }
        return sawHeader ? interfaces : nil
    }

    /// `Name: value [kB]` lines as numbers (the unit is not converted).
    private static func kibValues(in text: String) -> [String: UInt64] {
        var values: [String: UInt64] = [:]
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let number = line[line.index(after: colon)...].split(whereSeparator: { $0 == " " || $0 == "\t" }).first
            if let number, let value = UInt64(number) {
                values[String(line[..<colon].trimmingSpaces())] = value
            }
        }
        return values
    }
}

// MARK: - nvidia-smi

/// One GPU's line of `nvidia-smi --query-gpu=index,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw --format=csv,noheader,nounits`.
/// A field the driver reports as `[N/A]`, `[Not Supported]` or similar is nil.
package struct GPUReading: Sendable, Equatable {
    package var index: Int
    package var utilizationPercent: Double?
    package var memoryUsedMiB: Double?
    package var memoryTotalMiB: Double?
    package var temperatureCelsius: Double?
    package var powerWatts: Double?

    package init(
        index: Int, utilizationPercent: Double?, memoryUsedMiB: Double?, memoryTotalMiB: Double?,
        temperatureCelsius: Double?, powerWatts: Double?
    ) {
        self.index = index
        self.utilizationPercent = utilizationPercent
        self.memoryUsedMiB = memoryUsedMiB
        self.memoryTotalMiB = memoryTotalMiB
        self.temperatureCelsius = temperatureCelsius
        self.powerWatts = powerWatts
    }

    /// Memory in use as a percentage of the total, when both are known.
    package var memoryAllocatedPercent: Double? {
        guard let used = memoryUsedMiB, let total = memoryTotalMiB, total > 0 else { return nil }
        return used / total * 100
    }

    func addMetrics(into metrics: inout [String: Double]) {
        func put(_ field: SystemMetricKey.GPUField, _ value: Double?) {
            if let value { metrics[SystemMetricKey.gpu(index, field)] = value }
        }
        put(.utilization, utilizationPercent)
        put(.memoryAllocated, memoryAllocatedPercent)
        put(.memoryUsedMiB, memoryUsedMiB)
        put(.memoryTotalMiB, memoryTotalMiB)
        put(.temperature, temperatureCelsius)
        put(.powerWatts, powerWatts)
    }
}

extension SystemMetricsSampler {
    /// The query ``LiveSystemMetrics`` passes to nvidia-smi; its columns are what
    /// ``parseNvidiaSmi(_:)`` expects.
    package static let nvidiaSmiArguments = [
        "--query-gpu=index,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw",
        "--format=csv,noheader,nounits",
    ]

    /// The GPUs in nvidia-smi's CSV output. Lines that are not six comma-separated fields with
    /// an integer index (error messages, a header) are skipped; unreadable fields are nil.
    package static func parseNvidiaSmi(_ csv: String) -> [GPUReading] {
        var gpus: [GPUReading] = []
        for line in csv.split(whereSeparator: \.isNewline) {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map {
                String($0.trimmingSpaces())
            }
            guard fields.count == 6, let index = Int(fields[0]) else { continue }
            let numbers = fields.dropFirst().map(number)
            gpus.append(GPUReading(
                index: index, utilizationPercent: numbers[0], memoryUsedMiB: numbers[1],
                memoryTotalMiB: numbers[2], temperatureCelsius: numbers[3], powerWatts: numbers[4]))
        }
        return gpus
    }

    /// A field as a finite number, or nil for `[N/A]`, `[Not Supported]`, `N/A` and the like.
    private static func number(_ field: String) -> Double? {
        // Without `nounits` a unit follows the number ("45 %", "72.51 W").
        let token = field.split(separator: " ").first.map(String.init) ?? field
        guard let value = Double(token), value.isFinite else { return nil }
        return value
    }
}

extension Substring {
    fileprivate func trimmingSpaces() -> Substring {
        var s = self
        while let first = s.first, first == " " || first == "\t" { s.removeFirst() }
        while let last = s.last, last == " " || last == "\t" || last == "\r" { s.removeLast() }
        return s
    }
}
