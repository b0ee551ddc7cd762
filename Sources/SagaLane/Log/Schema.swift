/// The log's schema, as numbered migrations. `PRAGMA user_version` records how many have been
/// applied; a new version appends a migration and never edits an old one.
enum Schema {
    static let migrations: [String] = [
        """
        CREATE TABLE IF NOT EXISTS saga (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('running','compensating','completed','failed','failed_compensation','compensated')),
            input_json TEXT NOT NULL,
            failure_reason TEXT,
            started_at TEXT NOT NULL,
            ended_at TEXT
        );
        CREATE TABLE IF NOT EXISTS saga_step (
            saga_id INTEGER NOT NULL REFERENCES saga(id) ON DELETE CASCADE,
            step_index INTEGER NOT NULL,
            name TEXT NOT NULL,
            target TEXT NOT NULL,
            command_json TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('pending','succeeded','failed','compensated')),
            output_json TEXT,
            failure_reason TEXT,
            started_at TEXT NOT NULL,
            ended_at TEXT,
            PRIMARY KEY (saga_id, step_index)
        ) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS lane_job (
            id TEXT PRIMARY KEY,
            lane TEXT NOT NULL,
            caller TEXT NOT NULL,
            priority INTEGER NOT NULL,
            metadata BLOB,
            state TEXT NOT NULL CHECK (state IN ('queued','running','finished','cancelled','failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            enqueued_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT,
            cancelled_at TEXT,
            failed_at TEXT
        );
        -- Start-up recovery and vacuum select by state.
        CREATE INDEX IF NOT EXISTS saga_by_state ON saga(state, ended_at);
        -- Diagnostics list the most recent sagas first.
        CREATE INDEX IF NOT EXISTS saga_by_recency ON saga(COALESCE(ended_at, started_at));
        -- Lane recovery lists a lane's queued and running jobs in dispatch order.
        CREATE INDEX IF NOT EXISTS lane_job_by_lane ON lane_job(lane, state, priority DESC, enqueued_at);
        -- The sweeper selects terminal jobs by age.
        CREATE INDEX IF NOT EXISTS lane_job_by_state ON lane_job(state);
        """,
    ]

    static var version: Int { migrations.count }

    /// Brings the database up to `version`, one transaction per migration.
    static func migrate(_ connection: SQLiteConnection) throws(SagaLogError) {
        let current = try connection.query("PRAGMA user_version") { Int($0.int(0)) }.first ?? 0
        if current > version {
            throw SagaLogError(code: SagaLogError.schemaTooNewCode,
                               message: "the database has schema version \(current), newer than this sagalane understands (\(version))")
        }
        for next in current..<version {
            try connection.execute("BEGIN IMMEDIATE")
            do {
                try connection.execute(migrations[next])
                try connection.execute("PRAGMA user_version = \(next + 1)")
                try connection.execute("COMMIT")
            } catch {
                try? connection.execute("ROLLBACK")
                throw error
            }
        }
    }
}
