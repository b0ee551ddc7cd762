import Glibc
import SagaLaneEventLoop
import SagaLaneLog
import SagaLaneSupport
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
    ///   - diagnostics: Where the lane says what no caller can be told (jobs lost on a
    ///     restart, worker threads the system refused).
    public init(name: String, maxConcurrent: Int, store: SagaLog? = nil, loop: EventLoop? = nil,
                diagnostics: Diagnostics = .standardError) {
        core = LaneCore(name: name, maxConcurrent: maxConcurrent, store: store, loop: loop, diagnostics: diagnostics)
    }

    /// Dropping the last reference shuts the lane down, as `shutdown()` does.
    deinit { core.shutdown() }

    /// Submits `job`. For a persisted lane, `onQueued` runs once the `queued` row is durable
    /// (or with the error that refused the job); for an in-memory lane, before this returns.
    /// `onComplete` runs once, with the outcome, unless the job was refused.
    public func submit(
        _ job: LaneJob,
        onQueued: @escaping @Sendable (Result<LaneSubmission, SagaLaneError>) -> Void,
        onComplete: @escaping @Sendable (LaneJobCompletion) -> Void
    ) {
        core.submit(job, onQueued: onQueued, onComplete: onComplete)
    }

    /// Submits `job`, returning once it is queued (durably, for a persisted lane).
    @discardableResult
    public func submit(_ job: LaneJob, onComplete: @escaping @Sendable (LaneJobCompletion) -> Void = { _ in }) async throws(SagaLaneError) -> LaneSubmission {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<LaneSubmission, SagaLaneError>, Never>) in
            core.submit(job, onQueued: { continuation.resume(returning: $0) }, onComplete: onComplete)
        }
        return try result.get()
    }

    /// Submits `job` and blocks the calling thread until it is queued. For hosts calling from
    /// threads of their own (not the event loop's: for a persisted lane it waits for the log).
    @discardableResult
    public func submitBlocking(_ job: LaneJob, onComplete: @escaping @Sendable (LaneJobCompletion) -> Void = { _ in }) throws(SagaLaneError) -> LaneSubmission {
        let waiter = Completion<Result<LaneSubmission, SagaLaneError>>()
        core.submit(job, onQueued: { waiter.set($0) }, onComplete: onComplete)
        return try waiter.wait().get()
    }

    /// Submits `job` and waits for its outcome.
    /// - Returns: The job's result text.
    /// - Throws: `jobFailed`, `cancelled`, or a submission error. Cancelling the waiting task
    ///   cancels the job if it is still queued, and raises its cancellation flag if it runs.
    public func submitAndWait(_ job: LaneJob) async throws(SagaLaneError) -> String {
        try await core.submitAndWait(job)
    }

    /// Cancels a queued job: it never runs and ends `cancelled`.
    /// - Throws: `notQueued` for a job that is running (or between retries, or being
    ///   persisted), `notFound` for an id the lane does not know.
    public func cancel(jobID: String) throws(SagaLaneError) {
        try core.cancel(jobID: jobID)
    }

    /// Gives up on a job: a queued job, or one waiting out a retry back-off, ends cancelled
    /// at once; a running one sees its cancellation flag (`LaneJobContext.isCancelled`).
    /// - Throws: `notFound` for an id the lane does not know.
    public func interrupt(jobID: String) throws(SagaLaneError) {
        try core.interrupt(jobID: jobID)
    }

    /// Changes how many jobs may run at once. Raising it starts queued jobs at once; lowering
    /// it lets running jobs finish and starts no new one until the count is under the bound.
    public func setMaxConcurrent(_ n: Int) {
        core.setMaxConcurrent(n)
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

    /// Reconciles the log with this lane after a restart. `running` rows become `failed`
    /// ("lost on restart": the job may have had effects, so it is not run again); `queued`
    /// rows are rebuilt by `reconstruct` and queued again under the same row, or failed when
    /// it returns `nil`.
    /// - Returns: How many jobs were re-queued and how many were failed.
    @discardableResult
    public func recover(reconstruct: (JobRecord) -> RecoveredJob?) async throws(SagaLaneError) -> (requeued: Int, failed: Int) {
        try await core.recover(reconstruct: reconstruct)
    }
}

/// The lane's state and its worker threads. Workers hold it strongly, so it outlives every
/// worker; the public `Lane` owns it and shuts it down when dropped.
///
/// A job moves through `Entry.State` under the lane's mutex; every transition out of a state
/// checks that the job is still in it, so a timer or a log write that completes after a
/// shutdown (or a cancel) finds the job ended and leaves it alone.
///
/// Workers park on a condition variable each and are woken one at a time, only when work
/// appears and no other worker is already awake looking for some (`spinning`): a busy lane
/// hands jobs to awake workers without a wake-up per job, and a worker that takes a job while
/// more is waiting wakes the next one itself, so threads that add work (submitters, the log's
/// writer thread confirming rows) rarely pay for a wake-up.
final class LaneCore: @unchecked Sendable {
    let name: String
    let store: SagaLog?
    let loop: EventLoop?
    let diagnostics: Diagnostics

    /// One submitted job, from submission to its outcome. Guarded by the lane's mutex once shared.
    fileprivate final class Entry: @unchecked Sendable {
        enum State {
            /// Its queued row is being written (persisted lanes).
            case persisting
            /// Queued, waiting for a slot.
            case queued
            /// Holds a slot; its running row is being written.
            case starting
            /// Holds a slot; its running row is durable and it waits for a worker.
            case ready
            /// Holds a slot; its body is running.
            case running
            /// Failed and will run again; its queued row (with the attempt count) is being written.
            case retryWriting
            /// Failed and will run again once its back-off is over.
            case retryWaiting
            /// Ended or cancelled; nothing touches it again.
            case done
        }

        /// Only the fields the lane uses once the job is submitted (the log keeps the caller
        /// and metadata): each field copied in costs a retain now and a release later.
        let key: JobKey
        let priority: Int
        let retry: RetryPolicy?
        let body: @Sendable (LaneJobContext) throws -> String
        let onComplete: @Sendable (LaneJobCompletion) -> Void
        /// Queue order: FIFO within a priority, and the order shutdown reports cancellations.
        var sequence: UInt64 = 0
        var attempt: Int
        /// Runs made so far (earlier processes' included, for a recovered job).
        var runs: Int
        var state: State
        /// The current attempt's context, while the job holds a slot.
        var context: LaneJobContext?

        var id: String { key.id }

        init(job: LaneJob, key: JobKey, onComplete: @escaping @Sendable (LaneJobCompletion) -> Void, attempt: Int, state: State) {
            self.key = key
            priority = job.priority
            retry = job.retry
            body = job.body
            self.onComplete = onComplete
            self.attempt = attempt
            runs = attempt - 1
            self.state = state
        }
    }

    /// A job id as a dictionary key, hashed once with a cheap byte hash: hashing the id
    /// string with `Hasher` on every insert and removal costs more than the rest of the queue
    /// work.
    fileprivate struct JobKey: Hashable, Sendable {
        let id: String
        let hash: UInt64

        init(_ id: String) {
            self.id = id
            var id = id
            hash = id.withUTF8 { bytes in
                var h: UInt64 = 0xcbf2_9ce4_8422_2325
                for byte in bytes { h = (h ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
                return h
            }
        }

        static func == (a: JobKey, b: JobKey) -> Bool { a.hash == b.hash && a.id == b.id }
        func hash(into hasher: inout Hasher) { hasher.combine(hash) }
    }

    /// A FIFO of entries in a power-of-two ring, so a queue that keeps draining to empty
    /// costs no reallocation.
    private struct Ring {
        private var slots: [Entry?] = []
        private var head = 0
        private(set) var count = 0

        var isEmpty: Bool { count == 0 }

        mutating func append(_ entry: Entry) {
            if count == slots.count { grow() }
            slots[(head + count) & (slots.count - 1)] = entry
            count += 1
        }

        mutating func popFirst() -> Entry? {
            guard count > 0 else { return nil }
            let entry = slots[head]
            slots[head] = nil
            head = (head + 1) & (slots.count - 1)
            count -= 1
            return entry
        }

        /// Keeps only the entries `keep` accepts, in order.
        mutating func filter(_ keep: (Entry) -> Bool) {
            var kept = Ring()
            while let entry = popFirst() {
                if keep(entry) { kept.append(entry) }
            }
            self = kept
        }

        mutating func removeAll() { self = Ring() }

        private mutating func grow() {
            var bigger = [Entry?](repeating: nil, count: max(8, slots.count * 2))
            for index in 0..<count { bigger[index] = slots[(head + index) & (slots.count - 1)] }
            slots = bigger
            head = 0
        }
    }

    /// Where a parked worker sleeps; whoever wakes it sets `woken` (so spurious wake-ups are
    /// told apart) and has already counted it as spinning.
    private final class Parker {
        let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
        var woken = false
        init() { pthread_cond_init(cond, nil) }
        deinit {
            pthread_cond_destroy(cond)
            cond.deallocate()
        }
    }

    /// The queued jobs of one priority, in queue order. Cancelled jobs stay in `items` until
    /// they reach the head (or get compacted away); `live` counts the others.
    private struct Level {
        let priority: Int
        var items = Ring()
        var live = 0
    }

    /// Everything the mutex guards, behind a pointer: Swift checks exclusive access to a
    /// class's stored properties at run time on every access (which costs more than the queue
    /// work itself); a pointee is not checked, and the mutex already makes access exclusive.
    private struct Shared {
        /// Every job the lane knows: persisting, queued, holding a slot, or between retries.
        var jobs: [JobKey: Entry] = [:]
        /// Queued jobs per priority, highest first. A job's position is the sum of the live
        /// counts at or above its priority, without walking the queue.
        var levels: [Level] = []
        var queuedCount = 0
        /// Jobs holding a slot: starting, ready or running. A job takes a slot only while
        /// fewer than `maxConcurrent` are held.
        var runningCount = 0
        /// Running rows being written.
        var startingCount = 0
        /// Jobs whose running row is durable, in the order the log confirmed them.
        var ready = Ring()
        var maxConcurrent: Int
        var workers = 0
        /// Workers awake and looking for work (not parked, not running a body).
        var spinning = 0
        var idle: [Parker] = []
        var threads: [OSThread] = []
        /// Workers that left because the bound was lowered, to be joined by the next
        /// `setMaxConcurrent` or by `shutdown`. A thread is in one of the two lists at a time,
        /// and whoever takes it out under the mutex joins it, so each is joined exactly once.
        var exited: [OSThread] = []
        /// Set while the lane has fewer workers than its bound because a thread was refused.
        var threadError: SagaLaneError?
        var stopping = false
        var sequence: UInt64 = 0
        var completed = 0, failed = 0, cancelled = 0
        /// The last 64 run times in nanoseconds, and their sum.
        var runTimes = [Int64](repeating: 0, count: 64)
        var runTimeCount = 0, runTimeCursor = 0
        var runTimeSum: Int64 = 0

        init(maxConcurrent: Int) {
            self.maxConcurrent = maxConcurrent
        }

        // MARK: Queue

        /// Queues `entry` behind everything queued so far and wakes a worker if one is needed.
        /// Returns where it stands.
        mutating func enqueue(_ entry: Entry) -> LaneSubmission {
            sequence += 1
            entry.sequence = sequence
            entry.state = .queued
            let priority = entry.priority
            var ahead = 0
            var index = 0
            while index < levels.count && levels[index].priority > priority {
                ahead += levels[index].live
                index += 1
            }
            if index == levels.count || levels[index].priority != priority {
                if levels.count >= 16 { dropEmptyLevels(keeping: &index) }
                levels.insert(Level(priority: priority), at: index)
            }
            ahead += levels[index].live
            levels[index].items.append(entry)
            levels[index].live += 1
            queuedCount += 1
            if runningCount < maxConcurrent { notify() }
            let slots = max(1, maxConcurrent)
            var wait = Duration.zero
            if runTimeCount > 0 {
                let rounds = Double(ahead + max(0, runningCount - slots + 1)) / Double(slots)
                wait = .nanoseconds(Int64(Double(runTimeSum / Int64(runTimeCount)) * rounds))
            }
            return LaneSubmission(position: ahead, estimatedWait: wait, jobID: entry.id)
        }

        /// Keeps the level list short when priorities come and go; `index` follows its level.
        private mutating func dropEmptyLevels(keeping index: inout Int) {
            let before = levels[..<index].reduce(0) { $0 + ($1.live == 0 ? 1 : 0) }
            levels.removeAll { $0.live == 0 }
            index -= before
        }

        /// The next queued job (highest priority, then oldest), taken out of the queue.
        mutating func popQueued() -> Entry? {
            for index in levels.indices where levels[index].live > 0 {
                while let entry = levels[index].items.popFirst() {
                    if entry.state == .queued {
                        levels[index].live -= 1
                        queuedCount -= 1
                        return entry
                    }
                }
            }
            return nil
        }

        /// Takes a cancelled job out of the counts; its slot in the level goes when it surfaces,
        /// or now if cancelled jobs dominate the level.
        mutating func removeCancelled(_ entry: Entry) {
            guard let index = levels.firstIndex(where: { $0.priority == entry.priority }) else { return }
            queuedCount -= 1
            levels[index].live -= 1
            if levels[index].live == 0 {
                levels[index].items.removeAll()
            } else if levels[index].items.count > 2 * levels[index].live + 64 {
                levels[index].items.filter { $0.state == .queued }
            }
        }

        /// Takes the next queued job into a free slot.
        mutating func claim(persisted: Bool) -> Entry? {
            guard !stopping, runningCount < maxConcurrent, let entry = popQueued() else { return nil }
            runningCount += 1
            entry.context = LaneJobContext(jobID: entry.id, attempt: entry.attempt)
            if persisted {
                entry.state = .starting
                startingCount += 1
            }
            return entry
        }

        /// Whether a worker would find something to do.
        var hasWork: Bool {
            !ready.isEmpty || (!stopping && queuedCount > 0 && runningCount < maxConcurrent)
        }

        /// Whether a worker with nothing in hand should end: when the lane stops, once no job
        /// can need it; otherwise when there are more workers than slots and than jobs holding
        /// slots (each of which may still need a worker).
        var mustExit: Bool {
            if stopping { return startingCount == 0 && ready.isEmpty }
            return workers > maxConcurrent && workers > runningCount
        }

        // MARK: Waking workers

        /// Wakes one parked worker, unless one is already awake looking for work (it will find
        /// what was just added: it looks under the mutex before parking).
        mutating func notify() {
            guard spinning == 0, let parker = idle.popLast() else { return }
            parker.woken = true
            spinning += 1
            pthread_cond_signal(parker.cond)
        }

        mutating func wakeAll() {
            for parker in idle {
                parker.woken = true
                pthread_cond_signal(parker.cond)
            }
            spinning += idle.count
            idle.removeAll(keepingCapacity: true)
        }

        // MARK: Run times

        mutating func recordRunTime(_ nanos: Int64) {
            if runTimeCount < runTimes.count {
                runTimes[runTimeCount] = nanos
                runTimeCount += 1
            } else {
                runTimeSum -= runTimes[runTimeCursor]
                runTimes[runTimeCursor] = nanos
                runTimeCursor = (runTimeCursor + 1) % runTimes.count
            }
            runTimeSum += nanos
        }

        var meanRunTime: Duration {
            runTimeCount == 0 ? .zero : .nanoseconds(runTimeSum / Int64(runTimeCount))
        }
    }

    /// What a worker does once it has let go of the mutex.
    private enum FollowUp {
        case none
        case report(Entry, LaneJobOutcome)
        case arm(Entry, Duration)
    }

    /// How a body ended, worked out off the mutex.
    private enum RunResult {
        case finished(String)
        case threw(description: String, isCancellation: Bool)
    }

    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let shared: UnsafeMutablePointer<Shared>
    /// Ids made up for jobs submitted without one: random per lane instance, so they do not
    /// collide with rows an earlier run left in the log, then a counter.
    private let idPrefix: [UInt8]
    private let idCounter = Atomic<UInt64>(0)

    init(name: String, maxConcurrent: Int, store: SagaLog?, loop: EventLoop?, diagnostics: Diagnostics) {
        self.name = name
        self.diagnostics = diagnostics
        self.store = store
        self.loop = loop
        idPrefix = Array("\(name)-\(String(UInt64.random(in: 0...UInt64.max), radix: 16))-".utf8)
        shared = .allocate(capacity: 1)
        shared.initialize(to: Shared(maxConcurrent: max(1, maxConcurrent)))
        pthread_mutex_init(mutex, nil)
        lock()
        spawnWorkersLocked()
        unlock()
    }

    deinit {
        shared.deinitialize(count: 1)
        shared.deallocate()
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    private func lock() { pthread_mutex_lock(mutex) }
    private func unlock() { pthread_mutex_unlock(mutex) }

    /// `idPrefix` then the next number in decimal, written straight into the string's storage.
    private func madeUpID() -> String {
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

    /// Starts workers up to the bound. When the system refuses a thread, the lane runs with the
    /// workers it has (says so once) and tries again whenever a job is queued.
    private func spawnWorkersLocked() {
        while shared.pointee.workers < shared.pointee.maxConcurrent && !shared.pointee.stopping {
            do {
                // The new worker's first step takes the mutex, held here until the counts are right.
                let thread = try OSThread(name: "sagalane-lane-\(name)", role: .laneWorker) { [self] in workerLoop(Parker()) }
                shared.pointee.workers += 1
                shared.pointee.spinning += 1
                shared.pointee.threads.append(thread)
            } catch {
                if shared.pointee.threadError == nil {
                    diagnostics.warning("lane '\(name)': \(error); running with \(shared.pointee.workers) of \(shared.pointee.maxConcurrent) workers, trying again as jobs are queued")
                }
                shared.pointee.threadError = error
                return
            }
        }
        shared.pointee.threadError = nil
    }

    /// Queues `entry` (see `Shared.enqueue`), first starting the workers a refused thread left
    /// missing.
    private func enqueueLocked(_ entry: Entry) -> LaneSubmission {
        if shared.pointee.workers < shared.pointee.maxConcurrent { spawnWorkersLocked() }
        return shared.pointee.enqueue(entry)
    }

    /// Why the last worker thread could not start, while the lane is short of workers.
    var lastThreadError: SagaLaneError? {
        lock()
        defer { unlock() }
        return shared.pointee.threadError
    }

    // MARK: Submitting

    /// Submits `job`. For a persisted lane, `onQueued` runs once the `queued` row is durable
    /// (or with the error that refused the job); for an in-memory lane, before this returns.
    /// `onComplete` runs once, with the outcome, unless the job was refused.
    func submit(
        _ job: LaneJob,
        onQueued: @escaping @Sendable (Result<LaneSubmission, SagaLaneError>) -> Void,
        onComplete: @escaping @Sendable (LaneJobCompletion) -> Void
    ) {
        let id = job.id.isEmpty ? madeUpID() : job.id
        let entry = Entry(job: job, key: JobKey(id), onComplete: onComplete, attempt: 1, state: .persisting)
        lock()
        if shared.pointee.stopping {
            unlock()
            onQueued(.failure(SagaLaneError(.closed, "lane '\(name)' is shut down")))
            return
        }
        if let existing = shared.pointee.jobs.updateValue(entry, forKey: entry.key) {
            shared.pointee.jobs[entry.key] = existing
            unlock()
            onQueued(.failure(SagaLaneError(.exists, "job '\(id)' is already in lane '\(name)'")))
            return
        }
        guard let store else {
            let submission = enqueueLocked(entry)
            unlock()
            onQueued(.success(submission))
            return
        }
        unlock()
        store.submit(.enqueueJob(id: id, lane: name, caller: job.caller, priority: job.priority, metadata: job.metadata)) { [self] result in
            switch result {
            case .success:
                queuedRowWritten(entry, onQueued: onQueued)
            case .failure(let error):
                lock()
                shared.pointee.jobs.removeValue(forKey: entry.key)
                entry.state = .done
                unlock()
                onQueued(.failure(SagaLaneError(error.code, "job '\(entry.id)' was refused: its queued row could not be written: \(error.message)", underlying: error)))
            }
        }
    }

    /// The job's queued row is durable: queue it, unless the lane shut down meanwhile.
    private func queuedRowWritten(_ entry: Entry, onQueued: @Sendable (Result<LaneSubmission, SagaLaneError>) -> Void) {
        lock()
        if shared.pointee.stopping {
            shared.pointee.jobs.removeValue(forKey: entry.key)
            entry.state = .done
            shared.pointee.cancelled += 1
            unlock()
            onQueued(.success(LaneSubmission(position: 0, estimatedWait: .zero, jobID: entry.id)))
            report(entry, .cancelled)
            return
        }
        let submission = enqueueLocked(entry)
        unlock()
        onQueued(.success(submission))
    }

    /// Submits `job` and waits for its outcome.
    /// - Returns: The job's result text.
    /// - Throws: `jobFailed`, `cancelled`, or a submission error. Cancelling the waiting task
    ///   cancels the job if it is still queued, and raises its cancellation flag if it runs.
    func submitAndWait(_ job: LaneJob) async throws(SagaLaneError) -> String {
        var job = job
        if job.id.isEmpty { job.id = madeUpID() }
        let id = job.id
        let outcome: Result<LaneJobCompletion, SagaLaneError> = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<LaneJobCompletion, SagaLaneError>, Never>) in
                submit(job, onQueued: { result in
                    if case .failure(let error) = result { continuation.resume(returning: .failure(error)) }
                }, onComplete: { continuation.resume(returning: .success($0)) })
            }
        } onCancel: {
            abandon(jobID: id)
        }
        return try outcome.get().result()
    }

    // MARK: Cancelling

    /// Cancels a queued job: it never runs and ends `cancelled`.
    /// - Throws: `notQueued` for a job that is running (or between retries, or being
    ///   persisted), `notFound` for an id the lane does not know.
    func cancel(jobID: String) throws(SagaLaneError) {
        let key = JobKey(jobID)
        lock()
        guard let entry = shared.pointee.jobs[key] else {
            unlock()
            throw SagaLaneError(.notFound, "lane '\(name)' has no job '\(jobID)'")
        }
        guard entry.state == .queued else {
            unlock()
            throw SagaLaneError(.notQueued, "job '\(jobID)' is not queued (it is running, between retries, or being recorded)")
        }
        shared.pointee.jobs.removeValue(forKey: entry.key)
        entry.state = .done
        shared.pointee.removeCancelled(entry)
        shared.pointee.cancelled += 1
        unlock()
        report(entry, .cancelled)
    }

    /// A waiter gave up: cancel the job if queued, else ask it to stop.
    private func abandon(jobID: String) {
        try? interrupt(jobID: jobID)
    }

    /// Gives up on a job: a queued job, or one waiting out a retry back-off, ends cancelled
    /// at once; a running one sees its cancellation flag.
    /// - Throws: `notFound` for an id the lane does not know (or no longer knows).
    func interrupt(jobID: String) throws(SagaLaneError) {
        let key = JobKey(jobID)
        lock()
        guard let entry = shared.pointee.jobs[key] else {
            unlock()
            throw SagaLaneError(.notFound, "lane '\(name)' has no job '\(jobID)'")
        }
        switch entry.state {
        case .starting, .ready, .running:
            let context = entry.context
            unlock()
            context?.cancel()
        case .queued:
            unlock()
            try? cancel(jobID: jobID)
        case .retryWriting, .retryWaiting:
            // As at shutdown: a retry's queued row was submitted under this mutex, so the
            // cancelled row lands after it, and its timer finds the job done.
            shared.pointee.jobs.removeValue(forKey: entry.key)
            entry.state = .done
            shared.pointee.cancelled += 1
            unlock()
            report(entry, .cancelled)
        case .persisting, .done:
            // Its queued row is not confirmed yet (or it just ended): nothing to stop yet.
            unlock()
        }
    }

    // MARK: Settings and stats

    /// Changes how many jobs may run at once. Raising it starts queued jobs at once; lowering
    /// it lets running jobs finish and starts no new one until the count is under the bound.
    func setMaxConcurrent(_ n: Int) {
        lock()
        shared.pointee.maxConcurrent = max(1, n)
        spawnWorkersLocked()
        // Parked workers look again: there may be room for queued jobs, or too many workers.
        shared.pointee.wakeAll()
        let exited = shared.pointee.exited
        shared.pointee.exited.removeAll()
        unlock()
        // Their last act under the mutex was to list themselves, so they are (nearly) gone.
        for thread in exited { thread.join() }
    }

    var workerThreads: Int {
        lock()
        defer { unlock() }
        return shared.pointee.workers
    }

    var stats: LaneStats {
        lock()
        defer { unlock() }
        let s = shared.pointee
        return LaneStats(queued: s.queuedCount, running: s.runningCount, maxConcurrent: s.maxConcurrent,
                         completed: s.completed, failed: s.failed, cancelled: s.cancelled, meanRunTime: s.meanRunTime)
    }

    // MARK: Shutting down

    /// Stops the lane: queued jobs and jobs waiting out a retry back-off end `cancelled`,
    /// running jobs see their cancellation flag and are waited for, workers are joined.
    /// Idempotent.
    func shutdown() {
        lock()
        if shared.pointee.stopping {
            unlock()
            return
        }
        shared.pointee.stopping = true
        var dropped: [Entry] = []
        for entry in shared.pointee.jobs.values {
            switch entry.state {
            case .queued, .retryWriting, .retryWaiting:
                // A retry's queued row was submitted under this mutex, so the cancelled row
                // written below lands after it; its timer, if any, finds the job done.
                dropped.append(entry)
            case .starting, .ready, .running:
                entry.context?.cancel()
            case .persisting, .done:
                // A persisting job ends cancelled once its queued row is confirmed.
                break
            }
        }
        for entry in dropped {
            shared.pointee.jobs.removeValue(forKey: entry.key)
            entry.state = .done
        }
        shared.pointee.cancelled += dropped.count
        shared.pointee.queuedCount = 0
        shared.pointee.levels.removeAll()
        shared.pointee.wakeAll()
        let threads = shared.pointee.threads + shared.pointee.exited
        shared.pointee.threads.removeAll()
        shared.pointee.exited.removeAll()
        unlock()
        dropped.sort { $0.sequence < $1.sequence }
        for entry in dropped { report(entry, .cancelled) }
        for thread in threads where !thread.isCurrent { thread.join() }
    }

    // MARK: Running

    private func workerLoop(_ parker: Parker) {
        let s = shared
        var followUp = FollowUp.none
        lock()
        while true {
            let entry: Entry
            if let next = s.pointee.ready.popFirst() {
                entry = next
            } else if s.pointee.mustExit {
                s.pointee.spinning -= 1
                s.pointee.workers -= 1
                if s.pointee.stopping { s.pointee.wakeAll() } else if s.pointee.hasWork { s.pointee.notify() }
                unlock()
                perform(followUp)
                lock()
                // Unless shutdown already took the thread list (and so joins this thread),
                // ask to be joined: an exited thread keeps its stack until someone does.
                if let index = s.pointee.threads.firstIndex(where: \.isCurrent) {
                    s.pointee.exited.append(s.pointee.threads.remove(at: index))
                }
                unlock()
                return
            } else if let next = s.pointee.claim(persisted: store != nil) {
                if next.state == .starting {
                    // Its running row goes to the log; it runs once the log confirms it, on
                    // whichever worker is free then. This one looks for more meanwhile.
                    unlock()
                    perform(followUp)
                    followUp = .none
                    writeRunningRow(next)
                    lock()
                    continue
                }
                entry = next
            } else if case .none = followUp {
                s.pointee.spinning -= 1
                parker.woken = false
                s.pointee.idle.append(parker)
                while !parker.woken { pthread_cond_wait(parker.cond, mutex) }
                continue
            } else {
                unlock()
                perform(followUp)
                followUp = .none
                lock()
                continue
            }
            entry.state = .running
            entry.runs += 1
            s.pointee.spinning -= 1
            if s.pointee.hasWork { s.pointee.notify() }
            unlock()
            perform(followUp)
            let (result, nanos) = execute(entry)
            lock()
            s.pointee.spinning += 1
            followUp = settleLocked(entry, result, runTime: nanos)
        }
    }

    /// The running row must be durable before the body runs: after a crash, recovery then
    /// knows the job may have had effects, and fails it instead of running it again.
    private func writeRunningRow(_ entry: Entry) {
        store!.submit(.updateJobState(id: entry.id, state: .running, attempts: entry.attempt, error: nil)) { [self] result in
            lock()
            shared.pointee.startingCount -= 1
            switch result {
            case .success:
                entry.state = .ready
                shared.pointee.ready.append(entry)
                shared.pointee.notify()
                unlock()
            case .failure(let error):
                shared.pointee.runningCount -= 1
                entry.state = .done
                entry.context = nil
                shared.pointee.jobs.removeValue(forKey: entry.key)
                shared.pointee.failed += 1
                if shared.pointee.stopping { shared.pointee.wakeAll() } else if shared.pointee.hasWork { shared.pointee.notify() }
                unlock()
                report(entry, .failed(error: "not run: its running row could not be written: \(error)"))
            }
        }
    }

    private func execute(_ entry: Entry) -> (RunResult, Int64) {
        let context = entry.context!
        let start = monotonicNanoseconds()
        let result: RunResult
        do {
            result = .finished(try entry.body(context))
        } catch {
            result = .threw(description: "\(error)", isCancellation: error is LaneJobCancelled)
        }
        return (result, monotonicNanoseconds() - start)
    }

    /// The body returned: free the slot, then end the job or set it aside for a retry.
    private func settleLocked(_ entry: Entry, _ result: RunResult, runTime: Int64) -> FollowUp {
        shared.pointee.runningCount -= 1
        shared.pointee.recordRunTime(runTime)
        let cancelled = entry.context!.isCancelled
        entry.context = nil
        let stopping = shared.pointee.stopping
        let outcome: LaneJobOutcome
        switch result {
        case .finished(let text):
            outcome = .finished(result: text)
            shared.pointee.completed += 1
        case .threw(let description, let isCancellation):
            if isCancellation || (cancelled && stopping) {
                outcome = .cancelled
                shared.pointee.cancelled += 1
            } else if let retry = entry.retry, entry.attempt < retry.maxAttempts, !cancelled, !stopping {
                return scheduleRetryLocked(entry, after: retry.backoff(after: entry.attempt), error: description)
            } else {
                outcome = .failed(error: description)
                shared.pointee.failed += 1
            }
        }
        shared.pointee.jobs.removeValue(forKey: entry.key)
        entry.state = .done
        return .report(entry, outcome)
    }

    /// Decides who carries on after a log write: the completion (on the writer thread), or
    /// the submitter when the write completed (or failed at once) before `submit` returned.
    private final class WriteHandoff: Sendable {
        private let state = Atomic<Int>(0)
        /// The submitter is past `submit`; `false` if the completion already ran.
        func submitterReturned() -> Bool {
            state.compareExchange(expected: 0, desired: 1, ordering: .acquiringAndReleasing).exchanged
        }
        /// The completion carries on; `false` if the submitter has not returned yet (it will).
        func completionCarriesOn() -> Bool {
            !state.compareExchange(expected: 0, desired: 2, ordering: .acquiringAndReleasing).exchanged
        }
    }

    /// Sets the job aside for its back-off. For a persisted lane its row goes back to queued,
    /// with the attempt count, so a restart during the back-off runs it again (it is
    /// idempotent) rather than losing it. The write is submitted under the mutex so that a
    /// shutdown, which cancels the job under the mutex, writes its cancelled row after this.
    private func scheduleRetryLocked(_ entry: Entry, after delay: Duration, error: String) -> FollowUp {
        guard let store else {
            entry.state = .retryWaiting
            return .arm(entry, delay)
        }
        entry.state = .retryWriting
        let handoff = WriteHandoff()
        store.submit(.updateJobState(id: entry.id, state: .queued, attempts: entry.attempt, error: error)) { [self] _ in
            guard handoff.completionCarriesOn() else { return }
            lock()
            guard entry.state == .retryWriting else {
                unlock()
                return
            }
            entry.state = .retryWaiting
            unlock()
            arm(entry, after: delay)
        }
        guard !handoff.submitterReturned() else { return .none }
        entry.state = .retryWaiting
        return .arm(entry, delay)
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
        lock()
        guard entry.state == .retryWaiting else {
            unlock()
            return
        }
        if shared.pointee.stopping {
            // Not reached while shutdown ends every waiting retry; never strand a job.
            shared.pointee.jobs.removeValue(forKey: entry.key)
            entry.state = .done
            shared.pointee.cancelled += 1
            unlock()
            report(entry, .cancelled)
            return
        }
        entry.attempt += 1
        _ = enqueueLocked(entry)
        unlock()
    }

    private func perform(_ followUp: FollowUp) {
        switch followUp {
        case .none: break
        case .report(let entry, let outcome): report(entry, outcome)
        case .arm(let entry, let delay): arm(entry, after: delay)
        }
    }

    /// Writes the terminal row (persisted lanes) and then reports the outcome.
    private func report(_ entry: Entry, _ outcome: LaneJobOutcome) {
        let completion = LaneJobCompletion(jobID: entry.id, attempts: entry.runs, outcome: outcome)
        let onComplete = entry.onComplete
        guard let store else {
            onComplete(completion)
            return
        }
        let record: LogRecord
        switch outcome {
        case .finished: record = .updateJobState(id: entry.id, state: .finished, attempts: entry.runs, error: nil)
        case .failed(let error): record = .updateJobState(id: entry.id, state: .failed, attempts: entry.runs, error: error)
        case .cancelled: record = .updateJobState(id: entry.id, state: .cancelled, attempts: nil, error: nil)
        }
        store.submit(record) { result in
            switch result {
            case .success:
                onComplete(completion)
            case .failure(let error):
                var failed = completion
                failed.outcome = .failed(error: "the job ended (\(outcome)) but its row could not be written: \(error)")
                onComplete(failed)
            }
        }
    }

    // MARK: Recovery

    /// Reconciles the log with this lane after a restart. `running` rows become `failed`
    /// ("lost on restart": the job may have had effects, so it is not run again); `queued`
    /// rows are rebuilt by `reconstruct` and queued again under the same row, or failed when
    /// it returns `nil`.
    /// - Returns: How many jobs were re-queued and how many were failed.
    @discardableResult
    func recover(reconstruct: (JobRecord) -> RecoveredJob?) async throws(SagaLaneError) -> (requeued: Int, failed: Int) {
        guard let store else { return (0, 0) }
        var failed = 0, requeued = 0
        do throws(SagaLaneError) {
            for row in try store.listRunningJobs(lane: name) {
                try await store.updateJobState(id: row.id, state: .failed, error: "lost on restart")
                failed += 1
            }
            for row in try store.listQueuedJobs(lane: name) {
                // A count the lane could not have written: a hand-edited or damaged row.
                guard row.attempts >= 0, row.attempts < Int(Int32.max) else {
                    throw SagaLaneError(.corrupt, "lane job '\(row.id)' has an impossible attempt count \(row.attempts): the log was edited or is damaged")
                }
                guard var rebuilt = reconstruct(row) else {
                    try await store.updateJobState(id: row.id, state: .failed, error: "lost on restart: cannot reconstruct")
                    failed += 1
                    continue
                }
                rebuilt.job.id = row.id
                if requeueRecovered(rebuilt.job, attempt: row.attempts + 1, onComplete: rebuilt.onComplete) { requeued += 1 }
            }
        } catch {
            throw SagaLaneError(error.code, "recovery of lane '\(name)' failed: \(error.message)", underlying: error)
        }
        if failed > 0 { diagnostics.warning("lane '\(name)': \(failed) job(s) lost on restart marked failed") }
        return (requeued, failed)
    }

    /// Queues a rebuilt job under its existing row. `false` if the lane already has that id.
    private func requeueRecovered(_ job: LaneJob, attempt: Int, onComplete: @escaping @Sendable (LaneJobCompletion) -> Void) -> Bool {
        let key = JobKey(job.id)
        lock()
        guard shared.pointee.jobs[key] == nil else {
            unlock()
            return false
        }
        let entry = Entry(job: job, key: key, onComplete: onComplete, attempt: attempt, state: .persisting)
        if shared.pointee.stopping {
            entry.state = .done
            shared.pointee.cancelled += 1
            unlock()
            report(entry, .cancelled)
            return true
        }
        shared.pointee.jobs[key] = entry
        _ = enqueueLocked(entry)
        unlock()
        return true
    }
}

/// Monotonic time in nanoseconds, for run times.
private func monotonicNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}
