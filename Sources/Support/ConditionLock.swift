import Glibc

/// A value guarded by a mutex, with condition variables to wait for it to change: the one
/// lock of the code base.
///
/// It is a pthread mutex, which ThreadSanitizer understands; the standard library's `Mutex`
/// waits on a futex of its own that TSan cannot see, so every access it guards would be
/// reported as a race.
///
/// Every access is scoped to a closure, so no code path can forget to unlock: `withLock` runs
/// a closure with the state locked; `withLock(waitingOn:until:_:)` first waits, with the lock
/// released, until a predicate on the state holds. Whoever changes what a waiter waits for
/// signals its condition (inside or after the closure).
///
/// The state lives behind a pointer rather than in a stored property: the mutex already makes
/// access exclusive, and Swift's run-time exclusivity check on a class's stored property would
/// cost more than the work most closures do.
public final class ConditionLock<State>: @unchecked Sendable {
    /// A condition variable tied to this lock, on the monotonic clock. A lock has one of its
    /// own (`condition`); `makeCondition()` gives more, so a waker can wake one chosen waiter.
    public final class Condition: @unchecked Sendable {
        @usableFromInline let cond: UnsafeMutablePointer<pthread_cond_t>

        fileprivate init() {
            cond = .allocate(capacity: 1)
            var attributes = pthread_condattr_t()
            pthread_condattr_init(&attributes)
            pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
            pthread_cond_init(cond, &attributes)
            pthread_condattr_destroy(&attributes)
        }

        deinit {
            pthread_cond_destroy(cond)
            cond.deallocate()
        }

        /// Wakes one waiter.
        @inlinable public func signal() { pthread_cond_signal(cond) }
        /// Wakes every waiter.
        @inlinable public func broadcast() { pthread_cond_broadcast(cond) }
    }

    @usableFromInline let mutex: UnsafeMutablePointer<pthread_mutex_t>
    @usableFromInline let state: UnsafeMutablePointer<State>
    /// The lock's own condition, what `withLock(waitingOn:…)` waits on by default.
    public let condition = Condition()

    public init(_ initial: State) {
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        state = .allocate(capacity: 1)
        state.initialize(to: initial)
    }

    deinit {
        state.deinitialize(count: 1)
        state.deallocate()
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Another condition variable on this lock.
    public func makeCondition() -> Condition { Condition() }

    /// Runs `body` with the state locked.
    @inlinable
    public func withLock<R, E: Error>(_ body: (inout State) throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&state.pointee)
    }

    /// Waits on `condition` (the lock's own when `nil`) until `ready` holds, then runs `body`,
    /// all with the state locked except while waiting.
    @inlinable
    public func withLock<R, E: Error>(waitingOn condition: Condition? = nil, until ready: (inout State) -> Bool,
                                      _ body: (inout State) throws(E) -> R) throws(E) -> R {
        let cond = (condition ?? self.condition).cond
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while !ready(&state.pointee) { pthread_cond_wait(cond, mutex) }
        return try body(&state.pointee)
    }

    /// As `withLock(waitingOn:until:_:)`, giving up after `milliseconds`.
    /// - Returns: What `body` returned, or `nil` when `ready` still did not hold in time (then
    ///   `body` did not run).
    public func withLock<R, E: Error>(waitingOn condition: Condition? = nil, until ready: (inout State) -> Bool,
                                      timeoutMilliseconds milliseconds: Int, _ body: (inout State) throws(E) -> R) throws(E) -> R? {
        let cond = (condition ?? self.condition).cond
        var deadline = timespec()
        clock_gettime(CLOCK_MONOTONIC, &deadline)
        let millis = max(0, milliseconds)
        let nanos = Int(deadline.tv_nsec) + (millis % 1000) * 1_000_000
        deadline.tv_sec += millis / 1000 + nanos / 1_000_000_000
        deadline.tv_nsec = nanos % 1_000_000_000
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while !ready(&state.pointee) {
            if pthread_cond_timedwait(cond, mutex, &deadline) == ETIMEDOUT {
                guard ready(&state.pointee) else { return nil }
                break
            }
        }
        return try body(&state.pointee)
    }
}

/// A recursive mutex, for a lock a thread may take again while holding it (running the event
/// loop from a call the loop's own callback made).
public final class RecursiveLock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    public init() {
        var attributes = pthread_mutexattr_t()
        pthread_mutexattr_init(&attributes)
        pthread_mutexattr_settype(&attributes, Int32(PTHREAD_MUTEX_RECURSIVE_NP))
        pthread_mutex_init(mutex, &attributes)
        pthread_mutexattr_destroy(&attributes)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` holding the lock.
    public func withLock<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Runs `body` holding the lock if it is free now; `nil` (and `body` not run) if another
    /// thread holds it.
    public func withLockIfAvailable<R>(_ body: () throws -> R) rethrows -> R? {
        guard pthread_mutex_trylock(mutex) == 0 else { return nil }
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Takes the lock until `unlock()`, for a hold that spans calls (a closing thread that
    /// takes the loop over for the rest of the close).
    public func lock() { pthread_mutex_lock(mutex) }
    public func unlock() { pthread_mutex_unlock(mutex) }
}
