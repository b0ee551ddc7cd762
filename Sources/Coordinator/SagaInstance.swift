import SagaLaneEventLoop
import SagaLaneJSON
import SagaLaneLog
import SagaLaneSupport

/// How a saga ended: what its end callbacks and `Coordinator.whenEnded` report.
public struct SagaEnd: Sendable, Equatable {
    public var sagaID: UInt64
    /// `completed`, `failed`, `compensated` or `failed_compensation` (see `SagaState`).
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
    /// While a saga's row holds this key, a start with it starts nothing and answers that
    /// saga's id.
    var idempotencyKey: String? = nil
}

/// One saga in flight, owned by the loop thread.
final class SagaInstance {
    enum Phase { case running, compensating }

    /// The step whose answer the saga waits for: its dispatch, its target, and what it
    /// declared that the coordinator acts on.
    struct Awaiting {
        var dispatch: StepDispatch
        let target: any SagaTarget
        /// What few steps have, boxed: every saga that waits on a target holds an `Awaiting`,
        /// and these inline would be some 200 bytes of it.
        private let options: Options?

        final class Options {
            let timeout: Duration?
            let retry: RetryPolicy?
            let compensation: Compensation?

            init(timeout: Duration?, retry: RetryPolicy?, compensation: Compensation?) {
                self.timeout = timeout
                self.retry = retry
                self.compensation = compensation
            }
        }

        init(dispatch: StepDispatch, target: any SagaTarget, timeout: Duration?, retry: RetryPolicy?, compensation: Compensation?) {
            self.dispatch = dispatch
            self.target = target
            options = timeout == nil && retry == nil && compensation == nil
                ? nil : Options(timeout: timeout, retry: retry, compensation: compensation)
        }

        var timeout: Duration? { options?.timeout }
        var retry: RetryPolicy? { options?.retry }
        var compensation: Compensation? { options?.compensation }
    }

    /// A step's success held back to share the commit of what the saga does next.
    struct HeldSuccess {
        let step: UInt32
        let outputJSON: String
    }

    struct Undo {
        let step: UInt32
        let target: String
        let compensation: Compensation
    }

    let id: UInt64
    let type: SagaType
    let saga: Saga
    let onEnded: (@Sendable (SagaEnd) -> Void)?
    var nextStep: UInt32 = 0
    var phase = Phase.running
    var awaiting: Awaiting?
    /// The awaited step's success, held back to go into the log together with the saga's next
    /// record (see `Coordinator.write(_:for:)`).
    var heldSuccess: HeldSuccess?
    /// The succeeded steps that have a compensation, by index: undone last first.
    var undo: [Undo] = []
    /// Why the saga failed, once it compensates.
    var failureReason: String?
    var mailbox: [Event] = []
    var mailboxHead = 0
    var busy = false
    /// The forward run is over: no more of the saga's own actions, whoever ended it. A saga
    /// that compensates is still in flight after that (`phase`).
    var ended = false
    var deadline: TimerID?
    /// The awaited step's own timeout, or the back-off before it is sent again.
    var stepTimer: TimerID?

    init(id: UInt64, type: SagaType, saga: Saga, onEnded: (@Sendable (SagaEnd) -> Void)?) {
        self.id = id
        self.type = type
        self.saga = saga
        self.onEnded = onEnded
    }

    var context: SagaContext { SagaContext(sagaID: id, name: type.name, nextStepIndex: nextStep) }
}

/// The saga of a type that could not be rebuilt after a restart: it can only be undone or end.
final class UnrebuiltSaga: Saga {
    let reason: String
    init(_ reason: String) { self.reason = reason }
    func start(_ context: SagaContext) -> SagaAction { .failed(reason) }
    func onEvent(_ event: Event, _ context: SagaContext) -> SagaAction { .failed(reason) }
}
