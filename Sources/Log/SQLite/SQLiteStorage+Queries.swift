import CSQLite
import Glibc
import SagaLaneSupport

/// The queries the log answers, on the read connection.
extension SQLiteStorage {
    /// The columns each record is read from, by the file's schema version: a read-only open of
    /// an older log (which it does not migrate) reads the columns it lacks as their defaults.
    struct Columns {
        let saga: String
        let step: String
        let job: String
        let hasEvents: Bool
        /// The saga table as a query of its unfinished part names it: through that part's index
        /// (version 6 and later), which SQLite would otherwise pass over for an index that gives
        /// the order, not knowing how few rows it holds.
        let unfinishedSagas: String

        /// The saga table as a query of `part` names it.
        func sagas(_ part: SagaPart) -> String { part == .unfinished ? unfinishedSagas : "saga" }

        init(schemaVersion: Int) {
            unfinishedSagas = schemaVersion >= 6 ? "saga INDEXED BY saga_unfinished" : "saga"
            let current = schemaVersion >= 5
            saga = "id, name, state, input_json, failure_reason, started_at, ended_at, " + (current ? "idempotency_key" : "NULL")
            step = "saga_id, step_index, name, target, command_json, state, output_json, failure_reason, started_at, ended_at, "
                + (current ? "attempts, compensates, spec_json, cause_json" : "1, NULL, NULL, NULL")
            job = "id, lane, caller, priority, metadata, state, attempts, error, enqueued_at, started_at, finished_at, cancelled_at, "
                + "failed_at, " + (current ? "idempotency_key" : "NULL")
            hasEvents = current
        }
    }

    /// The columns of the event table, in `event(_:)`'s order.
    static let eventColumns = "position, saga_id, type, payload_json, at"

    static func saga(_ row: SQLiteConnection.Row) -> SagaRecord {
        SagaRecord(id: UInt64(bitPattern: row.int(0)), name: row.text(1), state: SagaState(rawValue: row.text(2)) ?? .failed,
                   inputJSON: row.text(3), failureReason: row.optionalText(4), startedAt: row.timestamp(5),
                   endedAt: row.optionalTimestamp(6), steps: [], idempotencyKey: row.optionalText(7))
    }

    static func step(_ row: SQLiteConnection.Row) -> StepRecord {
        StepRecord(sagaID: UInt64(bitPattern: row.int(0)), index: UInt32(truncatingIfNeeded: row.int(1)), name: row.text(2),
                   target: row.text(3), commandJSON: row.text(4), state: StepState(rawValue: row.text(5)) ?? .failed,
                   outputJSON: row.optionalText(6), failureReason: row.optionalText(7), startedAt: row.timestamp(8),
                   endedAt: row.optionalTimestamp(9), attempts: Int(row.int(10)),
                   compensates: row.isNull(11) ? nil : UInt32(truncatingIfNeeded: row.int(11)), specJSON: row.optionalText(12),
                   causeJSON: row.optionalText(13))
    }

    static func job(_ row: SQLiteConnection.Row) -> JobRecord {
        JobRecord(id: row.text(0), lane: row.text(1), caller: row.text(2), priority: Int(row.int(3)), metadata: row.blob(4),
                  state: JobState(rawValue: row.text(5)) ?? .failed, attempts: Int(row.int(6)), error: row.optionalText(7),
                  enqueuedAt: row.timestamp(8), startedAt: row.optionalTimestamp(9), finishedAt: row.optionalTimestamp(10),
                  cancelledAt: row.optionalTimestamp(11), failedAt: row.optionalTimestamp(12), idempotencyKey: row.optionalText(13))
    }

    static func event(_ row: SQLiteConnection.Row) -> LifecycleEntry {
        LifecycleEntry(position: UInt64(bitPattern: row.int(0)), sagaID: UInt64(bitPattern: row.int(1)), type: row.text(2),
                       payloadJSON: row.text(3), at: row.timestamp(4))
    }

    public func maxSagaID() throws(SagaLaneError) -> UInt64 {
        try read { (c) throws(SagaLaneError) -> UInt64 in
            // Each subquery reads one end of the primary key; no scan.
            let (highest, lowest) = try c.query("SELECT (SELECT MAX(id) FROM saga), (SELECT MIN(id) FROM saga)") {
                ($0.int(0), $0.int(1))
            }.first ?? (0, 0)
            if lowest < 0 {
                throw SagaLaneError(.corrupt, "the log is corrupt: the saga row with saga id \(lowest) (\(UInt64(bitPattern: lowest)) unsigned) "
                                        + "is past the largest id sagalane hands out (\(Int64.max))")
            }
            // Before schema version 4 (a read-only open of an older log) there is no mark.
            let hasMeta = try c.query("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'") { $0.int(0) }.first == 1
            let mark = hasMeta
                ? try c.query("SELECT value FROM meta WHERE key = ?", [.text(Schema.sagaIDHighWater)]) { $0.int(0) }.first ?? 0
                : 0
            if mark < 0 {
                throw SagaLaneError(.corrupt, "the log is corrupt: its highest saga id ever used reads \(mark)")
            }
            return UInt64(max(highest, mark))
        }
    }

    public func sagas(in states: [SagaState], after: UInt64, limit: Int) throws(SagaLaneError) -> [SagaRecord] {
        guard !states.isEmpty, limit > 0 else { return [] }
        let after = SQLValue.int(Int64(bitPattern: min(after, UInt64(Int64.max))))
        // The unfinished sagas (recovery's pages) through their partial index by id, one seek
        // a page. Other states through the part of the table each falls in (see `SagaArm`):
        // the unfinished part by id, each ended state (few beside the finished sagas) sorted
        // by id, merged.
        let page: String
        var arguments: [SQLValue] = []
        if Set(states) == Set(SagaState.unfinished) {
            page = "SELECT id FROM \(columns.unfinishedSagas) WHERE \(SagaPart.unfinished.condition) AND id > ? ORDER BY id LIMIT ?"
            arguments = [after]
        } else {
            let selects = SagaArm.arms(states).map { arm in
                let (terms, values) = arm.terms
                arguments += values + [after]
                return "SELECT id FROM \(columns.sagas(arm.part)) WHERE \((terms + ["id > ?"]).joined(separator: " AND "))"
            }
            page = selects.joined(separator: " UNION ALL ") + " ORDER BY 1 LIMIT ?"
        }
        arguments.append(.int(Int64(limit)))
        return try read { (c) throws(SagaLaneError) in
            var sagas = try c.query("SELECT \(columns.saga) FROM saga WHERE id IN (\(page)) ORDER BY id", arguments, Self.saga)
            // Every step of the page in one query, each saga's steps by index.
            let steps = try c.query("SELECT \(columns.step) FROM saga_step WHERE saga_id IN (\(page)) ORDER BY saga_id, step_index",
                                    arguments, Self.step)
            var at = 0
            for i in sagas.indices {
                while at < steps.count && steps[at].sagaID < sagas[i].id { at += 1 }
                let first = at
                while at < steps.count && steps[at].sagaID == sagas[i].id { at += 1 }
                sagas[i].steps = Array(steps[first..<at])
            }
            return sagas
        }
    }

    public func unfinishedOutlines(after: UInt64, limit: Int) throws(SagaLaneError) -> [SagaOutline] {
        guard limit > 0 else { return [] }
        let arguments: [SQLValue] = [.int(Int64(bitPattern: min(after, UInt64(Int64.max)))), .int(Int64(limit))]
        return try read { (c) throws(SagaLaneError) in
            var sagas = try c.query(literal:
                """
                SELECT id, name, state, failure_reason FROM saga WHERE id IN (SELECT id FROM saga INDEXED BY saga_unfinished
                    WHERE state IN ('running', 'compensating') AND id > ?1 ORDER BY id LIMIT ?2) ORDER BY id
                """, arguments) { row in
                SagaOutline(id: UInt64(bitPattern: row.int(0)), name: row.text(1), state: SagaState(rawValue: row.text(2)) ?? .failed,
                            failureReason: row.optionalText(3), pendingSteps: [])
            }
            guard !sagas.isEmpty else { return sagas }
            let pending = try c.query(literal:
                """
                SELECT saga_id, step_index FROM saga_step WHERE state = 'pending' AND saga_id IN (SELECT id FROM saga
                    INDEXED BY saga_unfinished WHERE state IN ('running', 'compensating') AND id > ?1 ORDER BY id LIMIT ?2)
                ORDER BY saga_id, step_index
                """, arguments) { (UInt64(bitPattern: $0.int(0)), UInt32(truncatingIfNeeded: $0.int(1))) }
            var at = 0
            for i in sagas.indices {
                while at < pending.count && pending[at].0 < sagas[i].id { at += 1 }
                while at < pending.count && pending[at].0 == sagas[i].id {
                    sagas[i].pendingSteps.append(pending[at].1)
                    at += 1
                }
            }
            return sagas
        }
    }

    public func sagaSteps(sagaID: UInt64) throws(SagaLaneError) -> [StepRecord] {
        try read { (c) throws(SagaLaneError) in
            try c.query("SELECT \(columns.step) FROM saga_step WHERE saga_id = ? ORDER BY step_index",
                        [.int(Int64(bitPattern: sagaID))], Self.step)
        }
    }

    public func saga(id: UInt64) throws(SagaLaneError) -> SagaRecord? {
        try read { (c) throws(SagaLaneError) -> SagaRecord? in
            guard var saga = try c.query("SELECT \(columns.saga) FROM saga WHERE id = ?", [.int(Int64(bitPattern: id))], Self.saga).first else {
                return nil
            }
            saga.steps = try c.query("SELECT \(columns.step) FROM saga_step WHERE saga_id = ? ORDER BY step_index",
                                     [.int(Int64(bitPattern: id))], Self.step)
            saga.history = columns.hasEvents
                ? try c.query("SELECT \(Self.eventColumns) FROM saga_event WHERE saga_id = ? ORDER BY position",
                          [.int(Int64(bitPattern: id))], Self.event)
                : []
            return saga
        }
    }

    public func recentSagas(limit: Int) throws(SagaLaneError) -> [SagaSummary] {
        // The listing of every saga, most recent first: its first page.
        try sagas(matching: SagaFilter(), order: .recentFirst, after: nil, limit: limit)
    }

    public func pendingJobs(lane: String, state: JobState) throws(SagaLaneError) -> [JobRecord] {
        try read { (c) throws(SagaLaneError) in
            switch state {
            case .queued:
                try c.query("SELECT \(columns.job) FROM lane_job WHERE lane = ? AND state = 'queued' ORDER BY priority DESC, enqueued_at, rowid",
                            [.text(lane)], Self.job)
            case .running:
                try c.query("SELECT \(columns.job) FROM lane_job WHERE lane = ? AND state = 'running' ORDER BY enqueued_at, rowid",
                            [.text(lane)], Self.job)
            case .finished, .cancelled, .failed:
                throw SagaLaneError(.invalidArgument, "pending jobs are queued or running, not \(state.rawValue)")
            }
        }
    }

    public func recentJobs(lane: String?, state: JobState?, limit: Int) throws(SagaLaneError) -> [JobRecord] {
        try read { (c) throws(SagaLaneError) in
            try c.query(
                """
                SELECT \(columns.job) FROM lane_job
                WHERE (?1 IS NULL OR lane = ?1) AND (?2 IS NULL OR state = ?2)
                ORDER BY COALESCE(finished_at, cancelled_at, failed_at, started_at, enqueued_at) DESC, rowid DESC LIMIT ?3
                """, [.optional(lane), .optional(state?.rawValue), .int(Int64(max(0, limit)))], Self.job)
        }
    }

    public func job(id: String) throws(SagaLaneError) -> JobRecord? {
        try read { (c) throws(SagaLaneError) in
            try c.query("SELECT \(columns.job) FROM lane_job WHERE id = ?", [.text(id)], Self.job).first
        }
    }

    public func stats() throws(SagaLaneError) -> LogStats {
        try read { (c) throws(SagaLaneError) -> LogStats in
            var stats = LogStats()
            stats.schemaVersion = Int(try c.query("PRAGMA user_version") { $0.int(0) }.first ?? 0)
            // Each part of the table counted through its own index: the ended one by state
            // alone, the unfinished one (few) row by row.
            let counts = SagaPart.allCases.map { "SELECT state, COUNT(*) FROM \(columns.sagas($0)) WHERE \($0.condition) GROUP BY state" }
            for (state, count) in try c.query(counts.joined(separator: " UNION ALL "), [], { ($0.text(0), Int($0.int(1))) }) {
                if let state = SagaState(rawValue: state) { stats.sagas[state] = count }
            }
            stats.oldestRunningSaga = try c.query(
                "SELECT MIN(started_at) FROM \(columns.unfinishedSagas) WHERE \(SagaPart.unfinished.condition) AND state = 'running'") {
                $0.optionalTimestamp(0)
            }.first ?? nil
            for (lane, state, count) in try c.query("SELECT lane, state, COUNT(*) FROM lane_job GROUP BY lane, state", [], {
                ($0.text(0), $0.text(1), Int($0.int(2)))
            }) {
                if let state = JobState(rawValue: state) { stats.jobs[ExactName(lane), default: [:]][state] = count }
            }
            let pages = try c.query("PRAGMA page_count") { $0.int(0) }.first ?? 0
            let pageSize = try c.query("PRAGMA page_size") { $0.int(0) }.first ?? 0
            stats.databaseBytes = Int(pages * pageSize)
            if let path {
                var info = stat()
                stats.walBytes = stat(path + "-wal", &info) == 0 ? Int(info.st_size) : 0
            }
            return stats
        }
    }

    public func integrityCheck() throws(SagaLaneError) -> String {
        try read { (c) throws(SagaLaneError) in
            try c.query("PRAGMA integrity_check") { $0.text(0) }.joined(separator: "\n")
        }
    }

    /// Has `recorder` collect the statements the read connection runs from now on (`nil`
    /// stops), for tests that check the plans of the log's queries.
    func recordReads(into recorder: StatementRecorder?) throws(SagaLaneError) {
        try read { (c) throws(SagaLaneError) in c.record(into: recorder) }
    }

    /// Runs `sql` on the read connection and returns its first column as text, one row each;
    /// for tests that look at what the file holds (query plans, pragmas).
    public func queryForTesting(_ sql: String) throws(SagaLaneError) -> [String] {
        try read { (c) throws(SagaLaneError) in try c.query(sql) { $0.text(0) } }
    }
}
