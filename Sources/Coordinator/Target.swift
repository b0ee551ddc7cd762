import SagaLaneEventLoop
import SagaLaneJSON
import SagaLaneLog
import SagaLaneSupport

/// A saga step's command on its way to a target.
public struct StepDispatch: Sendable {
    public let sagaID: UInt64
    public let step: UInt32
    /// The name the saga issued the command to.
    public let target: String
    /// The command with `"saga_id"` and `"step"` injected (when it is an object).
    public let command: JSON
}

/// How a target reports on a command after `dispatch` returned. Safe from any thread.
public struct StepReporter: Sendable {
    let bus: EventBus
    public let sagaID: UInt64
    public let step: UInt32

    package init(bus: EventBus, sagaID: UInt64, step: UInt32) {
        self.bus = bus
        self.sagaID = sagaID
        self.step = step
    }

    /// Publishes an event tagged with the saga id (the echo a saga waits for).
    public func publish(type: String, payload: JSON = .null) {
        bus.publish(type: type, sagaID: sagaID, payload: payload)
    }

    /// Reports the command failed: the saga ends failed with `reason`.
    public func fail(_ reason: String) {
        bus.publish(type: Event.sagaActionFailed, sagaID: sagaID,
                    payload: ["reason": .string(reason), "step": .int(Int64(step))])
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
}

extension SagaTarget {
    /// A target with nothing to take back does nothing.
    public func sagaEnded(_ step: StepDispatch) {}
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
