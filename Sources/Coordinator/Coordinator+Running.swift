import SagaLaneJSON
import SagaLaneLog
import SagaLaneSupport

/// Running a saga: its launch, its events, its deadline, and its one end.
extension Coordinator {
    func launch(_ launch: Launch) {
        launching[launch.id] = []
        // Interested from now on: events published after the start (or the trigger) wait in
        // `launching` until the saga runs.
        for interest in launch.type.interests { interested[ExactName(interest), default: []].insert(launch.id) }
        onLoop { await self.run(launch) }
    }

    /// A new saga's order of events: `start` runs, and its first step's row (when it issues
    /// one) goes into the same group commit as the `running` row (with its `SagaStarted` in
    /// the lifecycle stream); once both are durable, `SagaStarted` on the bus, registry
    /// insert, deadline armed, id handed out, the first step dispatched (or `start`'s other
    /// action applied).
    private func run(_ launch: Launch) async {
        let id = launch.id, type = launch.type
        let instance = SagaInstance(id: id, type: type, saga: launch.saga, onEnded: launch.onEnded)
        let action = launch.saga.start(instance.context)
        // Nothing external comes between a saga's running row and its first step's: one commit
        // holds both, and nothing of the saga is seen before it.
        var first: Result<PreparedStep, StepRefused>?
        switch action {
        case .issue(let target, let command): first = prepare(SagaStep(target: target, command: command), for: instance, cause: nil)
        case .step(let step): first = prepare(step, for: instance, cause: nil)
        case .wait, .done, .failed: first = nil
        }
        let started = LifecycleNote(type: Event.sagaStarted, payload: ["name": .string(type.name)])
        let row = LogRecord.startSaga(id: id, name: type.name, inputJSON: launch.inputJSON, idempotencyKey: launch.idempotencyKey,
                                      event: started)
        var stepWritten: Result<Int, SagaLaneError>?
        do {
            if case .success(let step) = first {
                let (saga, step) = await log.write(row, then: step.record)
                try saga.get()
                stepWritten = step
            } else {
                try await log.write(row)
            }
        } catch {
            leaveLaunchQueue(launch)
            forgetLaunch(launch)
            if error.code == .exists, let taken = error.underlying as? IdempotencyKeyTaken, let holder = taken.sagaID {
                // Another start with the key won (a race, or a saga of an earlier run).
                reportExisting(holder, onStarted: launch.onStarted, onEnded: launch.onEnded)
                return
            }
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
        bus.publish(type: Event.sagaStarted, sagaID: id, payload: started.payload)
        instance.mailbox = launching.removeValue(forKey: id) ?? []
        instance.busy = true
        sagas[id] = instance
        // The deadline counts from here: time spent waiting to launch is not the saga's.
        armDeadline(instance, after: type.timeout)
        launch.onStarted?(.success(id))
        switch first {
        case .success(let step):
            if case .failure(let error) = stepWritten {
                await stepNotRecorded(step, of: instance, error)
            } else {
                dispatch(step, for: instance)
            }
        case .failure(let refused):
            await finish(instance, as: .failed, reason: refused.reason)
        case nil:
            await apply(action, to: instance, cause: nil)
        }
        await pump(instance)
    }

    /// A saga that will not run: out of the launching buffer and the interest index.
    private func forgetLaunch(_ launch: Launch) {
        launching.removeValue(forKey: launch.id)
        removeInterests(of: launch.type, id: launch.id)
        let waiters = endWaiters.removeValue(forKey: launch.id) ?? []
        for waiter in waiters { waiter.done(.failure(SagaLaneError(.notFound, "saga \(launch.id) never started"))) }
    }

    func removeInterests(of type: SagaType, id: UInt64) {
        for interest in type.interests.map({ ExactName($0) }) {
            interested[interest]?.remove(id)
            if interested[interest]?.isEmpty == true { interested.removeValue(forKey: interest) }
        }
    }

    func armDeadline(_ instance: SagaInstance, after duration: Duration) {
        let id = instance.id
        instance.deadline = loop.scheduleTimer(after: max(.zero, duration)) { [self] in
            assumeIsolated { $0.deadlinePassed(id) }
        }
    }

    /// Feeds the saga its queued events one at a time; the saga is busy until its mailbox is
    /// empty, so its events are handled in order even while log writes are in flight. A saga
    /// that compensates gets its compensations' answers the same way.
    func pump(_ instance: SagaInstance) async {
        while instance.mailboxHead < instance.mailbox.count {
            let event = instance.mailbox[instance.mailboxHead]
            instance.mailboxHead += 1
            if instance.phase == .compensating {
                await compensationEvent(event, for: instance)
            } else if !instance.ended {
                await forwardEvent(event, for: instance)
            }
        }
        instance.mailbox.removeAll()
        instance.mailboxHead = 0
        instance.busy = false
    }

    private func forwardEvent(_ event: Event, for instance: SagaInstance) async {
        if event.isStepFailure {
            await stepFailed(instance, event)
            return
        }
        let action = instance.saga.onEvent(event, instance.context)
        if action == .wait { return }
        // The event that moved the saga on is the awaited step's result; with no step awaited
        // (its `start` waited) it is what the next step's row records as its cause.
        var cause: String?
        if let awaiting = instance.awaiting {
            instance.awaiting = nil
            cancelStepTimer(instance)
            let step = awaiting.dispatch.step
            // Held back, to be written with what the saga does next (the next step's row, its
            // end, or its move to compensating) in one group commit: nothing is dispatched or
            // announced before that record is durable, and the log never shows a later step
            // or an end before this step's success.
            instance.heldSuccess = SagaInstance.HeldSuccess(step: step, outputJSON: event.serializedJSON)
            if let compensation = awaiting.compensation {
                instance.undo.append(SagaInstance.Undo(step: step, target: awaiting.dispatch.target, compensation: compensation))
            }
        } else {
            cause = event.serializedJSON
        }
        await apply(action, to: instance, cause: cause)
    }

    func apply(_ action: SagaAction, to instance: SagaInstance, cause: String?) async {
        // One awaited call of each kind: every call site of an async callee the compiler
        // inlines adds its locals to this frame, which sits in every saga task's stack.
        let end: (SagaState, String?)
        switch action {
        case .wait:
            return
        case .issue, .step:
            await issue(action.issuedStep!, for: instance, cause: cause)
            return
        case .done: end = (.completed, nil)
        case .failed(let reason): end = (.failed, reason)
        }
        await finish(instance, as: end.0, reason: end.1)
    }

    private func deadlinePassed(_ id: UInt64) {
        guard let instance = sagas[id], !instance.ended else { return }
        instance.deadline = nil
        onLoop { await self.finish(instance, as: .failed, reason: "saga timeout") }
    }

    /// Takes the right to end the saga's forward run. Exactly one caller per saga gets `true`,
    /// whatever the interleaving of done, failed, deadline, target-reported failure and
    /// cancel. The target of a step still unanswered hears of the end at once, so it can drop
    /// what has not run.
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
        cancelStepTimer(instance)
        if let awaiting = instance.awaiting { awaiting.target.sagaEnded(awaiting.dispatch) }
        return true
    }

    func finish(_ instance: SagaInstance, as state: SagaState, reason: String?) async {
        guard claimTerminal(instance) else { return }
        await recordEnd(instance, as: state, reason: reason)
    }

    /// Ends a saga whose terminal claim was won: a failure with steps to undo compensates
    /// them first; every other end is written, then announced.
    func recordEnd(_ instance: SagaInstance, as state: SagaState, reason: String?) async {
        if state != .completed, let step = instance.awaiting?.dispatch.step {
            instance.awaiting = nil
            // Best effort: the saga's terminal row below is what recovery and operators rely on.
            _ = try? await write(.failStep(sagaID: instance.id, index: step, reason: reason ?? "failed"), for: instance)
        }
        if state == .failed && !instance.undo.isEmpty {
            await beginCompensation(instance, reason: reason ?? "failed")
            return
        }
        await writeEnd(instance, as: state, reason: reason)
    }

    /// Writes the saga's final row with its terminal event, publishes that event, and tells
    /// whoever waits for the saga.
    func writeEnd(_ instance: SagaInstance, as state: SagaState, reason: String?, extra: JSONObject = [:]) async {
        var payload = extra
        payload["name"] = .string(instance.type.name)
        payload["state"] = .string(state.rawValue)
        if let reason { payload["reason"] = .string(reason) }
        let type = state == .completed ? Event.sagaCompleted : Event.sagaFailed
        var end = SagaEnd(sagaID: instance.id, state: state, reason: reason)
        do {
            try await write(.terminateSaga(id: instance.id, state: state, reason: reason,
                                           event: LifecycleNote(type: type, payload: .object(payload))), for: instance)
            bus.publish(type: type, sagaID: instance.id, payload: .object(payload))
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
        compensatingSagas.removeValue(forKey: instance.id)
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

    func stepName(_ prefix: String, _ target: String, _ command: JSON) -> String {
        let kind = command["type"]?.stringValue ?? command["cmd"]?.stringValue ?? "command"
        return "\(prefix)_\(target)_\(kind)"
    }

    /// The command as dispatched: the saga id and step index (and the step a compensation
    /// undoes) injected into an object, any other value as it is.
    func injected(_ command: JSON, sagaID: UInt64, step: UInt32, compensates: UInt32? = nil) -> JSON {
        guard case .object(var members) = command else { return command }
        // Set in place: one copy of the members, not one per id.
        members["saga_id"] = .int(Int64(bitPattern: sagaID))
        members["step"] = .int(Int64(step))
        if let compensates { members["compensates"] = .int(Int64(compensates)) }
        return .object(members)
    }
}

extension Coordinator {
    /// Writes `record` for `instance`, after the step success held back for it (if any) in
    /// the same group commit. The held record failing alone (its row missing: a damaged log)
    /// is said; `record`'s own failure is thrown.
    @discardableResult
    func write(_ record: LogRecord, for instance: SagaInstance) async throws(SagaLaneError) -> Int {
        guard let held = instance.heldSuccess else { return try await log.write(record) }
        instance.heldSuccess = nil
        let (first, second) = await log.write(.finishStep(sagaID: instance.id, index: held.step, outputJSON: held.outputJSON), then: record)
        if case .failure(let error) = first {
            diagnostics.error("saga \(instance.id): a step could not be marked succeeded: \(error.message)")
        }
        return try second.get()
    }
}
