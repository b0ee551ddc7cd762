import CSQLite
import Glibc
import SagaLaneSupport

/// Operators' listings and maintenance (`LogAdministration`) on SQLite.
extension SQLiteStorage: LogAdministration {
    /// A saga's last activity, as the recency index has it.
    static let sagaActivity = "COALESCE(ended_at, started_at)"
    /// A lane job's last activity, as `recentJobs` orders by it.
    private static let jobActivity = "COALESCE(finished_at, cancelled_at, failed_at, started_at, enqueued_at)"

    static func placeholders(_ count: Int) -> String {
        Array(repeating: "?", count: count).joined(separator: ", ")
    }

    /// WHERE terms and their arguments, built a filter field at a time.
    private struct Conditions {
        var terms: [String] = []
        var arguments: [SQLValue] = []
        /// `+` before a column keeps the term off that column's indexes.
        let prefix: String

        init(offIndexes: Bool = false) { prefix = offIndexes ? "+" : "" }

        mutating func equal(_ column: String, _ value: String?) {
            guard let value else { return }
            terms.append("\(prefix)\(column) = ?")
            arguments.append(.text(value))
        }

        mutating func oneOf(_ column: String, _ values: [String]) {
            guard !values.isEmpty else { return }
            terms.append("\(prefix)\(column) IN (\(placeholders(values.count)))")
            arguments += values.map(SQLValue.text)
        }

        /// The time window on a row's last activity, `expression`.
        mutating func window(_ expression: String, since: Timestamp?, before: Timestamp?) {
            if let since {
                terms.append("\(expression) >= ?")
                arguments.append(.text(since.iso8601))
            }
            if let before {
                terms.append("\(expression) < ?")
                arguments.append(.text(before.iso8601))
            }
        }
    }

    /// The WHERE conditions of a saga filter, with their arguments. With `arm`, those of the
    /// filter's states in that arm of the table (see `SagaArm`), through its index; without,
    /// of the whole table, the state and name terms kept off the indexes (a unary `+`) so that
    /// a query ordered by id walks the table itself and stops at its limit.
    private static func conditions(_ filter: SagaFilter, arm: SagaArm? = nil) -> ([String], [SQLValue]) {
        var conditions = Conditions(offIndexes: arm == nil)
        if let arm {
            (conditions.terms, conditions.arguments) = arm.terms
        } else {
            conditions.oneOf("state", filter.states.map(\.rawValue))
        }
        conditions.equal("name", filter.name)
        conditions.window(sagaActivity, since: filter.activeSince, before: filter.activeBefore)
        return (conditions.terms, conditions.arguments)
    }

    /// One query by arms of the saga table: `query` of each arm's `FROM … WHERE …` (with
    /// `extra` terms and their arguments after the filter's), joined by `combine`, with the
    /// arguments in order.
    private func byArms(_ filter: SagaFilter, combine: String, extra: ([String], [SQLValue]) = ([], []),
                        _ query: (_ from: String) -> String) -> (String, [SQLValue]) {
        var arguments: [SQLValue] = []
        let queries = SagaArm.arms(filter.states).map { arm in
            let (terms, armArguments) = Self.conditions(filter, arm: arm)
            arguments += armArguments + extra.1
            return query(Self.from(columns.sagas(arm.part), terms + extra.0))
        }
        return (queries.joined(separator: combine), arguments)
    }

    private static func conditions(_ filter: JobFilter) -> ([String], [SQLValue]) {
        var conditions = Conditions()
        conditions.equal("lane", filter.lane)
        conditions.oneOf("state", filter.states.map(\.rawValue))
        conditions.equal("caller", filter.caller)
        conditions.window(jobActivity, since: filter.activeSince, before: filter.activeBefore)
        return (conditions.terms, conditions.arguments)
    }

    private static func whereClause(_ conditions: [String]) -> String {
        conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
    }

    private static func from(_ table: String, _ conditions: [String]) -> String {
        conditions.isEmpty ? "FROM \(table)" : "FROM \(table) \(whereClause(conditions))"
    }

    private static func sagaID(_ id: UInt64) -> SQLValue { .int(Int64(bitPattern: min(id, UInt64(Int64.max)))) }

    public func sagas(matching filter: SagaFilter, order: SagaOrder, after: SagaRecord?, limit: Int) throws(SagaLaneError) -> [SagaSummary] {
        guard limit > 0 else { return [] }
        let select = "SELECT \(columns.saga), (SELECT COUNT(*) FROM saga_step WHERE saga_id = saga.id)"
        var sql: String
        var arguments: [SQLValue]
        switch order {
        case .byID where filter.states.isEmpty || after != nil:
            // Through the table itself, from where the last page ended: a long listing costs
            // one pass over the table instead of a sort of every match per page.
            var conditions: [String]
            (conditions, arguments) = Self.conditions(filter)
            if let after {
                conditions.append("id > ?")
                arguments.append(Self.sagaID(after.id))
            }
            sql = "\(select) \(Self.from("saga", conditions)) ORDER BY id"
        case .byID:
            // The first page of some states takes each arm's index and sorts what it finds:
            // quick when few sagas match.
            (sql, arguments) = byArms(filter, combine: " UNION ALL ") { "\(select) \($0)" }
            sql += " ORDER BY 1"
        case .recentFirst:
            // Each ended state read backwards in `saga_ended`'s order of activity (its entries
            // end with the row id), from where the last page ended, the unfinished sagas
            // sorted, all merged by the activity (a last column). The plain bound on the
            // activity lets SQLite start each walk there (a row value alone does not).
            var extra: ([String], [SQLValue]) = ([], [])
            if let after {
                let activity = SQLValue.text((after.endedAt ?? after.startedAt).iso8601)
                extra = (["\(Self.sagaActivity) <= ?", "(\(Self.sagaActivity), id) < (?, ?)"], [activity, activity, Self.sagaID(after.id)])
            }
            (sql, arguments) = byArms(filter, combine: " UNION ALL ", extra: extra) { "\(select), \(Self.sagaActivity) \($0)" }
            sql += " ORDER BY 10 DESC, 1 DESC"
        }
        return try read { (c) throws(SagaLaneError) in
            try c.query(sql + " LIMIT ?", arguments + [.int(Int64(limit))]) { row in
                SagaSummary(saga: Self.saga(row), stepCount: Int(row.int(8)))
            }
        }
    }

    public func countSagas(matching filter: SagaFilter) throws(SagaLaneError) -> Int {
        // Arm by arm, each through its index (there is none of the whole table).
        let (sql, arguments) = byArms(filter, combine: " + ") { "(SELECT COUNT(*) \($0))" }
        return try read { (c) throws(SagaLaneError) in
            Int(try c.query("SELECT \(sql)", arguments) { $0.int(0) }.first ?? 0)
        }
    }

    public func jobs(matching filter: JobFilter, limit: Int) throws(SagaLaneError) -> [JobRecord] {
        guard limit > 0 else { return [] }
        let (conditions, arguments) = Self.conditions(filter)
        let sql = """
            SELECT \(columns.job) FROM lane_job \(Self.whereClause(conditions))
            ORDER BY \(Self.jobActivity) DESC, rowid DESC LIMIT ?
            """
        return try read { (c) throws(SagaLaneError) in
            try c.query(sql, arguments + [.int(Int64(limit))], Self.job)
        }
    }

    public func countJobs(matching filter: JobFilter) throws(SagaLaneError) -> Int {
        let (conditions, arguments) = Self.conditions(filter)
        return try read { (c) throws(SagaLaneError) in
            Int(try c.query("SELECT COUNT(*) FROM lane_job \(Self.whereClause(conditions))", arguments) { $0.int(0) }.first ?? 0)
        }
    }

    public func laneSummaries() throws(SagaLaneError) -> [LaneSummary] {
        let rows = try read { (c) throws(SagaLaneError) in
            try c.query(
                """
                SELECT lane, state, COUNT(*), MIN(enqueued_at), MAX(\(Self.jobActivity))
                FROM lane_job GROUP BY lane, state ORDER BY lane
                """) { row in
                (lane: row.text(0), state: JobState(rawValue: row.text(1)), count: Int(row.int(2)),
                 oldest: row.optionalTimestamp(3), latest: row.optionalTimestamp(4))
            }
        }
        var lanes: [LaneSummary] = []
        for row in rows {
            // Grouped by SQLite's byte-wise comparison: a lane's rows are adjacent.
            if lanes.last.map({ !$0.lane.isExactly(row.lane) }) ?? true {
                lanes.append(LaneSummary(lane: row.lane))
            }
            guard let state = row.state else { continue }
            lanes[lanes.count - 1].jobs[state] = row.count
            if state == .queued { lanes[lanes.count - 1].oldestQueued = row.oldest }
            if let latest = row.latest, lanes[lanes.count - 1].lastActivity.map({ $0 < latest }) ?? true {
                lanes[lanes.count - 1].lastActivity = latest
            }
        }
        return lanes
    }

    /// The WHERE clause of the sagas in `states` (that many `?`s) that ended before a cutoff
    /// (the next `?`, given as `?n` again). Ended, a saga's last activity is its end: the bound on
    /// the activity lets SQLite search `saga_ended` in each state.
    static func endedBefore(_ states: Int) -> String {
        let cutoff = "?\(states + 1)"
        return "\(SagaPart.ended.condition) AND state IN (\(placeholders(states))) AND \(sagaActivity) < \(cutoff) AND ended_at < \(cutoff)"
    }

    /// The states a vacuum deletes: the final ones.
    static var terminalStates: [SQLValue] { SagaState.allCases.filter(\.isTerminal).map { .text($0.rawValue) } }

    public func vacuumEstimate(endedBefore cutoff: Timestamp) throws(SagaLaneError) -> VacuumEstimate {
        let states = Self.terminalStates
        return try read { (c) throws(SagaLaneError) in
            try c.query(
                """
                SELECT COUNT(*), COALESCE(SUM((SELECT COUNT(*) FROM saga_step WHERE saga_id = saga.id)), 0),
                       MIN(ended_at), MAX(ended_at)
                FROM saga WHERE \(Self.endedBefore(states.count))
                """, states + [.text(cutoff.iso8601)]) { row in
                VacuumEstimate(counts: VacuumCounts(sagas: Int(row.int(0)), steps: Int(row.int(1))),
                               oldestEnd: row.optionalTimestamp(2), newestEnd: row.optionalTimestamp(3))
            }.first ?? VacuumEstimate()
        }
    }

    public func fileUsage() throws(SagaLaneError) -> LogFileUsage {
        let (pageSize, pages, free) = try read { (c) throws(SagaLaneError) in
            (Int(try c.query("PRAGMA page_size") { $0.int(0) }.first ?? 0),
             Int(try c.query("PRAGMA page_count") { $0.int(0) }.first ?? 0),
             Int(try c.query("PRAGMA freelist_count") { $0.int(0) }.first ?? 0))
        }
        func size(_ file: String) -> Int? {
            var info = stat()
            return stat(file, &info) == 0 ? Int(info.st_size) : nil
        }
        return LogFileUsage(pageSize: pageSize, pages: pages, freePages: free,
                            fileBytes: path.flatMap(size), walBytes: path.map { size($0 + "-wal") ?? 0 })
    }

    public func deleteTerminalSagas(endedBefore cutoff: Timestamp, limit: Int) throws(SagaLaneError) -> VacuumCounts {
        let c = try writeConnection()
        let states = Self.terminalStates
        do throws(SagaLaneError) {
            try c.run("BEGIN IMMEDIATE")
            let ids = try c.query(
                "SELECT id FROM saga WHERE \(Self.endedBefore(states.count)) LIMIT ?",
                states + [.text(cutoff.iso8601), .int(Int64(limit))]) { $0.int(0) }
            var counts = VacuumCounts()
            // A statement per 500 sagas, not per saga. The steps go first, so that they are
            // counted (SQLite does not count a cascade) and the cascade finds nothing left.
            var start = 0
            while start < ids.count {
                let chunk = Array(ids[start..<min(start + 500, ids.count)].map { SQLValue.int($0) })
                let list = Self.placeholders(chunk.count)
                counts.steps += try c.run("DELETE FROM saga_step WHERE saga_id IN (\(list))", chunk)
                counts.sagas += try c.run("DELETE FROM saga WHERE id IN (\(list))", chunk)
                start += chunk.count
            }
            // The deleted ids stay used: the high-water mark rises with the delete.
            if let highest = ids.max() {
                try c.run(
                    """
                    INSERT INTO meta (key, value) VALUES (?1, ?2)
                        ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)
                    """, [.text(Schema.sagaIDHighWater), .int(highest)])
            }
            try c.run("COMMIT")
            return counts
        } catch {
            if !c.isAutocommit { try? c.execute("ROLLBACK") }
            throw error
        }
    }

    public func compact() throws(SagaLaneError) {
        let c = try writeConnection()
        if let path {
            // The rewritten copy is built in a temporary file, then goes through the
            // write-ahead log beside the log: each needs about the room the pages in use take.
            let usage = try fileUsage()
            try Self.checkRoom(for: usage.usedBytes, logPath: path)
        }
        // The copy goes to a temporary file, not to memory (see `temporaryStorage`).
        try c.execute("PRAGMA temp_store = FILE")
        defer { try? c.execute(Self.temporaryStorage) }
        try c.execute("VACUUM")
        if path != nil {
            // The background checkpointer may hold the checkpoint lock for a moment (SQLite
            // then answers busy at once, without waiting): try again while it does.
            let deadline = Timestamp.now().millisecondsSinceEpoch + 1000
            while try c.query("PRAGMA wal_checkpoint(TRUNCATE)", [], { $0.int(0) }).first == 1
                    && Timestamp.now().millisecondsSinceEpoch < deadline {
                usleep(10_000)
            }
        }
    }

    /// Refuses a compaction the disk has no room for: `bytes` in the log's folder and as much
    /// in SQLite's temporary folder (twice that when both are on one file system).
    private static func checkRoom(for bytes: Int, logPath: String) throws(SagaLaneError) {
        let slash = logPath.lastIndex(of: "/")
        let folder = slash.map { $0 == logPath.startIndex ? "/" : String(logPath[..<$0]) } ?? "."
        let temporary = temporaryFolder()
        guard let logRoom = room(in: folder) else { return }
        var need = bytes
        if let temporary, let tempRoom = room(in: temporary) {
            if tempRoom.device == logRoom.device {
                need += bytes
            } else if tempRoom.free < bytes {
                throw SagaLaneError(.full, "compacting needs about \(bytes) bytes free in \(temporary) (SQLite's temporary folder) "
                                        + "and has \(tempRoom.free); set SQLITE_TMPDIR to a folder with room")
            }
        }
        if logRoom.free < need {
            throw SagaLaneError(.full, "compacting \(logPath) needs about \(need) bytes free in \(folder) and has \(logRoom.free); "
                                    + "make room (or set SQLITE_TMPDIR to a folder on another disk) and try again")
        }
    }

    private static func room(in folder: String) -> (free: Int, device: UInt64)? {
        var fs = statvfs()
        var info = stat()
        guard statvfs(folder, &fs) == 0, stat(folder, &info) == 0 else { return nil }
        return (Int(fs.f_bavail) * Int(fs.f_frsize), UInt64(info.st_dev))
    }

    /// The folder SQLite's unix VFS puts temporary files in: the first writable one of
    /// SQLITE_TMPDIR, TMPDIR, /var/tmp, /usr/tmp, /tmp.
    private static func temporaryFolder() -> String? {
        let candidates = [getenv("SQLITE_TMPDIR"), getenv("TMPDIR")].compactMap { $0.map { String(cString: $0) } }
            + ["/var/tmp", "/usr/tmp", "/tmp"]
        for folder in candidates {
            var info = stat()
            if stat(folder, &info) == 0, info.st_mode & S_IFMT == S_IFDIR, access(folder, W_OK | X_OK) == 0 { return folder }
        }
        return nil
    }
}
