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
///
/// A file opened for writing has one writer: a lock file beside it (`WriterLock`) refuses a
/// second one, in this process or another. While it is open, a third connection checkpoints
/// the write-ahead log on a thread of its own (`Checkpointer`), unless the open asked for
/// SQLite's inline checkpoints. Closing checkpoints the write-ahead log into the database
/// file, so a closed log is that one file.
public final class SQLiteStorage: LogStorage, @unchecked Sendable {
    public let path: String?
    public var isReadOnly: Bool { writer == nil }

    /// The write connection; touched only by the writer thread once the storage is shared.
    let writer: SQLiteConnection?
    private let writerLock: WriterLock?
    private let checkpointer: Checkpointer?
    private let reader: Mutex<ReadConnection>
    private let busyTimeoutMilliseconds: Int32
    /// The batch's timestamp, formatted once: formatting it per record costs more than the
    /// insert.
    var batchTime = SQLValue.null
    var batchTimestamp = Timestamp(millisecondsSinceEpoch: 0)
    /// The lifecycle stream's positions: the last one assigned (writer thread), the last one
    /// committed (any thread), and the events of the open batch.
    var assignedEventPosition: UInt64 = 0
    private let committedEventPosition = Atomic<UInt64>(0)
    var batchEvents: [LifecycleEntry] = []
    private var committedEvents: [LifecycleEntry] = []

    private struct ReadConnection: ~Copyable {
        var connection: SQLiteConnection?
        /// For a read-only open reading the file as immutable: what the file and its
        /// write-ahead log looked like when the connection opened (see `ReadOnlyFile`).
        var snapshot: ReadOnlyFile.Snapshot?
        var closed = false
    }

    /// The columns queries read, for the file's schema version.
    let columns: Columns

    private init(path: String?, writer: SQLiteConnection?, writerLock: WriterLock?, checkpointer: Checkpointer? = nil,
                 reader: SQLiteConnection, snapshot: ReadOnlyFile.Snapshot? = nil, busyTimeoutMilliseconds: Int32,
                 schemaVersion: Int = Schema.version) {
        columns = Columns(schemaVersion: schemaVersion)
        self.path = path
        self.writer = writer
        self.writerLock = writerLock
        self.checkpointer = checkpointer
        self.reader = Mutex(ReadConnection(connection: reader, snapshot: snapshot))
        self.busyTimeoutMilliseconds = busyTimeoutMilliseconds
    }

    deinit {
        closeWriting()
        closeReading()
    }

    // MARK: Opening

    /// Opens the log at `path` for writing: takes its writer lock, checks the file is a
    /// sagalane log (or makes one in a new, empty file when `create` is true), switches it to
    /// WAL, sets `busy_timeout` and foreign keys, and migrates its schema to the current
    /// version. Reopening an existing log is idempotent. `checkpointing` says who copies the
    /// write-ahead log into the database file meanwhile (see `Checkpointing`).
    ///
    /// Only a missing file, an empty one, or an SQLite database with nothing in it becomes a
    /// log; anything else that is not one (another application's database) is refused and
    /// left byte for byte as it was.
    /// - Throws: `.locked` (naming its pid) when another runtime has the log open for
    ///   writing; `.readOnly` when this user cannot write the file or its folder; `.corrupt`
    ///   when the file is not a sagalane log, is newer than this build, or cannot be
    ///   migrated, or (with `create` false) is empty; `.cantOpen` when the folder (or, with
    ///   `create` false, the file) is missing; `.busy` when another connection keeps the
    ///   database locked past the busy timeout. The file is left as it was.
    ///
    /// `progress` hears how far a migration has got (see `ProgressHandler`), on the calling
    /// thread.
    public static func open(path: String, durability: Durability = .full, busyTimeoutMilliseconds: Int32 = 5000,
                            create: Bool = true, progress: ProgressHandler? = nil,
                            checkpointing: Checkpointing = .background) throws(SagaLaneError) -> SQLiteStorage {
        try open(path: path, durability: durability, busyTimeoutMilliseconds: busyTimeoutMilliseconds, create: create,
                 progress: progress, checkpointing: checkpointing, checkpointLimits: .standard)
    }

    /// When the background checkpointer runs: after every `passPages` pages written; and when
    /// it restarts the write-ahead log: once it is `limitPages` long.
    struct CheckpointLimits {
        var passPages: Int
        var limitPages: Int
        /// SQLite's own autocheckpoint threshold; 64 MiB of 4 KiB pages before a restart.
        static let standard = CheckpointLimits(passPages: 1000, limitPages: 16_384)
    }

    /// As the public `open`, with the background checkpointer's limits (tests make them small).
    static func open(path: String, durability: Durability, busyTimeoutMilliseconds: Int32, create: Bool,
                     progress: ProgressHandler? = nil,
                     checkpointing: Checkpointing, checkpointLimits: CheckpointLimits) throws(SagaLaneError) -> SQLiteStorage {
        var info = stat()
        let exists = stat(path, &info) == 0
        if !create && !exists {
            throw SagaLaneError(.cantOpen, "there is no log at \(path) (\(String(cString: strerror(errno))))")
        }
        let lock = try WriterLock.acquire(for: path)
        var connections: [SQLiteConnection] = []
        var checkpointer: Checkpointer?
        do throws(SagaLaneError) {
            let write = try SQLiteConnection(path: path, flags: SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0))
            connections.append(write)
            if write.isReadOnly {
                throw SagaLaneError(.readOnly, "\(path) is read-only to this user (uid \(geteuid())): a read-write open needs to "
                                        + "write the file and its folder (a read-only open can read it)")
            }
            try configure(write, busyTimeoutMilliseconds: busyTimeoutMilliseconds)
            while try Schema.contents(write, name: path) == .empty {
                guard create else {
                    throw SagaLaneError(.corrupt, "\(path) is empty: not a sagalane log (it is left as it is)")
                }
                // Made in rollback-journal mode, whose write lock waits for the busy timeout;
                // switching to WAL comes after, on a file that is a log.
                if try Schema.create(write, name: path) { break }
            }
            try switchToWAL(write, path: path, busyTimeoutMilliseconds: busyTimeoutMilliseconds)
            let synchronous = durability == .full ? "FULL" : "NORMAL"
            try write.execute("PRAGMA synchronous = \(synchronous)")
            try Schema.migrate(write, name: path, progress: progress)
            try configureWriting(write)
            let read = try SQLiteConnection(path: path, flags: SQLITE_OPEN_READONLY)
            connections.append(read)
            try configure(read, busyTimeoutMilliseconds: busyTimeoutMilliseconds)
            if checkpointing == .background {
                checkpointer = try Checkpointer(path: path, synchronous: synchronous, passPages: checkpointLimits.passPages,
                                                limitPages: checkpointLimits.limitPages)
                try checkpointer!.attach(to: write)
            }
            let storage = SQLiteStorage(path: path, writer: write, writerLock: lock, checkpointer: checkpointer, reader: read,
                                        busyTimeoutMilliseconds: busyTimeoutMilliseconds)
            try storage.loadEventPosition(write)
            return storage
        } catch {
            if let checkpointer, let write = connections.first { checkpointer.detach(from: write) }
            checkpointer?.stop()
            for connection in connections.reversed() { connection.close() }
            lock.release()
            throw error
        }
    }

    /// `PRAGMA journal_mode = WAL`, retried until the busy timeout: the switch needs every
    /// other connection out of the file, and SQLite does not call the busy handler for it.
    private static func switchToWAL(_ connection: SQLiteConnection, path: String, busyTimeoutMilliseconds: Int32) throws(SagaLaneError) {
        let deadline = Timestamp.now().millisecondsSinceEpoch + Int64(busyTimeoutMilliseconds)
        var pause: UInt32 = 1000
        while true {
            do throws(SagaLaneError) {
                let mode = try connection.query("PRAGMA journal_mode = WAL") { $0.text(0) }.first
                if mode != "wal" {
                    throw SagaLaneError(.cantOpen, "cannot switch \(path) to WAL mode (got \(mode ?? "nothing"))")
                }
                return
            } catch where error.code == .busy && Timestamp.now().millisecondsSinceEpoch < deadline {
                usleep(pause)
                pause = min(pause * 2, 50_000)
            }
        }
    }

    /// Opens the log for reading only: no migration, no write, no lock, and no file created
    /// beside it. Works while another process has the log open for writing, and on a log in
    /// a folder this user cannot write (see `ReadOnlyFile`).
    /// - Throws: `.cantOpen` when the file is missing; `.corrupt` when it is not a sagalane
    ///   log (or is newer than this build); `.busy` when it is still being created past the
    ///   busy timeout.
    public static func openReadOnly(path: String, busyTimeoutMilliseconds: Int32 = 5000) throws(SagaLaneError) -> SQLiteStorage {
        let deadline = Timestamp.now().millisecondsSinceEpoch + Int64(busyTimeoutMilliseconds)
        func waitForTheWriter() throws(SagaLaneError) {
            guard Timestamp.now().millisecondsSinceEpoch < deadline else {
                throw SagaLaneError(.busy, "\(path) is still being created by the process that writes it")
            }
            usleep(2000)
        }
        while true {
            // A writer making the log writes its schema in rollback-journal mode, then switches
            // to WAL. Reading meanwhile would take locks that its commit waits for.
            if !ReadOnlyFile.isInWALMode(path) && ReadOnlyFile.isBeingWritten(path) {
                try waitForTheWriter()
                continue
            }
            let (read, snapshot) = try ReadOnlyFile.connect(path: path, busyTimeoutMilliseconds: busyTimeoutMilliseconds)
            let contents: Result<Schema.Contents, SagaLaneError>
            do throws(SagaLaneError) { contents = .success(try Schema.contents(read, name: path)) } catch { contents = .failure(error) }
            // Read as immutable while a writer changed the file: what it read may be torn.
            if let snapshot, snapshot != ReadOnlyFile.Snapshot(path: path) {
                read.close()
                guard Timestamp.now().millisecondsSinceEpoch < deadline else {
                    throw SagaLaneError(.busy, "\(path) kept changing while it was opened")
                }
                continue
            }
            do throws(SagaLaneError) {
                switch try contents.get() {
                case .log(let version):
                    let storage = SQLiteStorage(path: path, writer: nil, writerLock: nil, reader: read, snapshot: snapshot,
                                                busyTimeoutMilliseconds: busyTimeoutMilliseconds, schemaVersion: version)
                    try storage.read { (c) throws(SagaLaneError) in try storage.loadEventPosition(c) }
                    return storage
                case .empty:
                    // A writer making the log holds its lock file: wait for the schema.
                    guard ReadOnlyFile.isBeingWritten(path) else {
                        throw SagaLaneError(.corrupt, "\(path) is not a sagalane log (no schema)",
                                            underlying: SQLiteError(extendedCode: SQLITE_NOTADB, message: "no schema"))
                    }
                    read.close()
                    try waitForTheWriter()
                }
            } catch {
                read.close()
                throw error
            }
        }
    }

    /// Opens a log that lives in memory and vanishes when closed; for tests and hosts that
    /// want sagas without durability.
    public static func openInMemory() throws(SagaLaneError) -> SQLiteStorage {
        // The memdb VFS shares a database named with a leading '/' between this process's
        // connections, so the read connection sees what the writer committed.
        let name = "file:/sagalane-memory-\(getpid())-\(memoryCounter.wrappingAdd(1, ordering: .relaxed).newValue)?vfs=memdb"
        let write = try SQLiteConnection(path: name, flags: SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI)
        try configure(write, busyTimeoutMilliseconds: 5000)
        _ = try Schema.create(write, name: "the log in memory")
        try configureWriting(write)
        let read = try SQLiteConnection(path: name, flags: SQLITE_OPEN_READONLY | SQLITE_OPEN_URI)
        try configure(read, busyTimeoutMilliseconds: 5000)
        return SQLiteStorage(path: nil, writer: write, writerLock: nil, reader: read, busyTimeoutMilliseconds: 5000)
    }

    private static let memoryCounter = Atomic<Int>(0)

    private static func configure(_ connection: SQLiteConnection, busyTimeoutMilliseconds: Int32) throws(SagaLaneError) {
        connection.setBusyTimeout(milliseconds: busyTimeoutMilliseconds)
        try connection.execute("PRAGMA foreign_keys = ON")
    }

    /// Once migrated, the write connection keeps its temporary data in memory: above all the
    /// statement journal, the pages a batch's savepoints (and its multi-row statements)
    /// changed, which SQLite otherwise moves to a new temporary file once past 64 KiB: a file
    /// made, written and removed in every batch of start-up recovery. Migrations (an index
    /// sorted over every saga) and `compact` (VACUUM's copy of the whole log) use files.
    static let temporaryStorage = "PRAGMA temp_store = MEMORY"

    private static func configureWriting(_ connection: SQLiteConnection) throws(SagaLaneError) {
        try connection.execute(temporaryStorage)
    }

    // MARK: Writing

    func writeConnection() throws(SagaLaneError) -> SQLiteConnection {
        guard let writer else {
            throw SagaLaneError(.readOnly, "the log was opened read-only (for diagnostics) and cannot write")
        }
        return writer
    }

    public func beginBatch(at now: Timestamp) throws(SagaLaneError) {
        checkpointer?.giveWay()
        do throws(SagaLaneError) { try writeConnection().run("BEGIN IMMEDIATE") } catch {
            checkpointer?.writerEnds()
            throw error
        }
        batchTime = .text(now.iso8601)
        batchTimestamp = now
        batchEvents.removeAll(keepingCapacity: true)
        assignedEventPosition = committedEventPosition.load(ordering: .relaxed)
    }

    public var isBatchOpen: Bool { !(writer?.isAutocommit ?? true) }

    public func commitBatch() throws(SagaLaneError) {
        try writeConnection().run("COMMIT")
        checkpointer?.writerEnds()
        committedEventPosition.store(assignedEventPosition, ordering: .releasing)
        swap(&committedEvents, &batchEvents)
        batchEvents.removeAll(keepingCapacity: true)
    }

    public func rollbackBatch() {
        // The batch's positions were never committed: the next batch assigns them again.
        assignedEventPosition = committedEventPosition.load(ordering: .relaxed)
        batchEvents.removeAll(keepingCapacity: true)
        defer { checkpointer?.writerEnds() }
        guard let writer, !writer.isAutocommit else { return }
        try? writer.execute("ROLLBACK")
    }

    public func writerIdle() {
        if let checkpointer, let writer { checkpointer.writerIdle(writer) }
    }

    public func takeCommittedEvents() -> [LifecycleEntry] {
        guard !committedEvents.isEmpty else { return [] }
        defer { committedEvents.removeAll(keepingCapacity: true) }
        return committedEvents
    }

    public var lastEventPosition: UInt64 { committedEventPosition.load(ordering: .acquiring) }

    /// Reads the highest position ever used, once the file is open: the stream's events and the
    /// mark a vacuum raises before it deletes any.
    func loadEventPosition(_ connection: SQLiteConnection) throws(SagaLaneError) {
        let hasEvents = try connection.query("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'saga_event'") {
            $0.int(0)
        }.first == 1
        guard hasEvents else { return }
        let highest = try connection.query(
            "SELECT MAX(COALESCE((SELECT MAX(position) FROM saga_event), 0), COALESCE((SELECT value FROM meta WHERE key = ?), 0))",
            [.text(Schema.eventPositionHighWater)]) { $0.int(0) }.first ?? 0
        committedEventPosition.store(UInt64(max(0, highest)), ordering: .releasing)
    }

    /// What the background checkpointer did so far; `nil` when checkpoints run inline.
    package var checkpointStats: CheckpointStats? { checkpointer?.stats.withLock { $0 } }

    /// Stops the background checkpointer and closes the read side too (so that nothing of this
    /// log waits on the checkpoint), moves everything the write-ahead log holds into the
    /// database file and empties it (`wal_checkpoint(TRUNCATE)`, waiting up to the busy
    /// timeout for other processes' readers), closes the write connection and releases the
    /// writer lock. Idempotent.
    public func closeWriting() {
        guard let writer, writer.db != nil else { return }
        if let checkpointer {
            checkpointer.detach(from: writer)
            checkpointer.stop()
        }
        closeReading()
        if path != nil {
            _ = try? writer.query("PRAGMA wal_checkpoint(TRUNCATE)") { $0.int(0) }
        }
        writer.close()
        writerLock?.release()
    }

    /// Runs SQL on the write connection outside any batch; for tests that change how the
    /// connection behaves (e.g. make it refuse writes, as a full disk or a permissions change
    /// would). Writer thread only.
    public func executeOnWriter(_ sql: String) throws(SagaLaneError) {
        try writeConnection().execute(sql)
    }

    /// `what` is made only for the error: the writer calls this for most records it applies.
    func expectRow(_ changed: Int, _ what: @autoclosure () -> String) throws(SagaLaneError) -> Int {
        if changed == 0 { throw SagaLaneError(.notFound, "no such \(what())") }
        return changed
    }

    public func delete(_ deletion: LogDeletion, endedBefore cutoff: Timestamp, limit: Int) throws(SagaLaneError) -> Int {
        let c = try writeConnection()
        let arguments: [SQLValue] = [.text(cutoff.iso8601), .int(Int64(limit))]
        do throws(SagaLaneError) {
            try c.run("BEGIN IMMEDIATE")
            let deleted: Int
            switch deletion {
            case .terminalSagas:
                let states = Self.terminalStates
                let ids = try c.query(
                    """
                    DELETE FROM saga WHERE id IN (SELECT id FROM saga WHERE \(Self.endedBefore(states.count)) LIMIT ?)
                    RETURNING id
                    """, states + arguments) { $0.int(0) }
                // The deleted ids stay used: the high-water mark rises with the delete.
                if let highest = ids.max() {
                    try c.run(
                        """
                        INSERT INTO meta (key, value) VALUES (?1, ?2)
                            ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)
                        """, [.text(Schema.sagaIDHighWater), .int(highest)])
                    // So do their lifecycle events' positions: no later event gets one.
                    try c.run(
                        """
                        INSERT INTO meta (key, value) VALUES (?1, ?2)
                            ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)
                        """, [.text(Schema.eventPositionHighWater), .int(Int64(bitPattern: lastEventPosition))])
                }
                deleted = ids.count
            case .terminalJobs:
                deleted = try c.run(
                    """
                    DELETE FROM lane_job WHERE rowid IN (SELECT rowid FROM lane_job
                        WHERE (state = 'finished' OR state = 'cancelled' OR state = 'failed')
                        AND COALESCE(finished_at, cancelled_at, failed_at) < ? LIMIT ?)
                    """, arguments)
            }
            try c.run("COMMIT")
            return deleted
        } catch {
            if !c.isAutocommit { try? c.execute("ROLLBACK") }
            throw error
        }
    }

    // MARK: Reading

    /// Runs `body` with the read connection, one reader at a time, in one read transaction.
    ///
    /// A read-only open reading the file as immutable checks the file did not change under
    /// the read (a writer started meanwhile); if it did, it reconnects and reads again.
    func read<T>(_ body: (SQLiteConnection) throws(SagaLaneError) -> T) throws(SagaLaneError) -> T {
        try reader.withLock { (state) throws(SagaLaneError) -> T in
            for _ in 0..<5 {
                if state.connection == nil {
                    // Only an immutable reader drops its connection without closing.
                    guard !state.closed, let path else { throw SagaLaneError.logClosed() }
                    (state.connection, state.snapshot) = try ReadOnlyFile.connect(path: path, busyTimeoutMilliseconds: busyTimeoutMilliseconds)
                }
                guard let connection = state.connection else { throw SagaLaneError.logClosed() }
                let snapshot = state.snapshot
                func unchanged() -> Bool { snapshot.map { $0 == ReadOnlyFile.Snapshot(path: path ?? "") } ?? true }
                if unchanged() {
                    try connection.execute("BEGIN")
                    do throws(SagaLaneError) {
                        let value = try body(connection)
                        try connection.execute("COMMIT")
                        if unchanged() { return value }
                    } catch {
                        if !connection.isAutocommit { try? connection.execute("ROLLBACK") }
                        if unchanged() { throw error }
                    }
                }
                connection.close()
                state.connection = nil
                state.snapshot = nil
            }
            throw SagaLaneError(.busy, "\(path ?? "the log") kept changing while it was read")
        }
    }

    public func closeReading() {
        reader.withLock { state in
            state.connection?.close()
            state.connection = nil
            state.snapshot = nil
            state.closed = true
        }
    }
}
