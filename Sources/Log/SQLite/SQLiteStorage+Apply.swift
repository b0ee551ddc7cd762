import CSQLite
import SagaLaneJSON
import SagaLaneSupport

/// Applying records inside the writer's batch, and the lifecycle events they append.
extension SQLiteStorage {
    public func apply(_ record: LogRecord) throws(SagaLaneError) -> Int {
        let c = try writeConnection()
        let now = batchTime
        switch record {
        case .startSaga(let id, let name, let input, let key, let event):
            if let key, let holder = try c.query(literal: "SELECT id FROM saga WHERE idempotency_key = ?", [.text(key)], { $0.int(0) }).first {
                throw SagaLaneError(.exists, "the idempotency key is taken by saga \(holder)",
                                    underlying: IdempotencyKeyTaken(sagaID: UInt64(bitPattern: holder)))
            }
            let changed = try c.run(literal:
                "INSERT INTO saga (id, name, state, input_json, started_at, idempotency_key) VALUES (?, ?, 'running', ?, ?, ?)",
                [.int(Int64(bitPattern: id)), .text(name), .text(input), now, .optional(key)])
            if let event { try appendEvent(event, sagaID: id, on: c) }
            return changed
        case .terminateSaga(let id, let state, let reason, let event):
            let changed = try expectRow(c.run(literal:
                "UPDATE saga SET state = ?, failure_reason = ?, ended_at = ? WHERE id = ?",
                [.text(state.rawValue), .optional(reason), now, .int(Int64(bitPattern: id))]), "saga \(id)")
            if let event { try appendEvent(event, sagaID: id, on: c) }
            return changed
        case .setSagaState(let id, let state, let reason, let event):
            let changed = try expectRow(c.run(literal:
                "UPDATE saga SET state = ?1, failure_reason = CASE WHEN ?2 IS NULL THEN failure_reason ELSE NULLIF(?2, '') END, ended_at = ?3 WHERE id = ?4",
                [.text(state.rawValue), .optional(reason), state.isUnfinished ? .null : now, .int(Int64(bitPattern: id))]), "saga \(id)")
            if let event { try appendEvent(event, sagaID: id, on: c) }
            return changed
        case .startStep(let sagaID, let index, let name, let target, let command, let compensates, let spec, let cause):
            return try c.run(literal:
                """
                INSERT INTO saga_step (saga_id, step_index, name, target, command_json, state, started_at, compensates, spec_json, cause_json)
                VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)
                """,
                [.int(Int64(bitPattern: sagaID)), .int(Int64(index)), .text(name), .text(target), .text(command), now,
                 compensates.map { .int(Int64($0)) } ?? .null, .optional(spec), .optional(cause)])
        case .finishStep(let sagaID, let index, let output):
            return try expectRow(c.run(literal:
                "UPDATE saga_step SET state = 'succeeded', output_json = ?, ended_at = ? WHERE saga_id = ? AND step_index = ?",
                [.text(output), now, .int(Int64(bitPattern: sagaID)), .int(Int64(index))]), "step \(index) of saga \(sagaID)")
        case .failStep(let sagaID, let index, let reason):
            return try expectRow(c.run(literal:
                "UPDATE saga_step SET state = 'failed', failure_reason = ?, ended_at = ? WHERE saga_id = ? AND step_index = ?",
                [.text(reason), now, .int(Int64(bitPattern: sagaID)), .int(Int64(index))]), "step \(index) of saga \(sagaID)")
        case .retryStep(let sagaID, let index, let attempt, let reason):
            // Only a step still pending: one that was answered meanwhile keeps its outcome.
            return try c.run(literal:
                """
                UPDATE saga_step SET attempts = ?1, failure_reason = CASE
                    WHEN failure_reason IS NULL OR failure_reason = '' THEN ?2 ELSE failure_reason || '; ' || ?2 END
                WHERE saga_id = ?3 AND step_index = ?4 AND state = 'pending'
                """, [.int(Int64(attempt)), .text(reason), .int(Int64(bitPattern: sagaID)), .int(Int64(index))])
        case .compensateStep(let sagaID, let index, let compensated, let output):
            let changed = try expectRow(c.run(literal:
                "UPDATE saga_step SET state = 'succeeded', output_json = ?, ended_at = ? WHERE saga_id = ? AND step_index = ?",
                [.text(output), now, .int(Int64(bitPattern: sagaID)), .int(Int64(index))]), "step \(index) of saga \(sagaID)")
            return try changed + expectRow(c.run(literal:
                "UPDATE saga_step SET state = 'compensated' WHERE saga_id = ? AND step_index = ?",
                [.int(Int64(bitPattern: sagaID)), .int(Int64(compensated))]), "step \(compensated) of saga \(sagaID)")
        case .markFailedCompensation(let sagaID, let reason, let event):
            // Keep the first failure's cause and add the new context after it, unless this very
            // reason is already recorded (so repeated recoveries do not grow the text).
            let changed = try expectRow(c.run(literal:
                """
                UPDATE saga SET state = 'failed_compensation', ended_at = ?2,
                    failure_reason = CASE
                        WHEN failure_reason IS NULL OR failure_reason = '' THEN ?1
                        WHEN instr(failure_reason, ?1) > 0 THEN failure_reason
                        ELSE failure_reason || '; ' || ?1 END
                WHERE id = ?3
                """, [.text(reason), now, .int(Int64(bitPattern: sagaID))]), "saga \(sagaID)")
            if let event { try appendEvent(event, sagaID: sagaID, on: c) }
            return changed
        case .markFailedCompensations(let marks, let type, let recovered):
            return try inSavepoint(on: c) { () throws(SagaLaneError) in try markFailed(marks, eventType: type, recovered: recovered, on: c) }
        case .note(let sagaID, let event):
            try appendEvent(event, sagaID: sagaID, on: c)
            return 1
        case .putRequest(let sagaID, let action, let note, let event):
            let changed = try c.run(literal:
                """
                INSERT INTO saga_request (saga_id, action, note, requested_at) VALUES (?, ?, ?, ?)
                ON CONFLICT (saga_id) DO UPDATE SET action = excluded.action, note = excluded.note, requested_at = excluded.requested_at
                """, [.int(Int64(bitPattern: sagaID)), .text(action.rawValue), .optional(note), now])
            if let event { try appendEvent(event, sagaID: sagaID, on: c) }
            return changed
        case .deleteRequest(let sagaID):
            return try c.run(literal: "DELETE FROM saga_request WHERE saga_id = ?", [.int(Int64(bitPattern: sagaID))])
        case .enqueueJob(let id, let lane, let caller, let priority, let metadata, let key):
            if let key, let holder = try c.query(literal: "SELECT id FROM lane_job WHERE lane = ? AND idempotency_key = ?", [.text(lane), .text(key)],
                                                 { $0.text(0) }).first {
                throw SagaLaneError(.exists, "the idempotency key is taken by job '\(holder)' of lane '\(lane)'",
                                    underlying: IdempotencyKeyTaken(jobID: holder))
            }
            return try c.run(literal:
                "INSERT INTO lane_job (id, lane, caller, priority, metadata, state, enqueued_at, idempotency_key) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?)",
                [.text(id), .text(lane), .text(caller), .int(Int64(priority)), .blob(metadata), now, .optional(key)])
        case .updateJobState(let id, let state, let attempts, let error):
            return try expectRow(c.run(literal:
                Self.updateJobSQL(stamping: state),
                [.text(state.rawValue), now, attempts.map { .int(Int64($0)) } ?? .null, .optional(error), .text(id)]), "lane job '\(id)'")
        case .all(let records):
            return try applyAll(records, on: c)
        case .vacuum, .purgeFinishedJobs:
            throw SagaLaneError(.invalidArgument, "a bulk deletion is not applied inside a batch")
        }
    }

    /// Applies `records` inside a savepoint, so that one failing undoes those before it (and
    /// the lifecycle events they appended) while the rest of the batch stands.
    private func applyAll(_ records: [LogRecord], on c: SQLiteConnection) throws(SagaLaneError) -> Int {
        try inSavepoint(on: c) { () throws(SagaLaneError) in
            var changed = 0
            for record in records { changed += try apply(record) }
            return changed
        }
    }

    /// Runs `body` inside a savepoint: when it throws, what it changed and the events it
    /// appended are undone, and the rest of the batch stands.
    private func inSavepoint(on c: SQLiteConnection, _ body: () throws(SagaLaneError) -> Int) throws(SagaLaneError) -> Int {
        let position = assignedEventPosition, events = batchEvents.count
        try c.run("SAVEPOINT sagalane_all")
        do throws(SagaLaneError) {
            let changed = try body()
            try c.run("RELEASE sagalane_all")
            return changed
        } catch {
            // After an error that ended the transaction there is no savepoint left to undo.
            if !c.isAutocommit {
                try? c.execute("ROLLBACK TO sagalane_all")
                try? c.execute("RELEASE sagalane_all")
            }
            assignedEventPosition = position
            batchEvents.removeSubrange(events...)
            throw error
        }
    }

    /// `markFailedCompensations`: one UPDATE per distinct reason over the ids given as a JSON
    /// array, then one INSERT of every saga's event built from its row, in the order given.
    /// Its caller's savepoint undoes the lot when a saga is missing.
    private func markFailed(_ marks: [FailedSagaMark], eventType: String, recovered: String,
                            on c: SQLiteConnection) throws(SagaLaneError) -> Int {
        guard !marks.isEmpty else { return 0 }
        // Each distinct reason with the ids given it, in the order reasons first come.
        // Neighbours mostly share a reason: comparing with the last one spares hashing it.
        var groups: [(reason: String, ids: String)] = []
        var groupOf: [String: Int] = [:]
        var current = -1
        for mark in marks {
            if current < 0 || groups[current].reason != mark.reason {
                if let known = groupOf[mark.reason] {
                    current = known
                } else {
                    current = groups.count
                    groupOf[mark.reason] = current
                    groups.append((mark.reason, ""))
                }
            }
            groups[current].ids += groups[current].ids.isEmpty ? "\(mark.sagaID)" : ",\(mark.sagaID)"
        }
        var changed = 0
        for (reason, ids) in groups {
            // The same text as `markFailedCompensation`'s, over the set.
            changed += try c.run(literal:
                """
                UPDATE saga SET state = 'failed_compensation', ended_at = ?2,
                    failure_reason = CASE
                        WHEN failure_reason IS NULL OR failure_reason = '' THEN ?1
                        WHEN instr(failure_reason, ?1) > 0 THEN failure_reason
                        ELSE failure_reason || '; ' || ?1 END
                WHERE id IN (SELECT value FROM json_each(?3))
                """, [.text(reason), batchTime, .text("[\(ids)]")])
        }
        guard changed == marks.count else {
            throw SagaLaneError(.notFound, "no such saga: \(marks.count - changed) of the \(marks.count) sagas to mark failed are missing")
        }
        var ids = "["
        ids.reserveCapacity(marks.count * 8)
        for (i, mark) in marks.enumerated() { ids += i == 0 ? "\(mark.sagaID)" : ",\(mark.sagaID)" }
        ids += "]"
        // Keys in sorted order and strings escaped as `JSON.serialized` writes them, so the
        // stored payload reads as the one the coordinator publishes. The sagas of a page are
        // mostly of one type and given one reason: the first one's payload is built once, and
        // a row whose name and reason read the same gets that text rather than building its
        // own (building it is most of the insert's time).
        let common = try c.query(literal:
            """
            SELECT name, failure_reason, json_object('name', name, 'reason', failure_reason, 'recovered', ?2, 'state', 'failed_compensation')
            FROM saga WHERE id = ?1
            """, [.int(Int64(bitPattern: marks[0].sagaID)), .text(recovered)]) { ($0.text(0), $0.optionalText(1), $0.text(2)) }.first
        guard let (name, reason, payload) = common else {
            throw SagaLaneError(.notFound, "no such saga: saga \(marks[0].sagaID) to mark failed is missing")
        }
        try SagaLog.checkValueSize(payload.utf8.count, of: "saga \(marks[0].sagaID)'s \(eventType) event")
        let first = assignedEventPosition + 1
        let inserted = try c.run(literal:
            """
            INSERT INTO saga_event (position, saga_id, type, payload_json, at)
            SELECT ?1 + j.key, s.id, ?2,
                CASE WHEN s.name = ?6 AND s.failure_reason = ?7 THEN ?8
                    ELSE json_object('name', s.name, 'reason', s.failure_reason, 'recovered', ?3, 'state', 'failed_compensation') END, ?4
            FROM json_each(?5) AS j JOIN saga AS s ON s.id = j.value
            """, [.int(Int64(bitPattern: first)), .text(eventType), .text(recovered), batchTime, .text(ids),
                  .text(name), .optional(reason), .text(payload)])
        guard inserted == marks.count else {
            throw SagaLaneError(.notFound, "no such saga: \(marks.count - inserted) of the \(marks.count) sagas to mark failed are missing")
        }
        // Read back in the stream's order; a payload that is the common one comes back as NULL
        // and shares its text.
        batchEvents.reserveCapacity(batchEvents.count + marks.count)
        var failure: SagaLaneError?
        _ = try c.query(literal:
            """
            SELECT position, saga_id, NULLIF(payload_json, ?3) FROM saga_event
            WHERE position >= ?1 AND position < ?1 + ?2 ORDER BY position
            """, [.int(Int64(bitPattern: first)), .int(Int64(marks.count)), .text(payload)]) { row in
            let sagaID = UInt64(bitPattern: row.int(1))
            var text = payload
            if !row.isNull(2) {
                text = row.text(2)
                do throws(SagaLaneError) {
                    try SagaLog.checkValueSize(text.utf8.count, of: "saga \(sagaID)'s \(eventType) event")
                } catch {
                    failure = failure ?? error
                }
            }
            batchEvents.append(LifecycleEntry(position: UInt64(bitPattern: row.int(0)), sagaID: sagaID, type: eventType,
                                              payloadJSON: text, at: batchTimestamp))
        }
        if let failure { throw failure }
        assignedEventPosition = first + UInt64(marks.count) - 1
        return changed
    }

    /// Appends `note` to the lifecycle stream at the next position, inside the batch. The
    /// position counts only once the insert succeeded; a batch rolled back gives its positions
    /// to the next one, so the positions committed run one apart.
    private func appendEvent(_ note: LifecycleNote, sagaID: UInt64, on c: SQLiteConnection) throws(SagaLaneError) {
        let payload = note.payload.serialized
        try SagaLog.checkValueSize(payload.utf8.count, of: "saga \(sagaID)'s \(note.type) event")
        let position = assignedEventPosition + 1
        try c.run(literal: "INSERT INTO saga_event (position, saga_id, type, payload_json, at) VALUES (?, ?, ?, ?, ?)",
                  [.int(Int64(bitPattern: position)), .int(Int64(bitPattern: sagaID)), .text(note.type), .text(payload), batchTime])
        assignedEventPosition = position
        batchEvents.append(LifecycleEntry(position: position, sagaID: sagaID, type: note.type, payloadJSON: payload, at: batchTimestamp))
    }

    /// The job update for each state, which stamps that state's own timestamp column. A state
    /// given no error keeps the one recorded (a retry's running row still says why the last
    /// attempt failed), except `finished`.
    private static func updateJobSQL(stamping state: JobState) -> StaticString {
        switch state {
        case .queued: "UPDATE lane_job SET state = ?, enqueued_at = ?, attempts = COALESCE(?, attempts), error = COALESCE(?, error) WHERE id = ?"
        case .running: "UPDATE lane_job SET state = ?, started_at = ?, attempts = COALESCE(?, attempts), error = COALESCE(?, error) WHERE id = ?"
        // A finished job has no error: an earlier attempt's is not what finished.
        case .finished: "UPDATE lane_job SET state = ?, finished_at = ?, attempts = COALESCE(?, attempts), error = ? WHERE id = ?"
        case .cancelled: "UPDATE lane_job SET state = ?, cancelled_at = ?, attempts = COALESCE(?, attempts), error = COALESCE(?, error) WHERE id = ?"
        case .failed: "UPDATE lane_job SET state = ?, failed_at = ?, attempts = COALESCE(?, attempts), error = COALESCE(?, error) WHERE id = ?"
        }
    }

}
