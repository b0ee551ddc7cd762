import SagaLaneTestSupport
import Synchronization
import Testing
@testable import SagaLaneCoordinator
@testable import SagaLaneLog
@testable import SagaLaneEventLoop
@testable import SagaLaneJSON
@testable import SagaLaneSupport

@Suite(.timeLimit(.minutes(2)))
struct CompensationTests {
    @Test func aFailedSagaUndoesItsSucceededStepsInReverseOrder() async throws {
        let h = try CoordinatorHarness()
        let host = scriptedHost(["c": "no"])
        try h.coordinator.register(ScriptSaga.type())
        try h.coordinator.register(target: host.target, named: "host")
        try await h.coordinator.start()
        let id = try await h.coordinator.startSaga(name: "script", input: ScriptSaga.input([
            ("a", ["compensation": undo("undo_a")]), ("b", ["compensation": undo("undo_b")]), ("c", [:]),
        ]))
        let row = try #require(await h.waitForEnd(id))
        #expect(host.names == ["a", "b", "c", "undo_b", "undo_a"])
        #expect(row.state == .compensated)
        #expect(row.failureReason == "the host said no to step 2")
        // Each compensation a step row of its own, naming the step it undoes, which now reads
        // compensated; the step that failed the saga had nothing to undo.
        #expect(row.steps.map(\.state) == [.compensated, .compensated, .succeeded, .succeeded, .succeeded])
        #expect(row.steps.map(\.compensates) == [nil, nil, nil, 1, 0])
        let undoB = try #require(JSON(parsing: row.steps[3].commandJSON).objectValue)
        #expect(undoB["cmd"] == "undo_b" && undoB["step"] == 3 && undoB["compensates"] == 1 && undoB["saga_id"] == .int(Int64(id)))
        // One terminal event, carrying the state; the move to compensating announced before it,
        // on the bus and in the log's stream alike.
        #expect(try h.history(id) == [Event.sagaStarted, Event.sagaCompensating, Event.sagaFailed])
        await h.collector.waitFor("the terminal event") { $0.contains { $0.type == Event.sagaFailed && $0.sagaID == id } }
        #expect(h.collector.events.filter { $0.sagaID == id && $0.isLifecycle }.map(\.type)
                == [Event.sagaStarted, Event.sagaCompensating, Event.sagaFailed])
        #expect(h.terminalEvents().first?.payload["state"] == "compensated")
        await h.shutdown()
    }

    @Test func aCompensationThatFailsOrTimesOutEndsFailedCompensation() async throws {
        let h = try CoordinatorHarness()
        let host = scriptedHost(["c": "no", "undo_b": "fail", "f": "silent", "undo_e": "silent"])
        try h.coordinator.register(ScriptSaga.type())
        try h.coordinator.register(target: host.target, named: "host")
        try await h.coordinator.start()
        let failing = try await h.coordinator.startSaga(name: "script", input: ScriptSaga.input([
            ("a", ["compensation": undo("undo_a")]), ("b", ["compensation": undo("undo_b")]), ("c", [:]),
        ]))
        let row = try #require(await h.waitForEnd(failing))
        #expect(row.state == .failedCompensation)
        #expect(row.failureReason == "the host said no to step 2; the compensation of step 1 failed: action failed: undo_b failed on attempt 1")
        // It stops at the failed compensation: step 0 is left as it was, for an operator.
        #expect(row.steps.map(\.state) == [.succeeded, .succeeded, .succeeded, .failed])
        #expect(!host.names.contains("undo_a"))

        let silent = try await h.coordinator.startSaga(name: "script", input: ScriptSaga.input([
            ("d", ["compensation": undo("undo_d")]), ("e", ["compensation": undo("undo_e", ["timeout_ms": 2000])]), ("f", ["timeout_ms": 500]),
        ]))
        await h.waitForDispatches(host, 7)
        // Step f is never answered: its own timeout fails the saga, then undo_e waits 2 s.
        await h.loop.advance(by: .milliseconds(500))
        await h.collector.waitFor("undo_e") { _ in host.names.last == "undo_e" }
        await h.loop.advance(by: .milliseconds(1999))
        #expect(try h.log.saga(id: silent)?.state == .compensating)
        await h.loop.advance(by: .milliseconds(1))
        let timedOut = try #require(await h.waitForEnd(silent))
        #expect(timedOut.state == .failedCompensation)
        #expect(timedOut.failureReason == "step 2 timed out after 500 ms; the compensation of step 1 failed: step 3 timed out after 2000 ms")
        await h.collector.waitFor("two terminal events") { _ in h.terminalEvents().count >= 2 }
        #expect(h.terminalEvents().count == 2)
        await h.shutdown()
    }

    @Test func theDeadlineAndACancelCompensateTooAndTheDeadlineSparesCompensations() async throws {
        let h = try CoordinatorHarness()
        let host = scriptedHost(["hang": "silent", "slow_undo": "silent"])
        try h.coordinator.register(ScriptSaga.type(timeout: .seconds(10), compensationTimeout: .seconds(60)))
        try h.coordinator.register(target: host.target, named: "host")
        try await h.coordinator.start()
        let late = try await h.coordinator.startSaga(name: "script", input: ScriptSaga.input([
            ("a", ["compensation": undo("slow_undo")]), ("hang", [:]),
        ]))
        await h.waitForDispatches(host, 2)
        await h.loop.advance(by: .seconds(10))
        await h.waitForDispatches(host, 3)
        #expect(try h.log.saga(id: late)?.failureReason == "saga timeout")
        // Its compensation has a minute of its own, whatever the saga's deadline was.
        await h.loop.advance(by: .seconds(30))
        #expect(try h.log.saga(id: late)?.state == .compensating)
        // A compensating saga cannot be cancelled: it failed already.
        await #expect { try await h.coordinator.cancelSaga(id: late, reason: "now") } throws: { ($0 as? SagaLaneError)?.code == .state }
        h.bus.publish(type: "Ok", sagaID: late, payload: ["step": 2])
        #expect(await h.waitForEnd(late)?.state == .compensated)

        let cancelled = try await h.coordinator.startSaga(name: "script", input: ScriptSaga.input([
            ("b", ["compensation": undo("undo_b")]), ("hang", [:]),
        ]))
        await h.waitForDispatches(host, 5)
        try await h.coordinator.cancelSaga(id: cancelled, reason: "the operator changed their mind")
        let row = try #require(await h.waitForEnd(cancelled))
        #expect(row.state == .compensated)
        #expect(row.failureReason == "cancelled: the operator changed their mind")
        #expect(host.names.suffix(3) == ["b", "hang", "undo_b"])
        await h.shutdown()
    }

    /// While it compensates, a saga takes only an answer to the compensation it waits for: a
    /// late echo that names another step is passed over.
    @Test func aLateAnswerToAnEarlierStepIsNotTakenForTheCompensation() async throws {
        let h = try CoordinatorHarness()
        let host = scriptedHost(["slow": "silent", "undo_a": "silent"])
        try h.coordinator.register(ScriptSaga.type())
        try h.coordinator.register(target: host.target, named: "host")
        try await h.coordinator.start()
        let id = try await h.coordinator.startSaga(name: "script", input: ScriptSaga.input([
            ("a", ["compensation": undo("undo_a")]), ("slow", ["timeout_ms": 100]),
        ]))
        await h.waitForDispatches(host, 2)
        await h.loop.advance(by: .milliseconds(100))
        await h.waitForDispatches(host, 3)
        h.bus.publish(type: "Ok", sagaID: id, payload: ["step": 1])
        let marker = h.bus.publish(type: "Marker")
        await h.collector.waitFor("marker") { $0.contains { $0.version == marker.version } }
        #expect(try h.log.saga(id: id)?.state == .compensating)
        h.bus.publish(type: "Undone", sagaID: id, payload: ["step": 2])
        let row = try #require(await h.waitForEnd(id))
        #expect(row.state == .compensated)
        #expect(row.steps[2].outputJSON?.contains("Undone") == true)
        await h.shutdown()
    }
}
