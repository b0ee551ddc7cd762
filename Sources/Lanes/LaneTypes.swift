import Glibc
import SagaLaneLog
import SagaLaneSupport
import Synchronization

/// A unit of work for a lane. Its body blocks a worker thread until done: host jobs from C or
/// Go do blocking work, so jobs never run on the event loop or on Swift's cooperative pool.
public struct LaneJob: Sendable {
    /// Unique among the lane's queued and running jobs (and in the log, when persisted).
    /// Empty: the lane makes one up.
    public var id: String
    /// Who submitted it, for operators.
    public var caller: String
    /// Higher runs first; equal priorities run in submission order.
    public var priority: Int
    /// Opaque bytes kept in the log so `recover` can rebuild the job after a restart.
    public var metadata: [UInt8]
    /// Retries for jobs declared idempotent; `nil` runs the job once.
    public var retry: RetryPolicy?
    /// While a job submitted with this key is in the lane (or, for a persisted lane, while its
    /// row is in the log, until the sweeper purges it), a submit with the same key queues
    /// nothing and answers that job's id (`LaneSubmission.duplicate`); its completion is
    /// never called. `nil`: no key.
    public var idempotencyKey: String?
    /// The work. Returns the result text or throws; should check `context.isCancelled` when
    /// it runs long.
    public var body: @Sendable (LaneJobContext) throws -> String

    public init(
        id: String = "",
        caller: String = "",
        priority: Int = 0,
        metadata: [UInt8] = [],
        retry: RetryPolicy? = nil,
        idempotencyKey: String? = nil,
        body: @escaping @Sendable (LaneJobContext) throws -> String
    ) {
        self.id = id
        self.caller = caller
        self.priority = priority
        self.metadata = metadata
        self.retry = retry
        self.idempotencyKey = idempotencyKey
        self.body = body
    }
}

/// What a running job can see of its situation.
public final class LaneJobContext: Sendable {
    public let jobID: String
    /// 1 for the first run, 2 for the first retry, …
    public let attempt: Int
    private let cancelled = Atomic<Bool>(false)

    init(jobID: String, attempt: Int) {
        self.jobID = jobID
        self.attempt = attempt
    }

    /// Set when the lane shuts down or the waiting caller gave up: stop early if you can.
    public var isCancelled: Bool { cancelled.load(ordering: .relaxed) }

    func cancel() { cancelled.store(true, ordering: .relaxed) }
}

/// Thrown by a job body that stopped because it saw `isCancelled`.
public struct LaneJobCancelled: Error, Sendable {
    public init() {}
}

/// How a job ended.
public enum LaneJobOutcome: Sendable, Equatable {
    case finished(result: String)
    case failed(error: String)
    case cancelled
}

/// A job's end, as its completion callback receives it.
public struct LaneJobCompletion: Sendable, Equatable {
    /// The job's id (the one the lane made up, when it was submitted without one).
    public var jobID: String
    /// Runs made, in this process and in earlier ones (0: it never ran).
    public var attempts: Int
    public var outcome: LaneJobOutcome

    public init(jobID: String, attempts: Int, outcome: LaneJobOutcome) {
        self.jobID = jobID
        self.attempts = attempts
        self.outcome = outcome
    }

    /// The result text of a finished job.
    /// - Throws: `.jobFailed` (its `underlying` a `LaneJobFailure` with the job's own error
    ///   text) or `.cancelled`.
    public func result() throws(SagaLaneError) -> String {
        switch outcome {
        case .finished(let result):
            return result
        case .failed(let error):
            throw SagaLaneError(.jobFailed, "job '\(jobID)' failed after \(attempts) attempt\(attempts == 1 ? "" : "s"): \(error)",
                                underlying: LaneJobFailure(error: error, attempts: attempts))
        case .cancelled:
            throw SagaLaneError(.cancelled, "job '\(jobID)' was cancelled")
        }
    }
}

/// What a failed job reported, under the `.jobFailed` error that says it failed.
public struct LaneJobFailure: Error, Sendable, Equatable {
    /// The job's own error text.
    public var error: String
    public var attempts: Int
}

/// A job rebuilt from its row after a restart, with the completion its outcome goes to.
public struct RecoveredJob: Sendable {
    public var job: LaneJob
    public var onComplete: @Sendable (LaneJobCompletion) -> Void
    /// Why the rebuilt job cannot run (`init(unusable:onComplete:)`): its row is marked
    /// failed, `onComplete` hears this reason, and the lane's diagnostics name the job.
    public let unusable: String?

    public init(job: LaneJob, onComplete: @escaping @Sendable (LaneJobCompletion) -> Void = { _ in }) {
        self.job = job
        self.onComplete = onComplete
        unusable = nil
    }

    /// A job its host rebuilt wrongly (a job that cannot be queued, for `reason`).
    public init(unusable reason: String, onComplete: @escaping @Sendable (LaneJobCompletion) -> Void) {
        job = LaneJob { _ in reason }
        self.onComplete = onComplete
        unusable = reason
    }
}

/// Where a submitted job stands.
public struct LaneSubmission: Sendable, Equatable {
    /// Jobs ahead of it in the queue (0: it starts as soon as a worker is free).
    public var position: Int
    /// `position`, plus the jobs running, spread over the workers, times the recent mean run
    /// time. Zero until the lane has run something.
    public var estimatedWait: Duration
    /// The job's id (made up by the lane when the job had none); for a duplicate, the id of
    /// the job that holds the key.
    public var jobID: String
    /// The job's idempotency key was taken: nothing was queued, and the completion given with
    /// this submit is never called.
    public var duplicate: Bool = false
}

/// A lane's counters.
public struct LaneStats: Sendable, Equatable {
    public var queued: Int
    public var running: Int
    public var maxConcurrent: Int
    public var completed: Int
    public var failed: Int
    public var cancelled: Int
    /// Mean run time of the last 64 runs.
    public var meanRunTime: Duration
}
