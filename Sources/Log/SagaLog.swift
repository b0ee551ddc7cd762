import SagaLaneSupport
import Synchronization

/// The durable log: every saga, step and lane job, in a `LogStorage` (an SQLite file by
/// default).
///
/// Writes go through one writer thread that commits whatever is pending as one batch (group
/// commit) and returns to each caller only once its record is durable. Reads go straight to
/// the storage, which never makes them wait behind a batch. An operator can also open the same
/// file read-only (`openReadOnly`) while the owner runs: that open starts no thread.
public final class SagaLog: Sendable {
    /// Where the records are kept.
    public let storage: any LogStorage
    private let writer: GroupCommitWriter?
    /// The lifecycle stream: every lifecycle event this log commits, for cursors reading it
    /// from a position (see `LifecycleFeed`). A read-only log's feed has what the file held
    /// when it opened, and nothing more comes.
    public let lifecycle: LifecycleFeed

    /// Puts a group-commit writer on `storage` (none for a read-only storage).
    /// - Throws: `.thread` when the writer thread cannot start; the storage is then closed.
    public init(storage: any LogStorage) throws(SagaLaneError) {
        self.storage = storage
        let feed = LifecycleFeed(last: storage.lastEventPosition) { (position, limit) throws(SagaLaneError) in
            try storage.lifecycleEvents(after: position, limit: limit)
        }
        lifecycle = feed
        if storage.isReadOnly {
            writer = nil
            feed.close()
        } else {
            do {
                writer = try GroupCommitWriter(storage: storage) { feed.publish($0) }
            } catch {
                storage.closeWriting()
                storage.closeReading()
                throw error
            }
        }
    }

    deinit { close() }

    /// Opens the SQLite log at `path` for writing, creating it if the file is missing or
    /// empty (see `SQLiteStorage.open`).
    public static func open(path: String, durability: Durability = .full, busyTimeoutMilliseconds: Int32 = 5000) throws(SagaLaneError) -> SagaLog {
        try open(path: path, durability: durability, busyTimeoutMilliseconds: busyTimeoutMilliseconds, create: true)
    }

    /// Opens the SQLite log at `path` for writing; when `create` is false, a missing or empty
    /// file is an error rather than a new log (see `SQLiteStorage.open`). `progress` hears how
    /// far a migration of an older log has got, on the calling thread.
    public static func open(path: String, durability: Durability = .full, busyTimeoutMilliseconds: Int32 = 5000,
                            create: Bool, progress: ProgressHandler? = nil) throws(SagaLaneError) -> SagaLog {
        try SagaLog(storage: SQLiteStorage.open(path: path, durability: durability, busyTimeoutMilliseconds: busyTimeoutMilliseconds,
                                                create: create, progress: progress))
    }

    /// Opens the SQLite log at `path` for reading only: no migration, no write, no thread.
    /// Works while another process has the log open for writing.
    public static func openReadOnly(path: String, busyTimeoutMilliseconds: Int32 = 5000) throws(SagaLaneError) -> SagaLog {
        try SagaLog(storage: SQLiteStorage.openReadOnly(path: path, busyTimeoutMilliseconds: busyTimeoutMilliseconds))
    }

    /// Opens a log that lives in memory and vanishes when closed; for tests and hosts that
    /// want sagas without durability.
    public static func openInMemory() throws(SagaLaneError) -> SagaLog {
        try SagaLog(storage: SQLiteStorage.openInMemory())
    }

    /// The file this log was opened on; `nil` in memory.
    public var path: String? { storage.path }

    /// Whether this log was opened read-only.
    public var isReadOnly: Bool { writer == nil }

    /// Writes what is pending, then closes the storage (an SQLite file: checkpointed into one
    /// self-contained file, its writer lock released). Idempotent; later calls fail with
    /// `.closed`.
    public func close() {
        writer?.stop()
        lifecycle.close()
        storage.closeReading()
    }

    // MARK: Writes

    /// Queues `record` for the next group commit. `completion` runs on the writer thread with
    /// the number of rows the record changed (or deleted), once the record is durable, or with
    /// the error that stopped it. It must return quickly.
    /// A record with a value over `maximumValueBytes` (or a saga id past `Int64.max`) fails
    /// at once with `.invalidArgument`, before it is queued.
    public func submit(_ record: LogRecord, completion: @escaping @Sendable (Result<Int, SagaLaneError>) -> Void) {
        guard let writer else {
            completion(.failure(SagaLaneError(.readOnly, "the log was opened read-only (for diagnostics) and cannot write")))
            return
        }
        do throws(SagaLaneError) { try record.validate() } catch {
            completion(.failure(error))
            return
        }
        writer.submit(.record(record), completion: completion)
    }

    /// Queues `records` for one group commit together, in order, each with its completion as
    /// `submit` gives it. A record that cannot be queued fails alone; the others are written.
    public func submit(together records: [(LogRecord, @Sendable (Result<Int, SagaLaneError>) -> Void)]) {
        guard let writer else {
            for (_, completion) in records {
                completion(.failure(SagaLaneError(.readOnly, "the log was opened read-only (for diagnostics) and cannot write")))
            }
            return
        }
        var items: [(GroupCommitWriter.Work, GroupCommitWriter.Completion)] = []
        items.reserveCapacity(records.count)
        for (record, completion) in records {
            do throws(SagaLaneError) {
                try record.validate()
                items.append((.record(record), completion))
            } catch {
                completion(.failure(error))
            }
        }
        writer.submit(together: items)
    }

    /// `submit(together:)` for two records, with no array to build for them.
    private func submit(_ first: LogRecord, _ firstDone: @escaping @Sendable (Result<Int, SagaLaneError>) -> Void,
                        then second: LogRecord, _ secondDone: @escaping @Sendable (Result<Int, SagaLaneError>) -> Void) {
        guard let writer else {
            let refused = SagaLaneError(.readOnly, "the log was opened read-only (for diagnostics) and cannot write")
            firstDone(.failure(refused))
            secondDone(.failure(refused))
            return
        }
        var firstValid = true, secondValid = true
        do throws(SagaLaneError) { try first.validate() } catch {
            firstValid = false
            firstDone(.failure(error))
        }
        do throws(SagaLaneError) { try second.validate() } catch {
            secondValid = false
            secondDone(.failure(error))
        }
        switch (firstValid, secondValid) {
        case (true, true): writer.submit(.record(first), completion: firstDone, then: .record(second), completion: secondDone)
        case (true, false): writer.submit(.record(first), completion: firstDone)
        case (false, true): writer.submit(.record(second), completion: secondDone)
        case (false, false): break
        }
    }

    /// Writes `first` and `then` in one group commit, in that order, and returns once both are
    /// durable or failed, with their results: for a record that nothing external may separate
    /// from the one before it (a step's success and the saga's next step). A record that
    /// cannot be queued (see `submit`) fails alone; the other is still written.
    public nonisolated(nonsending) func write(_ first: LogRecord, then second: LogRecord) async -> (Result<Int, SagaLaneError>, Result<Int, SagaLaneError>) {
        let pair = ResultPair()
        // Unchecked, as in `write(_:)`: each completion runs exactly once, so one resume.
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            pair.continuation = continuation
            submit(first, { @Sendable in pair.set(0, $0) }, then: second, { @Sendable in pair.set(1, $0) })
        }
        return pair.results
    }

    /// The two results of `write(_:then:)`: whichever completion comes second resumes the
    /// waiting task.
    private final class ResultPair: @unchecked Sendable {
        private let lock = Mutex<(Result<Int, SagaLaneError>?, Result<Int, SagaLaneError>?)>((nil, nil))
        /// Set before either record is submitted; read by the second completion only.
        var continuation: UnsafeContinuation<Void, Never>?

        func set(_ index: Int, _ result: Result<Int, SagaLaneError>) {
            let both = lock.withLock { state -> Bool in
                if index == 0 { state.0 = result } else { state.1 = result }
                return state.0 != nil && state.1 != nil
            }
            if both { continuation!.resume() }
        }

        var results: (Result<Int, SagaLaneError>, Result<Int, SagaLaneError>) { lock.withLock { ($0.0!, $0.1!) } }
    }

    /// Writes `record` and returns once it is durable. The caller stays on its own executor
    /// (an actor on the event loop resumes there directly, with no hop through the global
    /// pool): the wait is a continuation the writer thread resumes.
    @discardableResult
    public nonisolated(nonsending) func write(_ record: LogRecord) async throws(SagaLaneError) -> Int {
        // Unchecked: the writer calls every completion exactly once, and the checked form
        // costs an allocation per write on the hot path.
        let result = await withUnsafeContinuation { (continuation: UnsafeContinuation<Result<Int, SagaLaneError>, Never>) in
            submit(record) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }

    /// Writes `records` at once, so that they go in as few batches as the writer can make,
    /// and returns once each is durable or failed, with its result, in order.
    public nonisolated(nonsending) func writeAll(_ records: [LogRecord]) async -> [Result<Int, SagaLaneError>] {
        if records.isEmpty { return [] }
        let results = ConditionLock<(values: [Result<Int, SagaLaneError>?], left: Int)>((Array(repeating: nil, count: records.count), records.count))
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            for (index, record) in records.enumerated() {
                submit(record) { result in
                    let done = results.withLock { state -> Bool in
                        state.values[index] = result
                        state.left -= 1
                        return state.left == 0
                    }
                    if done { continuation.resume() }
                }
            }
        }
        return results.withLock { $0.values.map { $0! } }
    }

    /// Deletes terminal sagas (never `running` or `compensating`) that ended before `cutoff`;
    /// their steps go with them. Their ids stay used: `maxSagaID()` never goes down.
    /// - Returns: How many sagas were deleted.
    @discardableResult
    public nonisolated(nonsending) func vacuum(olderThan cutoff: Timestamp) async throws(SagaLaneError) -> Int {
        try await write(.vacuum(olderThan: cutoff))
    }

    /// Runs `body` on the writer thread between batches, with the storage. Records submitted
    /// meanwhile pile up and commit as one batch afterwards; tests use it to make batches
    /// exact, or to change how the storage behaves under a running log.
    public nonisolated(nonsending) func withWriter(_ body: @escaping @Sendable (any LogStorage) throws(SagaLaneError) -> Void) async throws(SagaLaneError) {
        guard let writer else { throw SagaLaneError(.readOnly, "the log was opened read-only") }
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<Int, SagaLaneError>, Never>) in
            writer.submit(.exclusive(body)) { continuation.resume(returning: $0) }
        }
        _ = try result.get()
    }

    /// Records (and other work) waiting for the writer thread.
    package var queuedWrites: Int { writer?.queuedCount ?? 0 }

    /// Group commits done and records written so far.
    package var commitCounts: (batches: Int, records: Int) {
        (writer?.batches.load(ordering: .relaxed) ?? 0, writer?.records.load(ordering: .relaxed) ?? 0)
    }

    /// How long the writer's commits took, part by part (benchmarks).
    package var commitProfile: CommitProfile { writer?.profile.withLock { $0 } ?? CommitProfile() }

    // MARK: Values

    /// The largest value the log stores, in bytes: a saga's input, a step's command or
    /// output, a reason, a lane job's metadata or error, any name or id. 16 MiB: far inside
    /// SQLite's own limit on a row (SQLITE_MAX_LENGTH, 1e9 by default), so a row of several
    /// values always fits, and small enough that one value never stalls the group commit
    /// behind it for long. C hosts see it as SL_MAX_VALUE_BYTES.
    public static let maximumValueBytes = 16 << 20

    /// Refuses a value of `byteCount` bytes over `maximumValueBytes`, naming it as `name`
    /// ("saga 3's input", "input_json") and the limit, never echoing it. Call it where the
    /// value enters, before anything is copied.
    /// - Throws: `.invalidArgument`.
    public static func checkValueSize(_ byteCount: Int, of name: @autoclosure () -> String) throws(SagaLaneError) {
        if byteCount > maximumValueBytes {
            throw SagaLaneError(.invalidArgument,
                                "\(name()) is \(byteCount) bytes, over the log's limit of \(maximumValueBytes) bytes per value")
        }
    }

    // MARK: Reads

    /// The highest saga id the log has ever held, or 0 when it never held one: deleting sagas
    /// (`vacuum`) never lowers it, so an id it returns was never handed out above it.
    /// - Throws: `.corrupt` when a saga row's id is negative (an id past `Int64.max`, which
    ///   sagalane never writes), naming the row.
    public func maxSagaID() throws(SagaLaneError) -> UInt64 { try storage.maxSagaID() }

    /// Up to `limit` sagas still in flight (`running` or `compensating`), each with its
    /// steps, by id from the first above `after`: what start-up recovery acts on. Page
    /// through them by passing the last id seen.
    public func unfinishedSagas(after: UInt64 = 0, limit: Int) throws(SagaLaneError) -> [SagaRecord] {
        try storage.sagas(in: SagaState.unfinished, after: after, limit: limit)
    }

    /// The sagas `unfinishedSagas(after:limit:)` reads, in outline: enough to mark them
    /// failed, read in a fraction of the time.
    public func unfinishedOutlines(after: UInt64 = 0, limit: Int) throws(SagaLaneError) -> [SagaOutline] {
        try storage.unfinishedOutlines(after: after, limit: limit)
    }

    /// Up to `limit` sagas an operator should look at — unfinished ones and those in
    /// `failed_compensation` — each with its steps, by id from the first above `after`.
    public func unresolvedSagas(after: UInt64 = 0, limit: Int) throws(SagaLaneError) -> [SagaRecord] {
        try storage.sagas(in: SagaState.unresolved, after: after, limit: limit)
    }

    /// Every unfinished saga (`running` or `compensating`), with its steps, by id.
    @available(*, deprecated, message: "recovery: unfinishedSagas(after:limit:); operators: unresolvedSagas(after:limit:)")
    public func unresolvedSagas() throws(SagaLaneError) -> [SagaRecord] {
        try storage.sagas(in: SagaState.unfinished, after: 0, limit: Int.max)
    }

    /// The steps of saga `sagaID`, whatever its state, by index.
    public func sagaSteps(sagaID: UInt64) throws(SagaLaneError) -> [StepRecord] { try storage.sagaSteps(sagaID: sagaID) }

    /// Saga `id` with its steps, if it exists.
    public func saga(id: UInt64) throws(SagaLaneError) -> SagaRecord? { try storage.saga(id: id) }

    /// Up to `limit` sagas, most recent first by `COALESCE(ended_at, started_at)`, with their
    /// step counts.
    public func snapshotRecent(limit: Int) throws(SagaLaneError) -> [SagaSummary] { try storage.recentSagas(limit: limit) }

    /// Lane `lane`'s queued jobs in dispatch order: higher priority first, then FIFO.
    public func listQueuedJobs(lane: String) throws(SagaLaneError) -> [JobRecord] { try storage.pendingJobs(lane: lane, state: .queued) }

    /// Lane `lane`'s running jobs.
    public func listRunningJobs(lane: String) throws(SagaLaneError) -> [JobRecord] { try storage.pendingJobs(lane: lane, state: .running) }

    /// Up to `limit` lane jobs, most recent activity first (the latest of their timestamps),
    /// of one lane and one state when those are given.
    public func recentJobs(lane: String? = nil, state: JobState? = nil, limit: Int) throws(SagaLaneError) -> [JobRecord] {
        try storage.recentJobs(lane: lane, state: state, limit: limit)
    }

    /// What the log holds, counted: for an operator's dashboard or a health check.
    public func stats() throws(SagaLaneError) -> LogStats { try storage.stats() }

    /// Lane job `id`, if it exists.
    public func job(id: String) throws(SagaLaneError) -> JobRecord? { try storage.job(id: id) }

    /// The storage's consistency check ("ok" when the database is sound).
    public func integrityCheck() throws(SagaLaneError) -> String { try storage.integrityCheck() }

    /// Up to `limit` lifecycle events after `position` (0: from the first), in order.
    public func lifecycleEvents(after position: UInt64, limit: Int) throws(SagaLaneError) -> [LifecycleEntry] {
        try storage.lifecycleEvents(after: position, limit: limit)
    }

    /// Saga `sagaID`'s lifecycle events and operator actions, oldest first.
    public func lifecycleEvents(sagaID: UInt64) throws(SagaLaneError) -> [LifecycleEntry] {
        try storage.lifecycleEvents(sagaID: sagaID)
    }

    /// The saga whose row holds idempotency key `key`.
    public func sagaID(idempotencyKey key: String) throws(SagaLaneError) -> UInt64? { try storage.sagaID(idempotencyKey: key) }

    /// Lane `lane`'s job whose row holds idempotency key `key`.
    public func job(lane: String, idempotencyKey key: String) throws(SagaLaneError) -> JobRecord? {
        try storage.job(lane: lane, idempotencyKey: key)
    }

    /// Up to `limit` operators' requests waiting for the next start, by saga id.
    public func requests(limit: Int) throws(SagaLaneError) -> [SagaRequest] { try storage.requests(limit: limit) }
}
