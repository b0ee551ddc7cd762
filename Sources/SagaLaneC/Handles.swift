import CSagaLane
import Glibc
import SagaLane
import Synchronization

// The plumbing every shim shares: live handles, per-thread error messages, and the one
// mapping from Swift errors to SL_E* codes. Nothing here knows what a saga or a lane does.

/// A failure detected at the boundary itself (a NULL pointer, invalid UTF-8, bad JSON).
struct CallError: Error, CustomStringConvertible {
    let code: Int32
    let message: String
    init(_ code: Int, _ message: String) {
        self.code = Int32(code)
        self.message = message
    }
    var description: String { message }
}

/// The SL_E* code for an error thrown by the core.
func errorCode(_ error: any Error) -> Int32 {
    switch error {
    case let error as CallError: return error.code
    case let error as SagaLogError: return logErrorCode(error)
    case is JSONError: return Int32(SL_EJSON)
    case is EventLoopError: return Int32(SL_ELOOP)
    case let error as RuntimeError:
        switch error.kind {
        case .thread: return Int32(SL_ETHREAD)
        case .closed: return Int32(SL_ECLOSED)
        case .readOnly: return Int32(SL_EREADONLY)
        case .invalidArgument: return Int32(SL_EINVAL)
        default: return Int32(SL_ESTATE)
        }
    case let error as CoordinatorError:
        switch error.kind {
        case .invalidArgument: return Int32(SL_EINVAL)
        case .inputRefused: return Int32(SL_EREFUSED)
        case .unknownSagaType, .unknownSaga, .unknownTarget: return Int32(SL_ENOTFOUND)
        case .duplicateName: return Int32(SL_EEXIST)
        case .logUnhealthy: return Int32(SL_EUNHEALTHY)
        case .logWrite: return Int32(SL_ELOG)
        case .closed: return Int32(SL_ECLOSED)
        default: return Int32(SL_ESTATE)
        }
    case let error as LaneError:
        switch error.kind {
        case .notQueued: return Int32(SL_ENOTQUEUED)
        case .notFound, .unknownLane: return Int32(SL_ENOTFOUND)
        case .duplicateJobID, .duplicateLane: return Int32(SL_EEXIST)
        case .shutDown: return Int32(SL_ECLOSED)
        case .jobFailed: return Int32(SL_EJOBFAILED)
        case .cancelled: return Int32(SL_ECANCELED)
        case .invalidArgument: return Int32(SL_EINVAL)
        default: return error.logError.map(logErrorCode) ?? Int32(SL_ELOG)
        }
    default:
        return Int32(SL_ESTATE)
    }
}

private func logErrorCode(_ error: SagaLogError) -> Int32 {
    if error.isClosed { return Int32(SL_ECLOSED) }
    if error.isNotFound { return Int32(SL_ENOTFOUND) }
    if error.isReadOnly { return Int32(SL_EREADONLY) }
    if error.isBusy { return Int32(SL_EBUSY) }
    if error.isCorrupt || error.code == SagaLogError.schemaTooNewCode { return Int32(SL_ECORRUPT) }
    if error.isFull { return Int32(SL_EFULL) }
    if error.isCantOpen { return Int32(SL_ECANTOPEN) }
    if error.code == SagaLogError.threadStartCode { return Int32(SL_ETHREAD) }
    if error.isConstraint { return Int32(SL_EEXIST) }
    return Int32(SL_ELOG)
}

/// The last error message of each thread, kept until that thread's next failure.
final class ErrorMessages: Sendable {
    private let messages = Mutex<[UInt: UnsafeMutablePointer<CChar>]>([:])

    private static var thread: UInt { UInt(bitPattern: Int(bitPattern: UInt(pthread_self()))) }

    func set(_ message: String) {
        let copy = CString(strdup(message))
        let thread = Self.thread
        let old = messages.withLock { messages -> CString in
            defer { messages[thread] = copy.pointer }
            return CString(messages[thread])
        }
        free(old.pointer)
    }

    /// The calling thread's last message; "" when there is none.
    var current: UnsafePointer<CChar> {
        if let message = messages.withLock({ $0[Self.thread] }) { return UnsafePointer(message) }
        return StaticCString.empty
    }

    deinit {
        messages.withLock { messages in
            for message in messages.values { free(message) }
        }
    }
}

/// A C string pointer handed between threads under a lock.
private struct CString: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<CChar>?
    init(_ pointer: UnsafeMutablePointer<CChar>?) { self.pointer = pointer }
}

/// C strings that live as long as the process.
enum StaticCString {
    nonisolated(unsafe) static let empty: UnsafePointer<CChar> = UnsafePointer(strdup("")!)
    nonisolated(unsafe) static let closed: UnsafePointer<CChar> =
        UnsafePointer(strdup("the runtime is closed (or the handle is not one sagalane gave out)")!)
}

/// Messages of failures on NULL or dead handles, which have no runtime to keep them.
let orphanMessages = ErrorMessages()

/// A handle given to C: an object the registry keeps alive, addressed by its pointer.
protocol CHandle: AnyObject, Sendable {
    /// The runtime whose error messages the handle's failures go to.
    var owner: RuntimeHandle? { get }
}

/// Every live handle. A call looks its handle up here and holds it for the call, so a handle
/// closed meanwhile stays valid until the call returns, and a dead or foreign pointer is an
/// error instead of a crash.
enum Handles {
    private static let live = Mutex<[UInt: any CHandle]>([:])

    static func register(_ handle: any CHandle) -> OpaquePointer {
        let pointer = Unmanaged<AnyObject>.passUnretained(handle).toOpaque()
        live.withLock { $0[UInt(bitPattern: pointer)] = handle }
        return OpaquePointer(pointer)
    }

    static func lookup<T: CHandle>(_ pointer: OpaquePointer?, as type: T.Type) -> T? {
        guard let pointer else { return nil }
        return live.withLock { $0[UInt(bitPattern: UnsafeRawPointer(pointer))] } as? T
    }

    static func remove(_ handle: any CHandle) {
        let key = UInt(bitPattern: Unmanaged<AnyObject>.passUnretained(handle).toOpaque())
        _ = live.withLock { $0.removeValue(forKey: key) }
    }
}

/// Runs a call on handle `pointer`: looks it up, runs `body`, and turns a thrown error into
/// its code, with the message kept for `sl_runtime_errmsg`.
func call<T: CHandle>(_ pointer: OpaquePointer?, as type: T.Type, _ body: (T) throws -> Void) -> Int32 {
    guard let handle = Handles.lookup(pointer, as: type) else {
        let what = pointer == nil ? "a NULL handle was passed" : "the handle is closed or was never opened"
        orphanMessages.set(what)
        return Int32(pointer == nil ? SL_EINVAL : SL_ECLOSED)
    }
    do {
        try body(handle)
        return 0
    } catch {
        let code = errorCode(error)
        (handle.owner?.messages ?? orphanMessages).set("\(error)")
        return code
    }
}

// MARK: Arguments

/// A required UTF-8 string argument.
func string(_ pointer: UnsafePointer<CChar>?, _ name: String) throws(CallError) -> String {
    guard let pointer else { throw CallError(SL_EINVAL, "\(name) is NULL") }
    guard let text = String(validatingCString: pointer) else { throw CallError(SL_EUTF8, "\(name) is not valid UTF-8") }
    return text
}

/// An optional UTF-8 string argument: NULL gives `nil`.
func optionalString(_ pointer: UnsafePointer<CChar>?, _ name: String) throws(CallError) -> String? {
    guard let pointer else { return nil }
    return try string(pointer, name)
}

/// A JSON text argument; NULL is `null`.
func json(_ pointer: UnsafePointer<CChar>?, _ name: String) throws(CallError) -> JSON {
    guard let pointer else { return .null }
    let length = strlen(pointer)
    do {
        return try pointer.withMemoryRebound(to: UInt8.self, capacity: length) {
            try JSON(parsing: UnsafeBufferPointer(start: $0, count: length))
        }
    } catch {
        // The parser reports invalid UTF-8 as malformed JSON; say which it was.
        if String(validatingCString: pointer) == nil { throw CallError(SL_EUTF8, "\(name) is not valid UTF-8") }
        throw CallError(SL_EJSON, "\(name): \(error)")
    }
}

/// Hands `text` to C: a malloc'd copy the host frees with `sl_free`.
func handOut(_ text: String, to out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) throws(CallError) {
    guard let out else { return }
    guard let copy = strdup(text) else { throw CallError(SL_ENOMEM, "out of memory") }
    out.pointee = copy
}

/// Whether a versioned struct (leading `size` field) is big enough to hold `field`.
func has<Root, Value>(_ size: Int, _ field: KeyPath<Root, Value>) -> Bool {
    guard let offset = MemoryLayout<Root>.offset(of: field) else { return false }
    return size >= offset + MemoryLayout<Value>.size
}

/// A versioned struct's `size` field, checked to cover at least the field itself.
func structSize(_ size: Int, _ name: String) throws(CallError) -> Int {
    guard size >= MemoryLayout<Int>.size else {
        throw CallError(SL_EINVAL, "\(name).size is \(size): set it to sizeof(\(name)) or call its _init function")
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
