import SagaLaneSupport
import Synchronization

/// The log's single writer: one thread owning the storage's write side, committing whatever
/// is pending as one batch, then telling every waiter its record is durable.
///
/// A record that breaks a rule of its own (a duplicate id, a missing row, a value too big)
/// fails alone and its neighbours still commit. Any other error (a full disk, I/O, no memory)
/// is about the database, not the record: the whole batch is rolled back, and it, like a batch
/// that cannot begin or commit, fails every record of the batch with that error. Nothing is
/// reported durable that is not. Bulk deletions run as their own short transactions so the
/// write lock is never held for long.
final class GroupCommitWriter: Sendable {
    typealias Completion = @Sendable (Result<Int, SagaLaneError>) -> Void

    enum Work: Sendable {
        case record(LogRecord)
        /// Runs on the writer thread between batches, with the storage: tests use it to hold
        /// the writer while records pile up (so they commit as one batch), or to change how the
        /// write connection behaves.
        case exclusive(@Sendable (any LogStorage) throws(SagaLaneError) -> Void)
    }

    private struct Pending {
        let work: Work
        let completion: Completion
        /// A record that goes into a group commit (not a bulk deletion, not exclusive work).
        /// Worked out once, when queued: asking the work would copy its record each time.
        let isPlainRecord: Bool

        init(work: Work, completion: @escaping Completion) {
            self.work = work
            self.completion = completion
            if case .record(let record) = work { isPlainRecord = record.deletion == nil } else { isPlainRecord = false }
        }
    }

    private struct Queue {
        var pending: [Pending] = []
        var stopping = false
        var thread: OSThread?
    }

    private let storage: any LogStorage
    private let queue = ConditionLock(Queue())
    /// Told, on the writer thread, the lifecycle events of each batch just committed, before
    /// the batch's records are reported durable.
    private let committed: @Sendable ([LifecycleEntry]) -> Void

    /// Batches committed and records written, for tests and benchmarks.
    let batches = Atomic<Int>(0)
    let records = Atomic<Int>(0)
    /// How long each part of the batches took; filled on the writer thread.
    let profile = Mutex(CommitProfile())

    /// Rows per bulk-delete transaction.
    static let bulkBatchSize = 500

    init(storage: any LogStorage, committed: @escaping @Sendable ([LifecycleEntry]) -> Void = { _ in }) throws(SagaLaneError) {
        self.storage = storage
        self.committed = committed
        let thread = try OSThread(name: "sagalane-log-writer", role: .logWriter) { [self] in runLoop() }
        queue.withLock { $0.thread = thread }
    }

    /// Work waiting for the writer thread to take it.
    var queuedCount: Int { queue.withLock { $0.pending.count } }

    /// Queues `work`; `completion` runs on the writer thread once it is durable or has failed.
    func submit(_ work: Work, completion: @escaping Completion) {
        let (accepted, wake) = queue.withLock { queue -> (Bool, Bool) in
            if queue.stopping { return (false, false) }
            queue.pending.append(Pending(work: work, completion: completion))
            return (true, queue.pending.count == 1)
        }
        if !accepted { completion(.failure(.logClosed())) } else if wake { queue.condition.signal() }
    }

    /// Queues several records at once: they go into one batch together (the writer takes
    /// what is queued as a whole), in this order.
    func submit(together items: [(Work, Completion)]) {
        let (accepted, wake) = queue.withLock { queue -> (Bool, Bool) in
            if queue.stopping { return (false, false) }
            let wasEmpty = queue.pending.isEmpty
            for (work, completion) in items { queue.pending.append(Pending(work: work, completion: completion)) }
            return (true, wasEmpty)
        }
        if !accepted { for (_, completion) in items { completion(.failure(.logClosed())) } } else if wake { queue.condition.signal() }
    }

    /// `submit(together:)` for two items, with no array to build for them.
    func submit(_ first: Work, completion firstDone: @escaping Completion, then second: Work, completion secondDone: @escaping Completion) {
        let (accepted, wake) = queue.withLock { queue -> (Bool, Bool) in
            if queue.stopping { return (false, false) }
            let wasEmpty = queue.pending.isEmpty
            queue.pending.append(Pending(work: first, completion: firstDone))
            queue.pending.append(Pending(work: second, completion: secondDone))
            return (true, wasEmpty)
        }
        if !accepted {
            firstDone(.failure(.logClosed()))
            secondDone(.failure(.logClosed()))
        } else if wake {
            queue.condition.signal()
        }
    }

    /// Writes everything already queued, then stops the thread and closes the storage's write
    /// side.
    func stop() {
        let thread = queue.withLock { queue -> OSThread? in
            if queue.stopping { return nil }
            queue.stopping = true
            defer { queue.thread = nil }
            return queue.thread
        }
        queue.condition.signal()
        guard let thread else { return }
        thread.join()
        storage.closeWriting()
    }

    private func runLoop() {
        var batch: [Pending] = []
        /// Takes what is queued; true when the writer is to stop, everything written.
        func take(_ queue: inout Queue) -> Bool {
            swap(&batch, &queue.pending)
            return queue.stopping && batch.isEmpty
        }
        while true {
            // Under load there is always a batch; only a writer about to wait is idle, and the
            // storage has that moment before it does.
            var done = queue.withLock(take)
            if batch.isEmpty && !done {
                storage.writerIdle()
                done = queue.withLock(until: { !$0.pending.isEmpty || $0.stopping }, take)
            }
            if done { return }
            process(batch)
            batch.removeAll(keepingCapacity: true)
        }
    }

    private func process(_ batch: [Pending]) {
        // Runs of plain records commit as slices of the batch, so no item is copied.
        var groupStart = batch.startIndex
        for index in batch.indices where !batch[index].isPlainRecord {
            // Everything else runs on its own, after the records queued before it.
            let item = batch[index]
            commit(batch[groupStart..<index])
            groupStart = index + 1
            switch item.work {
            case .record(let record):
                let (deletion, cutoff) = record.deletion!
                item.completion(bulkDelete(deletion, endedBefore: cutoff))
            case .exclusive(let body):
                item.completion(Result { () throws(SagaLaneError) in try body(storage); return 0 })
            }
        }
        commit(batch[groupStart...])
    }

    /// One batch for the whole group; see the type's comment for which errors fail one record
    /// and which fail the group. After a full disk or an I/O error the storage may or may not
    /// have aborted the batch already; either way the group fails as a whole.
    private func commit(_ group: ArraySlice<Pending>) {
        guard !group.isEmpty else { return }
        var results: [Result<Int, SagaLaneError>] = []
        results.reserveCapacity(group.count)
        let started = monotonicMicros()
        do throws(SagaLaneError) {
            try storage.beginBatch(at: Timestamp.now())
        } catch {
            for item in group { item.completion(.failure(error)) }
            return
        }
        let begun = monotonicMicros()
        // By index: a loop over the items would copy each one, its record and closure.
        for index in group.indices {
            guard case .record(let record) = group[index].work else { continue }
            do throws(SagaLaneError) {
                results.append(.success(try storage.apply(record)))
            } catch {
                if !storage.isBatchOpen || !Self.concernsOnlyItsRecord(error) {
                    storage.rollbackBatch()
                    for item in group { item.completion(.failure(error)) }
                    return
                }
                results.append(.failure(error))
            }
        }
        let applied = monotonicMicros()
        do throws(SagaLaneError) {
            try storage.commitBatch()
        } catch {
            storage.rollbackBatch()
            for item in group { item.completion(.failure(error)) }
            return
        }
        let durable = monotonicMicros()
        batches.add(1, ordering: .relaxed)
        records.add(group.count, ordering: .relaxed)
        let events = storage.takeCommittedEvents()
        if !events.isEmpty { committed(events) }
        for (index, result) in zip(group.indices, results) { group[index].completion(result) }
        let told = monotonicMicros()
        profile.withLock { profile in
            profile.begin.add(begun - started)
            profile.apply.add(applied - begun)
            profile.commit.add(durable - applied)
            profile.batch.add(told - started)
            profile.records.add(group.count)
        }
    }

    /// Whether a failed record is refused alone (a rule of its own) rather than the batch.
    private static func concernsOnlyItsRecord(_ error: SagaLaneError) -> Bool {
        error.code == .exists || error.code == .notFound || error.code == .invalidArgument
    }

    /// Deletes in transactions of at most `bulkBatchSize` rows, so other writers (and readers
    /// waiting on a checkpoint) never wait long.
    private func bulkDelete(_ deletion: LogDeletion, endedBefore cutoff: Timestamp) -> Result<Int, SagaLaneError> {
        var total = 0
        while true {
            do throws(SagaLaneError) {
                let deleted = try storage.delete(deletion, endedBefore: cutoff, limit: Self.bulkBatchSize)
                batches.add(1, ordering: .relaxed)
                total += deleted
                if deleted < Self.bulkBatchSize { return .success(total) }
            } catch {
                return .failure(error)
            }
        }
    }
}
