import Glibc
import SagaLaneTestSupport
import Synchronization
import Testing
@testable import SagaLane

/// Sends two commands to a lane, one after the other, and completes with their results.
private final class TwoLaneJobsSaga: Saga {
    var results: [JSON] = []
    func start(_ context: SagaContext) -> SagaAction { .issue(target: "lane:render", command: ["frame": 1]) }
    func onEvent(_ event: Event, _ context: SagaContext) -> SagaAction {
        switch event.type {
        case "LaneJobFinished":
            results.append(event.payload["result"] ?? .null)
            return results.count == 1 ? .issue(target: "lane:render", command: ["frame": 2]) : .done
        case "LaneJobFailed":
            return .failed(event.payload["error"]?.stringValue ?? "lane job failed")
        default:
            return .wait
        }
    }
}

private final class BadLaneSaga: Saga {
    func start(_ c: SagaContext) -> SagaAction { .issue(target: "lane:nowhere", command: [:]) }
    func onEvent(_ e: Event, _ c: SagaContext) -> SagaAction { .wait }
}

/// Sends one command to `lane:slow` and waits.
private final class OneLaneJobSaga: Saga {
    func start(_ context: SagaContext) -> SagaAction { .issue(target: "lane:slow", command: ["work": 1]) }
    func onEvent(_ event: Event, _ context: SagaContext) -> SagaAction { event.type == "LaneJobFinished" ? .done : .wait }
}

/// The runtime wires `lane:` targets: a saga's commands become jobs on the runtime's lanes.
@Suite(.timeLimit(.minutes(1)))
struct LaneTargetTests {
    /// When a saga ends (here, cancelled) while its lane job is still queued, the job never
    /// runs: the lane target hears of the end and cancels it, durably.
    @Test func aQueuedJobOfASagaThatEndedNeverRuns() async throws { try await onHostThread {
        let directory = TemporaryDirectory()
        let runtime = try Runtime(options: RuntimeOptions(databasePath: directory.file("ended.db"), durability: .normal))
        defer { runtime.close() }
        let gate = Completion<Void>()
        let ran = ConditionLock<[UInt64]>([])
        _ = try runtime.createLane(name: "slow", maxConcurrent: 1, persisted: true)
        runtime.setCommandHandler(lane: "slow") { command, _ in
            ran.withLock { $0.append(UInt64(command["saga_id"]?.int64Value ?? 0)) }
            gate.wait()
            return "{}"
        }
        try runtime.register(SagaType(name: "one_job", timeout: .seconds(60)) { _ in OneLaneJobSaga() })
        try runtime.start()
        let holder = try runtime.startSaga(name: "one_job", input: .null)
        let clock = ContinuousClock(), giveUp = clock.now + .seconds(20)
        while ran.withLock({ $0.isEmpty }) && clock.now < giveUp { usleep(1_000) }
        let waiter = try runtime.startSaga(name: "one_job", input: .null)
        let job = "saga-\(waiter)-step-0"
        while (try? runtime.log.job(id: job)) == nil && clock.now < giveUp { usleep(1_000) }
        #expect(try runtime.log.job(id: job)?.state == .queued)
        try runtime.cancelSaga(id: waiter, reason: "the host gave up")
        while (try? runtime.log.job(id: job))??.state != .cancelled && clock.now < giveUp { usleep(1_000) }
        #expect(try runtime.log.job(id: job)?.state == .cancelled)
        gate.set(())
        #expect(try runtime.waitForSaga(id: holder, timeoutMilliseconds: 20_000).state == .completed)
        #expect(ran.withLock { $0 } == [holder], "the cancelled saga's job never ran")
    } }

    @Test func aSagaOrchestratesTwoLaneJobs() async throws { try await onHostThread {
        let directory = TemporaryDirectory()
        let runtime = try Runtime(options: RuntimeOptions(databasePath: directory.file("lanes.db"), durability: .normal))
        defer { runtime.close() }
        let events = ConditionLock<[Event]>([])
        let delivery = try runtime.subscribe(bufferSize: 1 << 16) { delivery in
            if case .event(let event) = delivery { events.withLock { $0.append(event) } }
        }
        defer { runtime.unsubscribe(delivery) }
        _ = try runtime.createLane(name: "render", maxConcurrent: 2, persisted: true)
        runtime.setCommandHandler(lane: "render") { command, _ in
            #"{"rendered":\#(command["frame"]?.int64Value ?? -1),"saga":\#(command["saga_id"]?.int64Value ?? -1)}"#
        }
        try runtime.register(SagaType(name: "two_frames") { _ in TwoLaneJobsSaga() })
        try runtime.register(SagaType(name: "bad_lane") { _ in BadLaneSaga() })
        try runtime.start()
        let id = try runtime.startSaga(name: "two_frames", input: .null)
        let bad = try runtime.startSaga(name: "bad_lane", input: .null)
        let ends = { events.withLock { $0.filter { $0.type == Event.sagaCompleted || $0.type == Event.sagaFailed } } }
        let clock = ContinuousClock()
        let giveUp = clock.now + .seconds(30)
        while ends().count < 2 && clock.now < giveUp { usleep(1_000) }
        #expect(ends().filter { $0.type == Event.sagaCompleted }.map(\.sagaID) == [id])
        let finished = events.withLock { $0.filter { $0.type == "LaneJobFinished" } }
        #expect(finished.map { $0.payload["result"]?["rendered"] } == [1, 2])
        #expect(finished.allSatisfy { $0.sagaID == id && $0.payload["result"]?["saga"]?.int64Value == Int64(id) })
        let row = try #require(try runtime.log.saga(id: id))
        #expect(row.state == .completed && row.steps.map(\.state) == [.succeeded, .succeeded])
        #expect(row.steps.map(\.target) == ["lane:render", "lane:render"])
        #expect(try runtime.log.job(id: "saga-\(id)-step-1")?.state == .finished)
        #expect(try runtime.log.saga(id: bad)?.failureReason?.contains("no lane named 'nowhere'") == true)
    } }
}
