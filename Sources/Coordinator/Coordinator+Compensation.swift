import SagaLaneJSON
import SagaLaneLog
import SagaLaneSupport

/// Undoing a failed saga: the compensations of its succeeded steps, last first, each written
/// ahead as a step row of its own and awaiting its echo, each with a timeout of its own.
///
/// The saga stays in flight (in `compensatingSagas`, and `ending` for whoever waits for it)
/// until it ends `compensated`, or `failed_compensation` when a compensation fails or times
/// out; its deadline no longer applies. Its one terminal event comes at that end.
extension Coordinator {
    /// Moves a failed saga to `compensating` (durable, with its `SagaCompensating` event),
    /// then issues its first compensation.
    /// - Parameter announce: What the `SagaCompensating` payload says besides the name and
    ///   reason (an operator's request).
    func beginCompensation(_ instance: SagaInstance, reason: String, announce: JSONObject = [:]) async {
        instance.phase = .compensating
        instance.failureReason = reason
        instance.awaiting = nil
        compensatingSagas[instance.id] = instance
        ending.insert(instance.id)
        var payload = announce
        payload["name"] = .string(instance.type.name)
        payload["reason"] = .string(reason)
        do {
            try await write(.setSagaState(id: instance.id, state: .compensating, reason: reason,
                                          event: LifecycleNote(type: Event.sagaCompensating, payload: .object(payload))), for: instance)
        } catch {
            // Write-ahead: no compensation goes out that the log does not know of.
            await writeEnd(instance, as: .failedCompensation,
                           reason: "\(reason); its compensations were not run: the log could not record the move to compensating: \(error.message)")
            return
        }
        bus.publish(type: Event.sagaCompensating, sagaID: instance.id, payload: .object(payload))
        await nextCompensation(instance)
    }

    /// Issues the compensation of the latest succeeded step not yet undone, or ends the saga
    /// `compensated` when none is left.
    func nextCompensation(_ instance: SagaInstance) async {
        guard let undo = instance.undo.popLast() else {
            await writeEnd(instance, as: .compensated, reason: instance.failureReason)
            return
        }
        let index = instance.nextStep
        instance.nextStep += 1
        let compensation = undo.compensation
        let targetName = compensation.target ?? undo.target
        let target: any SagaTarget
        do { target = try registry.target(named: targetName) } catch {
            await compensationFailed(instance, "it names an unknown target: \(error.message)", of: undo.step)
            return
        }
        let command = injected(compensation.command, sagaID: instance.id, step: index, compensates: undo.step)
        let spec = Compensation(command: .null, timeout: compensation.timeout, retry: compensation.retry).storedSpec
        do {
            try await log.write(.startStep(sagaID: instance.id, index: index, name: stepName("compensate", targetName, compensation.command),
                                           target: targetName, commandJSON: command.serialized, compensates: undo.step, specJSON: spec))
        } catch {
            await compensationFailed(instance, "log write failed: it could not be recorded, so it was not dispatched: \(error.message)", of: undo.step)
            return
        }
        let dispatch = StepDispatch(sagaID: instance.id, step: index, target: targetName, command: command, compensates: undo.step,
                                    reportsFailures: true)
        instance.awaiting = SagaInstance.Awaiting(dispatch: dispatch, target: target,
                                                  timeout: compensation.timeout ?? instance.type.compensationTimeout,
                                                  retry: compensation.retry, compensation: nil)
        send(instance)
    }

    /// An event for a compensating saga: the awaited compensation's failure (retried or
    /// final), or its echo. An echo whose payload names another `"step"` answers an earlier
    /// step and is passed over; any other event tagged with the saga answers the compensation.
    func compensationEvent(_ event: Event, for instance: SagaInstance) async {
        guard let awaiting = instance.awaiting, let undone = awaiting.dispatch.compensates else { return }
        if event.isStepFailure {
            await stepFailed(instance, event)
            return
        }
        if let step = event.payload["step"]?.int64Value, step != Int64(awaiting.dispatch.step) { return }
        instance.awaiting = nil
        cancelStepTimer(instance)
        do {
            try await log.write(.compensateStep(sagaID: instance.id, index: awaiting.dispatch.step, compensated: undone,
                                                outputJSON: event.serializedJSON))
        } catch {
            await writeEnd(instance, as: .failedCompensation,
                           reason: "\(instance.failureReason ?? "failed"); the compensation of step \(undone) answered, but the log could not record it: \(error.message)")
            return
        }
        await nextCompensation(instance)
    }

    /// The compensation in flight (or about to be) failed for good: the saga ends
    /// `failed_compensation`, the steps left undone as they are, for an operator.
    func compensationFailed(_ instance: SagaInstance, _ why: String, of undone: UInt32? = nil) async {
        let step = undone ?? instance.awaiting?.dispatch.compensates
        if let awaiting = instance.awaiting {
            instance.awaiting = nil
            cancelStepTimer(instance)
            awaiting.target.dispatchAbandoned(awaiting.dispatch)
            _ = try? await log.write(.failStep(sagaID: instance.id, index: awaiting.dispatch.step, reason: why))
        }
        let what = step.map { "the compensation of step \($0) failed" } ?? "a compensation failed"
        await writeEnd(instance, as: .failedCompensation, reason: "\(instance.failureReason ?? "failed"); \(what): \(why)")
    }
}

extension Compensation {
    /// What the log stores beside a compensation's command: its timeout and retries.
    var storedSpec: String? {
        var object: JSONObject = [:]
        if let timeout { object["timeout_ms"] = .int(timeout.wholeMilliseconds) }
        if let retry { object["retry"] = retry.json }
        return object.isEmpty ? nil : JSON.object(object).serialized
    }
}
