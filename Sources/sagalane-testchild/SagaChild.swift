import Glibc
import SagaLane

/// A saga whose input lists its steps in `SagaStep`'s JSON form: each is moved on by an `Ok`
/// tagged with the saga, failed by a `No`; after the last it is done. With `rename`, the
/// first step's command is issued with another `cmd` than its input says: a saga type whose
/// code changed between two runs.
private final class ListSaga: Saga {
    let steps: [SagaStep]
    var next = 0

    init(input: JSON, rename: Bool) throws {
        var steps = try (input["steps"]?.arrayValue ?? []).map { (step) throws(SagaLaneError) in try SagaStep(json: step) }
        if rename, !steps.isEmpty { steps[0].command = steps[0].command.setting("cmd", to: "renamed") }
        self.steps = steps
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
}

private func line(_ text: String) {
    let bytes = Array((text + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
}

private func fail(_ text: String) -> Never {
    writeStandardError("saga-crash: \(text)\n")
    exit(1)
}

/// `saga-crash <db> run <policy> <input JSON>`: starts one saga of type `list` with that
/// input, prints `started <id>`, then `dispatch <saga> <step> <attempt> <cmd> <compensates|->`
/// for every command that goes out (its step row is durable by then), answering each as its
/// command's `"answer"` says (`ok`, the default; `no`; `hold`: never). Runs until killed.
///
/// `saga-crash <db> recover <policy> <id> [rename]`: opens the log again, prints `recovered
/// <n>` after start-up recovery, prints the dispatch lines as above but answers every command
/// `ok`, waits for saga `id` to end, prints `end <id> <state>`, closes and exits 0.
func runSagaCrash(_ arguments: [String]) -> Never {
    guard arguments.count >= 4, let policy = RecoveryPolicy(rawValue: arguments[2]) else {
        fail("usage: sagalane-testchild saga-crash <db> run|recover <mark_failed|compensate|resume> <input|id> [rename]")
    }
    let recovering = arguments[1] == "recover"
    let rename = arguments.count > 4 && arguments[4] == "rename"
    do throws(SagaLaneError) {
        let runtime = try Runtime(options: RuntimeOptions(databasePath: arguments[0], durability: .full))
        try runtime.register(SagaType(name: "list", timeout: .seconds(600), recovery: policy) { input in
            try ListSaga(input: input, rename: rename)
        })
        try runtime.register(target: CallbackTarget { step, reporter in
            let cmd = step.command["cmd"]?.stringValue ?? "?"
            line("dispatch \(step.sagaID) \(step.step) \(step.attempt) \(cmd) \(step.compensates.map { String($0) } ?? "-")")
            let answer = recovering ? "ok" : step.command["answer"]?.stringValue ?? "ok"
            switch answer {
            case "no": reporter.publish(type: "No", payload: ["step": .int(Int64(step.step))])
            case "hold": break
            default: reporter.publish(type: "Ok", payload: ["step": .int(Int64(step.step))])
            }
        }, named: "host")
        let recovered = try runtime.start()
        if recovering {
            line("recovered \(recovered)")
            guard let id = UInt64(arguments[3]) else { fail("not a saga id: \(arguments[3])") }
            let end = try runtime.waitForSaga(id: id, timeoutMilliseconds: 60_000)
            line("end \(id) \(end.state.rawValue)")
            runtime.close()
            exit(0)
        }
        let input: JSON
        do { input = try JSON(parsing: arguments[3]) } catch { fail("the input is not JSON: \(error)") }
        let id = try runtime.startSaga(name: "list", input: input)
        line("started \(id)")
        // The runtime lives as long as the process: it runs until killed.
        while true { withExtendedLifetime(runtime) { _ = pause() } }
    } catch {
        fail("\(error)")
    }
}
