import Glibc
import SagaLane
import Synchronization

/// `steps` steps to the `bench` target, each with a compensation; the last one's answer is a
/// `No` when `failLast`, and the saga fails on it, so the steps before are compensated.
private final class StepsSaga: Saga {
    let steps: Int, failLast: Bool
    var next = 0
    init(steps: Int, failLast: Bool) {
        self.steps = steps
        self.failLast = failLast
    }
    func start(_ context: SagaContext) -> SagaAction { issue() }
    func onEvent(_ event: Event, _ context: SagaContext) -> SagaAction {
        if event.type == "No" { return .failed("the last step was refused") }
        return next < steps ? issue() : .done
    }
    private func issue() -> SagaAction {
        defer { next += 1 }
        let answer = failLast && next == steps - 1 ? "no" : "ok"
        return .step(SagaStep(target: "bench", command: ["cmd": "do", "answer": .string(answer)],
                              compensation: Compensation(command: ["cmd": "undo"])))
    }
}

/// One step to `sink`, then done on its answer (which, in the benchmark, never comes).
private final class OneStep: Saga {
    func start(_ context: SagaContext) -> SagaAction { .issue(target: "sink", command: ["cmd": "work"]) }
    func onEvent(_ event: Event, _ context: SagaContext) -> SagaAction { .done }
}

/// Sagas per second, `concurrency` in flight, each ending in any state.
private func measureSagas(path: String, type: SagaType, sagas n: Int, concurrency: Int) async throws -> (rate: Double, states: [String: Int]) {
    removeDatabase(path)
    let loop = try EventLoop()
    try loop.startThread()
    let log = try SagaLog.open(path: path, durability: .normal)
    let bus = EventBus()
    let coordinator = Coordinator(loop: loop, log: log, bus: bus)
    try coordinator.register(type)
    try coordinator.register(target: CallbackTarget { step, reporter in
        let answer = step.command["answer"]?.stringValue == "no" ? "No" : "Ok"
        reporter.publish(type: answer, payload: ["step": .int(Int64(step.step))])
    }, named: "bench")
    try await coordinator.start()
    let sub = bus.subscribe(bufferSize: 1 << 22)
    var states: [String: Int] = [:]
    let start = monotonicSeconds()
    var started = 0, finished = 0
    while started < min(concurrency, n) {
        try await startWhenThereIsRoom(coordinator, name: type.name)
        started += 1
    }
    while finished < n {
        guard let delivery = await sub.next() else { break }
        if case .event(let e) = delivery, e.type == Event.sagaCompleted || e.type == Event.sagaFailed {
            finished += 1
            states[e.payload["state"]?.stringValue ?? "?", default: 0] += 1
            if started < n {
                try await startWhenThereIsRoom(coordinator, name: type.name)
                started += 1
            }
        }
    }
    let elapsed = monotonicSeconds() - start
    sub.cancel()
    await coordinator.close()
    loop.shutdown()
    log.close()
    removeDatabase(path)
    return (Double(n) / elapsed, states)
}

/// A log holding `n` sagas of type `one_step` a killed process left running, each with its
/// one step pending, as `OneStep` issued it.
private func writeInterruptedSagas(path: String, count n: Int) async throws {
    removeDatabase(path)
    let log = try SagaLog.open(path: path, durability: .normal)
    defer { log.close() }
    let chunk = 10_000
    var id: UInt64 = 1
    while id <= UInt64(n) {
        var records: [LogRecord] = []
        for _ in 0..<min(chunk, n - Int(id) + 1) {
            let command = JSON.object(["cmd": "work"]).setting("saga_id", to: .int(Int64(id))).setting("step", to: 0)
            records.append(.startSaga(id: id, name: "one_step", inputJSON: "null"))
            records.append(.startStep(sagaID: id, index: 0, name: "issue_sink_work", target: "sink", commandJSON: command.serialized))
            id += 1
        }
        for case .failure(let error) in await log.writeAll(records) { throw error }
    }
}

/// The process's CPU time (every thread, user and system), in seconds: beside the wall time,
/// it tells work from waiting on a machine that other processes share.
private func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Wall and CPU seconds of one measurement.
struct Timing {
    var wall: Double
    var cpu: Double
    /// Group commits the log's writer made meanwhile.
    var commits = 0
}

/// Seconds from the coordinator's start until recovery is done under `policy`: for
/// `.markFailed` until `start` returns, for `.resume` until the last pending step was
/// dispatched again. The log is rewritten first, outside the timing.
private func measureRecovery(path: String, sagas n: Int, policy: RecoveryPolicy) async throws -> Timing {
    try await writeInterruptedSagas(path: path, count: n)
    let loop = try EventLoop()
    try loop.startThread()
    let log = try SagaLog.open(path: path, durability: .normal)
    let coordinator = Coordinator(loop: loop, log: log, bus: EventBus())
    try coordinator.register(SagaType(name: "one_step", timeout: .seconds(3600), recovery: policy) { _ in OneStep() })
    let dispatched = Atomic<Int>(0)
    let all = Completion<Double>()
    try coordinator.register(target: CallbackTarget { _, _ in
        if dispatched.add(1, ordering: .relaxed).newValue == n { all.set(monotonicSeconds()) }
    }, named: "sink")
    let commits = log.commitCounts.batches
    let cpu = processCPUSeconds()
    let start = monotonicSeconds()
    let recovered = try await coordinator.start()
    var end = monotonicSeconds()
    if policy == .resume { end = all.wait() }
    let timing = Timing(wall: end - start, cpu: processCPUSeconds() - cpu, commits: log.commitCounts.batches - commits)
    precondition(recovered == n, "recovered \(recovered) of \(n)")
    await coordinator.close()
    loop.shutdown()
    log.close()
    removeDatabase(path)
    return timing
}

/// Reading every unfinished saga with its steps, a page at a time, as recovery does: the floor
/// under either policy's time.
private func measureRecoveryRead(path: String, sagas n: Int) async throws -> Timing {
    try await writeInterruptedSagas(path: path, count: n)
    let log = try SagaLog.open(path: path, durability: .normal)
    let cpu = processCPUSeconds()
    let start = monotonicSeconds()
    var last: UInt64 = 0, count = 0
    while true {
        let page = try log.unfinishedSagas(after: last, limit: 500)
        count += page.count
        guard page.count == 500, let next = page.last?.id else { break }
        last = next
    }
    let elapsed = Timing(wall: monotonicSeconds() - start, cpu: processCPUSeconds() - cpu)
    precondition(count == n)
    log.close()
    removeDatabase(path)
    return elapsed
}

func runRecoveryBench(directory: String, sagas: Int) async throws {
    try await runCompensationBench(directory: directory, sagas: sagas)
    try await runInterruptedRecoveryBench(directory: directory, policies: [.markFailed, .resume])
}

private func runCompensationBench(directory: String, sagas: Int) async throws {
    print("compensation: sagas of three steps whose last fails and compensates the two before,")
    print("      beside sagas of five steps that complete (the same five dispatches), same run, normal durability")
    let three = SagaType(name: "fail_last", timeout: .seconds(3600)) { _ in StepsSaga(steps: 3, failLast: true) }
    let five = SagaType(name: "five", timeout: .seconds(3600)) { _ in StepsSaga(steps: 5, failLast: false) }
    var compensating = 0.0, completing = 0.0
    var states: [String: Int] = [:]
    for _ in 0..<3 {
        let c = try await measureSagas(path: directory + "/bench-compensate.db", type: three, sagas: sagas, concurrency: 256)
        compensating = max(compensating, c.rate)
        states = c.states
        completing = max(completing, try await measureSagas(path: directory + "/bench-compensate.db", type: five, sagas: sagas, concurrency: 256).rate)
    }
    print(pad("  compensating \(format(compensating)) sagas/s", 44) + pad("completing \(format(completing)) sagas/s", 34)
          + "ratio \(format(compensating / completing * 100))%   (ends: \(states.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")))")
}

/// The recovery figures alone (`sagalane-bench recovery-only [--policy mark_failed|resume]`),
/// for a profiler or for runs alternating with another build.
func runInterruptedRecoveryBench(directory: String, policies: [RecoveryPolicy]) async throws {
    let interrupted = 100_000
    print("recovery: \(interrupted) sagas left running with a pending step by a killed process, beside reading them")
    print("      (every page, with steps) from the log, same run; process CPU time in brackets")
    let read = try await measureRecoveryRead(path: directory + "/bench-recovery.db", sagas: interrupted)
    var line = pad("  read only \(milliseconds(read))", 34)
    for policy in policies {
        let timing = try await measureRecovery(path: directory + "/bench-recovery.db", sagas: interrupted, policy: policy)
        line += policy == .markFailed
            ? pad("markFailed \(milliseconds(timing)) (target <= 1000)", 50)
            : "resume to the last re-dispatch \(milliseconds(timing)) (target <= 3000)"
    }
    print(line)
}

private func milliseconds(_ timing: Timing) -> String {
    "\(format(timing.wall * 1000)) ms [cpu \(format(timing.cpu * 1000))\(timing.commits > 0 ? ", \(timing.commits) commits" : "")]"
}
