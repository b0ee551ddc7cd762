import CSagaLane
import Glibc
import SagaLane
import Synchronization

/// Calls `body` with an `sl_event` view of `event`, valid for the call.
func withCEvent<T>(_ event: Event, _ body: (UnsafePointer<sl_event>) -> T) -> T {
    event.type.withCString { type in
        event.payload.serialized.withCString { payload in
            var c = sl_event(type: type, saga_id: event.sagaID ?? 0, payload_json: payload, version: event.version)
            return body(&c)
        }
    }
}

// MARK: Saga types defined in C

/// A saga type whose behaviour lives in C callbacks.
final class CSagaType: @unchecked Sendable {
    let name: String
    /// The vtable as registered; its borrowed string fields are cleared.
    let table: sl_saga_type
    let userdata: UnsafeMutableRawPointer?
    let messages: ErrorMessages
    private let nameC: UnsafeMutablePointer<CChar>
    private let release: Release
    /// Sagas alive, and whether the runtime closed: `release` waits for both.
    private let live = ConditionLock<(count: Int, closed: Bool)>((0, false))

    init(name: String, table: sl_saga_type, userdata: UnsafeMutableRawPointer?, messages: ErrorMessages) {
        self.name = name
        var table = table
        table.name = nil
        table.interests = nil
        table.interest_count = 0
        self.table = table
        self.userdata = userdata
        self.messages = messages
        nameC = strdup(name)
        release = Release(table.release, userdata)
    }

    deinit { free(nameC) }

    /// Builds a saga with the host's `create`, on the calling thread.
    func make(_ input: JSON) throws(SagaLaneError) -> Saga {
        var state: UnsafeMutableRawPointer?
        let rc = input.serialized.withCString { table.create!(userdata, $0, &state) }
        guard rc == 0 else {
            throw SagaLaneError(.refused, "create returned \(rc) (\(String(cString: sl_err_name(rc))))")
        }
        live.withLock { $0.count += 1 }
        return CSaga(type: self, state: state)
    }

    func sagaDestroyed(_ state: UnsafeMutableRawPointer?) {
        table.destroy?(userdata, state)
        let releaseNow = live.withLock { live -> Bool in
            live.count -= 1
            return live.closed && live.count == 0
        }
        if releaseNow { release() }
    }

    /// The runtime closed: release the userdata once no saga of this type is left.
    func releaseWhenIdle() {
        let releaseNow = live.withLock { live -> Bool in
            live.closed = true
            return live.count == 0
        }
        if releaseNow { release() }
    }

    /// Calls a saga callback with an action to fill, and returns what it chose.
    func decide(_ context: SagaContext, _ body: (UnsafePointer<sl_saga_ctx>, OpaquePointer) -> Void) -> SagaAction {
        let action = ActionBox(messages: messages)
        var ctx = sl_saga_ctx(saga_id: context.sagaID, type_name: nameC, next_step: context.nextStepIndex,
                              replaying: context.replaying ? 1 : 0)
        withExtendedLifetime(action) { body(&ctx, action.handle) }
        return action.action ?? .wait
    }
}

/// One saga of a C-defined type.
final class CSaga: Saga {
    let type: CSagaType
    let state: UnsafeMutableRawPointer?

    init(type: CSagaType, state: UnsafeMutableRawPointer?) {
        self.type = type
        self.state = state
    }

    func start(_ context: SagaContext) -> SagaAction {
        type.decide(context) { ctx, action in type.table.start!(type.userdata, state, ctx, action) }
    }

    func onEvent(_ event: Event, _ context: SagaContext) -> SagaAction {
        type.decide(context) { ctx, action in
            withCEvent(event) { type.table.on_event!(type.userdata, state, ctx, $0, action) }
        }
    }

    deinit { type.sagaDestroyed(state) }
}

/// What `sl_action *` points to during a callback.
final class ActionBox {
    var action: SagaAction?
    let messages: ErrorMessages

    init(messages: ErrorMessages) { self.messages = messages }

    var handle: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }

    /// Sets the action once; a second attempt, or a broken one, fails the saga.
    func set(_ body: () throws(SagaLaneError) -> SagaAction) -> Int32 {
        do throws(SagaLaneError) {
            if action != nil { throw SagaLaneError(.state, "the saga set two actions in one callback") }
            action = try body()
            return 0
        } catch {
            action = .failed("the saga's action was invalid: \(error.message)")
            messages.set(error.message)
            return errorCode(error)
        }
    }
}

func withAction(_ pointer: OpaquePointer?, _ body: () throws(SagaLaneError) -> SagaAction) -> Int32 {
    guard let pointer else {
        orphanMessages.set("the sl_action is NULL")
        return Int32(SL_EINVAL)
    }
    return Unmanaged<ActionBox>.fromOpaque(UnsafeRawPointer(pointer)).takeUnretainedValue().set(body)
}

@implementation @_cdecl("sl_action_issue")
public func sl_action_issue(_ action: OpaquePointer?, _ target: UnsafePointer<CChar>?, _ command: UnsafePointer<CChar>?) -> Int32 {
    sl_action_issue_ex(action, target, command, nil)
}

@implementation @_cdecl("sl_action_done")
public func sl_action_done(_ action: OpaquePointer?) -> Int32 {
    withAction(action) { .done }
}

@implementation @_cdecl("sl_action_fail")
public func sl_action_fail(_ action: OpaquePointer?, _ reason: UnsafePointer<CChar>?) -> Int32 {
    withAction(action) { () throws(SagaLaneError) -> SagaAction in .failed(try optionalString(reason, "reason") ?? "failed") }
}

@implementation @_cdecl("sl_saga_type_init")
public func sl_saga_type_init(_ type: UnsafeMutablePointer<sl_saga_type>?) {
    initialize(type, sl_saga_type())
}

@implementation @_cdecl("sl_saga_type_register")
public func sl_saga_type_register(_ rt: OpaquePointer?, _ type: UnsafePointer<sl_saga_type>?, _ userdata: UnsafeMutableRawPointer?) -> Int32 {
    call(rt, as: RuntimeHandle.self) { handle in
        let runtime = try handle.open()
        guard let type else { throw SagaLaneError(.invalidArgument, "type is NULL") }
        let table = try versioned(type, "sl_saga_type", defaults: sl_saga_type())
        let name = try string(table.name, "type->name")
        guard table.create != nil, table.start != nil, table.on_event != nil else {
            throw SagaLaneError(.invalidArgument, "saga type '\(name)' needs create, start and on_event")
        }
        guard table.interest_count == 0 || table.interests != nil else {
            throw SagaLaneError(.invalidArgument, "type->interests is NULL but interest_count is \(table.interest_count)")
        }
        let interests = try (0..<table.interest_count).map { (i) throws(SagaLaneError) in try string(table.interests![i], "type->interests[\(i)]") }
        let recovery: RecoveryPolicy = try choice(table.recovery, "type->recovery", [
            SL_RECOVERY_MARK_FAILED: ("SL_RECOVERY_MARK_FAILED", .markFailed), SL_RECOVERY_COMPENSATE: ("SL_RECOVERY_COMPENSATE", .compensate),
            SL_RECOVERY_RESUME: ("SL_RECOVERY_RESUME", .resume)])
        let cType = CSagaType(name: name, table: table, userdata: userdata, messages: handle.messages)
        try runtime.register(SagaType(name: name, interests: Set(interests), timeout: milliseconds(table.timeout_ms, or: SagaType.defaultTimeout)!,
                                      recovery: recovery,
                                      compensationTimeout: milliseconds(table.compensation_timeout_ms, or: SagaType.defaultCompensationTimeout)!) {
            try cType.make($0)
        })
        handle.keep(cType)
    }
}

// MARK: Triggers, starting and cancelling

@implementation @_cdecl("sl_trigger_add")
public func sl_trigger_add(
    _ rt: OpaquePointer?, _ eventType: UnsafePointer<CChar>?, _ sagaType: UnsafePointer<CChar>?,
    _ predicate: sl_trigger_predicate?, _ userdata: UnsafeMutableRawPointer?,
    _ release: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?
) -> Int32 {
    call(rt, as: RuntimeHandle.self) { handle in
        let runtime = try handle.open()
        let eventType = try nonEmpty(eventType, "event_type")
        let sagaType = try string(sagaType, "saga_type")
        let data = UserData(pointer: userdata)
        var trigger = Trigger(on: eventType, start: sagaType)
        if let predicate {
            trigger.predicate = { payload in
                payload.serialized.withCString { predicate(data.pointer, $0) } != 0
            }
        }
        try runtime.addTrigger(trigger)
        handle.releaseAtClose(Release(release, userdata))
    }
}

@implementation @_cdecl("sl_saga_types_load")
public func sl_saga_types_load(_ rt: OpaquePointer?, _ jsonText: UnsafePointer<CChar>?,
                               _ loaded: UnsafeMutablePointer<Int32>?) -> Int32 {
    callRuntime(rt) { runtime in
        guard let jsonText else { throw SagaLaneError(.invalidArgument, "json_text is NULL") }
        try SagaLog.checkValueSize(strlen(jsonText), of: "json_text")
        let names = try runtime.registerSagaFile(text: try string(jsonText, "json_text"))
        loaded?.pointee = Int32(clamping: names.count)
    }
}

@implementation @_cdecl("sl_saga_start")
public func sl_saga_start(_ rt: OpaquePointer?, _ typeName: UnsafePointer<CChar>?, _ input: UnsafePointer<CChar>?,
                          _ sagaID: UnsafeMutablePointer<UInt64>?) -> Int32 {
    sl_saga_start_ex(rt, typeName, input, nil, sagaID)
}

@implementation @_cdecl("sl_saga_start_options_init")
public func sl_saga_start_options_init(_ options: UnsafeMutablePointer<sl_saga_start_options>?) {
    initialize(options, sl_saga_start_options())
}

/// SL_SAGA_* for a saga state.
private func cState(_ state: SagaState) -> Int32 {
    switch state {
    case .running: Int32(SL_SAGA_RUNNING)
    case .compensating: Int32(SL_SAGA_COMPENSATING)
    case .completed: Int32(SL_SAGA_COMPLETED)
    case .failed: Int32(SL_SAGA_FAILED)
    case .failedCompensation: Int32(SL_SAGA_FAILED_COMPENSATION)
    case .compensated: Int32(SL_SAGA_COMPENSATED)
    }
}

/// A host's start callbacks. `release` runs when the last reference goes: after `started` and
/// `ended` were called, or when the runtime closes with the saga still in flight (then `ended`
/// never comes), on whichever thread dropped the reference.
private final class StartCallbacks: @unchecked Sendable {
    let options: sl_saga_start_options
    /// Set once the start was accepted: a refused start calls nothing, `release` included.
    var accepted = false

    init(_ options: sl_saga_start_options) { self.options = options }

    deinit { if accepted { options.release?(options.userdata) } }

    func started(_ result: Result<UInt64, SagaLaneError>) {
        switch result {
        case .success(let id): options.started?(options.userdata, 0, id)
        case .failure(let error): options.started?(options.userdata, errorCode(error), 0)
        }
    }

    func ended(_ end: SagaEnd) {
        var c = sl_saga_end(saga_id: end.sagaID, state: cState(end.state), reason: nil, durable: end.durable ? 1 : 0)
        if let reason = end.reason {
            reason.withCString { c.reason = $0; options.ended?(options.userdata, &c) }
        } else {
            options.ended?(options.userdata, &c)
        }
    }
}

@implementation @_cdecl("sl_saga_start_ex")
public func sl_saga_start_ex(_ rt: OpaquePointer?, _ typeName: UnsafePointer<CChar>?, _ input: UnsafePointer<CChar>?,
                             _ options: UnsafePointer<sl_saga_start_options>?, _ sagaID: UnsafeMutablePointer<UInt64>?) -> Int32 {
    callRuntime(rt) { runtime in
        let id = try startSaga(runtime, try string(typeName, "type_name"), try json(input, "input_json"), options)
        if let id { sagaID?.pointee = id }
    }
}

/// Starts a saga as `options` say; the id when the call waited for the running row.
private func startSaga(_ runtime: Runtime, _ name: String, _ input: JSON,
                       _ options: UnsafePointer<sl_saga_start_options>?) throws(SagaLaneError) -> UInt64? {
    var c = sl_saga_start_options()
    sl_saga_start_options_init(&c)
    if let options { c = try versioned(options, "sl_saga_start_options", defaults: c) }
    let room = Int(c.room_timeout_ms)
    let key = try optionalString(c.idempotency_key, "options->idempotency_key")
    let callbacks = StartCallbacks(c)
    let onEnded: (@Sendable (SagaEnd) -> Void)? = c.ended == nil && c.release == nil ? nil : { @Sendable in callbacks.ended($0) }
    guard c.started != nil else {
        let id = try runtime.startSaga(name: name, input: input, idempotencyKey: key, roomTimeoutMilliseconds: room, onEnded: onEnded)
        callbacks.accepted = true
        return id
    }
    try runtime.startSaga(name: name, input: input, idempotencyKey: key, roomTimeoutMilliseconds: room,
                          onStarted: { callbacks.started($0) }, onEnded: onEnded)
    callbacks.accepted = true
    return nil
}

@implementation @_cdecl("sl_saga_wait")
public func sl_saga_wait(_ rt: OpaquePointer?, _ sagaID: UInt64, _ timeoutMs: Int32, _ state: UnsafeMutablePointer<Int32>?,
                         _ reason: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    callRuntime(rt) { runtime in
        let end = try runtime.waitForSaga(id: sagaID, timeoutMilliseconds: Int(timeoutMs))
        state?.pointee = cState(end.state)
        reason?.pointee = nil
        if let text = end.reason { try handOut(text, to: reason) }
    }
}

@implementation @_cdecl("sl_saga_cancel")
public func sl_saga_cancel(_ rt: OpaquePointer?, _ sagaID: UInt64, _ reason: UnsafePointer<CChar>?) -> Int32 {
    callRuntime(rt) { runtime in
        try runtime.cancelSaga(id: sagaID, reason: try optionalString(reason, "reason") ?? "no reason given")
    }
}

// MARK: Targets

/// A host target's refusal of a command.
private struct TargetRefusal: Error, CustomStringConvertible {
    let code: Int32
    var description: String { "the host target returned \(code) (\(String(cString: sl_err_name(code))))" }
}

@implementation @_cdecl("sl_target_register")
public func sl_target_register(
    _ rt: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ fn: sl_target_fn?, _ userdata: UnsafeMutableRawPointer?,
    _ release: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?
) -> Int32 {
    call(rt, as: RuntimeHandle.self) { handle in
        let runtime = try handle.open()
        let name = try string(name, "name")
        guard let fn else { throw SagaLaneError(.invalidArgument, "fn is NULL") }
        let data = UserData(pointer: userdata)
        let target = CallbackTarget { step, _ in
            let rc = step.command.serialized.withCString { fn(data.pointer, step.sagaID, step.step, $0) }
            if rc != 0 { throw TargetRefusal(code: rc) }
        }
        try runtime.register(target: target, named: name)
        handle.releaseAtClose(Release(release, userdata))
    }
}

@implementation @_cdecl("sl_step_fail")
public func sl_step_fail(_ rt: OpaquePointer?, _ sagaID: UInt64, _ step: UInt32, _ reason: UnsafePointer<CChar>?) -> Int32 {
    callRuntime(rt) { runtime in
        guard sagaID != 0 else { throw SagaLaneError(.invalidArgument, "saga_id is 0") }
        try runtime.failStep(sagaID: sagaID, step: step, reason: try optionalString(reason, "reason") ?? "failed")
    }
}

// MARK: Events

@implementation @_cdecl("sl_publish")
public func sl_publish(_ rt: OpaquePointer?, _ type: UnsafePointer<CChar>?, _ sagaID: UInt64, _ payload: UnsafePointer<CChar>?) -> Int32 {
    callRuntime(rt) { runtime in
        let type = try nonEmpty(type, "type")
        try runtime.publish(Event(type: type, sagaID: sagaID == 0 ? nil : sagaID, payload: try json(payload, "payload_json")))
    }
}

/// What `sl_subscription *` points to: a bus subscription, or a lifecycle stream's.
enum Subscription: Sendable {
    case bus(EventDelivery)
    case lifecycle(LifecycleDelivery)
}

typealias SubscriptionHandle = ChildHandle<Subscription>

/// The payload of a lag notice.
private let laggedType = SL_EVENT_LAGGED

/// A subscribe call: checks `fn` and `out`, and hands out the subscription `body` makes.
func subscribe<Callback>(_ rt: OpaquePointer?, _ fn: Callback?, _ out: UnsafeMutablePointer<OpaquePointer?>?,
                         _ body: (Runtime, RuntimeHandle, Callback) throws(SagaLaneError) -> Subscription) -> Int32 {
    call(rt, as: RuntimeHandle.self) { handle in
        let runtime = try handle.open()
        guard let fn else { throw SagaLaneError(.invalidArgument, "fn is NULL") }
        let out = try required(out, "out")
        out.pointee = handle.adopt(SubscriptionHandle(runtime: runtime, object: try body(runtime, handle, fn), owner: handle))
    }
}

@implementation @_cdecl("sl_subscribe")
public func sl_subscribe(_ rt: OpaquePointer?, _ buffer: Int, _ fn: sl_event_fn?, _ userdata: UnsafeMutableRawPointer?,
                         _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    subscribe(rt, fn, out) { (runtime, _, fn) throws(SagaLaneError) in
        let data = UserData(pointer: userdata)
        return .bus(try runtime.subscribe(bufferSize: buffer == 0 ? EventBus.defaultBufferSize : min(buffer, 1 << 30)) { delivery in
            switch delivery {
            case .event(let event):
                withCEvent(event) { fn(data.pointer, $0) }
            case .lagged(let missed):
                withCEvent(Event(type: laggedType, payload: ["missed": .int(Int64(missed))])) { fn(data.pointer, $0) }
            }
        })
    }
}

@implementation @_cdecl("sl_unsubscribe")
public func sl_unsubscribe(_ sub: OpaquePointer?) {
    if sl_in_forked_child() != 0 { return }
    guard let sub, let handle = Handles.lookup(sub, as: SubscriptionHandle.self) else { return }
    if let owner = handle.owner { owner.forget(sub) } else { Handles.remove(sub) }
    switch handle.object {
    case .bus(let delivery): handle.runtime.unsubscribe(delivery)
    case .lifecycle(let delivery): handle.runtime.unsubscribe(delivery)
    }
}
