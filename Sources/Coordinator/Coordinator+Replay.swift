import SagaLaneJSON
import SagaLaneLog
import SagaLaneSupport

/// Rebuilding sagas from their rows after a restart.
extension Coordinator {
    /// What replaying a `running` saga's history found.
    enum Replay {
        /// The pending step, to dispatch again under its saga id and index.
        case redispatch(SagaInstance, StepRecord, SagaStep)
        /// Every step answered: the action the last result led to, still to carry out.
        case apply(SagaInstance, SagaAction)
        /// The saga cannot go on: it fails (and compensates what it can) with this reason.
        case fail(SagaInstance, String)
    }

    /// Rebuilds a `running` saga from its stored input and replays its steps' recorded
    /// results through `start` and `onEvent`, checking each replayed action against the step
    /// the log records.
    func replay(_ record: SagaRecord, type: SagaType) -> Replay {
        let saga: Saga
        do {
            saga = try make(type, try storedJSON(record.inputJSON))
        } catch {
            let instance = SagaInstance(id: record.id, type: type, saga: UnrebuiltSaga("cannot be rebuilt"), onEnded: nil)
            instance.nextStep = nextIndex(after: record.steps)
            let reason = "interrupted, and it cannot be rebuilt from its stored input: \(error)"
            do { instance.undo = try undoList(record.steps) } catch {
                return .fail(instance, "\(reason); \(error.message)")
            }
            return .fail(instance, reason)
        }
        let instance = SagaInstance(id: record.id, type: type, saga: saga, onEnded: nil)
        func context(_ next: UInt32) -> SagaContext {
            SagaContext(sagaID: record.id, name: type.name, nextStepIndex: next, replaying: true)
        }
        /// The saga cannot go on: it fails, and what the log records as succeeded is undone
        /// with the compensations the log stored (they are what ran, whatever the code says now).
        func failing(_ reason: String) -> Replay {
            instance.nextStep = nextIndex(after: record.steps)
            do { instance.undo = try undoList(record.steps) } catch {
                instance.undo = []
                return .fail(instance, "\(reason); \(error.message)")
            }
            return .fail(instance, reason)
        }
        var action = saga.start(context(0))
        for row in record.steps where row.compensates == nil {
            instance.nextStep = row.index
            if action == .wait, let cause = row.causeJSON {
                guard let event = try? Event(json: storedJSON(cause)) else {
                    return failing("the log's record of what led to step \(row.index) cannot be read")
                }
                action = saga.onEvent(event, context(row.index))
            }
            guard let step = issued(action), step.target.isExactly(row.target),
                  injected(step.command, sagaID: record.id, step: row.index).serialized == row.commandJSON
            else {
                return failing("determinism error: replaying step \(row.index), the saga \(describe(action, index: row.index, sagaID: record.id)), "
                             + "but the log records \(row.commandJSON) to '\(row.target)'")
            }
            instance.nextStep = row.index + 1
            switch row.state {
            case .pending:
                return .redispatch(instance, row, step)
            case .failed:
                return failing("interrupted while it failed: step \(row.index) failed: \(row.failureReason ?? "failed")")
            case .succeeded, .compensated:
                if let compensation = step.compensation {
                    instance.undo.append(SagaInstance.Undo(step: row.index, target: row.target, compensation: compensation))
                }
                guard let output = row.outputJSON, let event = try? Event(json: storedJSON(output)) else {
                    return failing("the log's record of step \(row.index)'s result cannot be read")
                }
                action = saga.onEvent(event, context(row.index + 1))
                if action == .wait {
                    return failing("determinism error: replaying step \(row.index)'s recorded result \(output), the saga no longer moves on")
                }
            }
        }
        instance.nextStep = nextIndex(after: record.steps)
        return .apply(instance, action)
    }

    /// The step an action issues, if it issues one.
    private func issued(_ action: SagaAction) -> SagaStep? {
        switch action {
        case .issue(let target, let command): return SagaStep(target: target, command: command)
        case .step(let step): return step
        case .done, .failed, .wait: return nil
        }
    }

    private func describe(_ action: SagaAction, index: UInt32, sagaID: UInt64) -> String {
        switch action {
        case .issue, .step:
            let step = issued(action)!
            return "issued \(injected(step.command, sagaID: sagaID, step: index).serialized) to '\(step.target)'"
        case .done: return "completed"
        case .failed(let reason): return "failed (\(reason))"
        case .wait: return "waited"
        }
    }

    /// The index after the highest step the saga has.
    func nextIndex(after steps: [StepRecord]) -> UInt32 {
        steps.map(\.index).max().map { $0 + 1 } ?? 0
    }

    /// The forward steps that succeeded and have a compensation not yet run, by index, as the
    /// log stores them.
    /// - Throws: `.corrupt` for a declaration that cannot be read.
    func undoList(_ steps: [StepRecord], excluding skipped: Set<UInt32> = []) throws(SagaLaneError) -> [SagaInstance.Undo] {
        var undo: [SagaInstance.Undo] = []
        for row in steps where row.compensates == nil && row.state == .succeeded && !skipped.contains(row.index) {
            guard row.specJSON != nil else { continue }
            let step: SagaStep
            do { step = try SagaStep(target: row.target, command: .null, storedSpec: row.specJSON) } catch {
                throw SagaLaneError(.corrupt, "step \(row.index)'s stored declaration cannot be read: \(error.message)")
            }
            if let compensation = step.compensation {
                undo.append(SagaInstance.Undo(step: row.index, target: row.target, compensation: compensation))
            }
        }
        return undo
    }

    /// A compensating saga rebuilt from its rows: what is left to undo, and the compensation
    /// that was in flight when the runtime stopped, if one was.
    func compensatingInstance(_ record: SagaRecord, type: SagaType) throws(SagaLaneError)
        -> (instance: SagaInstance, pending: StepRecord?, failed: StepRecord?)
    {
        let instance = SagaInstance(id: record.id, type: type, saga: UnrebuiltSaga("compensating"), onEnded: nil)
        instance.phase = .compensating
        instance.ended = true
        instance.failureReason = record.failureReason ?? "failed"
        instance.nextStep = nextIndex(after: record.steps)
        let compensations = record.steps.filter { $0.compensates != nil }
        let pending = compensations.last { $0.state == .pending }
        let failed = compensations.last { $0.state == .failed }
        instance.undo = try undoList(record.steps, excluding: Set(pending.flatMap(\.compensates).map { [$0] } ?? []))
        return (instance, pending, failed)
    }

    /// The awaited step for re-dispatching `row`, as attempt `row.attempts + 1`.
    func redispatching(_ row: StepRecord, step: SagaStep, for instance: SagaInstance) -> SagaInstance.Awaiting? {
        guard let command = try? storedJSON(row.commandJSON) else { return nil }
        let target: any SagaTarget
        do { target = try registry.target(named: row.target) } catch {
            target = MissingTarget(error: error)
        }
        let compensating = row.compensates != nil
        let retry = compensating || step.idempotent ? step.retry : nil
        let dispatch = StepDispatch(sagaID: instance.id, step: row.index, target: row.target, command: command, attempt: row.attempts + 1,
                                    compensates: row.compensates, reportsFailures: compensating || retry != nil)
        let timeout = compensating ? (step.timeout ?? instance.type.compensationTimeout) : step.timeout
        return SagaInstance.Awaiting(dispatch: dispatch, target: target, timeout: timeout, retry: retry,
                                     compensation: compensating ? nil : step.compensation)
    }
}

/// Text the runtime stored: values it accepted (at most `JSON.defaultMaxDepth` deep) within a
/// few levels of its own (an event around a payload).
func storedJSON(_ text: String) throws(JSONError) -> JSON {
    try JSON(parsing: text, maxDepth: JSON.defaultMaxDepth + 8)
}

/// The target of a step re-dispatched after a restart that is no longer registered: its
/// dispatch fails, as an unknown target's does.
private struct MissingTarget: SagaTarget {
    let error: SagaLaneError
    func dispatch(_ step: StepDispatch, reporter: StepReporter) throws {
        throw SagaLaneError(.notFound, "it names a target that is not registered: \(error.message)")
    }
}
