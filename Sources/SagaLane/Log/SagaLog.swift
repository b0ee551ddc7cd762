import CSQLite
import Glibc
import Synchronization

/// How hard each group commit works to survive a crash.
public enum Durability: String, Sendable, CaseIterable {
    /// `synchronous=FULL`: every commit is fsynced; survives power loss.
    case full
    /// `synchronous=NORMAL` (WAL): survives a crash of the process, not of the machine.
    case normal
}

/// The durable log: one SQLite database holding every saga, step and lane job.
///
/// Writes go through one writer thread that commits whatever is pending as one transaction
/// (group commit) and returns to each caller only once its record is durable. Reads use a
/// separate connection, so an operator's query never waits behind a batch. An operator can also
/// open the same file read-only (`openReadOnly`) while the owner runs.
public final class SagaLog: Sendable {
    /// The file this log was opened on; `nil` in memory.
    public let path: String?
    private let writer: GroupCommitWriter?
    private let reader: Mutex<ReadConnection>

    private struct ReadConnection: ~Copyable {
        var connection: SQLiteConnection?
    }

    private init(path: String?, writer: GroupCommitWriter?, reader: SQLiteConnection) {
        self.path = path
        self.writer = writer
        self.reader = Mutex(ReadConnection(connection: reader))
    }

    deinit { close() }

    /// Opens (creating if needed) the log at `path`: WAL, `busy_timeout`, foreign keys on,
    /// schema migrated to the current version. Reopening an existing log is idempotent.
    /// - Throws: `SagaLogError` when the folder is missing, the file is not a database, the
    ///   file is read-only, or the database stays locked past the busy timeout. The file is
    ///   left as it was.
    public static func open(path: String, durability: Durability = .full, busyTimeoutMilliseconds: Int32 = 5000) throws(SagaLogError) -> SagaLog {
        let write = try SQLiteConnection(path: path, flags: SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
        try configure(write, busyTimeoutMilliseconds: busyTimeoutMilliseconds)
        // journal_mode reads the header first: a file that is not a database fails here,
        // before anything is written to it.
        let mode = try write.query("PRAGMA journal_mode = WAL") { $0.text(0) }.first
        if mode != "wal" {
            throw SagaLogError(code: SQLITE_CANTOPEN, message: "cannot switch \(path) to WAL mode (got \(mode ?? "nothing"))")
        }
        try write.execute("PRAGMA synchronous = \(durability == .full ? "FULL" : "NORMAL")")
        try Schema.migrate(write)
        let read = try SQLiteConnection(path: path, flags: SQLITE_OPEN_READONLY)
        try configure(read, busyTimeoutMilliseconds: busyTimeoutMilliseconds)
        return SagaLog(path: path, writer: try startWriter(write, reader: read), reader: read)
    }

    /// Opens the log for reading only: no migration, no pragma writes, no writes at all. Works
    /// while another process has the log open for writing.
    public static func openReadOnly(path: String, busyTimeoutMilliseconds: Int32 = 5000) throws(SagaLogError) -> SagaLog {
        var read = try SQLiteConnection(path: path, flags: SQLITE_OPEN_READONLY)
        read.setBusyTimeout(milliseconds: busyTimeoutMilliseconds)
        var version: Int
        do {
            version = try read.query("PRAGMA user_version") { Int($0.int(0)) }.first ?? 0
        } catch where error.isCantOpen && access(path, W_OK) != 0 {
            // A WAL database on read-only media cannot create its shared-memory file. Nobody
            // can be writing it there, so it is safe to read it as immutable.
            read.close()
            read = try SQLiteConnection(path: "file:\(uriEscaped(path))?immutable=1", flags: SQLITE_OPEN_READONLY | SQLITE_OPEN_URI)
            version = try read.query("PRAGMA user_version") { Int($0.int(0)) }.first ?? 0
        }
        if version == 0 {
            throw SagaLogError(code: SQLITE_NOTADB, message: "\(path) is not a sagalane log (no schema)")
        }
        if version > Schema.version {
            throw SagaLogError(code: SagaLogError.schemaTooNewCode,
                               message: "\(path) has schema version \(version), newer than this sagalane understands (\(Schema.version))")
        }
        return SagaLog(path: path, writer: nil, reader: read)
    }

    /// Opens a log that lives in memory and vanishes when closed; for tests and hosts that
    /// want sagas without durability.
    public static func openInMemory() throws(SagaLogError) -> SagaLog {
        // The memdb VFS shares a database named with a leading '/' between this process's
        // connections, so the read connection sees what the writer committed.
        let name = "file:/sagalane-memory-\(getpid())-\(memoryCounter.wrappingAdd(1, ordering: .relaxed).newValue)?vfs=memdb"
        let write = try SQLiteConnection(path: name, flags: SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI)
        try configure(write, busyTimeoutMilliseconds: 5000)
        try Schema.migrate(write)
        let read = try SQLiteConnection(path: name, flags: SQLITE_OPEN_READONLY | SQLITE_OPEN_URI)
        try configure(read, busyTimeoutMilliseconds: 5000)
        return SagaLog(path: nil, writer: try startWriter(write, reader: read), reader: read)
    }

    /// The writer thread for `connection`; when it cannot start, both connections are closed.
    private static func startWriter(_ connection: SQLiteConnection, reader: SQLiteConnection) throws(SagaLogError) -> GroupCommitWriter {
        do {
            return try GroupCommitWriter(connection: connection)
        } catch {
            connection.close()
            reader.close()
            throw SagaLogError(code: SagaLogError.threadStartCode, message: error.description)
        }
    }

    /// Percent-escapes the characters a URI filename cannot hold literally.
    private static func uriEscaped(_ path: String) -> String {
        var out = ""
        for byte in path.utf8 {
            switch byte {
            case UInt8(ascii: "%"), UInt8(ascii: "?"), UInt8(ascii: "#"), 0..<0x21, 0x7F...:
                let hex = Array("0123456789ABCDEF".utf8)
                out += "%" + String(UnicodeScalar(hex[Int(byte >> 4)])) + String(UnicodeScalar(hex[Int(byte & 15)]))
            default:
                out.unicodeScalars.append(UnicodeScalar(byte))
            }
        }
        return out
    }

    private static let memoryCounter = Atomic<Int>(0)

    private static func configure(_ connection: SQLiteConnection, busyTimeoutMilliseconds: Int32) throws(SagaLogError) {
        connection.setBusyTimeout(milliseconds: busyTimeoutMilliseconds)
        try connection.execute("PRAGMA foreign_keys = ON")
    }

    /// Writes what is pending, then closes both connections. Idempotent; later calls fail with
    /// a "log is closed" error.
    public func close() {
        writer?.stop()
        reader.withLock { state in
            state.connection?.close()
            state.connection = nil
        }
    }

    /// Whether this log was opened with `openReadOnly`.
    public var isReadOnly: Bool { writer == nil }

    // MARK: Writes

    /// Queues `record` for the next group commit. `completion` runs on the writer thread with
    /// the number of rows the record changed (or deleted), once the record is durable, or with
    /// the error that stopped it. It must return quickly.
    public func submit(_ record: LogRecord, completion: @escaping @Sendable (Result<Int, SagaLogError>) -> Void) {
        guard let writer else {
            completion(.failure(SagaLogError(code: SagaLogError.readOnlyOpenCode,
                                             message: "the log was opened read-only (for diagnostics) and cannot write")))
            return
        }
        writer.submit(.record(record), completion: completion)
    }

    /// Writes `record` and returns once it is durable. The caller stays on its own executor
    /// (an actor on the event loop resumes there directly, with no hop through the global
    /// pool): the wait is a continuation the writer thread resumes.
    @discardableResult
    public nonisolated(nonsending) func write(_ record: LogRecord) async throws(SagaLogError) -> Int {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<Int, SagaLogError>, Never>) in
            submit(record) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }

    public nonisolated(nonsending) func startSaga(id: UInt64, name: String, inputJSON: String) async throws(SagaLogError) {
        try await write(.startSaga(id: id, name: name, inputJSON: inputJSON))
    }

    public nonisolated(nonsending) func terminateSaga(id: UInt64, state: SagaState, reason: String?) async throws(SagaLogError) {
        try await write(.terminateSaga(id: id, state: state, reason: reason))
    }

    public nonisolated(nonsending) func setSagaState(id: UInt64, state: SagaState) async throws(SagaLogError) {
        try await write(.setSagaState(id: id, state: state))
    }

    public nonisolated(nonsending) func startStep(sagaID: UInt64, index: UInt32, name: String, target: String, commandJSON: String) async throws(SagaLogError) {
        try await write(.startStep(sagaID: sagaID, index: index, name: name, target: target, commandJSON: commandJSON))
    }

    public nonisolated(nonsending) func finishStep(sagaID: UInt64, index: UInt32, outputJSON: String) async throws(SagaLogError) {
        try await write(.finishStep(sagaID: sagaID, index: index, outputJSON: outputJSON))
    }

    public nonisolated(nonsending) func failStep(sagaID: UInt64, index: UInt32, reason: String) async throws(SagaLogError) {
        try await write(.failStep(sagaID: sagaID, index: index, reason: reason))
    }

    public nonisolated(nonsending) func markFailedCompensation(sagaID: UInt64, reason: String) async throws(SagaLogError) {
        try await write(.markFailedCompensation(sagaID: sagaID, reason: reason))
    }

    /// Deletes terminal sagas (never `running` or `compensating`) that ended before `cutoff`;
    /// their steps go with them.
    /// - Returns: How many sagas were deleted.
    @discardableResult
    public nonisolated(nonsending) func vacuum(olderThan cutoff: Timestamp) async throws(SagaLogError) -> Int {
        try await write(.vacuum(olderThan: cutoff))
    }

    public nonisolated(nonsending) func enqueueJob(id: String, lane: String, caller: String, priority: Int, metadata: [UInt8]) async throws(SagaLogError) {
        try await write(.enqueueJob(id: id, lane: lane, caller: caller, priority: priority, metadata: metadata))
    }

    public nonisolated(nonsending) func updateJobState(id: String, state: JobState, attempts: Int? = nil, error: String? = nil) async throws(SagaLogError) {
        try await write(.updateJobState(id: id, state: state, attempts: attempts, error: error))
    }

    @discardableResult
    public nonisolated(nonsending) func purgeFinishedJobs(olderThan cutoff: Timestamp) async throws(SagaLogError) -> Int {
        try await write(.purgeFinishedJobs(olderThan: cutoff))
    }

    /// Runs SQL on the write connection between batches. Tests use it to make the database
    /// refuse writes under a running log.
    nonisolated(nonsending) func runOnWriter(_ sql: String) async throws(SagaLogError) {
        guard let writer else { throw SagaLogError(code: SagaLogError.readOnlyOpenCode, message: "read-only log") }
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<Int, SagaLogError>, Never>) in
            writer.submit(.maintenance(sql)) { continuation.resume(returning: $0) }
        }
        _ = try result.get()
    }

    /// Holds the writer thread between batches while `body` runs on it, so that records
    /// submitted meanwhile pile up and commit as one batch.
    nonisolated(nonsending) func holdWriterForTesting(_ body: @escaping @Sendable () -> Void) async {
        guard let writer else { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            writer.submit(.hold(body)) { _ in continuation.resume() }
        }
    }

    /// Records (and other work) waiting for the writer thread.
    var queuedWrites: Int { writer?.queuedCount ?? 0 }

    /// Makes the database read-only (or writable again) under the running log, as a full disk
    /// or a permissions change would.
    nonisolated(nonsending) func setReadOnlyForTesting(_ readOnly: Bool) async throws(SagaLogError) {
        try await runOnWriter("PRAGMA query_only = \(readOnly ? "ON" : "OFF")")
    }

    /// Group commits done and records written so far.
    var commitCounts: (batches: Int, records: Int) {
        (writer?.batches.load(ordering: .relaxed) ?? 0, writer?.records.load(ordering: .relaxed) ?? 0)
    }

    // MARK: Reads

    private func read<T>(_ body: (SQLiteConnection) throws(SagaLogError) -> T) throws(SagaLogError) -> T {
        try reader.withLock { (state) throws(SagaLogError) -> T in
            guard let connection = state.connection else { throw SagaLogError.closed() }
            return try body(connection)
        }
    }

    /// The highest saga id in the log, or 0 when there is none.
    public func maxSagaID() throws(SagaLogError) -> UInt64 {
        try read { (c) throws(SagaLogError) in try c.query("SELECT COALESCE(MAX(id), 0) FROM saga") { UInt64(bitPattern: $0.int(0)) }.first ?? 0 }
    }

    private static let sagaColumns = "id, name, state, input_json, failure_reason, started_at, ended_at"
    private static let stepColumns = "saga_id, step_index, name, target, command_json, state, output_json, failure_reason, started_at, ended_at"
    private static let jobColumns = "id, lane, caller, priority, metadata, state, attempts, error, enqueued_at, started_at, finished_at, cancelled_at, failed_at"

    private static func saga(_ row: SQLiteConnection.Row) -> SagaRecord {
        SagaRecord(id: UInt64(bitPattern: row.int(0)), name: row.text(1), state: SagaState(rawValue: row.text(2)) ?? .failed,
                   inputJSON: row.text(3), failureReason: row.optionalText(4), startedAt: row.timestamp(5),
                   endedAt: row.optionalTimestamp(6), steps: [])
    }

    private static func step(_ row: SQLiteConnection.Row) -> StepRecord {
        StepRecord(sagaID: UInt64(bitPattern: row.int(0)), index: UInt32(truncatingIfNeeded: row.int(1)), name: row.text(2),
                   target: row.text(3), commandJSON: row.text(4), state: StepState(rawValue: row.text(5)) ?? .failed,
                   outputJSON: row.optionalText(6), failureReason: row.optionalText(7), startedAt: row.timestamp(8),
                   endedAt: row.optionalTimestamp(9))
    }

    private static func job(_ row: SQLiteConnection.Row) -> JobRecord {
        JobRecord(id: row.text(0), lane: row.text(1), caller: row.text(2), priority: Int(row.int(3)), metadata: row.blob(4),
                  state: JobState(rawValue: row.text(5)) ?? .failed, attempts: Int(row.int(6)), error: row.optionalText(7),
                  enqueuedAt: row.timestamp(8), startedAt: row.optionalTimestamp(9), finishedAt: row.optionalTimestamp(10),
                  cancelledAt: row.optionalTimestamp(11), failedAt: row.optionalTimestamp(12))
    }

    /// Sagas in `running`, `compensating` or `failed`, each with its steps, by id.
    public func unresolvedSagas() throws(SagaLogError) -> [SagaRecord] {
        try read { (c) throws(SagaLogError) in
            let filter = "state IN ('running','compensating','failed')"
            var sagas = try c.query("SELECT \(Self.sagaColumns) FROM saga WHERE \(filter) ORDER BY id", [], Self.saga)
            let steps = try c.query(
                "SELECT \(Self.stepColumns) FROM saga_step WHERE saga_id IN (SELECT id FROM saga WHERE \(filter)) ORDER BY saga_id, step_index",
                [], Self.step)
            var byID: [UInt64: [StepRecord]] = [:]
            for step in steps { byID[step.sagaID, default: []].append(step) }
            for i in sagas.indices { sagas[i].steps = byID[sagas[i].id] ?? [] }
            return sagas
        }
    }

    /// The steps of saga `sagaID`, whatever its state, by index.
    public func sagaSteps(sagaID: UInt64) throws(SagaLogError) -> [StepRecord] {
        try read { (c) throws(SagaLogError) in
            try c.query("SELECT \(Self.stepColumns) FROM saga_step WHERE saga_id = ? ORDER BY step_index",
                        [.int(Int64(bitPattern: sagaID))], Self.step)
        }
    }

    /// Saga `id` with its steps, if it exists.
    public func saga(id: UInt64) throws(SagaLogError) -> SagaRecord? {
        try read { (c) throws(SagaLogError) -> SagaRecord? in
            guard var saga = try c.query("SELECT \(Self.sagaColumns) FROM saga WHERE id = ?", [.int(Int64(bitPattern: id))], Self.saga).first else {
                return nil
            }
            saga.steps = try c.query("SELECT \(Self.stepColumns) FROM saga_step WHERE saga_id = ? ORDER BY step_index",
                                     [.int(Int64(bitPattern: id))], Self.step)
            return saga
        }
    }

    /// Up to `limit` sagas, most recent first by `COALESCE(ended_at, started_at)`, with their
    /// step counts.
    public func snapshotRecent(limit: Int) throws(SagaLogError) -> [SagaSummary] {
        try read { (c) throws(SagaLogError) in
            try c.query(
                """
                SELECT \(Self.sagaColumns), (SELECT COUNT(*) FROM saga_step WHERE saga_id = saga.id)
                FROM saga ORDER BY COALESCE(ended_at, started_at) DESC, id DESC LIMIT ?
                """, [.int(Int64(max(0, limit)))]) { row in
                let s = Self.saga(row)
                return SagaSummary(id: s.id, name: s.name, state: s.state, inputJSON: s.inputJSON, failureReason: s.failureReason,
                                   startedAt: s.startedAt, endedAt: s.endedAt, stepCount: Int(row.int(7)))
            }
        }
    }

    /// Lane `lane`'s queued jobs in dispatch order: higher priority first, then FIFO.
    public func listQueuedJobs(lane: String) throws(SagaLogError) -> [JobRecord] {
        try read { (c) throws(SagaLogError) in
            try c.query("SELECT \(Self.jobColumns) FROM lane_job WHERE lane = ? AND state = 'queued' ORDER BY priority DESC, enqueued_at, rowid",
                        [.text(lane)], Self.job)
        }
    }

    /// Lane `lane`'s running jobs.
    public func listRunningJobs(lane: String) throws(SagaLogError) -> [JobRecord] {
        try read { (c) throws(SagaLogError) in
            try c.query("SELECT \(Self.jobColumns) FROM lane_job WHERE lane = ? AND state = 'running' ORDER BY enqueued_at, rowid",
                        [.text(lane)], Self.job)
        }
    }

    /// Up to `limit` lane jobs, most recent activity first (the latest of their timestamps),
    /// of one lane and one state when those are given.
    public func recentJobs(lane: String? = nil, state: JobState? = nil, limit: Int) throws(SagaLogError) -> [JobRecord] {
        try read { (c) throws(SagaLogError) in
            try c.query(
                """
                SELECT \(Self.jobColumns) FROM lane_job
                WHERE (?1 IS NULL OR lane = ?1) AND (?2 IS NULL OR state = ?2)
                ORDER BY COALESCE(finished_at, cancelled_at, failed_at, started_at, enqueued_at) DESC, rowid DESC LIMIT ?3
                """, [.optional(lane), .optional(state?.rawValue), .int(Int64(max(0, limit)))], Self.job)
        }
    }

    /// What the log holds, counted: for an operator's dashboard or a health check.
    public func stats() throws(SagaLogError) -> LogStats {
        try read { (c) throws(SagaLogError) -> LogStats in
            var stats = LogStats()
            stats.schemaVersion = Int(try c.query("PRAGMA user_version") { $0.int(0) }.first ?? 0)
            for (state, count) in try c.query("SELECT state, COUNT(*) FROM saga GROUP BY state", [], { ($0.text(0), Int($0.int(1))) }) {
                if let state = SagaState(rawValue: state) { stats.sagas[state] = count }
            }
            stats.oldestRunningSaga = try c.query("SELECT MIN(started_at) FROM saga WHERE state = 'running'") { $0.optionalTimestamp(0) }.first ?? nil
            for (lane, state, count) in try c.query("SELECT lane, state, COUNT(*) FROM lane_job GROUP BY lane, state", [], {
                ($0.text(0), $0.text(1), Int($0.int(2)))
            }) {
                if let state = JobState(rawValue: state) { stats.jobs[lane, default: [:]][state] = count }
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

    /// Lane job `id`, if it exists.
    public func job(id: String) throws(SagaLogError) -> JobRecord? {
        try read { (c) throws(SagaLogError) in
            try c.query("SELECT \(Self.jobColumns) FROM lane_job WHERE id = ?", [.text(id)], Self.job).first
        }
    }

    /// `PRAGMA integrity_check`'s verdict ("ok" when the database is sound).
    public func integrityCheck() throws(SagaLogError) -> String {
        try read { (c) throws(SagaLogError) in
            try c.query("PRAGMA integrity_check") { $0.text(0) }.joined(separator: "\n")
        }
    }
}
