import ArgumentParser
import Foundation
import RunLog
import RunLogStore

/// `runlog demo`: trains logistic regression on synthetic data in pure Swift and logs it
/// offline; forks the run at a step with another learning rate; rewinds a third run; then
/// prints where the runs are and a terminal chart of the loss.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "demo", abstract: "Train a small model, log it offline, fork it, rewind it, and chart the loss.")

    @Option(help: "Training steps of the first run.") var steps = 2000
    @Option(help: "Where the runlog/ folder goes.") var dir = "."
    @Flag(help: "Print {\"run_dir\": ...} first, then {\"durable_step\": N} after every durable flush (for crash tests).")
    var jsonProgress = false
    @Option(help: "With --json-progress: flush every N steps.") var flushEvery = 10
    @Option(help: "Random seed of the synthetic data.") var seed: UInt64 = 7

    func run() throws {
        guard steps >= 10 else { throw ValidationError("--steps must be at least 10") }
        var settings = Settings()
        settings.systemMetricsInterval = jsonProgress ? nil : .seconds(1)
        settings.handleSignals = true
        let data = SyntheticData(samples: 4096, features: 16, seed: seed)
        var model = LogisticModel(features: 16)
        let project = "runlog-demo"

        // 1. The baseline run.
        let base = try Run.start(project: project, dir: dir, name: "baseline", tags: ["demo", "baseline"],
                                 config: ["lr": 0.5, "batch_size": 64, "features": 16, "optimizer": "sgd", "seed": .int(Int64(seed))],
                                 mode: .offline, reinit: .createNew, settings: settings)
        if jsonProgress { emit(["run_dir": .string(base.directory ?? "")]) }
        let forkStep = steps / 2
        var forkModel = model
        for step in 0..<steps {
            let m = model.train(on: data, batch: 64, step: step, lr: 0.5)
            try base.log(["loss": m.loss, "acc": m.accuracy, "grad_norm": m.gradNorm, "lr": 0.5])
            if step == forkStep { forkModel = model }
            if jsonProgress && (step + 1) % flushEvery == 0 {
                try base.flush()
                emit(["durable_step": .int(Int64(step))])
            }
        }
        try base.summary.set("final_accuracy", model.evaluate(on: data).accuracy)
        try base.finish()
        if jsonProgress { return }

        // 2. A fork at the middle with a smaller learning rate.
        let fork = try Run.start(project: project, dir: dir, name: "fork-lr0.05", tags: ["demo", "fork"],
                                 mode: .offline, reinit: .createNew, forkFrom: "\(base.id)?_step=\(forkStep)", settings: settings)
        try fork.config.set("lr", 0.05, allowValChange: true)
        for step in (forkStep + 1)..<steps {
            let m = forkModel.train(on: data, batch: 64, step: step, lr: 0.05)
            try fork.log(["loss": m.loss, "acc": m.accuracy, "grad_norm": m.gradNorm, "lr": 0.05])
        }
        try fork.finish()

        // 3. A run rewound at three quarters and continued with a decayed learning rate.
        var third = LogisticModel(features: 16)
        let rewindStep = steps * 3 / 4
        var checkpoint = third
        let first = try Run.start(project: project, dir: dir, name: "rewound", tags: ["demo", "rewind"],
                                  config: ["lr": 1.5], mode: .offline, reinit: .createNew, settings: settings)
        for step in 0..<steps {
            let m = third.train(on: data, batch: 64, step: step, lr: 1.5)
            try first.log(["loss": m.loss, "acc": m.accuracy, "grad_norm": m.gradNorm, "lr": 1.5])
            if step == rewindStep { checkpoint = third }
        }
        try first.finish()
        let rewound = try Run.start(project: project, dir: dir, mode: .offline, reinit: .createNew,
                                    resumeFrom: "\(first.id)?_step=\(rewindStep)", settings: settings)
        third = checkpoint
        for step in (rewindStep + 1)..<steps {
            let lr = 1.5 * pow(0.999, Double(step - rewindStep))
            let m = third.train(on: data, batch: 64, step: step, lr: lr)
            try rewound.log(["loss": m.loss, "acc": m.accuracy, "grad_norm": m.gradNorm, "lr": lr])
        }
        try rewound.finish()

        // Compact the baseline: same contents, fewer bytes.
        let compacted = try Compaction.compact(directory: base.directory!)

        print("Runs (offline, in \(Run.resolveRootForDisplay(dir))/\(project)):")
        for (label, run) in [("baseline", base), ("fork", fork), ("rewound", rewound)] {
            print("  \(label.padding(toLength: 9, withPad: " ", startingAt: 0)) \(run.id)  \(run.directory ?? "")")
        }
        print("  baseline compacted: \(compacted.bytesBefore) -> \(compacted.bytesAfter) bytes")
        print("")
        let series = try [("baseline", base), ("fork", fork), ("rewound", rewound)].map { label, run in
            (label, try RunDirectory.reader(run.directory!).history().compactMap { r in r.values["loss"]?.doubleValue.map { (r.step, $0) } })
        }
        print(TerminalChart.render(title: "loss by step", series: series, width: 72, height: 16))
        print("\nInspect a run:  runlog show \(base.directory!)")
        print("History as JSON: runlog show \(fork.directory!) --history | head")
    }

    func emit(_ object: [String: Value]) {
        FileHandle.standardOutput.write(Data((Value.object(object).description + "\n").utf8))
    }
}

extension Run {
    static func resolveRootForDisplay(_ dir: String) -> String {
        (Run.resolveRoot(dir: dir) as NSString).standardizingPath
    }
}

/// Linearly separable-ish synthetic data with label noise.
struct SyntheticData {
    var x: [[Double]]
    var y: [Double]

    init(samples: Int, features: Int, seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        let w = (0..<features).map { _ in rng.gaussian() }
        x = []
        y = []
        for _ in 0..<samples {
            let row = (0..<features).map { _ in rng.gaussian() }
            let z = zip(row, w).reduce(0) { $0 + $1.0 * $1.1 } + 0.5 * rng.gaussian()
            x.append(row)
            y.append(z > 0 ? 1 : 0)
        }
    }
}

struct LogisticModel {
    var w: [Double]
    var b = 0.0

    init(features: Int) { w = [Double](repeating: 0, count: features) }

    struct Metrics { var loss: Double; var accuracy: Double; var gradNorm: Double }

    /// One SGD step on a deterministic minibatch; returns the minibatch's metrics before the step.
    mutating func train(on data: SyntheticData, batch: Int, step: Int, lr: Double) -> Metrics {
        var gw = [Double](repeating: 0, count: w.count)
        var gb = 0.0
        var loss = 0.0
        var correct = 0.0
        for i in 0..<batch {
            let k = (step * batch + i * 7919) % data.x.count
            let p = predict(data.x[k])
            let t = data.y[k]
            loss -= t * log(max(p, 1e-12)) + (1 - t) * log(max(1 - p, 1e-12))
            if (p > 0.5) == (t > 0.5) { correct += 1 }
            for j in 0..<w.count { gw[j] += (p - t) * data.x[k][j] }
            gb += p - t
        }
        let n = Double(batch)
        var norm = gb * gb / (n * n)
        for j in 0..<w.count {
            w[j] -= lr * gw[j] / n
            norm += gw[j] * gw[j] / (n * n)
        }
        b -= lr * gb / n
        return Metrics(loss: loss / n, accuracy: correct / n, gradNorm: norm.squareRoot())
    }

    func predict(_ x: [Double]) -> Double {
        let z = zip(x, w).reduce(b) { $0 + $1.0 * $1.1 }
        return 1 / (1 + exp(-z))
    }

    func evaluate(on data: SyntheticData) -> Metrics {
        var correct = 0.0
        var loss = 0.0
        for (x, t) in zip(data.x, data.y) {
            let p = predict(x)
            loss -= t * log(max(p, 1e-12)) + (1 - t) * log(max(1 - p, 1e-12))
            if (p > 0.5) == (t > 0.5) { correct += 1 }
        }
        return Metrics(loss: loss / Double(data.x.count), accuracy: correct / Double(data.x.count), gradNorm: 0)
    }
}

extension SplitMix64 {
    /// A standard normal draw (Box–Muller).
    mutating func gaussian() -> Double {
        let u1 = max(Double(next() >> 11) / Double(1 << 53), 1e-300)
        let u2 = Double(next() >> 11) / Double(1 << 53)
        return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
    }
}

/// A line chart drawn with characters, one symbol per series.
enum TerminalChart {
    static func render(title: String, series: [(String, [(Int64, Double)])], width: Int, height: Int) -> String {
        let points = series.flatMap(\.1).filter { $0.1.isFinite }
        guard let minX = points.map(\.0).min(), let maxX = points.map(\.0).max(),
              let minY = points.map(\.1).min(), let maxY = points.map(\.1).max() else { return "(no data)" }
        let symbols: [Character] = ["*", "o", "+", "x", "#"]
        var grid = [[Character]](repeating: [Character](repeating: " ", count: width), count: height)
        let spanX = Double(max(maxX - minX, 1))
        // Each column shows the mean of the points that fall in it; the first series is drawn last, on top.
        var columns: [[(sum: Double, count: Int)]] = series.map { _ in Array(repeating: (0, 0), count: width) }
        for (i, (_, pts)) in series.enumerated() {
            for (x, y) in pts where y.isFinite {
                let col = Int(Double(x - minX) / spanX * Double(width - 1))
                columns[i][col].sum += y
                columns[i][col].count += 1
            }
        }
        let means = columns.map { $0.map { $0.count > 0 ? $0.sum / Double($0.count) : Double.nan } }
        let shown = means.flatMap { $0 }.filter { $0.isFinite }
        let lo = shown.min() ?? minY, hi = shown.max() ?? maxY
        let spanY = max(hi - lo, 1e-12)
        for i in series.indices.reversed() {
            for (col, y) in means[i].enumerated() where y.isFinite {
                let row = height - 1 - Int((y - lo) / spanY * Double(height - 1))
                grid[row][col] = symbols[i % symbols.count]
            }
        }
        var out = "  \(title)\n"
        for (r, line) in grid.enumerated() {
            let label: String
            if r == 0 { label = String(format: "%8.4f", hi) }
            else if r == height - 1 { label = String(format: "%8.4f", lo) }
            else { label = String(repeating: " ", count: 8) }
            out += label + " |" + String(line) + "\n"
        }
        out += String(repeating: " ", count: 9) + "+" + String(repeating: "-", count: width) + "\n"
        out += String(repeating: " ", count: 10) + "\(minX)" + String(repeating: " ", count: max(1, width - "\(minX)".count - "\(maxX)".count)) + "\(maxX)\n"
        out += "          " + series.enumerated().map { "\(symbols[$0.offset % symbols.count]) \($0.element.0)" }.joined(separator: "   ")
        return out
    }
}
