import SagaLaneJSON
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
    /// The key it was started with, if any: while this row exists, a start with the same key
    /// returns this saga instead of starting another.
    public var idempotencyKey: String? = nil
    /// Its lifecycle events and operator actions, oldest first, where the query provides them
    /// (`SagaLog.saga(id:)`); `nil` elsewhere.
    public var history: [LifecycleEntry]? = nil
}

/// An unfinished saga as start-up recovery reads it first: what marking it failed needs, without
/// its input, its steps' commands and outputs, or timestamps to parse.
public struct SagaOutline: Sendable, Equatable {
    public var id: UInt64
    public var name: String
    public var state: SagaState
    public var failureReason: String?
    /// Its steps still `pending`, by index.
    public var pendingSteps: [UInt32]

    public init(id: UInt64, name: String, state: SagaState, failureReason: String?, pendingSteps: [UInt32]) {
        self.id = id
        self.name = name
        self.state = state
        self.failureReason = failureReason
        self.pendingSteps = pendingSteps
    }

    public init(_ record: SagaRecord) {
        self.init(id: record.id, name: record.name, state: record.state, failureReason: record.failureReason,
                  pendingSteps: record.steps.filter { $0.state == .pending }.map(\.index))
    }
}

/// One saga of `LogRecord.markFailedCompensations`: the reason appended to its row.
public typealias FailedSagaMark = (sagaID: UInt64, reason: String)

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
    /// Dispatches made so far: 1, plus one per retry and per re-dispatch after a restart.
    public var attempts: Int = 1
    /// For a compensation: the index of the step it undoes.
    public var compensates: UInt32? = nil
    /// What the step declared beyond its command, as JSON (`SagaStep`'s stored form: its
    /// timeout, retries, idempotence and compensation); `nil` when nothing.
    public var specJSON: String? = nil
    /// The event that led the saga to issue this step when it answered no earlier step (the
    /// saga's `start` waited, and this event moved it on): resume replays it.
    public var causeJSON: String? = nil
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
    /// The key it was submitted with, if any: while this row exists, a submit with the same
    /// key to the same lane queues nothing.
    public var idempotencyKey: String? = nil
}

/// A lifecycle event a record announces: written in the same transaction as the change it
/// announces, at the next position of the log's lifecycle stream (see `LifecycleEntry`).
public struct LifecycleNote: Sendable, Equatable {
    public var type: String
    public var payload: JSON

    public init(type: String, payload: JSON) {
        self.type = type
        self.payload = payload
    }
}

/// What an operator asked of a saga while its runtime was stopped (`sagalane retry-compensation`
/// and the like): the next start carries it out after start-up recovery.
public enum SagaRequestAction: String, Sendable, CaseIterable {
    case cancel
    case resume
    case retryCompensation = "retry_compensation"
}

/// One pending operator request.
public struct SagaRequest: Sendable, Equatable {
    public var sagaID: UInt64
    public var action: SagaRequestAction
    public var note: String?
    public var requestedAt: Timestamp
}

/// A write refused because its idempotency key is taken: carried as the `underlying` error of
/// the `.exists` error, with the saga (or job) that holds the key.
public struct IdempotencyKeyTaken: Error, Sendable, Equatable {
    /// The saga started with the key, for a saga's start.
    public var sagaID: UInt64?
    /// The job submitted with the key, for a lane job.
    public var jobID: String?
}

/// A write to the log. Each goes through the group-commit writer.
///
/// A record with a `LifecycleNote` appends that event to the lifecycle stream in the same
/// transaction as its change, so an event is never visible (nor published) without the change
/// it announces, nor the change without its event.
public enum LogRecord: Sendable {
    /// A new saga in `running`. A duplicate id is an error, never an overwrite; a key another
    /// saga holds fails with `.exists`, its `underlying` an `IdempotencyKeyTaken` naming it.
    case startSaga(id: UInt64, name: String, inputJSON: String, idempotencyKey: String? = nil, event: LifecycleNote? = nil)
    /// The saga's terminal (or other) state, `ended_at` and reason.
    case terminateSaga(id: UInt64, state: SagaState, reason: String?, event: LifecycleNote? = nil)
    /// A state change that does not end the saga (e.g. `compensating`): `ended_at` is cleared
    /// (an operator may reopen a saga), and the reason replaced when one is given (`""`
    /// clears it).
    case setSagaState(id: UInt64, state: SagaState, reason: String? = nil, event: LifecycleNote? = nil)
    /// A `pending` step row, written before its command is dispatched; `compensates` names the
    /// step a compensation undoes.
    case startStep(sagaID: UInt64, index: UInt32, name: String, target: String, commandJSON: String,
                   compensates: UInt32? = nil, specJSON: String? = nil, causeJSON: String? = nil)
    /// The step `succeeded` with the event that answered it.
    case finishStep(sagaID: UInt64, index: UInt32, outputJSON: String)
    /// The step `failed`.
    case failStep(sagaID: UInt64, index: UInt32, reason: String)
    /// A pending step is dispatched again, as attempt `attempt`, because of `reason` (a failure
    /// retried, or a restart): the row counts the attempt and appends the reason.
    case retryStep(sagaID: UInt64, index: UInt32, attempt: Int, reason: String)
    /// Compensation `index` succeeded with `outputJSON`, and the step it undoes, `compensated`,
    /// is now `compensated`: one change, so the log never shows one without the other.
    case compensateStep(sagaID: UInt64, index: UInt32, compensated: UInt32, outputJSON: String)
    /// Recovery's terminal write: `failed_compensation`, the reason appended to any earlier
    /// one, `ended_at` rewritten. Idempotent.
    case markFailedCompensation(sagaID: UInt64, reason: String, event: LifecycleNote? = nil)
    /// `markFailedCompensation` for many sagas at once (a page of start-up recovery), each with
    /// its own reason, and for each a lifecycle event of type `eventType`, in the order given,
    /// whose payload is the object `{"name", "reason" (the row's, once appended), "recovered":
    /// recovered, "state": "failed_compensation"}`. The log changes the rows a statement per
    /// distinct reason and builds the events from them, rather than a statement and a
    /// serialized payload per saga. A saga missing fails the whole record.
    case markFailedCompensations([FailedSagaMark], eventType: String, recovered: String)
    /// A lifecycle event on its own (a saga resumed, an operator's action).
    case note(sagaID: UInt64, event: LifecycleNote)
    /// Records an operator's request for the next start (replacing any earlier one).
    case putRequest(sagaID: UInt64, action: SagaRequestAction, note: String?, event: LifecycleNote? = nil)
    /// Removes a saga's pending request (the start that carries it out).
    case deleteRequest(sagaID: UInt64)
    /// Deletes terminal sagas that ended before the cutoff (their steps cascade), in bounded
    /// batches. Output: the number of sagas deleted.
    case vacuum(olderThan: Timestamp)
    /// A `queued` lane job. A duplicate id is an error; a key another job of the lane holds
    /// fails with `.exists`, its `underlying` an `IdempotencyKeyTaken` naming it.
    case enqueueJob(id: String, lane: String, caller: String, priority: Int, metadata: [UInt8], idempotencyKey: String? = nil)
    /// A lane job's new state, stamping the matching time column.
    case updateJobState(id: String, state: JobState, attempts: Int?, error: String?)
    /// Deletes terminal lane jobs that ended before the cutoff, in bounded batches. Output:
    /// the number deleted.
    case purgeFinishedJobs(olderThan: Timestamp)
    /// Several records applied as one, in order: all of them or, when one fails, none (its
    /// error is the whole record's). Output: the rows they changed, summed. Start-up recovery
    /// writes a page of sagas so: one record the writer queues, commits and reports, rather
    /// than one per saga. A bulk deletion cannot be one of them.
    indirect case all([LogRecord])

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
        func note(_ event: LifecycleNote?, _ id: UInt64) throws(SagaLaneError) {
            guard let event else { return }
            try size(event.type, "saga \(id)'s event type")
            // Payloads are small objects the coordinator builds around a reason or a note, each
            // checked on its own where it enters; the serialized whole is checked on the writer.
        }
        switch self {
        case .startSaga(let id, let name, let input, let key, let event):
            try saga(id)
            try size(name, "the saga's name")
            try size(input, "saga \(id)'s input")
            if let key { try size(key, "saga \(id)'s idempotency key") }
            try note(event, id)
        case .terminateSaga(let id, _, let reason, let event):
            try saga(id)
            if let reason { try size(reason, "saga \(id)'s failure reason") }
            try note(event, id)
        case .setSagaState(let id, _, let reason, let event):
            try saga(id)
            if let reason { try size(reason, "saga \(id)'s failure reason") }
            try note(event, id)
        case .startStep(let id, let index, let name, let target, let command, _, let spec, let cause):
            try saga(id)
            try size(name, "step \(index)'s name")
            try size(target, "step \(index)'s target")
            try size(command, "step \(index) of saga \(id)'s command")
            if let spec { try size(spec, "step \(index) of saga \(id)'s declaration") }
            if let cause { try size(cause, "the event before step \(index) of saga \(id)") }
        case .finishStep(let id, let index, let output), .compensateStep(let id, let index, _, let output):
            try saga(id)
            try size(output, "step \(index) of saga \(id)'s output")
        case .failStep(let id, let index, let reason), .retryStep(let id, let index, _, let reason):
            try saga(id)
            try size(reason, "step \(index) of saga \(id)'s failure reason")
        case .markFailedCompensation(let id, let reason, let event):
            try saga(id)
            try size(reason, "saga \(id)'s failure reason")
            try note(event, id)
        case .markFailedCompensations(let marks, let type, let recovered):
            for mark in marks {
                try saga(mark.sagaID)
                try size(mark.reason, "saga \(mark.sagaID)'s failure reason")
            }
            try size(type, "the event type")
            try size(recovered, "the recovery policy")
        case .note(let id, let event):
            try saga(id)
            try note(event, id)
        case .putRequest(let id, _, let text, let event):
            try saga(id)
            if let text { try size(text, "the request's note") }
            try note(event, id)
        case .deleteRequest(let id):
            try saga(id)
        case .enqueueJob(let id, let lane, let caller, _, let metadata, let key):
            try size(id, "the job id")
            try size(lane, "the lane name")
            try size(caller, "job '\(id.prefix(64))'s caller")
            try SagaLog.checkValueSize(metadata.count, of: "job '\(id.prefix(64))'s metadata")
            if let key { try size(key, "job '\(id.prefix(64))'s idempotency key") }
        case .updateJobState(let id, _, _, let error):
            try size(id, "the job id")
            if let error { try size(error, "job '\(id.prefix(64))'s error") }
        case .all(let records):
            for record in records {
                if record.deletion != nil { throw SagaLaneError(.invalidArgument, "a bulk deletion cannot be applied with other records") }
                try record.validate()
            }
        case .vacuum, .purgeFinishedJobs:
            break
        }
    }
}
