import SagaLaneEventLoop
import SagaLaneJSON
import SagaLaneLog
import SagaLaneSupport

/// Something that happened, published on the bus.
///
/// Events drive sagas: an event type can trigger a new saga, and an event tagged with a saga id
/// (the echo of a command that saga issued) goes to that saga alone.
public struct Event: Sendable, Hashable, CustomStringConvertible {
    /// The event's kind, e.g. `"PoolWindowAdded"`.
    public var type: String
    /// The saga this event answers, when it is the echo of a saga's command.
    public var sagaID: UInt64?
    /// The event's data.
    public var payload: JSON
    /// Position in the bus's publication order, assigned by `EventBus.publish` (starts at 1).
    public var version: UInt64

    public init(type: String, sagaID: UInt64? = nil, payload: JSON = .null, version: UInt64 = 0) {
        self.type = type
        self.sagaID = sagaID
        self.payload = payload
        self.version = version
    }

    /// The event as one JSON object: `{"type", "saga_id" (when tagged), "payload", "version"}`.
    /// This is what a consumed step stores as its output in the log.
    public var json: JSON {
        // In the members' order ("payload" < "saga_id" < "type" < "version"), so the object is
        // made in one go rather than sorted or shifted into place.
        let object: JSONObject = if let sagaID {
            ["payload": payload, "saga_id": .int(Int64(bitPattern: sagaID)), "type": .string(type), "version": .int(Int64(bitPattern: version))]
        } else {
            ["payload": payload, "type": .string(type), "version": .int(Int64(bitPattern: version))]
        }
        return .object(object)
    }

    /// The text of `json`, written member by member without building the object first: what
    /// a consumed step stores as its output, once per event a saga takes.
    public var serializedJSON: String {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: JSONWriter.stackCapacity) { space in
            var object = JSONObjectWriter(space: space)
            object.member("payload", payload)
            if let sagaID { object.member("saga_id", int: Int64(bitPattern: sagaID)) }
            object.member("type", string: type)
            object.member("version", int: Int64(bitPattern: version))
            return object.finish()
        }
    }

    /// Reads an event from the JSON form `json` writes; `version` is optional.
    public init(json: JSON) throws(SagaLaneError) {
        guard let type = json["type"]?.stringValue, !type.isEmpty else {
            throw SagaLaneError(.invalidArgument, "an event needs a non-empty string \"type\"")
        }
        var sagaID: UInt64?
        if let tag = json["saga_id"], !tag.isNull {
            guard let value = tag.int64Value, value > 0 else {
                throw SagaLaneError(.invalidArgument, "an event's \"saga_id\" must be a positive integer")
            }
            sagaID = UInt64(value)
        }
        self.init(type: type, sagaID: sagaID, payload: json["payload"] ?? .null,
                  version: json["version"]?.int64Value.map { UInt64(bitPattern: $0) } ?? 0)
    }

    public var description: String { json.serialized }
}

extension Event {
    /// Published when a saga's `running` row is durable, before its first action.
    public static let sagaStarted = LifecycleType.started
    /// Published when a failed saga's `compensating` row is durable, before its first
    /// compensation is dispatched; payload `{"name", "reason"}`.
    public static let sagaCompensating = LifecycleType.compensating
    /// Published when a saga interrupted by a restart, or reopened by an operator, goes on.
    public static let sagaResumed = LifecycleType.resumed
    /// Published when a saga's `completed` row is durable; payload `{"name", "state"}`.
    public static let sagaCompleted = LifecycleType.completed
    /// Published when a saga's final row is durable for any other end (`failed`,
    /// `compensated`, `failed_compensation`); payload `{"name", "state", "reason"}`. With
    /// `SagaCompleted`, a saga's one terminal event.
    public static let sagaFailed = LifecycleType.failed
    /// Published when an operator acted on a saga (see `LifecycleType.operatorAction`).
    public static let sagaOperatorAction = LifecycleType.operatorAction
    /// Published by a target (or a host) to report that a saga's command failed; tagged with the
    /// saga id, payload `{"reason": …, "step": …}` (and `"attempt"` from a `StepReporter`).
    /// Retried when the step declared retries, else it ends the saga as failed.
    public static let sagaActionFailed = "SagaActionFailed"

    /// Lifecycle events are the coordinator's own output: they are never fed back into sagas
    /// nor matched against triggers, so a saga can never trigger itself in a loop.
    public var isLifecycle: Bool {
        type.isExactly(Event.sagaStarted) || type.isExactly(Event.sagaCompleted) || type.isExactly(Event.sagaFailed)
            || type.isExactly(Event.sagaCompensating) || type.isExactly(Event.sagaResumed) || type.isExactly(Event.sagaOperatorAction)
    }

    /// A step's timer ran out: made by the coordinator for the saga's own mailbox, never
    /// published (version 0, which no published event has).
    static func stepTimedOut(sagaID: UInt64, step: UInt32, attempt: Int, after: Duration) -> Event {
        Event(type: stepTimedOutType, sagaID: sagaID,
              payload: ["step": .int(Int64(step)), "attempt": .int(Int64(attempt)), "after_ms": .int(after.wholeMilliseconds)])
    }

    /// A dispatch that threw, for the saga's own mailbox, never published.
    static func dispatchFailed(sagaID: UInt64, step: UInt32, attempt: Int, reason: String) -> Event {
        Event(type: sagaActionFailed, sagaID: sagaID,
              payload: ["step": .int(Int64(step)), "attempt": .int(Int64(attempt)), "reason": .string(reason), "dispatch": true])
    }

    static let stepTimedOutType = "sagalane.StepTimedOut"

    /// Whether this is a step's failure: a target's report, or (never published) a step timer.
    var isStepFailure: Bool {
        type.isExactly(Event.sagaActionFailed) || (version == 0 && type.isExactly(Event.stepTimedOutType))
    }
}
