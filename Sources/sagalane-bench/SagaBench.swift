import Glibc
import SagaLane
import Synchronization

/// A two-step saga: each command is echoed at once by the callback target (`SagaRig.echo`).
final class TwoStepSaga: Saga {
    var answered = 0
    func start(_ context: SagaContext) -> SagaAction { .issue(target: "echo", command: ["cmd": "one"]) }
    func onEvent(_ event: Event, _ context: SagaContext) -> SagaAction {
        answered += 1
        return answered == 1 ? .issue(target: "echo", command: ["cmd": "two"]) : .done
    }
}

/// A saga that waits forever (well, for an hour): used to measure memory per saga in flight.
private final class IdleSaga: Saga {
    func start(_ context: SagaContext) -> SagaAction { .issue(target: "sink", command: ["cmd": "hold"]) }
    func onEvent(_ event: Event, _ context: SagaContext) -> SagaAction { .wait }
}

private final class Counter: Sendable {
    let done = Atomic<Int>(0)
}

/// glibc's `malloc_trim` (declared in <malloc.h>, which the Glibc module does not include).
@_silgen_name("malloc_trim")
private func mallocTrim(_ pad: Int) -> Int32

/// Resident set size in bytes, from /proc/self/statm, after handing memory the allocator
/// holds but no longer uses back to the system (so freed garbage does not count as held).
func residentBytes() -> Int {
    _ = mallocTrim(0)
    guard let f = fopen("/proc/self/statm", "r") else { return 0 }
    defer { fclose(f) }
    var size = 0, resident = 0
    _ = withUnsafeMutablePointer(to: &size) { s in
        withUnsafeMutablePointer(to: &resident) { r in
            withVaList([s, r]) { vfscanf(f, "%ld %ld", $0) }
        }
    }
    return resident * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// A coordinator on its own loop and a new log at `path`, for one measurement.
struct SagaRig {
    let loop: EventLoop
    let log: SagaLog
    let bus = EventBus()
    let coordinator: Coordinator

    init(path: String, durability: Durability, checkpointing: Checkpointing = .background,
         diagnostics: Diagnostics = .standardError) throws {
        removeDatabase(path)
        loop = try EventLoop()
        try loop.startThread()
        log = try SagaLog(storage: SQLiteStorage.open(path: path, durability: durability, checkpointing: checkpointing))
        coordinator = Coordinator(loop: loop, log: log, bus: bus, diagnostics: diagnostics)
    }

    /// Registers `saga` as saga type `name` and the target "echo", which answers each command
    /// at once with an event carrying it; then starts the coordinator.
    func start(_ name: String, timeout: Duration = .seconds(3600), saga: @escaping @Sendable () -> any Saga) async throws {
        try coordinator.register(SagaType(name: name, timeout: timeout) { _ in saga() })
        try coordinator.register(target: CallbackTarget { step, reporter in
            reporter.publish(type: "Echo", payload: step.command)
        }, named: "echo")
        try await coordinator.start()
    }

    func shutdown(path: String) async {
        await coordinator.close()
        loop.shutdown()
        log.close()
        removeDatabase(path)
    }
}

/// End-to-end two-step sagas per second with an echoing callback target.
func measureSagaThroughput(path: String, durability: Durability, sagas n: Int, concurrency: Int) async throws -> Double {
    try await measureSagas(path: path, durability: durability, sagas: n, concurrency: concurrency).rate
}

/// Two-step sagas per second, and the log's commits per saga (each one an fsync a saga that
/// runs alone waits for in turn).
func measureSagas(path: String, durability: Durability, sagas n: Int, concurrency: Int,
                  checkpointing: Checkpointing = .background)
    async throws -> (rate: Double, commitsPerSaga: Double, profile: CommitProfile, checkpoints: CheckpointStats?, threads: String) {
    let rig = try SagaRig(path: path, durability: durability, checkpointing: checkpointing)
    try await rig.start("two_step") { TwoStepSaga() }
    let sub = rig.bus.subscribe(bufferSize: 1 << 22)
    let cpuBefore = cpuNanosByThread()
    let start = monotonicSeconds()
    var started = 0
    var finished = 0
    // Keep `concurrency` sagas in flight, as a busy host would.
    while started < min(concurrency, n) {
        try await startWhenThereIsRoom(rig.coordinator, name: "two_step")
        started += 1
    }
    while finished < n {
        guard let delivery = await sub.next() else { break }
        if case .event(let e) = delivery, e.type == Event.sagaCompleted || e.type == Event.sagaFailed {
            finished += 1
            if started < n {
                try await startWhenThereIsRoom(rig.coordinator, name: "two_step")
                started += 1
            }
        }
    }
    let elapsed = monotonicSeconds() - start
    let threads = busiestThreads(from: cpuBefore, to: cpuNanosByThread(), seconds: elapsed)
    let commits = rig.log.commitCounts.batches
    let profile = rig.log.commitProfile
    let checkpoints = (rig.log.storage as? SQLiteStorage)?.checkpointStats
    sub.cancel()
    await rig.shutdown(path: path)
    return (Double(n) / elapsed, Double(commits) / Double(n), profile, checkpoints, threads)
}

/// Starts a saga, waiting for room in the launch queue while it is full.
func startWhenThereIsRoom(_ coordinator: Coordinator, name: String, onEnded: (@Sendable (SagaEnd) -> Void)? = nil) async throws {
    while true {
        let refused: SagaLaneError?
        do throws(SagaLaneError) {
            try coordinator.startSaga(name: name, input: .null, onStarted: { _ in }, onEnded: onEnded)
            refused = nil
        } catch {
            refused = error
        }
        guard let refused else { return }
        guard refused.code == .again else { throw refused }
        await waitForRoom(coordinator)
    }
}

private func waitForRoom(_ coordinator: Coordinator) async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        coordinator.whenLaunchQueueHasRoom { continuation.resume() }
    }
}

/// Resident memory per saga with `n` sagas in flight.
func measureMemoryPerSaga(path: String, sagas n: Int) async throws -> (bytesPerSaga: Double, baseline: Int) {
    let rig = try SagaRig(path: path, durability: .normal)
    try rig.coordinator.register(SagaType(name: "idle", timeout: .seconds(3600)) { _ in IdleSaga() })
    let dispatched = Counter()
    try rig.coordinator.register(target: CallbackTarget { _, _ in
        dispatched.done.add(1, ordering: .relaxed)
    }, named: "sink")
    try await rig.coordinator.start()
    let before = residentBytes()
    for _ in 0..<n { try await startWhenThereIsRoom(rig.coordinator, name: "idle") }
    while dispatched.done.load(ordering: .relaxed) < n { usleep(10_000) }
    let after = residentBytes()
    await rig.shutdown(path: path)
    return (Double(after - before) / Double(n), before)
}

func runSagaBench(directory: String, sagas: Int) async throws {
    print("saga: \(sagas) two-step sagas end to end (echoing callback target, 256 in flight),")
    print("      beside the log's raw group-commit ceiling for the same rows, same run")
    // As the lane figures: the best of alternating runs of each side, so a burst of load on
    // this shared machine spoils one run, not the comparison.
    let rounds = 5
    print("      (best of \(rounds) alternating runs each)")
    for durability in Durability.allCases {
        var ceiling = 0.0, endToEnd = 0.0, threads = ""
        for _ in 0..<rounds {
            ceiling = max(ceiling, try measureLogCeiling(directory: directory, durability: durability, sagas: sagas))
            let run = try await measureSagas(path: directory + "/bench-saga.db", durability: durability, sagas: sagas, concurrency: 256)
            if run.rate > endToEnd { (endToEnd, threads) = (run.rate, run.threads) }
        }
        print(pad("  \(durability.rawValue)", 10) + pad("end to end \(format(endToEnd)) sagas/s", 34)
              + pad("log ceiling \(format(ceiling)) sagas/s", 34) + "ratio \(format(endToEnd / ceiling * 100))%")
        // Which thread sets the pace: one near 100% of a CPU is the bottleneck.
        print("            CPU by thread, best run: \(threads)")
    }
    try await runSequentialSagas(directory: directory)
    try await runMemoryBench(directory: directory, sagas: 100_000)
}

/// Resident memory per saga with `sagas` in flight, each waiting on a target with its deadline armed.
func runMemoryBench(directory: String, sagas: Int) async throws {
    let memory = try await measureMemoryPerSaga(path: directory + "/bench-memory.db", sagas: sagas)
    print("  memory: \(sagas) sagas in flight, each awaiting a target with its deadline armed: \(Int(memory.bytesPerSaga)) bytes RSS per saga")
    print("          (process RSS before they started: \(memory.baseline / 1_048_576) MiB)")
}

/// One saga at a time, as a host that waits for each: every commit is an fsync it waits for in
/// turn, so commits per saga set its pace. Measured with each way of checkpointing, alternately.
func runSequentialSagas(directory: String, sagas: Int = 200) async throws {
    for checkpointing in [Checkpointing.background, .inline] {
        let alone = try await measureSagas(path: directory + "/bench-sequential.db", durability: .full, sagas: sagas,
                                           concurrency: 1, checkpointing: checkpointing)
        print("  one two-step saga at a time, full durability, \(checkpointing.rawValue) checkpoints: \(format(alone.rate)) sagas/s, "
              + "\(format(alone.commitsPerSaga)) commits per saga")
        // Where a saga's time goes: the writer's batches (COMMIT, with its sync, apart), and the
        // rest, which is hand-offs between threads and the work on them.
        let perSaga = 1_000_000 / alone.rate, measured = Double(alone.profile.batch.count) / alone.commitsPerSaga
        let batches = Double(alone.profile.batch.total) / measured, commit = Double(alone.profile.commit.total) / measured
        print("    per saga \(Int(perSaga)) µs: COMMIT \(Int(commit)) µs, the rest of the writer's batches \(Int(batches - commit)) µs, "
              + "outside the writer \(Int(perSaga - batches)) µs")
        if let k = alone.checkpoints {
            print("    \(k.passes) passes, \(k.restarts) restarts at the bound, WAL at most \(k.largestLogPages) pages; "
                  + "the idle writer caught up \(k.catchUps) times (mean \(k.catchUpMicros.mean) µs)")
        }
    }
}
