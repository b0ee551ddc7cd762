import SagaLaneLog
import SagaLaneSupport

// What a lane keeps about its jobs: each job's entry, and the state the lane's lock guards.

extension LaneCore {
    /// One submitted job, from submission to its outcome. Its mutable fields are guarded by
    /// the lane's lock.
    final class Entry: @unchecked Sendable {
        enum State {
            /// Its queued row is being written (persisted lanes).
            case persisting
            /// Queued, waiting for a slot.
            case queued
            /// Taken out of the queue by a cancel; its cancelled row is being written.
            case cancelling
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
            /// Ended; nothing touches it again.
            case done
        }

        /// Only the fields the lane uses once the job is submitted (the log keeps the caller
        /// and metadata): each field copied in costs a retain now and a release later.
        let key: JobKey
        let idempotencyKey: String?
        let priority: Int
        let retry: RetryPolicy?
        let body: @Sendable (LaneJobContext) throws -> String
        let onComplete: @Sendable (LaneJobCompletion) -> Void
        /// Its place in the queue, while queued; afterwards, the order shutdown reports in.
        var ticket: LaneQueue<Entry>.Ticket?
        var attempt: Int
        /// Runs made so far (earlier processes' included, for a recovered job).
        var runs: Int
        var state: State
        /// The current attempt's context, while the job holds a slot.
        var context: LaneJobContext?
        /// A cancel arrived while one of its rows was being written: the write's completion
        /// ends the job instead of moving it on.
        var cancelRequested = false
        /// Cancels waiting for the job's cancelled row to be durable.
        var cancelWaiters: [CancelWaiter] = []

        var id: String { key.id }

        init(job: LaneJob, key: JobKey, onComplete: @escaping @Sendable (LaneJobCompletion) -> Void, attempt: Int, state: State) {
            self.key = key
            idempotencyKey = job.idempotencyKey
            priority = job.priority
            retry = job.retry
            body = job.body
            self.onComplete = onComplete
            self.attempt = attempt
            runs = attempt - 1
            self.state = state
        }
    }

    typealias CancelWaiter = @Sendable (Result<Void, SagaLaneError>) -> Void

    /// A job that ended, to be told once the lock is released: its terminal row is written
    /// (unless it already was), then its completion runs, then any cancel waiting for it. The
    /// entry is out of the lane's books by then, so nothing changes its fields any more.
    struct Ending {
        let entry: Entry
        let outcome: LaneJobOutcome
        let rowWritten: Bool
    }

    /// What to do once the lock is released.
    enum Deferred {
        case none
        case end(Ending)
        case writeRunningRow(Entry)
        case writeRetryRow(Entry, Duration, error: String)
        case arm(Entry, Duration)
        case writeCancelledRow(Entry)
    }
}

/// Everything the lane's lock guards.
struct LaneState {
    /// Every job the lane holds: persisting, queued, cancelling, holding a slot, or between
    /// retries.
    var jobs: [JobKey: LaneCore.Entry] = [:]
    var queue = LaneQueue<LaneCore.Entry>()
    /// Jobs holding a slot: starting, ready or running. A job takes a slot only while fewer
    /// than `maxConcurrent` are held.
    var running = 0
    /// Running rows being written.
    var starting = 0
    /// Jobs whose running row is durable, in the order the log confirmed them.
    var ready = Ring<LaneCore.Entry>()
    var maxConcurrent: Int
    var workers = WorkerRoster()
    var stopping = false
    var recovery = RecoveryWindow.open
    /// While recovering: the ids of the queued rows still to be rebuilt.
    var reservedIDs: Set<JobKey> = []
    /// The idempotency keys of the jobs the lane holds, with each job's id.
    var keys: [ExactName: JobKey] = [:]
    var completed = 0, failed = 0, cancelled = 0
    var runTimes = RunTimeWindow()

    init(maxConcurrent: Int) {
        self.maxConcurrent = maxConcurrent
    }

    /// The one way a job ends: out of the lane's books and counted. The caller hands the
    /// result to `LaneCore.deliver` once the lock is released.
    mutating func end(_ entry: LaneCore.Entry, _ outcome: LaneJobOutcome, rowWritten: Bool = false) -> LaneCore.Ending {
        jobs.removeValue(forKey: entry.key)
        releaseKey(of: entry)
        entry.state = .done
        entry.context = nil
        switch outcome {
        case .finished: completed += 1
        case .failed: failed += 1
        case .cancelled: cancelled += 1
        }
        return LaneCore.Ending(entry: entry, outcome: outcome, rowWritten: rowWritten)
    }

    /// The job no longer holds its idempotency key in memory (a persisted lane's row still does).
    mutating func releaseKey(of entry: LaneCore.Entry) {
        guard let name = entry.idempotencyKey else { return }
        let key = ExactName(name)
        if keys[key] == entry.key { keys.removeValue(forKey: key) }
    }

    /// Whether a worker would find something to do.
    var hasWork: Bool {
        !ready.isEmpty || (!stopping && !queue.isEmpty && running < maxConcurrent)
    }
}

/// When `recover` may run: once, before the lane takes its first job, so the rows it reads
/// are all an earlier process's.
enum RecoveryWindow {
    case open, running, closed
}

/// A job id as a dictionary key, hashed once with a cheap byte hash: hashing the id string
/// with `Hasher` on every insert and removal costs more than the rest of the queue work.
struct JobKey: Hashable, Sendable {
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

    static func == (a: JobKey, b: JobKey) -> Bool { a.hash == b.hash && a.id.isExactly(b.id) }
    func hash(into hasher: inout Hasher) { hasher.combine(hash) }
}

/// A waiter's side of `submitAndWait`: whether it gave up, and its job once the lane holds it,
/// so that giving up reaches the job however the two race.
final class WaiterLink: Sendable {
    private let state = ConditionLock<(gaveUp: Bool, entry: LaneCore.Entry?)>((false, nil))

    /// Called under the lane's lock as the job is admitted: `false` if the waiter already gave up.
    func admit(_ entry: LaneCore.Entry) -> Bool {
        state.withLock { state in
            if state.gaveUp { return false }
            state.entry = entry
            return true
        }
    }

    /// The waiter gives up. Returns the job to interrupt, if the lane holds it.
    func giveUp() -> LaneCore.Entry? {
        state.withLock { state in
            state.gaveUp = true
            return state.entry
        }
    }
}
