import Glibc

/// One value handed from one thread to others that block for it, with a bounded wait for
/// callers that must do something else meanwhile (run the event loop, in host mode).
public final class Completion<Value: Sendable>: @unchecked Sendable {
    private var value: Value?
    private var onSet: (@Sendable () -> Void)?
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let ready = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    public init() {
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(ready, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(ready)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        ready.deallocate()
    }

    /// Sets the value (the first call wins) and wakes every waiter.
    public func set(_ value: Value) {
        pthread_mutex_lock(mutex)
        let first = self.value == nil
        if first { self.value = value }
        let notify = first ? onSet : nil
        onSet = nil
        pthread_cond_broadcast(ready)
        pthread_mutex_unlock(mutex)
        notify?()
    }

    /// Calls `wake` once the value is set (at once if it already is), for a waiter blocked
    /// somewhere other than `wait` (in the event loop's poll).
    public func notify(_ wake: @escaping @Sendable () -> Void) {
        pthread_mutex_lock(mutex)
        let already = value != nil
        if !already { onSet = wake }
        pthread_mutex_unlock(mutex)
        if already { wake() }
    }

    /// The value, if it was set.
    public var current: Value? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return value
    }

    /// Blocks until the value is set.
    public func wait() -> Value {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while value == nil { pthread_cond_wait(ready, mutex) }
        return value!
    }

    /// Blocks until the value is set or `milliseconds` passed.
    public func wait(milliseconds: Int) -> Value? {
        var deadline = timespec()
        clock_gettime(CLOCK_MONOTONIC, &deadline)
        let nanos = Int(deadline.tv_nsec) + (milliseconds % 1000) * 1_000_000
        deadline.tv_sec += milliseconds / 1000 + nanos / 1_000_000_000
        deadline.tv_nsec = nanos % 1_000_000_000
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while value == nil {
            if pthread_cond_timedwait(ready, mutex, &deadline) == ETIMEDOUT { break }
        }
        return value
    }
}
