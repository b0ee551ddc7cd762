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
        // Version 4: the highest saga id ever used, kept apart from the saga table, so that a
        // vacuum deleting every saga does not let ids start over (vacuum raises it in the
        // transaction that deletes); and the file's mark as a sagalane log, so that a
        // read-write open never mistakes another application's database for one.
        """
        CREATE TABLE meta (
            key TEXT PRIMARY KEY,
            value INTEGER NOT NULL
        ) WITHOUT ROWID;
        INSERT INTO meta (key, value) SELECT 'saga_id_high_water', MAX(0, COALESCE(MAX(id), 0)) FROM saga;
        PRAGMA application_id = \(applicationID);
        """,
        // Version 5: compensations, retries and resume (a step's attempts, the step a
        // compensation undoes, what the step declared beyond its command, the event that led to
        // a step when it answered no earlier step); idempotency keys
        // for sagas and lane jobs (unique while their row exists; rows without a key cost the
        // indexes nothing); the lifecycle stream, an outbox each lifecycle event is written to
        // in the transaction of the change it announces, its position never reused (the
        // high-water mark keeps it past a vacuum); and operators' requests for the next start.
        // Columns are added, not rebuilt: this migration is quick on a large log.
        """
        ALTER TABLE saga ADD COLUMN idempotency_key TEXT;
        CREATE UNIQUE INDEX saga_by_key ON saga(idempotency_key) WHERE idempotency_key IS NOT NULL;
        ALTER TABLE saga_step ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;
        ALTER TABLE saga_step ADD COLUMN compensates INTEGER;
        ALTER TABLE saga_step ADD COLUMN spec_json TEXT;
        ALTER TABLE saga_step ADD COLUMN cause_json TEXT;
        ALTER TABLE lane_job ADD COLUMN idempotency_key TEXT;
        CREATE UNIQUE INDEX lane_job_by_key ON lane_job(lane, idempotency_key) WHERE idempotency_key IS NOT NULL;
        CREATE TABLE saga_event (
            position INTEGER PRIMARY KEY,
            saga_id INTEGER NOT NULL REFERENCES saga(id) ON DELETE CASCADE,
            type TEXT NOT NULL,
            payload_json TEXT NOT NULL,
            at TEXT NOT NULL
        );
        CREATE INDEX saga_event_by_saga ON saga_event(saga_id);
        CREATE TABLE saga_request (
            saga_id INTEGER PRIMARY KEY REFERENCES saga(id) ON DELETE CASCADE,
            action TEXT NOT NULL CHECK (action = 'cancel' OR action = 'resume' OR action = 'retry_compensation'),
            note TEXT,
            requested_at TEXT NOT NULL
        );
        INSERT INTO meta (key, value) VALUES ('\(eventPositionHighWater)', 0);
        """,
        // Version 6: the unfinished sagas get an index of their own, by id, so recovery pages
        // through them with one seek a page (the state index orders them by end time first,
        // so each page scanned every unfinished saga before it).
        """
        CREATE INDEX saga_unfinished ON saga(id) WHERE state IN ('running', 'compensating');
        """,
        // Version 7: one index of the sagas that ended, by state and last activity, in place of
        // the state and recency indexes of every saga. A saga that ends (start-up recovery ends
        // every saga it marks failed) now adds one entry there instead of moving an entry in
        // each of two indexes of every saga (a delete and an insert, each a search). The
        // unfinished sagas are in `saga_unfinished`; a query by state or activity reads each
        // part of the table through its index, the ended part one state at a time when it
        // wants the order of activity (see `SagaPart`).
        """
        DROP INDEX saga_by_state;
        DROP INDEX saga_by_recency;
        CREATE INDEX saga_ended ON saga(state, COALESCE(ended_at, started_at)) WHERE state NOT IN ('running', 'compensating');
        """,
    ]

    /// `PRAGMA application_id` of a sagalane log (schema version 4 and later): "sagl".
    static let applicationID: Int32 = 0x7361_676C

    /// The `meta` key of the highest saga id ever used.
    static let sagaIDHighWater = "saga_id_high_water"

    /// The `meta` key of the highest lifecycle-stream position ever used.
    static let eventPositionHighWater = "event_position_high_water"

    /// What a file holds, as far as the log is concerned.
    enum Contents: Equatable {
        /// Nothing at all (a new file, or an SQLite database without a single table): a new
        /// log may be made there.
        case empty
        /// A sagalane log of this schema version, which this build can read and migrate.
        case log(version: Int)
    }

    static var version: Int { migrations.count }

    /// What the database `connection` holds, read in one transaction.
    /// - Throws: `.corrupt` for anything that is neither empty nor a sagalane log this build
    ///   understands: another application's database, a log of a newer sagalane, a file that
    ///   is not a database. `name` (the path) starts the message.
    static func contents(_ connection: SQLiteConnection, name: String) throws(SagaLaneError) -> Contents {
        let (application, version, objects): (Int32, Int, [String])
        do throws(SagaLaneError) {
            (application, version, objects) = try connection.readTransaction { () throws(SagaLaneError) in
                let application = Int32(truncatingIfNeeded: try connection.query("PRAGMA application_id") { $0.int(0) }.first ?? 0)
                let version = Int(try connection.query("PRAGMA user_version") { $0.int(0) }.first ?? 0)
                let objects = try connection.query("SELECT name FROM sqlite_master ORDER BY rowid") { $0.text(0) }
                return (application, version, objects)
            }
        } catch where error.code == .corrupt {
            throw SagaLaneError(.corrupt, "\(name) is not a sagalane log: \(error.sqlite?.message ?? error.message)", underlying: error.underlying)
        }
        let hasTables = ["saga", "saga_step", "lane_job"].allSatisfy(objects.contains)
        let ours = application == applicationID || (application == 0 && hasTables && version >= 1 && version < 4)
        if application == 0 && version == 0 && objects.isEmpty { return .empty }
        if ours && version > Self.version {
            throw SagaLaneError(.corrupt, "\(name) has schema version \(version), newer than this sagalane understands (\(Self.version))")
        }
        if ours && version >= 1 && hasTables { return .log(version: version) }
        if application == applicationID {
            throw SagaLaneError(.corrupt, "\(name) is a damaged sagalane log: schema version \(version), tables \(listed(objects))")
        }
        let what = application != 0
            ? "it belongs to another application (application_id \(application))"
            : objects.isEmpty ? "it holds no tables, but schema version \(version)" : "it holds other tables (\(listed(objects)))"
        throw SagaLaneError(.corrupt, "\(name) is not a sagalane log: \(what); it is left as it is")
    }

    private static func listed(_ names: [String]) -> String {
        names.isEmpty ? "none" : names.prefix(4).joined(separator: ", ") + (names.count > 4 ? ", …" : "")
    }

    /// Makes a new log in an empty database: every migration in one transaction, so another
    /// connection sees either nothing or the whole schema.
    /// - Returns: `false`, having changed nothing, when the database is no longer empty once
    ///   the write lock is taken (another connection wrote it meanwhile).
    static func create(_ connection: SQLiteConnection, name: String) throws(SagaLaneError) -> Bool {
        try withForeignKeysOff(connection) { () throws(SagaLaneError) -> Bool in
            try connection.execute("BEGIN IMMEDIATE")
            do throws(SagaLaneError) {
                guard try contents(connection, name: name) == .empty else {
                    try connection.execute("ROLLBACK")
                    return false
                }
                for (index, migration) in migrations.enumerated() {
                    try apply(migration, to: connection, reaching: index + 1, name: name)
                }
                try connection.execute("PRAGMA user_version = \(version)")
                try connection.execute("COMMIT")
                return true
            } catch {
                try? connection.execute("ROLLBACK")
                throw error
            }
        }
    }

    /// Brings the database up to `version`, one transaction per migration. Foreign keys are
    /// off meanwhile, because a migration may rebuild a table that others reference; each
    /// migration must leave no broken reference behind, or it is rolled back.
    /// `progress` hears `.migration` with the versions applied of those the file lacked.
    static func migrate(_ connection: SQLiteConnection, upTo target: Int = version, name: String = "the log",
                        progress: ProgressHandler? = nil) throws(SagaLaneError) {
        let first = try userVersion(connection, name: name)
        guard first < target else { return }
        var reported = 0
        // Another process may apply some meanwhile: the count only goes up, to the total.
        func report(_ applied: Int) {
            guard applied > reported || applied == 0 else { return }
            reported = applied
            progress?(.migration, applied, target - first)
        }
        report(0)
        try withForeignKeysOff(connection) { () throws(SagaLaneError) in
            while true {
                try connection.execute("BEGIN IMMEDIATE")
                do throws(SagaLaneError) {
                    // Read again under the write lock: another process may have migrated meanwhile.
                    let current = try userVersion(connection, name: name)
                    guard current < target else {
                        try connection.execute("COMMIT")
                        report(target - first)
                        return
                    }
                    try apply(migrations[current], to: connection, reaching: current + 1, name: name)
                    try connection.execute("PRAGMA user_version = \(current + 1)")
                    try connection.execute("COMMIT")
                    report(current + 1 - first)
                } catch {
                    try? connection.execute("ROLLBACK")
                    throw error
                }
            }
        }
    }

    /// Runs one migration inside the open transaction. A failure says which version it was
    /// for and what SQLite said, in a line: the migration's SQL stays in the underlying error.
    private static func apply(_ migration: String, to connection: SQLiteConnection, reaching version: Int, name: String) throws(SagaLaneError) {
        do throws(SagaLaneError) {
            try connection.execute(migration)
        } catch {
            // A busy, full or read-only database is that, whatever the migration; anything
            // else means the file holds what this migration cannot take.
            let kept: [SagaLaneError.Code] = [.busy, .full, .readOnly, .noMemory, .closed]
            let code = kept.contains(error.code) ? error.code : .corrupt
            throw SagaLaneError(code, "\(name): cannot migrate the log to schema version \(version): \(error.sqlite?.message ?? error.message)",
                                underlying: error.underlying)
        }
        let broken = try connection.query("PRAGMA foreign_key_check") { $0.text(0) }
        if let table = broken.first {
            throw SagaLaneError(.corrupt, "\(name): migration to schema version \(version) left \(broken.count) broken reference(s) in \(table)")
        }
    }

    private static func withForeignKeysOff<T>(_ connection: SQLiteConnection, _ body: () throws(SagaLaneError) -> T) throws(SagaLaneError) -> T {
        // The pragma is a no-op inside a transaction: it is set before each begins.
        let foreignKeys = try connection.query("PRAGMA foreign_keys") { $0.int(0) }.first ?? 0
        try connection.execute("PRAGMA foreign_keys = OFF")
        defer { try? connection.execute("PRAGMA foreign_keys = \(foreignKeys)") }
        return try body()
    }

    /// The schema version recorded in the file; newer than this build understands is an error.
    private static func userVersion(_ connection: SQLiteConnection, name: String) throws(SagaLaneError) -> Int {
        let current = try connection.query("PRAGMA user_version") { Int($0.int(0)) }.first ?? 0
        if current > version {
            throw SagaLaneError(.corrupt, "\(name) has schema version \(current), newer than this sagalane understands (\(version))")
        }
        return current
    }
}
