/// A thread of its own that runs closures one at a time, in the order they were queued.
///
/// Host callbacks that report outcomes (a lane job's `done`) run here rather than on the
/// thread that learned the outcome (a lane worker, the log writer): a host callback may then
/// call anything, a blocking submit included, without stalling or deadlocking the runtime.
public final class CallbackQueue: Sendable {
    private struct State {
        var items: [@Sendable () -> Void] = []
        var stopping = false
        var thread: OSThread?
    }

    private let lock = ConditionLock(State())

    /// - Throws: `SagaLaneError` `.thread` when the system refuses the thread.
    public init(name: String) throws(SagaLaneError) {
        let thread = try OSThread(name: name, role: .hostCallbacks) { [lock] in CallbackQueue.run(lock) }
        lock.withLock { $0.thread = thread }
    }

    deinit { stop() }

    /// Queues `work`. After `stop()` it runs at once on the calling thread, so nothing queued
    /// late is lost.
    public func async(_ work: @escaping @Sendable () -> Void) {
        let late = lock.withLock { state -> Bool in
            if state.stopping { return true }
            state.items.append(work)
            return false
        }
        if late { work() } else { lock.condition.signal() }
    }

    /// Runs what is queued, then stops the thread and waits for it (unless called on it).
    /// Idempotent.
    public func stop() {
        let thread = lock.withLock { state -> OSThread? in
            state.stopping = true
            defer { state.thread = nil }
            return state.thread
        }
        lock.condition.signal()
        guard let thread else { return }
        if thread.isCurrent { thread.detach() } else { thread.join() }
    }

    private static func run(_ lock: ConditionLock<State>) {
        var batch: [@Sendable () -> Void] = []
        while true {
            let done = lock.withLock(until: { !$0.items.isEmpty || $0.stopping }) { state -> Bool in
                if state.items.isEmpty { return true }
                swap(&batch, &state.items)
                return false
            }
            if done { return }
            for work in batch { work() }
            batch.removeAll(keepingCapacity: true)
        }
    }
}
