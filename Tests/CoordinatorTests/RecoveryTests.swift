import SagaLaneTestSupport
import Synchronization
import Testing
@testable import SagaLaneCoordinator
@testable import SagaLaneLog
@testable import SagaLaneEventLoop
@testable import SagaLaneJSON
@testable import SagaLaneSupport

/// Recovery on a restart in the same process: the first coordinator closes with sagas in
/// flight (they stay unfinished in the log, as after a crash); the second one's start deals
/// with them. The C tests do the same across a SIGKILL.
@Suite(.timeLimit(.minutes(2)))
struct RecoveryTests {
    /// Runs `steps` until `dispatches` commands went out, then closes with the saga in flight.
    private func interrupted(_ steps: [(String, JSONObject)], answers: [String: String], dispatches: Int,
                             recovery: RecoveryPolicy) async throws -> (CoordinatorHarness, UInt64) {
        let h = try CoordinatorHarness()
        let host = scriptedHost(answers)
        try h.coordinator.register(ScriptSaga.type(recovery: recovery))
        try h.coordinator.register(target: host.target, named: "host")
        try await h.coordinator.start()
        let id = try await h.coordinator.startSaga(name: "script", input: ScriptSaga.input(steps))
        await h.waitForDispatches(host, dispatches)
        await h.collector.waitFor("the pending row") { [log = h.log] _ in
            (try? log.sagaSteps(sagaID: id))?.count == dispatches
        }
        await h.shutdown()
        return (h, id)
    }

    @Test func resumeReplaysTheSagaAndDispatchesItsPendingStepAgain() async throws {
        let (first, id) = try await interrupted([("a", [:]), ("b", [:]), ("c", [:])], answers: ["b": "silent"], dispatches: 2,
                                                recovery: .resume)
        let second = try CoordinatorHarness(restarting: first)
        let host = scriptedHost()
        try second.coordinator.register(ScriptSaga.type(recovery: .resume))
        try second.coordinator.register(target: host.target, named: "host")
        #expect(try await second.coordinator.start() == 1)
        let row = try #require(await second.waitForEnd(id))
        #expect(row.state == .completed)
        // Step a was replayed, not dispatched again; b went out again under its own index.
        #expect(host.names == ["b", "c"])
        let again = try #require(host.dispatched.withLock { $0.first })
        #expect(again.sagaID == id && again.step == 1 && again.attempt == 2)
        #expect(again.command["step"] == 1 && again.command["saga_id"] == .int(Int64(id)))
        #expect(row.steps.map(\.attempts) == [1, 2, 1])
        #expect(row.steps[1].failureReason == "attempt 1: interrupted by a restart")
        #expect(try second.history(id) == [Event.sagaStarted, Event.sagaResumed, Event.sagaCompleted])
        await second.shutdown()
    }

    @Test func aReplayThatDivergesFailsTheSagaWithADeterminismError() async throws {
        let (first, id) = try await interrupted([("a", ["compensation": undo("undo_a")]), ("b", [:])], answers: ["b": "silent"],
                                                dispatches: 2, recovery: .resume)
        let second = try CoordinatorHarness(restarting: first)
        let host = scriptedHost()
        // The same type, now issuing another first command than the one the log records.
        try second.coordinator.register(SagaType(name: "script", recovery: .resume) { _ in
            try ScriptSaga(input: ScriptSaga.input([("a_renamed", ["compensation": undo("undo_a")]), ("b", [:])]))
        })
        try second.coordinator.register(target: host.target, named: "host")
        try await second.coordinator.start()
        let row = try #require(await second.waitForEnd(id))
        // It fails, and what the log records as done is undone with the compensation the log
        // stored.
        #expect(row.state == .compensated)
        #expect(row.failureReason?.hasPrefix("determinism error: replaying step 0, the saga issued {\"cmd\":\"a_renamed\"") == true)
        #expect(row.failureReason?.contains("but the log records {\"cmd\":\"a\"") == true)
        // Nothing forward was dispatched on the strength of a history that does not match.
        #expect(host.names == ["undo_a"])
        #expect(row.steps[1].state == .failed)
        await second.shutdown()
    }

    @Test func compensateUndoesExactlyTheSucceededStepsInReverseOrder() async throws {
        let (first, id) = try await interrupted(
            [("a", ["compensation": undo("undo_a")]), ("b", ["compensation": undo("undo_b")]), ("c", ["compensation": undo("undo_c")])],
            answers: ["c": "silent"], dispatches: 3, recovery: .compensate)
        let second = try CoordinatorHarness(restarting: first)
        let host = scriptedHost()
        try second.coordinator.register(ScriptSaga.type(recovery: .compensate))
        try second.coordinator.register(target: host.target, named: "host")
        try await second.coordinator.start()
        let row = try #require(await second.waitForEnd(id))
        #expect(row.state == .compensated)
        #expect(host.names == ["undo_b", "undo_a"])
        #expect(row.steps.map(\.state) == [.compensated, .compensated, .failed, .succeeded, .succeeded])
        #expect(row.steps[2].failureReason == "interrupted by a restart")
        #expect(row.failureReason == "interrupted: the runtime restarted while the saga was running")
        #expect(try second.history(id) == [Event.sagaStarted, Event.sagaCompensating, Event.sagaFailed])
        await second.shutdown()
    }

    @Test func aSagaInterruptedWhileCompensatingGoesOnCompensating() async throws {
        let (first, id) = try await interrupted(
            [("a", ["compensation": undo("undo_a")]), ("b", ["compensation": undo("undo_b")]), ("c", [:])],
            answers: ["c": "no", "undo_b": "silent"], dispatches: 4, recovery: .resume)
        let second = try CoordinatorHarness(restarting: first)
        let host = scriptedHost()
        try second.coordinator.register(ScriptSaga.type(recovery: .resume))
        try second.coordinator.register(target: host.target, named: "host")
        try await second.coordinator.start()
        let row = try #require(await second.waitForEnd(id))
        #expect(row.state == .compensated)
        #expect(row.failureReason == "the host said no to step 2")
        #expect(host.names == ["undo_b", "undo_a"])
        let redone = try #require(host.dispatched.withLock { $0.first })
        #expect(redone.step == 3 && redone.attempt == 2 && redone.compensates == 1)
        #expect(row.steps.map(\.compensates) == [nil, nil, nil, 1, 0])
        #expect(try second.history(id) == [Event.sagaStarted, Event.sagaCompensating, Event.sagaResumed, Event.sagaFailed])
        await second.shutdown()
    }

    @Test func markFailedWritesAPageOfSagasInAFewCommits() async throws {
        let first = try CoordinatorHarness()
        let host = scriptedHost(["hold": "silent"])
        try first.coordinator.register(ScriptSaga.type())
        try first.coordinator.register(target: host.target, named: "host")
        try await first.coordinator.start()
        let n = 1_200
        for _ in 0..<n { _ = try await first.coordinator.startSaga(name: "script", input: ScriptSaga.input([("hold", [:])])) }
        await first.waitForDispatches(host, n)
        await first.shutdown()

        let second = try CoordinatorHarness(restarting: first)
        try second.coordinator.register(ScriptSaga.type())
        let before = second.log.commitCounts.batches
        #expect(try await second.coordinator.start() == n)
        // Three pages of at most 500; far fewer commits than sagas.
        #expect(second.log.commitCounts.batches - before < 30)
        #expect(try second.log.stats().sagas[.failedCompensation] == n)
        let ends = try second.log.lifecycleEvents(after: 0, limit: 10 * n).filter { $0.type == Event.sagaFailed }
        #expect(ends.count == n && Set(ends.map(\.sagaID)).count == n)
        #expect(ends.first?.payloadJSON.contains("\"recovered\":\"mark_failed\"") == true)
        await second.shutdown()
    }

    /// Neighbours in a page that differ in type, state, reason so far or pending steps each get
    /// their own reason, in their rows, on the bus and in the lifecycle stream, byte for byte
    /// the text `recover --dry-run` shows; alike ones share theirs.
    @Test func markFailedGivesEachSagaTheReasonOfItsOwnRows() async throws {
        let first = try CoordinatorHarness()
        var records: [LogRecord] = []
        for id in UInt64(1)...60 {
            records.append(.startSaga(id: id, name: id % 13 == 4 ? "other" : "gone", inputJSON: "null"))
            if id % 5 != 2 { records.append(.startStep(sagaID: id, index: 0, name: "a", target: "host", commandJSON: "{}")) }
            if id % 7 == 3 { records.append(.startStep(sagaID: id, index: 1, name: "b", target: "host", commandJSON: "{}")) }
            if id % 11 == 6 { records.append(.setSagaState(id: id, state: .compensating, reason: "step 0 failed")) }
            if id % 17 == 9 { records.append(.setSagaState(id: id, state: .running, reason: "timed out")) }
        }
        for case .failure(let error) in await first.log.writeAll(records) { throw error }
        let before = try first.log.unfinishedSagas(limit: 100)
        await first.shutdown()

        let second = try CoordinatorHarness(restarting: first)
        #expect(try await second.coordinator.start() == 60)
        await second.collector.waitFor("every SagaFailed") { $0.filter { $0.type == Event.sagaFailed }.count == 60 }
        let published = second.collector.events.filter { $0.type == Event.sagaFailed }
        let stream = try second.log.lifecycleEvents(after: 0, limit: 1000).filter { $0.type == Event.sagaFailed }
        #expect(published.map(\.sagaID) == before.map(\.id) && stream.map(\.sagaID) == before.map(\.id))
        for ((record, event), entry) in zip(zip(before, published), stream) {
            let added = RecoveryPlan(record, policy: .markFailed).reason
            let reason = (record.failureReason ?? "").isEmpty ? added : "\(record.failureReason!); \(added)"
            let row = try #require(try second.log.saga(id: record.id))
            #expect(row.state == .failedCompensation && row.failureReason == reason, "saga \(record.id)")
            let payload: JSON = ["name": .string(record.name), "state": "failed_compensation", "reason": .string(reason),
                                 "recovered": "mark_failed"]
            #expect(event.payload == payload, "saga \(record.id)")
            #expect(entry.payloadJSON == payload.serialized, "saga \(record.id)")
        }
        #expect(Set(stream.map(\.payloadJSON)).count >= 6)
        await second.shutdown()
    }

    /// A saga whose `start` waits, moved on by an event it declared interest in: that event is
    /// the first step's cause in the log, and resume replays it.
    @Test func resumeReplaysTheEventThatLedToTheFirstStep() async throws {
        final class Waiter: Saga {
            func start(_ context: SagaContext) -> SagaAction { .wait }
            func onEvent(_ event: Event, _ context: SagaContext) -> SagaAction {
                if event.type == "Go", let n = event.payload["n"] { return .issue(target: "host", command: ["cmd": "go", "n": n]) }
                return event.type == "Ok" ? .done : .wait
            }
        }
        let type = SagaType(name: "waiter", interests: ["Go"], recovery: .resume) { _ in Waiter() }
        let first = try CoordinatorHarness()
        let silent = scriptedHost(["go": "silent"])
        try first.coordinator.register(type)
        try first.coordinator.register(target: silent.target, named: "host")
        try await first.coordinator.start()
        let id = try await first.coordinator.startSaga(name: "waiter")
        first.bus.publish(type: "Go", payload: ["n": 7])
        await first.waitForDispatches(silent, 1)
        await first.collector.waitFor("the row") { [log = first.log] _ in (try? log.sagaSteps(sagaID: id))?.count == 1 }
        #expect(try first.log.sagaSteps(sagaID: id).first?.causeJSON?.contains("\"n\":7") == true)
        await first.shutdown()

        let second = try CoordinatorHarness(restarting: first)
        let host = scriptedHost()
        try second.coordinator.register(type)
        try second.coordinator.register(target: host.target, named: "host")
        try await second.coordinator.start()
        #expect(await second.waitForEnd(id)?.state == .completed)
        #expect(host.dispatched.withLock { $0.map { $0.command["n"] } } == [7])
        await second.shutdown()
    }

    @Test func startUpRecoveryReportsItsProgressUpToEverySaga() async throws {
        let first = try CoordinatorHarness()
        // More than two pages of sagas a killed process left running, each with a pending step.
        let count = Coordinator.recoveryPageSize * 2 + 234
        var records: [LogRecord] = []
        for id in UInt64(1)...UInt64(count) {
            records.append(.startSaga(id: id, name: "gone", inputJSON: "null"))
            records.append(.startStep(sagaID: id, index: 0, name: "work", target: "host", commandJSON: "{}"))
        }
        for case .failure(let error) in await first.log.writeAll(records) { throw error }
        await first.shutdown()

        let second = try CoordinatorHarness(restarting: first)
        let calls = Mutex<[(LongOperation, Int, Int)]>([])
        let onLoop = Mutex(true)
        let loop = second.loop
        #expect(try await second.coordinator.start { operation, done, total in
            calls.withLock { $0.append((operation, done, total)) }
            if !loop.inEventLoop { onLoop.withLock { $0 = false } }
        } == count)
        let seen = calls.withLock { $0 }
        #expect(seen.allSatisfy { $0.0 == .recovery && $0.2 == count }, "\(seen.prefix(5))")
        #expect(seen.first?.1 == 0 && seen.last?.1 == count, "from 0 to every saga: \(seen.map(\.1))")
        #expect(zip(seen, seen.dropFirst()).allSatisfy { $0.1 < $1.1 }, "counts only go up: \(seen.map(\.1))")
        #expect(seen.count == 1 + 3, "one report before, then one a page: \(seen.map(\.1))")
        #expect(onLoop.withLock { $0 }, "told on the coordinator's loop")
        // The reports follow the writes: by the last one, every saga is marked.
        #expect(try second.log.countSagas(matching: SagaFilter(states: [.failedCompensation])) == count)
        await second.shutdown()

        // Nothing to recover: no report at all.
        let third = try CoordinatorHarness(restarting: second)
        calls.withLock { $0.removeAll() }
        #expect(try await third.coordinator.start { operation, done, total in calls.withLock { $0.append((operation, done, total)) } } == 0)
        #expect(calls.withLock { $0.isEmpty })
        await third.shutdown()
    }
}
