import Glibc
import SagaLane
import Synchronization

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

/// One open-loop run: its latencies, sorted, and what the log's writer and checkpointer did.
private struct OpenLoopRun {
    let checkpointing: Checkpointing
    let samples: [Int64]
    let commits: CommitProfile
    let checkpoints: CheckpointStats?
    /// Milliseconds this process's threads spent ready to run but waiting for a CPU, per
    /// second of the run, and the machine's load average after it: how shared the machine was.
    let cpuWaitPerSecond: Double
    let loadAverage: String

    /// Milliseconds.
    func percentile(_ p: Double) -> Double {
        Double(samples[min(samples.count - 1, Int(Double(samples.count - 1) * p))]) / 1e6
    }
}

/// Open-loop load: sagas started at a fixed rate, whatever the runtime's pace, for `seconds`;
/// prints the latency from the start call to the saga's end, percentiles beside the median.
/// The rate is `load` times the closed-loop maximum measured first in the same run. Each
/// `Checkpointing` runs `pairs` times, alternately (which goes first alternates too), so a
/// burst of load on this shared machine spoils a run of each rather than one side.
func runLatencyBench(directory: String, load: Double, seconds: Double, pairs: Int = 3, durability: Durability = .normal) async throws {
    let path = directory + "/bench-latency.db"
    let maximum = try await measureSagaThroughput(path: path, durability: durability, sagas: 20_000, concurrency: 256)
    let rate = maximum * load
    print("latency: two-step sagas started open-loop at \(Int(rate)) sagas/s for \(Int(seconds)) s (\(Int(load * 100))% of the closed-loop maximum, \(Int(maximum)) sagas/s, measured first), \(durability.rawValue) durability;")
    print("         checkpoints inline (SQLite's, in the writer's commits) and in the background, alternately, \(pairs) runs each")
    var runs: [OpenLoopRun] = []
    for round in 0..<pairs {
        for checkpointing in round % 2 == 0 ? [Checkpointing.inline, .background] : [.background, .inline] {
            let run = try await runOpenLoop(path: path, rate: rate, seconds: seconds, durability: durability, checkpointing: checkpointing)
            runs.append(run)
            printRun(run)
        }
    }
    for checkpointing in Checkpointing.allCases {
        let mine = runs.filter { $0.checkpointing == checkpointing }
        func spread(_ p: Double) -> String {
            let values = mine.map { $0.percentile(p) }.sorted()
            return "\(format3(values[values.count / 2])) ms (\(format3(values.first!))-\(format3(values.last!)))"
        }
        print(pad("  \(checkpointing.rawValue):", 14) + "median of runs (range): p50 \(spread(0.5))   p99 \(spread(0.99))   p99.9 \(spread(0.999))")
    }
}

private func runOpenLoop(path: String, rate: Double, seconds: Double, durability: Durability,
                         checkpointing: Checkpointing) async throws -> OpenLoopRun {
    let rig = try SagaRig(path: path, durability: durability, checkpointing: checkpointing, diagnostics: .discard)
    try await rig.start("two_step") { TwoStepSaga() }
    let latencies = Latencies()
    let total = Int(rate * seconds)
    let waitedBefore = runQueueNanos()
    let begin = monotonicNanos()
    var started = 0
    while started < total {
        // Catch up with the schedule every millisecond: an open loop never waits for the
        // runtime, it only keeps the rate.
        let due = Int(Double(monotonicNanos() - begin) / 1e9 * rate)
        while started < min(due, total) {
            let start = monotonicNanos()
            try await startWhenThereIsRoom(rig.coordinator, name: "two_step") { _ in latencies.record(since: start) }
            started += 1
        }
        usleep(1_000)
    }
    while latencies.ended.load(ordering: .relaxed) < total { usleep(1_000) }
    let cpuWait = Double(runQueueNanos() - waitedBefore) / 1e6 / (Double(monotonicNanos() - begin) / 1e9)
    var samples = latencies.samples.withLock { $0 }
    samples.sort()
    let commits = rig.log.commitProfile
    let checkpoints = (rig.log.storage as? SQLiteStorage)?.checkpointStats
    await rig.shutdown(path: path)
    return OpenLoopRun(checkpointing: checkpointing, samples: samples, commits: commits, checkpoints: checkpoints,
                       cpuWaitPerSecond: cpuWait, loadAverage: firstLine("/proc/loadavg").split(separator: " ").prefix(1).joined())
}

private func printRun(_ run: OpenLoopRun) {
    print(pad("  \(run.checkpointing.rawValue)", 14) + "p50 \(format3(run.percentile(0.5))) ms   p90 \(format3(run.percentile(0.9))) ms   "
          + "p99 \(format3(run.percentile(0.99))) ms   p99.9 \(format3(run.percentile(0.999))) ms   max \(format3(run.percentile(1))) ms")
    let c = run.commits
    print("      \(c.batch.count) commits, records each: mean \(c.records.total / max(1, c.batch.count)), most \(c.records.largest); "
          + "longest begin \(millis(c.begin.largest)), apply \(millis(c.apply.largest)), COMMIT \(millis(c.commit.largest))")
    print("      commits taking  " + bands(c.batch))
    print("      threads waiting for a CPU \(Int(run.cpuWaitPerSecond)) ms per second; load average \(run.loadAverage)")
    if let k = run.checkpoints {
        print("      background checkpoints: \(k.passes) passes (longest \(millis(k.passMicros.largest))), \(k.restarts) restarts "
              + "(writer held up to \(millis(k.restartMicros.largest))), \(k.failures) busy or failed, WAL at most \(k.largestLogPages) pages")
        print("      restarts: waiting for the writer's batch up to \(millis(k.restartWaitMicros.largest)), the RESTART checkpoint up to "
              + "\(millis(k.restartCheckpointMicros.largest)) (mean \(millis(k.restartCheckpointMicros.mean))), "
              + "frames left for it up to \(k.restartFrames.largest) (mean \(k.restartFrames.mean))")
        print("      the idle writer caught up after a pass \(k.catchUps) times (up to \(millis(k.catchUpMicros.largest)), "
              + "mean \(millis(k.catchUpMicros.mean)))")
    }
}

/// A histogram of microseconds in a few bands, each below a power of two.
private func bands(_ h: PowerHistogram) -> String {
    let bounds = [1 << 10, 1 << 12, 1 << 14, 1 << 16]
    var parts: [String] = []
    var below = 0
    for bound in bounds {
        let under = h.count - h.count(atLeast: bound)
        parts.append("<\(millis(bound)) \(under - below)")
        below = under
    }
    parts.append(">=\(millis(bounds.last!)) \(h.count - below)")
    return parts.joined(separator: "   ")
}

private func millis(_ micros: Int) -> String { format3(Double(micros) / 1000) + " ms" }

/// Runs exactly `n` sagas, 256 in flight, and nothing else: a fixed workload for counting
/// instructions (scripts/callgrind-saga runs it at two sizes and divides the difference).
func runCountedSagas(directory: String, sagas n: Int) async throws {
    _ = try await measureSagaThroughput(path: directory + "/bench-counted.db", durability: .normal, sagas: n, concurrency: 256)
}
