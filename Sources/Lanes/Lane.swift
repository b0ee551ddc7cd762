import SagaLaneEventLoop
import SagaLaneLog
import SagaLaneSupport

/// A named priority job queue with bounded, adjustable concurrency, optionally persisted.
///
/// Each concurrency slot is a worker OS thread; a job runs only while fewer than
/// `maxConcurrent` jobs are running. Higher priority runs first, FIFO within a priority.
///
/// **Persistence** (when the lane has a log): the job's `queued` row is durable before the
/// job can start, and a job whose row cannot be written is refused and never runs. Its
/// `running` row is durable before its body runs, so a crash can never lead to a silent second
/// run (recovery marks such jobs failed). A cancel returns success only once the `cancelled`
/// row is durable, so a cancelled job never runs after a restart either. The terminal row is
/// written after the run; the outcome is reported once it is durable, and if it cannot be
/// written the outcome says so as a failure (the log would otherwise disagree with what the
/// caller was told).
///
/// Every call is safe from any thread. The blocking ones (`submitBlocking`, `cancelBlocking`)
/// wait for the log's writer thread, so a completion (which runs on that thread, for a
/// persisted lane) must use the other forms.
public final class Lane: Sendable {
    /// The most jobs a lane may run at once: each slot is a thread of its own, and a bound in
    /// the thousands would only meet the process's thread limit.
    public static let concurrencyLimit = 1024

    private let core: LaneCore

    /// The lane's name, unique in its pool.
    public var name: String { core.name }
    /// The log rows go to; `nil` for an in-memory lane.
    public var store: SagaLog? { core.journal.log }
    /// The loop whose timers pace retries; retries without a loop happen at once.
    public var loop: EventLoop? { core.loop }

    /// Creates the lane and starts its workers. When the system refuses some worker threads
    /// (a thread limit), the lane runs with those it got, says so through `diagnostics`, and
    /// tries again whenever a job is queued; `workerThreads` tells how many it has.
    /// - Parameters:
    ///   - maxConcurrent: Jobs that may run at once, 1 to `Lane.concurrencyLimit`.
    ///   - store: Persist every job's rows in this log.
    ///   - loop: Paces retries with its timers.
    ///   - diagnostics: Where the lane says what no caller can be told (jobs lost on a
    ///     restart, worker threads the system refused).
    /// - Throws: `.invalidArgument` for a bound out of range.
    public init(name: String, maxConcurrent: Int, store: SagaLog? = nil, loop: EventLoop? = nil,
                diagnostics: Diagnostics = .standardError) throws(SagaLaneError) {
        try Lane.checkBound(maxConcurrent, name: name)
        core = LaneCore(name: name, maxConcurrent: maxConcurrent, store: store, loop: loop, diagnostics: diagnostics)
    }

    /// Dropping the last reference shuts the lane down, as `shutdown()` does.
    deinit { core.shutdown() }

    private static func checkBound(_ n: Int, name: String) throws(SagaLaneError) {
        guard n >= 1, n <= concurrencyLimit else {
            throw SagaLaneError(.invalidArgument, "lane '\(name)': max_concurrent must be 1 to \(concurrencyLimit) (got \(n))")
        }
    }

    // MARK: Submitting

    /// Submits `job`. For a persisted lane, `onQueued` runs once the `queued` row is durable
    /// (or with the error that refused the job), on the log's writer thread; for an in-memory
    /// lane, before this returns. `onComplete` runs once, with the outcome, unless the job was
    /// refused: on the writer thread for a persisted lane, else on whichever thread ended the
    /// job (a worker, a canceller, a shutdown).
    public func submit(
        _ job: LaneJob,
        onQueued: @escaping @Sendable (Result<LaneSubmission, SagaLaneError>) -> Void,
        onComplete: @escaping @Sendable (LaneJobCompletion) -> Void
    ) {
        core.submit(job, onQueued: onQueued, onComplete: onComplete)
    }

    /// Submits `jobs` in one call. Each is taken or refused on its own, as
    /// `submit(_:onQueued:onComplete:)` would, and `onQueued` runs once per job with its index
    /// in `jobs`; for a persisted lane, the queued rows of the jobs taken go to the log in one
    /// group commit (one fsync for all), and `onQueued` runs once each is durable.
    public func submit(batch jobs: [(job: LaneJob, onComplete: @Sendable (LaneJobCompletion) -> Void)],
                       onQueued: @escaping @Sendable (Int, Result<LaneSubmission, SagaLaneError>) -> Void) {
        core.submit(batch: jobs, onQueued: onQueued)
    }

    /// `submit(batch:onQueued:)`, blocking the calling thread until every job is queued
    /// (durably, for a persisted lane) or refused; the results in the order of `jobs`.
    public func submitBlocking(batch jobs: [(job: LaneJob, onComplete: @Sendable (LaneJobCompletion) -> Void)])
        -> [Result<LaneSubmission, SagaLaneError>] {
        if jobs.isEmpty { return [] }
        let results = ConditionLock<(values: [Result<LaneSubmission, SagaLaneError>?], left: Int)>(
            (Array(repeating: nil, count: jobs.count), jobs.count))
        let done = Completion<Void>()
        core.submit(batch: jobs) { index, result in
            let last = results.withLock { state -> Bool in
                state.values[index] = result
                state.left -= 1
                return state.left == 0
            }
            if last { done.set(()) }
        }
        done.wait()
        return results.withLock { $0.values.map { $0! } }
    }

    /// Submits `job`, returning once it is queued (durably, for a persisted lane).
    /// - Throws: `.exists` (an id the lane holds, or a persisted lane's log already has),
    ///   `.closed`, or the log's error for a row that could not be written (the job never runs).
    @discardableResult
    public func submit(_ job: LaneJob, onComplete: @escaping @Sendable (LaneJobCompletion) -> Void = { _ in }) async throws(SagaLaneError) -> LaneSubmission {
        let core = self.core
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<LaneSubmission, SagaLaneError>, Never>) in
            core.submit(job, onQueued: { continuation.resume(returning: $0) }, onComplete: onComplete)
        }
        return try result.get()
    }

    /// Submits `job` and blocks the calling thread until it is queued. For hosts calling from
    /// threads of their own (not the log's writer thread: for a persisted lane it waits for it).
    /// - Throws: As `submit(_:onComplete:)`.
    @discardableResult
    public func submitBlocking(_ job: LaneJob, onComplete: @escaping @Sendable (LaneJobCompletion) -> Void = { _ in }) throws(SagaLaneError) -> LaneSubmission {
        let waiter = Completion<Result<LaneSubmission, SagaLaneError>>()
        core.submit(job, onQueued: { waiter.set($0) }, onComplete: onComplete)
        return try waiter.wait().get()
    }

    /// Submits `job` and waits for its outcome.
    ///
    /// Cancelling the waiting task gives up on the job as `interrupt` does: whenever it
    /// happens before the job starts (even while its queued row is being written) the job never
    /// runs and this throws `.cancelled`; a running job sees its cancellation flag.
    /// - Returns: The job's result text.
    /// - Throws: `.jobFailed` (its `underlying` a `LaneJobFailure`), `.cancelled`, `.exists`
    ///   (its idempotency key is taken: nothing was queued), or a submission error.
    public func submitAndWait(_ job: LaneJob) async throws(SagaLaneError) -> String {
        let core = self.core
        let link = WaiterLink()
        let outcome: Result<LaneJobCompletion, SagaLaneError> = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<LaneJobCompletion, SagaLaneError>, Never>) in
                let lane = core.name
                core.submit(job, waiter: link, onQueued: { result in
                    switch result {
                    case .failure(let error):
                        continuation.resume(returning: .failure(error))
                    case .success(let submission) where submission.duplicate:
                        continuation.resume(returning: .failure(SagaLaneError(
                            .exists, "job '\(submission.jobID)' of lane '\(lane)' holds the idempotency key: nothing was queued")))
                    case .success:
                        break
                    }
                }, onComplete: { continuation.resume(returning: .success($0)) })
            }
        } onCancel: {
            if let entry = link.giveUp() { core.interrupt(entry) }
        }
        return try outcome.get().result()
    }

    // MARK: Cancelling

    /// Cancels a job that has not started: queued, or submitted and its queued row still being
    /// written. It never runs, here or after a restart, and ends `cancelled`.
    ///
    /// `completion` runs once the job's `cancelled` row is durable (at once for an in-memory
    /// lane), after the job's own completion, on the log's writer thread; or with the error:
    /// - `.notQueued`: the job is running or between retries (it may still run);
    /// - `.notFound`: the lane holds no job with that id (it never did, or it ended);
    /// - the log's error when the cancelled row could not be written: the job stays queued
    ///   where it was.
    public func cancel(jobID: String, completion: @escaping @Sendable (Result<Void, SagaLaneError>) -> Void) {
        core.cancel(jobID: jobID, completion: completion)
    }

    /// Cancels a job that has not started, returning once that is durable (see
    /// `cancel(jobID:completion:)`).
    public func cancel(jobID: String) async throws(SagaLaneError) {
        let core = self.core
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<Void, SagaLaneError>, Never>) in
            core.cancel(jobID: jobID) { continuation.resume(returning: $0) }
        }
        try result.get()
    }

    /// Cancels a job that has not started and blocks the calling thread until that is durable
    /// (see `cancel(jobID:completion:)`).
    /// - Throws: As `cancel(jobID:completion:)`, and `.state` on the log's writer thread for a
    ///   persisted lane (it would wait for itself).
    public func cancelBlocking(jobID: String) throws(SagaLaneError) {
        if core.persisted && OSThread.currentRole == .logWriter {
            throw SagaLaneError(.state, "a cancel on lane '\(name)' cannot wait on the log's writer thread; use cancel(jobID:completion:)")
        }
        let done = Completion<Result<Void, SagaLaneError>>()
        core.cancel(jobID: jobID) { done.set($0) }
        try done.wait().get()
    }

    /// Gives up on a job, returning at once: one that has not started (queued, its queued row
    /// being written, or waiting out a retry back-off) never runs and ends cancelled (after its
    /// cancelled row, for a persisted lane); a running one sees its cancellation flag
    /// (`LaneJobContext.isCancelled`).
    /// - Throws: `notFound` for an id the lane does not hold.
    public func interrupt(jobID: String) throws(SagaLaneError) {
        try core.interrupt(jobID: jobID)
    }

    // MARK: Settings and stats

    /// Changes how many jobs may run at once. Raising it starts queued jobs at once; lowering
    /// it lets running jobs finish and starts no new one until the count is under the bound.
    /// - Throws: `.invalidArgument` for a bound outside 1 to `Lane.concurrencyLimit`.
    public func setMaxConcurrent(_ n: Int) throws(SagaLaneError) {
        try Lane.checkBound(n, name: name)
        core.setMaxConcurrent(n)
    }

    /// Sets how many jobs may start at once, 0 included (then queued jobs wait, and no worker
    /// thread stays). For a lane whose jobs run in other processes (the agent's remote
    /// workers), whose capacity comes and goes with their connections.
    package func setWorkerSlots(_ n: Int) {
        core.setMaxConcurrent(max(0, min(n, Lane.concurrencyLimit)))
    }

    public var stats: LaneStats { core.stats }

    /// Worker threads alive, parked or busy.
    package var workerThreads: Int { core.workerThreads }

    /// Why the lane is short of workers, if it is: the system refused a thread.
    package var lastThreadError: SagaLaneError? { core.lastThreadError }

    /// Stops the lane: queued jobs and jobs waiting out a retry back-off end `cancelled`,
    /// running jobs see their cancellation flag and are waited for, workers are joined.
    /// Idempotent.
    public func shutdown() {
        core.shutdown()
    }

    // MARK: Recovery

    /// Reconciles the log with this lane after a restart: `running` rows become `failed`
    /// ("lost on restart": the job may have had effects, so it is not run again); `queued`
    /// rows are rebuilt by `reconstruct` and queued again under the same row, or failed when
    /// it returns `nil` ("lost on restart: cannot reconstruct") or the job cannot be queued
    /// again. No queued row is left behind.
    ///
    /// It runs once, before the lane's first submit, so every row it reads is an earlier
    /// process's: on a lane that has taken a job (or recovered) it throws `.state` and
    /// touches nothing. Jobs may be submitted while it runs; one with the id of a row it is
    /// rebuilding is refused with `.exists`. An in-memory lane has nothing to recover.
    /// - Returns: How many jobs were re-queued and how many were failed.
    /// - Throws: `.state`, `.closed`, `.corrupt` (a row no lane could have written), or the
    ///   log's error; rows it had not reached yet stay as they were.
    @discardableResult
    public func recover(reconstruct: (JobRecord) -> RecoveredJob?) async throws(SagaLaneError) -> (requeued: Int, failed: Int) {
        try await core.recover(reconstruct: reconstruct)
    }
}
