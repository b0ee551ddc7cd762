import SagaLaneCoordinator
import SagaLaneJSON
import SagaLaneSupport

/// One saga type of a saga file: what starts it, what it takes from the trigger, its steps.
public struct SagaDefinition: Sendable {
    public let name: String
    /// What the author says the saga is for; shown by tools, used by nothing.
    public let summary: String?
    /// The event that starts it; `nil`: it is started only by name.
    public let triggerDefinition: TriggerDefinition?
    /// The members of the trigger's payload the saga's input keeps; `nil`: the whole payload.
    public let inputFields: [String]?
    public let steps: [StepDefinition]
    /// How long a saga may run; `nil`: `SagaType.defaultTimeout`.
    public let timeout: Duration?
    /// What start-up recovery does with a saga of this type that a crash interrupted.
    public let recovery: RecoveryPolicy
    /// How long each compensation waits for its answer unless it says; `nil`:
    /// `SagaType.defaultCompensationTimeout`.
    public let compensationTimeout: Duration?

    /// The saga type to register.
    public var sagaType: SagaType {
        let definition = self
        return SagaType(name: name, timeout: timeout ?? SagaType.defaultTimeout, recovery: recovery,
                        compensationTimeout: compensationTimeout ?? SagaType.defaultCompensationTimeout) { input in
            DefinedSaga(definition: definition, input: input)
        }
    }

    /// The trigger to add, if the definition has one.
    public var trigger: Trigger? {
        guard let t = triggerDefinition else { return nil }
        let fields = inputFields
        return Trigger(on: t.eventType, start: name, when: { t.accepts($0) }, input: { event in
            guard let fields else { return event.payload }
            var members: [(String, JSON)] = []
            for field in fields {
                if let value = event.payload[field] { members.append((field, value)) }
            }
            return .object(JSONObject(members))
        })
    }
}

/// What starts a saga: an event type, with conditions on members of its payload.
public struct TriggerDefinition: Sendable {
    /// A member of the payload, by its path (`["window", "label"]` for `window.label`), and a value.
    public struct Condition: Sendable {
        public let path: [String]
        public let value: JSON

        func holds(for payload: JSON) -> Bool {
            var current = payload
            for part in path {
                guard let next = current[part] else { return false }
                current = next
            }
            return current == value
        }
    }

    public let eventType: String
    /// Each must hold: the member exists and equals the value.
    public let when: [Condition]
    /// None may hold.
    public let unless: [Condition]

    /// Whether an event of `eventType` with `payload` starts a saga.
    public func accepts(_ payload: JSON) -> Bool {
        when.allSatisfy { $0.holds(for: payload) } && !unless.contains { $0.holds(for: payload) }
    }
}

/// One step of a declared saga.
public struct StepDefinition: Sendable {
    public let name: String
    public let target: String
    let command: Template
    /// Event types (tagged with the saga's id) that complete the step; the event's payload is
    /// the step's result, which later templates refer to as `${steps.NAME}`.
    public let completesOn: [String]
    /// Event types that fail the step, and with it the saga.
    public let failsOn: [String]
    /// What undoes the step once it succeeded, should the saga fail later.
    let compensation: CompensationDefinition?
    /// How long each attempt waits for its answer; `nil`: only the saga's deadline.
    public let timeout: Duration?
    /// Whether the step may be sent more than once; retries need it.
    public let idempotent: Bool
    public let retry: RetryPolicy?

    /// Whether the step declares a compensation.
    public var isCompensated: Bool { compensation != nil }
}

/// What undoes a declared step: a command template (over the input and the results of the
/// steps before it), to the step's target unless it names another.
struct CompensationDefinition: Sendable {
    let target: String?
    let command: Template
    let timeout: Duration?
    let retry: RetryPolicy?
}

/// A saga run from its definition: issues each step's command in turn, moves on when an
/// event tagged with its id completes the step, fails when one fails it.
///
/// Deterministic by construction: its actions depend only on its input and the events that
/// completed its steps.
final class DefinedSaga: Saga {
    private let definition: SagaDefinition
    private let input: JSON
    /// The payloads of the events that completed the steps so far.
    private var results: [JSON] = []

    init(definition: SagaDefinition, input: JSON) {
        self.definition = definition
        self.input = input
    }

    func start(_ context: SagaContext) -> SagaAction { issue(0, context) }

    func onEvent(_ event: Event, _ context: SagaContext) -> SagaAction {
        guard event.sagaID == context.sagaID, results.count < definition.steps.count else { return .wait }
        let step = definition.steps[results.count]
        if step.completesOn.contains(where: { $0.isExactly(event.type) }) {
            results.append(event.payload)
            return results.count == definition.steps.count ? .done : issue(results.count, context)
        }
        if step.failsOn.contains(where: { $0.isExactly(event.type) }) {
            return .failed("step \"\(step.name)\" failed: \(event.type) \(event.payload.serialized)")
        }
        return .wait
    }

    private func issue(_ index: Int, _ context: SagaContext) -> SagaAction {
        let step = definition.steps[index]
        do {
            let command = try step.command.render(input: input, results: results, sagaID: context.sagaID, sagaName: definition.name)
            var compensation: Compensation?
            if let undo = step.compensation {
                compensation = Compensation(target: undo.target,
                                            command: try undo.command.render(input: input, results: results, sagaID: context.sagaID,
                                                                             sagaName: definition.name),
                                            timeout: undo.timeout, retry: undo.retry)
            }
            return .step(SagaStep(target: step.target, command: command, compensation: compensation, timeout: step.timeout,
                                  idempotent: step.idempotent, retry: step.retry))
        } catch {
            return .failed("step \"\(step.name)\": \"${\(error.reference)}\" has no value")
        }
    }
}
