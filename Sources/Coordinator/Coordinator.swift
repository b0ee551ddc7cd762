import SagaLaneEventLoop
import SagaLaneJSON
import SagaLaneLog
import SagaLaneSupport
import Synchronization

/// Runs sagas: starts them from triggers or on request, routes events to them, writes every
/// transition to the log ahead of its effect, and ends each in exactly one terminal event.
///
/// The coordinator is an actor whose executor is the runtime's `EventLoop`, so all saga state
/// lives on the loop thread without locks. Registration (`register…`) and `startSaga` are safe
/// from any thread.
///
/// **Write-ahead.** A command reaches its target only after its step row is durable;
/// `SagaCompleted` / `SagaFailed` is published only after the terminal row is durable. A failed
/// log write fails the saga with that error. If even the failure cannot be written, the
/// coordinator marks the log unhealthy, publishes `SagaFailed` with `"durable": false` (so
/// subscribers still see exactly one terminal event) and refuses new sagas from then on.
public actor Coordinator {
    public nonisolated let loop: EventLoop
    public nonisolated let log: SagaLog
    public nonisolated let bus: EventBus
    /// Where the coordinator says what no caller can be told (an event whose trigger could not
    /// start its saga, a log that stopped taking sagas' ends).
    public nonisolated let diagnostics: Diagnostics

    public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }

    private enum Phase: Equatable { case created, running, closed }

    private struct Status {
        var phase = Phase.created
        var unhealthy: String?
    }

    private nonisolated let registry = SagaRegistry()
    private nonisolated let status = Mutex(Status())
    private nonisolated let nextID = Atomic<UInt64>(1)
    private nonisolated let inbox = Mutex(Inbox())
    private nonisolated(unsafe) var sinkID = 0

    /// Work for the loop, in the order it arrived: published events, and sagas started with
    /// `startSaga` (queued with the events, so an event published after `startSaga` returned
    /// is always handled after that saga's launch).
    private enum InboxItem: Sendable {
        case event(Event)
        case launch(Launch)
    }

    /// A saga made and given its id, on its way to its running row.
    private struct Launch: @unchecked Sendable {
        let id: UInt64
        let type: SagaType
        /// Made by the type's factory and referenced by nothing else, so handing it to the
        /// loop is safe.
        let saga: Saga
        /// The input as the log stores it (recovery rebuilds the saga from it).
        let inputJSON: String
        let onStarted: (@Sendable (Result<UInt64, SagaLaneError>) -> Void)?
    }

    private struct Inbox {
        var items: [InboxItem] = []
        var drainScheduled = false
    }

    /// One saga in flight, owned by the loop thread.
    private final class Instance {
        let id: UInt64
        let type: SagaType
        let saga: Saga
        var nextStep: UInt32 = 0
        var awaitingStep: UInt32?
        var mailbox: [Event] = []
        var mailboxHead = 0
        var busy = false
        var ended = false
        var deadline: TimerID?

        init(id: UInt64, type: SagaType, saga: Saga) {
            self.id = id
            self.type = type
            self.saga = saga
        }
    }

    private var sagas: [UInt64: Instance] = [:]
    private var interested: [String: Set<UInt64>] = [:]
    /// Events tagged with a saga whose id was handed out but whose running row is not yet
    /// durable: they wait here and are delivered after its `start`, not dropped.
    private var launching: [UInt64: [Event]] = [:]
    /// The inbox's other buffer, empty between drains.
    private var spareInbox: [InboxItem] = []
    /// Cancels that arrived while their saga was launching: it ends with them once its running
    /// row is durable, without running.
    private var cancelledWhileLaunching: [UInt64: String] = [:]

    /// Creates a coordinator. It attaches to `bus` at once, so events published before `start`
    /// are kept and handled, in order, once start-up recovery is done.
    public init(loop: EventLoop, log: SagaLog, bus: EventBus, diagnostics: Diagnostics = .standardError) {
        self.loop = loop
        self.log = log
        self.bus = bus
        self.diagnostics = diagnostics
        sinkID = bus.attachSink { [weak self] event in self?.accept(event) }
    }

    /// The bus sink: queues the event and makes sure a drain is scheduled on the loop.
    private nonisolated func accept(_ event: Event) {
        enqueue(.event(event))
    }

    /// Queues `item` for the loop and makes sure a drain is scheduled.
    private nonisolated func enqueue(_ item: InboxItem) {
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
    /// taking events.
    /// - Returns: How many unfinished sagas recovery found.
    @discardableResult
    public func start() async throws(SagaLaneError) -> Int {
        guard status.withLock({ $0.phase }) == .created else {
            throw SagaLaneError(.invalidArgument, "the coordinator was already started")
        }
        let maxID: UInt64
        do { maxID = try log.maxSagaID() } catch {
            throw SagaLaneError(.log, "cannot read the highest saga id: \(error)")
        }
        nextID.store(maxID + 1, ordering: .sequentiallyConsistent)
        let recovered = try await SagaRecovery(log: log, registry: registry).run()
        status.withLock { $0.phase = .running }
        drainInbox()
        return recovered
    }

    /// Stops taking events and new sagas. Sagas in flight stay `running` in the log, and the
    /// next start-up's recovery deals with them. Idempotent.
    public func close() {
        status.withLock { $0.phase = .closed }
        bus.detachSink(sinkID)
        for instance in sagas.values {
            if let deadline = instance.deadline { loop.cancelTimer(deadline) }
            instance.ended = true
        }
        sagas.removeAll()
        interested.removeAll()
        launching.removeAll()
        cancelledWhileLaunching.removeAll()
        // Sagas begun but not yet launched never start; whoever waits for them is told.
        let unlaunched = inbox.withLock { inbox -> [InboxItem] in
            defer { inbox.items.removeAll() }
            return inbox.items
        }
        for case .launch(let launch) in unlaunched {
            launch.onStarted?(.failure(SagaLaneError(.closed, "the coordinator closed before saga \(launch.id) started")))
        }
    }

    /// Whether the log can still record sagas' ends, and if not, why.
    public nonisolated var unhealthyReason: String? { status.withLock { $0.unhealthy } }

    /// Sagas in flight.
    public var inFlightCount: Int { sagas.count }

    /// The ids of the sagas in flight.
    public var inFlightIDs: [UInt64] { Array(sagas.keys) }

    // MARK: Starting and cancelling sagas

    /// Starts a saga of type `name` with `input`: validates both and allocates the id now, then
    /// writes the `running` row and runs the saga on the loop.
    /// - Parameter onStarted: Called on the loop thread once the `running` row is durable and
    ///   `SagaStarted` is published, or with the error that stopped it.
    /// - Returns: The saga's id.
    /// - Throws: `.notFound` (no such type), `.refused` (the type's factory refused the input),
    ///   `.unhealthy`, `.state` (not started), `.closed`.
    @discardableResult
    public nonisolated func startSaga(
        name: String,
        input: JSON,
        onStarted: (@Sendable (Result<UInt64, SagaLaneError>) -> Void)? = nil
    ) throws(SagaLaneError) -> UInt64 {
        try checkAcceptingSagas()
        guard let type = registry.type(named: name) else {
            throw SagaLaneError(.notFound, "no saga type named '\(name)'")
        }
        let saga = try make(type, input)
        let id = nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        enqueue(.launch(Launch(id: id, type: type, saga: saga, inputJSON: input.serialized, onStarted: onStarted)))
        return id
    }

    /// Starts a saga and returns once its `running` row is durable and `SagaStarted` is out.
    public nonisolated func startSaga(name: String, input: JSON = .null) async throws(SagaLaneError) -> UInt64 {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<UInt64, SagaLaneError>, Never>) in
            do throws(SagaLaneError) {
                try startSaga(name: name, input: input) { continuation.resume(returning: $0) }
            } catch {
                continuation.resume(returning: .failure(error))
            }
        }
        return try result.get()
    }

    /// A saga of `type` made from `input` by the type's factory.
    private nonisolated func make(_ type: SagaType, _ input: JSON) throws(SagaLaneError) -> Saga {
        do { return try type.make(input) } catch let error as SagaLaneError {
            throw SagaLaneError(.refused, "saga type '\(type.name)' refused its input: \(error.message)", underlying: error)
        } catch {
            throw SagaLaneError(.refused, "saga type '\(type.name)' refused its input: \(error)")
        }
    }

    /// Ends saga `id` as failed with reason `"cancelled: <reason>"`, returning once its
    /// terminal row is durable and `SagaFailed` is out.
    /// - Throws: `unknownSaga` when no such saga is in flight.
    public func cancelSaga(id: UInt64, reason: String) async throws(SagaLaneError) {
        if launching[id] != nil {
            // It ends as soon as its running row is durable.
            return try requestCancel(id: id, reason: reason)
        }
        guard let instance = sagas[id], !instance.ended else {
            throw SagaLaneError(.notFound, "no saga \(id) is in flight")
        }
        await finish(instance, as: .failed, reason: "cancelled: \(reason)")
    }

    /// Claims saga `id`'s end at once (no other outcome can win after this returns) and
    /// records it as failed with reason `"cancelled: <reason>"` in the background. For callers
    /// on the loop thread that cannot wait.
    /// - Throws: `unknownSaga` when no such saga is in flight.
    public func requestCancel(id: UInt64, reason: String) throws(SagaLaneError) {
        if launching[id] != nil, cancelledWhileLaunching[id] == nil {
            cancelledWhileLaunching[id] = reason
            return
        }
        guard let instance = sagas[id], claimTerminal(instance) else {
            throw SagaLaneError(.notFound, "no saga \(id) is in flight")
        }
        onLoop { await self.recordEnd(instance, as: .failed, reason: "cancelled: \(reason)") }
    }

    private nonisolated func checkAcceptingSagas() throws(SagaLaneError) {
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

    // MARK: Events

    private nonisolated func scheduleDrain() {
        loop.execute { [self] in
            assumeIsolated { $0.drainInbox() }
        }
    }

    private func drainInbox() {
        let phase = status.withLock { $0.phase }
        guard phase == .running else {
            inbox.withLock { $0.drainScheduled = false }
            return
        }
        while true {
            // Swap buffers with the inbox rather than copy and empty it, which would allocate
            // a new buffer of its capacity on every drain.
            var items: [InboxItem] = []
            swap(&items, &spareInbox)
            inbox.withLock { inbox in
                swap(&items, &inbox.items)
                if items.isEmpty { inbox.drainScheduled = false }
            }
            defer {
                items.removeAll(keepingCapacity: true)
                spareInbox = items
            }
            if items.isEmpty { return }
            for item in items {
                switch item {
                case .event(let event):
                    handle(event)
                case .launch(let item):
                    launch(item)
                }
            }
        }
    }

    private func handle(_ event: Event) {
        if event.isLifecycle { return }
        if event.type == Event.sagaActionFailed, let id = event.sagaID {
            if let instance = sagas[id] {
                let reason = event.payload["reason"]?.stringValue ?? event.payload.serialized
                onLoop { await self.finish(instance, as: .failed, reason: "action failed: \(reason)") }
            }
            return
        }
        // Existing sagas first: a saga never receives the event that triggered it.
        if let id = event.sagaID {
            if let instance = sagas[id] {
                deliver(event, to: instance)
            } else if launching[id] != nil {
                launching[id]!.append(event)
            }
        } else if let ids = interested[event.type] {
            for id in ids {
                if let instance = sagas[id] { deliver(event, to: instance) }
            }
        }
        for (trigger, type) in registry.triggers(firedBy: event) {
            startTriggered(type: type, input: trigger.input(event), by: event)
        }
    }

    private func startTriggered(type: SagaType, input: JSON, by event: Event) {
        let saga: Saga
        do {
            try checkAcceptingSagas()
            saga = try make(type, input)
        } catch {
            diagnostics.warning("event \(event.type) (version \(event.version)) did not start a \(type.name) saga: \(error.message)")
            return
        }
        let id = nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        launch(Launch(id: id, type: type, saga: saga, inputJSON: input.serialized, onStarted: nil))
    }

    private func deliver(_ event: Event, to instance: Instance) {
        instance.mailbox.append(event)
        if !instance.busy {
            instance.busy = true
            onLoop { await self.pump(instance) }
        }
    }

    // MARK: Running a saga

    private func launch(_ launch: Launch) {
        launching[launch.id] = []
        onLoop { await self.run(launch) }
    }

    /// A new saga's order of events: durable `running` row, `SagaStarted`, registry insert,
    /// `start`, its action applied, deadline armed.
    private func run(_ launch: Launch) async {
        let id = launch.id, type = launch.type, saga = launch.saga, onStarted = launch.onStarted
        do {
            try await log.startSaga(id: id, name: type.name, inputJSON: launch.inputJSON)
        } catch {
            let failure = SagaLaneError(.log, "saga \(id) (\(type.name)) was not started: its running row could not be written: \(error)")
            launching.removeValue(forKey: id)
            cancelledWhileLaunching.removeValue(forKey: id)
            diagnostics.error(failure.message)
            // Its one terminal event, so whoever holds the id is not left waiting.
            bus.publish(type: Event.sagaFailed, sagaID: id,
                        payload: ["name": .string(type.name), "reason": .string(failure.message), "durable": false])
            onStarted?(.failure(failure))
            return
        }
        if status.withLock({ $0.phase }) == .closed {
            // Closed while the row was written: it stays running for the next start's recovery.
            onStarted?(.failure(SagaLaneError(.closed, "the coordinator closed while saga \(id) was starting")))
            return
        }
        bus.publish(type: Event.sagaStarted, sagaID: id, payload: ["name": .string(type.name)])
        let instance = Instance(id: id, type: type, saga: saga)
        instance.mailbox = launching.removeValue(forKey: id) ?? []
        if let reason = cancelledWhileLaunching.removeValue(forKey: id) {
            onStarted?(.success(id))
            instance.ended = true
            await recordEnd(instance, as: .failed, reason: "cancelled: \(reason)")
            return
        }
        instance.busy = true
        sagas[id] = instance
        for interest in type.interests { interested[interest, default: []].insert(id) }
        onStarted?(.success(id))

        let action = saga.start(context(of: instance))
        await apply(action, to: instance)
        if !instance.ended {
            instance.deadline = loop.scheduleTimer(after: type.timeout) { [self] in
                assumeIsolated { $0.deadlinePassed(id) }
            }
        }
        await pump(instance)
    }

    private func context(of instance: Instance) -> SagaContext {
        SagaContext(sagaID: instance.id, name: instance.type.name, nextStepIndex: instance.nextStep)
    }

    /// Feeds the saga its queued events one at a time; the saga is busy until its mailbox is
    /// empty, so its events are handled in order even while log writes are in flight.
    private func pump(_ instance: Instance) async {
        while !instance.ended, instance.mailboxHead < instance.mailbox.count {
            let event = instance.mailbox[instance.mailboxHead]
            instance.mailboxHead += 1
            let action = instance.saga.onEvent(event, context(of: instance))
            if action == .wait { continue }
            if let step = instance.awaitingStep {
                instance.awaitingStep = nil
                do {
                    try await log.finishStep(sagaID: instance.id, index: step, outputJSON: event.json.serialized)
                } catch {
                    await finish(instance, as: .failed, reason: "log write failed: step \(step) could not be marked succeeded: \(error)")
                    break
                }
                if instance.ended { break }
            }
            await apply(action, to: instance)
        }
        instance.mailbox.removeAll()
        instance.mailboxHead = 0
        instance.busy = false
    }

    private func apply(_ action: SagaAction, to instance: Instance) async {
        switch action {
        case .wait:
            return
        case .done:
            await finish(instance, as: .completed, reason: nil)
        case .failed(let reason):
            await finish(instance, as: .failed, reason: reason)
        case .issue(let targetName, let command):
            let index = instance.nextStep
            instance.nextStep += 1
            let target: any SagaTarget
            do { target = try registry.target(named: targetName) } catch {
                await finish(instance, as: .failed, reason: "step \(index) names an unknown target: \(error.message)")
                return
            }
            let injected: JSON
            if case .object = command {
                injected = command.setting("saga_id", to: .int(Int64(bitPattern: instance.id))).setting("step", to: .int(Int64(index)))
            } else {
                injected = command
            }
            do {
                try await log.startStep(sagaID: instance.id, index: index, name: stepName(targetName, command),
                                        target: targetName, commandJSON: injected.serialized)
            } catch {
                await finish(instance, as: .failed, reason: "log write failed: step \(index) could not be recorded, so it was not dispatched: \(error)")
                return
            }
            if instance.ended { return }
            instance.awaitingStep = index
            let step = StepDispatch(sagaID: instance.id, step: index, target: targetName, command: injected)
            do {
                try target.dispatch(step, reporter: StepReporter(bus: bus, sagaID: instance.id, step: index))
            } catch {
                await finish(instance, as: .failed, reason: "target '\(targetName)' refused step \(index): \(error)")
            }
        }
    }

    private func deadlinePassed(_ id: UInt64) {
        guard let instance = sagas[id], !instance.ended else { return }
        instance.deadline = nil
        onLoop { await self.finish(instance, as: .failed, reason: "saga timeout") }
    }

    /// Takes the right to end the saga. Exactly one caller per saga gets `true`, whatever the
    /// interleaving of done, failed, deadline, target-reported failure and cancel.
    private func claimTerminal(_ instance: Instance) -> Bool {
        if instance.ended { return false }
        instance.ended = true
        sagas.removeValue(forKey: instance.id)
        for interest in instance.type.interests {
            interested[interest]?.remove(instance.id)
            if interested[interest]?.isEmpty == true { interested.removeValue(forKey: interest) }
        }
        if let deadline = instance.deadline {
            loop.cancelTimer(deadline)
            instance.deadline = nil
        }
        return true
    }

    private func finish(_ instance: Instance, as state: SagaState, reason: String?) async {
        guard claimTerminal(instance) else { return }
        await recordEnd(instance, as: state, reason: reason)
    }

    /// Writes the end of a saga whose terminal claim was won, then publishes its one terminal
    /// event.
    private func recordEnd(_ instance: Instance, as state: SagaState, reason: String?) async {
        if state != .completed, let step = instance.awaitingStep {
            instance.awaitingStep = nil
            // Best effort: the saga's terminal row below is what recovery and operators rely on.
            try? await log.failStep(sagaID: instance.id, index: step, reason: reason ?? "failed")
        }
        var payload: JSONObject = ["name": .string(instance.type.name)]
        if let reason { payload["reason"] = .string(reason) }
        do {
            try await log.terminateSaga(id: instance.id, state: state, reason: reason)
        } catch {
            let why = "saga \(instance.id) ended \(state.rawValue) but its terminal row could not be written: \(error)"
            status.withLock { if $0.unhealthy == nil { $0.unhealthy = why } }
            diagnostics.error("\(why); refusing new sagas")
            payload["durable"] = false
            if state == .completed { payload["reason"] = .string("completed, but the log could not record it: \(error)") }
            bus.publish(type: Event.sagaFailed, sagaID: instance.id, payload: .object(payload))
            return
        }
        bus.publish(type: state == .completed ? Event.sagaCompleted : Event.sagaFailed,
                    sagaID: instance.id, payload: .object(payload))
    }

    /// Starts a task that runs on the loop from start to end: its log writes resume there
    /// directly, never through Swift's global pool (which would cost two thread hops per
    /// write, and stall if a host blocked the pool's threads).
    private func onLoop(_ body: sending @escaping @isolated(any) () async -> Void) {
        Task(executorPreference: loop, operation: body)
    }

    private func stepName(_ target: String, _ command: JSON) -> String {
        let kind = command["type"]?.stringValue ?? command["cmd"]?.stringValue ?? "command"
        return "issue_\(target)_\(kind)"
    }
}
