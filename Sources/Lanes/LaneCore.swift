import SagaLaneEventLoop
import SagaLaneLog
import SagaLaneSupport
import Synchronization

/// The lane's state and its worker threads (see `Lane` for what each call promises). Workers
/// hold it strongly, so it outlives every worker; the public `Lane` owns it and shuts it down
/// when dropped.
///
/// A job moves through `Entry.State` under the lock; every transition out of a state checks
/// that the job is still in it, so a timer or a log write that completes after a shutdown (or
/// a cancel) finds the job ended and leaves it alone. No row is submitted to the log under the
/// lock: a write's completion may run at once on the submitting thread (a closed log), and it
/// takes the lock. One write at a time is in flight per job; a cancel that arrives meanwhile
/// sets `cancelRequested`, and the write's completion ends the job. So a job's rows reach the
/// log in the order its states change.
final class LaneCore: Sendable {
    let name: String
    let journal: LaneJournal
    let loop: EventLoop?
    let diagnostics: Diagnostics
    let lock: ConditionLock<LaneState>
    /// Ids made up for jobs submitted without one: random per lane instance, so they do not
    /// collide with rows an earlier run left in the log, then a counter.
    private let idPrefix: [UInt8]
    private let idCounter = Atomic<UInt64>(0)

    var persisted: Bool { journal.log != nil }

    init(name: String, maxConcurrent: Int, store: SagaLog?, loop: EventLoop?, diagnostics: Diagnostics) {
        self.name = name
        self.diagnostics = diagnostics
        journal = LaneJournal(log: store, lane: name)
        self.loop = loop
        idPrefix = Array("\(name)-\(String(UInt64.random(in: 0...UInt64.max), radix: 16))-".utf8)
        lock = ConditionLock(LaneState(maxConcurrent: maxConcurrent))
        lock.withLock { spawnWorkers(&$0) }
    }

    /// `idPrefix` then the next number in decimal, written straight into the string's storage.
    func madeUpID() -> String {
        let number = idCounter.wrappingAdd(1, ordering: .relaxed).newValue
        return String(unsafeUninitializedCapacity: idPrefix.count + 20) { buffer in
            var end = idPrefix.count
            _ = buffer.initialize(from: idPrefix)
            var digits = number
            let start = end
            repeat {
                buffer[end] = UInt8(ascii: "0") + UInt8(digits % 10)
                digits /= 10
                end += 1
            } while digits > 0
            buffer[start..<end].reverse()
            return end
        }
    }

    // MARK: Submitting

    /// Admits `job`. For a persisted lane `onQueued` runs once the queued row is durable; for
    /// an in-memory lane before this returns.
    /// - Parameter waiter: A waiter that may give up on the job; if it already did, the job is
    ///   refused with `.cancelled`.
    /// - Returns: The job, if the lane took it (its queued row may still fail).
    @discardableResult
    func submit(_ job: LaneJob, waiter: WaiterLink? = nil,
                onQueued: @escaping @Sendable (Result<LaneSubmission, SagaLaneError>) -> Void,
                onComplete: @escaping @Sendable (LaneJobCompletion) -> Void) -> Entry? {
        let (entry, row) = admit(job, waiter: waiter, onQueued: onQueued, onComplete: onComplete)
        if let row { journal.writeQueued(row) }
        return entry
    }

    /// Admits each job as `submit` does; a persisted lane writes the queued rows of those it
    /// took in one group commit.
    func submit(batch jobs: [(job: LaneJob, onComplete: @Sendable (LaneJobCompletion) -> Void)],
                onQueued: @escaping @Sendable (Int, Result<LaneSubmission, SagaLaneError>) -> Void) {
        let rows = jobs.enumerated().compactMap { index, item in
            admit(item.job, waiter: nil, onQueued: { onQueued(index, $0) }, onComplete: item.onComplete).row
        }
        journal.writeQueued(together: rows)
    }

    /// Takes `job` into the lane's table: for a persisted lane, returns its queued row for the
    /// caller to write; an in-memory lane queues it at once.
    private func admit(_ job: LaneJob, waiter: WaiterLink?,
                       onQueued: @escaping @Sendable (Result<LaneSubmission, SagaLaneError>) -> Void,
                       onComplete: @escaping @Sendable (LaneJobCompletion) -> Void) -> (entry: Entry?, row: LaneJournal.QueuedRow?) {
        if let key = job.idempotencyKey {
            // Refused here rather than by the log's unique index, for every caller alike.
            var refusal: SagaLaneError?
            if key.isEmpty {
                refusal = SagaLaneError(.invalidArgument, "an idempotency key must not be empty")
            } else {
                do throws(SagaLaneError) { try SagaLog.checkValueSize(key.utf8.count, of: "the idempotency key") } catch { refusal = error }
            }
            if let refusal {
                onQueued(.failure(refusal))
                return (nil, nil)
            }
        }
        let id = job.id.isEmpty ? madeUpID() : job.id
        let entry = Entry(job: job, key: JobKey(id), onComplete: onComplete, attempt: 1, state: .persisting)
        let persisted = self.persisted
        let admitted = lock.withLock { s -> Result<LaneSubmission?, SagaLaneError> in
            if s.stopping { return .failure(SagaLaneError(.closed, "lane '\(name)' is shut down")) }
            switch s.recovery {
            case .open:
                s.recovery = .closed
            case .running:
                if s.reservedIDs.contains(entry.key) {
                    return .failure(SagaLaneError(.exists, "job '\(id)' is being recovered in lane '\(name)'"))
                }
            case .closed:
                break
            }
            if let key = job.idempotencyKey, let holder = s.keys[ExactName(key)] {
                return .success(LaneSubmission(position: 0, estimatedWait: .zero, jobID: holder.id, duplicate: true))
            }
            if let existing = s.jobs.updateValue(entry, forKey: entry.key) {
                s.jobs[entry.key] = existing
                return .failure(SagaLaneError(.exists, "job '\(id)' is already in lane '\(name)'"))
            }
            if let waiter, !waiter.admit(entry) {
                s.jobs.removeValue(forKey: entry.key)
                return .failure(SagaLaneError(.cancelled, "job '\(id)' was given up before it was queued"))
            }
            if let key = job.idempotencyKey { s.keys[ExactName(key)] = entry.key }
            return .success(persisted ? nil : enqueue(&s, entry))
        }
        switch admitted {
        case .failure(let error):
            onQueued(.failure(error))
            return (nil, nil)
        case .success(let submission?) where submission.duplicate:
            onQueued(.success(submission))
            return (nil, nil)
        case .success(let submission?):
            onQueued(.success(submission))
            return (entry, nil)
        case .success(nil):
            return (entry, LaneJournal.QueuedRow(job: job, id: id) { [self] result in queuedRowWritten(entry, result, onQueued: onQueued) })
        }
    }

    /// The job's queued row is durable (or was refused): queue it, unless it was cancelled or
    /// the lane shut down meanwhile.
    private func queuedRowWritten(_ entry: Entry, _ result: Result<Int, SagaLaneError>,
                                  onQueued: @Sendable (Result<LaneSubmission, SagaLaneError>) -> Void) {
        switch result {
        case .failure(let error):
            let waiters = lock.withLock { s -> [CancelWaiter] in
                s.jobs.removeValue(forKey: entry.key)
                s.releaseKey(of: entry)
                entry.state = .done
                defer { entry.cancelWaiters = [] }
                return entry.cancelWaiters
            }
            if error.code == .exists, let taken = error.underlying as? IdempotencyKeyTaken, let holder = taken.jobID {
                // The key's row is in the log (a job of an earlier run): nothing is queued.
                onQueued(.success(LaneSubmission(position: 0, estimatedWait: .zero, jobID: holder, duplicate: true)))
            } else {
                onQueued(.failure(SagaLaneError(error.code, "job '\(entry.id)' was refused: its queued row could not be written: \(error.message)",
                                                underlying: error)))
            }
            // A refused job never runs, which is all a cancel promises.
            for waiter in waiters { waiter(.success(())) }
        case .success:
            let (submission, ending) = lock.withLock { s -> (LaneSubmission, Ending?) in
                if s.stopping || entry.cancelRequested {
                    return (LaneSubmission(position: 0, estimatedWait: .zero, jobID: entry.id), s.end(entry, .cancelled))
                }
                return (enqueue(&s, entry), nil)
            }
            onQueued(.success(submission))
            if let ending { deliver(ending) }
        }
    }

    /// Queues `entry` behind everything of its priority and wakes a worker if one is needed,
    /// first starting the workers a refused thread left missing.
    func enqueue(_ s: inout LaneState, _ entry: Entry) -> LaneSubmission {
        if s.workers.count < s.maxConcurrent { spawnWorkers(&s) }
        let (ticket, position) = s.queue.append(entry, priority: entry.priority)
        entry.ticket = ticket
        entry.state = .queued
        if s.running < s.maxConcurrent { s.workers.notify() }
        return LaneSubmission(position: position,
                              estimatedWait: s.runTimes.estimatedWait(ahead: position, running: s.running, slots: s.maxConcurrent),
                              jobID: entry.id)
    }

    // MARK: Cancelling

    /// Cancels a job that has not started; `completion` runs once it is sure never to run
    /// (its cancelled row durable, for a persisted lane), or with the reason it was not
    /// cancelled.
    func cancel(jobID: String, completion: @escaping CancelWaiter) {
        let key = JobKey(jobID)
        let decided = lock.withLock { s -> Result<Deferred, SagaLaneError> in
            guard let entry = s.jobs[key] else { return .failure(SagaLaneError(.notFound, "lane '\(name)' has no job '\(jobID)'")) }
            switch entry.state {
            case .queued:
                return .success(cancelQueued(&s, entry, waiter: completion))
            case .persisting:
                entry.cancelRequested = true
                entry.cancelWaiters.append(completion)
                return .success(.none)
            case .cancelling:
                entry.cancelWaiters.append(completion)
                return .success(.none)
            case .starting, .ready, .running, .retryWriting, .retryWaiting:
                return .failure(SagaLaneError(.notQueued, "job '\(jobID)' is not queued (it is running or between retries)"))
            case .done:
                return .failure(SagaLaneError(.notFound, "lane '\(name)' has no job '\(jobID)'"))
            }
        }
        switch decided {
        case .failure(let error): completion(.failure(error))
        case .success(let deferred): perform(deferred)
        }
    }

    /// Takes a queued job out of the queue. A persisted lane writes its cancelled row before
    /// the job ends; an in-memory lane ends it now.
    private func cancelQueued(_ s: inout LaneState, _ entry: Entry, waiter: CancelWaiter?) -> Deferred {
        if let ticket = entry.ticket { _ = s.queue.remove(ticket) }
        if let waiter { entry.cancelWaiters.append(waiter) }
        guard persisted else { return .end(s.end(entry, .cancelled)) }
        entry.state = .cancelling
        return .writeCancelledRow(entry)
    }

    private func writeCancelledRow(_ entry: Entry) {
        journal.writeCancelled(id: entry.id) { [self] result in
            let (ending, failed) = lock.withLock { s -> (Ending?, (SagaLaneError, [CancelWaiter])?) in
                guard entry.state == .cancelling else { return (nil, nil) }
                switch result {
                case .success:
                    return (s.end(entry, .cancelled, rowWritten: true), nil)
                case .failure(let error):
                    let waiters = entry.cancelWaiters
                    entry.cancelWaiters = []
                    if s.stopping {
                        // Shutdown passed it by; it ends here, its row tried once more.
                        return (s.end(entry, .cancelled), (error, waiters))
                    }
                    // Not cancelled after all: it goes back where it was.
                    entry.state = .queued
                    if let ticket = entry.ticket { s.queue.reinstate(entry, ticket) }
                    if s.running < s.maxConcurrent { s.workers.notify() }
                    return (nil, (error, waiters))
                }
            }
            if let (error, waiters) = failed {
                let refusal = SagaLaneError(error.code, "job '\(entry.id)' was not cancelled: its cancelled row could not be written: \(error.message)",
                                            underlying: error)
                for waiter in waiters { waiter(.failure(refusal)) }
            }
            if let ending { deliver(ending) }
        }
    }

    /// Gives up on the job `jobID`.
    func interrupt(jobID: String) throws(SagaLaneError) {
        let key = JobKey(jobID)
        let deferred = lock.withLock { s -> Deferred? in
            guard let entry = s.jobs[key] else { return nil }
            return interrupt(&s, entry)
        }
        guard let deferred else { throw SagaLaneError(.notFound, "lane '\(name)' has no job '\(jobID)'") }
        perform(deferred)
    }

    /// Gives up on `entry`, if the lane still holds that very job (another job may have taken
    /// its id since).
    func interrupt(_ entry: Entry) {
        let deferred = lock.withLock { s -> Deferred in
            guard s.jobs[entry.key] === entry else { return .none }
            return interrupt(&s, entry)
        }
        perform(deferred)
    }

    private func interrupt(_ s: inout LaneState, _ entry: Entry) -> Deferred {
        switch entry.state {
        case .starting, .ready, .running:
            entry.context?.cancel()
            return .none
        case .queued:
            return cancelQueued(&s, entry, waiter: nil)
        case .persisting, .retryWriting:
            entry.cancelRequested = true
            return .none
        case .retryWaiting:
            // Its timer finds it ended and does nothing.
            return .end(s.end(entry, .cancelled))
        case .cancelling, .done:
            return .none
        }
    }

    // MARK: Ending

    /// Writes the terminal row (persisted lanes, unless written already), then reports.
    func deliver(_ ending: Ending) {
        let entry = ending.entry
        let completion = LaneJobCompletion(jobID: entry.id, attempts: entry.runs, outcome: ending.outcome)
        guard !ending.rowWritten, persisted else {
            entry.onComplete(completion)
            for waiter in entry.cancelWaiters { waiter(.success(())) }
            return
        }
        journal.writeEnd(completion) { result in
            switch result {
            case .success:
                entry.onComplete(completion)
                for waiter in entry.cancelWaiters { waiter(.success(())) }
            case .failure(let error):
                var failed = completion
                failed.outcome = .failed(error: "the job ended (\(completion.outcome)) but its row could not be written: \(error)")
                entry.onComplete(failed)
                let refusal = SagaLaneError(error.code, "job '\(completion.jobID)' will not run here, but its cancelled row could not be written: \(error.message)",
                                            underlying: error)
                for waiter in entry.cancelWaiters { waiter(.failure(refusal)) }
            }
        }
    }

    func perform(_ deferred: Deferred) {
        switch deferred {
        case .none: break
        case .end(let ending): deliver(ending)
        case .writeRunningRow(let entry): writeRunningRow(entry)
        case .writeRetryRow(let entry, let delay, let error): writeRetryRow(entry, after: delay, error: error)
        case .arm(let entry, let delay): arm(entry, after: delay)
        case .writeCancelledRow(let entry): writeCancelledRow(entry)
        }
    }

    // MARK: Retries

    /// The job failed and may run again: set it aside for its back-off. A persisted lane first
    /// puts its row back to queued, with the attempt count, so a restart during the back-off
    /// runs it again (it is idempotent) rather than losing it.
    func scheduleRetry(_ entry: Entry, after delay: Duration, error: String) -> Deferred {
        guard persisted else {
            entry.state = .retryWaiting
            return .arm(entry, delay)
        }
        entry.state = .retryWriting
        return .writeRetryRow(entry, delay, error: error)
    }

    private func writeRetryRow(_ entry: Entry, after delay: Duration, error: String) {
        journal.writeRetry(id: entry.id, attempts: entry.attempt, error: error) { [self] _ in
            // A failed write leaves the row `running`: a restart then fails the job instead of
            // retrying it, which loses nothing. The retry goes ahead here either way.
            let next = lock.withLock { s -> Deferred in
                guard entry.state == .retryWriting else { return .none }
                if entry.cancelRequested || s.stopping { return .end(s.end(entry, .cancelled)) }
                entry.state = .retryWaiting
                return .arm(entry, delay)
            }
            perform(next)
        }
    }

    private func arm(_ entry: Entry, after delay: Duration) {
        guard let loop else {
            requeue(entry)
            return
        }
        loop.execute { [self] in
            // Work given to a loop that has shut down runs on the calling thread, where no
            // timer can be armed: retry at once, as a lane without a loop does.
            guard loop.inEventLoop, !loop.isShutDown else {
                requeue(entry)
                return
            }
            loop.scheduleTimer(after: delay) { [self] in requeue(entry) }
        }
    }

    /// The back-off is over: queue the next attempt, unless the job ended meanwhile.
    private func requeue(_ entry: Entry) {
        let ending = lock.withLock { s -> Ending? in
            guard entry.state == .retryWaiting else { return nil }
            // Shutdown ends every waiting retry, so this is not reached; it never strands a job.
            if s.stopping { return s.end(entry, .cancelled) }
            entry.attempt += 1
            _ = enqueue(&s, entry)
            return nil
        }
        if let ending { deliver(ending) }
    }

    // MARK: Settings, stats, shutdown

    func setMaxConcurrent(_ n: Int) {
        let exited = lock.withLock { s -> [OSThread] in
            s.maxConcurrent = n
            spawnWorkers(&s)
            // Parked workers look again: there may be room for queued jobs, or too many workers.
            s.workers.wakeAll()
            return s.workers.takeExited()
        }
        // Their last act under the lock was to list themselves, so they are (nearly) gone.
        for thread in exited { thread.join() }
    }

    var workerThreads: Int { lock.withLock { $0.workers.count } }

    var lastThreadError: SagaLaneError? { lock.withLock { $0.workers.threadError } }

    var stats: LaneStats {
        lock.withLock { s in
            LaneStats(queued: s.queue.count, running: s.running, maxConcurrent: s.maxConcurrent,
                      completed: s.completed, failed: s.failed, cancelled: s.cancelled, meanRunTime: s.runTimes.mean)
        }
    }

    func shutdown() {
        guard let (endings, threads) = lock.withLock({ s -> ([Ending], [OSThread])? in
            if s.stopping { return nil }
            s.stopping = true
            var dropped: [Entry] = []
            for entry in s.jobs.values {
                switch entry.state {
                case .queued, .retryWaiting:
                    dropped.append(entry)
                case .starting, .ready, .running:
                    entry.context?.cancel()
                case .retryWriting:
                    entry.cancelRequested = true
                case .persisting, .cancelling, .done:
                    // Their row's completion sees the lane stopping and ends them.
                    break
                }
            }
            s.queue.removeAll()
            dropped.sort { ($0.ticket?.sequence ?? 0) < ($1.ticket?.sequence ?? 0) }
            let endings = dropped.map { s.end($0, .cancelled) }
            s.workers.wakeAll()
            return (endings, s.workers.takeAllThreads())
        }) else { return }
        for ending in endings { deliver(ending) }
        for thread in threads where !thread.isCurrent { thread.join() }
    }
}
