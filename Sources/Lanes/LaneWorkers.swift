import Glibc
import SagaLaneSupport

/// Where a parked worker sleeps: a condition of its own, so a waker wakes exactly one chosen
/// worker. Whoever wakes it sets `woken` (so spurious wake-ups are told apart) and has already
/// counted it as spinning. `woken` is guarded by the lane's lock.
final class Parker: @unchecked Sendable {
    let condition: ConditionLock<LaneState>.Condition
    var woken = false

    init(_ condition: ConditionLock<LaneState>.Condition) {
        self.condition = condition
    }
}

/// The lane's worker threads, as the lock guards them.
///
/// Workers park on a condition each and are woken one at a time, only when work appears and
/// no other worker is already awake looking for some (`spinning`): a busy lane hands jobs to
/// awake workers without a wake-up per job, and a worker that takes a job while more is
/// waiting wakes the next one itself, so threads that add work (submitters, the log's writer
/// thread confirming rows) rarely pay for a wake-up.
struct WorkerRoster {
    /// Workers alive, parked or busy.
    var count = 0
    /// Workers awake and looking for work (not parked, not running a body).
    var spinning = 0
    var idle: [Parker] = []
    var threads: [OSThread] = []
    /// Workers that left because the bound was lowered, to be joined by the next
    /// `setMaxConcurrent` or by `shutdown`. A thread is in one of the two lists at a time, and
    /// whoever takes it out under the lock joins it, so each is joined exactly once.
    var exited: [OSThread] = []
    /// Set while the lane has fewer workers than its bound because a thread was refused.
    var threadError: SagaLaneError?

    /// Wakes one parked worker, unless one is already awake looking for work (it will find
    /// what was just added: it looks under the lock before parking).
    mutating func notify() {
        guard spinning == 0, let parker = idle.popLast() else { return }
        parker.woken = true
        spinning += 1
        parker.condition.signal()
    }

    mutating func wakeAll() {
        for parker in idle {
            parker.woken = true
            parker.condition.signal()
        }
        spinning += idle.count
        idle.removeAll(keepingCapacity: true)
    }

    mutating func park(_ parker: Parker) {
        spinning -= 1
        parker.woken = false
        idle.append(parker)
    }

    /// A worker on its way out asks to be joined, unless shutdown already took the thread list
    /// (and so joins it): an exited thread keeps its stack until someone does.
    mutating func retireCurrentThread() {
        if let index = threads.firstIndex(where: \.isCurrent) {
            exited.append(threads.remove(at: index))
        }
    }

    mutating func takeExited() -> [OSThread] {
        defer { exited.removeAll() }
        return exited
    }

    mutating func takeAllThreads() -> [OSThread] {
        defer {
            threads.removeAll()
            exited.removeAll()
        }
        return threads + exited
    }
}

extension LaneState {
    /// Whether a worker with nothing in hand should end: when the lane stops, once no job can
    /// need it; otherwise when there are more workers than slots and than jobs holding slots
    /// (each of which may still need a worker).
    var workerMustExit: Bool {
        if stopping { return starting == 0 && ready.isEmpty }
        return workers.count > maxConcurrent && workers.count > running
    }

    /// Takes the next queued job into a free slot.
    mutating func claim(persisted: Bool) -> LaneCore.Entry? {
        guard !stopping, running < maxConcurrent, let entry = queue.popFirst() else { return nil }
        running += 1
        entry.context = LaneJobContext(jobID: entry.id, attempt: entry.attempt)
        if persisted {
            entry.state = .starting
            starting += 1
        }
        return entry
    }
}

extension LaneCore {
    /// What a worker does next, decided under the lock.
    private enum WorkerStep {
        case run(Entry, LaneJobContext)
        case writeRunningRow(Entry)
        /// Nothing to take, but a follow-up to perform first: look again after it.
        case lookAgain
        case park
        case exit
    }

    /// How a body ended, worked out off the lock.
    private enum RunResult {
        case finished(String)
        case threw(description: String, isCancellation: Bool)
    }

    /// Starts workers up to the bound. When the system refuses a thread, the lane runs with the
    /// workers it has (says so once) and tries again whenever a job is queued.
    func spawnWorkers(_ s: inout LaneState) {
        while s.workers.count < s.maxConcurrent && !s.stopping {
            do {
                // The new worker's first step takes the lock, held here until the counts are right.
                let thread = try OSThread(name: "sagalane-lane-\(name)", role: .laneWorker) { [self] in
                    workerLoop(Parker(lock.makeCondition()))
                }
                s.workers.count += 1
                s.workers.spinning += 1
                s.workers.threads.append(thread)
            } catch {
                if s.workers.threadError == nil {
                    diagnostics.warning("lane '\(name)': \(error); running with \(s.workers.count) of \(s.maxConcurrent) workers, trying again as jobs are queued")
                }
                s.workers.threadError = error
                return
            }
        }
        s.workers.threadError = nil
    }

    /// One worker: takes a job, runs it off the lock, settles it and takes the next in the same
    /// hold of the lock, so a busy worker takes the lock once per job.
    private func workerLoop(_ parker: Parker) {
        let persisted = self.persisted
        var followUp = Deferred.none
        var finished: (Entry, RunResult, Int64)?
        var parked = false
        while true {
            let step: WorkerStep
            if parked {
                step = lock.withLock(waitingOn: parker.condition, until: { _ in parker.woken }) { s in
                    nextStep(&s, parker, persisted: persisted, holdingFollowUp: false)
                }
            } else {
                step = lock.withLock { s in
                    if let (entry, result, nanos) = finished {
                        s.workers.spinning += 1
                        followUp = settle(&s, entry, result, runTime: nanos)
                    }
                    if case .none = followUp {
                        return nextStep(&s, parker, persisted: persisted, holdingFollowUp: false)
                    }
                    return nextStep(&s, parker, persisted: persisted, holdingFollowUp: true)
                }
            }
            finished = nil
            parked = false
            perform(followUp)
            followUp = .none
            switch step {
            case .run(let entry, let context):
                finished = execute(entry, context)
            case .writeRunningRow(let entry):
                // It runs once the log confirms the row, on whichever worker is free then.
                writeRunningRow(entry)
            case .lookAgain:
                continue
            case .park:
                parked = true
            case .exit:
                lock.withLock { $0.workers.retireCurrentThread() }
                return
            }
        }
    }

    private func nextStep(_ s: inout LaneState, _ parker: Parker, persisted: Bool, holdingFollowUp: Bool) -> WorkerStep {
        if let entry = s.ready.popFirst() { return startRun(&s, entry) }
        if s.workerMustExit {
            s.workers.spinning -= 1
            s.workers.count -= 1
            if s.stopping { s.workers.wakeAll() } else if s.hasWork { s.workers.notify() }
            return .exit
        }
        if let entry = s.claim(persisted: persisted) {
            return entry.state == .starting ? .writeRunningRow(entry) : startRun(&s, entry)
        }
        if holdingFollowUp { return .lookAgain }
        s.workers.park(parker)
        return .park
    }

    private func startRun(_ s: inout LaneState, _ entry: Entry) -> WorkerStep {
        entry.state = .running
        entry.runs += 1
        s.workers.spinning -= 1
        if s.hasWork { s.workers.notify() }
        // A context is set for every job holding a slot; a missing one would be a lane bug,
        // and the job then runs with a fresh one rather than trapping.
        return .run(entry, entry.context ?? LaneJobContext(jobID: entry.id, attempt: entry.attempt))
    }

    /// The running row must be durable before the body runs: after a crash, recovery then
    /// knows the job may have had effects, and fails it instead of running it again.
    func writeRunningRow(_ entry: Entry) {
        journal.writeRunning(id: entry.id, attempt: entry.attempt) { [self] result in
            let ending = lock.withLock { s -> Ending? in
                s.starting -= 1
                switch result {
                case .success:
                    entry.state = .ready
                    s.ready.append(entry)
                    s.workers.notify()
                    return nil
                case .failure(let error):
                    s.running -= 1
                    if s.stopping { s.workers.wakeAll() } else if s.hasWork { s.workers.notify() }
                    return s.end(entry, .failed(error: "not run: its running row could not be written: \(error)"))
                }
            }
            if let ending { deliver(ending) }
        }
    }

    private func execute(_ entry: Entry, _ context: LaneJobContext) -> (Entry, RunResult, Int64) {
        let start = monotonicNanoseconds()
        let result: RunResult
        do {
            result = .finished(try entry.body(context))
        } catch {
            result = .threw(description: "\(error)", isCancellation: error is LaneJobCancelled)
        }
        return (entry, result, monotonicNanoseconds() &- start)
    }

    /// The body returned: free the slot, then end the job or set it aside for a retry.
    private func settle(_ s: inout LaneState, _ entry: Entry, _ result: RunResult, runTime: Int64) -> Deferred {
        s.running -= 1
        s.runTimes.record(nanoseconds: runTime)
        let cancelled = entry.context?.isCancelled ?? false
        entry.context = nil
        let outcome: LaneJobOutcome
        switch result {
        case .finished(let text):
            outcome = .finished(result: text)
        case .threw(let description, let isCancellation):
            if isCancellation || (cancelled && s.stopping) {
                outcome = .cancelled
            } else if let retry = entry.retry, entry.attempt < retry.maxAttempts, !cancelled, !s.stopping {
                return scheduleRetry(entry, after: retry.backoff(after: entry.attempt), error: description)
            } else {
                outcome = .failed(error: description)
            }
        }
        return .end(s.end(entry, outcome))
    }
}

/// Monotonic time in nanoseconds, for run times.
private func monotonicNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec)
}
