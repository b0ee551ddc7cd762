import Glibc
import SagaLaneCoordinator
import SagaLaneEventLoop
import SagaLaneJSON
import SagaLaneLanes
import SagaLaneLog
import SagaLaneSupport
import Synchronization

/// How a `Runtime` is set up.
public struct RuntimeOptions: Sendable {
    /// Who runs the event loop.
    public enum LoopMode: Sendable {
        /// The runtime runs it on a thread of its own.
        case ownThread
        /// The host runs it with `run(_:)`, e.g. from a poll loop of its own.
        case host
    }

    /// How long a write waits for a database another connection has locked, by default.
    public static let defaultBusyTimeoutMilliseconds: Int32 = 5000

    /// The log's SQLite file; `nil` keeps the log in memory.
    public var databasePath: String?
    public var durability: Durability
    public var busyTimeoutMilliseconds: Int32
    public var loopMode: LoopMode
    public var clock: EventLoopClock
    /// Open the log read-only for diagnostics: no migration, no writes, no sagas.
    public var readOnly: Bool
    /// Where sagalane's own messages go (standard error by default).
    public var diagnostics: Diagnostics
    /// Told how far the long operations of opening and starting have got: a migration of an
    /// older log (`init`, on its thread), start-up recovery (`start`, on the loop). The
    /// runtime shows nothing itself.
    public var progress: ProgressHandler?

    public init(databasePath: String? = nil, durability: Durability = .full,
                busyTimeoutMilliseconds: Int32 = RuntimeOptions.defaultBusyTimeoutMilliseconds,
                loopMode: LoopMode = .ownThread, clock: EventLoopClock = .system, readOnly: Bool = false,
                diagnostics: Diagnostics = .standardError) {
        self.databasePath = databasePath
        self.durability = durability
        self.busyTimeoutMilliseconds = busyTimeoutMilliseconds
        self.loopMode = loopMode
        self.clock = clock
        self.readOnly = readOnly
        self.diagnostics = diagnostics
    }
}

/// One embedded sagalane: an event loop, a log, a bus, a coordinator and a pool of lanes,
/// assembled, behind calls a host thread can make and wait for.
///
/// Blocking calls wait for the loop when they need it (see `RuntimeOptions.LoopMode`: in host
/// mode a waiting host thread runs the loop itself, so a host that calls in from its only
/// thread never deadlocks). They are for host threads (a C or Go caller, a thread of your
/// own), not for Swift's cooperative pool: there they would hold a pool thread while waiting
/// for tasks that need one. Async Swift code can assemble `Coordinator`, `Lane` and `SagaLog`
/// itself.
///
/// Close it with `close()`; dropping the last reference closes it too.
public final class Runtime: Sendable {
    public let options: RuntimeOptions
    // The parts, assembled here. The package's own tests and benchmarks look at them; hosts
    // use the calls below.
    package let loop: EventLoop
    package let log: SagaLog
    package let bus: EventBus
    package let coordinator: Coordinator
    package let lanes = LanePool()
    package let laneHandlers = LaneCommandHandlers()
    /// The pipe targets it dials (`connectTarget`).
    package let pipeTargets = PipeTargetRegistry()
    /// Purges old terminal lane-job rows (not for read-only or in-memory logs).
    package let sweeper: LaneSweeper?
    /// Where hosts' outcome callbacks (a lane job's `done`) run, one at a time.
    package let callbacks: CallbackQueue
    let driver: LoopDriver

    enum Phase { case created, running, closing, closed }

    struct State {
        var phase = Phase.created
        var deliveries: [ObjectIdentifier: EventDelivery] = [:]
        var lifecycleDeliveries: [ObjectIdentifier: LifecycleDelivery] = [:]
        var whenClosed: [@Sendable () -> Void] = []
    }

    let state = ConditionLock(State())
    /// Serializes lane creation, so two creators of one name cannot both recover its rows.
    let laneCreation = ConditionLock(())

    /// Opens the log (creating and migrating it) and creates the loop, not yet running.
    /// - Throws: `SagaLaneError`; nothing is left open.
    public init(options: RuntimeOptions = RuntimeOptions()) throws(SagaLaneError) {
        self.options = options
        let path = options.databasePath.flatMap { $0.isEmpty ? nil : $0 }
        callbacks = try CallbackQueue(name: "sagalane-callbacks")
        loop = try EventLoop(clock: options.clock)
        if options.readOnly {
            guard let path else {
                throw SagaLaneError(.invalidArgument, "a read-only runtime needs a database path")
            }
            log = try SagaLog.openReadOnly(path: path, busyTimeoutMilliseconds: options.busyTimeoutMilliseconds)
        } else if let path {
            log = try SagaLog.open(path: path, durability: options.durability, busyTimeoutMilliseconds: options.busyTimeoutMilliseconds,
                                   create: true, progress: options.progress)
        } else {
            log = try SagaLog.openInMemory()
        }
        driver = LoopDriver(loop: loop, mode: options.loopMode)
        bus = EventBus()
        coordinator = Coordinator(loop: loop, log: log, bus: bus, diagnostics: options.diagnostics)
        LaneTarget.wire(coordinator, to: lanes, handlers: laneHandlers)
        sweeper = options.readOnly || path == nil ? nil : LaneSweeper(log: log, loop: loop, diagnostics: options.diagnostics)
    }

    deinit {
        if OSThread.isSagalaneThread || loop.inEventLoop {
            // Closing waits for sagalane's threads, this one included: it cannot happen here.
            if state.withLock({ $0.phase != .closed }) {
                options.diagnostics.error("a Runtime was dropped on one of its own threads without close(); its threads and files stay open")
            }
            return
        }
        if state.withLock({ $0.phase != .closed && $0.phase != .closing }) {
            state.withLock { $0.phase = .closing }
            finishClose()
        }
    }

    // MARK: Life cycle

    /// Starts taking events: seeds saga ids, runs start-up recovery, starts the sweeper.
    /// Own-thread mode: starts the loop thread. Host mode: runs the loop on the calling thread
    /// until recovery is done.
    /// - Returns: How many unfinished sagas recovery found.
    @discardableResult
    public func start() throws(SagaLaneError) -> Int {
        try state.withLock { (state) throws(SagaLaneError) in
            switch state.phase {
            case .created: break
            case .running: throw SagaLaneError(.state, "the runtime was already started")
            case .closing, .closed: throw SagaLaneError(.closed, "the runtime is closed")
            }
            if log.isReadOnly {
                throw SagaLaneError(.readOnly, "a runtime opened read-only serves diagnostics only and cannot start")
            }
        }
        try driver.start()
        let coordinator = self.coordinator, progress = options.progress
        let recovered = driver.waitFor { () async -> Result<Int, SagaLaneError> in
            do throws(SagaLaneError) { return .success(try await coordinator.start(progress: progress)) } catch { return .failure(error) }
        }
        let count = try recovered.get()
        sweeper?.start()
        state.withLock { if $0.phase == .created { $0.phase = .running } }
        return count
    }

    /// Whether `start()` succeeded and `close()` has not begun.
    public var isRunning: Bool { state.withLock { $0.phase == .running } }

    /// Host mode: runs the loop on the calling thread in `mode`.
    /// - Throws: `.state` in own-thread mode, before `start()`, or from inside a callback of
    ///   the loop; `.closed` once closing began.
    public func run(_ mode: EventLoopRunMode) throws(SagaLaneError) {
        guard options.loopMode == .host else {
            throw SagaLaneError(.state, "the runtime runs its loop on its own thread; run() is for host mode")
        }
        let phase = state.withLock { $0.phase }
        guard phase == .running else {
            throw phase == .created ? SagaLaneError(.state, "start the runtime before running its loop")
                : SagaLaneError(.closed, "the runtime is closed")
        }
        try driver.run(mode) { state.withLock { $0.phase } == .running }
    }

    /// Host mode: makes a `run(.default)` in progress return soon. Any thread.
    public func stopRunning() {
        loop.stopRunning()
    }

    /// Host mode: the loop's backend file descriptor (epoll), for hosts that poll it in their
    /// own loop and call `run(.noWait)` when it is readable.
    public var backendFD: Int32 { loop.backendFD }

    /// Host mode: how long the host's poll may sleep before calling `run` again, in
    /// milliseconds (-1: no timer pending).
    public var backendTimeoutMilliseconds: Int32 { max(-1, loop.backendTimeoutMilliseconds) }

    /// Manual clock: moves loop time forward, firing what falls due; returns once they ran.
    public func advanceTime(by duration: Duration) throws(SagaLaneError) {
        guard options.clock == .manual else {
            throw SagaLaneError(.state, "advancing time needs a runtime with the manual clock")
        }
        let loop = self.loop
        driver.onLoop { loop.advanceTime(by: duration) }
    }

    /// Why the log can no longer record sagas' ends (new sagas are then refused); `nil` while
    /// it is healthy.
    public var unhealthyReason: String? { coordinator.unhealthyReason }

    /// Closes everything in dependency order: the coordinator (sagas in flight stay `running`
    /// in the log for the next start's recovery), the lanes (queued jobs cancelled, running
    /// ones flagged and waited for), the loop, the subscriptions, the log (pending writes are
    /// committed first). Idempotent.
    ///
    /// Called from one of sagalane's own threads (a callback), it returns at once and the
    /// close completes on a new thread, since it must wait for the caller's thread to finish.
    /// - Parameter completion: Runs once the runtime is closed, on the thread that closed it.
    public func close(completion: (@Sendable () -> Void)? = nil) {
        let (proceed, closed) = state.withLock { state -> (Bool, Bool) in
            if state.phase == .closed { return (false, true) }
            if let completion { state.whenClosed.append(completion) }
            guard state.phase != .closing else { return (false, false) }
            state.phase = .closing
            return (true, false)
        }
        if closed { completion?() }
        guard proceed else { return }
        if OSThread.isSagalaneThread || loop.inEventLoop {
            startCloser()
        } else {
            finishClose()
        }
    }

    /// Closes on a thread of its own: the calling thread is one the close waits for. If no
    /// thread can be started now, it tries again every 10 ms, reporting the first failure.
    private func startCloser() {
        var reported = false
        while true {
            do {
                try OSThread(name: "sagalane-close", role: .other) { [self] in finishClose() }.detach()
                return
            } catch {
                if !reported {
                    options.diagnostics.warning("closing the runtime waits for a thread: \(error)")
                    reported = true
                }
                usleep(10_000)
            }
        }
    }

    private func finishClose() {
        driver.takeOver()
        defer { driver.endTakeOver() }
        sweeper?.stop()
        if !driver.isStarted {
            // Nothing runs the loop: close it first, so work sent to it runs at once here.
            loop.shutdown()
        }
        let coordinator = self.coordinator
        driver.onLoop { coordinator.assumeIsolated { $0.close() } }
        lanes.shutdown()
        laneHandlers.removeAll()
        loop.shutdown()
        // Lifecycle subscribers stop before the log closes: what they have not read yet they
        // read, from their position, next time.
        let lifecycle = state.withLock { state -> [LifecycleDelivery] in
            defer { state.lifecycleDeliveries.removeAll() }
            return Array(state.lifecycleDeliveries.values)
        }
        for delivery in lifecycle { delivery.stop() }
        log.close()
        // Every outcome is known once the log closed; its callbacks run before close returns.
        callbacks.stop()
        let deliveries = state.withLock { state -> [EventDelivery] in
            defer { state.deliveries.removeAll() }
            return Array(state.deliveries.values)
        }
        for delivery in deliveries { delivery.stop() }
        let completions = state.withLock { state -> [@Sendable () -> Void] in
            state.phase = .closed
            defer { state.whenClosed.removeAll() }
            return state.whenClosed
        }
        for completion in completions { completion() }
    }

    func checkRunning() throws(SagaLaneError) {
        switch state.withLock({ $0.phase }) {
        case .running: return
        case .created: throw SagaLaneError(.state, "the runtime has not been started")
        case .closing, .closed: throw SagaLaneError(.closed, "the runtime is closed")
        }
    }

    func checkOpen() throws(SagaLaneError) {
        let phase = state.withLock { $0.phase }
        if phase == .closing || phase == .closed { throw SagaLaneError(.closed, "the runtime is closed") }
    }

    /// Runs `work` on the runtime's callback thread, after the callbacks queued before it: where
    /// hosts' outcome callbacks run, one at a time, free to call back into the runtime.
    public func onCallbackThread(_ work: @escaping @Sendable () -> Void) {
        callbacks.async(work)
    }
}
