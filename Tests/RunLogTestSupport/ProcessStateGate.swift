import Testing

// One gate for every test target linked into the test process (`swift test` runs them all in
// one process): suites of RunLogTests and RunLogIntegrationTests that start SDK runs in
// process share it, so that a suite that reads "the" active run never sees another target's.

/// Guards what is global to the test process: the registry of active runs (`reinit`
/// returns "the" active run), the working directory, and file descriptors 1 and 2.
///
/// Suites that start runs take it shared (they may run in parallel with each other); a suite
/// whose tests read the active run, change the working directory or capture the console
/// takes it exclusive, so nothing else that starts runs is in flight meanwhile. Waiting
/// suspends (no thread of the cooperative pool is blocked).
public actor ProcessStateGate {
    public static let shared = ProcessStateGate()

    private var readers = 0
    private var writer = false
    private var waiting: [(exclusive: Bool, continuation: CheckedContinuation<Void, Never>)] = []

    public func lock(exclusive: Bool) async {
        if waiting.isEmpty, canEnter(exclusive) {
            enter(exclusive)
            return
        }
        await withCheckedContinuation { waiting.append((exclusive, $0)) }
    }

    public func unlock(exclusive: Bool) {
        if exclusive { writer = false } else { readers -= 1 }
        while let first = waiting.first, canEnter(first.exclusive) {
            waiting.removeFirst()
            enter(first.exclusive)
            first.continuation.resume()
        }
    }

    private func canEnter(_ exclusive: Bool) -> Bool { exclusive ? (!writer && readers == 0) : !writer }
    private func enter(_ exclusive: Bool) { if exclusive { writer = true } else { readers += 1 } }
}

/// A suite trait: every test case of the suite holds the ``ProcessStateGate`` while it runs.
public struct ProcessStateTrait: SuiteTrait, TestTrait, TestScoping {
    public var exclusive: Bool
    public var isRecursive: Bool { true }

    public func scopeProvider(for test: Test, testCase: Test.Case?) -> ProcessStateTrait? {
        testCase == nil ? nil : self
    }

    public func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        await ProcessStateGate.shared.lock(exclusive: exclusive)
        do {
            try await function()
        } catch {
            await ProcessStateGate.shared.unlock(exclusive: exclusive)
            throw error
        }
        await ProcessStateGate.shared.unlock(exclusive: exclusive)
    }
}

extension Trait where Self == ProcessStateTrait {
    /// Starts runs; may run beside other suites that do.
    public static var sharedProcessState: Self { ProcessStateTrait(exclusive: false) }
    /// Reads the active run, changes the working directory or redirects fd 1/2: runs alone.
    public static var exclusiveProcessState: Self { ProcessStateTrait(exclusive: true) }
}

