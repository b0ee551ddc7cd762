import SagaLaneLog
import SagaLaneSupport

/// Start-up recovery: what happens, before the coordinator takes its first event, to every
/// saga the log shows unfinished, according to its type's `RecoveryPolicy`.
struct SagaRecovery {
    let log: SagaLog
    let registry: SagaRegistry

    /// Applies each unfinished saga's policy.
    /// - Returns: How many unfinished sagas there were.
    func run() async throws(SagaLaneError) -> Int {
        var count = 0, last: UInt64 = 0
        while true {
            let page: [SagaRecord]
            do { page = try log.unfinishedSagas(after: last, limit: Self.pageSize) } catch {
                throw SagaLaneError(error.code, "cannot read unfinished sagas: \(error.message)", underlying: error)
            }
            for record in page {
                switch registry.type(named: record.name)?.recovery ?? .markFailed {
                case .markFailed:
                    try await markFailed(record)
                }
            }
            count += page.count
            guard page.count == Self.pageSize, let next = page.last?.id else { return count }
            last = next
        }
    }

    /// Sagas read at a time, so recovering a big log never holds it all in memory.
    static let pageSize = 500

    /// The saga is left for an operator: `failed_compensation`, with what was interrupted.
    private func markFailed(_ record: SagaRecord) async throws(SagaLaneError) {
        let reason = RecoveryPlan(record, policy: .markFailed).reason
        do { try await log.markFailedCompensation(sagaID: record.id, reason: reason) } catch {
            throw SagaLaneError(error.code, "cannot mark saga \(record.id) failed_compensation: \(error.message)", underlying: error)
        }
    }
}

/// What start-up recovery does to one unfinished saga under a policy, worked out without doing
/// it: `sagalane recover --dry-run` shows these, and recovery applies them.
public struct RecoveryPlan: Sendable {
    public let sagaID: UInt64
    public let policy: RecoveryPolicy
    /// The state the saga is left in.
    public let newState: SagaState
    /// The failure reason it is given.
    public let reason: String

    public init(_ record: SagaRecord, policy: RecoveryPolicy) {
        sagaID = record.id
        self.policy = policy
        switch policy {
        case .markFailed:
            newState = .failedCompensation
            let pending = record.steps.filter { $0.state == .pending }.map { String($0.index) }
            var reason = "interrupted: the runtime restarted while the saga was \(record.state.rawValue)"
            if !pending.isEmpty { reason += " (pending step \(pending.joined(separator: ", ")))" }
            self.reason = reason
        }
    }
}
