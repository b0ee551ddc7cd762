import SagaLaneJSON
import SagaLaneLog
import SagaLaneSupport

/// Running a saga: its launch, its actions, its deadline, and its one end.
extension Coordinator {
    func launch(_ launch: Launch) {
        launching[launch.id] = []
        // Interested from now on: events published after the start (or the trigger) wait in
        // `launching` until the saga runs.
        for interest in launch.type.interests { interested[ExactName(interest), default: []].insert(launch.id) }
        onLoop { await self.run(launch) }
    }

    /// A new saga's order of events: durable `running` row, `SagaStarted`, registry insert,
    /// deadline armed, id handed out, `start`, its action applied.
    private func run(_ launch: Launch) async {
        let id = launch.id, type = launch.type
        do {
            try await log.startSaga(id: id, name: type.name, inputJSON: launch.inputJSON)
        } catch {
            leaveLaunchQueue(launch)
            forgetLaunch(launch)
            let failure = SagaLaneError(error.code, "saga \(id) (\(type.name)) was not started: its running row could not be written: \(error.message)",
                                        underlying: error)
            diagnostics.error(failure.message)
            launch.onStarted?(.failure(failure))
            return
        }
        leaveLaunchQueue(launch)
        if status.withLock({ $0.phase }) == .closed {
            // Closed while the row was written: it stays running for the next start's recovery.
            launch.onStarted?(.failure(SagaLaneError(.closed, "the coordinator closed while saga \(id) was starting")))
            return
        }
        bus.publish(type: Event.sagaStarted, sagaID: id, payload: ["name": .string(type.name)])
        let instance = SagaInstance(id: id, type: type, saga: launch.saga, onEnded: launch.onEnded)
        instance.mailbox = launching.removeValue(forKey: id) ?? []
        instance.busy = true
        sagas[id] = instance
        // The deadline counts from here: time spent waiting to launch is not the saga's.
        instance.deadline = loop.scheduleTimer(after: type.timeout) { [self] in
            assumeIsolated { $0.deadlinePassed(id) }
        }
        launch.onStarted?(.success(id))
        let action = launch.saga.start(instance.context)
        await apply(action, to: instance)
        await pump(instance)
    }

    /// A saga that will not run: out of the launching buffer and the interest index.
    private func forgetLaunch(_ launch: Launch) {
        launching.removeValue(forKey: launch.id)
        removeInterests(of: launch.type, id: launch.id)
        let waiters = endWaiters.removeValue(forKey: launch.id) ?? []
        for waiter in waiters { waiter.done(.failure(SagaLaneError(.notFound, "saga \(launch.id) never started"))) }
    }

    private func removeInterests(of type: SagaType, id: UInt64) {
        for interest in type.interests.map({ ExactName($0) }) {
            interested[interest]?.remove(id)
            if interested[interest]?.isEmpty == true { interested.removeValue(forKey: interest) }
        }
    }

    /// Feeds the saga its queued events one at a time; the saga is busy until its mailbox is
    /// empty, so its events are handled in order even while log writes are in flight.
    func pump(_ instance: SagaInstance) async {
        while !instance.ended, instance.mailboxHead < instance.mailbox.count {
            let event = instance.mailbox[instance.mailboxHead]
            instance.mailboxHead += 1
            let action = instance.saga.onEvent(event, instance.context)
            if action == .wait { continue }
            if let step = instance.awaiting?.step.step {
                instance.awaiting = nil
                do {
                    try await log.finishStep(sagaID: instance.id, index: step, outputJSON: event.json.serialized)
                } catch {
                    await finish(instance, as: .failed, reason: "log write failed: step \(step) could not be marked succeeded: \(error.message)")
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

    private func apply(_ action: SagaAction, to instance: SagaInstance) async {
        switch action {
        case .wait:
            return
        case .done:
            await finish(instance, as: .completed, reason: nil)
        case .failed(let reason):
            await finish(instance, as: .failed, reason: reason)
        case .issue(let targetName, let command):
            await issue(command, to: targetName, for: instance)
        }
    }

    /// Writes the step row, then (once it is durable, and unless the saga ended meanwhile)
    /// hands the command, with the saga id and step index injected, to its target.
    private func issue(_ command: JSON, to targetName: String, for instance: SagaInstance) async {
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
            await finish(instance, as: .failed, reason: "log write failed: step \(index) could not be recorded, so it was not dispatched: \(error.message)")
            return
        }
        if instance.ended { return }
        let step = StepDispatch(sagaID: instance.id, step: index, target: targetName, command: injected)
        instance.awaiting = (step, target)
        do {
            try target.dispatch(step, reporter: StepReporter(bus: bus, sagaID: instance.id, step: index))
        } catch {
            await finish(instance, as: .failed, reason: "target '\(targetName)' refused step \(index): \(error)")
        }
    }

    private func deadlinePassed(_ id: UInt64) {
        guard let instance = sagas[id], !instance.ended else { return }
        instance.deadline = nil
        onLoop { await self.finish(instance, as: .failed, reason: "saga timeout") }
    }

    /// Takes the right to end the saga. Exactly one caller per saga gets `true`, whatever the
    /// interleaving of done, failed, deadline, target-reported failure and cancel. The target
    /// of a step still unanswered hears of the end at once, so it can drop what has not run.
    func claimTerminal(_ instance: SagaInstance) -> Bool {
        if instance.ended { return false }
        instance.ended = true
        sagas.removeValue(forKey: instance.id)
        ending.insert(instance.id)
        removeInterests(of: instance.type, id: instance.id)
        if let deadline = instance.deadline {
            loop.cancelTimer(deadline)
            instance.deadline = nil
        }
        if let (step, target) = instance.awaiting { target.sagaEnded(step) }
        return true
    }

    func finish(_ instance: SagaInstance, as state: SagaState, reason: String?) async {
        guard claimTerminal(instance) else { return }
        await recordEnd(instance, as: state, reason: reason)
    }

    /// Writes the end of a saga whose terminal claim was won, then publishes its one terminal
    /// event and tells whoever waits for it.
    func recordEnd(_ instance: SagaInstance, as state: SagaState, reason: String?) async {
        if state != .completed, let step = instance.awaiting?.step.step {
            instance.awaiting = nil
            // Best effort: the saga's terminal row below is what recovery and operators rely on.
            try? await log.failStep(sagaID: instance.id, index: step, reason: reason ?? "failed")
        }
        var payload: JSONObject = ["name": .string(instance.type.name)]
        if let reason { payload["reason"] = .string(reason) }
        var end = SagaEnd(sagaID: instance.id, state: state, reason: reason)
        do {
            try await log.terminateSaga(id: instance.id, state: state, reason: reason)
            bus.publish(type: state == .completed ? Event.sagaCompleted : Event.sagaFailed,
                        sagaID: instance.id, payload: .object(payload))
        } catch {
            let why = "saga \(instance.id) ended \(state.rawValue) but its terminal row could not be written: \(error.message)"
            status.withLock { if $0.unhealthy == nil { $0.unhealthy = why } }
            diagnostics.error("\(why); refusing new sagas")
            payload["durable"] = false
            if state == .completed {
                end.reason = "completed, but the log could not record it: \(error.message)"
                payload["reason"] = .string(end.reason!)
            }
            end.durable = false
            bus.publish(type: Event.sagaFailed, sagaID: instance.id, payload: .object(payload))
        }
        ending.remove(instance.id)
        instance.onEnded?(end)
        for waiter in endWaiters.removeValue(forKey: instance.id) ?? [] { waiter.done(.success(end)) }
    }

    /// Starts a task that runs on the loop from start to end: its log writes resume there
    /// directly, never through Swift's global pool (which would cost two thread hops per
    /// write, and stall if a host blocked the pool's threads).
    func onLoop(_ body: sending @escaping @isolated(any) () async -> Void) {
        Task(executorPreference: loop, operation: body)
    }

    private func stepName(_ target: String, _ command: JSON) -> String {
        let kind = command["type"]?.stringValue ?? command["cmd"]?.stringValue ?? "command"
        return "issue_\(target)_\(kind)"
    }
}
