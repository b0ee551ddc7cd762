import CSQLite
import SagaLaneSupport

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
        // Version 2: the same tables, with each state CHECK written as a chain of equalities.
        // SQLite evaluates `state IN (…)` by building a temporary b-tree on every INSERT, about
        // a quarter of the log writer's time. SQLite cannot change a CHECK in place, so each
        // table is rebuilt (the procedure of https://sqlite.org/lang_altertable.html#otheralter),
        // with foreign keys off so dropping `saga` does not cascade into `saga_step`.
        """
        CREATE TABLE saga_v2 (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state = 'running' OR state = 'compensating' OR state = 'completed'
                OR state = 'failed' OR state = 'failed_compensation' OR state = 'compensated'),
            input_json TEXT NOT NULL,
            failure_reason TEXT,
            started_at TEXT NOT NULL,
            ended_at TEXT
        );
        INSERT INTO saga_v2 SELECT id, name, state, input_json, failure_reason, started_at, ended_at FROM saga;
        DROP TABLE saga;
        ALTER TABLE saga_v2 RENAME TO saga;

        CREATE TABLE saga_step_v2 (
            saga_id INTEGER NOT NULL REFERENCES saga(id) ON DELETE CASCADE,
            step_index INTEGER NOT NULL,
            name TEXT NOT NULL,
            target TEXT NOT NULL,
            command_json TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state = 'pending' OR state = 'succeeded' OR state = 'failed' OR state = 'compensated'),
            output_json TEXT,
            failure_reason TEXT,
            started_at TEXT NOT NULL,
            ended_at TEXT,
            PRIMARY KEY (saga_id, step_index)
        ) WITHOUT ROWID;
        INSERT INTO saga_step_v2 SELECT saga_id, step_index, name, target, command_json, state,
            output_json, failure_reason, started_at, ended_at FROM saga_step;
        DROP TABLE saga_step;
        ALTER TABLE saga_step_v2 RENAME TO saga_step;

        CREATE TABLE lane_job_v2 (
            id TEXT PRIMARY KEY,
            lane TEXT NOT NULL,
            caller TEXT NOT NULL,
            priority INTEGER NOT NULL,
            metadata BLOB,
            state TEXT NOT NULL CHECK (state = 'queued' OR state = 'running' OR state = 'finished'
                OR state = 'cancelled' OR state = 'failed'),
            attempts INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            enqueued_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT,
            cancelled_at TEXT,
            failed_at TEXT
        );
        INSERT INTO lane_job_v2 SELECT id, lane, caller, priority, metadata, state, attempts, error,
            enqueued_at, started_at, finished_at, cancelled_at, failed_at FROM lane_job;
        DROP TABLE lane_job;
        ALTER TABLE lane_job_v2 RENAME TO lane_job;

        CREATE INDEX saga_by_state ON saga(state, ended_at);
        CREATE INDEX saga_by_recency ON saga(COALESCE(ended_at, started_at));
        CREATE INDEX lane_job_by_lane ON lane_job(lane, state, priority DESC, enqueued_at);
        CREATE INDEX lane_job_by_state ON lane_job(state);
        """,
        // Version 3: lane-job indexes hold only the rows their queries read. Restart recovery
        // reads a lane's queued and running jobs; the sweeper, terminal jobs by age. A job then
        // touches each index about once in its life instead of at every state change.
        """
        DROP INDEX lane_job_by_lane;
        DROP INDEX lane_job_by_state;
        CREATE INDEX lane_job_pending ON lane_job(lane, state, priority DESC, enqueued_at)
            WHERE state = 'queued' OR state = 'running';
        CREATE INDEX lane_job_ended ON lane_job(COALESCE(finished_at, cancelled_at, failed_at))
            WHERE state = 'finished' OR state = 'cancelled' OR state = 'failed';
        """,
    ]

    static var version: Int { migrations.count }

    /// Brings the database up to `version`, one transaction per migration. Foreign keys are
    /// off meanwhile, because a migration may rebuild a table that others reference; each
    /// migration must leave no broken reference behind, or it is rolled back.
    static func migrate(_ connection: SQLiteConnection, upTo target: Int = version) throws(SagaLaneError) {
        guard try userVersion(connection) < target else { return }
        let foreignKeys = try connection.query("PRAGMA foreign_keys") { $0.int(0) }.first ?? 0
        try connection.execute("PRAGMA foreign_keys = OFF")
        defer { try? connection.execute("PRAGMA foreign_keys = \(foreignKeys)") }
        while true {
            try connection.execute("BEGIN IMMEDIATE")
            do throws(SagaLaneError) {
                // Read again under the write lock: another process may have migrated meanwhile.
                let current = try userVersion(connection)
                guard current < target else {
                    try connection.execute("COMMIT")
                    return
                }
                try connection.execute(migrations[current])
                let broken = try connection.query("PRAGMA foreign_key_check") { $0.text(0) }
                if let table = broken.first {
                    throw SagaLaneError(.corrupt, "migration to schema version \(current + 1) left \(broken.count) broken reference(s) in \(table)")
                }
                try connection.execute("PRAGMA user_version = \(current + 1)")
                try connection.execute("COMMIT")
            } catch {
                try? connection.execute("ROLLBACK")
                throw error
            }
        }
    }

    /// The schema version recorded in the file; newer than this build understands is an error.
    private static func userVersion(_ connection: SQLiteConnection) throws(SagaLaneError) -> Int {
        let current = try connection.query("PRAGMA user_version") { Int($0.int(0)) }.first ?? 0
        if current > version {
            throw SagaLaneError(.corrupt, "the database has schema version \(current), newer than this sagalane understands (\(version))")
        }
        return current
    }
}
