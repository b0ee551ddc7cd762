import CSagaLane
import Glibc
import SagaLane
import Synchronization

// The plumbing every shim shares: live handles, per-thread error messages, argument
// conversion, and the one mapping from the core's error codes to SL_E* codes. Nothing here
// knows what a saga or a lane does.

/// SL_ERRNO_MAP, by the core's codes: one line per code, in the header's order.
private let cCodes: [SagaLaneError.Code: Int] = [
    .invalidArgument: SL_EINVAL,
    .noMemory: SL_ENOMEM,
    .json: SL_EJSON,
    .utf8: SL_EUTF8,
    .notFound: SL_ENOTFOUND,
    .exists: SL_EEXIST,
    .closed: SL_ECLOSED,
    .state: SL_ESTATE,
    .refused: SL_EREFUSED,
    .log: SL_ELOG,
    .busy: SL_EBUSY,
    .readOnly: SL_EREADONLY,
    .corrupt: SL_ECORRUPT,
    .full: SL_EFULL,
    .unhealthy: SL_EUNHEALTHY,
    .notQueued: SL_ENOTQUEUED,
    .cancelled: SL_ECANCELED,
    .jobFailed: SL_EJOBFAILED,
    .loop: SL_ELOOP,
    .cantOpen: SL_ECANTOPEN,
    .thread: SL_ETHREAD,
    .again: SL_EAGAIN,
    .timedOut: SL_ETIMEDOUT,
    .locked: SL_ELOCKED,
]

/// The SL_E* code for `error`.
func errorCode(_ error: SagaLaneError) -> Int32 {
    Int32(cCodes[error.code] ?? SL_ESTATE)
}

/// The core's error for an SL_E* code a host returned (the inverse of `cCodes`).
func coreCode(_ code: Int32) -> SagaLaneError.Code? {
    cCodes.first { $0.value == Int(code) }?.key
}

/// The last error message of each thread, kept until that thread's next failure.
final class ErrorMessages: Sendable {
    private let messages = ConditionLock<[UInt: UnsafeMutablePointer<CChar>]>([:])

    private static var thread: UInt { UInt(bitPattern: Int(bitPattern: UInt(pthread_self()))) }

    func set(_ message: String) {
        let copy = strdup(message)
        messages.withLock { messages in
            free(messages[Self.thread])
            messages[Self.thread] = copy
        }
    }

    /// The calling thread's last message; "" when there is none.
    var current: UnsafePointer<CChar> {
        messages.withLock { $0[Self.thread].map { UnsafePointer($0) } } ?? StaticCString.empty
    }

    deinit {
        messages.withLock { messages in
            for message in messages.values { free(message) }
        }
    }
}

/// C strings that live as long as the process.
enum StaticCString {
    nonisolated(unsafe) static let empty: UnsafePointer<CChar> = UnsafePointer(strdup("")!)
    nonisolated(unsafe) static let closed: UnsafePointer<CChar> =
        UnsafePointer(strdup("the runtime is closed (or the handle is not one sagalane gave out)")!)
}

/// Messages of failures on NULL or dead handles, which have no runtime to keep them.
let orphanMessages = ErrorMessages()

/// A handle given to C: an object the table of live handles keeps, addressed by a pointer.
protocol CHandle: AnyObject, Sendable {
    /// The runtime whose error messages the handle's failures go to.
    var owner: RuntimeHandle? { get }
}

/// Every live handle, by the pointer C holds. A call looks its handle up here and holds it for
/// the call, so a handle closed meanwhile stays valid until the call returns, and a dead or
/// foreign pointer is an error instead of a crash.
enum Handles {
    private static let live = ConditionLock<[UInt: any CHandle]>([:])

    /// Registers `handle` under `identity`'s address (the handle's own by default), which is
    /// the pointer C gets.
    static func register(_ handle: any CHandle, as identity: AnyObject? = nil) -> OpaquePointer {
        // A named local, not `identity ?? handle` inline: Swift 6.3's optimizer fails its own
        // ownership verification on the inline form when a sanitizer is on (the fuzz build).
        let object: AnyObject = identity ?? handle
        let pointer = Unmanaged<AnyObject>.passUnretained(object).toOpaque()
        live.withLock { $0[UInt(bitPattern: pointer)] = handle }
        return OpaquePointer(pointer)
    }

    static func lookup<T: CHandle>(_ pointer: OpaquePointer?, as type: T.Type) -> T? {
        guard let pointer else { return nil }
        return live.withLock { $0[UInt(bitPattern: UnsafeRawPointer(pointer))] } as? T
    }

    static func remove(_ pointer: OpaquePointer) {
        _ = live.withLock { $0.removeValue(forKey: UInt(bitPattern: UnsafeRawPointer(pointer))) }
    }
}

/// Runs a call on handle `pointer`: looks it up, runs `body`, and turns a thrown error into
/// its code, with the message kept for `sl_runtime_errmsg`.
func call<T: CHandle>(_ pointer: OpaquePointer?, as type: T.Type, _ body: (T) throws -> Void) -> Int32 {
    // First, before any lock: in a forked child one may be held forever (see fork_guard.h).
    if sl_in_forked_child() != 0 { return Int32(SL_EFORKED) }
    guard let handle = Handles.lookup(pointer, as: type) else {
        let what = pointer == nil ? "a NULL handle was passed" : "the handle is closed or was never opened"
        orphanMessages.set(what)
        return Int32(pointer == nil ? SL_EINVAL : SL_ECLOSED)
    }
    do {
        try body(handle)
        return 0
    } catch {
        // Everything the core and these shims throw is a SagaLaneError; anything else is a
        // bug reported as SL_ESTATE rather than a trap.
        let error = error as? SagaLaneError ?? SagaLaneError(.state, "\(error)")
        (handle.owner?.messages ?? orphanMessages).set(error.message)
        return errorCode(error)
    }
}

/// `call` on a runtime handle whose runtime opened.
func callRuntime(_ pointer: OpaquePointer?, _ body: (Runtime) throws -> Void) -> Int32 {
    call(pointer, as: RuntimeHandle.self) { handle in try body(try handle.open()) }
}

/// A handle whose object belongs to a runtime (a lane, a subscription): it lives until the
/// runtime closes, and its failures go to the runtime's messages.
final class ChildHandle<Object: Sendable>: CHandle {
    let runtime: Runtime
    let object: Object
    let owner: RuntimeHandle?

    init(runtime: Runtime, object: Object, owner: RuntimeHandle) {
        self.runtime = runtime
        self.object = object
        self.owner = owner
    }
}

// MARK: Arguments

/// A required UTF-8 string argument.
func string(_ pointer: UnsafePointer<CChar>?, _ name: String) throws(SagaLaneError) -> String {
    guard let pointer else { throw SagaLaneError(.invalidArgument, "\(name) is NULL") }
    guard let text = String(validatingCString: pointer) else { throw SagaLaneError(.utf8, "\(name) is not valid UTF-8") }
    return text
}

/// A required, non-empty UTF-8 string argument.
func nonEmpty(_ pointer: UnsafePointer<CChar>?, _ name: String) throws(SagaLaneError) -> String {
    let text = try string(pointer, name)
    guard !text.isEmpty else { throw SagaLaneError(.invalidArgument, "\(name) is empty") }
    return text
}

/// An optional UTF-8 string argument: NULL gives `nil`.
func optionalString(_ pointer: UnsafePointer<CChar>?, _ name: String) throws(SagaLaneError) -> String? {
    guard let pointer else { return nil }
    return try string(pointer, name)
}

/// A JSON text argument; NULL is `null`.
func json(_ pointer: UnsafePointer<CChar>?, _ name: String) throws(SagaLaneError) -> JSON {
    guard let pointer else { return .null }
    let length = strlen(pointer)
    // Before anything is parsed or copied: the log would refuse it anyway.
    try SagaLog.checkValueSize(length, of: name)
    do {
        return try pointer.withMemoryRebound(to: UInt8.self, capacity: length) {
            try JSON(parsing: UnsafeBufferPointer(start: $0, count: length))
        }
    } catch {
        // The parser reports invalid UTF-8 as malformed JSON; say which it was.
        if String(validatingCString: pointer) == nil { throw SagaLaneError(.utf8, "\(name) is not valid UTF-8") }
        throw SagaLaneError(.json, "\(name): \(error)", underlying: error)
    }
}

/// Hands `text` to C: a malloc'd copy the host frees with `sl_free`.
func handOut(_ text: String, to out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) throws(SagaLaneError) {
    guard let out else { return }
    guard let copy = strdup(text) else { throw SagaLaneError(.noMemory, "out of memory") }
    out.pointee = copy
}

/// A required out-parameter.
func required<T>(_ pointer: UnsafeMutablePointer<T>?, _ name: String) throws(SagaLaneError) -> UnsafeMutablePointer<T> {
    guard let pointer else { throw SagaLaneError(.invalidArgument, "\(name) is NULL") }
    return pointer
}

/// A copy of a versioned struct (leading `size` field) the host passed: fields past the
/// host's `size` keep the values `defaults` has (zeros, unless given).
func versioned<T>(_ pointer: UnsafePointer<T>, _ name: String, defaults: T) throws(SagaLaneError) -> T {
    let size = try structSize(UnsafeRawPointer(pointer).load(as: Int.self), name)
    var copy = defaults
    withUnsafeMutableBytes(of: &copy) { target in
        target.copyMemory(from: UnsafeRawBufferPointer(start: pointer, count: min(size, target.count)))
    }
    return copy
}

/// Sets a versioned struct (leading `size` field) to `value`, its `size` to its own.
func initialize<T>(_ pointer: UnsafeMutablePointer<T>?, _ value: T) {
    guard let pointer else { return }
    pointer.pointee = value
    UnsafeMutableRawPointer(pointer).storeBytes(of: MemoryLayout<T>.size, as: Int.self)
}

/// Copies `value` into the versioned struct (leading `size` field) the host passed for an
/// answer, as far as the host's `size` reaches; the host's `size` stays.
func handOut<T>(_ value: T, to out: UnsafeMutablePointer<T>?, _ name: String) throws(SagaLaneError) {
    guard let out else { throw SagaLaneError(.invalidArgument, "out is NULL") }
    let size = try structSize(UnsafeRawPointer(out).load(as: Int.self), name)
    withUnsafeBytes(of: value) { source in
        UnsafeMutableRawPointer(out).copyMemory(from: source.baseAddress!, byteCount: min(size, source.count))
    }
    UnsafeMutableRawPointer(out).storeBytes(of: size, as: Int.self)
}

/// A C option's value in ms, 0 meaning `fallback`.
func milliseconds(_ value: some BinaryInteger, or fallback: Duration?) -> Duration? {
    value == 0 ? fallback : .milliseconds(Int64(value))
}

/// The core's value for a C constant, from `choices`; anything else is refused, naming them.
func choice<T>(_ value: Int32, _ field: String, _ choices: KeyValuePairs<Int, (name: String, value: T)>) throws(SagaLaneError) -> T {
    if let match = choices.first(where: { $0.key == Int(value) }) { return match.value.value }
    throw SagaLaneError(.invalidArgument, "\(field) \(value) is not one of \(choices.map(\.value.name).joined(separator: ", "))")
}

/// Whether a versioned struct (leading `size` field) is big enough to hold `field`.
func has<Root, Value>(_ size: Int, _ field: KeyPath<Root, Value>) -> Bool {
    guard let offset = MemoryLayout<Root>.offset(of: field) else { return false }
    return size >= offset + MemoryLayout<Value>.size
}

/// A versioned struct's `size` field, checked to cover at least the field itself.
func structSize(_ size: Int, _ name: String) throws(SagaLaneError) -> Int {
    guard size >= MemoryLayout<Int>.size else {
        throw SagaLaneError(.invalidArgument, "\(name).size is \(size): set it to sizeof(\(name)) or call its _init function")
    }
    return size
}

/// A host's `void *userdata`, carried across threads; the host vouches for its thread safety.
struct UserData: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer?
}

/// A host's release callback for a userdata, called at most once.
final class Release: @unchecked Sendable {
    private let function: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?
    private let userdata: UnsafeMutableRawPointer?
    private let done = Atomic<Bool>(false)

    init(_ function: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?, _ userdata: UnsafeMutableRawPointer?) {
        self.function = function
        self.userdata = userdata
    }

    func callAsFunction() {
        guard !done.exchange(true, ordering: .acquiringAndReleasing) else { return }
        function?(userdata)
    }
}
