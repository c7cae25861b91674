// What the figure executables share: their command-line options and their output.
import Foundation

/// A line to standard error (progress).
public func say(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }
/// A line to standard output (the figures).
public func out(_ s: String) { FileHandle.standardOutput.write(Data((s + "\n").utf8)) }

/// The value after `name` on the command line (`--runs 200`).
public func option(_ name: String) -> String? {
    let args = CommandLine.arguments.dropFirst()
    guard let i = args.firstIndex(of: name), i + 1 < args.endIndex else { return nil }
    return args[i + 1]
}

/// An integer option (`1_000_000` allowed), else `fallback`.
public func intOption(_ name: String, _ fallback: Int) -> Int { option(name).flatMap { Int($0.replacingOccurrences(of: "_", with: "")) } ?? fallback }

/// A rate in thousands or millions (`707 k`, `1.54 M`).
public func rate(_ x: Double) -> String { x >= 1e6 ? String(format: "%.2f M", x / 1e6) : String(format: "%.0f k", x / 1e3) }
/// Bytes in MiB.
public func mib(_ b: UInt64) -> String { String(format: "%.1f MiB", Double(b) / 1048576) }

/// Seconds as milliseconds, with three decimals under 10 ms.
public func ms(_ s: Double) -> String { s < 0.01 ? String(format: "%.3f ms", s * 1e3) : String(format: "%.1f ms", s * 1e3) }

/// The middle value (the upper one of an even count); 0 when empty.
public func median(_ xs: [Double]) -> Double { xs.isEmpty ? 0 : xs.sorted()[xs.count / 2] }
