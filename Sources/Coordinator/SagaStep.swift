import SagaLaneJSON
import SagaLaneSupport

/// One step a saga issues, with everything it declares beyond its command: what undoes it,
/// how long to wait for it, whether it may be sent again.
///
/// A step is a plain value, so a saga type can be described by data: `init(json:)` reads the
/// form `json` writes, for loaders of declarative sagas.
///
/// - **Compensation.** When the saga later fails (its own `.failed`, a target's failure, its
///   deadline, a cancel) after this step succeeded, the coordinator moves the saga to
///   `compensating` and issues the compensations of its succeeded steps in reverse order,
///   each written to the log ahead of its dispatch as a step of its own and awaiting its echo.
/// - **Timeout.** How long one attempt waits for the answer before it counts as failed; the
///   saga's deadline still bounds the whole saga.
/// - **Retries.** A step declared `idempotent` with a `retry` policy is sent again, with the
///   same saga id and step index, after a target's failure (`StepReporter.fail`, a throwing
///   `dispatch`) or its timeout, with exponential back-off and jitter; each attempt is
///   written to the step's row before it is dispatched. Once the attempts are used up the
///   saga fails.
public struct SagaStep: Sendable, Equatable {
    /// Where the command goes: `"self"`, `"lane:<name>"`, or a target the host registered.
    public var target: String
    /// The command; `"saga_id"` and `"step"` are injected when it is an object.
    public var command: JSON
    /// What undoes this step once it succeeded; `nil`: nothing.
    public var compensation: Compensation?
    /// How long each attempt waits for its answer; `nil`: only the saga's deadline.
    public var timeout: Duration?
    /// Whether the step may safely be sent more than once (its target recognises a repeat by
    /// saga id and step index, or repeating it does no harm). Retries need it.
    public var idempotent: Bool
    /// How often, and how far apart, an idempotent step is sent again; `nil`: never.
    public var retry: RetryPolicy?

    public init(target: String, command: JSON, compensation: Compensation? = nil, timeout: Duration? = nil,
                idempotent: Bool = false, retry: RetryPolicy? = nil) {
        self.target = target
        self.command = command
        self.compensation = compensation
        self.timeout = timeout
        self.idempotent = idempotent
        self.retry = retry
    }

    /// Why the coordinator cannot issue this step, or `nil` when it can.
    public var problem: String? {
        if target.isEmpty { return "the step names no target" }
        if retry != nil && !idempotent { return "a step with retries must be declared idempotent" }
        if let timeout, timeout <= .zero { return "the step's timeout must be positive" }
        if let compensation, let timeout = compensation.timeout, timeout <= .zero { return "the compensation's timeout must be positive" }
        if let target = compensation?.target, target.isEmpty { return "the compensation names an empty target" }
        return nil
    }
}

/// What undoes a step: a command of its own, to the step's target unless it names another.
public struct Compensation: Sendable, Equatable {
    /// Where it goes; `nil`: the step's own target.
    public var target: String?
    /// The command; `"saga_id"`, `"step"` (the compensation's own index) and `"compensates"`
    /// (the index of the step it undoes) are injected when it is an object.
    public var command: JSON
    /// How long each attempt waits for its answer; `nil`: the saga type's
    /// `compensationTimeout`. A compensation that times out (with no retry left) ends the saga
    /// `failed_compensation`.
    public var timeout: Duration?
    /// How often, and how far apart, it is sent again after a failure or a timeout; `nil`:
    /// never.
    public var retry: RetryPolicy?

    public init(target: String? = nil, command: JSON, timeout: Duration? = nil, retry: RetryPolicy? = nil) {
        self.target = target
        self.command = command
        self.timeout = timeout
        self.retry = retry
    }
}

// MARK: JSON forms

extension SagaStep {
    /// `{"target", "command", "compensation", "timeout_ms", "idempotent", "retry"}`; members
    /// with their default value are left out. `compensation` is `Compensation.json`, `retry`
    /// `RetryPolicy.json`.
    public var json: JSON {
        var object: JSONObject = ["target": .string(target), "command": command]
        for (key, value) in declared { object[key] = value }
        return .object(object)
    }

    /// Reads the form `json` writes. Only `target` and `command` are required.
    /// - Throws: `.invalidArgument` naming the member that is missing or not what it must be.
    public init(json: JSON) throws(SagaLaneError) {
        guard case .object = json else { throw SagaLaneError(.invalidArgument, "a step must be a JSON object") }
        guard let target = json["target"]?.stringValue, !target.isEmpty else {
            throw SagaLaneError(.invalidArgument, "a step needs a non-empty string \"target\"")
        }
        guard let command = json["command"] else { throw SagaLaneError(.invalidArgument, "a step needs a \"command\"") }
        self.init(target: target, command: command)
        try read(json)
    }

    /// What the step declares beyond its target and command, as the log stores it; `nil`
    /// when it declares nothing (most steps: then nothing more is written).
    var storedSpec: String? {
        let declared = self.declared
        return declared.isEmpty ? nil : JSON.object(JSONObject(declared)).serialized
    }

    /// The step issued to `target` with `command` whose row stored `spec`.
    init(target: String, command: JSON, storedSpec spec: String?) throws(SagaLaneError) {
        self.init(target: target, command: command)
        guard let spec else { return }
        let json: JSON
        do { json = try JSON(parsing: spec) } catch {
            throw SagaLaneError(.corrupt, "the step's stored declaration is not JSON: \(error)")
        }
        try read(json)
    }

    private var declared: [(String, JSON)] {
        var members: [(String, JSON)] = []
        if let compensation { members.append(("compensation", compensation.json)) }
        if let timeout { members.append(("timeout_ms", .int(timeout.wholeMilliseconds))) }
        if idempotent { members.append(("idempotent", true)) }
        if let retry { members.append(("retry", retry.json)) }
        return members
    }

    private mutating func read(_ json: JSON) throws(SagaLaneError) {
        if let value = json["compensation"], !value.isNull { compensation = try Compensation(json: value) }
        timeout = try milliseconds(json["timeout_ms"], "timeout_ms")
        if let value = json["idempotent"], !value.isNull {
            guard let flag = value.boolValue else { throw SagaLaneError(.invalidArgument, "a step's \"idempotent\" must be true or false") }
            idempotent = flag
        }
        if let value = json["retry"], !value.isNull { retry = try RetryPolicy(json: value) }
    }
}

extension Compensation {
    /// `{"target", "command", "timeout_ms", "retry"}`, members with their default left out.
    public var json: JSON {
        var object: JSONObject = ["command": command]
        if let target { object["target"] = .string(target) }
        if let timeout { object["timeout_ms"] = .int(timeout.wholeMilliseconds) }
        if let retry { object["retry"] = retry.json }
        return .object(object)
    }

    /// Reads the form `json` writes; only `command` is required.
    public init(json: JSON) throws(SagaLaneError) {
        guard case .object = json, let command = json["command"] else {
            throw SagaLaneError(.invalidArgument, "a compensation must be an object with a \"command\"")
        }
        var target: String?
        if let value = json["target"], !value.isNull {
            guard let name = value.stringValue, !name.isEmpty else {
                throw SagaLaneError(.invalidArgument, "a compensation's \"target\" must be a non-empty string")
            }
            target = name
        }
        var retry: RetryPolicy?
        if let value = json["retry"], !value.isNull { retry = try RetryPolicy(json: value) }
        self.init(target: target, command: command, timeout: try milliseconds(json["timeout_ms"], "compensation.timeout_ms"), retry: retry)
    }
}

extension RetryPolicy {
    /// `{"max_attempts", "initial_backoff_ms", "max_backoff_ms", "multiplier", "jitter"}`.
    public var json: JSON {
        [
            "max_attempts": .int(Int64(maxAttempts)),
            "initial_backoff_ms": .int(initialBackoff.wholeMilliseconds),
            "max_backoff_ms": .int(maxBackoff.wholeMilliseconds),
            "multiplier": .double(multiplier),
            "jitter": .double(jitter),
        ]
    }

    /// Reads the form `json` writes; every member is optional (the defaults of `init`).
    public init(json: JSON) throws(SagaLaneError) {
        guard case .object = json else { throw SagaLaneError(.invalidArgument, "a retry policy must be a JSON object") }
        self.init()
        if let value = json["max_attempts"], !value.isNull {
            guard let n = value.int64Value, n >= 1, n <= 1_000_000 else {
                throw SagaLaneError(.invalidArgument, "\"max_attempts\" must be an integer from 1 to 1000000")
            }
            maxAttempts = Int(n)
        }
        if let initial = try milliseconds(json["initial_backoff_ms"], "initial_backoff_ms", allowZero: true) { initialBackoff = initial }
        if let cap = try milliseconds(json["max_backoff_ms"], "max_backoff_ms", allowZero: true) { maxBackoff = cap }
        if let value = json["multiplier"], !value.isNull {
            guard let m = value.doubleValue, m >= 1, m.isFinite else { throw SagaLaneError(.invalidArgument, "\"multiplier\" must be a number of at least 1") }
            multiplier = m
        }
        if let value = json["jitter"], !value.isNull {
            guard let j = value.doubleValue, j >= 0, j <= 1 else { throw SagaLaneError(.invalidArgument, "\"jitter\" must be a number from 0 to 1") }
            jitter = j
        }
    }
}

/// A duration member given in milliseconds: absent or null is `nil`.
private func milliseconds(_ value: JSON?, _ name: String, allowZero: Bool = false) throws(SagaLaneError) -> Duration? {
    guard let value, !value.isNull else { return nil }
    // A year at most: timers beyond would overflow the clocks that arm them.
    guard let ms = value.int64Value, ms >= (allowZero ? 0 : 1), ms <= 365 * 24 * 3_600_000 else {
        throw SagaLaneError(.invalidArgument, "\"\(name)\" must be a whole number of milliseconds from \(allowZero ? 0 : 1) to a year")
    }
    return .milliseconds(ms)
}

