import SagaLaneTestSupport
import Synchronization
import Testing
@testable import SagaLaneCoordinator
@testable import SagaLaneLog
@testable import SagaLaneEventLoop
@testable import SagaLaneJSON
@testable import SagaLaneSupport

/// Retries without jitter, so the back-off is exact on the manual clock.
private let exact: JSON = ["max_attempts": 3, "initial_backoff_ms": 100, "max_backoff_ms": 1000, "jitter": 0]

@Suite(.timeLimit(.minutes(2)))
struct RetryTests {
    @Test func anIdempotentStepIsRetriedWithBackOffUnderTheSameStepIndex() async throws {
        let h = try CoordinatorHarness()
        let host = scriptedHost(["flaky": "fail_then_ok:2"])
        try h.coordinator.register(ScriptSaga.type())
        try h.coordinator.register(target: host.target, named: "host")
        try await h.coordinator.start()
        let id = try await h.coordinator.startSaga(name: "script", input: ScriptSaga.input([
            ("flaky", ["idempotent": true, "retry": exact]), ("after", [:]),
        ]))
        await h.waitForDispatches(host, 1)
        await h.waitForAttempts(id, step: 0, 2)
        // The first retry waits 100 ms, the second 200 ms: nothing goes out before.
        await h.loop.advance(by: .milliseconds(99))
        #expect(host.count == 1)
        await h.loop.advance(by: .milliseconds(1))
        await h.waitForDispatches(host, 2)
        await h.waitForAttempts(id, step: 0, 3)
        await h.loop.advance(by: .milliseconds(199))
        #expect(host.count == 2)
        await h.loop.advance(by: .milliseconds(1))
        let row = try #require(await h.waitForEnd(id))
        #expect(row.state == .completed)
        let attempts = host.dispatched.withLock { $0.filter { $0.command["cmd"] == "flaky" }.map { ($0.step, $0.attempt) } }
        #expect(attempts.map(\.0) == [0, 0, 0] && attempts.map(\.1) == [1, 2, 3])
        // Each attempt is in the step's row, with why the one before failed.
        #expect(row.steps[0].attempts == 3)
        #expect(row.steps[0].failureReason == "attempt 1: action failed: flaky failed on attempt 1; attempt 2: action failed: flaky failed on attempt 2")
        #expect(row.steps[0].state == .succeeded)
        await h.shutdown()
    }

    @Test func aTimedOutStepIsRetriedAndTheLastFailureFailsTheSaga() async throws {
        let h = try CoordinatorHarness()
        let host = scriptedHost(["mute": "silent", "broken": "fail"])
        try h.coordinator.register(ScriptSaga.type())
        try h.coordinator.register(target: host.target, named: "host")
        try await h.coordinator.start()
        let mute = try await h.coordinator.startSaga(name: "script", input: ScriptSaga.input([
            ("mute", ["idempotent": true, "timeout_ms": 1000, "retry": exact]),
        ]))
        await h.waitForDispatches(host, 1)
        await h.loop.advance(by: .milliseconds(1000))
        await h.waitForAttempts(mute, step: 0, 2)
        await h.loop.advance(by: .milliseconds(100))
        await h.waitForDispatches(host, 2)
        // A late answer to the first attempt is an answer to the step.
        h.bus.publish(type: "Ok", sagaID: mute)
        #expect(await h.waitForEnd(mute)?.state == .completed)

        let broken = try await h.coordinator.startSaga(name: "script", input: ScriptSaga.input([
            ("broken", ["idempotent": true, "retry": exact]),
        ]))
        await h.waitForDispatches(host, 3)
        await h.waitForAttempts(broken, step: 0, 2)
        await h.loop.advance(by: .milliseconds(100))
        await h.waitForDispatches(host, 4)
        await h.waitForAttempts(broken, step: 0, 3)
        await h.loop.advance(by: .milliseconds(200))
        let row = try #require(await h.waitForEnd(broken))
        #expect(row.state == .failed)
        #expect(row.failureReason == "step 0 failed after 3 attempts: action failed: broken failed on attempt 3")
        #expect(row.steps[0].attempts == 3 && row.steps[0].state == .failed)
        await h.shutdown()
    }

    @Test func retriesNeedAnIdempotentStepAndAStaleReportChangesNothing() async throws {
        let h = try CoordinatorHarness()
        let host = scriptedHost(["slow": "silent"])
        try h.coordinator.register(ScriptSaga.type())
        try h.coordinator.register(target: host.target, named: "host")
        try await h.coordinator.start()
        let refused = try await h.coordinator.startSaga(name: "script", input: ScriptSaga.input([("x", ["retry": exact])]))
        let row = try #require(await h.waitForEnd(refused))
        #expect(row.failureReason == "step 0 cannot be issued: a step with retries must be declared idempotent")
        #expect(row.steps.isEmpty && host.count == 0)

        let id = try await h.coordinator.startSaga(name: "script", input: ScriptSaga.input([
            ("slow", ["idempotent": true, "timeout_ms": 1000, "retry": exact]),
        ]))
        await h.waitForDispatches(host, 1)
        await h.loop.advance(by: .milliseconds(1000))
        await h.waitForAttempts(id, step: 0, 2)
        await h.loop.advance(by: .milliseconds(100))
        await h.waitForDispatches(host, 2)
        // The first attempt's target gives up on it late: the second attempt is still awaited.
        StepReporter(bus: h.bus, sagaID: id, step: 0, attempt: 1).fail("too late")
        let marker = h.bus.publish(type: "Marker")
        await h.collector.waitFor("marker") { $0.contains { $0.version == marker.version } }
        #expect(try h.log.saga(id: id)?.state == .running)
        #expect(host.count == 2)
        h.bus.publish(type: "Ok", sagaID: id)
        #expect(await h.waitForEnd(id)?.state == .completed)
        await h.shutdown()
    }

    @Test func theStepFormReadsWhatItWrites() throws {
        let step = SagaStep(target: "lane:gpu", command: ["cmd": "render"],
                            compensation: Compensation(command: ["cmd": "discard"], timeout: .seconds(5),
                                                       retry: RetryPolicy(maxAttempts: 4, jitter: 0)),
                            timeout: .milliseconds(1500), idempotent: true, retry: RetryPolicy(maxAttempts: 2))
        #expect(try SagaStep(json: step.json) == step)
        #expect(try SagaStep(json: try JSON(parsing: step.json.serialized)) == step)
        #expect(SagaStep(target: "host", command: 1).storedSpec == nil)
        #expect(throws: SagaLaneError.self) { try SagaStep(json: ["command": 1]) }
        #expect(throws: SagaLaneError.self) { try SagaStep(json: ["target": "h", "command": 1, "timeout_ms": 0]) }
        #expect(throws: SagaLaneError.self) { try SagaStep(json: ["target": "h", "command": 1, "retry": ["jitter": 2]]) }
        #expect(throws: SagaLaneError.self) { try SagaStep(json: ["target": "h", "command": 1, "compensation": ["target": "x"]]) }
    }
}
