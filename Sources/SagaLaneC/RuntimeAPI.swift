import CSagaLane
import Glibc
import SagaLane
import Synchronization

/// What `sl_runtime *` points to: the runtime (absent when its open failed), the error
/// messages of calls on it, and what must be released when it closes.
final class RuntimeHandle: CHandle {
    let runtime: Runtime?
    private let openFailure: SagaLaneError?
    let messages = ErrorMessages()

    private struct Owned {
        var releases: [Release] = []
        /// The addresses of the handles registered through this runtime.
        var children: [UInt] = []
        var sagaTypes: [CSagaType] = []
    }
    private let owned = ConditionLock(Owned())

    var owner: RuntimeHandle? { self }

    init(runtime: Runtime) {
        self.runtime = runtime
        openFailure = nil
    }

    init(failure: SagaLaneError) {
        runtime = nil
        openFailure = failure
        messages.set(failure.message)
    }

    /// The runtime, or the reason there is none.
    func open() throws(SagaLaneError) -> Runtime {
        guard let runtime else {
            throw SagaLaneError(.closed, "the runtime's open failed: \(openFailure?.message ?? "unknown reason")")
        }
        return runtime
    }

    /// Calls `release` when the runtime closes.
    func releaseAtClose(_ release: Release) {
        owned.withLock { $0.releases.append(release) }
    }

    /// Keeps a C-defined saga type until the runtime closes and its last saga is gone.
    func keep(_ type: CSagaType) {
        owned.withLock { $0.sagaTypes.append(type) }
    }

    /// Registers a handle that lives until the runtime closes, under `identity`'s address
    /// (the handle's own by default).
    func adopt(_ child: any CHandle, as identity: AnyObject? = nil) -> OpaquePointer {
        let pointer = Handles.register(child, as: identity)
        let address = UInt(bitPattern: UnsafeRawPointer(pointer))
        owned.withLock { $0.children.append(address) }
        return pointer
    }

    func forget(_ child: OpaquePointer) {
        Handles.remove(child)
        let address = UInt(bitPattern: UnsafeRawPointer(child))
        owned.withLock { $0.children.removeAll { $0 == address } }
    }

    /// Unregisters the handle and its children, closes the runtime, then releases the host's
    /// userdata (saga types: once their last saga is gone too).
    func close() {
        let owned = self.owned.withLock { owned -> Owned in
            defer { owned = Owned() }
            return owned
        }
        for child in owned.children { Handles.remove(OpaquePointer(bitPattern: child)!) }
        Handles.remove(OpaquePointer(Unmanaged.passUnretained(self).toOpaque()))
        let releases = owned.releases, sagaTypes = owned.sagaTypes
        let finish: @Sendable () -> Void = {
            for release in releases { release() }
            for type in sagaTypes { type.releaseWhenIdle() }
        }
        if let runtime { runtime.close(completion: finish) } else { finish() }
    }
}

@implementation @_cdecl("sl_runtime_options_init")
public func sl_runtime_options_init(_ options: UnsafeMutablePointer<sl_runtime_options>?) {
    guard let options else { return }
    options.pointee = sl_runtime_options()
    options.pointee.size = MemoryLayout<sl_runtime_options>.size
    options.pointee.durability = Int32(SL_DURABILITY_FULL)
    options.pointee.busy_timeout_ms = RuntimeOptions.defaultBusyTimeoutMilliseconds
    options.pointee.loop_mode = Int32(SL_LOOP_THREAD)
    options.pointee.clock = Int32(SL_CLOCK_SYSTEM)
}

/// Reads `sl_runtime_options`, honouring its size (fields it lacks keep their defaults).
private func runtimeOptions(_ pointer: UnsafePointer<sl_runtime_options>?) throws(SagaLaneError) -> RuntimeOptions {
    var options = RuntimeOptions()
    guard let pointer else { return options }
    let c = pointer.pointee
    let size = try structSize(c.size, "sl_runtime_options")
    if has(size, \sl_runtime_options.db_path) { options.databasePath = try optionalString(c.db_path, "options.db_path") }
    if has(size, \sl_runtime_options.durability) {
        options.durability = try choice(c.durability, "options.durability",
                                        [SL_DURABILITY_FULL: ("SL_DURABILITY_FULL", .full), SL_DURABILITY_NORMAL: ("SL_DURABILITY_NORMAL", .normal)])
    }
    if has(size, \sl_runtime_options.busy_timeout_ms) {
        guard c.busy_timeout_ms >= 0 else { throw SagaLaneError(.invalidArgument, "options.busy_timeout_ms is negative") }
        options.busyTimeoutMilliseconds = c.busy_timeout_ms == 0 ? RuntimeOptions.defaultBusyTimeoutMilliseconds : c.busy_timeout_ms
    }
    if has(size, \sl_runtime_options.loop_mode) {
        options.loopMode = try choice(c.loop_mode, "options.loop_mode",
                                      [SL_LOOP_THREAD: ("SL_LOOP_THREAD", .ownThread), SL_LOOP_HOST: ("SL_LOOP_HOST", .host)])
    }
    if has(size, \sl_runtime_options.clock) {
        options.clock = try choice(c.clock, "options.clock", [SL_CLOCK_SYSTEM: ("SL_CLOCK_SYSTEM", .system), SL_CLOCK_MANUAL: ("SL_CLOCK_MANUAL", .manual)])
    }
    if has(size, \sl_runtime_options.read_only) { options.readOnly = c.read_only != 0 }
    return options
}

@implementation @_cdecl("sl_runtime_open")
public func sl_runtime_open(_ options: UnsafePointer<sl_runtime_options>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    if sl_in_forked_child() != 0 {
        out?.pointee = nil
        return Int32(SL_EFORKED)
    }
    guard let out else {
        orphanMessages.set("sl_runtime_open: out is NULL")
        return Int32(SL_EINVAL)
    }
    let handle: RuntimeHandle
    var code: Int32 = 0
    do throws(SagaLaneError) {
        handle = RuntimeHandle(runtime: try Runtime(options: try runtimeOptions(options)))
    } catch {
        code = errorCode(error)
        handle = RuntimeHandle(failure: error)
    }
    out.pointee = Handles.register(handle)
    return code
}

@implementation @_cdecl("sl_runtime_start")
public func sl_runtime_start(_ rt: OpaquePointer?) -> Int32 {
    callRuntime(rt) { _ = try $0.start() }
}

@implementation @_cdecl("sl_runtime_run")
public func sl_runtime_run(_ rt: OpaquePointer?, _ mode: Int32) -> Int32 {
    callRuntime(rt) { runtime in
        try runtime.run(choice(mode, "mode", [SL_RUN_DEFAULT: ("SL_RUN_DEFAULT", .default), SL_RUN_ONCE: ("SL_RUN_ONCE", .once),
                                              SL_RUN_NOWAIT: ("SL_RUN_NOWAIT", .noWait)]))
    }
}

@implementation @_cdecl("sl_runtime_stop")
public func sl_runtime_stop(_ rt: OpaquePointer?) -> Int32 {
    callRuntime(rt) { $0.stopRunning() }
}

/// A host-mode call that answers a non-negative number (or a negative SL_E* code).
private func hostLoopValue(_ rt: OpaquePointer?, _ what: String, _ body: (Runtime) -> Int32) -> Int32 {
    var value: Int32 = 0
    let code = callRuntime(rt) { runtime in
        guard runtime.options.loopMode == .host else {
            throw SagaLaneError(.state, "the \(what) is for SL_LOOP_HOST runtimes; this one runs its loop on its own thread")
        }
        value = body(runtime)
    }
    return code == 0 ? value : code
}

@implementation @_cdecl("sl_runtime_backend_fd")
public func sl_runtime_backend_fd(_ rt: OpaquePointer?) -> Int32 {
    hostLoopValue(rt, "backend fd") { $0.backendFD }
}

@implementation @_cdecl("sl_runtime_backend_timeout")
public func sl_runtime_backend_timeout(_ rt: OpaquePointer?) -> Int32 {
    hostLoopValue(rt, "backend timeout") { $0.backendTimeoutMilliseconds }
}

@implementation @_cdecl("sl_runtime_advance_time")
public func sl_runtime_advance_time(_ rt: OpaquePointer?, _ ms: UInt64) -> Int32 {
    callRuntime(rt) { runtime in
        guard ms <= UInt64(Int64.max / 1_000_000) else { throw SagaLaneError(.invalidArgument, "ms \(ms) is too large") }
        try runtime.advanceTime(by: .milliseconds(Int64(ms)))
    }
}

@implementation @_cdecl("sl_runtime_health")
public func sl_runtime_health(_ rt: OpaquePointer?) -> Int32 {
    callRuntime(rt) { runtime in
        if let reason = runtime.unhealthyReason {
            throw SagaLaneError(.unhealthy, "the log is unhealthy: \(reason)")
        }
    }
}

@implementation @_cdecl("sl_runtime_close")
public func sl_runtime_close(_ rt: OpaquePointer?) {
    if sl_in_forked_child() != 0 { return }
    Handles.lookup(rt, as: RuntimeHandle.self)?.close()
}

@implementation @_cdecl("sl_runtime_errmsg")
public func sl_runtime_errmsg(_ rt: OpaquePointer?) -> UnsafePointer<CChar>? {
    if sl_in_forked_child() != 0 { return sl_strerror(Int32(SL_EFORKED)) }
    guard rt != nil else { return orphanMessages.current }
    return Handles.lookup(rt, as: RuntimeHandle.self)?.messages.current ?? StaticCString.closed
}
