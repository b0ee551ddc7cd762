import Glibc

/// A thread of its own that runs closures one at a time, in the order they were queued.
///
/// Host callbacks that report outcomes (a lane job's `done`) run here rather than on the
/// thread that learned the outcome (a lane worker, the log writer): a host callback may then
/// call anything, a blocking submit included, without stalling or deadlocking the runtime.
public final class CallbackQueue: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    // Guarded by `mutex`.
    private var items: [@Sendable () -> Void] = []
    private var stopping = false
    private var thread: OSThread?

    public init(name: String) throws(ThreadStartError) {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(wake, nil)
        thread = try OSThread(name: name, role: .hostCallbacks) { [self] in run() }
    }

    deinit {
        stop()
        pthread_cond_destroy(wake)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        wake.deallocate()
    }

    /// Queues `work`. After `stop()` it runs at once on the calling thread, so nothing queued
    /// late is lost.
    public func async(_ work: @escaping @Sendable () -> Void) {
        pthread_mutex_lock(mutex)
        if stopping {
            pthread_mutex_unlock(mutex)
            work()
            return
        }
        items.append(work)
        pthread_cond_signal(wake)
        pthread_mutex_unlock(mutex)
    }

    /// Runs what is queued, then stops the thread and waits for it (unless called on it).
    /// Idempotent.
    public func stop() {
        pthread_mutex_lock(mutex)
        stopping = true
        let thread = self.thread
        self.thread = nil
        pthread_cond_signal(wake)
        pthread_mutex_unlock(mutex)
        guard let thread else { return }
        if thread.isCurrent { thread.detach() } else { thread.join() }
    }

    private func run() {
        pthread_mutex_lock(mutex)
        while true {
            while items.isEmpty && !stopping { pthread_cond_wait(wake, mutex) }
            if items.isEmpty { break }
            let batch = items
            items.removeAll(keepingCapacity: true)
            pthread_mutex_unlock(mutex)
            for work in batch { work() }
            pthread_mutex_lock(mutex)
        }
        pthread_mutex_unlock(mutex)
    }
}
