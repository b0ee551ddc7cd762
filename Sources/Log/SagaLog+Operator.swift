import SagaLaneJSON
import SagaLaneSupport

/// What an operator can do to the log itself: close a saga by hand, or leave a request for
/// the next start of the runtime that owns the log (which alone can dispatch commands).
/// Each is written with its `SagaOperatorAction` event, so it shows in the saga's history.
extension SagaLog {
    /// Marks a `failed_compensation` saga resolved: it becomes `failed` (final, nothing left to
    /// compensate), its reason ending "resolved by an operator: <note>". The caller makes sure
    /// no runtime has the saga in flight (a saga in `failed_compensation` never is).
    /// - Returns: The saga's row as it now reads.
    /// - Throws: `.notFound`, `.state` (the saga is not in `failed_compensation`), the log's error.
    @discardableResult
    public nonisolated(nonsending) func resolveSaga(id: UInt64, note: String) async throws(SagaLaneError) -> SagaRecord {
        let record = try sagaForOperator(id)
        guard record.state == .failedCompensation else {
            throw SagaLaneError(.state, "saga \(id) is \(record.state.rawValue): only a saga in failed_compensation waits for an operator to resolve it")
        }
        let resolution = "resolved by an operator: \(note)"
        let reason = record.failureReason.map { $0.isEmpty ? resolution : "\($0); \(resolution)" } ?? resolution
        let payload: JSON = ["name": .string(record.name), "action": "resolve", "note": .string(note),
                             "state": .string(SagaState.failed.rawValue)]
        try await write(.terminateSaga(id: id, state: .failed, reason: reason,
                                       event: LifecycleNote(type: LifecycleType.operatorAction, payload: payload)))
        return try saga(id: id) ?? record
    }

    /// Records a request the next start carries out, after its recovery: `cancel` a saga a
    /// stopped runtime left `running` (it fails "cancelled: <note>" and its compensations
    /// run, whatever its type's recovery policy), `resume` or `retryCompensation` a saga in
    /// `failed_compensation`. A later request for the same saga replaces an earlier one.
    /// - Throws: `.notFound`, `.state` (the saga is not in a state the request applies to),
    ///   the log's error.
    public nonisolated(nonsending) func request(_ action: SagaRequestAction, sagaID id: UInt64, note: String?) async throws(SagaLaneError) {
        let record = try sagaForOperator(id)
        switch action {
        case .cancel where record.state != .running:
            throw SagaLaneError(.state, "saga \(id) is \(record.state.rawValue): only a saga left running can be cancelled")
        case .resume where record.state != .failedCompensation, .retryCompensation where record.state != .failedCompensation:
            throw SagaLaneError(.state, "saga \(id) is \(record.state.rawValue): only a saga in failed_compensation can be \(action == .resume ? "resumed" : "compensated again")")
        case .resume where record.steps.contains { $0.compensates != nil }:
            throw SagaLaneError(.state, "saga \(id) began compensating: it cannot go forward again (retry its compensations instead)")
        default:
            break
        }
        let payload: JSON = ["name": .string(record.name), "action": .string("request_\(action.rawValue)"), "note": note.map(JSON.string) ?? .null]
        try await write(.putRequest(sagaID: id, action: action, note: note,
                                    event: LifecycleNote(type: LifecycleType.operatorAction, payload: payload)))
    }

    private func sagaForOperator(_ id: UInt64) throws(SagaLaneError) -> SagaRecord {
        guard !isReadOnly else { throw SagaLaneError(.readOnly, "the log was opened read-only") }
        guard let record = try saga(id: id) else { throw SagaLaneError(.notFound, "the log has no saga \(id)") }
        return record
    }
}
