import SagaLaneEventLoop
import SagaLaneJSON
import SagaLaneLog
import SagaLaneSupport

/// A saga step's command on its way to a target.
///
/// A step can reach its target more than once under the same (saga id, step index): a retry
/// after a failure or a timeout, or the re-dispatch of a step left pending by a crash. A
/// target whose commands have effects recognises a repeat by that pair.
public struct StepDispatch: Sendable {
    public let sagaID: UInt64
    public let step: UInt32
    /// The name the saga issued the command to.
    public let target: String
    /// The command with `"saga_id"` and `"step"` injected (when it is an object), and
    /// `"compensates"` for a compensation.
    public let command: JSON
    /// 1 for the first dispatch of the step, then one more for each retry or re-dispatch after
    /// a restart.
    public let attempt: Int
    /// For a compensation: the index of the step it undoes.
    public let compensates: UInt32?
    /// Whether the coordinator itself deals with this step's failure (a compensation, or a
    /// step with retries): a target that would tell the saga of a failure with an event
    /// should report it with `StepReporter.fail` instead, so it is retried or ends the saga.
    public let reportsFailures: Bool

    init(sagaID: UInt64, step: UInt32, target: String, command: JSON, attempt: Int = 1, compensates: UInt32? = nil,
         reportsFailures: Bool = false) {
        self.sagaID = sagaID
        self.step = step
        self.target = target
        self.command = command
        self.attempt = attempt
        self.compensates = compensates
        self.reportsFailures = reportsFailures
    }

    /// The same step, dispatched again as attempt `attempt`.
    func again(_ attempt: Int) -> StepDispatch {
        StepDispatch(sagaID: sagaID, step: step, target: target, command: command, attempt: attempt, compensates: compensates,
                     reportsFailures: reportsFailures)
    }
}

/// How a target reports on a command after `dispatch` returned. Safe from any thread.
public struct StepReporter: Sendable {
    let bus: EventBus
    public let sagaID: UInt64
    public let step: UInt32
    /// The attempt this reporter answers for (0: any).
    public let attempt: Int

    package init(bus: EventBus, sagaID: UInt64, step: UInt32, attempt: Int = 0) {
        self.bus = bus
        self.sagaID = sagaID
        self.step = step
        self.attempt = attempt
    }

    /// Publishes an event tagged with the saga id (the echo a saga waits for).
    public func publish(type: String, payload: JSON = .null) {
        bus.publish(type: type, sagaID: sagaID, payload: payload)
    }

    /// Reports the command failed: the step is retried when it declared retries, else the
    /// saga fails with `reason`. A report for an earlier attempt than the one awaited is
    /// ignored.
    public func fail(_ reason: String) {
        var payload: JSONObject = ["reason": .string(reason), "step": .int(Int64(step))]
        if attempt > 0 { payload["attempt"] = .int(Int64(attempt)) }
        bus.publish(type: Event.sagaActionFailed, sagaID: sagaID, payload: .object(payload))
    }
}

/// Where commands go. Targets are registered with the coordinator by name.
///
/// `dispatch` runs on the coordinator's loop thread, after the step row is durable: it must
/// hand the command off and return quickly. Throwing fails the saga at once with the error's
/// description; a failure found later is reported with `reporter.fail`.
public protocol SagaTarget: Sendable {
    func dispatch(_ step: StepDispatch, reporter: StepReporter) throws
    /// The saga ended (done, failed, deadline, cancel) while `step`, dispatched here, had no
    /// answer yet. Called on the loop thread the moment the end is decided, before it is
    /// recorded: drop or cancel whatever of the step has not run yet, so no command runs after
    /// its saga closed. Must return quickly.
    func sagaEnded(_ step: StepDispatch)
    /// The coordinator stopped waiting for this dispatch (its step timed out, or failed, and
    /// will be sent again): drop what of it has not run yet. By default, what `sagaEnded`
    /// does. Loop thread; must return quickly.
    func dispatchAbandoned(_ step: StepDispatch)
}

extension SagaTarget {
    /// A target with nothing to take back does nothing.
    public func sagaEnded(_ step: StepDispatch) {}

    public func dispatchAbandoned(_ step: StepDispatch) { sagaEnded(step) }
}

/// A target that calls a host function with each command.
public struct CallbackTarget: SagaTarget {
    private let body: @Sendable (StepDispatch, StepReporter) throws -> Void

    /// - Parameter body: Called on the loop thread with the command (ids injected) and a
    ///   reporter for its outcome.
    public init(_ body: @escaping @Sendable (StepDispatch, StepReporter) throws -> Void) {
        self.body = body
    }

    public func dispatch(_ step: StepDispatch, reporter: StepReporter) throws {
        try body(step, reporter)
    }
}

/// The `self` target: the command is published on the bus as an event tagged with the saga,
/// its type taken from the command's `"type"` (or `"cmd"`) field, else `"Command"`.
struct SelfTarget: SagaTarget {
    func dispatch(_ step: StepDispatch, reporter: StepReporter) throws {
        let type = step.command["type"]?.stringValue ?? step.command["cmd"]?.stringValue ?? "Command"
        reporter.publish(type: type, payload: step.command)
    }
}
