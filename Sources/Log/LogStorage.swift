import SagaLaneSupport

/// Where the log keeps its records: the records it writes and the queries it answers.
///
/// `SagaLog` puts its group-commit writer on top of a storage, so the coordinator and the
/// lanes never see which one it is. `SQLiteStorage` (one SQLite file in WAL mode, or a
/// database in memory) is the embedded default; a server database can implement the same
/// protocol.
///
/// **Writing** is batched: the writer thread — the only caller of the write side — begins a
/// batch, applies every pending record, and commits. A record that breaks a rule of its own
/// fails alone, and its neighbours still commit; the storage must undo such a record without
/// losing the batch (SQLite undoes a failed statement by itself; a server database would use
/// a savepoint). Those failures carry `.exists`, `.notFound` or `.invalidArgument`. Any
/// other failure is about the database, not the record: the writer rolls the batch back and
/// fails every record in it.
///
/// **Reading** may happen on any thread; the storage serializes its own reads.
public protocol LogStorage: AnyObject, Sendable {
    /// The file the storage lives in, for messages and file-size statistics; `nil` in memory.
    var path: String? { get }
    /// Whether this storage was opened for reading only (it then refuses every write).
    var isReadOnly: Bool { get }

    // MARK: Writing (the writer thread only)

    /// Begins the batch the next records go into; all of them are stamped with `now`.
    func beginBatch(at now: Timestamp) throws(SagaLaneError)
    /// Applies `record` (never a bulk deletion) inside the open batch.
    /// - Returns: How many rows it changed.
    func apply(_ record: LogRecord) throws(SagaLaneError) -> Int
    /// Whether the batch is still open: a storage may have aborted it by itself after an error.
    var isBatchOpen: Bool { get }
    /// Makes the batch durable.
    func commitBatch() throws(SagaLaneError)
    /// Undoes whatever the open batch holds; nothing if none is open.
    func rollbackBatch()
    /// Deletes at most `limit` rows `deletion` selects that ended before `cutoff`, in one
    /// transaction of its own. Deleting sagas keeps their ids used (`maxSagaID`), in that
    /// same transaction.
    /// - Returns: How many were deleted; fewer than `limit` means none is left.
    func delete(_ deletion: LogDeletion, endedBefore cutoff: Timestamp, limit: Int) throws(SagaLaneError) -> Int
    /// Closes the write side. The writer calls it once it has written everything; what the
    /// storage keeps (a file) must then be complete on its own.
    func closeWriting()
    /// The lifecycle events the batch just committed wrote, in position order; each batch's
    /// are handed out once. Empty after a rollback.
    func takeCommittedEvents() -> [LifecycleEntry]
    /// Called when a batch is done and nothing else is queued: a moment for upkeep that
    /// would otherwise hold up a batch. The default does nothing.
    func writerIdle()

    // MARK: Reading (any thread)

    /// Closes the read side; later reads fail with `.closed`.
    func closeReading()
    /// The highest saga id the log has ever held (deleted sagas' ids included), or 0.
    /// - Throws: `.corrupt` when a stored id is past `Int64.max`.
    func maxSagaID() throws(SagaLaneError) -> UInt64
    /// Up to `limit` sagas in one of `states`, each with its steps, by id from the first
    /// above `after`.
    func sagas(in states: [SagaState], after: UInt64, limit: Int) throws(SagaLaneError) -> [SagaRecord]
    /// Up to `limit` unfinished sagas in outline (their pending steps only), by id from the
    /// first above `after`: the same page `sagas(in: SagaState.unfinished, …)` reads.
    func unfinishedOutlines(after: UInt64, limit: Int) throws(SagaLaneError) -> [SagaOutline]
    /// Saga `id` with its steps, if it exists.
    func saga(id: UInt64) throws(SagaLaneError) -> SagaRecord?
    /// The steps of saga `sagaID`, by index.
    func sagaSteps(sagaID: UInt64) throws(SagaLaneError) -> [StepRecord]
    /// Up to `limit` sagas, most recent first (by when they ended, else started).
    func recentSagas(limit: Int) throws(SagaLaneError) -> [SagaSummary]
    /// Lane `lane`'s jobs in `state` (`queued` or `running`), in dispatch order: higher
    /// priority first, then first queued.
    func pendingJobs(lane: String, state: JobState) throws(SagaLaneError) -> [JobRecord]
    /// Up to `limit` lane jobs, most recent activity first, of one lane and one state when
    /// those are given.
    func recentJobs(lane: String?, state: JobState?, limit: Int) throws(SagaLaneError) -> [JobRecord]
    /// Lane job `id`, if it exists.
    func job(id: String) throws(SagaLaneError) -> JobRecord?
    /// What the log holds, counted.
    func stats() throws(SagaLaneError) -> LogStats
    /// The storage's own consistency check: "ok" when sound, else what is wrong.
    func integrityCheck() throws(SagaLaneError) -> String

    // MARK: The lifecycle stream, keys, requests (any thread)

    /// The highest lifecycle position the storage ever used (deleted events included), or 0;
    /// read when the storage opened, then kept up to date by the writer.
    var lastEventPosition: UInt64 { get }
    /// Up to `limit` lifecycle events after `position`, in position order.
    func lifecycleEvents(after position: UInt64, limit: Int) throws(SagaLaneError) -> [LifecycleEntry]
    /// Saga `sagaID`'s lifecycle events, in position order.
    func lifecycleEvents(sagaID: UInt64) throws(SagaLaneError) -> [LifecycleEntry]
    /// The saga started with idempotency key `key`, if its row exists.
    func sagaID(idempotencyKey key: String) throws(SagaLaneError) -> UInt64?
    /// Lane `lane`'s job submitted with idempotency key `key`, if its row exists.
    func job(lane: String, idempotencyKey key: String) throws(SagaLaneError) -> JobRecord?
    /// Up to `limit` pending operator requests, by saga id.
    func requests(limit: Int) throws(SagaLaneError) -> [SagaRequest]
}

extension LogStorage {
    public func writerIdle() {}
}
