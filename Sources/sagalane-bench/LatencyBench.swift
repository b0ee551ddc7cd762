import Glibc
import SagaLane
import Synchronization

/// A two-step saga whose commands the callback target echoes at once.
private final class EchoedTwoStepSaga: Saga {
    var answered = 0
    func start(_ context: SagaContext) -> SagaAction { .issue(target: "echo", command: ["cmd": "one"]) }
    func onEvent(_ event: Event, _ context: SagaContext) -> SagaAction {
        answered += 1
        return answered == 1 ? .issue(target: "echo", command: ["cmd": "two"]) : .done
    }
}

/// Latencies from each saga's start call to its end, in nanoseconds.
private final class Latencies: Sendable {
    let samples = ConditionLock<[Int64]>([])
    let ended = Atomic<Int>(0)
    func record(since start: UInt64) {
        let nanos = Int64(monotonicNanos() - start)
        samples.withLock { $0.append(nanos) }
        ended.add(1, ordering: .relaxed)
    }
}

private func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Open-loop load: sagas started at a fixed rate, whatever the runtime's pace, for `seconds`;
/// prints the latency from the start call to the saga's end, percentiles beside the median.
/// The rate is `load` times the closed-loop maximum measured first in the same run.
func runLatencyBench(directory: String, load: Double, seconds: Double) async throws {
    let path = directory + "/bench-latency.db"
    let maximum = try await measureSagaThroughput(path: path, durability: .normal, sagas: 20_000, concurrency: 256)
    let rate = maximum * load
    removeDatabase(path)
    let loop = try EventLoop()
    try loop.startThread()
    let log = try SagaLog.open(path: path, durability: .normal)
    let coordinator = Coordinator(loop: loop, log: log, bus: EventBus(), diagnostics: .discard)
    try coordinator.register(SagaType(name: "two_step", timeout: .seconds(3600)) { _ in EchoedTwoStepSaga() })
    try coordinator.register(target: CallbackTarget { step, reporter in
        reporter.publish(type: "Echo", payload: step.command)
    }, named: "echo")
    try await coordinator.start()
    let latencies = Latencies()
    let total = Int(rate * seconds)
    let begin = monotonicNanos()
    var started = 0
    while started < total {
        // Catch up with the schedule every millisecond: an open loop never waits for the
        // runtime, it only keeps the rate.
        let due = Int(Double(monotonicNanos() - begin) / 1e9 * rate)
        while started < min(due, total) {
            let start = monotonicNanos()
            try await startWhenThereIsRoom(coordinator, name: "two_step") { _ in latencies.record(since: start) }
            started += 1
        }
        usleep(1_000)
    }
    while latencies.ended.load(ordering: .relaxed) < total { usleep(1_000) }
    var samples = latencies.samples.withLock { $0 }
    samples.sort()
    func percentile(_ p: Double) -> String {
        let nanos = samples[min(samples.count - 1, Int(Double(samples.count - 1) * p))]
        return String(format3(Double(nanos) / 1e6)) + " ms"
    }
    print("latency: two-step sagas started open-loop at \(Int(rate)) sagas/s for \(Int(seconds)) s (\(Int(load * 100))% of the closed-loop maximum, \(Int(maximum)) sagas/s, measured first), normal durability")
    print("  start call to end: p50 \(percentile(0.5))   p90 \(percentile(0.9))   p99 \(percentile(0.99))   p99.9 \(percentile(0.999))   max \(percentile(1))")
    await coordinator.close()
    loop.shutdown()
    log.close()
    removeDatabase(path)
}

private func format3(_ x: Double) -> String {
    let scaled = Int((x * 1000).rounded())
    let whole = scaled / 1000, fraction = scaled % 1000
    return "\(whole)." + String(repeating: "0", count: fraction < 10 ? 2 : fraction < 100 ? 1 : 0) + "\(fraction)"
}

/// Runs exactly `n` sagas, 256 in flight, and nothing else: a fixed workload for counting
/// instructions (scripts/callgrind-saga runs it at two sizes and divides the difference).
func runCountedSagas(directory: String, sagas n: Int) async throws {
    _ = try await measureSagaThroughput(path: directory + "/bench-counted.db", durability: .normal, sagas: n, concurrency: 256)
}
