import CSQLite
import Glibc
import SagaLaneSupport
import Synchronization

/// How hard each group commit works to survive a crash.
public enum Durability: String, Sendable, CaseIterable {
    /// `synchronous=FULL`: every commit is fsynced; survives power loss.
    case full
    /// `synchronous=NORMAL` (WAL): survives a crash of the process, not of the machine.
    case normal
}

/// The log in one SQLite database: WAL mode, foreign keys on, the schema of `Schema`.
///
/// Two connections: the write connection belongs to the log's writer thread; reads go through
/// a second connection behind a lock, so an operator's query never waits behind a batch.
public final class SQLiteStorage: LogStorage, @unchecked Sendable {
    public let path: String?
    public var isReadOnly: Bool { writer == nil }

    /// The write connection; touched only by the writer thread once the storage is shared.
    private let writer: SQLiteConnection?
    private let reader: Mutex<ReadConnection>
    /// The batch's timestamp, formatted once: formatting it per record costs more than the
    /// insert.
    private var batchTime = SQLValue.null

    private struct ReadConnection: ~Copyable {
        var connection: SQLiteConnection?
    }

    private init(path: String?, writer: SQLiteConnection?, reader: SQLiteConnection) {
        self.path = path
        self.writer = writer
        self.reader = Mutex(ReadConnection(connection: reader))
    }

    deinit {
        writer?.close()
        closeReading()
    }

    // MARK: Opening

    /// Opens (creating if needed) the log at `path`: WAL, `busy_timeout`, foreign keys on,
    /// schema migrated to the current version. Reopening an existing log is idempotent.
    /// - Throws: `SagaLaneError` when the folder is missing, the file is not a database, the
    ///   file is read-only, or the database stays locked past the busy timeout. The file is
    ///   left as it was.
    public static func open(path: String, durability: Durability = .full, busyTimeoutMilliseconds: Int32 = 5000) throws(SagaLaneError) -> SQLiteStorage {
        let write = try SQLiteConnection(path: path, flags: SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
        try configure(write, busyTimeoutMilliseconds: busyTimeoutMilliseconds)
        // journal_mode reads the header first: a file that is not a database fails here,
        // before anything is written to it.
        let mode = try write.query("PRAGMA journal_mode = WAL") { $0.text(0) }.first
        if mode != "wal" {
            throw SagaLaneError(.cantOpen, "cannot switch \(path) to WAL mode (got \(mode ?? "nothing"))")
        }
        try write.execute("PRAGMA synchronous = \(durability == .full ? "FULL" : "NORMAL")")
        try Schema.migrate(write)
        let read = try SQLiteConnection(path: path, flags: SQLITE_OPEN_READONLY)
        try configure(read, busyTimeoutMilliseconds: busyTimeoutMilliseconds)
        return SQLiteStorage(path: path, writer: write, reader: read)
    }

    /// Opens the log for reading only: no migration, no pragma writes, no writes at all. Works
    /// while another process has the log open for writing.
    public static func openReadOnly(path: String, busyTimeoutMilliseconds: Int32 = 5000) throws(SagaLaneError) -> SQLiteStorage {
        var read = try SQLiteConnection(path: path, flags: SQLITE_OPEN_READONLY)
        read.setBusyTimeout(milliseconds: busyTimeoutMilliseconds)
        var version: Int
        do {
            version = try read.query("PRAGMA user_version") { Int($0.int(0)) }.first ?? 0
        } catch where error.code == .cantOpen && access(path, W_OK) != 0 {
            // A WAL database on read-only media cannot create its shared-memory file. Nobody
            // can be writing it there, so it is safe to read it as immutable.
            read.close()
            read = try SQLiteConnection(path: "file:\(uriEscaped(path))?immutable=1", flags: SQLITE_OPEN_READONLY | SQLITE_OPEN_URI)
            version = try read.query("PRAGMA user_version") { Int($0.int(0)) }.first ?? 0
        }
        if version == 0 {
            throw SagaLaneError(.corrupt, "\(path) is not a sagalane log (no schema)",
                                underlying: SQLiteError(extendedCode: SQLITE_NOTADB, message: "no schema"))
        }
        if version > Schema.version {
            throw SagaLaneError(.corrupt, "\(path) has schema version \(version), newer than this sagalane understands (\(Schema.version))")
        }
        return SQLiteStorage(path: path, writer: nil, reader: read)
    }

    /// Opens a log that lives in memory and vanishes when closed; for tests and hosts that
    /// want sagas without durability.
    public static func openInMemory() throws(SagaLaneError) -> SQLiteStorage {
        // The memdb VFS shares a database named with a leading '/' between this process's
        // connections, so the read connection sees what the writer committed.
        let name = "file:/sagalane-memory-\(getpid())-\(memoryCounter.wrappingAdd(1, ordering: .relaxed).newValue)?vfs=memdb"
        let write = try SQLiteConnection(path: name, flags: SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI)
        try configure(write, busyTimeoutMilliseconds: 5000)
        try Schema.migrate(write)
        let read = try SQLiteConnection(path: name, flags: SQLITE_OPEN_READONLY | SQLITE_OPEN_URI)
        try configure(read, busyTimeoutMilliseconds: 5000)
        return SQLiteStorage(path: nil, writer: write, reader: read)
    }

    private static let memoryCounter = Atomic<Int>(0)

    private static func configure(_ connection: SQLiteConnection, busyTimeoutMilliseconds: Int32) throws(SagaLaneError) {
        connection.setBusyTimeout(milliseconds: busyTimeoutMilliseconds)
        try connection.execute("PRAGMA foreign_keys = ON")
    }

    /// Percent-escapes the characters a URI filename cannot hold literally.
    private static func uriEscaped(_ path: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out = ""
        for byte in path.utf8 {
            switch byte {
            case UInt8(ascii: "%"), UInt8(ascii: "?"), UInt8(ascii: "#"), 0..<0x21, 0x7F...:
                out += "%" + String(UnicodeScalar(hex[Int(byte >> 4)])) + String(UnicodeScalar(hex[Int(byte & 15)]))
            default:
                out.unicodeScalars.append(UnicodeScalar(byte))
            }
        }
        return out
    }

    // MARK: Writing

    private func writeConnection() throws(SagaLaneError) -> SQLiteConnection {
        guard let writer else {
            throw SagaLaneError(.readOnly, "the log was opened read-only (for diagnostics) and cannot write")
        }
        return writer
    }

    public func beginBatch(at now: Timestamp) throws(SagaLaneError) {
        try writeConnection().run("BEGIN IMMEDIATE")
        batchTime = .text(now.iso8601)
    }

    public var isBatchOpen: Bool { !(writer?.isAutocommit ?? true) }

    public func commitBatch() throws(SagaLaneError) {
        try writeConnection().run("COMMIT")
    }

    public func rollbackBatch() {
        guard let writer, !writer.isAutocommit else { return }
        try? writer.execute("ROLLBACK")
    }

    public func closeWriting() {
        writer?.close()
    }

    /// Runs SQL on the write connection outside any batch; for tests that change how the
    /// connection behaves (e.g. make it refuse writes, as a full disk or a permissions change
    /// would). Writer thread only.
    public func executeOnWriter(_ sql: String) throws(SagaLaneError) {
        try writeConnection().execute(sql)
    }

    public func apply(_ record: LogRecord) throws(SagaLaneError) -> Int {
        let c = try writeConnection()
        let now = batchTime
        switch record {
        case .startSaga(let id, let name, let input):
            return try c.run(
                "INSERT INTO saga (id, name, state, input_json, started_at) VALUES (?, ?, 'running', ?, ?)",
                [.int(Int64(bitPattern: id)), .text(name), .text(input), now])
        case .terminateSaga(let id, let state, let reason):
            return try expectRow(c.run(
                "UPDATE saga SET state = ?, failure_reason = ?, ended_at = ? WHERE id = ?",
                [.text(state.rawValue), .optional(reason), now, .int(Int64(bitPattern: id))]), "saga \(id)")
        case .setSagaState(let id, let state):
            return try expectRow(c.run(
                "UPDATE saga SET state = ? WHERE id = ?", [.text(state.rawValue), .int(Int64(bitPattern: id))]), "saga \(id)")
        case .startStep(let sagaID, let index, let name, let target, let command):
            return try c.run(
                "INSERT INTO saga_step (saga_id, step_index, name, target, command_json, state, started_at) VALUES (?, ?, ?, ?, ?, 'pending', ?)",
                [.int(Int64(bitPattern: sagaID)), .int(Int64(index)), .text(name), .text(target), .text(command), now])
        case .finishStep(let sagaID, let index, let output):
            return try expectRow(c.run(
                "UPDATE saga_step SET state = 'succeeded', output_json = ?, ended_at = ? WHERE saga_id = ? AND step_index = ?",
                [.text(output), now, .int(Int64(bitPattern: sagaID)), .int(Int64(index))]), "step \(index) of saga \(sagaID)")
        case .failStep(let sagaID, let index, let reason):
            return try expectRow(c.run(
                "UPDATE saga_step SET state = 'failed', failure_reason = ?, ended_at = ? WHERE saga_id = ? AND step_index = ?",
                [.text(reason), now, .int(Int64(bitPattern: sagaID)), .int(Int64(index))]), "step \(index) of saga \(sagaID)")
        case .markFailedCompensation(let sagaID, let reason):
            // Keep the first failure's cause and add the new context after it, unless this very
            // reason is already recorded (so repeated recoveries do not grow the text).
            return try expectRow(c.run(
                """
                UPDATE saga SET state = 'failed_compensation', ended_at = ?2,
                    failure_reason = CASE
                        WHEN failure_reason IS NULL OR failure_reason = '' THEN ?1
                        WHEN instr(failure_reason, ?1) > 0 THEN failure_reason
                        ELSE failure_reason || '; ' || ?1 END
                WHERE id = ?3
                """, [.text(reason), now, .int(Int64(bitPattern: sagaID))]), "saga \(sagaID)")
        case .enqueueJob(let id, let lane, let caller, let priority, let metadata):
            return try c.run(
                "INSERT INTO lane_job (id, lane, caller, priority, metadata, state, enqueued_at) VALUES (?, ?, ?, ?, ?, 'queued', ?)",
                [.text(id), .text(lane), .text(caller), .int(Int64(priority)), .blob(metadata), now])
        case .updateJobState(let id, let state, let attempts, let error):
            return try expectRow(c.run(
                Self.updateJobSQL(stamping: state),
                [.text(state.rawValue), now, attempts.map { .int(Int64($0)) } ?? .null, .optional(error), .text(id)]), "lane job '\(id)'")
        case .vacuum, .purgeFinishedJobs:
            throw SagaLaneError(.invalidArgument, "a bulk deletion is not applied inside a batch")
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

    private func expectRow(_ changed: Int, _ what: String) throws(SagaLaneError) -> Int {
        if changed == 0 { throw SagaLaneError(.notFound, "no such \(what)") }
        return changed
    }

    public func delete(_ deletion: LogDeletion, endedBefore cutoff: Timestamp, limit: Int) throws(SagaLaneError) -> Int {
        let c = try writeConnection()
        let sql: String
        switch deletion {
        case .terminalSagas:
            sql = """
                DELETE FROM saga WHERE id IN (SELECT id FROM saga
                    WHERE state IN ('completed','failed','failed_compensation','compensated') AND ended_at < ? LIMIT ?)
                """
        case .terminalJobs:
            sql = """
                DELETE FROM lane_job WHERE rowid IN (SELECT rowid FROM lane_job
                    WHERE (state = 'finished' OR state = 'cancelled' OR state = 'failed')
                    AND COALESCE(finished_at, cancelled_at, failed_at) < ? LIMIT ?)
                """
        }
        do throws(SagaLaneError) {
            try c.run("BEGIN IMMEDIATE")
            let deleted = try c.run(sql, [.text(cutoff.iso8601), .int(Int64(limit))])
            try c.run("COMMIT")
            return deleted
        } catch {
            if !c.isAutocommit { try? c.execute("ROLLBACK") }
            throw error
        }
    }

    // MARK: Reading

    /// Runs `body` with the read connection, one reader at a time.
    func read<T>(_ body: (SQLiteConnection) throws(SagaLaneError) -> T) throws(SagaLaneError) -> T {
        try reader.withLock { (state) throws(SagaLaneError) -> T in
            guard let connection = state.connection else { throw SagaLaneError.logClosed() }
            return try body(connection)
        }
    }

    public func closeReading() {
        reader.withLock { state in
            state.connection?.close()
            state.connection = nil
        }
    }
}
