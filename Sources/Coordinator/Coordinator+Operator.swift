import SagaLaneJSON
import SagaLaneLog
import SagaLaneSupport

/// What an operator does to sagas that wait for one (`failed_compensation`), on a running
/// coordinator. Each is written to the log with its event before anything is dispatched, and
/// shows in the saga's history. (`cancelSaga` cancels a running saga.)
extension Coordinator {
    /// Runs a `failed_compensation` saga's compensations again: the compensation that failed
    /// (or was interrupted), then those of the other succeeded steps not yet undone, last
    /// first. Returns once the saga is `compensating` again (durably); it ends, with one more
    /// terminal event, `compensated` or again `failed_compensation`.
    /// - Throws: `.notFound`, `.state` (not in `failed_compensation`, in flight, or nothing
    ///   left to compensate), the log's error.
    public func retryCompensation(id: UInt64, note: String?) async throws(SagaLaneError) {
        let record = try sagaWaitingForOperator(id)
        guard let type = registry.type(named: record.name) else {
            throw SagaLaneError(.state, "saga \(id)'s type '\(record.name)' is not registered: its compensations' targets are unknown")
        }
        let (instance, pending, _) = try compensatingInstance(record, type: type)
        guard pending != nil || !instance.undo.isEmpty else {
            throw SagaLaneError(.state, "saga \(id) has no compensation left to run: mark it resolved instead")
        }
        var payload: JSONObject = ["name": .string(type.name), "reason": .string(instance.failureReason ?? "failed"), "by": "operator"]
        if let note { payload["note"] = .string(note) }
        var writes: [LogRecord] = [.setSagaState(id: id, state: .compensating, event: LifecycleNote(type: Event.sagaCompensating, payload: .object(payload)))]
        if let pending {
            let step = try SagaStep(target: pending.target, command: .null, storedSpec: pending.specJSON)
            guard let awaiting = redispatching(pending, step: step, for: instance) else {
                throw SagaLaneError(.corrupt, "compensation step \(pending.index)'s command cannot be read")
            }
            instance.awaiting = awaiting
            writes.append(.retryStep(sagaID: id, index: pending.index, attempt: awaiting.dispatch.attempt, reason: "attempt \(awaiting.dispatch.attempt - 1): dispatched again by an operator"))
        }
        try await writeOrThrow(writes)
        bus.publish(type: Event.sagaCompensating, sagaID: id, payload: .object(payload))
        resume(pending != nil ? .send(instance, deadline: nil) : .nextCompensation(instance))
    }

    /// Sends a `failed_compensation` saga that never began compensating (one interrupted under
    /// `.markFailed`, say) forward again, as recovery's `.resume` would: rebuilt from its
    /// input, its history replayed and checked, its pending step dispatched again under the
    /// same saga id and step index, with a whole deadline. Returns once it is `running` again
    /// (durably).
    /// - Throws: `.notFound`, `.state` (not in `failed_compensation`, in flight, began
    ///   compensating, or its type is not registered), the log's error.
    public func resumeSaga(id: UInt64, note: String?) async throws(SagaLaneError) {
        let record = try sagaWaitingForOperator(id)
        guard let type = registry.type(named: record.name) else {
            throw SagaLaneError(.state, "saga \(id)'s type '\(record.name)' is not registered, so it cannot be rebuilt")
        }
        guard !record.steps.contains(where: { $0.compensates != nil }) else {
            throw SagaLaneError(.state, "saga \(id) began compensating: it cannot go forward again (retry its compensations instead)")
        }
        var payload: JSONObject = ["name": .string(type.name), "by": "operator", "phase": "running"]
        if let note { payload["note"] = .string(note) }
        // Its failure is behind it: the reason is cleared (the history keeps it).
        var writes: [LogRecord] = [.setSagaState(id: id, state: .running, reason: "", event: LifecycleNote(type: Event.sagaResumed, payload: .object(payload)))]
        let resumption: Resumption
        var running = record
        running.state = .running
        switch replay(running, type: type) {
        case .redispatch(let instance, let row, let step):
            guard let awaiting = redispatching(row, step: step, for: instance) else {
                throw SagaLaneError(.corrupt, "step \(row.index)'s stored command cannot be read")
            }
            instance.awaiting = awaiting
            writes.append(.retryStep(sagaID: id, index: row.index, attempt: awaiting.dispatch.attempt, reason: "attempt \(awaiting.dispatch.attempt - 1): dispatched again by an operator"))
            resumption = .send(instance, deadline: type.timeout)
        case .apply(let instance, let action):
            resumption = .apply(instance, action, deadline: type.timeout)
        case .fail(let instance, let reason):
            resumption = .fail(instance, reason)
        }
        try await writeOrThrow(writes)
        bus.publish(type: Event.sagaResumed, sagaID: id, payload: .object(payload))
        resume(resumption)
    }

    /// Marks a `failed_compensation` saga resolved by hand (see `SagaLog.resolveSaga`).
    public func resolveSaga(id: UInt64, note: String) async throws(SagaLaneError) {
        _ = try sagaWaitingForOperator(id)
        let record = try await log.resolveSaga(id: id, note: note)
        bus.publish(type: Event.sagaOperatorAction, sagaID: id,
                    payload: ["name": .string(record.name), "action": "resolve", "note": .string(note), "state": .string(record.state.rawValue)])
    }

    private func sagaWaitingForOperator(_ id: UInt64) throws(SagaLaneError) -> SagaRecord {
        if sagas[id] != nil || compensatingSagas[id] != nil || launching[id] != nil || ending.contains(id) {
            throw SagaLaneError(.state, "saga \(id) is in flight: an operator acts on sagas in failed_compensation")
        }
        guard let record = try log.saga(id: id) else { throw SagaLaneError(.notFound, "the log has no saga \(id)") }
        guard record.state == .failedCompensation else {
            throw SagaLaneError(.state, "saga \(id) is \(record.state.rawValue): an operator acts on sagas in failed_compensation")
        }
        return record
    }

    private func writeOrThrow(_ records: [LogRecord]) async throws(SagaLaneError) {
        for case .failure(let error) in await log.writeAll(records) { throw error }
    }
}
