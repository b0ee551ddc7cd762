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
public protocol Saga: AnyObject {
    /// The first action, called once the saga's `running` row is durable.
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
    /// The saga succeeded.
    case done
    /// The saga failed for `reason`.
    case failed(String)
    /// Nothing to do for this event.
    case wait
}

/// What a saga knows about itself while it runs.
public struct SagaContext: Sendable {
    /// The saga's id, unique in its log.
    public let sagaID: UInt64
    /// The saga type's name.
    public let name: String
    /// The index the next issued step will get.
    public let nextStepIndex: UInt32
}

/// What the coordinator does at start-up with a saga of this type that the log shows unfinished.
public enum RecoveryPolicy: Sendable, Equatable {
    /// Mark it `failed_compensation` with a reason saying it was interrupted, for an operator to
    /// review.
    case markFailed
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
    /// Builds a saga from its input; throws (any error) when the input is not acceptable.
    public var make: @Sendable (JSON) throws -> Saga

    public init(
        name: String,
        interests: Set<String> = [],
        timeout: Duration = SagaType.defaultTimeout,
        recovery: RecoveryPolicy = .markFailed,
        make: @escaping @Sendable (JSON) throws -> Saga
    ) {
        self.name = name
        self.interests = interests
        self.timeout = timeout
        self.recovery = recovery
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
