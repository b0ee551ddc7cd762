import SagaLaneEventLoop
import SagaLaneJSON
import SagaLaneLog
import SagaLaneSupport
import Synchronization

/// Runs sagas: starts them from triggers or on request, routes events to them, writes every
/// transition to the log ahead of its effect, and ends each in exactly one terminal event.
///
/// The coordinator is an actor whose executor is the runtime's `EventLoop`, so all saga state
/// lives on the loop thread without locks. Registration (`register…`), `startSaga` and
/// `whenEnded` are safe from any thread.
///
/// **Write-ahead.** A saga's id is handed out only once its running row is durable; a command
/// reaches its target only after its step row is durable; `SagaCompleted` / `SagaFailed` is
/// published only after the terminal row is durable. A failed log write fails the saga with
/// that error. If even the failure cannot be written, the coordinator marks the log
/// unhealthy, publishes `SagaFailed` with `"durable": false` (so subscribers still see exactly
/// one terminal event) and refuses new sagas from then on.
///
/// **Launch queue.** Sagas started but not yet running (their running row not yet durable)
/// are bounded by `launchQueueLimit`: past it, `startSaga` refuses with `.again` rather than
/// let a burst pile up memory and latency. A saga's deadline counts from when it runs.
public actor Coordinator {
    public nonisolated let loop: EventLoop
    public nonisolated let log: SagaLog
    public nonisolated let bus: EventBus
    /// Where the coordinator says what no caller can be told (an event whose trigger could not
    /// start its saga, a log that stopped taking sagas' ends).
    public nonisolated let diagnostics: Diagnostics
    /// How many sagas may wait to launch at once.
    public nonisolated let launchQueueLimit: Int

    /// The launch queue's limit unless the coordinator is given another: enough to keep the
    /// log's writer busy with big batches, small enough that a saga waiting behind a full
    /// queue still starts well within the default deadline.
    public static let defaultLaunchQueueLimit = 1024

    public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }

    enum Phase: Equatable { case created, running, closed }

    struct Status {
        var phase = Phase.created
        var unhealthy: String?
    }

    /// Sagas started and not yet launched, and who waits for room among them.
    struct LaunchQueue {
        var waiting = 0
        var roomWaiters: [@Sendable () -> Void] = []
    }

    nonisolated let registry = SagaRegistry()
    nonisolated let status = ConditionLock(Status())
    nonisolated let nextID = Atomic<UInt64>(1)
    nonisolated let inbox = ConditionLock(Inbox())
    nonisolated let launchQueue = ConditionLock(LaunchQueue())
    /// The bus sink's id, set once in `init`.
    private nonisolated let sink = Atomic<Int>(0)

    /// Work for the loop, in the order it arrived: published events and sagas to launch
    /// (queued with the events, so an event published after `startSaga` was called is handled
    /// after that saga's launch began).
    enum InboxItem: Sendable {
        case event(Event)
        case launch(Launch)
    }

    struct Inbox {
        var items: [InboxItem] = []
        var drainScheduled = false
    }

    // Loop-thread state.
    /// Sagas running their steps.
    var sagas: [UInt64: SagaInstance] = [:]
    /// Failed sagas undoing their succeeded steps.
    var compensatingSagas: [UInt64: SagaInstance] = [:]
    /// Untagged event types, and the sagas (in flight or launching) that want them.
    var interested: [ExactName: Set<UInt64>] = [:]
    /// Events for sagas whose running row is not yet durable: delivered after their `start`.
    var launching: [UInt64: [Event]] = [:]
    /// Sagas whose end was claimed but whose terminal row is not yet written.
    var ending: Set<UInt64> = []
    /// Who waits to hear how a saga in flight ends.
    var endWaiters: [UInt64: [(token: UInt64, done: @Sendable (Result<SagaEnd, SagaLaneError>) -> Void)]] = [:]
    /// Tokens for `whenEnded`, so a waiter that gave up can be forgotten.
    nonisolated let nextWaiterToken = Atomic<UInt64>(1)
    /// The inbox's other buffer, empty between drains.
    var spareInbox: [InboxItem] = []

    /// Creates a coordinator. It attaches to `bus` at once, so events published before `start`
    /// are kept and handled, in order, once start-up recovery is done.
    public init(loop: EventLoop, log: SagaLog, bus: EventBus, diagnostics: Diagnostics = .standardError,
                launchQueueLimit: Int = Coordinator.defaultLaunchQueueLimit) {
        self.loop = loop
        self.log = log
        self.bus = bus
        self.diagnostics = diagnostics
        self.launchQueueLimit = max(1, launchQueueLimit)
        // Lifecycle events (the coordinator's own announcements) never reach a saga: they stay
        // out of the inbox, which start-up recovery would fill with one per saga it ends.
        sink.store(bus.attachSink { [weak self] event in
            if !event.isLifecycle { self?.enqueue(.event(event)) }
        }, ordering: .releasing)
    }

    /// Queues `item` for the loop and makes sure a drain is scheduled.
    nonisolated func enqueue(_ item: InboxItem) {
        let schedule = inbox.withLock { inbox -> Bool in
            inbox.items.append(item)
            if inbox.drainScheduled { return false }
            inbox.drainScheduled = true
            return true
        }
        if schedule { scheduleDrain() }
    }

    // MARK: Registration (any thread)

    /// Registers a saga type. Its name must be new.
    public nonisolated func register(_ type: SagaType) throws(SagaLaneError) {
        try registry.register(type)
    }

    /// Adds a trigger. Its saga type must be registered; its event type cannot be a lifecycle
    /// event (those never start sagas).
    public nonisolated func addTrigger(_ trigger: Trigger) throws(SagaLaneError) {
        try registry.addTrigger(trigger)
    }

    /// Registers saga types and their triggers all at once, or none (see
    /// `Runtime.register(_:onlyNew:)`); returns the names registered.
    public nonisolated func register(types: [SagaType], triggers: [Trigger], onlyNew: Bool) throws(SagaLaneError) -> [String] {
        try registry.register(types: types, triggers: triggers, onlyNew: onlyNew)
    }

    /// Registers a command target under `name`.
    public nonisolated func register(target: any SagaTarget, named name: String) throws(SagaLaneError) {
        try registry.register(target: target, named: name)
    }

    /// Registers a family of targets named `<prefix>:<rest>` (e.g. `lane:`), resolved by
    /// `resolve(rest)` at dispatch; it throws for names it does not know.
    public nonisolated func registerTargetFamily(
        prefix: String,
        resolve: @escaping @Sendable (String) throws(SagaLaneError) -> any SagaTarget
    ) {
        registry.registerTargetFamily(prefix: prefix, resolve: resolve)
    }

    // MARK: Life cycle

    /// Seeds saga ids from the log, recovers every saga the log shows unfinished, then starts
    /// taking events. `progress` hears `.recovery` with the sagas dealt with so far (see
    /// `ProgressHandler`), on the loop, when there are any.
    /// - Returns: How many unfinished sagas recovery found.
    @discardableResult
    public func start(progress: ProgressHandler? = nil) async throws(SagaLaneError) -> Int {
        guard status.withLock({ $0.phase }) == .created else {
            throw SagaLaneError(.invalidArgument, "the coordinator was already started")
        }
        let maxID: UInt64
        do { maxID = try log.maxSagaID() } catch {
            throw SagaLaneError(error.code, "cannot read the highest saga id: \(error.message)", underlying: error)
        }
        // Ids are stored as SQLite integers: past Int64.max they would come back negative.
        guard maxID < UInt64(Int64.max) else {
            throw SagaLaneError(.corrupt, "the log's highest saga id \(Int64(bitPattern: maxID)) is out of range: the log was edited or is damaged")
        }
        nextID.store(maxID + 1, ordering: .sequentiallyConsistent)
        let recovered = try await recover(progress: progress)
        status.withLock { $0.phase = .running }
        drainInbox()
        return recovered
    }

    /// Stops taking events and new sagas. Sagas in flight stay `running` in the log, and the
    /// next start-up's recovery deals with them. Idempotent.
    public func close() {
        status.withLock { $0.phase = .closed }
        bus.detachSink(sink.load(ordering: .acquiring))
        for instance in Array(sagas.values) + Array(compensatingSagas.values) {
            if let deadline = instance.deadline { loop.cancelTimer(deadline) }
            cancelStepTimer(instance)
            instance.ended = true
            instance.phase = .running
            instance.awaiting = nil
        }
        sagas.removeAll()
        compensatingSagas.removeAll()
        ending.removeAll()
        interested.removeAll()
        launching.removeAll()
        let closed = SagaLaneError(.closed, "the coordinator closed before the saga ended")
        for waiters in endWaiters.values { for waiter in waiters { waiter.done(.failure(closed)) } }
        endWaiters.removeAll()
        // Sagas started but not yet launched never start; whoever waits for them is told.
        let unlaunched = inbox.withLock { inbox -> [InboxItem] in
            defer { inbox.items.removeAll() }
            return inbox.items
        }
        for case .launch(let launch) in unlaunched {
            leaveLaunchQueue(launch)
            launch.onStarted?(.failure(SagaLaneError(.closed, "the coordinator closed before the saga started")))
        }
        wakeRoomWaiters()
    }

    /// Whether the log can still record sagas' ends, and if not, why.
    public nonisolated var unhealthyReason: String? { status.withLock { $0.unhealthy } }

    /// Sagas in flight: running, or compensating.
    public var inFlightCount: Int { sagas.count + compensatingSagas.count }

    /// Sagas compensating.
    public var compensatingCount: Int { compensatingSagas.count }

    /// Sagas waiting for their running row.
    public var launchingCount: Int { launching.count }

    /// The ids of the sagas in flight.
    public var inFlightIDs: [UInt64] { Array(sagas.keys) + Array(compensatingSagas.keys) }

    // MARK: Starting sagas

    /// Starts a saga of type `name` with `input`: validates both now, then writes the
    /// `running` row and runs the saga on the loop. The id is handed out only once the row is
    /// durable, so an id a caller holds always names a saga in the log.
    ///
    /// **Idempotency keys.** With `idempotencyKey`, while a saga row holding that key exists
    /// (from this run or an earlier one, until a vacuum deletes it), the call starts nothing:
    /// `onStarted` gets that saga's id and `onEnded` its end. Two calls racing with one key
    /// start one saga; both get its id. The key is kept in the saga's row.
    /// - Parameters:
    ///   - onStarted: Called on the loop thread with the saga's id once its `running` row is
    ///     durable and `SagaStarted` is published, or with the error that stopped it.
    ///   - onEnded: Called on the loop thread once the saga ended (after its terminal event),
    ///     unless it never started.
    /// - Throws: `.notFound` (no such type), `.refused` (the type's factory refused the input),
    ///   `.again` (the launch queue is full), `.unhealthy`, `.state` (not started), `.closed`,
    ///   `.invalidArgument` (an empty key). Neither callback is called then.
    public nonisolated func startSaga(
        name: String,
        input: JSON,
        idempotencyKey: String? = nil,
        onStarted: @escaping @Sendable (Result<UInt64, SagaLaneError>) -> Void,
        onEnded: (@Sendable (SagaEnd) -> Void)? = nil
    ) throws(SagaLaneError) {
        try checkAcceptingSagas()
        guard let type = registry.type(named: name) else {
            throw SagaLaneError(.notFound, "no saga type named '\(name)'")
        }
        if let key = idempotencyKey {
            guard !key.isEmpty else { throw SagaLaneError(.invalidArgument, "an idempotency key must not be empty") }
            try SagaLog.checkValueSize(key.utf8.count, of: "the idempotency key")
            if let holder = try log.sagaID(idempotencyKey: key) {
                loop.execute { [self] in
                    assumeIsolated { $0.reportExisting(holder, onStarted: onStarted, onEnded: onEnded) }
                }
                return
            }
        }
        let saga = try make(type, input)
        try joinLaunchQueue()
        let id: UInt64
        do { id = try allocateID() } catch {
            leaveLaunchQueue(Launch(id: 0, type: type, saga: saga, inputJSON: "", onStarted: nil, onEnded: nil, admitted: true))
            throw error
        }
        enqueue(.launch(Launch(id: id, type: type, saga: saga, inputJSON: input.serialized,
                               onStarted: onStarted, onEnded: onEnded, admitted: true, idempotencyKey: idempotencyKey)))
    }

    /// Starts a saga and returns its id once its `running` row is durable and `SagaStarted`
    /// is out (with a key another saga holds: that saga's id, at once).
    public nonisolated func startSaga(name: String, input: JSON = .null, idempotencyKey: String? = nil) async throws(SagaLaneError) -> UInt64 {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<UInt64, SagaLaneError>, Never>) in
            do throws(SagaLaneError) {
                try startSaga(name: name, input: input, idempotencyKey: idempotencyKey, onStarted: { continuation.resume(returning: $0) })
            } catch {
                continuation.resume(returning: .failure(error))
            }
        }
        return try result.get()
    }

    /// A start whose key saga `holder` holds: its id now, its end when it comes.
    func reportExisting(_ holder: UInt64, onStarted: (@Sendable (Result<UInt64, SagaLaneError>) -> Void)?,
                        onEnded: (@Sendable (SagaEnd) -> Void)?) {
        onStarted?(.success(holder))
        guard let onEnded else { return }
        let token = nextWaiterToken.wrappingAdd(1, ordering: .relaxed).oldValue
        addEndWaiter(holder, token: token, inFlight: nil) { result in
            if case .success(let end) = result { onEnded(end) }
        }
    }

    /// Calls `wake` once there may be room in the launch queue (at once if there is); for a
    /// caller that got `.again` and wants to try again. Any thread.
    public nonisolated func whenLaunchQueueHasRoom(_ wake: @escaping @Sendable () -> Void) {
        let now = launchQueue.withLock { queue -> Bool in
            if queue.waiting < launchQueueLimit || status.withLock({ $0.phase }) == .closed { return true }
            queue.roomWaiters.append(wake)
            return false
        }
        if now { wake() }
    }

    /// The next saga id. Ids are stored as SQLite integers, so they end at `Int64.max`.
    nonisolated func allocateID() throws(SagaLaneError) -> UInt64 {
        let id = nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        guard id <= UInt64(Int64.max) else {
            throw SagaLaneError(.corrupt, "saga ids are used up: the next would be past \(Int64.max)")
        }
        return id
    }

    /// A saga of `type` made from `input` by the type's factory.
    nonisolated func make(_ type: SagaType, _ input: JSON) throws(SagaLaneError) -> Saga {
        do { return try type.make(input) } catch let error as SagaLaneError {
            throw SagaLaneError(.refused, "saga type '\(type.name)' refused its input: \(error.message)", underlying: error)
        } catch {
            throw SagaLaneError(.refused, "saga type '\(type.name)' refused its input: \(error)")
        }
    }

    nonisolated func checkAcceptingSagas() throws(SagaLaneError) {
        let status = self.status.withLock { $0 }
        if let reason = status.unhealthy {
            throw SagaLaneError(.unhealthy, "new sagas are refused because the log is unhealthy: \(reason)")
        }
        switch status.phase {
        case .created: throw SagaLaneError(.state, "the coordinator has not been started")
        case .closed: throw SagaLaneError(.closed, "the coordinator is closed")
        case .running: break
        }
    }

    private nonisolated func joinLaunchQueue() throws(SagaLaneError) {
        try launchQueue.withLock { (queue) throws(SagaLaneError) in
            guard queue.waiting < launchQueueLimit else {
                throw SagaLaneError(.again, "too many sagas waiting to launch (the limit is \(launchQueueLimit)); try again once some started")
            }
            queue.waiting += 1
        }
    }

    /// A saga left the launch queue (its running row was written, or it never will be).
    nonisolated func leaveLaunchQueue(_ launch: Launch) {
        guard launch.admitted else { return }
        let waiters = launchQueue.withLock { queue -> [@Sendable () -> Void] in
            queue.waiting -= 1
            defer { queue.roomWaiters.removeAll() }
            return queue.roomWaiters
        }
        for wake in waiters { wake() }
    }

    private nonisolated func wakeRoomWaiters() {
        let waiters = launchQueue.withLock { queue -> [@Sendable () -> Void] in
            defer { queue.roomWaiters.removeAll() }
            return queue.roomWaiters
        }
        for wake in waiters { wake() }
    }

    // MARK: Cancelling and waiting

    /// Ends saga `id` as failed with reason `"cancelled: <reason>"`, returning once its
    /// terminal row is durable and `SagaFailed` is out.
    /// - Throws: `.notFound` when no such saga is in flight.
    public func cancelSaga(id: UInt64, reason: String) async throws(SagaLaneError) {
        guard let instance = sagas[id], !instance.ended else {
            if compensatingSagas[id] != nil {
                throw SagaLaneError(.state, "saga \(id) is compensating: it failed already, and its compensations run to their end")
            }
            throw SagaLaneError(.notFound, "no saga \(id) is in flight")
        }
        await finish(instance, as: .failed, reason: "cancelled: \(reason)")
    }

    /// Claims saga `id`'s end at once (no other outcome can win after this returns) and
    /// records it as failed with reason `"cancelled: <reason>"` in the background. For callers
    /// on the loop thread that cannot wait.
    /// - Throws: `.notFound` when no such saga is in flight.
    public func requestCancel(id: UInt64, reason: String) throws(SagaLaneError) {
        guard let instance = sagas[id], claimTerminal(instance) else {
            throw SagaLaneError(.notFound, "no saga \(id) is in flight")
        }
        onLoop { await self.recordEnd(instance, as: .failed, reason: "cancelled: \(reason)") }
    }

    /// Calls `done` (on the loop thread) with how saga `id` ended: once it ends, for a saga in
    /// flight; at once, from the log, for one that already ended. Any thread.
    /// - `.notFound`: the log has no saga `id`; `.state`: the saga is unfinished but not in
    ///   flight here (it waits for the next start-up's recovery); `.closed`: the coordinator
    ///   closed before the saga ended.
    /// - Parameter inFlight: Called (on the loop thread) when the saga is in flight, so
    ///   `done` comes later, once it ends.
    /// - Returns: A token for `forgetEndWaiter`, for a waiter that gives up first.
    @discardableResult
    public nonisolated func whenEnded(_ id: UInt64, inFlight: (@Sendable () -> Void)? = nil,
                                      _ done: @escaping @Sendable (Result<SagaEnd, SagaLaneError>) -> Void) -> UInt64 {
        let token = nextWaiterToken.wrappingAdd(1, ordering: .relaxed).oldValue
        loop.execute { [self] in
            assumeIsolated { $0.addEndWaiter(id, token: token, inFlight: inFlight, done) }
        }
        return token
    }

    /// Drops the waiter `whenEnded` registered under `token` (its `done` is not called).
    public nonisolated func forgetEndWaiter(_ id: UInt64, token: UInt64) {
        loop.execute { [self] in
            assumeIsolated { coordinator in
                coordinator.endWaiters[id]?.removeAll { $0.token == token }
                if coordinator.endWaiters[id]?.isEmpty == true { coordinator.endWaiters.removeValue(forKey: id) }
            }
        }
    }

    func addEndWaiter(_ id: UInt64, token: UInt64, inFlight: (@Sendable () -> Void)?,
                              _ done: @escaping @Sendable (Result<SagaEnd, SagaLaneError>) -> Void) {
        if sagas[id] != nil || launching[id] != nil || ending.contains(id) {
            endWaiters[id, default: []].append((token, done))
            inFlight?()
            return
        }
        if status.withLock({ $0.phase }) == .closed {
            return done(.failure(SagaLaneError(.closed, "the coordinator is closed")))
        }
        do throws(SagaLaneError) {
            guard let row = try log.saga(id: id) else {
                return done(.failure(SagaLaneError(.notFound, "the log has no saga \(id)")))
            }
            guard row.state.isTerminal else {
                return done(.failure(SagaLaneError(.state, "saga \(id) is \(row.state.rawValue) but not in flight here: it waits for the next start-up's recovery")))
            }
            done(.success(SagaEnd(sagaID: id, state: row.state, reason: row.failureReason)))
        } catch {
            done(.failure(error))
        }
    }
}
