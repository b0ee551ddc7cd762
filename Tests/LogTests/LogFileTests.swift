import CSQLite
import Glibc
import Synchronization
import SagaLaneTestSupport
import Testing
@testable import SagaLaneLog
@testable import SagaLaneSupport

private func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

private func size(_ path: String) -> Int? {
    var info = stat()
    return stat(path, &info) == 0 ? Int(info.st_size) : nil
}

/// Makes a log of schema version 1 at `path` (WAL, as that version's runtime left it), then
/// runs `sql` on it: the file an older sagalane wrote.
func writeVersion1Log(_ path: String, _ sql: String = "") throws {
    let v1 = try SQLiteConnection(path: path, flags: SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
    defer { v1.close() }
    try v1.execute("PRAGMA journal_mode = WAL")
    try Schema.migrate(v1, upTo: 1)
    if !sql.isEmpty { try v1.execute(sql) }
}

/// Runs SQL on `path` with a plain SQLite connection, as another program would.
private func foreign(_ path: String, _ sql: String) throws {
    let c = try SQLiteConnection(path: path, flags: SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
    defer { c.close() }
    try c.execute(sql)
}

/// The log's file: what becomes a log and what is refused, one writer, a self-contained file
/// once closed, reads that create nothing.
@Suite(.timeLimit(.minutes(2)))
struct LogFileTests {
    @Test func anotherApplicationsDatabaseIsRefusedAndLeftAsItWas() throws {
        let dir = TemporaryDirectory()
        for (name, sql) in [("rollback.db", "CREATE TABLE accounts (id INTEGER PRIMARY KEY); INSERT INTO accounts VALUES (1)"),
                            ("wal.db", "PRAGMA journal_mode = WAL; CREATE TABLE t (x); CREATE INDEX t_x ON t (x)"),
                            ("app-id.db", "PRAGMA application_id = 42"),
                            ("versioned.db", "PRAGMA user_version = 2")] {
            let path = dir.file(name)
            try foreign(path, sql)
            let before = fileBytes(path)
            for readOnly in [false, true] {
                do {
                    _ = readOnly ? try SagaLog.openReadOnly(path: path) : try SagaLog.open(path: path)
                    Issue.record("\(name) was opened as a log")
                } catch {
                    #expect(error.code == .corrupt, "\(name): \(error)")
                    #expect(error.message.contains("not a sagalane log"), "\(name): \(error.message)")
                    #expect(error.message.count < 300)
                }
            }
            #expect(fileBytes(path) == before, "\(name) is byte for byte as it was")
            for suffix in ["-wal", "-shm", "-lock"] { #expect(!exists(path + suffix), "\(name)\(suffix)") }
        }
    }

    @Test func anEmptyFileOrAnEmptyDatabaseBecomesALog() async throws {
        let dir = TemporaryDirectory()
        let empty = dir.file("empty.db")
        writeFile(empty, [])
        let blank = dir.file("blank.db")
        try foreign(blank, "CREATE TABLE t (x); DROP TABLE t")
        #expect(size(blank)! > 0)
        for path in [empty, blank] {
            let log = try SagaLog.open(path: path)
            try await log.startSaga(id: 1, name: "a", inputJSON: "{}")
            #expect(try log.stats().schemaVersion == Schema.version)
            log.close()
        }
    }

    @Test func aFailedMigrationSaysSoInALineAndChangesNothing() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("v1.db")
        // A row the version 2 state CHECK refuses, as a damaged or hand-edited log may hold.
        try writeVersion1Log(path, """
            PRAGMA ignore_check_constraints = ON;
            INSERT INTO saga VALUES (1, 'odd', 'bogus', '{}', NULL, '2026-01-01T00:00:00.000Z', NULL);
            PRAGMA wal_checkpoint(TRUNCATE);
            """)
        let before = fileBytes(path)
        do {
            _ = try SagaLog.open(path: path)
            Issue.record("the migration must fail")
        } catch {
            #expect(error.code == .corrupt, "\(error)")
            #expect(error.message.contains("schema version 2"), "\(error.message)")
            #expect(error.message.contains("CHECK constraint failed"), "\(error.message)")
            #expect(error.message.count < 300, "\(error.message.count) characters")
            #expect(!error.message.contains("CREATE TABLE"))
            #expect(error.sqlite?.sql?.contains("CREATE TABLE saga_v2") == true, "the SQL stays in the underlying error")
        }
        #expect(fileBytes(path) == before)
    }

    @Test func aMigrationReportsItsProgressUpToTheVersionsItApplied() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("v1.db")
        try writeVersion1Log(path)
        let calls = Mutex<[(LongOperation, Int, Int)]>([])
        let log = try SagaLog.open(path: path, create: false) { operation, done, total in calls.withLock { $0.append((operation, done, total)) } }
        #expect(try log.stats().schemaVersion == Schema.version)
        log.close()
        let seen = calls.withLock { $0 }
        #expect(seen.allSatisfy { $0.0 == .migration && $0.2 == Schema.version - 1 }, "\(seen)")
        #expect(seen.map(\.1) == Array(0...(Schema.version - 1)), "one report before, then one per version applied: \(seen)")
        // A log already current migrates nothing and says nothing.
        calls.withLock { $0.removeAll() }
        let again = try SagaLog.open(path: path, create: false) { operation, done, total in calls.withLock { $0.append((operation, done, total)) } }
        again.close()
        #expect(calls.withLock { $0.isEmpty })
    }

    @Test func withoutCreateAMissingOrEmptyFileIsAnErrorAndNoLog() throws {
        let dir = TemporaryDirectory()
        let missing = dir.file("missing.db")
        #expect { try SagaLog.open(path: missing, create: false) } throws: { ($0 as? SagaLaneError)?.code == .cantOpen }
        #expect(!exists(missing) && !exists(missing + "-lock"))
        let empty = dir.file("empty.db")
        writeFile(empty, [])
        #expect { try SagaLog.open(path: empty, create: false) } throws: { ($0 as? SagaLaneError)?.code == .corrupt }
        #expect(size(empty) == 0)
        #expect(!exists(empty + "-wal") && !exists(empty + "-lock"))
    }

    @Test func aSecondWriterIsRefusedNamingTheHolder() async throws {
        let dir = TemporaryDirectory()
        let path = dir.file("log.db")
        let owner = try SagaLog.open(path: path)
        try await owner.startSaga(id: 1, name: "a", inputJSON: "{}")
        #expect(exists(path + "-lock"))
        do {
            _ = try SagaLog.open(path: path)
            Issue.record("a second writer must be refused")
        } catch {
            #expect(error.code == .locked, "\(error)")
            #expect(error.message.contains("pid \(getpid())"), "\(error.message)")
        }
        let reader = try SagaLog.openReadOnly(path: path)
        #expect(try reader.maxSagaID() == 1)
        reader.close()
        owner.close()
        #expect(!exists(path + "-lock"), "a clean close removes its lock file")
        let next = try SagaLog.open(path: path)
        #expect(try next.maxSagaID() == 1)
        next.close()
    }

    @Test func aStaleLockFileIsTakenOver() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("log.db")
        writeFile(path + "-lock", Array("999999\n".utf8))
        let log = try SagaLog.open(path: path)
        #expect(String(decoding: fileBytes(path + "-lock"), as: UTF8.self) == "\(getpid())\n")
        log.close()
    }

    @Test func aClosedLogIsOneFileEvenWithAReaderOpen() async throws {
        let dir = TemporaryDirectory()
        let path = dir.file("log.db")
        let log = try SagaLog.open(path: path)
        let reader = try SagaLog.openReadOnly(path: path)
        for id in 1...50 as ClosedRange<UInt64> { try await log.startSaga(id: id, name: "s", inputJSON: "{}") }
        #expect(try reader.snapshotRecent(limit: 100).count == 50)
        #expect(size(path + "-wal")! > 0)
        log.close()
        #expect((size(path + "-wal") ?? 0) == 0, "the write-ahead log was checkpointed and emptied")
        let copy = dir.file("copy.db")
        writeFile(copy, fileBytes(path))
        let copied = try SagaLog.openReadOnly(path: copy)
        #expect(try copied.snapshotRecent(limit: 100).count == 50)
        copied.close()
        #expect(try reader.snapshotRecent(limit: 100).count == 50)
        reader.close()
    }

    @Test func aReadOnlyOpenCreatesNothingAndSeesAWriterThatStartsLater() async throws {
        let dir = TemporaryDirectory()
        let path = dir.file("log.db")
        var log = try SagaLog.open(path: path)
        try await log.startSaga(id: 1, name: "first", inputJSON: "{}")
        log.close()
        #expect(!exists(path + "-wal") && !exists(path + "-shm"))
        let reader = try SagaLog.openReadOnly(path: path)
        #expect(try reader.snapshotRecent(limit: 10).map(\.name) == ["first"])
        #expect(!exists(path + "-wal") && !exists(path + "-shm"), "a reader creates no file beside the log")
        // A writer starts under the reader: the reader's next reads see what it writes.
        log = try SagaLog.open(path: path)
        try await log.startSaga(id: 2, name: "second", inputJSON: "{}")
        #expect(try reader.snapshotRecent(limit: 10).map(\.name).sorted() == ["first", "second"])
        try await log.startSaga(id: 3, name: "third", inputJSON: "{}")
        #expect(try reader.maxSagaID() == 3)
        log.close()
        #expect(try reader.snapshotRecent(limit: 10).count == 3)
        reader.close()
    }

    @Test func aReadOnlyOpenOfALogBeingCreatedWaitsForItsSchema() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("log.db")
        writeFile(path, [])
        // What a writer making the log holds meanwhile: the lock file, with its pid.
        writeFile(path + "-lock", Array("\(getpid())\n".utf8))
        #expect { try SagaLog.openReadOnly(path: path, busyTimeoutMilliseconds: 50) } throws: { ($0 as? SagaLaneError)?.code == .busy }
        unlink(path + "-lock")
        #expect { try SagaLog.openReadOnly(path: path, busyTimeoutMilliseconds: 50) } throws: { ($0 as? SagaLaneError)?.code == .corrupt }
    }

    @Test func idsStayUsedAfterAVacuumDeletedEverySaga() async throws {
        let dir = TemporaryDirectory()
        let path = dir.file("log.db")
        // 1,400 commits one after another: without fsync, so a busy disk cannot stretch it.
        var log = try SagaLog.open(path: path, durability: .normal)
        for id in 1...700 as ClosedRange<UInt64> {
            try await log.startSaga(id: id, name: "s", inputJSON: "{}")
            try await log.terminateSaga(id: id, state: .completed, reason: nil)
        }
        #expect(try await log.vacuum(olderThan: Timestamp.now().advanced(by: .seconds(1))) == 700)
        #expect(try log.snapshotRecent(limit: 1).isEmpty)
        #expect(try log.maxSagaID() == 700)
        log.close()
        log = try SagaLog.open(path: path)
        #expect(try log.maxSagaID() == 700)
        try await log.startSaga(id: 701, name: "s", inputJSON: "{}")
        #expect(try log.maxSagaID() == 701)
        log.close()
        let reader = try SagaLog.openReadOnly(path: path)
        #expect(try reader.maxSagaID() == 701)
        reader.close()
    }

    @Test func aNegativeSagaIDIsCorruptionNamingTheRow() async throws {
        let dir = TemporaryDirectory()
        let path = dir.file("log.db")
        let log = try SagaLog.open(path: path)
        defer { log.close() }
        try await log.startSaga(id: 5, name: "s", inputJSON: "{}")
        try await log.runOnWriterForTesting("INSERT INTO saga (id, name, state, input_json, started_at) VALUES (-1, 'x', 'running', '{}', 'now')")
        do {
            _ = try log.maxSagaID()
            Issue.record("a negative id must be reported")
        } catch {
            #expect(error.code == .corrupt)
            #expect(error.message.contains("saga id -1"), "\(error.message)")
        }
        // The log never writes one.
        await #expect { try await log.startSaga(id: UInt64(Int64.max) + 1, name: "s", inputJSON: "{}") } throws: {
            ($0 as? SagaLaneError)?.code == .invalidArgument
        }
    }
}
