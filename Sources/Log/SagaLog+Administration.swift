import SagaLaneSupport
import Synchronization

/// Listings, counts and maintenance for operators' tools (see `LogAdministration`). The reads
/// work on a read-only open too; `vacuum(olderThan:batchSize:progress:)` and `compact()` need
/// the log open for writing.
extension SagaLog {
    private func administration(_ what: String) throws(SagaLaneError) -> any LogAdministration {
        guard let storage = storage as? any LogAdministration else {
            throw SagaLaneError(.state, "this log's storage does not offer \(what)")
        }
        return storage
    }

    /// Up to `limit` sagas `filter` selects, in `order`, from the first past `after` (pass the
    /// last saga of a page to get the next), with their step counts.
    public func sagas(matching filter: SagaFilter = SagaFilter(), order: SagaOrder = .recentFirst, after: SagaRecord? = nil,
                      limit: Int) throws(SagaLaneError) -> [SagaSummary] {
        try administration("filtered listings").sagas(matching: filter, order: order, after: after, limit: limit)
    }

    /// How many sagas `filter` selects.
    public func countSagas(matching filter: SagaFilter = SagaFilter()) throws(SagaLaneError) -> Int {
        try administration("counts").countSagas(matching: filter)
    }

    /// Up to `limit` lane jobs `filter` selects, most recent activity first.
    public func jobs(matching filter: JobFilter = JobFilter(), limit: Int) throws(SagaLaneError) -> [JobRecord] {
        try administration("filtered listings").jobs(matching: filter, limit: limit)
    }

    /// How many lane jobs `filter` selects.
    public func countJobs(matching filter: JobFilter = JobFilter()) throws(SagaLaneError) -> Int {
        try administration("counts").countJobs(matching: filter)
    }

    /// Every lane with jobs in the log, by name, its jobs counted by state.
    public func laneSummaries() throws(SagaLaneError) -> [LaneSummary] {
        try administration("lane summaries").laneSummaries()
    }

    /// What `vacuum(olderThan:)` would delete now, counted; changes nothing (a read-only open
    /// can ask).
    public func vacuumEstimate(olderThan cutoff: Timestamp) throws(SagaLaneError) -> VacuumEstimate {
        try administration("vacuum estimates").vacuumEstimate(endedBefore: cutoff)
    }

    /// How the file uses its space: pages in use and free, the files' sizes.
    public func fileUsage() throws(SagaLaneError) -> LogFileUsage {
        try administration("file usage").fileUsage()
    }

    /// Deletes final sagas that ended before `cutoff`, with their steps, as `vacuum(olderThan:)`
    /// does, in transactions of at most `batchSize` sagas, each one its own turn of the writer
    /// thread (records submitted meanwhile commit between them). `progress` gets the running
    /// totals after each batch, on the caller's side.
    /// - Returns: What was deleted.
    /// - Throws: `.readOnly` on a read-only open; the error that stopped a batch (what earlier
    ///   batches deleted stays deleted).
    @discardableResult
    public nonisolated(nonsending) func vacuum(olderThan cutoff: Timestamp, batchSize: Int = 500,
                                               progress: (VacuumCounts) -> Void) async throws(SagaLaneError) -> VacuumCounts {
        guard batchSize > 0 else { throw SagaLaneError(.invalidArgument, "a vacuum batch holds at least one saga, not \(batchSize)") }
        _ = try administration("vacuum in batches")
        let batch = ResultBox()
        var total = VacuumCounts()
        while true {
            try await withWriter { (storage) throws(SagaLaneError) in
                guard let storage = storage as? any LogAdministration else { throw SagaLaneError(.state, "no vacuum in batches") }
                batch.set(try storage.deleteTerminalSagas(endedBefore: cutoff, limit: batchSize))
            }
            let deleted = batch.take()
            total.sagas += deleted.sagas
            total.steps += deleted.steps
            progress(total)
            if deleted.sagas < batchSize { return total }
        }
    }

    /// Rewrites the log's file without its free space (what deleted rows left), on the writer
    /// thread, then empties the write-ahead log. The rewrite is one transaction: a crash
    /// meanwhile leaves the file as it was. Other processes may read meanwhile (they see the
    /// log before or after); none writes, since this open holds the writer lock.
    /// - Returns: The file's use of space before and after.
    /// - Throws: `.readOnly` on a read-only open; `.full` when the disk has too little room
    ///   for the rewritten copy (nothing is changed then).
    public nonisolated(nonsending) func compact() async throws(SagaLaneError) -> (before: LogFileUsage, after: LogFileUsage) {
        let storage = try administration("compaction")
        let before = try storage.fileUsage()
        try await withWriter { (storage) throws(SagaLaneError) in
            guard let storage = storage as? any LogAdministration else { throw SagaLaneError(.state, "no compaction") }
            try storage.compact()
        }
        return (before, try storage.fileUsage())
    }
}

/// Carries a batch's counts from the writer thread back to the caller.
private final class ResultBox: Sendable {
    private let value = Mutex(VacuumCounts())

    func set(_ counts: VacuumCounts) { value.withLock { $0 = counts } }
    func take() -> VacuumCounts { value.withLock { $0 } }
}
