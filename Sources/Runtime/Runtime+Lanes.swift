import SagaLaneJSON
import SagaLaneLanes
import SagaLaneLog
import SagaLaneSupport

/// Lanes: creating and finding them, submitting jobs from host threads.
extension Runtime {
    /// Creates lane `name` in the pool. A persisted lane first reconciles the rows a previous
    /// process left (see `Lane.recover`): `reconstruct` rebuilds each queued job, and each
    /// rebuilt job's completion runs on the callback thread, as every completion given to
    /// `submit(_:to:onComplete:)` does.
    /// - Throws: `.invalidArgument` (no name, or `maxConcurrent` outside 1 to
    ///   `Lane.concurrencyLimit`), `.exists`, `.readOnly` (a persisted lane on a read-only
    ///   log), `.thread` (not one worker thread), `.closed`, or recovery's log error.
    public func createLane(
        name: String,
        maxConcurrent: Int,
        persisted: Bool,
        reconstruct: (@Sendable (JobRecord) -> RecoveredJob?)? = nil
    ) throws(SagaLaneError) -> Lane {
        try checkOpen()
        guard !name.isEmpty else { throw SagaLaneError(.invalidArgument, "a lane needs a name") }
        return try laneCreation.withLock { (_) throws(SagaLaneError) -> Lane in
            if lanes.names.contains(where: { $0.isExactly(name) }) { throw SagaLaneError(.exists, "a lane named '\(name)' already exists") }
            if persisted && log.isReadOnly {
                throw SagaLaneError(.readOnly, "the log was opened read-only: lane '\(name)' cannot persist its jobs")
            }
            let lane = try Lane(name: name, maxConcurrent: maxConcurrent, store: persisted ? log : nil, loop: loop,
                                diagnostics: options.diagnostics)
            if lane.workerThreads == 0 {
                // Without a single worker its jobs could only wait; say so now instead.
                lane.shutdown()
                throw SagaLaneError(.thread, "lane '\(name)' could not start a worker thread: \(lane.lastThreadError.map { "\($0)" } ?? "unknown")")
            }
            if persisted {
                let callbacks = self.callbacks
                let rebuild: @Sendable (JobRecord) -> RecoveredJob? = { row in
                    guard var rebuilt = reconstruct?(row) else { return nil }
                    let onComplete = rebuilt.onComplete
                    rebuilt.onComplete = { completion in callbacks.async { onComplete(completion) } }
                    return rebuilt
                }
                let recovered = driver.waitFor { () async -> Result<Void, SagaLaneError> in
                    do throws(SagaLaneError) {
                        try await lane.recover(reconstruct: rebuild)
                        return .success(())
                    } catch {
                        return .failure(error)
                    }
                }
                if case .failure(let error) = recovered {
                    lane.shutdown()
                    throw error
                }
            }
            try lanes.add(lane)
            return lane
        }
    }

    /// The lane named `name`.
    /// - Throws: `.notFound`.
    public func lane(named name: String) throws(SagaLaneError) -> Lane {
        try lanes.lane(named: name)
    }

    /// Submits `job` to `lane`, returning once it is queued (durably, for a persisted lane).
    /// `onComplete` runs once, on the callback thread, unless the job was refused.
    @discardableResult
    public func submit(_ job: LaneJob, to lane: Lane,
                       onComplete: (@Sendable (LaneJobCompletion) -> Void)? = nil) throws(SagaLaneError) -> LaneSubmission {
        let callbacks = self.callbacks
        guard let onComplete else { return try lane.submitBlocking(job) }
        return try lane.submitBlocking(job) { completion in callbacks.async { onComplete(completion) } }
    }

    /// Submits `jobs` to `lane` in one call (for a persisted lane, one group commit: see
    /// `Lane.submit(batch:onQueued:)`) and returns once each is queued or refused, with its
    /// result, in order. A job's `onComplete` runs once, on the callback thread, unless it was
    /// refused.
    public func submit(batch jobs: [(job: LaneJob, onComplete: (@Sendable (LaneJobCompletion) -> Void)?)],
                       to lane: Lane) -> [Result<LaneSubmission, SagaLaneError>] {
        let callbacks = self.callbacks
        return lane.submitBlocking(batch: jobs.map { item in
            let onComplete = item.onComplete
            return (item.job, { completion in if let onComplete { callbacks.async { onComplete(completion) } } })
        })
    }

    /// Submits `job` to `lane` and returns at once: `onQueued` runs once, on the callback
    /// thread, when the job's queued row is durable (an in-memory lane: once it is queued) or
    /// with the error that refused it (then `onComplete` never runs); `onComplete` runs once
    /// after it, on the callback thread too.
    public func submit(_ job: LaneJob, to lane: Lane, onQueued: @escaping @Sendable (Result<LaneSubmission, SagaLaneError>) -> Void,
                       onComplete: (@Sendable (LaneJobCompletion) -> Void)? = nil) {
        let callbacks = self.callbacks
        // Both run on the callback thread; a job of an in-memory lane can end before its
        // queued callback was queued there, so its end waits for it.
        let order = ConditionLock<(queued: Bool, early: LaneJobCompletion?)>((false, nil))
        lane.submit(job, onQueued: { result in
            callbacks.async {
                onQueued(result)
                let early = order.withLock { state -> LaneJobCompletion? in
                    state.queued = true
                    defer { state.early = nil }
                    return state.early
                }
                if let early { onComplete?(early) }
            }
        }, onComplete: { completion in
            callbacks.async {
                let now = order.withLock { state -> Bool in
                    if !state.queued { state.early = completion }
                    return state.queued
                }
                if now { onComplete?(completion) }
            }
        })
    }

    /// Submits `job` to `lane` and blocks the calling thread until the job ended for good.
    /// - Returns: Its result text.
    /// - Throws: `.jobFailed` (its `underlying` a `LaneJobFailure` with the job's error text),
    ///   `.cancelled`, a submission error, or `.state` on a thread that must not wait for a
    ///   job: the loop's (a callback), a lane worker's (the job may need its slot), the log
    ///   writer's.
    public func submitAndWait(_ job: LaneJob, to lane: Lane) throws(SagaLaneError) -> String {
        try checkMayWaitForJobs()
        let done = Completion<LaneJobCompletion>()
        let submission = try lane.submitBlocking(job) { done.set($0) }
        if submission.duplicate {
            throw SagaLaneError(.exists, "job '\(submission.jobID)' of lane '\(lane.name)' holds the idempotency key: nothing was queued, and only its own submitter hears how it ends")
        }
        return try driver.wait(for: done).result()
    }

    /// Sets the function that runs commands sent to `lane:<lane>` (on the lane's workers).
    public func setCommandHandler(lane: String, _ handler: @escaping @Sendable (JSON, LaneJobContext) throws -> String) {
        laneHandlers.setCommandHandler(lane: lane, handler)
    }

    private func checkMayWaitForJobs() throws(SagaLaneError) {
        if loop.inEventLoop {
            throw SagaLaneError(.state, "waiting for a job here would block the event loop; submit with a done callback instead")
        }
        switch OSThread.currentRole {
        case .laneWorker?:
            throw SagaLaneError(.state, "a lane job cannot wait for another job (it would hold a worker the other may need)")
        case .logWriter?, .eventLoop?:
            throw SagaLaneError(.state, "this sagalane thread cannot wait for a job; submit with a done callback instead")
        default:
            return
        }
    }
}
