import Glibc
import Synchronization

/// A named priority job queue with bounded, adjustable concurrency, optionally persisted.
///
/// Each concurrency slot is a worker OS thread; a job runs only while fewer than
/// `maxConcurrent` jobs are running. Higher priority runs first, FIFO within a priority.
///
/// **Persistence** (when the lane has a log): the job's `queued` row is durable before the
/// job can start, and a job whose row cannot be written is refused and never runs. Its
/// `running` row is durable before its body runs, so a crash can never lead to a silent second
/// run (recovery marks such jobs failed). The terminal row is written after the run; the
/// outcome is reported once it is durable, and if it cannot be written the outcome says so as
/// a failure (the log would otherwise disagree with what the caller was told).
public final class Lane: Sendable {
    private let core: LaneCore

    /// The lane's name, unique in its pool.
    public var name: String { core.name }
    /// The log rows go to; `nil` for an in-memory lane.
    public var store: SagaLog? { core.store }
    /// The loop whose timers pace retries; retries without a loop happen at once.
    public var loop: EventLoop? { core.loop }

    /// - Parameters:
    ///   - maxConcurrent: Jobs that may run at once (at least 1).
    ///   - store: Persist every job's rows in this log.
    ///   - loop: Paces retries with its timers.
    public init(name: String, maxConcurrent: Int, store: SagaLog? = nil, loop: EventLoop? = nil) {
        core = LaneCore(name: name, maxConcurrent: maxConcurrent, store: store, loop: loop)
    }

    /// Dropping the last reference shuts the lane down, as `shutdown()` does.
    deinit { core.shutdown() }

    /// Submits `job`. For a persisted lane, `onQueued` runs once the `queued` row is durable
    /// (or with the error that refused the job); for an in-memory lane, before this returns.
    /// `onComplete` runs once, with the outcome, unless the job was refused.
    public func submit(
        _ job: LaneJob,
        onQueued: @escaping @Sendable (Result<LaneSubmission, LaneError>) -> Void,
        onComplete: @escaping @Sendable (LaneJobOutcome) -> Void
    ) {
        core.submit(job, onQueued: onQueued, onComplete: onComplete)
    }

    /// Submits `job`, returning once it is queued (durably, for a persisted lane).
    @discardableResult
    public func submit(_ job: LaneJob, onComplete: @escaping @Sendable (LaneJobOutcome) -> Void = { _ in }) async throws(LaneError) -> LaneSubmission {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<LaneSubmission, LaneError>, Never>) in
            core.submit(job, onQueued: { continuation.resume(returning: $0) }, onComplete: onComplete)
        }
        return try result.get()
    }

    /// Submits `job` and blocks the calling thread until it is queued. For hosts calling from
    /// threads of their own (not the event loop's: for a persisted lane it waits for the log).
    @discardableResult
    public func submitBlocking(_ job: LaneJob, onComplete: @escaping @Sendable (LaneJobOutcome) -> Void = { _ in }) throws(LaneError) -> LaneSubmission {
        let waiter = BlockingResult<Result<LaneSubmission, LaneError>>()
        core.submit(job, onQueued: { waiter.set($0) }, onComplete: onComplete)
        return try waiter.wait().get()
    }

    /// Submits `job` and waits for its outcome.
    /// - Returns: The job's result text.
    /// - Throws: `jobFailed`, `cancelled`, or a submission error. Cancelling the waiting task
    ///   cancels the job if it is still queued, and raises its cancellation flag if it runs.
    public func submitAndWait(_ job: LaneJob) async throws(LaneError) -> String {
        try await core.submitAndWait(job)
    }

    /// Cancels a queued job: it never runs and ends `cancelled`.
    /// - Throws: `notQueued` for a job that is running (or between retries, or being
    ///   persisted), `notFound` for an id the lane does not know.
    public func cancel(jobID: String) throws(LaneError) {
        try core.cancel(jobID: jobID)
    }

    /// Changes how many jobs may run at once. Raising it starts queued jobs at once; lowering
    /// it lets running jobs finish and starts no new one until the count is under the bound.
    public func setMaxConcurrent(_ n: Int) {
        core.setMaxConcurrent(n)
    }

    public var stats: LaneStats { core.stats }

    /// Stops the lane: queued jobs end `cancelled`, running jobs see their cancellation flag
    /// and are waited for, workers are joined. Idempotent.
    public func shutdown() {
        core.shutdown()
    }

    /// Reconciles the log with this lane after a restart. `running` rows become `failed`
    /// ("lost on restart": the job may have had effects, so it is not run again); `queued`
    /// rows are rebuilt by `reconstruct` and queued again under the same row, or failed when
    /// it returns `nil`.
    /// - Returns: How many jobs were re-queued and how many were failed.
    @discardableResult
    public func recover(
        reconstruct: (JobRecord) -> LaneJob?,
        onComplete: @escaping @Sendable (String, LaneJobOutcome) -> Void = { _, _ in }
    ) async throws(LaneError) -> (requeued: Int, failed: Int) {
        try await core.recover(reconstruct: reconstruct, onComplete: onComplete)
    }
}

/// The lane's state and its worker threads. Workers hold it strongly, so it outlives every
/// worker; the public `Lane` owns it and shuts it down when dropped.
final class LaneCore: @unchecked Sendable {
    let name: String
    let store: SagaLog?
    let loop: EventLoop?

    /// Guarded by the lane's mutex once shared.
    fileprivate final class Entry: @unchecked Sendable {
        let job: LaneJob
        let sequence: UInt64
        var attempt: Int
        let onComplete: @Sendable (LaneJobOutcome) -> Void
        var removed = false
        init(job: LaneJob, sequence: UInt64, attempt: Int, onComplete: @escaping @Sendable (LaneJobOutcome) -> Void) {
            self.job = job
            self.sequence = sequence
            self.attempt = attempt
            self.onComplete = onComplete
        }
    }

    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    // Everything below is guarded by `mutex`.
    private var heap: [Entry] = []
    private var queued: [String: Entry] = [:]
    /// Ids that are queued, running, or waiting for a retry or a log write.
    private var known: Set<String> = []
    private var running: [String: LaneJobContext] = [:]
    private var maxConcurrent: Int
    private var workers = 0
    private var threads: [OSThread] = []
    private var stopping = false
    private var sequence: UInt64 = 0
    private var completed = 0, failedCount = 0, cancelledCount = 0
    private var runTimes: [Duration] = []
    private var runTimeCursor = 0

    init(name: String, maxConcurrent: Int, store: SagaLog?, loop: EventLoop?) {
        self.name = name
        self.store = store
        self.loop = loop
        self.maxConcurrent = max(1, maxConcurrent)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(wake, nil)
        lock()
        spawnWorkersLocked()
        unlock()
    }

    deinit {
        pthread_cond_destroy(wake)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        wake.deallocate()
    }

    private func lock() { pthread_mutex_lock(mutex) }
    private func unlock() { pthread_mutex_unlock(mutex) }

    private func spawnWorkersLocked() {
        while workers < maxConcurrent && !stopping {
            workers += 1
            threads.append(OSThread(name: "sagalane-lane-\(name)") { [self] in workerLoop() })
        }
    }

    // MARK: Submitting

    /// Submits `job`. For a persisted lane, `onQueued` runs once the `queued` row is durable
    /// (or with the error that refused the job); for an in-memory lane, before this returns.
    /// `onComplete` runs once, with the outcome, unless the job was refused.
    func submit(
        _ job: LaneJob,
        onQueued: @escaping @Sendable (Result<LaneSubmission, LaneError>) -> Void,
        onComplete: @escaping @Sendable (LaneJobOutcome) -> Void
    ) {
        var named = job
        lock()
        if stopping {
            unlock()
            onQueued(.failure(LaneError(.shutDown, "lane '\(name)' is shut down")))
            return
        }
        sequence += 1
        if named.id.isEmpty { named.id = "\(name)-\(sequence)-\(UInt32.random(in: 0...UInt32.max))" }
        let job = named
        guard known.insert(job.id).inserted else {
            unlock()
            onQueued(.failure(LaneError(.duplicateJobID, "job '\(job.id)' is already in lane '\(name)'")))
            return
        }
        unlock()
        guard let store else {
            onQueued(.success(enqueue(job, attempt: 1, onComplete: onComplete)))
            return
        }
        store.submit(.enqueueJob(id: job.id, lane: name, caller: job.caller, priority: job.priority, metadata: job.metadata)) { [self] result in
            switch result {
            case .success:
                onQueued(.success(enqueue(job, attempt: 1, onComplete: onComplete)))
            case .failure(let error):
                lock()
                known.remove(job.id)
                unlock()
                let kind: LaneError.Kind = error.isConstraint ? .duplicateJobID : .persistence
                onQueued(.failure(LaneError(kind, "job '\(job.id)' was refused: its queued row could not be written: \(error)", logError: error)))
            }
        }
    }

    /// Submits `job` and waits for its outcome.
    /// - Returns: The job's result text.
    /// - Throws: `jobFailed`, `cancelled`, or a submission error. Cancelling the waiting task
    ///   cancels the job if it is still queued, and raises its cancellation flag if it runs.
    func submitAndWait(_ job: LaneJob) async throws(LaneError) -> String {
        var job = job
        if job.id.isEmpty {
            job.id = "\(name)-w\(UInt64.random(in: 0...UInt64.max))"
        }
        let id = job.id
        let outcome: Result<LaneJobOutcome, LaneError> = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<LaneJobOutcome, LaneError>, Never>) in
                submit(job, onQueued: { result in
                    if case .failure(let error) = result { continuation.resume(returning: .failure(error)) }
                }, onComplete: { continuation.resume(returning: .success($0)) })
            }
        } onCancel: {
            abandon(jobID: id)
        }
        switch try outcome.get() {
        case .finished(let result): return result
        case .failed(let error, let attempts):
            throw LaneError(.jobFailed, "job '\(id)' failed after \(attempts) attempt\(attempts == 1 ? "" : "s"): \(error)")
        case .cancelled: throw LaneError(.cancelled, "job '\(id)' was cancelled")
        }
    }

    /// Puts a job in the queue and wakes a worker.
    private func enqueue(_ job: LaneJob, attempt: Int, onComplete: @escaping @Sendable (LaneJobOutcome) -> Void) -> LaneSubmission {
        lock()
        if stopping {
            // Shut down while the queued row was being written: the job ends cancelled.
            finishLocked(job.id)
            cancelledCount += 1
            unlock()
            LaneCore.report(.cancelled, id: job.id, store: store, completion: onComplete)
            return LaneSubmission(position: 0, estimatedWait: .zero, jobID: job.id)
        }
        sequence += 1
        let entry = Entry(job: job, sequence: sequence, attempt: attempt, onComplete: onComplete)
        let ahead = queued.values.reduce(0) { $0 + ($1.job.priority >= job.priority ? 1 : 0) }
        push(entry)
        queued[job.id] = entry
        pthread_cond_signal(wake)
        let mean = meanRunTimeLocked()
        let slots = max(1, maxConcurrent)
        let waitingRounds = Double(ahead + max(0, running.count - slots + 1)) / Double(slots)
        unlock()
        return LaneSubmission(position: ahead, estimatedWait: mean * waitingRounds, jobID: job.id)
    }

    // MARK: Cancelling

    /// Cancels a queued job: it never runs and ends `cancelled`.
    /// - Throws: `notQueued` for a job that is running (or between retries, or being
    ///   persisted), `notFound` for an id the lane does not know.
    func cancel(jobID: String) throws(LaneError) {
        lock()
        guard let entry = queued.removeValue(forKey: jobID) else {
            let isKnown = known.contains(jobID)
            unlock()
            if isKnown { throw LaneError(.notQueued, "job '\(jobID)' is not queued (it is running or being recorded)") }
            throw LaneError(.notFound, "lane '\(name)' has no job '\(jobID)'")
        }
        entry.removed = true
        finishLocked(jobID)
        cancelledCount += 1
        unlock()
        complete(entry, .cancelled)
    }

    /// A waiter gave up: cancel the job if queued, else ask it to stop.
    private func abandon(jobID: String) {
        lock()
        let context = running[jobID]
        unlock()
        if let context {
            context.cancel()
        } else {
            try? cancel(jobID: jobID)
        }
    }

    // MARK: Settings and stats

    /// Changes how many jobs may run at once. Raising it starts queued jobs at once; lowering
    /// it lets running jobs finish and starts no new one until the count is under the bound.
    func setMaxConcurrent(_ n: Int) {
        lock()
        maxConcurrent = max(1, n)
        spawnWorkersLocked()
        pthread_cond_broadcast(wake)
        unlock()
    }

    var stats: LaneStats {
        lock()
        defer { unlock() }
        return LaneStats(queued: queued.count, running: running.count, maxConcurrent: maxConcurrent,
                         completed: completed, failed: failedCount, cancelled: cancelledCount, meanRunTime: meanRunTimeLocked())
    }

    private func meanRunTimeLocked() -> Duration {
        guard !runTimes.isEmpty else { return .zero }
        return runTimes.reduce(.zero, +) / runTimes.count
    }

    // MARK: Shutting down

    /// Stops the lane: queued jobs end `cancelled`, running jobs see their cancellation flag
    /// and are waited for, workers are joined. Idempotent.
    func shutdown() {
        lock()
        if stopping {
            unlock()
            return
        }
        stopping = true
        let dropped = Array(queued.values)
        for entry in dropped {
            entry.removed = true
            finishLocked(entry.job.id)
        }
        cancelledCount += dropped.count
        queued.removeAll()
        heap.removeAll()
        for context in running.values { context.cancel() }
        pthread_cond_broadcast(wake)
        let threads = self.threads
        unlock()
        for entry in dropped.sorted(by: { $0.sequence < $1.sequence }) { complete(entry, .cancelled) }
        for thread in threads where !thread.isCurrent { thread.join() }
    }

    // MARK: Running

    private func workerLoop() {
        lock()
        while true {
            while !stopping && workers <= maxConcurrent && queued.isEmpty {
                pthread_cond_wait(wake, mutex)
            }
            if stopping || workers > maxConcurrent {
                workers -= 1
                unlock()
                return
            }
            guard let entry = popNext() else { continue }
            queued.removeValue(forKey: entry.job.id)
            let context = LaneJobContext(jobID: entry.job.id, attempt: entry.attempt)
            running[entry.job.id] = context
            unlock()
            run(entry, context)
            lock()
        }
    }

    private func run(_ entry: Entry, _ context: LaneJobContext) {
        let job = entry.job
        if let store {
            // The running row must be durable before the body runs: after a crash, recovery
            // then knows the job may have had effects, and fails it instead of re-running it.
            let written = BlockingResult<Result<Int, SagaLogError>>()
            store.submit(.updateJobState(id: job.id, state: .running, attempts: entry.attempt, error: nil)) { written.set($0) }
            if case .failure(let error) = written.wait() {
                end(entry, context, .failed(error: "not run: its running row could not be written: \(error)", attempts: entry.attempt - 1), runTime: nil)
                return
            }
        }
        let start = monotonicNow()
        let result = Result { try job.body(context) }
        let runTime = monotonicNow() - start
        switch result {
        case .success(let text):
            end(entry, context, .finished(result: text), runTime: runTime)
        case .failure(let error):
            if error is LaneJobCancelled || (context.isCancelled && isStopping) {
                end(entry, context, .cancelled, runTime: runTime)
            } else if let retry = job.retry, entry.attempt < retry.maxAttempts, !context.isCancelled, !isStopping {
                scheduleRetry(entry, context, after: retry.backoff(after: entry.attempt), error: "\(error)", runTime: runTime)
            } else {
                end(entry, context, .failed(error: "\(error)", attempts: entry.attempt), runTime: runTime)
            }
        }
    }

    private var isStopping: Bool {
        lock()
        defer { unlock() }
        return stopping
    }

    private func recordRunTimeLocked(_ runTime: Duration?) {
        guard let runTime else { return }
        if runTimes.count < 64 {
            runTimes.append(runTime)
        } else {
            runTimes[runTimeCursor] = runTime
            runTimeCursor = (runTimeCursor + 1) % 64
        }
    }

    /// The job's last run is over: count it, free its id, write its terminal row, report.
    private func end(_ entry: Entry, _ context: LaneJobContext, _ outcome: LaneJobOutcome, runTime: Duration?) {
        lock()
        running.removeValue(forKey: entry.job.id)
        finishLocked(entry.job.id)
        recordRunTimeLocked(runTime)
        switch outcome {
        case .finished: completed += 1
        case .failed: failedCount += 1
        case .cancelled: cancelledCount += 1
        }
        unlock()
        complete(entry, outcome)
    }

    private func finishLocked(_ id: String) {
        known.remove(id)
    }

    /// Writes the terminal row (persisted lanes) and then reports the outcome.
    private func complete(_ entry: Entry, _ outcome: LaneJobOutcome) {
        LaneCore.report(outcome, id: entry.job.id, attempts: entry.attempt, store: store, completion: entry.onComplete)
    }

    fileprivate static func report(_ outcome: LaneJobOutcome, id: String, attempts: Int? = nil, store: SagaLog?,
                                   completion: @escaping @Sendable (LaneJobOutcome) -> Void) {
        guard let store else {
            completion(outcome)
            return
        }
        let record: LogRecord
        switch outcome {
        case .finished: record = .updateJobState(id: id, state: .finished, attempts: attempts, error: nil)
        case .failed(let error, let n): record = .updateJobState(id: id, state: .failed, attempts: n, error: error)
        case .cancelled: record = .updateJobState(id: id, state: .cancelled, attempts: nil, error: nil)
        }
        store.submit(record) { result in
            switch result {
            case .success:
                completion(outcome)
            case .failure(let error):
                completion(.failed(error: "the job ended (\(outcome)) but its row could not be written: \(error)", attempts: attempts ?? 0))
            }
        }
    }

    private func scheduleRetry(_ entry: Entry, _ context: LaneJobContext, after delay: Duration, error: String, runTime: Duration) {
        lock()
        running.removeValue(forKey: entry.job.id)
        recordRunTimeLocked(runTime)
        unlock()
        let requeue: @Sendable () -> Void = { [self] in
            lock()
            if stopping {
                finishLocked(entry.job.id)
                cancelledCount += 1
                unlock()
                complete(entry, .cancelled)
                return
            }
            sequence += 1
            let next = Entry(job: entry.job, sequence: sequence, attempt: entry.attempt + 1, onComplete: entry.onComplete)
            push(next)
            queued[entry.job.id] = next
            pthread_cond_signal(wake)
            unlock()
        }
        let arm: @Sendable () -> Void = { [self] in
            if let loop {
                loop.execute { loop.scheduleTimer(after: delay, requeue) }
            } else {
                requeue()
            }
        }
        if let store {
            // Back to queued, with the attempt count, so a restart during the back-off
            // re-runs it (it is idempotent) rather than losing it.
            store.submit(.updateJobState(id: entry.job.id, state: .queued, attempts: entry.attempt, error: error)) { _ in arm() }
        } else {
            arm()
        }
    }

    // MARK: Recovery

    /// Reconciles the log with this lane after a restart. `running` rows become `failed`
    /// ("lost on restart": the job may have had effects, so it is not run again); `queued`
    /// rows are rebuilt by `reconstruct` and queued again under the same row, or failed when
    /// it returns `nil`.
    /// - Returns: How many jobs were re-queued and how many were failed.
    @discardableResult
    func recover(
        reconstruct: (JobRecord) -> LaneJob?,
        onComplete: @escaping @Sendable (String, LaneJobOutcome) -> Void = { _, _ in }
    ) async throws(LaneError) -> (requeued: Int, failed: Int) {
        guard let store else { return (0, 0) }
        var failed = 0, requeued = 0
        do {
            for row in try store.listRunningJobs(lane: name) {
                try await store.updateJobState(id: row.id, state: .failed, error: "lost on restart")
                failed += 1
            }
            for row in try store.listQueuedJobs(lane: name) {
                guard var job = reconstruct(row) else {
                    try await store.updateJobState(id: row.id, state: .failed, error: "lost on restart: cannot reconstruct")
                    failed += 1
                    continue
                }
                job.id = row.id
                lock()
                let fresh = known.insert(job.id).inserted
                unlock()
                guard fresh else { continue }
                _ = enqueue(job, attempt: row.attempts + 1) { onComplete(row.id, $0) }
                requeued += 1
            }
        } catch {
            throw LaneError(.persistence, "recovery of lane '\(name)' failed: \(error)", logError: error)
        }
        if failed > 0 { writeStandardError("sagalane: lane '\(name)': \(failed) job(s) lost on restart marked failed\n") }
        return (requeued, failed)
    }

    // MARK: The priority heap (by priority descending, then submission order)

    private static func before(_ a: Entry, _ b: Entry) -> Bool {
        a.job.priority > b.job.priority || (a.job.priority == b.job.priority && a.sequence < b.sequence)
    }

    private func push(_ entry: Entry) {
        heap.append(entry)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard LaneCore.before(heap[child], heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    /// The next live entry; cancelled entries are dropped as they surface.
    private func popNext() -> Entry? {
        while !heap.isEmpty {
            let top = heap[0]
            let last = heap.removeLast()
            if !heap.isEmpty {
                heap[0] = last
                var parent = 0
                while true {
                    let left = 2 * parent + 1
                    guard left < heap.count else { break }
                    var best = left
                    if left + 1 < heap.count && LaneCore.before(heap[left + 1], heap[left]) { best = left + 1 }
                    guard LaneCore.before(heap[best], heap[parent]) else { break }
                    heap.swapAt(best, parent)
                    parent = best
                }
            }
            if !top.removed { return top }
        }
        return nil
    }
}

/// One value handed from one thread to another that blocks for it.
final class BlockingResult<Value: Sendable>: @unchecked Sendable {
    private var value: Value?
    private var mutex = pthread_mutex_t()
    private var ready = pthread_cond_t()

    init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&ready, nil)
    }

    deinit {
        pthread_cond_destroy(&ready)
        pthread_mutex_destroy(&mutex)
    }

    func set(_ value: Value) {
        pthread_mutex_lock(&mutex)
        self.value = value
        pthread_cond_signal(&ready)
        pthread_mutex_unlock(&mutex)
    }

    func wait() -> Value {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        while value == nil { pthread_cond_wait(&ready, &mutex) }
        return value!
    }
}

func monotonicNow() -> Duration {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return .seconds(ts.tv_sec) + .nanoseconds(ts.tv_nsec)
}
