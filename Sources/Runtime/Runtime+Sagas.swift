import SagaLaneCoordinator
import SagaLaneDefinitions
import SagaLaneJSON
import SagaLaneSupport

/// Saga types, triggers, targets, sagas and events.
extension Runtime {
    /// Registers a saga type. Its name must be new.
    public func register(_ type: SagaType) throws(SagaLaneError) {
        try checkOpen()
        try coordinator.register(type)
    }

    /// Adds a trigger; its saga type must be registered.
    public func addTrigger(_ trigger: Trigger) throws(SagaLaneError) {
        try checkOpen()
        try coordinator.addTrigger(trigger)
    }

    /// Registers the saga types of a saga file with their triggers, all or none: a name
    /// already registered is refused (`.exists`), unless `onlyNew`, which keeps the type
    /// registered under that name as it is (a reload adds new sagas only: sagas in flight keep
    /// the definition they started with). Returns the names registered. May be called while
    /// sagas run.
    @discardableResult
    public func register(_ file: SagaFile, onlyNew: Bool = false) throws(SagaLaneError) -> [String] {
        try checkOpen()
        return try coordinator.register(types: file.sagaTypes, triggers: file.triggers, onlyNew: onlyNew)
    }

    /// Reads a saga file's text and registers its sagas as `register(_:onlyNew:)` does.
    /// - Throws: `.invalidArgument` with every problem of the file (`SagaFileError`'s
    ///   description, `<sagas>:LINE:COLUMN: …` a line), or what `register` throws.
    @discardableResult
    public func registerSagaFile(text: String, onlyNew: Bool = false) throws(SagaLaneError) -> [String] {
        let file: SagaFile
        do throws(SagaFileError) { file = try SagaFile(text: text, source: "<sagas>") } catch {
            throw SagaLaneError(.invalidArgument, error.description, underlying: error)
        }
        return try register(file, onlyNew: onlyNew)
    }

    /// Registers a command target under `name` (non-empty, no ':').
    public func register(target: any SagaTarget, named name: String) throws(SagaLaneError) {
        try checkOpen()
        try coordinator.register(target: target, named: name)
    }

    /// Starts a saga of type `name` and returns its id once its running row is durable: from
    /// then on the saga exists, in the log, under that id, whatever happens to the process.
    /// - Parameters:
    ///   - idempotencyKey: While a saga row holding this key exists, nothing is started and
    ///     that saga's id is returned (see `Coordinator.startSaga`).
    ///   - roomTimeoutMilliseconds: How long to wait for room when the launch queue is full
    ///     (0: not at all, `.again` at once; negative: as long as it takes).
    ///   - onEnded: Called once the saga ended, on the loop thread.
    /// - Throws: `.notFound`, `.refused`, `.again` (no room in time), `.unhealthy`, `.state`
    ///   (not started, or called on the loop thread, where it cannot wait: use
    ///   `startSaga(name:input:onStarted:)` there), `.closed`, or the log's error.
    @discardableResult
    public func startSaga(name: String, input: JSON, idempotencyKey: String? = nil, roomTimeoutMilliseconds: Int = 0,
                          onEnded: (@Sendable (SagaEnd) -> Void)? = nil) throws(SagaLaneError) -> UInt64 {
        guard !loop.inEventLoop else {
            throw SagaLaneError(.state, "starting a saga and waiting for its row would block the event loop; start it with a callback instead")
        }
        let started = Completion<Result<UInt64, SagaLaneError>>()
        try startSaga(name: name, input: input, idempotencyKey: idempotencyKey, roomTimeoutMilliseconds: roomTimeoutMilliseconds,
                      onStarted: { started.set($0) }, onEnded: onEnded)
        return try driver.wait(for: started).get()
    }

    /// Starts a saga without waiting for its row: `onStarted` gets its id (on the loop thread)
    /// once the running row is durable, or the error that stopped it.
    /// - Parameter roomTimeoutMilliseconds: As for the waiting form; when it is not 0 the call
    ///   may block for room, so only 0 is allowed on the loop thread.
    /// - Throws: what `Coordinator.startSaga` throws; the callbacks are then never called.
    public func startSaga(name: String, input: JSON, idempotencyKey: String? = nil, roomTimeoutMilliseconds: Int = 0,
                          onStarted: @escaping @Sendable (Result<UInt64, SagaLaneError>) -> Void,
                          onEnded: (@Sendable (SagaEnd) -> Void)? = nil) throws(SagaLaneError) {
        try checkRunning()
        if roomTimeoutMilliseconds != 0 && loop.inEventLoop {
            throw SagaLaneError(.state, "waiting for room to start a saga would block the event loop")
        }
        let clock = ContinuousClock()
        let deadline = clock.now + .milliseconds(max(0, roomTimeoutMilliseconds))
        while true {
            do throws(SagaLaneError) {
                return try coordinator.startSaga(name: name, input: input, idempotencyKey: idempotencyKey,
                                                 onStarted: onStarted, onEnded: onEnded)
            } catch where error.code == .again && roomTimeoutMilliseconds != 0 {
                let remaining = roomTimeoutMilliseconds < 0 ? Duration.seconds(3600) : deadline - clock.now
                guard remaining > .zero else { throw error }
                let room = Completion<Void>()
                coordinator.whenLaunchQueueHasRoom { room.set(()) }
                _ = driver.wait(for: room, milliseconds: Int(remaining / .milliseconds(1)) + 1)
            }
        }
    }

    /// Ends saga `id` as failed with reason `"cancelled: <reason>"`. From a host thread it
    /// returns once the end is durable: after a crash the saga reads cancelled. From the loop
    /// thread (a callback), where it cannot wait, the end is claimed at once (no other outcome
    /// can win) and recorded right after.
    /// - Throws: `.notFound` (no such saga in flight), `.state`, `.closed`.
    public func cancelSaga(id: UInt64, reason: String) throws(SagaLaneError) {
        try checkRunning()
        let coordinator = self.coordinator
        if loop.inEventLoop {
            let claimed = coordinator.assumeIsolated { coordinator -> Result<Void, SagaLaneError> in
                do throws(SagaLaneError) { try coordinator.requestCancel(id: id, reason: reason); return .success(()) } catch {
                    return .failure(error)
                }
            }
            return try claimed.get()
        }
        let result = driver.waitFor { () async -> Result<Void, SagaLaneError> in
            do throws(SagaLaneError) { try await coordinator.cancelSaga(id: id, reason: reason); return .success(()) } catch {
                return .failure(error)
            }
        }
        try result.get()
    }

    /// Blocks until saga `id` ends (at once for one that already ended, from the log), or
    /// `timeoutMilliseconds` passed (negative: no limit).
    /// - Throws: `.timedOut`, `.notFound` (no such saga), `.state` (unfinished but not in
    ///   flight here, or called on the loop thread), `.closed`.
    public func waitForSaga(id: UInt64, timeoutMilliseconds: Int) throws(SagaLaneError) -> SagaEnd {
        try checkRunning()
        guard !loop.inEventLoop else {
            throw SagaLaneError(.state, "waiting for a saga would block the event loop; ask for an end callback instead")
        }
        // The answer for a saga that already ended comes from the log at once, whatever the
        // timeout; the timeout is for the end of a saga in flight.
        let ended = Completion<Result<SagaEnd, SagaLaneError>>()
        let looked = Completion<Void>()
        let token = coordinator.whenEnded(id, inFlight: { looked.set(()) }) { ended.set($0); looked.set(()) }
        driver.wait(for: looked)
        let result = timeoutMilliseconds < 0 ? driver.wait(for: ended) : driver.wait(for: ended, milliseconds: timeoutMilliseconds)
        guard let result else {
            coordinator.forgetEndWaiter(id, token: token)
            throw SagaLaneError(.timedOut, "saga \(id) did not end within \(timeoutMilliseconds) ms")
        }
        return try result.get()
    }

    /// Reports step `step` of saga `sagaID` failed, as a target would.
    public func failStep(sagaID: UInt64, step: UInt32, reason: String) throws(SagaLaneError) {
        try checkOpen()
        StepReporter(bus: bus, sagaID: sagaID, step: step).fail(reason)
    }

    /// Publishes an event. Any thread.
    @discardableResult
    public func publish(_ event: Event) throws(SagaLaneError) -> Event {
        try checkOpen()
        return bus.publish(event)
    }

    /// Delivers every event published from now on to `deliver`, on a thread of its own.
    /// - Parameter bufferSize: Events held for a slow subscriber before it starts missing
    ///   the newest (and is told with `.lagged`).
    public func subscribe(bufferSize: Int = EventBus.defaultBufferSize,
                          deliver: @escaping @Sendable (BusDelivery) -> Void) throws(SagaLaneError) -> EventDelivery {
        try checkOpen()
        let delivery = try EventDelivery(bus: bus, bufferSize: bufferSize, deliver: deliver)
        try adopt(delivery, into: \.deliveries, stop: delivery.stop)
        return delivery
    }

    /// Stops a subscription made with `subscribe`; `deliver` is never called again once this
    /// returns (or, called from `deliver` itself, once it returns).
    public func unsubscribe(_ delivery: EventDelivery) {
        release(delivery, from: \.deliveries, stop: delivery.stop)
    }
}

/// Operators' actions, and the lifecycle stream.
extension Runtime {
    /// Runs a `failed_compensation` saga's compensations again (see
    /// `Coordinator.retryCompensation`); returns once it is `compensating` again, durably.
    /// Host threads only.
    public func retryCompensation(id: UInt64, note: String?) throws(SagaLaneError) {
        try onCoordinator { (coordinator) throws(SagaLaneError) in try await coordinator.retryCompensation(id: id, note: note) }
    }

    /// Sends a `failed_compensation` saga forward again (see `Coordinator.resumeSaga`);
    /// returns once it is `running` again, durably. Host threads only.
    public func resumeSaga(id: UInt64, note: String?) throws(SagaLaneError) {
        try onCoordinator { (coordinator) throws(SagaLaneError) in try await coordinator.resumeSaga(id: id, note: note) }
    }

    /// Marks a `failed_compensation` saga resolved by hand: it becomes `failed`, the note in
    /// its reason and its history. Returns once that is durable. Host threads only.
    public func resolveSaga(id: UInt64, note: String) throws(SagaLaneError) {
        try onCoordinator { (coordinator) throws(SagaLaneError) in try await coordinator.resolveSaga(id: id, note: note) }
    }

    private func onCoordinator(_ body: @escaping @Sendable (Coordinator) async throws(SagaLaneError) -> Void) throws(SagaLaneError) {
        try checkRunning()
        guard !loop.inEventLoop else {
            throw SagaLaneError(.state, "this call waits for the log and would block the event loop; make it from a host thread")
        }
        let coordinator = self.coordinator
        let result = driver.waitFor { () async -> Result<Void, SagaLaneError> in
            do throws(SagaLaneError) { try await body(coordinator); return .success(()) } catch { return .failure(error) }
        }
        try result.get()
    }

    /// The position of the latest lifecycle event the log committed (0: none yet).
    public var lifecyclePosition: UInt64 { log.lifecycle.lastPosition }

    /// Up to `limit` lifecycle events after `position`, from the log, as a JSON array of
    /// `LifecycleEntry.json`.
    public func lifecycleEvents(after position: UInt64, limit: Int) throws(SagaLaneError) -> JSON {
        .array(try log.lifecycleEvents(after: position, limit: limit).map(\.json))
    }

    /// Delivers every lifecycle event after `position` (0: every one the log holds) to
    /// `deliver`, in order, once each, on a thread of its own: first those already in the log
    /// (however many, also from before a crash), then each as it is committed. It never
    /// drops one, however slow `deliver` is. Allowed before `start()`, so recovery's events
    /// are seen too.
    /// - Parameter failed: Called (on the delivery thread) if events could not be read back
    ///   from the log; the delivery has stopped then.
    public func subscribeLifecycle(after position: UInt64, deliver: @escaping @Sendable (LifecycleEntry) -> Void,
                                   failed: @escaping @Sendable (SagaLaneError) -> Void = { _ in }) throws(SagaLaneError) -> LifecycleDelivery {
        try checkOpen()
        let delivery = try LifecycleDelivery(feed: log.lifecycle, after: position, deliver: deliver, failed: failed)
        try adopt(delivery, into: \.lifecycleDeliveries, stop: delivery.stop)
        return delivery
    }

    /// Stops a delivery made with `subscribeLifecycle`; `deliver` is never called again once
    /// this returns (or, called from `deliver` itself, once it returns).
    public func unsubscribe(_ delivery: LifecycleDelivery) {
        release(delivery, from: \.lifecycleDeliveries, stop: delivery.stop)
    }
}

extension Runtime {
    /// Keeps `delivery` until it is unsubscribed or the runtime closes; stops it and throws
    /// `.closed` when the runtime is already closing.
    fileprivate func adopt<D: AnyObject>(_ delivery: D, into table: WritableKeyPath<State, [ObjectIdentifier: D]>,
                                         stop: () -> Void) throws(SagaLaneError) {
        let accepted = state.withLock { state -> Bool in
            guard state.phase != .closing && state.phase != .closed else { return false }
            state[keyPath: table][ObjectIdentifier(delivery)] = delivery
            return true
        }
        guard accepted else {
            stop()
            throw SagaLaneError(.closed, "the runtime is closed")
        }
    }

    /// Forgets a delivery `adopt` kept, and stops it.
    fileprivate func release<D: AnyObject>(_ delivery: D, from table: WritableKeyPath<State, [ObjectIdentifier: D]>,
                                           stop: () -> Void) {
        _ = state.withLock { $0[keyPath: table].removeValue(forKey: ObjectIdentifier(delivery)) }
        stop()
    }
}
