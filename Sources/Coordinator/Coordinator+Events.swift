import SagaLaneJSON
import SagaLaneSupport

/// Taking events: the inbox the bus feeds, routing to sagas, and triggers.
extension Coordinator {
    nonisolated func scheduleDrain() {
        loop.execute { [self] in
            assumeIsolated { $0.drainInbox() }
        }
    }

    func drainInbox() {
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
                case .event(let event): handle(event)
                case .launch(let item): launch(item)
                }
            }
        }
    }

    /// Routes one event: to the saga it is tagged with, or to the sagas interested in its type
    /// (those still launching keep it for after their start), then fires its triggers. A
    /// trigger's saga joins the interest index at once, so every event published after its
    /// trigger reaches it, as the seed's coordinator does by handling a trigger completely
    /// before the next event. Lifecycle events never come here (the bus sink leaves them out).
    func handle(_ event: Event) {
        if event.type.isExactly(Event.sagaActionFailed), let id = event.sagaID {
            if let instance = sagas[id] {
                if instance.awaiting?.retry != nil {
                    // A step with retries: retried in order with the saga's other events.
                    deliver(event, to: instance)
                } else {
                    // Nothing to retry: the failure wins at once, even while the saga is busy.
                    let reason = event.payload["reason"]?.stringValue ?? event.payload.serialized
                    onLoop { await self.finish(instance, as: .failed, reason: "action failed: \(reason)") }
                }
            } else if let instance = compensatingSagas[id] {
                deliver(event, to: instance)
            }
            return
        }
        // Existing sagas first: a saga never receives the event that triggered it.
        if let id = event.sagaID {
            route(event, to: id)
        } else if let ids = interested[ExactName(event.type)] {
            for id in ids { route(event, to: id) }
        }
        for (trigger, type) in registry.triggers(firedBy: event) {
            startTriggered(type: type, input: trigger.input(event), by: event)
        }
    }

    private func route(_ event: Event, to id: UInt64) {
        if let instance = sagas[id] {
            deliver(event, to: instance)
        } else if launching[id] != nil {
            launching[id]!.append(event)
        } else if event.sagaID == id, let instance = compensatingSagas[id] {
            // A compensating saga hears only what is tagged with it.
            deliver(event, to: instance)
        }
    }

    private func startTriggered(type: SagaType, input: JSON, by event: Event) {
        let saga: Saga, id: UInt64
        do {
            try checkAcceptingSagas()
            saga = try make(type, input)
            id = try allocateID()
        } catch {
            diagnostics.warning("event \(event.type) (version \(event.version)) did not start a \(type.name) saga: \(error.message)")
            return
        }
        launch(Launch(id: id, type: type, saga: saga, inputJSON: input.serialized, onStarted: nil, onEnded: nil, admitted: false))
    }

    func deliver(_ event: Event, to instance: SagaInstance) {
        instance.mailbox.append(event)
        if !instance.busy {
            instance.busy = true
            onLoop { await self.pump(instance) }
        }
    }
}
