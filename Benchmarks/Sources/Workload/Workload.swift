#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Workload W (`shared/bench/WORKLOAD.md`): a training loop logging N steps, each the step
/// number plus 10 doubles named `loss, acc, lr, grad_norm, m4 … m9`.
///
/// A Swift port of the reference generator `workload.py`: the same processes with the same
/// parameters (AR(1)-modulated decaying loss, saturating accuracy, warm-up + cosine learning
/// rate, log-normal gradient norm, six Gaussian random walks with σ from 0.001 to 0.2), driven by
/// a seeded xoshiro256** generator and Python's own Box–Muller `gauss` algorithm. Values are
/// deterministic for a given seed; they are not bit-identical to Python's (which uses the
/// Mersenne Twister), only statistically the same.
///
/// - ``Precision/w64``: full float64 values (worst case for compression).
/// - ``Precision/w32``: every value rounded through `Float`, as `tensor.item()` of a float32
///   tensor returns it.
public enum Workload {
    /// The 10 metric names, in the order of every values buffer.
    public static let names = ["loss", "acc", "lr", "grad_norm", "m4", "m5", "m6", "m7", "m8", "m9"]
    public static let metricCount = 10
    /// The seed of the reference generator.
    public static let defaultSeed: UInt64 = 12345

    public enum Precision: String, Sendable, CaseIterable, CustomStringConvertible {
        case w64 = "W64"
        case w32 = "W32"
        public var description: String { rawValue }
    }
}

/// xoshiro256** seeded through SplitMix64: fast, deterministic, good statistical quality.
public struct Xoshiro256StarStar: RandomNumberGenerator, Sendable {
    private var s0, s1, s2, s3: UInt64

    public init(seed: UInt64) {
        var x = seed
        func splitmix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s0 = splitmix(); s1 = splitmix(); s2 = splitmix(); s3 = splitmix()
    }

    @inline(__always)
    public mutating func next() -> UInt64 {
        let result = ((s1 &* 5) << 7 | (s1 &* 5) >> 57) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = s3 << 45 | s3 >> 19
        return result
    }

    /// Uniform in [0, 1) with 53 random bits, like Python's `random()`.
    @inline(__always)
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1.0p-53 }
}

/// Streams workload W one step at a time in O(1) memory.
///
/// ```swift
/// var w = WorkloadGenerator(steps: 1_000_000, precision: .w32)
/// var values = [Double](repeating: 0, count: Workload.metricCount)
/// while let step = w.next(into: &values) { try writer.appendRow(step: step, keys: Workload.names, doubles: values) }
/// ```
public struct WorkloadGenerator: Sendable {
    public let steps: Int
    public let precision: Workload.Precision
    /// The next step to produce.
    public private(set) var step = 0

    private var rng: Xoshiro256StarStar
    private var gaussNext: Double?
    private var rwLoss = 0.0, rwAcc = 0.0, rwG = 0.0
    private var m: (Double, Double, Double, Double, Double, Double) = (0.0, 1.0, 10.0, 0.5, -3.0, 100.0)
    private static let sigma: (Double, Double, Double, Double, Double, Double) = (0.01, 0.003, 0.05, 0.001, 0.02, 0.2)
    private static let warm = 1000
    private static let peakLR = 3e-4

    public init(steps: Int, seed: UInt64 = Workload.defaultSeed, precision: Workload.Precision = .w64) {
        self.steps = steps
        self.precision = precision
        rng = Xoshiro256StarStar(seed: seed)
    }

    /// Python's `random.gauss`: Box–Muller, keeping the second value for the next call.
    @inline(__always)
    private mutating func gauss(_ mu: Double, _ sigma: Double) -> Double {
        let z: Double
        if let g = gaussNext {
            z = g
            gaussNext = nil
        } else {
            let x2pi = rng.unit() * 2 * Double.pi
            let g2rad = (-2.0 * log(1.0 - rng.unit())).squareRoot()
            z = cos(x2pi) * g2rad
            gaussNext = sin(x2pi) * g2rad
        }
        return mu + z * sigma
    }

    /// Writes the next step's 10 values (in ``Workload/names`` order) into `values` and returns
    /// its step number, or nil after the last step.
    @inline(__always)
    public mutating func next(into values: UnsafeMutableBufferPointer<Double>) -> Int64? {
        precondition(values.count >= Workload.metricCount)
        guard step < steps else { return nil }
        let t = step
        let n = steps
        let frac = Double(t) / Double(n)
        rwLoss = 0.995 * rwLoss + gauss(0.0, 0.02)
        rwAcc = 0.99 * rwAcc + gauss(0.0, 0.01)
        rwG = 0.98 * rwG + gauss(0.0, 0.05)
        let decay = exp(-3.0 * frac)
        let loss = (2.3 * decay + 0.2) * exp(rwLoss)
        let acc = Swift.min(1.0, Swift.max(0.0, 0.95 - 0.85 * decay + rwAcc))
        let lr: Double
        if t < Self.warm {
            lr = Self.peakLR * Double(t + 1) / Double(Self.warm)
        } else {
            lr = 0.5 * Self.peakLR * (1.0 + cos(Double.pi * Double(t - Self.warm) / Double(Swift.max(1, n - Self.warm))))
        }
        let gn = exp(rwG + gauss(0.0, 0.1))
        m.0 += gauss(0.0, Self.sigma.0)
        m.1 += gauss(0.0, Self.sigma.1)
        m.2 += gauss(0.0, Self.sigma.2)
        m.3 += gauss(0.0, Self.sigma.3)
        m.4 += gauss(0.0, Self.sigma.4)
        m.5 += gauss(0.0, Self.sigma.5)
        values[0] = loss; values[1] = acc; values[2] = lr; values[3] = gn
        values[4] = m.0; values[5] = m.1; values[6] = m.2; values[7] = m.3; values[8] = m.4; values[9] = m.5
        if precision == .w32 {
            for i in 0..<Workload.metricCount { values[i] = Double(Float(values[i])) }
        }
        step += 1
        return Int64(t)
    }

    /// As ``next(into:)-(UnsafeMutableBufferPointer<Double>)`` for an array of at least 10 elements.
    @inline(__always)
    public mutating func next(into values: inout [Double]) -> Int64? {
        values.withUnsafeMutableBufferPointer { next(into: $0) }
    }
}

extension WorkloadGenerator: Sequence, IteratorProtocol {
    /// The next step with a fresh array of its values (allocates; use `next(into:)` in loops that are timed).
    public mutating func next() -> (step: Int64, values: [Double])? {
        var v = [Double](repeating: 0, count: Workload.metricCount)
        guard let s = next(into: &v) else { return nil }
        return (s, v)
    }
}

/// Workload W generated ahead of time into one flat row-major buffer, so that a timed loop
/// measures the store and not the generator (80 bytes per step).
public struct WorkloadTable: Sendable {
    public let steps: Int
    public let precision: Workload.Precision
    /// `values[i * 10 + j]` is metric `j` of step `i`.
    public let values: [Double]

    public init(steps: Int, seed: UInt64 = Workload.defaultSeed, precision: Workload.Precision = .w64) {
        self.steps = steps
        self.precision = precision
        var g = WorkloadGenerator(steps: steps, seed: seed, precision: precision)
        values = [Double](unsafeUninitializedCapacity: steps * Workload.metricCount) { buf, count in
            var i = 0
            while g.next(into: UnsafeMutableBufferPointer(rebasing: buf[i..<i + Workload.metricCount])) != nil {
                i += Workload.metricCount
            }
            count = i
        }
    }

    /// Calls `body` with the values of step `i`.
    @inline(__always)
    public func withRow<R>(_ i: Int, _ body: (UnsafeBufferPointer<Double>) throws -> R) rethrows -> R {
        try values.withUnsafeBufferPointer { try body(UnsafeBufferPointer(rebasing: $0[i * Workload.metricCount..<(i + 1) * Workload.metricCount])) }
    }
}

/// Summary statistics of a workload stream, to check the port against `workload.py`
/// (`python3 -c` snippet in `Benchmarks/README.md`).
public struct WorkloadStats: Sendable {
    public var count = 0
    public var mean = [Double](repeating: 0, count: Workload.metricCount)
    public var std = [Double](repeating: 0, count: Workload.metricCount)
    public var first = [Double](repeating: 0, count: Workload.metricCount)
    public var last = [Double](repeating: 0, count: Workload.metricCount)
    /// Standard deviation of the step-to-step difference of each metric.
    public var diffStd = [Double](repeating: 0, count: Workload.metricCount)

    public init(steps: Int, seed: UInt64 = Workload.defaultSeed, precision: Workload.Precision = .w64) {
        var g = WorkloadGenerator(steps: steps, seed: seed, precision: precision)
        var v = [Double](repeating: 0, count: Workload.metricCount)
        var prev = v
        var sum = v, sq = v, dsum = v, dsq = v
        while g.next(into: &v) != nil {
            if count == 0 { first = v }
            for j in 0..<Workload.metricCount {
                sum[j] += v[j]; sq[j] += v[j] * v[j]
                if count > 0 { let d = v[j] - prev[j]; dsum[j] += d; dsq[j] += d * d }
            }
            prev = v
            count += 1
        }
        last = prev
        let n = Double(count)
        for j in 0..<Workload.metricCount {
            mean[j] = sum[j] / n
            std[j] = max(0, sq[j] / n - mean[j] * mean[j]).squareRoot()
            let dn = max(1, n - 1)
            diffStd[j] = max(0, dsq[j] / dn - (dsum[j] / dn) * (dsum[j] / dn)).squareRoot()
        }
    }
}
