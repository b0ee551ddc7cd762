import SagaLaneEventLoop
import SagaLaneJSON
import SagaLaneLog
import SagaLaneSupport

/// A saga: an event-driven state machine that orchestrates multi-step work, one command at a
/// time, and ends in exactly one terminal event.
///
/// The saga's input is stored in its `running` row, whatever the saga keeps of it: an
/// operator can tell which work it was, and recovery can rebuild the saga from it.
///
/// The coordinator calls `start` once, then `onEvent` for each event routed to the saga: the
/// echoes of its commands (events tagged with its id) and untagged events whose type its
/// `SagaType` declared interest in. A saga never sees lifecycle events, nor the event that
/// triggered it (that event's payload is its input).
///
/// Sagas live on the coordinator's loop thread; they need not be thread-safe.
///
/// **Determinism.** A saga type whose recovery policy is `.resume` is rebuilt after a crash
/// from its stored input, and `start` and `onEvent` are called again with each step's
/// recorded result (`SagaContext.replaying` is true meanwhile): they must decide the same
/// actions from the same events, and do nothing else (no I/O, no clock, no randomness). The
/// events that moved the saga on are replayed; events it answered with `.wait` are not, so a
/// decision must not depend on them. A replayed action that differs from the recorded step
/// fails the saga with a determinism error naming the step.
public protocol Saga: AnyObject {
    /// The first action, called just before the saga's `running` row is written: the step it
    /// issues goes into the same commit, and is dispatched once that commit is durable.
    func start(_ context: SagaContext) -> SagaAction
    /// The next action after `event`. Return `.wait` for an event that does not concern it.
    func onEvent(_ event: Event, _ context: SagaContext) -> SagaAction
}

/// What a saga does next.
public enum SagaAction: Sendable, Equatable {
    /// Send `command` to the target named `target` (`"self"`, `"lane:<name>"`, or a target
    /// the host registered). The coordinator writes the step row, waits for it to be durable,
    /// injects `"saga_id"` and `"step"` into the command (when it is an object) and dispatches
    /// it. The saga then waits for an event tagged with its id.
    case issue(target: String, command: JSON)
    /// Send a step with what it declares beyond its command: a compensation, a timeout,
    /// retries (see `SagaStep`). `.issue(target:command:)` is `.step(SagaStep(target:command:))`.
    case step(SagaStep)
    /// The saga succeeded.
    case done
    /// The saga failed for `reason`.
    case failed(String)
    /// Nothing to do for this event.
    case wait

    /// The step `.issue` and `.step` send; `nil` for the other actions.
    var issuedStep: SagaStep? {
        switch self {
        case .issue(let target, let command): SagaStep(target: target, command: command)
        case .step(let step): step
        case .done, .failed, .wait: nil
        }
    }
}

/// What a saga knows about itself while it runs.
public struct SagaContext: Sendable {
    /// The saga's id, unique in its log.
    public let sagaID: UInt64
    /// The saga type's name.
    public let name: String
    /// The index the next issued step will get.
    public let nextStepIndex: UInt32
    /// Whether the coordinator is replaying the saga's recorded history after a restart (see
    /// `Saga`): the actions returned are checked against the log, not carried out.
    public let replaying: Bool

    init(sagaID: UInt64, name: String, nextStepIndex: UInt32, replaying: Bool = false) {
        self.sagaID = sagaID
        self.name = name
        self.nextStepIndex = nextStepIndex
        self.replaying = replaying
    }
}

/// What the coordinator does at start-up with a saga of this type that the log shows
/// unfinished (`running` or `compensating`): a runtime stopped, or was killed, while it ran.
/// A saga whose type is not registered when the runtime starts is marked failed.
public enum RecoveryPolicy: String, Sendable, Equatable, CaseIterable {
    /// Mark it `failed_compensation`, with a reason saying it was interrupted, for an operator
    /// to review; nothing is dispatched. All of a page of such sagas are written in one go.
    case markFailed = "mark_failed"
    /// Undo it: the pending step is marked failed, and the compensations of the steps that
    /// succeeded run in reverse order, as after any failure; it ends `compensated`
    /// (`failed_compensation` when a compensation fails, `failed` when nothing undoes any of
    /// them). A saga interrupted while compensating goes on compensating.
    case compensate
    /// Go on from where it was: the saga is rebuilt from its stored input, its recorded step
    /// results are replayed through `onEvent` (each replayed action checked against the
    /// recorded step: a mismatch fails the saga with a determinism error), the pending step is
    /// dispatched again with the same saga id and step index, so its target can recognise it,
    /// and what is left of its deadline is armed. A saga interrupted while compensating goes
    /// on compensating.
    case resume
}

/// A kind of saga, registered by name.
public struct SagaType: Sendable {
    /// How long a saga may run before it fails with "saga timeout", unless its type says.
    public static let defaultTimeout = Duration.seconds(5)

    /// The name used to start it and stored in the log.
    public var name: String
    /// Untagged event types this saga wants to see besides the echoes of its own commands.
    public var interests: Set<String>
    /// How long a saga of this type may run before it fails with "saga timeout".
    public var timeout: Duration
    /// What start-up recovery does with an unfinished saga of this type.
    public var recovery: RecoveryPolicy
    /// How long a compensation waits for its answer (each attempt) unless it says otherwise.
    /// The saga's deadline does not cover its compensations.
    public var compensationTimeout: Duration
    /// Builds a saga from its input; throws (any error) when the input is not acceptable.
    /// Recovery under `.resume` calls it again with the input the log stored.
    public var make: @Sendable (JSON) throws -> Saga

    /// How long a compensation waits for its answer unless its type or itself says.
    public static let defaultCompensationTimeout = Duration.seconds(30)

    public init(
        name: String,
        interests: Set<String> = [],
        timeout: Duration = SagaType.defaultTimeout,
        recovery: RecoveryPolicy = .markFailed,
        compensationTimeout: Duration = SagaType.defaultCompensationTimeout,
        make: @escaping @Sendable (JSON) throws -> Saga
    ) {
        self.name = name
        self.interests = interests
        self.timeout = timeout
        self.recovery = recovery
        self.compensationTimeout = compensationTimeout
        self.make = make
    }
}

/// Starts a saga of type `sagaType` when an event of type `eventType` is published and
/// `predicate` (if any) accepts the event's payload. The new saga's input is `input(event)`,
/// by default the event's payload.
public struct Trigger: Sendable {
    public var eventType: String
    public var sagaType: String
    public var predicate: (@Sendable (JSON) -> Bool)?
    public var input: @Sendable (Event) -> JSON

    public init(
        on eventType: String,
        start sagaType: String,
        when predicate: (@Sendable (JSON) -> Bool)? = nil,
        input: @escaping @Sendable (Event) -> JSON = { $0.payload }
    ) {
        self.eventType = eventType
        self.sagaType = sagaType
        self.predicate = predicate
        self.input = input
    }

    /// Whether this trigger fires for `event`.
    public func matches(_ event: Event) -> Bool {
        event.type.isExactly(eventType) && !event.isLifecycle && (predicate?(event.payload) ?? true)
    }
}
