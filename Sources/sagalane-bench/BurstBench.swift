import Glibc
import SagaLane
import Synchronization

/// A one-step saga whose command is echoed at once.
private final class OneStepSaga: Saga {
    func start(_ context: SagaContext) -> SagaAction { .issue(target: "echo", command: ["cmd": "one"]) }
    func onEvent(_ event: Event, _ context: SagaContext) -> SagaAction { .done }
}

private final class BurstCounts: Sendable {
    let started = Atomic<Int>(0)
    let ended = Atomic<Int>(0)
    let timeouts = Atomic<Int>(0)
    let otherFailures = Atomic<Int>(0)
}

/// The peak resident set size so far (VmHWM), in bytes.
private func peakResidentBytes() -> Int {
    guard let f = fopen("/proc/self/status", "r") else { return 0 }
    defer { fclose(f) }
    var line = [CChar](repeating: 0, count: 256)
    while fgets(&line, Int32(line.count), f) != nil {
        let text = String(cString: line)
        if text.hasPrefix("VmHWM:") {
            let digits = text.filter(\.isNumber)
            return (Int(digits) ?? 0) * 1024
        }
    }
    return 0
}

/// One thread starts `n` sagas as fast as it can, waiting for room whenever the launch queue is
/// full. Prints the sagas whose deadline passed although their command was answered at once
/// (spurious timeouts: must be 0), the peak RSS, and the RSS per saga right after the burst.
func runBurstBench(directory: String, sagas n: Int) async throws {
    let path = directory + "/bench-burst.db"
    let rig = try SagaRig(path: path, durability: .normal, diagnostics: .discard)
    let coordinator = rig.coordinator
    // The default deadline: a saga that waits to launch must not count that time as its own.
    try await rig.start("one_step", timeout: SagaType.defaultTimeout) { OneStepSaga() }
    let counts = BurstCounts()
    let before = residentBytes()
    let clock = ContinuousClock()
    let start = clock.now
    for _ in 0..<n {
        try await startWhenThereIsRoom(coordinator, name: "one_step") { end in
            counts.ended.add(1, ordering: .relaxed)
            guard end.state != .completed else { return }
            if end.reason == "saga timeout" { counts.timeouts.add(1, ordering: .relaxed) } else { counts.otherFailures.add(1, ordering: .relaxed) }
        }
    }
    let burst = clock.now - start
    let after = residentBytes()
    while counts.ended.load(ordering: .relaxed) < n { try await Task.sleep(for: .milliseconds(10)) }
    let total = clock.now - start
    print("burst: \(n) one-step sagas started by one thread as fast as it can (launch queue limit \(Coordinator.defaultLaunchQueueLimit), default 5 s deadline)")
    print("  started in \(format(burst)) (\(Int(Double(n) / seconds(burst))) sagas/s), all ended in \(format(total))")
    print("  spurious timeouts \(counts.timeouts.load(ordering: .relaxed)) (must be 0), other failures \(counts.otherFailures.load(ordering: .relaxed))")
    print("  peak RSS \(peakResidentBytes() >> 20) MiB; RSS right after the burst \(max(0, after - before) / n) bytes per saga started (process RSS before: \(before >> 20) MiB)")
    await rig.shutdown(path: path)
}

private func seconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

private func format(_ d: Duration) -> String {
    let s = seconds(d)
    return s < 10 ? String(Int(s * 1000)) + " ms" : String(Int(s)) + " s"
}
