import CSQLite
import Glibc
import SagaLaneTestSupport
import Synchronization
import Testing
@testable import SagaLaneLog
@testable import SagaLaneSupport

/// A value several tasks update.
private final class Shared<Value: Sendable>: Sendable {
    let value: Mutex<Value>
    init(_ value: Value) { self.value = Mutex(value) }
    var current: Value { value.withLock { $0 } }
}

private func size(_ path: String) -> Int {
    var info = stat()
    return stat(path, &info) == 0 ? Int(info.st_size) : 0
}

/// The background checkpointer on a real file: the writer checkpoints nothing itself, pages
/// still reach the database file while the log is open, the write-ahead log stays bounded
/// under writes that never pause, and a reader in another connection keeps reading.
@Suite(.timeLimit(.minutes(2)))
struct CheckpointTests {
    /// Pages per passive pass and the bound, small so that a few megabytes of writes pass it
    /// many times.
    static let limits = SQLiteStorage.CheckpointLimits(passPages: 32, limitPages: 256)
    static let writers = 8, sagasEach = 400
    /// About 2 KiB per saga: every batch of the eight writers adds several pages.
    static let input = "{\"pad\":\"" + String(repeating: "x", count: 2000) + "\"}"

    @Test func theWriteAheadLogStaysBoundedUnderSustainedWritesAndIsCheckpointedOffTheWriter() async throws {
        let dir = TemporaryDirectory()
        let path = dir.file("log.db")
        let storage = try SQLiteStorage.open(path: path, durability: .normal, busyTimeoutMilliseconds: 5000, create: true,
                                             checkpointing: .background, checkpointLimits: Self.limits)
        let log = try SagaLog(storage: storage)
        let writerSetting = Shared<Int64?>(nil)
        try await log.withWriter { (storage) throws(SagaLaneError) in
            let value = try (storage as! SQLiteStorage).writeConnection().query("PRAGMA wal_autocheckpoint") { $0.int(0) }.first
            writerSetting.value.withLock { $0 = value }
        }
        #expect(writerSetting.current == 0, "the writer's commits never checkpoint")
        let databaseBefore = size(path)
        let largestWAL = Shared(0)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<Self.writers {
                group.addTask {
                    for i in 0..<Self.sagasEach {
                        try await log.startSaga(id: UInt64(w * Self.sagasEach + i + 1), name: "s", inputJSON: Self.input)
                        let wal = size(path + "-wal")
                        largestWAL.value.withLock { $0 = max($0, wal) }
                    }
                }
            }
            try await group.waitForAll()
        }
        let stats = try #require(storage.checkpointStats)
        let written = Self.writers * Self.sagasEach * Self.input.utf8.count
        // Only a checkpoint writes the database file in WAL mode, and the writer's are off.
        #expect(size(path) - databaseBefore > written / 2, "pages reached the database file while the log was open")
        #expect(stats.passes > 0)
        #expect(stats.restarts > 0 || largestWAL.current < Self.limits.limitPages * 4096,
                "a write-ahead log that passed its bound was started over (\(stats))")
        // Unbounded, it would hold everything written (about 6.5 MB and its index pages);
        // bounded, its bound and what was appended while a pass ran.
        let bound = 3 * Self.limits.limitPages * (4096 + 24)
        #expect(largestWAL.current <= bound, "the write-ahead log reached \(largestWAL.current) bytes (\(stats))")
        #expect(try log.stats().sagas.values.reduce(0, +) == Self.writers * Self.sagasEach)
        log.close()
        #expect(size(path + "-wal") == 0, "closing still checkpoints everything into the file")
        let reopened = try SagaLog.openReadOnly(path: path)
        #expect(try reopened.stats().sagas.values.reduce(0, +) == Self.writers * Self.sagasEach)
        reopened.close()
    }

    /// One record at a time, as a host that waits for each saga: with every commit synced, the
    /// writer copies what each pass left while it has nothing queued, so the log starts over
    /// long before its bound and commits overwrite the file rather than extend it. When commits
    /// do not sync, growing costs them nothing and the writer leaves the log to the passes.
    @Test(arguments: [Durability.full, .normal])
    func anIdleWriterCatchesUpWithEachPassWhenCommitsSync(durability: Durability) async throws {
        let dir = TemporaryDirectory()
        let path = dir.file("log.db")
        let limits = SQLiteStorage.CheckpointLimits(passPages: 32, limitPages: 8192)
        let storage = try SQLiteStorage.open(path: path, durability: durability, busyTimeoutMilliseconds: 5000, create: true,
                                             checkpointing: .background, checkpointLimits: limits)
        let log = try SagaLog(storage: storage)
        let sagas = 400
        var largestWAL = 0
        for id in 1...sagas {
            try await log.startSaga(id: UInt64(id), name: "s", inputJSON: Self.input)
            largestWAL = max(largestWAL, size(path + "-wal"))
        }
        let stats = try #require(storage.checkpointStats)
        #expect(stats.restarts == 0, "the log never reached its bound (\(stats))")
        // About a page a saga: 400 pages written in all, against 32 per pass and at most
        // `catchUpPages` copied by the writer.
        let caughtUpBound = (limits.passPages + Checkpointer.catchUpPages + 32) * (4096 + 24)
        switch durability {
        case .full:
            #expect(stats.catchUps > 0, "\(stats)")
            #expect(largestWAL <= caughtUpBound, "the write-ahead log reached \(largestWAL) bytes (\(stats))")
        case .normal:
            #expect(stats.catchUps == 0, "\(stats)")
        }
        log.close()
        let reopened = try SagaLog.openReadOnly(path: path)
        #expect(try reopened.stats().sagas.values.reduce(0, +) == sagas, "every commit is in the file")
        reopened.close()
    }

    @Test func aReaderInAnotherConnectionKeepsReadingWhileTheCheckpointerRuns() async throws {
        let dir = TemporaryDirectory()
        let path = dir.file("log.db")
        let log = try SagaLog(storage: SQLiteStorage.open(path: path, durability: .normal, busyTimeoutMilliseconds: 5000, create: true,
                                                          checkpointing: .background, checkpointLimits: Self.limits))
        try await log.startSaga(id: 1, name: "s", inputJSON: "{}")
        let reader = try SagaLog.openReadOnly(path: path)
        let done = Atomic<Bool>(false)
        let total = 1 + 4 * 300
        let writing = Task {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for w in 0..<4 {
                    group.addTask {
                        for i in 0..<300 { try await log.startSaga(id: UInt64(2 + w * 300 + i), name: "s", inputJSON: Self.input) }
                    }
                }
                try await group.waitForAll()
            }
            done.store(true, ordering: .releasing)
        }
        var reads = 0, last = 0
        while !done.load(ordering: .acquiring) {
            let count = try reader.stats().sagas.values.reduce(0, +)
            #expect(count >= last, "a later read never sees fewer sagas")
            #expect(try reader.saga(id: 1) != nil)
            last = count
            reads += 1
            // Reads are synchronous: leave the cooperative pool's threads to the writing tasks.
            try await Task.sleep(for: .milliseconds(2))
        }
        try await writing.value
        #expect(reads > 1)
        #expect(try reader.stats().sagas.values.reduce(0, +) == total, "the reader sees every commit")
        let stats = try #require((log.storage as? SQLiteStorage)?.checkpointStats)
        #expect(stats.passes > 0, "checkpoints ran while the reader read")
        reader.close()
        log.close()
    }

    /// The checkpointer syncs the database file and the write-ahead log itself, through the
    /// files SQLite opened for its connection; one it has not opened yet has nothing to sync.
    @Test func theCheckpointerSyncsTheFilesItsConnectionOpened() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("log.db")
        var db: OpaquePointer?
        #expect(sqlite3_open(path, &db) == SQLITE_OK)
        defer { sqlite3_close(db) }
        #expect(sl_sqlite_sync_file(db, SQLITE_FCNTL_JOURNAL_POINTER) == SQLITE_OK, "no write-ahead log is open yet")
        #expect(sqlite3_exec(db, "PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1)", nil, nil, nil) == SQLITE_OK)
        var file: UnsafeMutablePointer<sqlite3_file>?
        #expect(sqlite3_file_control(db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &file) == SQLITE_OK)
        #expect(file?.pointee.pMethods != nil, "the write-ahead log is open once written")
        #expect(sl_sqlite_sync_file(db, SQLITE_FCNTL_JOURNAL_POINTER) == SQLITE_OK)
        #expect(sl_sqlite_sync_file(db, SQLITE_FCNTL_FILE_POINTER) == SQLITE_OK)
        #expect(sl_sqlite_sync_file(db, SQLITE_FCNTL_LOCKSTATE + 1000) == SQLITE_NOTFOUND, "an opcode that is not a file's is refused")
    }
}
