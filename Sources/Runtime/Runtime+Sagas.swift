import SagaLaneCoordinator
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

    /// Registers a command target under `name` (non-empty, no ':').
    public func register(target: any SagaTarget, named name: String) throws(SagaLaneError) {
        try checkOpen()
        try coordinator.register(target: target, named: name)
    }

    /// Starts a saga of type `name` (see `Coordinator.startSaga(name:input:onStarted:)`).
    /// - Returns: The saga's id.
    @discardableResult
    public func startSaga(name: String, input: JSON) throws(SagaLaneError) -> UInt64 {
        try checkRunning()
        return try coordinator.startSaga(name: name, input: input)
    }

    /// Ends saga `id` as failed with reason `"cancelled: <reason>"`: claimed at once, recorded
    /// in the background.
    public func cancelSaga(id: UInt64, reason: String) throws(SagaLaneError) {
        try checkRunning()
        let coordinator = self.coordinator
        let result = driver.onLoop { () -> Result<Void, SagaLaneError> in
            coordinator.assumeIsolated { coordinator in
                do throws(SagaLaneError) { try coordinator.requestCancel(id: id, reason: reason); return .success(()) } catch {
                    return .failure(error)
                }
            }
        }
        try result.get()
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
        let accepted = state.withLock { state -> Bool in
            guard state.phase != .closing && state.phase != .closed else { return false }
            state.deliveries[ObjectIdentifier(delivery)] = delivery
            return true
        }
        guard accepted else {
            delivery.stop()
            throw SagaLaneError(.closed, "the runtime is closed")
        }
        return delivery
    }

    /// Stops a subscription made with `subscribe`; `deliver` is never called again once this
    /// returns (or, called from `deliver` itself, once it returns).
    public func unsubscribe(_ delivery: EventDelivery) {
        _ = state.withLock { $0.deliveries.removeValue(forKey: ObjectIdentifier(delivery)) }
        delivery.stop()
    }
}
