import CSQLite
import Glibc
import Synchronization

/// The log's single writer: one thread owning the write connection, committing whatever is
/// pending as one transaction, then telling every waiter its record is durable.
///
/// Every record is one SQL statement, and SQLite undoes a failed statement on its own, so a
/// record that breaks a rule of its own (a duplicate id, a missing row) fails alone and its
/// neighbours still commit. Any other error (a full disk, I/O, no memory) is about the database,
/// not the record: the whole batch is rolled back, and it, like a transaction that cannot begin
/// or commit, fails every record of the batch with that error. Nothing is reported durable that
/// is not. Vacuum and purge run as their own short transactions so the write lock is never held
/// for long.
final class GroupCommitWriter: @unchecked Sendable {
    typealias Completion = @Sendable (Result<Int, SagaLogError>) -> Void

    enum Work {
        case record(LogRecord)
        /// SQL run outside any batch transaction, for tests that need to change the write
        /// connection's behaviour (e.g. make it read-only).
        case maintenance(String)
        /// Runs on the writer thread between batches; tests use it to hold the writer while
        /// records pile up, so those records commit as one batch.
        case hold(@Sendable () -> Void)
    }

    private struct Pending {
        let work: Work
        let completion: Completion
    }

    private let connection: SQLiteConnection
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var pending: [Pending] = []
    private var stopping = false
    private var thread: OSThread?

    /// Batches committed and records written, for tests and benchmarks.
    let batches = Atomic<Int>(0)
    let records = Atomic<Int>(0)

    /// Records per bulk-delete transaction.
    static let bulkBatchSize = 500

    init(connection: SQLiteConnection) throws(ThreadStartError) {
        self.connection = connection
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(wake, nil)
        thread = try OSThread(name: "sagalane-log-writer", role: .logWriter) { [self] in runLoop() }
    }

    deinit {
        pthread_cond_destroy(wake)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        wake.deallocate()
    }

    /// Work waiting for the writer thread to take it.
    var queuedCount: Int {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return pending.count
    }

    /// Queues `work`; `completion` runs on the writer thread once it is durable or has failed.
    func submit(_ work: Work, completion: @escaping Completion) {
        pthread_mutex_lock(mutex)
        if stopping {
            pthread_mutex_unlock(mutex)
            completion(.failure(.closed()))
            return
        }
        pending.append(Pending(work: work, completion: completion))
        if pending.count == 1 { pthread_cond_signal(wake) }
        pthread_mutex_unlock(mutex)
    }

    /// Writes everything already queued, then stops the thread and closes the connection.
    func stop() {
        pthread_mutex_lock(mutex)
        let wasStopping = stopping
        stopping = true
        pthread_cond_signal(wake)
        pthread_mutex_unlock(mutex)
        if !wasStopping {
            thread?.join()
            thread = nil
            connection.close()
        }
    }

    private func runLoop() {
        while true {
            pthread_mutex_lock(mutex)
            while pending.isEmpty && !stopping { pthread_cond_wait(wake, mutex) }
            let batch = pending
            pending.removeAll(keepingCapacity: true)
            let done = stopping && batch.isEmpty
            pthread_mutex_unlock(mutex)
            if done { return }
            process(batch)
        }
    }

    private func process(_ batch: [Pending]) {
        var group: [Pending] = []
        for item in batch {
            if case .record(let record) = item.work, !record.isBulk {
                group.append(item)
                continue
            }
            // Everything else runs on its own, after the records queued before it.
            commit(group)
            group.removeAll()
            switch item.work {
            case .record(let record):
                item.completion(bulkDelete(record))
            case .maintenance(let sql):
                item.completion(Result { () throws(SagaLogError) in try connection.execute(sql); return 0 })
            case .hold(let body):
                body()
                item.completion(.success(0))
            }
        }
        commit(group)
    }

    /// One transaction for the whole group; see the type's comment for which errors fail one
    /// record and which fail the group. After a full disk or an I/O error SQLite may or may not
    /// have rolled the transaction back already; either way the group fails as a whole.
    private func commit(_ group: [Pending]) {
        guard !group.isEmpty else { return }
        var results: [Result<Int, SagaLogError>] = []
        results.reserveCapacity(group.count)
        do throws(SagaLogError) {
            try connection.run("BEGIN IMMEDIATE")
        } catch {
            for item in group { item.completion(.failure(error)) }
            return
        }
        // One timestamp per batch: the records commit together, and formatting it per record
        // costs more than the insert.
        let now = SQLValue.text(Timestamp.now().iso8601)
        for item in group {
            guard case .record(let record) = item.work else { continue }
            do throws(SagaLogError) {
                results.append(.success(try apply(record, now: now)))
            } catch {
                if connection.isAutocommit || !error.concernsOnlyItsRecord {
                    if !connection.isAutocommit { try? connection.execute("ROLLBACK") }
                    for item in group { item.completion(.failure(error)) }
                    return
                }
                results.append(.failure(error))
            }
        }
        do throws(SagaLogError) {
            try connection.run("COMMIT")
        } catch {
            try? connection.execute("ROLLBACK")
            for item in group { item.completion(.failure(error)) }
            return
        }
        batches.add(1, ordering: .relaxed)
        records.add(group.count, ordering: .relaxed)
        for (item, result) in zip(group, results) { item.completion(result) }
    }

    private func apply(_ record: LogRecord, now: SQLValue) throws(SagaLogError) -> Int {
        switch record {
        case .startSaga(let id, let name, let input):
            return try connection.run(
                "INSERT INTO saga (id, name, state, input_json, started_at) VALUES (?, ?, 'running', ?, ?)",
                [.int(Int64(bitPattern: id)), .text(name), .text(input), now])
        case .terminateSaga(let id, let state, let reason):
            return try expectRow(connection.run(
                "UPDATE saga SET state = ?, failure_reason = ?, ended_at = ? WHERE id = ?",
                [.text(state.rawValue), .optional(reason), now, .int(Int64(bitPattern: id))]), "saga \(id)")
        case .setSagaState(let id, let state):
            return try expectRow(connection.run(
                "UPDATE saga SET state = ? WHERE id = ?", [.text(state.rawValue), .int(Int64(bitPattern: id))]), "saga \(id)")
        case .startStep(let sagaID, let index, let name, let target, let command):
            return try connection.run(
                "INSERT INTO saga_step (saga_id, step_index, name, target, command_json, state, started_at) VALUES (?, ?, ?, ?, ?, 'pending', ?)",
                [.int(Int64(bitPattern: sagaID)), .int(Int64(index)), .text(name), .text(target), .text(command), now])
        case .finishStep(let sagaID, let index, let output):
            return try expectRow(connection.run(
                "UPDATE saga_step SET state = 'succeeded', output_json = ?, ended_at = ? WHERE saga_id = ? AND step_index = ?",
                [.text(output), now, .int(Int64(bitPattern: sagaID)), .int(Int64(index))]), "step \(index) of saga \(sagaID)")
        case .failStep(let sagaID, let index, let reason):
            return try expectRow(connection.run(
                "UPDATE saga_step SET state = 'failed', failure_reason = ?, ended_at = ? WHERE saga_id = ? AND step_index = ?",
                [.text(reason), now, .int(Int64(bitPattern: sagaID)), .int(Int64(index))]), "step \(index) of saga \(sagaID)")
        case .markFailedCompensation(let sagaID, let reason):
            // Keep the first failure's cause and add the new context after it, unless this very
            // reason is already recorded (so repeated recoveries do not grow the text).
            return try expectRow(connection.run(
                """
                UPDATE saga SET state = 'failed_compensation', ended_at = ?2,
                    failure_reason = CASE
                        WHEN failure_reason IS NULL OR failure_reason = '' THEN ?1
                        WHEN instr(failure_reason, ?1) > 0 THEN failure_reason
                        ELSE failure_reason || '; ' || ?1 END
                WHERE id = ?3
                """, [.text(reason), now, .int(Int64(bitPattern: sagaID))]), "saga \(sagaID)")
        case .enqueueJob(let id, let lane, let caller, let priority, let metadata):
            return try connection.run(
                "INSERT INTO lane_job (id, lane, caller, priority, metadata, state, enqueued_at) VALUES (?, ?, ?, ?, ?, 'queued', ?)",
                [.text(id), .text(lane), .text(caller), .int(Int64(priority)), .blob(metadata), now])
        case .updateJobState(let id, let state, let attempts, let error):
            return try expectRow(connection.run(
                Self.updateJobSQL(stamping: state),
                [.text(state.rawValue), now, attempts.map { .int(Int64($0)) } ?? .null, .optional(error), .text(id)]), "lane job '\(id)'")
        case .vacuum, .purgeFinishedJobs:
            preconditionFailure("bulk records are not applied inside a batch")
        }
    }

    /// The job update for each state, which stamps that state's own timestamp column.
    private static func updateJobSQL(stamping state: JobState) -> String {
        switch state {
        case .queued: "UPDATE lane_job SET state = ?, enqueued_at = ?, attempts = COALESCE(?, attempts), error = COALESCE(?, error) WHERE id = ?"
        case .running: "UPDATE lane_job SET state = ?, started_at = ?, attempts = COALESCE(?, attempts), error = COALESCE(?, error) WHERE id = ?"
        case .finished: "UPDATE lane_job SET state = ?, finished_at = ?, attempts = COALESCE(?, attempts), error = COALESCE(?, error) WHERE id = ?"
        case .cancelled: "UPDATE lane_job SET state = ?, cancelled_at = ?, attempts = COALESCE(?, attempts), error = COALESCE(?, error) WHERE id = ?"
        case .failed: "UPDATE lane_job SET state = ?, failed_at = ?, attempts = COALESCE(?, attempts), error = COALESCE(?, error) WHERE id = ?"
        }
    }

    private func expectRow(_ changed: Int, _ what: String) throws(SagaLogError) -> Int {
        if changed == 0 { throw SagaLogError(code: SagaLogError.notFoundCode, message: "no such \(what)") }
        return changed
    }

    /// Deletes in transactions of at most `bulkBatchSize` rows, so other writers (and readers
    /// waiting on a checkpoint) never wait long.
    private func bulkDelete(_ record: LogRecord) -> Result<Int, SagaLogError> {
        let sql: String
        let cutoff: Timestamp
        switch record {
        case .vacuum(let olderThan):
            cutoff = olderThan
            sql = """
                DELETE FROM saga WHERE id IN (SELECT id FROM saga
                    WHERE state IN ('completed','failed','failed_compensation','compensated') AND ended_at < ? LIMIT \(Self.bulkBatchSize))
                """
        case .purgeFinishedJobs(let olderThan):
            cutoff = olderThan
            sql = """
                DELETE FROM lane_job WHERE rowid IN (SELECT rowid FROM lane_job
                    WHERE (state = 'finished' OR state = 'cancelled' OR state = 'failed')
                    AND COALESCE(finished_at, cancelled_at, failed_at) < ? LIMIT \(Self.bulkBatchSize))
                """
        default:
            preconditionFailure("not a bulk record")
        }
        var total = 0
        while true {
            do throws(SagaLogError) {
                try connection.run("BEGIN IMMEDIATE")
                let deleted = try connection.run(sql, [.text(cutoff.iso8601)])
                try connection.run("COMMIT")
                batches.add(1, ordering: .relaxed)
                total += deleted
                if deleted < Self.bulkBatchSize { return .success(total) }
            } catch {
                try? connection.execute("ROLLBACK")
                return .failure(error)
            }
        }
    }
}
