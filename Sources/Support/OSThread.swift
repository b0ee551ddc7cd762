import Glibc

/// What one of sagalane's own threads is for. Host calls that block check it: waiting for
/// a job from a lane worker, or for the loop from the loop thread, could wait forever.
public enum ThreadRole: Int, Sendable {
    case eventLoop = 1, logWriter, laneWorker, delivery, hostCallbacks, other
}

/// A joinable operating-system thread running one closure.
///
/// The core owns a few long-lived threads (the event loop, the log writer, lane workers) whose
/// work blocks in C (`uv_run`, `fsync`, host jobs). They must not run on Swift's cooperative
/// pool, and Foundation's `Thread` is not available to the library targets.
public final class OSThread: @unchecked Sendable {
    private var handle = pthread_t()

    /// Starts a thread running `body`. `name` is kept for diagnostics.
    /// - Throws: `SagaLaneError` `.thread` when the system refuses a new thread (the process or
    ///   user thread limit, or memory for its stack): a host hitting its limits gets an error,
    ///   not a crash.
    public init(name: String, role: ThreadRole = .other, body: @escaping @Sendable () -> Void) throws(SagaLaneError) {
        let start = Unmanaged.passRetained(Start(name: name, role: role, body: body))
        let box = start.toOpaque()
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        pthread_attr_setstacksize(&attr, 1 << 20)
        let rc = pthread_create(&handle, &attr, { raw in
            let start = Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue()
            pthread_setspecific(OSThread.ownedKey, UnsafeRawPointer(bitPattern: start.role.rawValue))
            OSThread.setSystemName(start.name)
            start.body()
            return nil
        }, box)
        pthread_attr_destroy(&attr)
        if rc != 0 {
            start.release()
            let reason = String(cString: strerror(rc))
            let hint = rc == EAGAIN ? " (the process or user thread limit was reached)" : ""
            throw SagaLaneError(.thread, "cannot start thread \(name): \(reason)\(hint)")
        }
    }

    /// Waits for the thread to finish. Call once, and not together with `detach()`.
    public func join() {
        pthread_join(handle, nil)
    }

    /// Lets the thread end on its own without being joined (for a thread that stops itself).
    public func detach() {
        pthread_detach(handle)
    }

    /// Whether the calling thread is one of sagalane's own (event loop, log writer, lane
    /// worker, event delivery). A host call that would wait for such a thread to finish must
    /// not run on one.
    public static var isSagalaneThread: Bool { pthread_getspecific(ownedKey) != nil }

    /// The calling thread's role, when it is one of sagalane's own.
    public static var currentRole: ThreadRole? {
        ThreadRole(rawValue: Int(bitPattern: pthread_getspecific(ownedKey)))
    }

    private static let ownedKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// Names the calling thread for top -H, gdb, perf and /proc: "sagalane-" shortened to
    /// "sl-", since Linux keeps 15 bytes ("sl-lane-gpu", "sl-log-writer").
    private static func setSystemName(_ name: String) {
        var short = Array(name.utf8)
        if short.starts(with: "sagalane-".utf8) { short.replaceSubrange(0..<9, with: "sl-".utf8) }
        short = Array(short.prefix(15))
        while !short.isEmpty, String(validating: short, as: UTF8.self) == nil { short.removeLast() }
        // pthread_setname_np and prctl are not visible to Swift here; this file is what they write.
        let fd = open("/proc/thread-self/comm", O_WRONLY)
        guard fd >= 0 else { return }
        _ = short.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    /// Whether the calling thread is this thread.
    public var isCurrent: Bool { pthread_equal(pthread_self(), handle) != 0 }

    private final class Start {
        let name: String
        let role: ThreadRole
        let body: @Sendable () -> Void
        init(name: String, role: ThreadRole, body: @escaping @Sendable () -> Void) {
            self.name = name
            self.role = role
            self.body = body
        }
    }
}
