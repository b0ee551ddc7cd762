import SagaLaneSupport

/// A saga's state in the log. What each one means, once:
///
/// - `running`, `compensating`: **unfinished**. The saga is in flight (its steps, or the
///   compensations of a failure); start-up recovery acts on the sagas a dead runtime left so.
/// - `completed`, `compensated`, `failed`: **final**. `failed` is a failure with nothing
///   left to compensate (no step to undo, or nothing that undoes it).
/// - `failedCompensation`: **final, but needs an operator**: a compensation failed, the saga
///   was interrupted under the `markFailed` recovery policy, or it failed leaving side
///   effects that nothing compensates.
///
/// An operator's list of what to look at (`SagaLog.unresolvedSagas`) is the unfinished sagas
/// and those that need an operator.
public enum SagaState: String, Sendable, CaseIterable {
    case running, compensating, completed, failed, compensated
    case failedCompensation = "failed_compensation"

    /// Whether the saga is still in flight: `running` or `compensating`.
    public var isUnfinished: Bool { self == .running || self == .compensating }

    /// States a saga never leaves (every state but the unfinished ones); only these are ever
    /// vacuumed.
    public var isTerminal: Bool { !isUnfinished }

    /// Whether the saga waits for an operator: `failedCompensation`.
    public var needsOperator: Bool { self == .failedCompensation }

    /// `running` and `compensating`: what start-up recovery acts on.
    public static let unfinished: [SagaState] = allCases.filter(\.isUnfinished)

    /// The unfinished states and `failedCompensation`: what an operator should look at.
    public static let unresolved: [SagaState] = allCases.filter { $0.isUnfinished || $0.needsOperator }
}

/// A step's state in the log.
public enum StepState: String, Sendable, CaseIterable {
    case pending, succeeded, failed, compensated
}

/// A lane job's state in the log.
public enum JobState: String, Sendable, CaseIterable {
    case queued, running, finished, cancelled, failed

    public var isTerminal: Bool { self == .finished || self == .cancelled || self == .failed }

    /// What to say of a state name that is none of these.
    public static func unknownNameMessage(_ name: String) -> String {
        "unknown job state '\(name)' (one of \(allCases.map(\.rawValue).joined(separator: ", ")))"
    }
}

/// One saga row, with its steps where the query provides them.
public struct SagaRecord: Sendable, Equatable {
    public var id: UInt64
    public var name: String
    public var state: SagaState
    public var inputJSON: String
    public var failureReason: String?
    public var startedAt: Timestamp
    public var endedAt: Timestamp?
    public var steps: [StepRecord]
}

/// One step row.
public struct StepRecord: Sendable, Equatable {
    public var sagaID: UInt64
    public var index: UInt32
    public var name: String
    public var target: String
    public var commandJSON: String
    public var state: StepState
    public var outputJSON: String?
    public var failureReason: String?
    public var startedAt: Timestamp
    public var endedAt: Timestamp?
}

/// A saga row for diagnostics, with its number of steps instead of the steps themselves.
/// The row's fields read through (`summary.id`, `summary.state`, …).
@dynamicMemberLookup
public struct SagaSummary: Sendable, Equatable {
    /// The saga's row; its `steps` are empty.
    public var saga: SagaRecord
    public var stepCount: Int

    public subscript<Value>(dynamicMember field: KeyPath<SagaRecord, Value>) -> Value { saga[keyPath: field] }
}

/// One lane job row.
public struct JobRecord: Sendable, Equatable {
    public var id: String
    public var lane: String
    public var caller: String
    public var priority: Int
    /// Opaque bytes the submitter stored to rebuild the job after a restart.
    public var metadata: [UInt8]
    public var state: JobState
    public var attempts: Int
    public var error: String?
    public var enqueuedAt: Timestamp
    public var startedAt: Timestamp?
    public var finishedAt: Timestamp?
    public var cancelledAt: Timestamp?
    public var failedAt: Timestamp?
}

/// A write to the log. Each goes through the group-commit writer.
public enum LogRecord: Sendable {
    /// A new saga in `running`. A duplicate id is an error, never an overwrite.
    case startSaga(id: UInt64, name: String, inputJSON: String)
    /// The saga's terminal (or other) state, `ended_at` and reason.
    case terminateSaga(id: UInt64, state: SagaState, reason: String?)
    /// A state change that does not end the saga (e.g. `compensating`).
    case setSagaState(id: UInt64, state: SagaState)
    /// A `pending` step row, written before its command is dispatched.
    case startStep(sagaID: UInt64, index: UInt32, name: String, target: String, commandJSON: String)
    /// The step `succeeded` with the event that answered it.
    case finishStep(sagaID: UInt64, index: UInt32, outputJSON: String)
    /// The step `failed`.
    case failStep(sagaID: UInt64, index: UInt32, reason: String)
    /// Recovery's terminal write: `failed_compensation`, the reason appended to any earlier
    /// one, `ended_at` rewritten. Idempotent.
    case markFailedCompensation(sagaID: UInt64, reason: String)
    /// Deletes terminal sagas that ended before the cutoff (their steps cascade), in bounded
    /// batches. Output: the number of sagas deleted.
    case vacuum(olderThan: Timestamp)
    /// A `queued` lane job. A duplicate id is an error.
    case enqueueJob(id: String, lane: String, caller: String, priority: Int, metadata: [UInt8])
    /// A lane job's new state, stamping the matching time column.
    case updateJobState(id: String, state: JobState, attempts: Int?, error: String?)
    /// Deletes terminal lane jobs that ended before the cutoff, in bounded batches. Output:
    /// the number deleted.
    case purgeFinishedJobs(olderThan: Timestamp)

    /// The bulk deletion this record asks for, if it is one: those run as several short
    /// transactions of their own rather than inside a batch.
    var deletion: (LogDeletion, cutoff: Timestamp)? {
        switch self {
        case .vacuum(let cutoff): return (.terminalSagas, cutoff)
        case .purgeFinishedJobs(let cutoff): return (.terminalJobs, cutoff)
        default: return nil
        }
    }
}

/// Rows the log deletes in bulk, in short batches, by age.
public enum LogDeletion: Sendable {
    /// Sagas in a final state (their steps go with them), by when they ended.
    case terminalSagas
    /// Lane jobs in a terminal state, by when they ended.
    case terminalJobs
}

/// What a log holds, counted (`SagaLog.stats()`).
public struct LogStats: Sendable, Equatable {
    /// The schema version of the file (`PRAGMA user_version`).
    public var schemaVersion = 0
    /// Sagas by state; states with none are absent.
    public var sagas: [SagaState: Int] = [:]
    /// When the longest-running saga still `running` started.
    public var oldestRunningSaga: Timestamp?
    /// Lane jobs by lane, then by state; states with none are absent.
    public var jobs: [ExactName: [JobState: Int]] = [:]
    /// The database's size (pages in use and free).
    public var databaseBytes = 0
    /// The write-ahead log's file size; `nil` for a log in memory.
    public var walBytes: Int?

    public init() {}
}

extension LogRecord {
    /// Refuses what the log must never store, before the record is queued: a value over
    /// `SagaLog.maximumValueBytes`, or a saga id past `Int64.max` (SQLite would store it
    /// negative).
    func validate() throws(SagaLaneError) {
        func size(_ text: String, _ name: @autoclosure () -> String) throws(SagaLaneError) {
            try SagaLog.checkValueSize(text.utf8.count, of: name())
        }
        func saga(_ id: UInt64) throws(SagaLaneError) {
            if id > UInt64(Int64.max) {
                throw SagaLaneError(.invalidArgument, "saga id \(id) is past the largest the log stores (\(Int64.max))")
            }
        }
        switch self {
        case .startSaga(let id, let name, let input):
            try saga(id)
            try size(name, "the saga's name")
            try size(input, "saga \(id)'s input")
        case .terminateSaga(let id, _, let reason):
            try saga(id)
            if let reason { try size(reason, "saga \(id)'s failure reason") }
        case .setSagaState(let id, _):
            try saga(id)
        case .startStep(let id, let index, let name, let target, let command):
            try saga(id)
            try size(name, "step \(index)'s name")
            try size(target, "step \(index)'s target")
            try size(command, "step \(index) of saga \(id)'s command")
        case .finishStep(let id, let index, let output):
            try saga(id)
            try size(output, "step \(index) of saga \(id)'s output")
        case .failStep(let id, let index, let reason):
            try saga(id)
            try size(reason, "step \(index) of saga \(id)'s failure reason")
        case .markFailedCompensation(let id, let reason):
            try saga(id)
            try size(reason, "saga \(id)'s failure reason")
        case .enqueueJob(let id, let lane, let caller, _, let metadata):
            try size(id, "the job id")
            try size(lane, "the lane name")
            try size(caller, "job '\(id.prefix(64))'s caller")
            try SagaLog.checkValueSize(metadata.count, of: "job '\(id.prefix(64))'s metadata")
        case .updateJobState(let id, _, _, let error):
            try size(id, "the job id")
            if let error { try size(error, "job '\(id.prefix(64))'s error") }
        case .vacuum, .purgeFinishedJobs:
            break
        }
    }
}
