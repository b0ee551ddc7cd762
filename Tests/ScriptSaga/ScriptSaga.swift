import SagaLane

/// A saga that runs the steps its input lists, for tests and benchmarks of the agent: input
/// `{"steps": [{"target": T, "command": C, "expect": E}, ...]}`. Each step issues C to T and
/// waits for an event tagged with the saga; an event of type E moves to the next step (or
/// completes the saga after the last), any other type fails it.
public final class ScriptSaga: Saga {
    struct Step {
        var target: String
        var command: JSON
        var expect: String
    }

    private let steps: [Step]
    private var current = 0

    init(input: JSON) throws(SagaLaneError) {
        guard let list = input["steps"]?.arrayValue, !list.isEmpty else {
            throw SagaLaneError(.invalidArgument, "a script saga needs a non-empty \"steps\" array")
        }
        var steps: [Step] = []
        for (index, item) in list.enumerated() {
            guard let target = item["target"]?.stringValue, let expect = item["expect"]?.stringValue else {
                throw SagaLaneError(.invalidArgument, "step \(index) needs \"target\" and \"expect\"")
            }
            steps.append(Step(target: target, command: item["command"] ?? .object([:]), expect: expect))
        }
        self.steps = steps
    }

    public func start(_ context: SagaContext) -> SagaAction {
        .issue(target: steps[0].target, command: steps[0].command)
    }

    public func onEvent(_ event: Event, _ context: SagaContext) -> SagaAction {
        guard event.sagaID == context.sagaID else { return .wait }
        guard event.type == steps[current].expect else {
            return .failed("step \(current) expected \(steps[current].expect), got \(event.type)")
        }
        current += 1
        if current == steps.count { return .done }
        return .issue(target: steps[current].target, command: steps[current].command)
    }

    /// The `script` saga type, with `timeout`, and `name` to register several.
    public static func type(name: String = "script", timeout: Duration = .seconds(30)) -> SagaType {
        SagaType(name: name, timeout: timeout) { input in try ScriptSaga(input: input) }
    }

    /// A saga input of one step per (target, command, expect).
    public static func input(_ steps: [(target: String, command: JSON, expect: String)]) -> JSON {
        ["steps": .array(steps.map { ["target": .string($0.target), "command": $0.command, "expect": .string($0.expect)] })]
    }
}
