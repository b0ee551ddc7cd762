import Glibc
import SagaLaneTestSupport
import Synchronization
import Testing
@testable import SagaLane

/// Finishes on the first echo of its one command.
private final class OneStepSaga: Saga {
    init(_ input: JSON = .null) {}
    func start(_ context: SagaContext) -> SagaAction { .issue(target: "echo", command: ["cmd": "ping"]) }
    func onEvent(_ event: Event, _ context: SagaContext) -> SagaAction { event.type == "Pong" ? .done : .wait }
}

private func echoTarget() -> CallbackTarget {
    CallbackTarget { step, reporter in reporter.publish(type: "Pong", payload: step.command) }
}

/// Runs `body` on an OS thread of its own and waits for it. The runtime's blocking calls are
/// for host threads: on Swift's cooperative pool they would hold threads the runtime's own
/// tasks need.
func onHostThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, any Error>, Never>) in
        do {
            try OSThread(name: "test-host") { continuation.resume(returning: Result { try body() }) }.detach()
        } catch {
            continuation.resume(returning: .failure(error))
        }
    }
    return try result.get()
}

@Suite(.timeLimit(.minutes(1)))
struct RuntimeTests {
    /// The host runs the loop from its own poll loop: start drives recovery on the host
    /// thread, and sagas complete while the host polls the backend fd and runs what is ready.
    @Test func aHostDrivenLoopRunsSagasFromItsOwnPollLoop() async throws {
        let completed = try await onHostThread { () throws -> Int in
            let runtime = try Runtime(options: RuntimeOptions(loopMode: .host))
            defer { runtime.close() }
            try runtime.register(SagaType(name: "one") { _ in OneStepSaga() })
            try runtime.register(target: echoTarget(), named: "echo")
            let ends = Atomic<Int>(0)
            let delivery = try runtime.subscribe(bufferSize: 1024) { delivery in
                if case .event(let event) = delivery, event.type == Event.sagaCompleted { ends.add(1, ordering: .relaxed) }
            }
            defer { runtime.unsubscribe(delivery) }
            try runtime.start()
            for _ in 0..<20 { try runtime.startSaga(name: "one", input: .null) }
            var fd = pollfd(fd: runtime.backendFD, events: Int16(POLLIN), revents: 0)
            // A guard, not a timing assertion: give up after a minute rather than hang.
            let clock = ContinuousClock()
            let giveUp = clock.now + .seconds(60)
            while ends.load(ordering: .relaxed) < 20 && clock.now < giveUp {
                let timeout = runtime.backendTimeoutMilliseconds
                _ = poll(&fd, 1, timeout < 0 ? 10 : min(10, timeout))
                try runtime.run(.noWait)
            }
            return ends.load(ordering: .relaxed)
        }
        #expect(completed == 20)
    }

    /// A host thread that waits for the loop while nobody runs it runs the loop itself.
    @Test func aBlockingCallOnTheHostThreadRunsTheLoopMeanwhile() async throws {
        let cancelled = try await onHostThread { () throws -> String? in
            let runtime = try Runtime(options: RuntimeOptions(loopMode: .host))
            defer { runtime.close() }
            final class Waits: Saga {
                func start(_ context: SagaContext) -> SagaAction { .wait }
                func onEvent(_ event: Event, _ context: SagaContext) -> SagaAction { .wait }
            }
            try runtime.register(SagaType(name: "waits") { _ in Waits() })
            try runtime.start()
            let id = try runtime.startSaga(name: "waits", input: .null)
            // The saga must have started before it can be cancelled: run the loop until then.
            while try runtime.saga(id: id) == nil { try runtime.run(.noWait); usleep(1000) }
            try runtime.cancelSaga(id: id, reason: "host said so")
            while try runtime.saga(id: id)?["state"] != "failed" { try runtime.run(.noWait); usleep(1000) }
            return try runtime.saga(id: id)?["failure_reason"]?.stringValue
        }
        #expect(cancelled == "cancelled: host said so")
    }

    /// close() called from a callback on the loop thread cannot wait for that thread: it
    /// returns at once and completes on a thread of its own.
    @Test func closeFromACallbackCompletesOnAnotherThread() async throws { try await onHostThread {
        let runtime = try Runtime(options: RuntimeOptions())
        let closed = Completion<Bool>()
        try runtime.register(SagaType(name: "one") { _ in OneStepSaga() })
        try runtime.register(target: CallbackTarget { _, _ in
            runtime.close { closed.set(true) }
        }, named: "echo")
        try runtime.start()
        try runtime.startSaga(name: "one", input: .null)
        #expect(closed.wait(milliseconds: 30_000) == true)
        #expect(!runtime.isRunning)
        #expect(throws: SagaLaneError.self) { try runtime.startSaga(name: "one", input: .null) }
    } }

    /// What sagalane would write to standard error goes to the host's handler instead, with
    /// its level: here, a trigger whose saga refused its input.
    @Test func messagesGoToTheHostsDiagnosticsHandler() async throws { try await onHostThread {
        let messages = ConditionLock<[(DiagnosticLevel, String)]>([])
        let diagnostics = Diagnostics { level, message in messages.withLock { $0.append((level, message)) } }
        let runtime = try Runtime(options: RuntimeOptions(diagnostics: diagnostics))
        defer { runtime.close() }
        try runtime.register(SagaType(name: "picky") { input in
            guard input["ok"] == true else { throw SagaLaneError(.invalidArgument, "the input is not ok") }
            return OneStepSaga()
        })
        try runtime.addTrigger(Trigger(on: "Go", start: "picky"))
        try runtime.start()
        try runtime.publish(Event(type: "Go", payload: ["ok": false]))
        let clock = ContinuousClock()
        let giveUp = clock.now + .seconds(30)
        while messages.withLock({ $0.isEmpty }) && clock.now < giveUp { usleep(1_000) }
        let (level, message) = try #require(messages.withLock { $0.first })
        #expect(level == .warning)
        #expect(message.contains("did not start a picky saga") && message.contains("the input is not ok"), "\(message)")
        #expect(!message.hasPrefix("sagalane:"), "the prefix is standard error's, not the message's")
    } }

    /// A read-only runtime reads a log another runtime owns, and refuses to start or write.
    @Test func aReadOnlyRuntimeServesDiagnosticsOnly() async throws { try await onHostThread {
        let directory = TemporaryDirectory()
        let path = directory.file("owned.db")
        let owner = try Runtime(options: RuntimeOptions(databasePath: path, durability: .normal))
        defer { owner.close() }
        try owner.register(SagaType(name: "one") { OneStepSaga($0) })
        try owner.register(target: echoTarget(), named: "echo")
        try owner.start()
        let done = Completion<Bool>()
        let delivery = try owner.subscribe(bufferSize: 64) { delivery in
            if case .event(let event) = delivery, event.type == Event.sagaCompleted { done.set(true) }
        }
        let id = try owner.startSaga(name: "one", input: ["n": 1])
        #expect(done.wait(milliseconds: 30_000) == true)
        owner.unsubscribe(delivery)

        let reader = try Runtime(options: RuntimeOptions(databasePath: path, readOnly: true))
        defer { reader.close() }
        #expect(try reader.saga(id: id)?["state"] == "completed")
        #expect(try reader.recentSagas(limit: 5).arrayValue?.first?["input"] == ["n": 1])
        #expect { try reader.start() } throws: { ($0 as? SagaLaneError)?.code == .readOnly }
        #expect { try reader.createLane(name: "l", maxConcurrent: 1, persisted: true) } throws: {
            ($0 as? SagaLaneError)?.code == .readOnly
        }
        #expect { try reader.vacuum(olderThan: .zero) } throws: { ($0 as? SagaLaneError)?.code == .readOnly }
        #expect { try Runtime(options: RuntimeOptions(readOnly: true)) } throws: { ($0 as? SagaLaneError)?.code == .invalidArgument }
    } }

    /// A persisted lane created on a log with rows left by an earlier process reconciles
    /// them before it takes work, and a second lane of that name is refused.
    @Test func creatingAPersistedLaneRecoversItsRows() async throws {
        let directory = TemporaryDirectory()
        let path = directory.file("lanes.db")
        do {
            let log = try SagaLog.open(path: path, durability: .normal)
            try await log.enqueueJob(id: "was-running", lane: "work", caller: "t", priority: 0, metadata: [])
            try await log.updateJobState(id: "was-running", state: .running)
            try await log.enqueueJob(id: "was-queued", lane: "work", caller: "t", priority: 0, metadata: Array("again".utf8))
            log.close()
        }
        try await onHostThread {
        let runtime = try Runtime(options: RuntimeOptions(databasePath: path, durability: .normal))
        defer { runtime.close() }
        let outcome = Completion<LaneJobCompletion>()
        _ = try runtime.createLane(name: "work", maxConcurrent: 1, persisted: true, reconstruct: { row in
            RecoveredJob(job: LaneJob(metadata: row.metadata) { _ in String(decoding: row.metadata, as: UTF8.self) }) { outcome.set($0) }
        })
        #expect(outcome.wait(milliseconds: 30_000)?.outcome == .finished(result: "again"))
        #expect(try runtime.log.job(id: "was-running")?.error == "lost on restart")
        #expect(try runtime.log.job(id: "was-running")?.state == .failed)
        #expect { try runtime.createLane(name: "work", maxConcurrent: 1, persisted: false) } throws: {
            ($0 as? SagaLaneError)?.code == .exists
        }
        }
    }
}
