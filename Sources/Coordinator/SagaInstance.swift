import SagaLaneEventLoop
import SagaLaneJSON
import SagaLaneLog
import SagaLaneSupport

/// How a saga ended: what its end callbacks and `Coordinator.whenEnded` report.
public struct SagaEnd: Sendable, Equatable {
    public var sagaID: UInt64
    /// `completed`, `failed`, … (see `SagaState`).
    public var state: SagaState
    /// Why it failed; `nil` for a saga that completed.
    public var reason: String?
    /// `false` when the terminal row could not be written (the log is unhealthy): the saga
    /// ended, but the log does not say so.
    public var durable: Bool

    public init(sagaID: UInt64, state: SagaState, reason: String?, durable: Bool = true) {
        self.sagaID = sagaID
        self.state = state
        self.reason = reason
        self.durable = durable
    }
}

/// A saga made by its type's factory and given its id, on its way to its running row.
struct Launch: @unchecked Sendable {
    let id: UInt64
    let type: SagaType
    /// Made by the factory and referenced by nothing else, so handing it to the loop is safe.
    let saga: Saga
    /// The input as the log stores it (recovery rebuilds the saga from it).
    let inputJSON: String
    /// Told the id once the running row is durable, or the error that stopped the saga.
    let onStarted: (@Sendable (Result<UInt64, SagaLaneError>) -> Void)?
    /// Told how the saga ended (never, when it did not start).
    let onEnded: (@Sendable (SagaEnd) -> Void)?
    /// Whether it counts against the launch queue's limit (sagas started by triggers do not:
    /// an event that fires a trigger cannot be refused).
    let admitted: Bool
}

/// One saga in flight, owned by the loop thread.
final class SagaInstance {
    let id: UInt64
    let type: SagaType
    let saga: Saga
    let onEnded: (@Sendable (SagaEnd) -> Void)?
    var nextStep: UInt32 = 0
    /// The step whose echo the saga waits for, with the target it went to.
    var awaiting: (step: StepDispatch, target: any SagaTarget)?
    var mailbox: [Event] = []
    var mailboxHead = 0
    var busy = false
    var ended = false
    var deadline: TimerID?

    init(id: UInt64, type: SagaType, saga: Saga, onEnded: (@Sendable (SagaEnd) -> Void)?) {
        self.id = id
        self.type = type
        self.saga = saga
        self.onEnded = onEnded
    }

    var context: SagaContext { SagaContext(sagaID: id, name: type.name, nextStepIndex: nextStep) }
}
