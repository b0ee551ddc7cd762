import Glibc
import SagaLaneEventLoop
import SagaLaneSupport
import Synchronization

/// Who runs a runtime's event loop, and how a host thread waits for work that needs it.
///
/// In own-thread mode the loop runs on a thread of its own and a waiting host thread simply
/// blocks. In host mode the host's thread runs the loop (`run`): a blocking call made on that
/// thread while nobody is inside `run` runs the loop itself while it waits, since what it waits
/// for may need the loop (a retry timer, the coordinator); so a host that calls in from its only
/// thread never deadlocks. Only one thread runs the loop at a time.
final class LoopDriver: Sendable {
    let loop: EventLoop
    let mode: RuntimeOptions.LoopMode

    private struct State {
        /// `start` has run (the loop thread started, or the host began driving).
        var started = false
        /// Host mode: the thread that started the runtime, the one allowed to run its loop.
        var hostThread: pthread_t?
    }

    private let state = ConditionLock(State())
    /// Host mode: held by whichever thread runs the loop.
    private let runLock = RecursiveLock()

    init(loop: EventLoop, mode: RuntimeOptions.LoopMode) {
        self.loop = loop
        self.mode = mode
    }

    /// Whether the loop runs (on its thread, or whenever the host drives it).
    var isStarted: Bool { state.withLock { $0.started } }

    /// Starts running the loop: its own thread, or (host mode) the calling thread becomes the
    /// one that drives it. A second call from the same thread does nothing.
    /// - Throws: `.state` in host mode from another thread than the first start's; `.thread`
    ///   when the loop's thread cannot start (the call may be retried).
    func start() throws(SagaLaneError) {
        let startThread = try state.withLock { (state) throws(SagaLaneError) -> Bool in
            if mode == .host {
                if let host = state.hostThread, pthread_equal(host, pthread_self()) == 0 {
                    throw SagaLaneError(.state, "in host mode, start the runtime on the thread that runs its loop")
                }
                state.hostThread = pthread_self()
            }
            defer { state.started = true }
            return !state.started && mode == .ownThread
        }
        guard startThread else { return }
        do {
            try loop.startThread()
        } catch {
            state.withLock { $0.started = false }
            throw error
        }
    }

    /// Host mode: whether the calling thread is the one that started the runtime.
    var isHostThread: Bool {
        state.withLock { $0.hostThread.map { pthread_equal($0, pthread_self()) != 0 } ?? false }
    }

    /// Host mode: runs the loop on the calling thread in `mode`, while `stillRunning` holds.
    /// - Throws: `.state` in own-thread mode, from inside a callback of the loop, or from
    ///   another thread than the host's.
    func run(_ runMode: EventLoopRunMode, while stillRunning: () -> Bool) throws(SagaLaneError) {
        guard mode == .host else {
            throw SagaLaneError(.state, "the runtime runs its loop on its own thread; run() is for host mode")
        }
        guard !loop.inEventLoop else {
            throw SagaLaneError(.state, "the loop cannot be run from inside one of its callbacks")
        }
        guard isHostThread else {
            throw SagaLaneError(.state, "run the loop on the thread that started the runtime")
        }
        runLock.withLock {
            if stillRunning() { loop.run(runMode) }
        }
    }

    /// Runs `body` on the loop and returns its result; at once when already on the loop.
    func onLoop<T: Sendable>(_ body: @escaping @Sendable () -> T) -> T {
        if loop.inEventLoop { return body() }
        let done = Completion<T>()
        loop.execute { done.set(body()) }
        return wait(for: done)
    }

    /// Runs `body` as a task and blocks the calling thread until it finishes. Not for the
    /// loop thread when `body` needs the loop.
    func waitFor<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
        let done = Completion<T>()
        if isStarted && !loop.inEventLoop {
            // On the loop, so that waiting never needs a thread of Swift's global pool.
            Task(executorPreference: loop) { done.set(await body()) }
        } else {
            Task { done.set(await body()) }
        }
        return wait(for: done)
    }

    /// Blocks until `done` is set. In host mode, on the host thread (outside a callback), it
    /// runs the loop meanwhile; whoever sets `done` wakes the loop.
    func wait<T>(for done: Completion<T>) -> T {
        wait(for: done, until: nil)!
    }

    /// As `wait(for:)`, giving up after `milliseconds`: `nil` when `done` was not set in time.
    func wait<T>(for done: Completion<T>, milliseconds: Int) -> T? {
        wait(for: done, until: ContinuousClock.now + .milliseconds(max(0, milliseconds)))
    }

    private func wait<T>(for done: Completion<T>, until deadline: ContinuousClock.Instant?) -> T? {
        func remaining() -> Int? {
            deadline.map { max(0, Int(($0 - ContinuousClock.now) / .milliseconds(1)) + 1) }
        }
        guard mode == .host, !loop.inEventLoop, isHostThread else {
            if let milliseconds = remaining() { return done.wait(milliseconds: milliseconds) }
            return done.wait()
        }
        let loop = self.loop
        done.notify { loop.execute {} }
        if let milliseconds = remaining() {
            // A timer that wakes the loop at the deadline, so a round of it never outlasts it.
            loop.execute { if loop.inEventLoop, !loop.isShutDown { loop.scheduleTimer(after: .milliseconds(milliseconds)) {} } }
        }
        while true {
            if let value = done.current { return value }
            if let deadline, ContinuousClock.now >= deadline { return nil }
            let slice = min(10, remaining() ?? 10)
            let ran = runLock.withLockIfAvailable {
                if done.current == nil, isStarted { loop.run(.once) }
            }
            if ran != nil {
                if !isStarted, let value = done.wait(milliseconds: slice) { return value }
            } else if let value = done.wait(milliseconds: slice) {
                // A closing thread took the loop; it runs it.
                return value
            }
        }
    }

    /// Host mode, at close: takes the loop from whoever runs it; from here on the calling
    /// thread runs it, until `endTakeOver`.
    func takeOver() {
        guard mode == .host else { return }
        loop.stopRunning()
        runLock.lock()
        state.withLock { $0.hostThread = pthread_self() }
    }

    func endTakeOver() {
        guard mode == .host else { return }
        runLock.unlock()
    }
}
