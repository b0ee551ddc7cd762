import SagaLaneSupport

/// A saga's state in the log.
public enum SagaState: String, Sendable, CaseIterable {
    case running, compensating, completed, failed, compensated
    case failedCompensation = "failed_compensation"

    /// States a saga never leaves; only these are ever vacuumed.
    public var isTerminal: Bool { self != .running && self != .compensating }
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
    public var jobs: [String: [JobState: Int]] = [:]
    /// The database's size (pages in use and free).
    public var databaseBytes = 0
    /// The write-ahead log's file size; `nil` for a log in memory.
    public var walBytes: Int?

    public init() {}
}
