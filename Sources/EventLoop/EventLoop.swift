import CUV
import Glibc
import SagaLaneSupport
import Synchronization

/// Identifies a timer armed with `EventLoop.scheduleTimer`.
public struct TimerID: Hashable, Sendable {
    fileprivate let value: UInt64
}

/// One libuv loop, and a Swift `SerialExecutor` (and `TaskExecutor`) on top of it.
///
/// Work from any thread (Swift jobs, `execute` closures) goes into a locked queue and wakes the
/// loop with `uv_async_send`; the loop thread runs it in FIFO order. An actor whose
/// `unownedExecutor` is this loop therefore keeps all its state on one thread without locks,
/// and its code can run inside libuv callbacks (`assumeIsolated`).
///
/// The loop runs on its own thread (`startThread`) or on a host thread that calls `run(_:)`.
///
/// Timers share one heap driving one `uv_timer_t`: arming a deadline costs a heap entry, not a
/// libuv handle or a task, so a million armed deadlines stay cheap.
public final class EventLoop: SerialExecutor, TaskExecutor, @unchecked Sendable {
    private enum Work {
        case job(UnownedJob)
        case closure(@Sendable () -> Void)
    }

    private struct Queue {
        var items: [Work] = []
        /// `shutdown` asked the loop to close, after the batch it is running.
        var closeRequested = false
        /// The loop closed: work runs on the thread that submits it, one at a time.
        var closed = false
    }

    private let uvLoop: UnsafeMutablePointer<uv_loop_t>
    private let wakeup: UnsafeMutablePointer<uv_async_t>
    private let timer: UnsafeMutablePointer<uv_timer_t>
    private let queue = ConditionLock(Queue())
    private let loopThread = Atomic<UInt>(0)
    private let isShutDownFlag = Atomic<Bool>(false)
    private var thread: OSThread?
    /// Held by whoever runs loop work once closing began (the loop thread for what was
    /// queued, a submitting thread for what comes late), so that work never runs on two
    /// threads at once.
    private let lateWorkLock = RecursiveLock()

    // Loop-thread state.
    /// The queue's other buffer, empty between drains.
    private var spareItems: [Work] = []
    private let clock: EventLoopClock
    private let startTime: UInt64
    private var manualNow: Duration = .zero
    private var heap = TimerHeap()
    private var callbacks: [UInt64: @Sendable () -> Void] = [:]
    private var nextTimer: UInt64 = 1
    private var armedDeadline: Duration?
    /// What runs when the loop shuts down, before its own handles close (see `addShutdownHook`).
    private var shutdownHooks: [UInt64: () -> Void] = [:]
    private var nextShutdownHook: UInt64 = 1

    /// What `uv_loop_close` returned at shutdown (0 when every handle was closed).
    private(set) var lastCloseResult: Int32?

    /// Creates the loop. It does not run until `startThread()` or `run(_:)`.
    public init(clock: EventLoopClock = .system) throws(SagaLaneError) {
        self.clock = clock
        startTime = uv_hrtime()
        uvLoop = .allocate(capacity: 1)
        wakeup = .allocate(capacity: 1)
        timer = .allocate(capacity: 1)
        var rc = uv_loop_init(uvLoop)
        guard rc == 0 else {
            uvLoop.deallocate(); wakeup.deallocate(); timer.deallocate()
            throw .loop(rc, "uv_loop_init")
        }
        rc = uv_async_init(uvLoop, wakeup) { handle in
            EventLoop.owner(of: UnsafeMutableRawPointer(handle!)).drain()
        }
        guard rc == 0 else {
            uv_loop_close(uvLoop)
            uvLoop.deallocate(); wakeup.deallocate(); timer.deallocate()
            throw .loop(rc, "uv_async_init")
        }
        uv_timer_init(uvLoop, timer)
        let me = Unmanaged.passUnretained(self).toOpaque()
        wakeup.pointee.data = me
        timer.pointee.data = me
    }

    deinit {
        shutdown()
        uvLoop.deallocate()
        wakeup.deallocate()
        timer.deallocate()
    }

    private static func owner(of handle: UnsafeMutableRawPointer) -> EventLoop {
        let data = handle.assumingMemoryBound(to: uv_handle_t.self).pointee.data!
        return Unmanaged<EventLoop>.fromOpaque(data).takeUnretainedValue()
    }

    // MARK: Running

    /// Runs the loop on a new thread until `shutdown()`. Call once (again only after it threw).
    public func startThread() throws(SagaLaneError) {
        precondition(thread == nil, "EventLoop.startThread() called twice")
        thread = try OSThread(name: "sagalane-loop", role: .eventLoop) { [self] in
            loopThread.store(UInt(bitPattern: Int(bitPattern: UInt(pthread_self()))), ordering: .releasing)
            uv_run(uvLoop, UV_RUN_DEFAULT)
            loopThread.store(0, ordering: .releasing)
        }
    }

    /// Runs the loop on the calling thread, for hosts that drive it themselves. The calling
    /// thread is the loop thread until this returns.
    /// - Returns: Whether work is still pending (libuv's `uv_run` result is non-zero).
    @discardableResult
    public func run(_ mode: EventLoopRunMode) -> Bool {
        precondition(thread == nil, "EventLoop.run(_:) cannot be used together with startThread()")
        if isShutDownFlag.load(ordering: .acquiring) { return false }
        let uvMode: uv_run_mode
        switch mode {
        case .default: uvMode = UV_RUN_DEFAULT
        case .once: uvMode = UV_RUN_ONCE
        case .noWait: uvMode = UV_RUN_NOWAIT
        }
        loopThread.store(currentThread(), ordering: .releasing)
        defer { loopThread.store(0, ordering: .releasing) }
        return uv_run(uvLoop, uvMode) != 0
    }

    /// Makes a `run(.default)` in progress return soon, after the work already queued. Safe
    /// from any thread.
    public func stopRunning() {
        execute { [self] in uv_stop(uvLoop) }
    }

    /// The loop's backend file descriptor (epoll), for hosts that poll it in their own loop and
    /// call `run(.noWait)` when it is readable.
    public var backendFD: Int32 { uv_backend_fd(uvLoop) }

    /// How long a host's poll may wait before calling `run(.noWait)` again (-1: no timer).
    public var backendTimeoutMilliseconds: Int32 { uv_backend_timeout(uvLoop) }

    /// Stops the loop: runs every queued job, closes every handle, closes the loop, and joins
    /// its thread. Call from any thread but the loop thread; later calls do nothing.
    ///
    /// Work submitted after shutdown runs on the submitting thread (one at a time), so a
    /// task that resumes late still finishes instead of hanging its caller.
    public func shutdown() {
        guard !isShutDownFlag.exchange(true, ordering: .acquiringAndReleasing) else { return }
        precondition(!inEventLoop || thread == nil, "EventLoop.shutdown() called on its own loop thread")
        if let thread {
            // The loop closes at the end of the batch it runs, so no work of that batch runs
            // after the close began.
            queue.withLock { $0.closeRequested = true }
            uv_async_send(wakeup)
            thread.join()
        } else {
            loopThread.store(currentThread(), ordering: .releasing)
            closeHandles()
            uv_run(uvLoop, UV_RUN_DEFAULT)
            loopThread.store(0, ordering: .releasing)
        }
        lastCloseResult = uv_loop_close(uvLoop)
    }

    /// On the loop thread: drains the queue for the last time and closes the handles, after
    /// which `uv_run` returns. From here on the lock decides who runs loop work: this thread
    /// for what was queued, then each late submitter in turn.
    private func closeHandles() {
        lateWorkLock.withLock {
            let remaining = queue.withLock { queue -> [Work] in
                queue.closed = true
                defer { queue.items = [] }
                return queue.items
            }
            for work in remaining { run(work) }
            // Owners of libuv handles on this loop close them now: `uv_run` only returns once
            // every handle is closed.
            let hooks = shutdownHooks.sorted { $0.key < $1.key }.map(\.value)
            shutdownHooks.removeAll()
            for hook in hooks { hook() }
            callbacks.removeAll()
            heap = TimerHeap()
        }
        uv_timer_stop(timer)
        uv_close(UnsafeMutableRawPointer(wakeup).assumingMemoryBound(to: uv_handle_t.self), nil)
        uv_close(UnsafeMutableRawPointer(timer).assumingMemoryBound(to: uv_handle_t.self), nil)
    }

    // MARK: Handles of other modules

    /// The libuv loop, for modules of this package that put handles of their own on it (the
    /// pipes). Use it on the loop thread only, and close every handle from a shutdown hook.
    package var uvLoopPointer: UnsafeMutablePointer<uv_loop_t> { uvLoop }

    /// Registers `hook` to run on the loop thread when the loop shuts down, after the work
    /// queued before the shutdown and before the loop's own handles close: where an owner of
    /// libuv handles on this loop closes them. Loop thread only.
    /// - Returns: An id for `removeShutdownHook`, or `nil` when shutdown already began (the
    ///   caller must then not create its handle).
    package func addShutdownHook(_ hook: @escaping () -> Void) -> UInt64? {
        preconditionInEventLoop()
        if queue.withLock({ $0.closed }) { return nil }
        let id = nextShutdownHook
        nextShutdownHook += 1
        shutdownHooks[id] = hook
        return id
    }

    /// Removes a hook whose handles were closed. Loop thread only.
    package func removeShutdownHook(_ id: UInt64) {
        preconditionInEventLoop()
        shutdownHooks.removeValue(forKey: id)
    }

    // MARK: Executor

    public func enqueue(_ job: consuming ExecutorJob) {
        enqueueWork(.job(UnownedJob(job)))
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    /// As a task executor (`Task(executorPreference: loop)`), the loop also runs a task's
    /// nonisolated parts and continuation resumptions, so such a task never needs a thread of
    /// Swift's global pool.
    public func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }

    public func checkIsolated() {
        precondition(inEventLoop, "expected to run on the sagalane event loop thread")
    }

    public func isIsolatingCurrentContext() -> Bool? {
        inEventLoop
    }

    /// Runs `work` on the loop thread soon, after the work already queued. Safe from any thread.
    public func execute(_ work: @escaping @Sendable () -> Void) {
        enqueueWork(.closure(work))
    }

    private func enqueueWork(_ work: Work) {
        let accepted = queue.withLock { queue -> Bool in
            if queue.closed { return false }
            queue.items.append(work)
            return true
        }
        if accepted {
            uv_async_send(wakeup)
        } else {
            // The loop is gone; the caller stands in for it, one piece of work at a time, so
            // code that checks it runs on the loop (an actor's assumeIsolated) still holds.
            // Executors are called through unowned references, and the work may drop the last
            // reference to this loop: keep it alive until the lock is released.
            withExtendedLifetime(self) {
                lateWorkLock.withLock {
                    let previous = loopThread.exchange(currentThread(), ordering: .acquiringAndReleasing)
                    run(work)
                    loopThread.store(previous, ordering: .releasing)
                }
            }
        }
    }

    private func drain() {
        // Swap buffers with the queue: copying it and then emptying it in place would make
        // the queue allocate a new buffer of the same capacity on every turn.
        var items: [Work] = []
        swap(&items, &spareItems)
        queue.withLock { swap(&items, &$0.items) }
        WakeBatch.run {
            for work in items { run(work) }
        }
        items.removeAll(keepingCapacity: true)
        spareItems = items
        if queue.withLock({ $0.closeRequested && !$0.closed }) { closeHandles() }
    }

    private func run(_ work: Work) {
        switch work {
        // The loop is both the serial executor of actors on it and the task executor of tasks
        // preferring it: saying so lets a task move between the two without another turn.
        case .job(let job): job.runSynchronously(isolatedTo: asUnownedSerialExecutor(), taskExecutor: asUnownedTaskExecutor())
        case .closure(let closure): closure()
        }
    }

    /// Whether `shutdown()` has begun: no timer can be armed any more.
    public var isShutDown: Bool { isShutDownFlag.load(ordering: .acquiring) }

    /// Whether the calling thread is running this loop.
    public var inEventLoop: Bool {
        loopThread.load(ordering: .acquiring) == currentThread()
    }

    public func preconditionInEventLoop(file: StaticString = #fileID, line: UInt = #line) {
        precondition(inEventLoop, "expected to run on the sagalane event loop thread", file: file, line: line)
    }

    private func currentThread() -> UInt { UInt(bitPattern: Int(bitPattern: UInt(pthread_self()))) }

    // MARK: Time

    /// Monotonic loop time since the loop was created (manual clock: moved only by `advance`).
    public var now: Duration {
        switch clock {
        case .system: return .nanoseconds(Int64(uv_hrtime() - startTime))
        case .manual: return manualNow
        }
    }

    /// Arms a one-shot timer. `callback` runs on the loop thread once `delay` of loop time has
    /// passed, unless cancelled first. Loop thread only.
    @discardableResult
    public func scheduleTimer(after delay: Duration, _ callback: @escaping @Sendable () -> Void) -> TimerID {
        preconditionInEventLoop()
        let id = nextTimer
        nextTimer += 1
        callbacks[id] = callback
        heap.insert(.init(deadline: now + max(delay, .zero), sequence: id))
        rearm()
        return TimerID(value: id)
    }

    /// Cancels a timer; its callback is released at once. Loop thread only.
    /// - Returns: Whether the timer was still pending.
    @discardableResult
    public func cancelTimer(_ id: TimerID) -> Bool {
        preconditionInEventLoop()
        guard callbacks.removeValue(forKey: id.value) != nil else { return false }
        // Cancelled entries stay in the heap until they come due; compact when they dominate.
        if heap.count > 1024 && heap.count > 2 * callbacks.count {
            heap.removeAll { callbacks[$0.sequence] == nil }
        }
        rearm()
        return true
    }

    /// Timers armed and not yet fired or cancelled. Loop thread only.
    public var pendingTimerCount: Int {
        preconditionInEventLoop()
        return callbacks.count
    }

    /// Fires every live timer due at `time`, in deadline order.
    private func fireDue(upTo time: Duration) {
        while let head = heap.first, head.deadline <= time {
            _ = heap.popFirst()
            if clock == .manual { manualNow = max(manualNow, head.deadline) }
            if let callback = callbacks.removeValue(forKey: head.sequence) { callback() }
        }
    }

    /// Points the libuv timer at the earliest live deadline (system clock only).
    private func rearm() {
        guard clock == .system else { return }
        while let head = heap.first, callbacks[head.sequence] == nil { _ = heap.popFirst() }
        guard let deadline = heap.first?.deadline else {
            if armedDeadline != nil { uv_timer_stop(timer); armedDeadline = nil }
            return
        }
        if armedDeadline == deadline { return }
        armedDeadline = deadline
        let remaining = deadline - now
        let (seconds, attoseconds) = remaining.components
        // A deadline a century away or more fires (and re-arms) once a century: the
        // arithmetic in milliseconds stays far from overflowing.
        let cappedSeconds = min(max(seconds, 0), 100 * 365 * 86_400)
        let nanos = max(0, cappedSeconds * 1_000_000_000 + (seconds == cappedSeconds ? attoseconds / 1_000_000_000 : 0))
        let millis = UInt64((nanos + 999_999) / 1_000_000)
        uv_timer_start(timer, { handle in
            let loop = EventLoop.owner(of: UnsafeMutableRawPointer(handle!))
            loop.armedDeadline = nil
            loop.fireDue(upTo: loop.now)
            loop.rearm()
        }, millis, 0)
    }

    /// Manual clock: moves time forward by `duration`, firing every timer that falls due, in
    /// deadline order, including timers armed by those callbacks. Loop thread only.
    public func advanceTime(by duration: Duration) {
        preconditionInEventLoop()
        precondition(clock == .manual, "advanceTime(by:) needs an EventLoop with the manual clock")
        let target = manualNow + duration
        fireDue(upTo: target)
        manualNow = target
    }

    /// Manual clock: `advanceTime(by:)` from any context; returns after the due callbacks ran.
    public func advance(by duration: Duration) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            execute { [self] in
                advanceTime(by: duration)
                continuation.resume()
            }
        }
    }

    /// Suspends the calling task for `duration` of loop time.
    /// - Throws: `CancellationError` as soon as the task is cancelled.
    public func sleep(for duration: Duration) async throws {
        let sleeper = Sleeper()
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
                guard sleeper.begin(continuation) else { return }
                execute { [self] in
                    let id = scheduleTimer(after: duration) { sleeper.finish(nil) }
                    if !sleeper.armed(id) { cancelTimer(id) }
                }
            }
        } onCancel: {
            execute { [self] in
                if let id = sleeper.finish(CancellationError()) { cancelTimer(id) }
            }
        }
    }
}

/// One `sleep(for:)`: its continuation is resumed exactly once, by the timer or by
/// cancellation, whichever comes first.
private final class Sleeper: Sendable {
    private struct State {
        var continuation: CheckedContinuation<Void, Error>?
        var timer: TimerID?
        var done = false
        var cancelledEarly = false
    }
    private let state = ConditionLock(State())

    /// Stores the continuation; `false` if cancellation already won (it is then resumed).
    func begin(_ continuation: CheckedContinuation<Void, Error>) -> Bool {
        let early = state.withLock { state -> Bool in
            if state.cancelledEarly { state.done = true; return true }
            state.continuation = continuation
            return false
        }
        if early { continuation.resume(throwing: CancellationError()) }
        return !early
    }

    /// Records the armed timer; `false` if the sleep already ended (the timer must be cancelled).
    func armed(_ id: TimerID) -> Bool {
        state.withLock { state in
            if state.done { return false }
            state.timer = id
            return true
        }
    }

    /// Ends the sleep with `error` (or normally); returns the timer to cancel, if any.
    @discardableResult
    func finish(_ error: Error?) -> TimerID? {
        let (continuation, timer) = state.withLock { state -> (CheckedContinuation<Void, Error>?, TimerID?) in
            if state.done { return (nil, nil) }
            if state.continuation == nil {
                // Cancelled before the continuation was stored.
                state.cancelledEarly = true
                return (nil, nil)
            }
            state.done = true
            defer { state.continuation = nil }
            return (state.continuation, state.timer)
        }
        if let error { continuation?.resume(throwing: error) } else { continuation?.resume() }
        return timer
    }
}
