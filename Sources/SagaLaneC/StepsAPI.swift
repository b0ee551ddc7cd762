import CSagaLane
import Glibc
import SagaLane

// MARK: Steps with compensations, timeouts and retries

@implementation @_cdecl("sl_step_options_init")
public func sl_step_options_init(_ options: UnsafeMutablePointer<sl_step_options>?) {
    initialize(options, sl_step_options())
}

/// The retries `attempts` (1 or less: none) with a first and longest back-off in ms (0: the
/// defaults).
private func retries(_ attempts: Int32, _ first: UInt32, _ longest: UInt32) -> RetryPolicy? {
    guard attempts > 1 else { return nil }
    return RetryPolicy(maxAttempts: Int(attempts), initialBackoff: milliseconds(first, or: RetryPolicy.defaultInitialBackoff)!,
                       maxBackoff: milliseconds(longest, or: RetryPolicy.defaultMaxBackoff)!)
}

@implementation @_cdecl("sl_action_issue_ex")
public func sl_action_issue_ex(_ action: OpaquePointer?, _ target: UnsafePointer<CChar>?, _ command: UnsafePointer<CChar>?,
                               _ options: UnsafePointer<sl_step_options>?) -> Int32 {
    withAction(action) { () throws(SagaLaneError) -> SagaAction in
        var step = SagaStep(target: try nonEmpty(target, "target"), command: try json(command, "command_json"))
        if let options {
            var c = sl_step_options()
            sl_step_options_init(&c)
            c = try versioned(options, "sl_step_options", defaults: c)
            if c.compensation_json != nil {
                step.compensation = Compensation(
                    target: try optionalString(c.compensation_target, "options->compensation_target"),
                    command: try json(c.compensation_json, "options->compensation_json"),
                    timeout: milliseconds(c.compensation_timeout_ms, or: nil),
                    retry: retries(c.compensation_max_attempts, c.retry_backoff_ms, c.retry_max_backoff_ms))
            }
            step.timeout = milliseconds(c.timeout_ms, or: nil)
            step.idempotent = c.idempotent != 0
            step.retry = retries(c.max_attempts, c.retry_backoff_ms, c.retry_max_backoff_ms)
        }
        if let problem = step.problem { throw SagaLaneError(.invalidArgument, problem) }
        return .step(step)
    }
}

@implementation @_cdecl("sl_action_issue_step")
public func sl_action_issue_step(_ action: OpaquePointer?, _ stepJSON: UnsafePointer<CChar>?) -> Int32 {
    withAction(action) { () throws(SagaLaneError) -> SagaAction in
        guard stepJSON != nil else { throw SagaLaneError(.invalidArgument, "step_json is NULL") }
        let step = try SagaStep(json: try json(stepJSON, "step_json"))
        if let problem = step.problem { throw SagaLaneError(.invalidArgument, problem) }
        return .step(step)
    }
}

// MARK: Operators' actions

@implementation @_cdecl("sl_saga_retry_compensation")
public func sl_saga_retry_compensation(_ rt: OpaquePointer?, _ sagaID: UInt64, _ note: UnsafePointer<CChar>?) -> Int32 {
    callRuntime(rt) { runtime in
        try runtime.retryCompensation(id: sagaID, note: try optionalString(note, "note"))
    }
}

@implementation @_cdecl("sl_saga_resume")
public func sl_saga_resume(_ rt: OpaquePointer?, _ sagaID: UInt64, _ note: UnsafePointer<CChar>?) -> Int32 {
    callRuntime(rt) { runtime in
        try runtime.resumeSaga(id: sagaID, note: try optionalString(note, "note"))
    }
}

@implementation @_cdecl("sl_saga_resolve")
public func sl_saga_resolve(_ rt: OpaquePointer?, _ sagaID: UInt64, _ note: UnsafePointer<CChar>?) -> Int32 {
    callRuntime(rt) { runtime in
        try runtime.resolveSaga(id: sagaID, note: try optionalString(note, "note") ?? "no note given")
    }
}

// MARK: The lifecycle stream

@implementation @_cdecl("sl_lifecycle_subscribe")
public func sl_lifecycle_subscribe(_ rt: OpaquePointer?, _ after: UInt64, _ fn: sl_lifecycle_fn?, _ userdata: UnsafeMutableRawPointer?,
                                   _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    subscribe(rt, fn, out) { (runtime, handle, fn) throws(SagaLaneError) in
        let data = UserData(pointer: userdata), messages = handle.messages
        return .lifecycle(try runtime.subscribeLifecycle(after: after, deliver: { entry in
            entry.type.withCString { type in
                entry.payloadJSON.withCString { payload in
                    var c = sl_lifecycle_event(position: entry.position, saga_id: entry.sagaID, type: type, payload_json: payload,
                                               at_ms: entry.at.millisecondsSinceEpoch)
                    fn(data.pointer, &c)
                }
            }
        }, failed: { error in
            messages.set("the lifecycle subscription stopped: \(error.message)")
        }))
    }
}

@implementation @_cdecl("sl_lifecycle_position")
public func sl_lifecycle_position(_ rt: OpaquePointer?, _ position: UnsafeMutablePointer<UInt64>?) -> Int32 {
    callRuntime(rt) { runtime in
        try required(position, "position").pointee = runtime.lifecyclePosition
    }
}

@implementation @_cdecl("sl_log_lifecycle")
public func sl_log_lifecycle(_ rt: OpaquePointer?, _ after: UInt64, _ limit: Int32,
                             _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    callRuntime(rt) { runtime in
        let out = try required(out, "json")
        guard limit >= 0 else { throw SagaLaneError(.invalidArgument, "limit is negative (\(limit))") }
        try handOut(runtime.lifecycleEvents(after: after, limit: Int(limit)).serialized, to: out)
    }
}
