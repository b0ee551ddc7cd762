import SagaLaneLog
import SagaLaneSupport

/// The rows a persisted lane writes for its jobs: `queued` before a job can run, `running`
/// before its body runs, `queued` again (with the attempt count) before a retry's back-off,
/// and the terminal row (`finished`, `failed`, `cancelled`) before its outcome is reported.
/// Each completion runs on the log's writer thread once the row is durable, or with the error
/// that stopped it. An in-memory lane (no log) writes nothing: each completes at once.
struct LaneJournal: Sendable {
    let log: SagaLog?
    let lane: String

    typealias Written = @Sendable (Result<Int, SagaLaneError>) -> Void

    /// An admitted job's queued row, and what follows once it is durable.
    struct QueuedRow {
        let job: LaneJob
        let id: String
        let written: Written
    }

    func writeQueued(_ row: QueuedRow) {
        write(queuedRecord(row), row.written)
    }

    /// Writes the queued rows of admitted jobs, in one group commit together.
    func writeQueued(together rows: [QueuedRow]) {
        guard let log else { return rows.forEach(writeQueued) }
        log.submit(together: rows.map { (queuedRecord($0), $0.written) })
    }

    private func queuedRecord(_ row: QueuedRow) -> LogRecord {
        .enqueueJob(id: row.id, lane: lane, caller: row.job.caller, priority: row.job.priority, metadata: row.job.metadata,
                    idempotencyKey: row.job.idempotencyKey)
    }

    func writeRunning(id: String, attempt: Int, then done: @escaping Written) {
        write(.updateJobState(id: id, state: .running, attempts: attempt, error: nil), done)
    }

    func writeRetry(id: String, attempts: Int, error: String, then done: @escaping Written) {
        write(.updateJobState(id: id, state: .queued, attempts: attempts, error: error), done)
    }

    func writeCancelled(id: String, then done: @escaping Written) {
        write(.updateJobState(id: id, state: .cancelled, attempts: nil, error: nil), done)
    }

    /// The terminal row of a job that ended as `completion` says.
    func writeEnd(_ completion: LaneJobCompletion, then done: @escaping Written) {
        let id = completion.jobID
        switch completion.outcome {
        case .finished: write(.updateJobState(id: id, state: .finished, attempts: completion.attempts, error: nil), done)
        case .failed(let error): write(.updateJobState(id: id, state: .failed, attempts: completion.attempts, error: error), done)
        case .cancelled: writeCancelled(id: id, then: done)
        }
    }

    private func write(_ record: LogRecord, _ done: @escaping Written) {
        guard let log else { return done(.success(0)) }
        log.submit(record, completion: done)
    }
}

// MARK: Recovery

extension LaneCore {
    /// See `Lane.recover`.
    func recover(reconstruct: (JobRecord) -> RecoveredJob?) async throws(SagaLaneError) -> (requeued: Int, failed: Int) {
        guard let log = journal.log else { return (0, 0) }
        let rows = try beginRecovery(log)
        var failed = 0, requeued = 0
        do throws(SagaLaneError) {
            for row in rows.running {
                try await log.updateJobState(id: row.id, state: .failed, error: "lost on restart")
                failed += 1
            }
            for row in rows.queued {
                // A count the lane could not have written: a hand-edited or damaged row.
                guard row.attempts >= 0, row.attempts < Int(Int32.max) else {
                    throw SagaLaneError(.corrupt, "lane job '\(row.id)' has an impossible attempt count \(row.attempts): the log was edited or is damaged")
                }
                let recovered = reconstruct(row)
                guard var rebuilt = recovered, rebuilt.unusable == nil else {
                    try await log.updateJobState(id: row.id, state: .failed, error: "lost on restart: cannot reconstruct")
                    if let reason = recovered?.unusable {
                        diagnostics.warning("lane '\(name)': job '\(row.id)' could not be rebuilt: \(reason)")
                        recovered?.onComplete(LaneJobCompletion(jobID: row.id, attempts: row.attempts, outcome: .failed(error: reason)))
                    }
                    failed += 1
                    continue
                }
                rebuilt.job.id = row.id
                if let refusal = requeueRecovered(rebuilt, attempt: row.attempts + 1) {
                    // Never left queued: no process would ever run it.
                    let reason = "lost on restart: could not be queued again: \(refusal.message)"
                    try await log.updateJobState(id: row.id, state: .failed, error: reason)
                    rebuilt.onComplete(LaneJobCompletion(jobID: row.id, attempts: row.attempts, outcome: .failed(error: reason)))
                    failed += 1
                } else {
                    requeued += 1
                }
            }
        } catch {
            endRecovery()
            throw SagaLaneError(error.code, "recovery of lane '\(name)' failed: \(error.message)", underlying: error)
        }
        endRecovery()
        if failed > 0 { diagnostics.warning("lane '\(name)': \(failed) job(s) lost on restart marked failed") }
        return (requeued, failed)
    }

    /// Opens the recovery, if this lane has not taken a job yet, and reads the rows an earlier
    /// process left. Both under the lock, so no row of this lane's own can be among them; the
    /// queued rows' ids are reserved until recovery ends (a submit with one is refused).
    private func beginRecovery(_ log: SagaLog) throws(SagaLaneError) -> (running: [JobRecord], queued: [JobRecord]) {
        try lock.withLock { s -> Result<([JobRecord], [JobRecord]), SagaLaneError> in
            switch s.recovery {
            case .open:
                break
            case .running:
                return .failure(SagaLaneError(.state, "lane '\(name)' is already recovering"))
            case .closed:
                return .failure(SagaLaneError(.state, "lane '\(name)' has already taken jobs or recovered: recover reconciles an earlier process's rows, so it runs once, before the first submit"))
            }
            if s.stopping { return .failure(SagaLaneError(.closed, "lane '\(name)' is shut down")) }
            do throws(SagaLaneError) {
                let running = try log.listRunningJobs(lane: name)
                let queued = try log.listQueuedJobs(lane: name)
                s.recovery = .running
                s.reservedIDs = Set(queued.map { JobKey($0.id) })
                return .success((running, queued))
            } catch {
                return .failure(SagaLaneError(error.code, "recovery of lane '\(name)' cannot read its rows: \(error.message)", underlying: error))
            }
        }.get()
    }

    private func endRecovery() {
        lock.withLock { s in
            s.recovery = .closed
            s.reservedIDs = []
        }
    }

    /// Queues a rebuilt job under its existing row.
    /// - Returns: Why it could not be, or `nil` once it is queued (or ended cancelled by a
    ///   shutdown, its cancelled row written).
    private func requeueRecovered(_ rebuilt: RecoveredJob, attempt: Int) -> SagaLaneError? {
        let key = JobKey(rebuilt.job.id)
        let entry = Entry(job: rebuilt.job, key: key, onComplete: rebuilt.onComplete, attempt: attempt, state: .persisting)
        let (refusal, ending) = lock.withLock { s -> (SagaLaneError?, Ending?) in
            s.reservedIDs.remove(key)
            // The reservation keeps submits away from the id; this guards the lane's books.
            guard s.jobs[key] == nil else {
                return (SagaLaneError(.exists, "lane '\(name)' already holds a job '\(key.id)'"), nil)
            }
            if s.stopping { return (nil, s.end(entry, .cancelled)) }
            s.jobs[key] = entry
            _ = enqueue(&s, entry)
            return (nil, nil)
        }
        if let ending { deliver(ending) }
        return refusal
    }
}
