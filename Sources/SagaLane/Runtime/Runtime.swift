import Glibc
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

    /// The log's SQLite file; `nil` keeps the log in memory.
    public var databasePath: String?
    public var durability: Durability
    public var busyTimeoutMilliseconds: Int32
    public var loopMode: LoopMode
    public var clock: EventLoopClock
    /// Open the log read-only for diagnostics: no migration, no writes, no sagas.
    public var readOnly: Bool

    public init(databasePath: String? = nil, durability: Durability = .full, busyTimeoutMilliseconds: Int32 = 5000,
                loopMode: LoopMode = .ownThread, clock: EventLoopClock = .system, readOnly: Bool = false) {
        self.databasePath = databasePath
        self.durability = durability
        self.busyTimeoutMilliseconds = busyTimeoutMilliseconds
        self.loopMode = loopMode
        self.clock = clock
        self.readOnly = readOnly
    }
}

/// A call the runtime cannot take in its current state.
public struct RuntimeError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Kind: Sendable, Hashable, CustomStringConvertible {
        fileprivate let name: String
        /// Not started, already started, or the wrong thread for this call.
        public static let state = Kind(name: "invalid state")
        public static let closed = Kind(name: "closed")
        /// The log was opened read-only.
        public static let readOnly = Kind(name: "read-only")
        public static let invalidArgument = Kind(name: "invalid argument")
        /// A thread could not be started (a thread limit); nothing was changed.
        public static let thread = Kind(name: "thread")
        public var description: String { name }
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    init(_ refused: ThreadStartError) {
        self.init(.thread, refused.description)
    }

    public var description: String { "\(kind): \(message)" }
}

/// One embedded sagalane: an event loop, a log, a bus, a coordinator and a pool of lanes,
/// behind calls a host thread can make and wait for.
///
/// Blocking calls wait for the loop when they need it. With `LoopMode.host`, a thread that
/// waits while nobody is inside `run(_:)` runs the loop itself meanwhile, so a host that calls
/// in from its only thread never deadlocks.
///
/// Its blocking calls are for host threads (a C or Go caller, a thread of your own). Do not
/// make them from Swift's cooperative pool (an async function): they would hold a pool thread
/// while waiting for tasks that need one. From async code, use the coordinator, the lanes
/// and the log directly.
///
/// Close it with `close()`; dropping the last reference closes it too.
public final class Runtime: Sendable {
    public let options: RuntimeOptions
    public let loop: EventLoop
    public let log: SagaLog
    public let bus: EventBus
    public let coordinator: Coordinator
    public let lanes = LanePool()
    /// The functions that run commands sent to `lane:<name>`.
    public let laneHandlers = LaneCommandHandlers()
    /// Purges old terminal lane-job rows (not for read-only or in-memory logs).
    public let sweeper: LaneSweeper?
    /// Where hosts' outcome callbacks (a lane job's `done`) run, one at a time.
    public let callbacks: CallbackQueue

    private enum Phase { case created, running, closing, closed }

    private struct State {
        var phase = Phase.created
        var loopStarted = false
        /// Host mode: the thread that started the runtime, the one allowed to run its loop.
        var hostThread: pthread_t?
        var deliveries: [ObjectIdentifier: EventDelivery] = [:]
        var whenClosed: [@Sendable () -> Void] = []
    }

    private let state = Mutex(State())
    /// Serializes lane creation, so two creators of one name cannot both recover its rows.
    private let laneCreation = Mutex(())
    /// Host mode: held by whichever thread runs the loop, so only one thread runs it at a time.
    private let runLock = RecursiveLock()

    /// Opens the log (creating and migrating it) and creates the loop, not yet running.
    /// - Throws: `SagaLogError`, `EventLoopError` or `RuntimeError`; nothing is left open.
    public init(options: RuntimeOptions = RuntimeOptions()) throws {
        self.options = options
        let path = options.databasePath.flatMap { $0.isEmpty ? nil : $0 }
        do {
            do {
                callbacks = try CallbackQueue(name: "sagalane-callbacks")
            } catch {
                throw RuntimeError(error)
            }
            loop = try EventLoop(clock: options.clock)
            if options.readOnly {
                guard let path else {
                    throw RuntimeError(.invalidArgument, "a read-only runtime needs a database path")
                }
                log = try SagaLog.openReadOnly(path: path, busyTimeoutMilliseconds: options.busyTimeoutMilliseconds)
            } else if let path {
                log = try SagaLog.open(path: path, durability: options.durability,
                                       busyTimeoutMilliseconds: options.busyTimeoutMilliseconds)
            } else {
                log = try SagaLog.openInMemory()
            }
        }
        bus = EventBus()
        coordinator = Coordinator(loop: loop, log: log, bus: bus)
        coordinator.useLanes(lanes, handlers: laneHandlers)
        sweeper = options.readOnly || path == nil ? nil : LaneSweeper(log: log, loop: loop)
    }

    deinit {
        if OSThread.isSagalaneThread || loop.inEventLoop {
            // Closing waits for sagalane's threads, this one included: it cannot happen here.
            if state.withLock({ $0.phase != .closed }) {
                writeStandardError("sagalane: a Runtime was dropped on one of its own threads without close(); its threads and files stay open\n")
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
    public func start() throws -> Int {
        let startLoop = try state.withLock { (state) throws(RuntimeError) -> Bool in
            switch state.phase {
            case .created: break
            case .running: throw RuntimeError(.state, "the runtime was already started")
            case .closing, .closed: throw RuntimeError(.closed, "the runtime is closed")
            }
            if log.isReadOnly {
                throw RuntimeError(.readOnly, "a runtime opened read-only serves diagnostics only and cannot start")
            }
            defer { state.loopStarted = true }
            if options.loopMode == .host {
                if let host = state.hostThread, pthread_equal(host, pthread_self()) == 0 {
                    throw RuntimeError(.state, "in host mode, start the runtime on the thread that runs its loop")
                }
                state.hostThread = pthread_self()
            }
            return !state.loopStarted && options.loopMode == .ownThread
        }
        if startLoop {
            do {
                try loop.startThread()
            } catch {
                state.withLock { $0.loopStarted = false }
                throw RuntimeError(error)
            }
        }
        let coordinator = self.coordinator
        let recovered = waitFor { () async -> Result<Int, CoordinatorError> in
            do throws(CoordinatorError) { return .success(try await coordinator.start()) } catch { return .failure(error) }
        }
        let count = try recovered.get()
        sweeper?.start()
        state.withLock { if $0.phase == .created { $0.phase = .running } }
        return count
    }

    /// Whether `start()` succeeded and `close()` has not begun.
    public var isRunning: Bool { state.withLock { $0.phase == .running } }

    /// Host mode: runs the loop on the calling thread in `mode`.
    /// - Throws: `RuntimeError.state` in own-thread mode, before `start()`, or from inside a
    ///   callback of the loop; `.closed` once closing began.
    public func run(_ mode: EventLoopRunMode) throws(RuntimeError) {
        guard options.loopMode == .host else {
            throw RuntimeError(.state, "the runtime runs its loop on its own thread; run() is for host mode")
        }
        let phase = state.withLock { $0.phase }
        guard phase == .running else {
            throw phase == .created ? RuntimeError(.state, "start the runtime before running its loop")
                : RuntimeError(.closed, "the runtime is closed")
        }
        guard !loop.inEventLoop else {
            throw RuntimeError(.state, "the loop cannot be run from inside one of its callbacks")
        }
        guard isHostThread else {
            throw RuntimeError(.state, "run the loop on the thread that started the runtime")
        }
        runLock.lock()
        defer { runLock.unlock() }
        if state.withLock({ $0.phase }) == .running { loop.run(mode) }
    }

    /// Host mode: whether the calling thread is the one that started the runtime.
    private var isHostThread: Bool {
        state.withLock { $0.hostThread.map { pthread_equal($0, pthread_self()) != 0 } ?? false }
    }

    /// Host mode: makes a `run(.default)` in progress return soon. Any thread.
    public func stopRunning() {
        loop.stopRunning()
    }

    /// Manual clock: moves loop time forward, firing what falls due; returns once they ran.
    public func advanceTime(by duration: Duration) throws(RuntimeError) {
        guard options.clock == .manual else {
            throw RuntimeError(.state, "advancing time needs a runtime with the manual clock")
        }
        let loop = self.loop
        onLoop { loop.advanceTime(by: duration) }
    }

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
                    writeStandardError("sagalane: closing the runtime waits for a thread: \(error)\n")
                    reported = true
                }
                usleep(10_000)
            }
        }
    }

    private func finishClose() {
        let host = options.loopMode == .host
        if host {
            // Take the loop from whoever runs it; from here on the closing thread runs it.
            loop.stopRunning()
            runLock.lock()
            state.withLock { $0.hostThread = pthread_self() }
        }
        defer { if host { runLock.unlock() } }
        sweeper?.stop()
        let loopStarted = state.withLock { $0.loopStarted }
        if !loopStarted {
            // Nothing runs the loop: close it first, so work sent to it runs at once here.
            loop.shutdown()
        }
        let coordinator = self.coordinator
        onLoop { coordinator.assumeIsolated { $0.close() } }
        lanes.shutdown()
        laneHandlers.removeAll()
        loop.shutdown()
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

    private func checkRunning() throws(RuntimeError) {
        switch state.withLock({ $0.phase }) {
        case .running: return
        case .created: throw RuntimeError(.state, "the runtime has not been started")
        case .closing, .closed: throw RuntimeError(.closed, "the runtime is closed")
        }
    }

    private func checkOpen() throws(RuntimeError) {
        let phase = state.withLock { $0.phase }
        if phase == .closing || phase == .closed { throw RuntimeError(.closed, "the runtime is closed") }
    }

    // MARK: Waiting for the loop

    /// Runs `body` on the loop and returns its result; at once when already on the loop.
    public func onLoop<T: Sendable>(_ body: @escaping @Sendable () -> T) -> T {
        if loop.inEventLoop { return body() }
        let done = Completion<T>()
        loop.execute { done.set(body()) }
        return wait(for: done)
    }

    /// Runs `body` as a task and blocks the calling thread until it finishes. Not for the
    /// loop thread when `body` needs the loop.
    public func waitFor<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
        let done = Completion<T>()
        if state.withLock({ $0.loopStarted }) && !loop.inEventLoop {
            // On the loop, so that waiting never needs a thread of Swift's global pool.
            Task(executorPreference: loop) { done.set(await body()) }
        } else {
            Task { done.set(await body()) }
        }
        return wait(for: done)
    }

    /// Blocks until `done` is set. In host mode, on the host thread (outside a callback), it
    /// runs the loop meanwhile, since what it waits for may need the loop (a retry timer, the
    /// coordinator); whoever sets `done` wakes the loop.
    public func wait<T>(for done: Completion<T>) -> T {
        guard options.loopMode == .host, !loop.inEventLoop, isHostThread else { return done.wait() }
        let loop = self.loop
        done.notify { loop.execute {} }
        while true {
            if let value = done.current { return value }
            if runLock.tryLock() {
                if done.current == nil, state.withLock({ $0.loopStarted }) { loop.run(.once) }
                runLock.unlock()
                if !state.withLock({ $0.loopStarted }), let value = done.wait(milliseconds: 10) { return value }
            } else if let value = done.wait(milliseconds: 10) {
                // A closing thread took the loop; it runs it.
                return value
            }
        }
    }

    /// Throws unless the calling thread may block until a lane job ends: not the loop (in a
    /// callback), not a lane worker (the job may need its slot), not the log writer.
    public func checkMayWaitForJobs() throws(RuntimeError) {
        if loop.inEventLoop {
            throw RuntimeError(.state, "waiting for a job here would block the event loop; submit with a done callback instead")
        }
        switch OSThread.currentRole {
        case .laneWorker?:
            throw RuntimeError(.state, "a lane job cannot wait for another job (it would hold a worker the other may need)")
        case .logWriter?, .eventLoop?:
            throw RuntimeError(.state, "this sagalane thread cannot wait for a job; submit with a done callback instead")
        default:
            return
        }
    }

    // MARK: Sagas and events

    /// Starts a saga of type `name` (see `Coordinator.beginSaga`).
    /// - Throws: `CoordinatorError` or `RuntimeError`.
    @discardableResult
    public func startSaga(name: String, input: JSON) throws -> UInt64 {
        try checkRunning()
        return try coordinator.beginSaga(name: name, input: input)
    }

    /// Ends saga `id` as failed with reason `"cancelled: <reason>"`: claimed at once, recorded
    /// in the background.
    public func cancelSaga(id: UInt64, reason: String) throws {
        try checkRunning()
        let coordinator = self.coordinator
        let result = onLoop { () -> Result<Void, CoordinatorError> in
            coordinator.assumeIsolated { coordinator in
                do throws(CoordinatorError) { try coordinator.requestCancel(id: id, reason: reason); return .success(()) } catch {
                    return .failure(error)
                }
            }
        }
        try result.get()
    }

    /// Reports step `step` of saga `sagaID` failed, as a target would.
    public func failStep(sagaID: UInt64, step: UInt32, reason: String) throws(RuntimeError) {
        try checkOpen()
        StepReporter(bus: bus, sagaID: sagaID, step: step).fail(reason)
    }

    /// Publishes an event. Any thread.
    @discardableResult
    public func publish(_ event: Event) throws(RuntimeError) -> Event {
        try checkOpen()
        return bus.publish(event)
    }

    /// Delivers every event published from now on to `deliver`, on a thread of its own.
    public func subscribe(bufferSize: Int, deliver: @escaping @Sendable (BusDelivery) -> Void) throws(RuntimeError) -> EventDelivery {
        try checkOpen()
        let delivery: EventDelivery
        do {
            delivery = try EventDelivery(bus: bus, bufferSize: bufferSize, deliver: deliver)
        } catch {
            throw RuntimeError(error)
        }
        let accepted = state.withLock { state -> Bool in
            guard state.phase != .closing && state.phase != .closed else { return false }
            state.deliveries[ObjectIdentifier(delivery)] = delivery
            return true
        }
        guard accepted else {
            delivery.stop()
            throw RuntimeError(.closed, "the runtime is closed")
        }
        return delivery
    }

    /// Stops a subscription made with `subscribe`; `deliver` is never called again once this
    /// returns (or, called from `deliver` itself, once it returns).
    public func unsubscribe(_ delivery: EventDelivery) {
        _ = state.withLock { $0.deliveries.removeValue(forKey: ObjectIdentifier(delivery)) }
        delivery.stop()
    }

    // MARK: Lanes

    /// Creates lane `name` in the pool. A persisted lane first reconciles the log's rows left
    /// by a previous process (see `Lane.recover`).
    public func createLane(
        name: String,
        maxConcurrent: Int,
        persisted: Bool,
        reconstruct: @escaping @Sendable (JobRecord) -> LaneJob? = { _ in nil },
        onRecoveredComplete: @escaping @Sendable (String, LaneJobOutcome) -> Void = { _, _ in }
    ) throws -> Lane {
        try checkOpen()
        guard !name.isEmpty else { throw LaneError(.invalidArgument, "a lane needs a name") }
        return try laneCreation.withLock { _ throws -> Lane in
            if lanes.names.contains(name) { throw LaneError(.duplicateLane, "a lane named '\(name)' already exists") }
            if persisted && log.isReadOnly {
                throw RuntimeError(.readOnly, "the log was opened read-only: lane '\(name)' cannot persist its jobs")
            }
            let lane = Lane(name: name, maxConcurrent: maxConcurrent, store: persisted ? log : nil, loop: loop)
            if lane.workerThreads == 0 {
                // Without a single worker its jobs could only wait; say so now instead.
                lane.shutdown()
                throw RuntimeError(.thread, "lane '\(name)' could not start a worker thread: \(lane.lastThreadError.map { "\($0)" } ?? "unknown")")
            }
            if persisted {
                let recovered = waitFor { () async -> Result<Void, LaneError> in
                    do throws(LaneError) {
                        try await lane.recover(reconstruct: reconstruct, onComplete: onRecoveredComplete)
                        return .success(())
                    } catch {
                        return .failure(error)
                    }
                }
                if case .failure(let error) = recovered {
                    lane.shutdown()
                    throw error
                }
            }
            try lanes.add(lane)
            return lane
        }
    }

    // MARK: Diagnostics

    /// Up to `limit` sagas, most recent first.
    public func recentSagas(limit: Int) throws(SagaLogError) -> JSON {
        .array(try log.snapshotRecent(limit: limit).map(\.json))
    }

    /// Sagas running, compensating or failed, with their steps.
    public func unresolvedSagas() throws(SagaLogError) -> JSON {
        .array(try log.unresolvedSagas().map(\.json))
    }

    /// Saga `id` with its steps, or `nil`.
    public func saga(id: UInt64) throws(SagaLogError) -> JSON? {
        try log.saga(id: id)?.json
    }

    /// Up to `limit` lane jobs, most recent activity first, of one lane and one state when
    /// those are given.
    public func recentJobs(lane: String? = nil, state: JobState? = nil, limit: Int) throws(SagaLogError) -> JSON {
        .array(try log.recentJobs(lane: lane, state: state, limit: limit).map(\.json))
    }

    /// What the log holds, counted (see `LogStats.json`).
    public func logStats() throws(SagaLogError) -> JSON {
        try log.stats().json
    }

    /// Deletes terminal sagas that ended more than `age` ago.
    /// - Returns: How many were deleted.
    public func vacuum(olderThan age: Duration) throws(SagaLogError) -> Int {
        let log = self.log
        let cutoff = Timestamp.now().advanced(by: .zero - age)
        let result = waitFor { () async -> Result<Int, SagaLogError> in
            do throws(SagaLogError) { return .success(try await log.vacuum(olderThan: cutoff)) } catch { return .failure(error) }
        }
        return try result.get()
    }
}

/// One subscriber's delivery thread: takes events from a bus subscription in publication
/// order and hands each to `deliver`.
public final class EventDelivery: Sendable {
    private final class Shared: Sendable {
        let subscription: BusSubscription
        let stopped = Atomic<Bool>(false)
        init(subscription: BusSubscription) { self.subscription = subscription }
    }

    private let shared: Shared
    private let thread: OSThread

    init(bus: EventBus, bufferSize: Int, deliver: @escaping @Sendable (BusDelivery) -> Void) throws(ThreadStartError) {
        let shared = Shared(subscription: bus.subscribe(bufferSize: bufferSize))
        self.shared = shared
        do {
            thread = try OSThread(name: "sagalane-delivery", role: .delivery) {
                while let delivery = shared.subscription.nextBlocking() {
                    if shared.stopped.load(ordering: .acquiring) { break }
                    deliver(delivery)
                }
            }
        } catch {
            shared.subscription.cancel()
            throw error
        }
    }

    /// Stops delivering; buffered events are dropped. Waits for a delivery in progress unless
    /// called from the delivery thread itself. Idempotent.
    func stop() {
        guard !shared.stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        shared.subscription.cancel()
        if thread.isCurrent { thread.detach() } else { thread.join() }
    }

    deinit { stop() }
}
