import SagaLaneTestSupport
import Synchronization
import Testing
@testable import SagaLaneCoordinator
@testable import SagaLaneLog
@testable import SagaLaneEventLoop
@testable import SagaLaneJSON
@testable import SagaLaneSupport

/// A saga described by data, as a declarative loader would build one: its input lists its
/// steps in `SagaStep`'s JSON form. Each step is moved on by an `Ok` event tagged with the saga
/// (or fails the saga on a `No`); after the last it is done.
final class ScriptSaga: Saga {
    let steps: [SagaStep]
    var next = 0

    init(input: JSON) throws {
        steps = try (input["steps"]?.arrayValue ?? []).map { (step) throws(SagaLaneError) in try SagaStep(json: step) }
    }

    func start(_ context: SagaContext) -> SagaAction { issueNext() }

    func onEvent(_ event: Event, _ context: SagaContext) -> SagaAction {
        guard event.sagaID == context.sagaID else { return .wait }
        switch event.type {
        case "Ok": return issueNext()
        case "No": return .failed("the host said no to step \(next - 1)")
        default: return .wait
        }
    }

    private func issueNext() -> SagaAction {
        guard next < steps.count else { return .done }
        defer { next += 1 }
        return .step(steps[next])
    }

    static func type(_ name: String = "script", recovery: RecoveryPolicy = .markFailed, timeout: Duration = .seconds(60),
                     compensationTimeout: Duration = .seconds(30)) -> SagaType {
        SagaType(name: name, timeout: timeout, recovery: recovery, compensationTimeout: compensationTimeout) { try ScriptSaga(input: $0) }
    }

    /// The input of a script: each step `{"target": "host", "command": {"cmd": name, ...}}`
    /// plus what `extra` adds to it.
    static func input(_ steps: [(String, JSONObject)]) -> JSON {
        ["steps": .array(steps.map { name, extra in
            var step: JSONObject = ["target": "host", "command": ["cmd": .string(name)]]
            for (key, value) in extra { step[key] = value }
            return .object(step)
        })]
    }
}

/// A compensation in `SagaStep`'s JSON form, to the host: `{"command": {"cmd": name}}`.
func undo(_ name: String, _ extra: JSONObject = [:]) -> JSON {
    var object: JSONObject = ["command": ["cmd": .string(name)]]
    for (key, value) in extra { object[key] = value }
    return .object(object)
}

/// A host that answers each command as a table says, by the command's `"cmd"`: "ok" publishes
/// `Ok` (with the step), "no" publishes `No`, "fail" reports a failure, "silent" answers
/// nothing; "fail_then_ok:N" fails the first N attempts. Unlisted commands get "ok".
func scriptedHost(_ answers: [String: String] = [:]) -> HostRecorder {
    HostRecorder { step, reporter in
        let name = step.command["cmd"]?.stringValue ?? ""
        var answer = answers[name] ?? "ok"
        if answer.hasPrefix("fail_then_ok:"), let n = Int(answer.dropFirst("fail_then_ok:".count)) {
            answer = step.attempt <= n ? "fail" : "ok"
        }
        switch answer {
        case "ok": reporter.publish(type: "Ok", payload: ["step": .int(Int64(step.step))])
        case "no": reporter.publish(type: "No", payload: ["step": .int(Int64(step.step))])
        case "fail": reporter.fail("\(name) failed on attempt \(step.attempt)")
        default: break
        }
    }
}

extension HostRecorder {
    /// The commands dispatched, as `"cmd"` names, in order.
    var names: [String] { dispatched.withLock { $0.map { $0.command["cmd"]?.stringValue ?? "?" } } }
}

extension CoordinatorHarness {
    /// Waits until saga `id`'s row reads a final state.
    func waitForEnd(_ id: UInt64, sourceLocation: SourceLocation = #_sourceLocation) async -> SagaRecord? {
        await collector.waitFor("saga \(id)'s end", sourceLocation: sourceLocation) { [log] _ in
            (try? log.saga(id: id))?.map { $0.state.isTerminal } ?? false
        }
        return try? log.saga(id: id)
    }

    /// Waits until `host` received `count` commands.
    func waitForDispatches(_ host: HostRecorder, _ count: Int, sourceLocation: SourceLocation = #_sourceLocation) async {
        await collector.waitFor("\(count) dispatches", sourceLocation: sourceLocation) { _ in host.count >= count }
    }

    /// Waits until step `step` of saga `id` counts `attempts` in its row: the retry is written,
    /// and its back-off armed, from the loop time then.
    func waitForAttempts(_ id: UInt64, step: UInt32, _ attempts: Int, sourceLocation: SourceLocation = #_sourceLocation) async {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(30))
        while true {
            let awaited = await coordinator.awaitedStep(of: id)
            let row = (try? log.sagaSteps(sagaID: id))?.first { $0.index == step }
            if let awaited, awaited.step == step, awaited.attempt == attempts, awaited.timerArmed, row?.attempts == attempts { return }
            if clock.now > deadline {
                Issue.record("gave up waiting for attempt \(attempts) of step \(step)", sourceLocation: sourceLocation)
                return
            }
            try? await Task.sleep(for: .milliseconds(1))
        }
    }

    /// The lifecycle events the log holds for saga `id`, by type.
    func history(_ id: UInt64) throws -> [String] {
        try log.lifecycleEvents(sagaID: id).map(\.type)
    }
}
