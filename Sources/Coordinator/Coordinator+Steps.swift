import SagaLaneEventLoop
import SagaLaneJSON
import SagaLaneLog
import SagaLaneSupport

/// A step's life: its row, its dispatch, its timeout, its retries.
extension Coordinator {
    /// A step with its row, ready to be written and then dispatched. A class: it is held
    /// across the awaited write in the async frames of the saga's task, where a struct of
    /// this size would be copied into several slots of each frame.
    final class PreparedStep {
        let step: SagaStep
        let index: UInt32
        let target: any SagaTarget
        /// The command with the saga id and step index injected.
        let command: JSON
        let record: LogRecord

        init(step: SagaStep, index: UInt32, target: any SagaTarget, command: JSON, record: LogRecord) {
            self.step = step
            self.index = index
            self.target = target
            self.command = command
            self.record = record
        }
    }

    /// Takes the saga's next step index for `step` and makes its row; fails with the reason
    /// the saga fails for when the step cannot be issued (a bad declaration, an unknown
    /// target).
    func prepare(_ step: SagaStep, for instance: SagaInstance, cause: String?) -> Result<PreparedStep, StepRefused> {
        let index = instance.nextStep
        instance.nextStep += 1
        if let problem = step.problem {
            return .failure(StepRefused(reason: "step \(index) cannot be issued: \(problem)"))
        }
        let target: any SagaTarget
        do { target = try registry.target(named: step.target) } catch {
            return .failure(StepRefused(reason: "step \(index) names an unknown target: \(error.message)"))
        }
        let command = injected(step.command, sagaID: instance.id, step: index)
        let record = LogRecord.startStep(sagaID: instance.id, index: index, name: stepName("issue", step.target, step.command),
                                         target: step.target, commandJSON: command.serialized, specJSON: step.storedSpec,
                                         causeJSON: cause)
        return .success(PreparedStep(step: step, index: index, target: target, command: command, record: record))
    }

    /// Why a step could not be issued.
    struct StepRefused: Error {
        let reason: String
    }

    /// Writes the step row, then (once it is durable, and unless the saga ended meanwhile)
    /// dispatches the command, with the saga id and step index injected, to its target.
    func issue(_ step: SagaStep, for instance: SagaInstance, cause: String?) async {
        let prepared: PreparedStep
        switch prepare(step, for: instance, cause: cause) {
        case .success(let step): prepared = step
        case .failure(let refused):
            await finish(instance, as: .failed, reason: refused.reason)
            return
        }
        do {
            try await write(prepared.record, for: instance)
        } catch {
            await stepNotRecorded(prepared, of: instance, error)
            return
        }
        dispatch(prepared, for: instance)
    }

    /// The step's row could not be written: the saga fails, and the command is never sent.
    func stepNotRecorded(_ prepared: PreparedStep, of instance: SagaInstance, _ error: SagaLaneError) async {
        await finish(instance, as: .failed,
                     reason: "log write failed: step \(prepared.index) could not be recorded, so it was not dispatched: \(error.message)")
    }

    /// Sends a step whose row is durable, unless the saga ended meanwhile.
    func dispatch(_ prepared: PreparedStep, for instance: SagaInstance) {
        if instance.ended { return }
        let step = prepared.step
        let retry = step.idempotent ? step.retry : nil
        let dispatch = StepDispatch(sagaID: instance.id, step: prepared.index, target: step.target, command: prepared.command,
                                    reportsFailures: retry != nil)
        instance.awaiting = SagaInstance.Awaiting(dispatch: dispatch, target: prepared.target, timeout: step.timeout, retry: retry,
                                                  compensation: step.compensation)
        send(instance)
    }

    /// Dispatches the awaited step's current attempt and arms its timeout. A target that
    /// throws fails the attempt through the saga's mailbox, in order with its other events.
    func send(_ instance: SagaInstance) {
        guard let awaiting = instance.awaiting else { return }
        let dispatch = awaiting.dispatch
        if let timeout = awaiting.timeout {
            armStepTimer(instance, after: timeout,
                         .stepTimedOut(sagaID: instance.id, step: dispatch.step, attempt: dispatch.attempt, after: timeout))
        }
        do {
            try awaiting.target.dispatch(dispatch, reporter: StepReporter(bus: bus, sagaID: instance.id, step: dispatch.step,
                                                                          attempt: dispatch.attempt))
        } catch {
            deliver(.dispatchFailed(sagaID: instance.id, step: dispatch.step, attempt: dispatch.attempt,
                                    reason: "target '\(dispatch.target)' refused step \(dispatch.step): \(error)"), to: instance)
        }
    }

    /// A step failed: a target's report, a dispatch that threw, or its timeout. The awaited
    /// attempt is retried when it may be; otherwise a forward step fails the saga and a
    /// compensation ends it `failed_compensation`.
    func stepFailed(_ instance: SagaInstance, _ event: Event) async {
        let step = event.payload["step"]?.int64Value
        let attempt = event.payload["attempt"]?.int64Value
        let timedOut = event.type.isExactly(Event.stepTimedOutType)
        let reason: String
        if timedOut {
            reason = "step \(step ?? -1) timed out after \(event.payload["after_ms"]?.int64Value ?? 0) ms"
        } else {
            let text = event.payload["reason"]?.stringValue ?? event.payload.serialized
            reason = event.payload["dispatch"]?.boolValue == true ? text : "action failed: \(text)"
        }
        guard let awaiting = instance.awaiting, step.map({ $0 == Int64(awaiting.dispatch.step) }) ?? true,
              attempt.map({ $0 == Int64(awaiting.dispatch.attempt) }) ?? true
        else {
            // A timer or a report of an attempt no longer awaited is stale. Any other failure
            // of a step of a running saga fails it, answered or not.
            let stale = timedOut || (attempt != nil && instance.awaiting.map { Int64($0.dispatch.step) == step } == true)
            if !stale && instance.phase == .running { await finish(instance, as: .failed, reason: reason) }
            return
        }
        if let retry = awaiting.retry, awaiting.dispatch.attempt < retry.maxAttempts {
            await retryStep(instance, after: reason)
            return
        }
        let final = awaiting.retry == nil ? reason : "step \(awaiting.dispatch.step) failed after \(awaiting.dispatch.attempt) attempts: \(reason)"
        if instance.phase == .running {
            await finish(instance, as: .failed, reason: final)
        } else {
            await compensationFailed(instance, final)
        }
    }

    /// Gives up on the awaited attempt, writes the next one to the step's row, and dispatches
    /// it after the policy's back-off.
    private func retryStep(_ instance: SagaInstance, after reason: String) async {
        guard let awaiting = instance.awaiting, let retry = awaiting.retry else { return }
        let failed = awaiting.dispatch
        awaiting.target.dispatchAbandoned(failed)
        cancelStepTimer(instance)
        let next = failed.attempt + 1
        instance.awaiting?.dispatch = failed.again(next)
        do {
            try await log.write(.retryStep(sagaID: instance.id, index: failed.step, attempt: next,
                                           reason: "attempt \(failed.attempt): \(reason)"))
        } catch {
            let why = "log write failed: the retry of step \(failed.step) could not be recorded, so it was not sent again: \(error.message)"
            if instance.phase == .running { await finish(instance, as: .failed, reason: why) } else { await compensationFailed(instance, why) }
            return
        }
        guard let current = instance.awaiting, current.dispatch.step == failed.step, current.dispatch.attempt == next,
              instance.phase == .compensating || !instance.ended
        else { return }
        let id = instance.id, step = failed.step
        instance.stepTimer = loop.scheduleTimer(after: retry.backoff(after: failed.attempt)) { [self] in
            assumeIsolated { $0.backoffEnded(id, step: step, attempt: next) }
        }
    }

    private func backoffEnded(_ id: UInt64, step: UInt32, attempt: Int) {
        guard let instance = sagas[id] ?? compensatingSagas[id],
              let awaiting = instance.awaiting, awaiting.dispatch.step == step, awaiting.dispatch.attempt == attempt
        else { return }
        instance.stepTimer = nil
        send(instance)
    }

    /// Puts `event` in the saga's mailbox once `duration` passed, unless the timer is
    /// cancelled first (the step answered, or the saga ended).
    func armStepTimer(_ instance: SagaInstance, after duration: Duration, _ event: Event) {
        cancelStepTimer(instance)
        let id = instance.id
        instance.stepTimer = loop.scheduleTimer(after: duration) { [self] in
            assumeIsolated { coordinator in
                guard let instance = coordinator.sagas[id] ?? coordinator.compensatingSagas[id] else { return }
                instance.stepTimer = nil
                coordinator.deliver(event, to: instance)
            }
        }
    }

    /// The step saga `id` awaits, its attempt, and whether its timer (a timeout or a back-off)
    /// is armed; for tests that move a manual clock.
    func awaitedStep(of id: UInt64) -> (step: UInt32, attempt: Int, timerArmed: Bool)? {
        guard let instance = sagas[id] ?? compensatingSagas[id], let awaiting = instance.awaiting else { return nil }
        return (awaiting.dispatch.step, awaiting.dispatch.attempt, instance.stepTimer != nil)
    }

    func cancelStepTimer(_ instance: SagaInstance) {
        if let timer = instance.stepTimer {
            loop.cancelTimer(timer)
            instance.stepTimer = nil
        }
    }
}
