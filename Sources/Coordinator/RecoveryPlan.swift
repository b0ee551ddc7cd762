import SagaLaneJSON
import SagaLaneLog
import SagaLaneSupport

/// What start-up recovery would do to one unfinished saga under a policy, read from the log's
/// rows without doing it: `sagalane recover --dry-run` lists these. Recovery itself works
/// from the same rows (see `Coordinator+Recovery`); the reason a `markFailed` saga gets is this
/// one, word for word.
public struct RecoveryPlan: Sendable {
    public let sagaID: UInt64
    public let policy: RecoveryPolicy
    /// The state recovery leaves the saga in, or moves it on in (`running`, `compensating`).
    public let newState: SagaState
    /// What happens: the failure reason a `markFailed` saga is given, or what goes on.
    public let reason: String

    public init(_ record: SagaRecord, policy: RecoveryPolicy) {
        sagaID = record.id
        self.policy = policy
        let pending = record.steps.filter { $0.state == .pending }
        if record.state == .compensating && policy != .markFailed {
            newState = .compensating
            let left = Self.toUndo(record).map { String($0.index) }
            reason = left.isEmpty ? "goes on compensating" : "goes on compensating: steps \(left.joined(separator: ", ")) left to undo"
            return
        }
        switch policy {
        case .markFailed:
            newState = .failedCompensation
            reason = Self.markFailedReason(record)
        case .compensate:
            let undo = Self.toUndo(record).map { String($0.index) }
            let interrupted = pending.map { String($0.index) }
            var text = undo.isEmpty ? "nothing to undo: none of its succeeded steps has a compensation"
                : "undoes steps \(undo.joined(separator: ", ")), in that order"
            if !interrupted.isEmpty { text += "; pending step \(interrupted.joined(separator: ", ")) marked failed, not undone" }
            newState = undo.isEmpty ? .failed : .compensating
            reason = text
        case .resume:
            newState = .running
            let replayed = record.steps.filter { $0.state == .succeeded && $0.compensates == nil }.count
            if let step = pending.first {
                reason = "replays \(replayed) step result\(replayed == 1 ? "" : "s"), sends step \(step.index) again (attempt \(step.attempts + 1)) under the same saga id and index"
            } else {
                reason = "replays \(replayed) step result\(replayed == 1 ? "" : "s") and goes on from there"
            }
        }
    }

    /// The reason a saga recovered under `markFailed` is given.
    public static func markFailedReason(_ record: SagaRecord) -> String {
        markFailedReason(SagaOutline(record))
    }

    /// The reason a saga recovered under `markFailed` is given, from its outline.
    public static func markFailedReason(_ saga: SagaOutline) -> String {
        var reason = "interrupted: the runtime restarted while the saga was \(saga.state.rawValue)"
        if let first = saga.pendingSteps.first {
            reason += " (pending step \(first)"
            for index in saga.pendingSteps.dropFirst() { reason += ", \(index)" }
            reason += ")"
        }
        return reason
    }

    /// Forward steps that succeeded, declared a compensation, and are not undone yet: latest
    /// first, the order compensations run in.
    private static func toUndo(_ record: SagaRecord) -> [StepRecord] {
        let undone = Set(record.steps.compactMap { step in step.state == .succeeded ? step.compensates : nil })
        return record.steps
            .filter { $0.compensates == nil && $0.state == .succeeded && !undone.contains($0.index) }
            .filter { step in
                guard let spec = step.specJSON, let json = try? JSON(parsing: spec) else { return false }
                return json["compensation"].map { !$0.isNull } ?? false
            }
            .reversed()
    }
}
