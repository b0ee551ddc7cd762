import CSQLite
import Glibc
import SagaLaneTestSupport
import Synchronization
import Testing
@testable import SagaLaneLog
@testable import SagaLaneJSON
@testable import SagaLaneSupport

/// A small tmpfs mounted for one test: a real full disk, or a real read-only filesystem.
/// Needs root (the tests run as root in CI); tests that use it are skipped elsewhere.
final class TinyFilesystem {
    let path: String
    private let holder = TemporaryDirectory()

    static let available: Bool = {
        guard geteuid() == 0, let fs = try? TinyFilesystem(kilobytes: 64) else { return false }
        _ = fs
        return true
    }()

    init(kilobytes: Int) throws {
        path = holder.file("fs")
        mkdir(path, 0o755)
        guard mount("tmpfs", path, "tmpfs", 0, "size=\(kilobytes)k") == 0 else {
            throw ChildError(message: "mount failed: \(String(cString: strerror(errno)))")
        }
    }

    func remountReadOnly() throws {
        guard mount("tmpfs", path, "tmpfs", UInt(MS_REMOUNT | MS_RDONLY), nil) == 0 else {
            throw ChildError(message: "remount failed: \(String(cString: strerror(errno)))")
        }
    }

    deinit {
        umount2(path, Int32(MNT_DETACH))
        rmdir(path)
    }
}

func fileBytes(_ path: String) -> [UInt8] {
    guard let f = fopen(path, "rb") else { return [] }
    defer { fclose(f) }
    var bytes: [UInt8] = []
    var c = fgetc(f)
    while c != EOF { bytes.append(UInt8(c)); c = fgetc(f) }
    return bytes
}

func writeFile(_ path: String, _ bytes: [UInt8]) {
    let f = fopen(path, "wb")!
    _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
    fclose(f)
}

/// Holds the log's writer until `count` writes are queued behind it (or a minute passes: a
/// guard against hanging, long enough for a loaded machine to queue them all), so they commit
/// as one batch whatever the scheduling. Returns once the writer is held.
private func holdWriter(_ log: SagaLog, untilQueued count: Int) async -> Task<Void, Never> {
    let (held, signal) = AsyncStream.makeStream(of: Void.self)
    let task = Task {
        await log.holdWriterForTesting {
            signal.yield()
            let deadline = Timestamp.now().millisecondsSinceEpoch + 60_000
            while log.queuedWrites < count && Timestamp.now().millisecondsSinceEpoch < deadline { usleep(500) }
        }
    }
    for await _ in held { break }
    return task
}

@Suite(.timeLimit(.minutes(2)))
struct LogTests {
    @Test func openCreatesTheSchemaAndReopenIsIdempotent() async throws {
        let dir = TemporaryDirectory()
        let path = dir.file("log.db")
        var log = try SagaLog.open(path: path)
        try await log.startSaga(id: 1, name: "a", inputJSON: "{}")
        log.close()
        log = try SagaLog.open(path: path)
        #expect(try log.maxSagaID() == 1)
        log.close()
        let raw = try SQLiteConnection(path: path, flags: SQLITE_OPEN_READONLY)
        #expect(try raw.query("PRAGMA user_version") { $0.int(0) } == [7])
        #expect(try raw.query("PRAGMA application_id") { $0.int(0) } == [Int64(Schema.applicationID)])
        #expect(try raw.query("PRAGMA journal_mode") { $0.text(0) } == ["wal"])
        let indexes = try raw.query("SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%' ORDER BY name") { $0.text(0) }
        #expect(indexes == ["lane_job_by_key", "lane_job_ended", "lane_job_pending", "saga_by_key", "saga_ended", "saga_event_by_saga", "saga_unfinished"])
        // Restart recovery and the sweeper search their indexes, whatever the table's size.
        func plan(_ sql: String) throws -> String {
            try raw.query("EXPLAIN QUERY PLAN " + sql) { $0.text(3) }.joined(separator: "; ")
        }
        #expect(try plan("SELECT id FROM lane_job WHERE lane = 'a' AND state = 'queued' ORDER BY priority DESC, enqueued_at, rowid")
                == "SEARCH lane_job USING INDEX lane_job_pending (lane=? AND state=?)")
        #expect(try plan("SELECT id FROM lane_job WHERE lane = 'a' AND state = 'running' ORDER BY enqueued_at, rowid")
                .hasPrefix("SEARCH lane_job USING INDEX lane_job_pending (lane=? AND state=?)"))
        #expect(try plan("""
            SELECT rowid FROM lane_job WHERE (state = 'finished' OR state = 'cancelled' OR state = 'failed')
            AND COALESCE(finished_at, cancelled_at, failed_at) < '2026' LIMIT 500
            """) == "SEARCH lane_job USING INDEX lane_job_ended (<expr><?)")
        #expect(try plan("SELECT id FROM saga WHERE state NOT IN ('running', 'compensating') AND state IN ('completed', 'failed')")
                == "SEARCH saga USING COVERING INDEX saga_ended (state=?)")
        // So do recovery's pages, one seek a page however many sagas ended.
        #expect(try plan("""
            SELECT id, name FROM saga INDEXED BY saga_unfinished WHERE state IN ('running', 'compensating') AND id > 0
            ORDER BY id LIMIT 10
            """) == "SEARCH saga USING INDEX saga_unfinished (id>?)")
    }

    @Test func aVersion1LogIsMigratedKeepingEveryRow() async throws {
        let dir = TemporaryDirectory()
        let path = dir.file("v1.db")
        try writeVersion1Log(path, """
            INSERT INTO saga VALUES (1, 'old', 'completed', '{}', NULL, '2020-01-01T00:00:00.000Z', '2020-01-01T00:00:01.000Z');
            INSERT INTO saga VALUES (2, 'live', 'running', '{"n":2}', NULL, '2026-01-01T00:00:00.000Z', NULL);
            INSERT INTO saga_step VALUES (1, 0, 'a', 'self', '{}', 'succeeded', '{"ok":true}', NULL, '2020-01-01T00:00:00.000Z', '2020-01-01T00:00:01.000Z');
            INSERT INTO saga_step VALUES (2, 0, 'b', 'lane:gpu', '{"k":1}', 'pending', NULL, NULL, '2026-01-01T00:00:00.000Z', NULL);
            INSERT INTO lane_job (id, lane, caller, priority, metadata, state, enqueued_at)
                VALUES ('j1', 'gpu', 'c', 5, x'0102', 'queued', '2026-01-01T00:00:00.000Z');
            """)
        let log = try SagaLog.open(path: path)
        let unresolved = try log.unfinishedSagas(limit: 10)
        #expect(unresolved.map(\.id) == [2])
        #expect(unresolved.first?.steps.map(\.target) == ["lane:gpu"], "rebuilding saga did not cascade into its steps")
        #expect(try log.sagaSteps(sagaID: 1).first?.outputJSON == #"{"ok":true}"#)
        #expect(try log.listQueuedJobs(lane: "gpu").map(\.metadata) == [[1, 2]])
        #expect(try log.maxSagaID() == 2)
        // Foreign keys are back on: vacuuming the old saga takes its step with it.
        #expect(try await log.vacuum(olderThan: Timestamp.now()) == 1)
        #expect(try log.sagaSteps(sagaID: 1).isEmpty)
        #expect(try log.integrityCheck() == "ok")
        log.close()

        let raw = try SQLiteConnection(path: path, flags: SQLITE_OPEN_READWRITE)
        defer { raw.close() }
        #expect(try raw.query("PRAGMA user_version") { $0.int(0) } == [7])
        #expect(try raw.query("PRAGMA foreign_key_check") { $0.text(0) }.isEmpty)
        let indexes = try raw.query("SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%' ORDER BY name") { $0.text(0) }
        #expect(indexes == ["lane_job_by_key", "lane_job_ended", "lane_job_pending", "saga_by_key", "saga_ended", "saga_event_by_saga", "saga_unfinished"])
        #expect(throws: SagaLaneError.self, "the state CHECK still holds") {
            try raw.execute("INSERT INTO saga (id, name, state, input_json, started_at) VALUES (3, 'x', 'bogus', '{}', '2026-01-01T00:00:00.000Z')")
        }
        // The point of version 2: checking a state no longer builds a temporary b-tree per row.
        let plan = try raw.query("EXPLAIN INSERT INTO saga (id, name, state, input_json, started_at) VALUES (3, 'x', 'running', '{}', 'now')") { $0.text(1) }
        #expect(!plan.contains("OpenEphemeral"))
    }

    /// A log of schema version 6 (every saga in the state index) is migrated in place: its rows
    /// stay as they were, the ended sagas move to `saga_ended`, and every query by state (the
    /// listings and counts, statistics, vacuum, recovery's and operators' pages) reads the
    /// part of the table it needs through that part's index, never the whole table.
    @Test func aVersion6LogIsMigratedToTheIndexOfEndedSagas() async throws {
        let dir = TemporaryDirectory()
        let path = dir.file("v6.db")
        let v6 = try SQLiteConnection(path: path, flags: SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
        try v6.execute("PRAGMA journal_mode = WAL")
        try Schema.migrate(v6, upTo: 6)
        try v6.execute("""
            INSERT INTO saga (id, name, state, input_json, failure_reason, started_at, ended_at) VALUES
                (1, 'a', 'completed', '{}', NULL, '2020-01-01T00:00:00.000Z', '2020-01-01T00:00:05.000Z'),
                (2, 'b', 'running', '{"n":2}', NULL, '2026-01-01T00:00:00.000Z', NULL),
                (3, 'a', 'failed_compensation', '{}', 'undo failed', '2021-01-01T00:00:00.000Z', '2021-01-01T00:01:00.000Z'),
                (4, 'c', 'compensating', '{}', 'step 1 failed', '2025-01-01T00:00:00.000Z', NULL),
                (5, 'b', 'failed', '{}', 'no', '2022-01-01T00:00:00.000Z', '2022-01-02T00:00:00.000Z'),
                (6, 'a', 'compensated', '{}', 'no', '2023-01-01T00:00:00.000Z', '2023-01-02T00:00:00.000Z'),
                (7, 'c', 'running', '{}', NULL, '2024-01-01T00:00:00.000Z', NULL),
                (8, 'a', 'completed', '{}', NULL, '2026-02-01T00:00:00.000Z', '2026-02-01T00:00:01.000Z');
            INSERT INTO saga_step (saga_id, step_index, name, target, command_json, state, started_at) VALUES
                (1, 0, 'x', 't', '{}', 'succeeded', '2020-01-01T00:00:00.000Z'),
                (2, 0, 'x', 't', '{}', 'pending', '2026-01-01T00:00:00.000Z'),
                (3, 0, 'x', 't', '{}', 'failed', '2021-01-01T00:00:00.000Z');
            INSERT INTO saga_event (position, saga_id, type, payload_json, at) VALUES
                (1, 1, 'SagaStarted', '{"name":"a"}', '2020-01-01T00:00:00.000Z'),
                (2, 3, 'SagaFailed', '{"name":"a"}', '2021-01-01T00:01:00.000Z');
            UPDATE meta SET value = 2 WHERE key = 'event_position_high_water';
            """)
        let tables = ["saga", "saga_step", "saga_event", "meta"]
        let before = try tables.map { try v6.query("SELECT * FROM \($0) ORDER BY 1, 2") { row in
            (0..<Int32(sqlite3_column_count(row.statement))).map { row.isNull($0) ? "NULL" : row.text($0) }.joined(separator: "|")
        } }
        v6.close()

        let log = try SagaLog.open(path: path)
        let storage = try #require(log.storage as? SQLiteStorage)
        let statements = StatementRecorder()
        try storage.recordReads(into: statements)
        await log.holdWriterForTesting { storage.writer?.record(into: statements) }

        let stats = try log.stats()
        #expect(stats.schemaVersion == 7)
        #expect(stats.sagas == [.running: 2, .compensating: 1, .completed: 2, .failed: 1, .failedCompensation: 1, .compensated: 1])
        #expect(stats.oldestRunningSaga == Timestamp(iso8601: "2024-01-01T00:00:00.000Z"))
        #expect(try log.unfinishedSagas(limit: 10).map(\.id) == [2, 4, 7])
        #expect(try log.unfinishedOutlines(limit: 10).map(\.id) == [2, 4, 7])
        #expect(try log.unresolvedSagas(limit: 10).map(\.id) == [2, 3, 4, 7])
        #expect(try log.unresolvedSagas(after: 2, limit: 2).map(\.id) == [3, 4])
        #expect(try log.unresolvedSagas(after: 2, limit: 2).first?.steps.map(\.state) == [.failed])
        for (filter, count) in [(SagaFilter(), 8), (SagaFilter(states: [.completed]), 2), (SagaFilter(states: SagaState.unresolved), 4),
                                (SagaFilter(states: [.running, .completed]), 4), (SagaFilter(states: [.completed, .running], name: "a"), 2),
                                (SagaFilter(states: [.failed, .running], activeSince: Timestamp(iso8601: "2024-01-01T00:00:00.000Z")), 2)] {
            #expect(try log.countSagas(matching: filter) == count, "\(filter)")
        }
        let mixed = SagaFilter(states: [.running, .completed])
        #expect(try log.sagas(matching: mixed, order: .recentFirst, limit: 10).map(\.id) == [8, 2, 7, 1])
        #expect(try log.sagas(matching: mixed, order: .byID, limit: 10).map(\.id) == [1, 2, 7, 8])
        let first = try log.sagas(matching: mixed, order: .recentFirst, limit: 2)
        #expect(first.map(\.id) == [8, 2] && first.map(\.stepCount) == [0, 1])
        #expect(try log.sagas(matching: mixed, order: .recentFirst, after: first.last?.saga, limit: 10).map(\.id) == [7, 1])
        #expect(try log.sagas(matching: SagaFilter(states: [.failedCompensation, .failed]), order: .recentFirst, limit: 10).map(\.id) == [5, 3])
        #expect(try log.sagas(matching: SagaFilter(states: [.compensating]), order: .byID, limit: 10).map(\.id) == [4])
        #expect(try log.sagas(matching: SagaFilter(), order: .recentFirst, limit: 3).map(\.id) == [8, 2, 4])
        let all = try log.sagas(matching: SagaFilter(), order: .recentFirst, limit: 3)
        #expect(try log.sagas(matching: SagaFilter(), order: .recentFirst, after: all.last?.saga, limit: 10).map(\.id) == [7, 6, 5, 3, 1])
        #expect(try log.sagas(matching: SagaFilter(name: "a"), order: .byID, limit: 10).map(\.id) == [1, 3, 6, 8])
        #expect(try log.sagas(matching: mixed, order: .byID, after: first.first?.saga, limit: 10).isEmpty)
        #expect(try log.sagas(matching: SagaFilter(states: [.completed, .compensated]), order: .byID, after: all.first?.saga, limit: 10).isEmpty)
        #expect(try log.sagas(matching: SagaFilter(states: [.running, .compensated], activeSince: Timestamp(iso8601: "2023-01-01T12:00:00.000Z"),
                                                   activeBefore: Timestamp(iso8601: "2025-06-01T00:00:00.000Z")),
                              order: .recentFirst, limit: 10).map(\.id) == [7, 6])
        #expect(try log.snapshotRecent(limit: 4).map(\.id) == [8, 2, 4, 7])

        let estimate = try log.vacuumEstimate(olderThan: Timestamp(iso8601: "2022-06-01T00:00:00.000Z")!)
        #expect(estimate.counts == VacuumCounts(sagas: 3, steps: 2))
        #expect(estimate.oldestEnd == Timestamp(iso8601: "2020-01-01T00:00:05.000Z"))
        #expect(estimate.newestEnd == Timestamp(iso8601: "2022-01-02T00:00:00.000Z"))
        // Every row as version 6 left it.
        let raw = try SQLiteConnection(path: path, flags: SQLITE_OPEN_READONLY)
        defer { raw.close() }
        let now = try tables.map { try raw.query("SELECT * FROM \($0) ORDER BY 1, 2") { row in
            (0..<Int32(sqlite3_column_count(row.statement))).map { row.isNull($0) ? "NULL" : row.text($0) }.joined(separator: "|")
        } }
        #expect(now == before)

        #expect(try await log.vacuum(olderThan: Timestamp(iso8601: "2022-06-01T00:00:00.000Z")!) == 3)
        #expect(try await log.vacuum(olderThan: Timestamp(iso8601: "2023-06-01T00:00:00.000Z")!, progress: { _ in }) == VacuumCounts(sagas: 1, steps: 0))
        #expect(try log.snapshotRecent(limit: 10).map(\.id) == [8, 2, 4, 7])
        await log.holdWriterForTesting { storage.writer?.record(into: nil) }
        try storage.recordReads(into: nil)

        #expect(try raw.query("PRAGMA user_version") { $0.int(0) } == [7])
        #expect(try raw.query("SELECT name FROM sqlite_master WHERE name = 'saga_by_state'") { $0.text(0) }.isEmpty)
        #expect(try raw.query("SELECT id FROM saga INDEXED BY saga_ended WHERE state NOT IN ('running', 'compensating') ORDER BY id") {
            $0.int(0)
        } == [8], "the index holds the ended sagas")
        // Each query the log ran on the saga table: by state through the part's index, and
        // none reads the whole table, but for a walk in the order of ids that stops at its
        // limit.
        let sagaQueries = Set(statements.statements.filter { $0.containsExactly("FROM saga ") || $0.containsExactly("FROM saga\n") })
        #expect(sagaQueries.count >= 20)
        for sql in sagaQueries {
            let plan = try raw.query("EXPLAIN QUERY PLAN " + sql) { $0.text(3) }
            if sql.containsExactly("ORDER BY id LIMIT") && !sql.containsExactly("UNION ALL") {
                #expect(!plan.contains { $0.containsExactly("TEMP B-TREE") }, "\(sql)\n\(plan)")
            } else {
                #expect(!plan.contains("SCAN saga"), "\(sql)\n\(plan)")
            }
            if sql.containsExactly(SagaPart.ended.condition) {
                #expect(plan.contains { $0.containsExactly("INDEX saga_ended") }, "\(sql)\n\(plan)")
            }
            if sql.containsExactly(SagaPart.unfinished.condition) {
                #expect(plan.contains { $0.containsExactly("INDEX saga_unfinished") }, "\(sql)\n\(plan)")
            }
        }
        log.close()
    }

    @Test func sagaAndStepLifecycle() async throws {
        let log = try SagaLog.openInMemory()
        defer { log.close() }
        #expect(try log.maxSagaID() == 0)
        try await log.startSaga(id: 7, name: "cleanup", inputJSON: #"{"label":"w"}"#)
        try await log.startStep(sagaID: 7, index: 0, name: "issue_host_reap", target: "host", commandJSON: #"{"cmd":"reap"}"#)
        try await log.finishStep(sagaID: 7, index: 0, outputJSON: #"{"type":"PanesReaped"}"#)
        try await log.startStep(sagaID: 7, index: 1, name: "issue_host_drain", target: "host", commandJSON: "{}")
        try await log.failStep(sagaID: 7, index: 1, reason: "host gone")
        #expect(try log.maxSagaID() == 7)
        var saga = try #require(try log.saga(id: 7))
        #expect(saga.state == .running && saga.endedAt == nil && saga.inputJSON == #"{"label":"w"}"#)
        #expect(saga.steps.map(\.state) == [.succeeded, .failed])
        #expect(saga.steps[0].outputJSON == #"{"type":"PanesReaped"}"#)
        #expect(saga.steps[0].endedAt != nil)
        #expect(saga.steps[1].failureReason == "host gone")
        #expect(try log.sagaSteps(sagaID: 7) == saga.steps)
        try await log.setSagaState(id: 7, state: .compensating)
        #expect(try log.saga(id: 7)?.state == .compensating)
        try await log.terminateSaga(id: 7, state: .failed, reason: "step 1 failed")
        saga = try #require(try log.saga(id: 7))
        #expect(saga.state == .failed && saga.failureReason == "step 1 failed" && saga.endedAt != nil)
        #expect(try log.saga(id: 8) == nil)
        // Updates of rows that do not exist are errors, not silent no-ops.
        await #expect(throws: SagaLaneError.self) { try await log.terminateSaga(id: 99, state: .completed, reason: nil) }
        await #expect(throws: SagaLaneError.self) { try await log.finishStep(sagaID: 7, index: 5, outputJSON: "{}") }
        await #expect(throws: SagaLaneError.self) { try await log.startStep(sagaID: 99, index: 0, name: "x", target: "t", commandJSON: "{}") }
    }

    @Test func duplicateSagaIDIsAnErrorNeverAnOverwrite() async throws {
        let log = try SagaLog.openInMemory()
        defer { log.close() }
        try await log.startSaga(id: 1, name: "first", inputJSON: "1")
        do {
            try await log.startSaga(id: 1, name: "second", inputJSON: "2")
            Issue.record("a duplicate id must fail")
        } catch {
            #expect(error.code == .exists)
            #expect(error.sqlite?.extendedCode == SQLITE_CONSTRAINT | (6 << 8), "SQLITE_CONSTRAINT_PRIMARYKEY")
            #expect(error.sqlite?.sql?.contains("INSERT INTO saga") == true)
            #expect(error.description.contains("UNIQUE constraint failed"))
        }
        #expect(try log.saga(id: 1)?.name == "first")
    }

    @Test func unresolvedSagasAndFailedCompensation() async throws {
        let log = try SagaLog.openInMemory()
        defer { log.close() }
        for (id, state) in [(1, SagaState.running), (2, .compensating), (3, .failed), (4, .completed), (5, .failedCompensation), (6, .compensated)] {
            try await log.startSaga(id: UInt64(id), name: "s\(id)", inputJSON: "{}")
            try await log.startStep(sagaID: UInt64(id), index: 0, name: "x", target: "t", commandJSON: "{}")
            if state != .running { try await log.terminateSaga(id: UInt64(id), state: state, reason: state == .failed ? "timeout" : nil) }
        }
        // Failed is final; failed_compensation is final but an operator's to look at.
        #expect(try log.unfinishedSagas(limit: 10).map(\.id) == [1, 2])
        let unresolved = try log.unresolvedSagas(limit: 10)
        #expect(unresolved.map(\.id) == [1, 2, 5])
        #expect(unresolved.allSatisfy { $0.steps.count == 1 })
        #expect(try log.unresolvedSagas(limit: 2).map(\.id) == [1, 2])
        #expect(try log.unresolvedSagas(after: 2, limit: 2).map(\.id) == [5])
        #expect(try log.unfinishedSagas(after: 2, limit: 10).isEmpty)
        #expect(try log.unresolvedSagas(limit: 0).isEmpty)
        try await log.markFailedCompensation(sagaID: 3, reason: "restarted")
        let first = try #require(try log.saga(id: 3))
        #expect(first.state == .failedCompensation)
        #expect(first.failureReason == "timeout; restarted")
        try await Task.sleep(for: .milliseconds(5))
        try await log.markFailedCompensation(sagaID: 3, reason: "restarted")
        let second = try #require(try log.saga(id: 3))
        #expect(second.failureReason == "timeout; restarted", "idempotent")
        #expect(second.endedAt! > first.endedAt!, "ended_at is rewritten")
        try await log.markFailedCompensation(sagaID: 1, reason: "restarted")
        #expect(try log.saga(id: 1)?.failureReason == "restarted")
        #expect(try log.unfinishedSagas(limit: 10).map(\.id) == [2])
        #expect(try log.unresolvedSagas(limit: 10).map(\.id) == [1, 2, 3, 5])
    }

    @Test func snapshotRecentIsMostRecentFirstWithStepCounts() async throws {
        let log = try SagaLog.openInMemory()
        defer { log.close() }
        for id in 1...5 as ClosedRange<UInt64> {
            try await log.startSaga(id: id, name: "s", inputJSON: "{}")
            for step in 0..<UInt32(id % 3) { try await log.startStep(sagaID: id, index: step, name: "x", target: "t", commandJSON: "{}") }
            try await Task.sleep(for: .milliseconds(2))
        }
        try await log.terminateSaga(id: 2, state: .completed, reason: nil)
        let recent = try log.snapshotRecent(limit: 3)
        #expect(recent.map(\.id) == [2, 5, 4])
        #expect(recent.map(\.stepCount) == [2, 2, 1])
        #expect(try log.snapshotRecent(limit: 100).count == 5)
    }

    @Test func vacuumDeletesOnlyOldTerminalSagasInBatches() async throws {
        let log = try SagaLog.openInMemory()
        defer { log.close() }
        var records: [LogRecord] = []
        for id in 1...2_000 as ClosedRange<UInt64> {
            records.append(.startSaga(id: id, name: "done", inputJSON: "{}"))
            records.append(.startStep(sagaID: id, index: 0, name: "x", target: "t", commandJSON: "{}"))
            records.append(.terminateSaga(id: id, state: id % 2 == 0 ? .completed : .failedCompensation, reason: nil))
        }
        for id in 2_001...2_010 as ClosedRange<UInt64> { records.append(.startSaga(id: id, name: "live", inputJSON: "{}")) }
        records.append(.startSaga(id: 3_000, name: "undoing", inputJSON: "{}"))
        records.append(.setSagaState(id: 3_000, state: .compensating))
        for record in records { try await log.write(record) }
        #expect(try await log.vacuum(olderThan: Timestamp.now().advanced(by: .seconds(-3600))) == 0)
        let before = log.commitCounts.batches
        let deleted = try await log.vacuum(olderThan: Timestamp.now().advanced(by: .seconds(1)))
        #expect(deleted == 2_000)
        #expect(log.commitCounts.batches - before >= 4, "deleted in batches of at most \(GroupCommitWriter.bulkBatchSize)")
        let left = try log.snapshotRecent(limit: 100)
        #expect(left.count == 11)
        #expect(Set(left.map(\.state)) == [.running, .compensating])
        #expect(try log.sagaSteps(sagaID: 2).isEmpty, "steps cascade")
    }

    @Test func laneJobsRoundTripEveryState() async throws {
        let log = try SagaLog.openInMemory()
        defer { log.close() }
        try await log.enqueueJob(id: "low", lane: "gpu", caller: "alice", priority: 1, metadata: [1, 2, 3])
        try await log.enqueueJob(id: "high", lane: "gpu", caller: "bob", priority: 9, metadata: [])
        try await log.enqueueJob(id: "low2", lane: "gpu", caller: "alice", priority: 1, metadata: [4])
        try await log.enqueueJob(id: "other", lane: "cpu", caller: "carol", priority: 5, metadata: [])
        await #expect(throws: SagaLaneError.self) { try await log.enqueueJob(id: "low", lane: "gpu", caller: "x", priority: 0, metadata: []) }
        #expect(try log.listQueuedJobs(lane: "gpu").map(\.id) == ["high", "low", "low2"])
        #expect(try log.job(id: "low")?.metadata == [1, 2, 3])
        try await log.updateJobState(id: "high", state: .running, attempts: 1)
        #expect(try log.listRunningJobs(lane: "gpu").map(\.id) == ["high"])
        #expect(try log.job(id: "high")?.startedAt != nil)
        try await log.updateJobState(id: "high", state: .finished)
        try await log.updateJobState(id: "low", state: .cancelled)
        try await log.updateJobState(id: "low2", state: .failed, attempts: 3, error: "boom")
        let failed = try #require(try log.job(id: "low2"))
        #expect(failed.state == .failed && failed.attempts == 3 && failed.error == "boom" && failed.failedAt != nil)
        #expect(try log.job(id: "high")?.finishedAt != nil)
        #expect(try log.job(id: "high")?.attempts == 1)
        #expect(try log.job(id: "low")?.cancelledAt != nil)
        await #expect(throws: SagaLaneError.self) { try await log.updateJobState(id: "nope", state: .running) }
        #expect(try await log.purgeFinishedJobs(olderThan: Timestamp.now().advanced(by: .seconds(-60))) == 0)
        #expect(try await log.purgeFinishedJobs(olderThan: Timestamp.now().advanced(by: .seconds(1))) == 3)
        #expect(try log.job(id: "other")?.state == .queued, "non-terminal rows stay")
    }

    @Test func aFinishedJobHasNoErrorEvenAfterAFailedAttempt() async throws {
        let log = try SagaLog.openInMemory()
        defer { log.close() }
        try await log.enqueueJob(id: "flaky", lane: "gpu", caller: "c", priority: 0, metadata: [])
        try await log.updateJobState(id: "flaky", state: .running, attempts: 1)
        try await log.updateJobState(id: "flaky", state: .queued, attempts: 1, error: "first try broke")
        try await log.updateJobState(id: "flaky", state: .running, attempts: 2)
        #expect(try log.job(id: "flaky")?.error == "first try broke", "a retry's running row says why the last attempt failed")
        try await log.updateJobState(id: "flaky", state: .finished, attempts: 2)
        let finished = try #require(try log.job(id: "flaky"))
        #expect(finished.state == .finished && finished.attempts == 2)
        #expect(finished.error == nil)
    }

    @Test func aValueOverTheLimitIsRefusedBeforeItIsQueuedNamingTheLimit() async throws {
        let log = try SagaLog.openInMemory()
        defer { log.close() }
        let limit = SagaLog.maximumValueBytes
        let huge = String(repeating: "x", count: limit + 1)
        let records: [LogRecord] = [
            .startSaga(id: 1, name: "s", inputJSON: huge),
            .startStep(sagaID: 1, index: 0, name: "x", target: "t", commandJSON: huge),
            .failStep(sagaID: 1, index: 0, reason: huge),
            .enqueueJob(id: "j", lane: "l", caller: "c", priority: 0, metadata: [UInt8](repeating: 0, count: limit + 1)),
            .updateJobState(id: "j", state: .failed, attempts: nil, error: huge),
        ]
        for record in records {
            do {
                try await log.write(record)
                Issue.record("\(record) was written")
            } catch {
                #expect(error.code == .invalidArgument)
                #expect(error.message.contains("\(limit)") && error.message.contains("\(limit + 1) bytes"), "\(error.message)")
                #expect(error.message.count < 200 && !error.message.contains("xxxx"))
            }
        }
        #expect(log.commitCounts.records == 0, "nothing reached the writer")
        try await log.startSaga(id: 2, name: "s", inputJSON: String(repeating: "y", count: limit))
        #expect(try log.saga(id: 2)?.inputJSON.utf8.count == limit, "exactly the limit is a value like any other")
    }

    @Test func recentJobsListMostRecentActivityFirstWithFilters() async throws {
        let log = try SagaLog.openInMemory()
        defer { log.close() }
        try await log.enqueueJob(id: "json", lane: "gpu", caller: "c", priority: 1, metadata: Array(#"{"k":[1,2]}"#.utf8))
        try await log.enqueueJob(id: "text", lane: "gpu", caller: "c", priority: 0, metadata: Array("plain words".utf8))
        try await log.enqueueJob(id: "bytes", lane: "cpu", caller: "c", priority: 0, metadata: [0xFF, 0x00])
        try await log.enqueueJob(id: "none", lane: "cpu", caller: "c", priority: 0, metadata: [])
        // Times have millisecond resolution: let the clock move so the update is the latest
        // activity. (Rows stamped in the same millisecond come newest row first.)
        usleep(3_000)
        try await log.updateJobState(id: "json", state: .running, attempts: 1)
        try await log.updateJobState(id: "json", state: .failed, error: "boom")
        #expect(try log.recentJobs(limit: 10).map(\.id) == ["json", "none", "bytes", "text"])
        #expect(try log.recentJobs(limit: 2).map(\.id) == ["json", "none"])
        #expect(try log.recentJobs(lane: "gpu", limit: 10).map(\.id) == ["json", "text"])
        #expect(try log.recentJobs(state: .queued, limit: 10).map(\.id) == ["none", "bytes", "text"])
        #expect(try log.recentJobs(lane: "cpu", state: .failed, limit: 10).isEmpty)
        #expect(try log.recentJobs(lane: "nowhere", limit: 10).isEmpty)

        let byID = Dictionary(uniqueKeysWithValues: try log.recentJobs(limit: 10).map { ($0.id, $0.json) })
        let failed = try #require(byID["json"])
        #expect(failed["state"] == "failed" && failed["error"] == "boom" && failed["attempts"] == 1)
        #expect(failed["metadata"] == ["k": [1, 2]], "JSON metadata is embedded")
        #expect(failed["failed_at"]?.stringValue != nil && failed["finished_at"] == .null)
        #expect(byID["text"]?["metadata"] == "plain words")
        #expect(byID["bytes"]?["metadata"] == .null && byID["bytes"]?["metadata_size"] == 2)
        #expect(byID["none"]?["metadata"] == .null && byID["none"]?["metadata_size"] == 0)
    }

    @Test func statsCountSagasAndJobsByState() async throws {
        let dir = TemporaryDirectory()
        let log = try SagaLog.open(path: dir.file("stats.db"))
        defer { log.close() }
        #expect(try log.stats().json["sagas"]?["running"] == 0, "every state is there, even at zero")
        try await log.startSaga(id: 1, name: "a", inputJSON: "{}")
        usleep(3_000)
        try await log.startSaga(id: 2, name: "b", inputJSON: "{}")
        try await log.startSaga(id: 3, name: "c", inputJSON: "{}")
        try await log.terminateSaga(id: 3, state: .completed, reason: nil)
        try await log.enqueueJob(id: "j1", lane: "gpu", caller: "c", priority: 0, metadata: [])
        try await log.enqueueJob(id: "j2", lane: "gpu", caller: "c", priority: 0, metadata: [])
        try await log.enqueueJob(id: "j3", lane: "cpu", caller: "c", priority: 0, metadata: [])
        try await log.updateJobState(id: "j2", state: .failed, error: "boom")
        let stats = try log.stats()
        #expect(stats.schemaVersion == Schema.version)
        #expect(stats.sagas == [.running: 2, .completed: 1])
        #expect(stats.oldestRunningSaga == (try log.saga(id: 1))?.startedAt)
        #expect(stats.jobs == ["gpu": [.queued: 1, .failed: 1], "cpu": [.queued: 1]])
        #expect(stats.databaseBytes > 0 && (stats.walBytes ?? 0) > 0, "the file and its write-ahead log")
        let json = stats.json
        #expect(json["jobs"]?["gpu"] == ["queued": 1, "running": 0, "finished": 0, "cancelled": 0, "failed": 1])
        #expect(json["sagas"]?["failed_compensation"] == 0)
        #expect(try SagaLog.openInMemory().stats().walBytes == nil)
    }

    @Test func groupCommitBatchesConcurrentWriters() async throws {
        let log = try SagaLog.openInMemory()
        defer { log.close() }
        let blocker = await holdWriter(log, untilQueued: 1_000)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for id in 1...1_000 as ClosedRange<UInt64> {
                group.addTask { try await log.startSaga(id: id, name: "s", inputJSON: "{}") }
            }
            try await group.waitForAll()
        }
        await blocker.value
        let counts = log.commitCounts
        #expect(counts.records == 1_000)
        #expect(counts.batches == 1, "all thousand records shared one transaction")
        #expect(try log.maxSagaID() == 1_000)
    }

    @Test func aFailedRecordDoesNotFailItsNeighbours() async throws {
        let log = try SagaLog.openInMemory()
        defer { log.close() }
        try await log.startSaga(id: 1, name: "existing", inputJSON: "{}")
        let before = log.commitCounts.batches
        let blocker = await holdWriter(log, untilQueued: 3)
        async let a: Void = log.startSaga(id: 2, name: "a", inputJSON: "{}")
        let dup = Task { try await log.startSaga(id: 1, name: "dup", inputJSON: "{}") }
        async let b: Void = log.startSaga(id: 3, name: "b", inputJSON: "{}")
        await blocker.value
        try await a
        try await b
        await #expect(throws: (any Error).self) { try await dup.value }
        #expect(log.commitCounts.batches - before == 1, "the three shared one transaction")
        #expect(try log.snapshotRecent(limit: 10).map(\.name).sorted() == ["a", "b", "existing"])
    }

    @Test func recordsWrittenAllTogetherStandOrFallAsOneAndLeaveTheirNeighbours() async throws {
        let log = try SagaLog.openInMemory()
        defer { log.close() }
        for id in UInt64(1)...3 { try await log.startSaga(id: id, name: "s\(id)", inputJSON: "{}") }
        let note = LifecycleNote(type: "SagaFailed", payload: ["why": "recovery"])
        // Sagas 1 and 2 are marked, then a record for a saga that does not exist fails the lot.
        let blocker = await holdWriter(log, untilQueued: 2)
        let failing = Task { () -> SagaLaneError? in
            do throws(SagaLaneError) {
                try await log.write(.all([.markFailedCompensation(sagaID: 1, reason: "r", event: note),
                                          .markFailedCompensation(sagaID: 2, reason: "r", event: note),
                                          .markFailedCompensation(sagaID: 99, reason: "r", event: note)]))
                return nil
            } catch { return error }
        }
        let neighbour = Task { try await log.write(.note(sagaID: 3, event: LifecycleNote(type: "Neighbour", payload: [:]))) }
        await blocker.value
        #expect(await failing.value?.code == .notFound)
        #expect(try await neighbour.value == 1)
        #expect(try log.saga(id: 1)?.state == .running && log.saga(id: 2)?.state == .running, "the first two were undone")
        // Neither undone event is in the stream, and the neighbour's took the next position.
        #expect(try log.lifecycleEvents(after: 0, limit: 10).map(\.type) == ["Neighbour"])
        #expect(try log.lifecycleEvents(after: 0, limit: 10).first?.position == 1)

        let changed = try await log.write(.all([.markFailedCompensation(sagaID: 1, reason: "r", event: note),
                                                .markFailedCompensation(sagaID: 2, reason: "r", event: note)]))
        #expect(changed == 2)
        #expect(try log.saga(id: 1)?.state == .failedCompensation && log.saga(id: 2)?.state == .failedCompensation)
        #expect(try log.lifecycleEvents(after: 0, limit: 10).map(\.position) == [1, 2, 3])
        await #expect(throws: SagaLaneError.self) { try await log.write(.all([.vacuum(olderThan: Timestamp.now())])) }
    }

    /// The writer keeps its statement journals in memory (each batch's savepoints would spill
    /// to a new temporary file past 64 KiB), and still compacts through a file.
    @Test func theWriterKeepsTemporaryDataInMemoryAndCompactsThroughAFile() async throws {
        let dir = TemporaryDirectory()
        let log = try SagaLog.open(path: dir.file("log.db"), durability: .normal)
        defer { log.close() }
        let storage = try #require(log.storage as? SQLiteStorage)
        func writersTemporaryStorage() async -> Int64? {
            let seen = Mutex<Int64?>(nil)
            await log.holdWriterForTesting { seen.withLock { $0 = try? storage.writer?.query("PRAGMA temp_store") { $0.int(0) }.first } }
            return seen.withLock { $0 }
        }
        #expect(await writersTemporaryStorage() == 2)
        let big = String(repeating: "x", count: 2000)
        for id in UInt64(1)...300 { try await log.startSaga(id: id, name: "s", inputJSON: "\"\(big)\"") }
        try await log.write(.all((1...300).map { .terminateSaga(id: $0, state: .completed, reason: nil) }))
        #expect(try await log.vacuum(olderThan: Timestamp(millisecondsSinceEpoch: Timestamp.now().millisecondsSinceEpoch + 1000)) == 300)
        let (before, after) = try await log.compact()
        #expect(after.pages < before.pages)
        #expect(await writersTemporaryStorage() == 2)
    }

    /// A page of recovery is mostly sagas of one type given one reason, which share one
    /// payload; those that differ (another name, a reason they had already, a reason of their
    /// own) still get their own, on disk and on the stream a cursor reads from memory.
    @Test func sagasMarkedFailedInBulkShareAPayloadOnlyWhenTheirRowsReadTheSame() async throws {
        let log = try SagaLog.openInMemory()
        defer { log.close() }
        let cursor = log.lifecycle.subscribe(after: 0)
        var expected: [(name: String, reason: String)] = []
        var marks: [FailedSagaMark] = []
        for id in UInt64(1)...40 {
            let name = id % 7 == 3 ? "other \"type\"" : "one_step"
            try await log.startSaga(id: id, name: name, inputJSON: "{}")
            if id % 9 == 4 { try await log.write(.setSagaState(id: id, state: .running, reason: "timed out")) }
            let given = id % 11 == 5 ? "interrupted (pending step 1)" : "interrupted (pending step 0)"
            marks.append((sagaID: id, reason: given))
            expected.append((name, id % 9 == 4 ? "timed out; \(given)" : given))
        }
        #expect(try await log.write(.markFailedCompensations(marks, eventType: "SagaFailed", recovered: "mark_failed")) == 40)
        let stored = try log.lifecycleEvents(after: 0, limit: 100)
        var streamed: [LifecycleEntry] = []
        while streamed.count < 40, let entry = try cursor.next(milliseconds: 5000) ?? nil { streamed.append(entry) }
        #expect(streamed == stored)
        #expect(stored.map(\.sagaID) == Array(1...40) && stored.map(\.position) == Array(1...40))
        for (event, want) in zip(stored, expected) {
            let payload: JSON = ["name": .string(want.name), "state": "failed_compensation", "reason": .string(want.reason),
                                 "recovered": "mark_failed"]
            #expect(event.payloadJSON == payload.serialized, "saga \(event.sagaID)")
            #expect(try log.saga(id: event.sagaID)?.failureReason == want.reason)
        }
        #expect(Set(stored.map(\.payloadJSON)).count > 4, "the sagas that differ kept payloads of their own")
    }

    @Test func sagasMarkedFailedInBulkReadAsOneByOneAndFailAsAWhole() async throws {
        let log = try SagaLog.openInMemory()
        defer { log.close() }
        // Names and reasons with what JSON escapes; saga 2 has a reason already, saga 3 this one.
        let names = ["plain", "quote \" back\\slash", "tab\tnewline\ncontrol\u{01}\u{7f} é ✓"]
        for (i, name) in names.enumerated() { try await log.startSaga(id: UInt64(i + 1), name: name, inputJSON: "{}") }
        try await log.write(.setSagaState(id: 2, state: .running, reason: "timed out"))
        try await log.write(.setSagaState(id: 3, state: .running, reason: "b \u{02}"))
        let marks: [FailedSagaMark] = [(sagaID: 1, reason: "a"), (sagaID: 2, reason: "a"),
                     (sagaID: 3, reason: "b \u{02}")]

        // A missing saga fails the record, and nothing of it stays.
        await #expect(throws: SagaLaneError.self) {
            try await log.write(.markFailedCompensations(marks + [(sagaID: 9, reason: "a")], eventType: "SagaFailed", recovered: "x"))
        }
        #expect(try (1...3).allSatisfy { try log.saga(id: UInt64($0))?.state == .running })
        #expect(try log.lifecycleEvents(after: 0, limit: 10).isEmpty)

        #expect(try await log.write(.markFailedCompensations(marks, eventType: "SagaFailed", recovered: "mark_failed")) == 3)
        let reasons = ["a", "timed out; a", "b \u{02}"]
        let events = try log.lifecycleEvents(after: 0, limit: 10)
        #expect(events.map(\.position) == [1, 2, 3] && events.map(\.sagaID) == [1, 2, 3])
        for (i, event) in events.enumerated() {
            let saga = try #require(try log.saga(id: UInt64(i + 1)))
            #expect(saga.state == .failedCompensation && saga.failureReason == reasons[i] && saga.endedAt != nil)
            // Byte for byte what the serializer writes for the payload the coordinator publishes.
            let payload: JSON = ["name": .string(names[i]), "state": "failed_compensation", "reason": .string(reasons[i]),
                                 "recovered": "mark_failed"]
            #expect(event.type == "SagaFailed" && event.payloadJSON == payload.serialized)
            #expect(saga.history?.map(\.payloadJSON) == [payload.serialized])
        }
        // The committed events reached the lifecycle stream in order, and marking again adds
        // no text to the reasons.
        #expect(try await log.write(.markFailedCompensations(marks, eventType: "SagaFailed", recovered: "mark_failed")) == 3)
        #expect(try (1...3).map { try log.saga(id: UInt64($0))?.failureReason } == reasons)
        #expect(try log.lifecycleEvents(after: 0, limit: 10).map(\.position) == [1, 2, 3, 4, 5, 6])
    }

    @Test func unfinishedOutlinesAreThePageUnfinishedSagasReads() async throws {
        let log = try SagaLog.openInMemory()
        defer { log.close() }
        for id in UInt64(1)...6 { try await log.startSaga(id: id, name: "s\(id)", inputJSON: "{\"big\": true}") }
        for (id, index) in [(1, 0), (1, 1), (1, 2), (3, 0), (4, 0), (6, 0), (6, 1)] as [(UInt64, UInt32)] {
            try await log.write(.startStep(sagaID: id, index: index, name: "n", target: "t", commandJSON: "{}"))
        }
        try await log.write(.finishStep(sagaID: 1, index: 1, outputJSON: "{}"))
        try await log.write(.terminateSaga(id: 4, state: .completed, reason: nil))
        try await log.write(.setSagaState(id: 6, state: .compensating, reason: "why"))
        for (after, limit) in [(UInt64(0), 10), (0, 2), (1, 2), (3, 10), (6, 10)] {
            let whole = try log.unfinishedSagas(after: after, limit: limit)
            #expect(try log.unfinishedOutlines(after: after, limit: limit) == whole.map(SagaOutline.init), "after \(after), limit \(limit)")
        }
        #expect(try log.unfinishedOutlines(limit: 10).map(\.pendingSteps) == [[0, 2], [], [0], [], [0, 1]])
    }

    /// Small records fill the disk when the batch commits; a 3 MB record spills SQLite's page
    /// cache, so the disk fills in the middle of an INSERT instead.
    @Test(.enabled(if: TinyFilesystem.available, "needs root to mount a small tmpfs"),
          arguments: [(kilobytes: 320, recordSize: 60_000), (kilobytes: 6_000, recordSize: 3_000_000)])
    func aFullDiskFailsTheWholeBatchAndLosesNothingDurable(kilobytes: Int, recordSize: Int) async throws {
        let fs = try TinyFilesystem(kilobytes: kilobytes)
        let path = fs.path + "/log.db"
        let log = try SagaLog.open(path: path, durability: .full)
        try await log.startSaga(id: 1, name: "before", inputJSON: "{}")
        let big = String(repeating: "x", count: recordSize)
        var failure: SagaLaneError?
        var written: [UInt64] = [1]
        for round in 0..<20 where failure == nil {
            let blocker = await holdWriter(log, untilQueued: 4)
            let results = await withTaskGroup(of: (UInt64, SagaLaneError?).self) { group in
                for i in 0..<4 {
                    let id = UInt64(10 + round * 4 + i)
                    group.addTask {
                        do throws(SagaLaneError) { try await log.startSaga(id: id, name: "big", inputJSON: "\"\(big)\""); return (id, nil) } catch { return (id, error) }
                    }
                }
                var all: [(UInt64, SagaLaneError?)] = []
                for await r in group { all.append(r) }
                return all
            }
            await blocker.value
            written += results.filter { $0.1 == nil }.map(\.0)
            if let e = results.compactMap(\.1).first {
                failure = e
                #expect(results.allSatisfy { $0.1 != nil }, "a batch that cannot commit fails every record in it")
            }
        }
        let error = try #require(failure)
        #expect(error.code == .full, "\(error)")
        let present = try log.snapshotRecent(limit: 1000).map(\.id)
        #expect(Set(present) == Set(written), "exactly the records reported durable are there")
        #expect(try log.integrityCheck() == "ok")
        log.close()
    }

    @Test func badPathsAndFilesAreClearErrorsThatChangeNothing() async throws {
        let dir = TemporaryDirectory()
        #expect {
            try SagaLog.open(path: dir.file("missing/folder/log.db"))
        } throws: { ($0 as? SagaLaneError)?.code == .cantOpen }

        let garbage = dir.file("garbage.db")
        let bytes = (0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        writeFile(garbage, bytes)
        do {
            _ = try SagaLog.open(path: garbage)
            Issue.record("opening a file that is not a database must fail")
        } catch {
            #expect(error.code == .corrupt, "\(error)")
            #expect(error.description.contains("not a database"))
        }
        #expect(fileBytes(garbage) == bytes, "the file is left as it was")
        #expect(access(garbage + "-wal", F_OK) != 0)
        #expect(throws: SagaLaneError.self) { try SagaLog.openReadOnly(path: garbage) }
        #expect(throws: SagaLaneError.self) { try SagaLog.openReadOnly(path: dir.file("absent.db")) }
    }

    @Test(.enabled(if: TinyFilesystem.available, "needs root to mount a small tmpfs"))
    func aReadOnlyFileSystemIsAClearError() async throws {
        let fs = try TinyFilesystem(kilobytes: 512)
        let path = fs.path + "/log.db"
        var log = try SagaLog.open(path: path)
        try await log.startSaga(id: 1, name: "kept", inputJSON: "{}")
        log.close()
        let before = fileBytes(path)
        try fs.remountReadOnly()
        #expect { try SagaLog.open(path: path) } throws: { error in
            let e = error as? SagaLaneError
            return e?.code == .readOnly || e?.code == .cantOpen
        }
        #expect(fileBytes(path) == before)
        // An operator can still read it.
        log = try SagaLog.openReadOnly(path: path)
        #expect(try log.snapshotRecent(limit: 5).map(\.name) == ["kept"])
        log.close()
    }

    @Test func aDatabaseLockedPastTheBusyTimeoutIsAClearError() async throws {
        let dir = TemporaryDirectory()
        let path = dir.file("log.db")
        let log = try SagaLog.open(path: path, busyTimeoutMilliseconds: 100)
        defer { log.close() }
        let other = try SQLiteConnection(path: path, flags: SQLITE_OPEN_READWRITE)
        try other.execute("BEGIN EXCLUSIVE")
        do {
            try await log.startSaga(id: 1, name: "blocked", inputJSON: "{}")
            Issue.record("a write must fail while another connection holds the lock")
        } catch {
            #expect(error.code == .busy, "\(error)")
        }
        try other.execute("ROLLBACK")
        try await log.startSaga(id: 1, name: "after", inputJSON: "{}")
        #expect(try log.saga(id: 1)?.name == "after")
    }

    /// A database some other program holds exclusively (not in WAL mode, so even readers wait):
    /// the open fails after the busy timeout and the file is untouched.
    @Test func openingALockedDatabaseFailsAfterTheBusyTimeout() async throws {
        let dir = TemporaryDirectory()
        let path = dir.file("foreign.db")
        let other = try SQLiteConnection(path: path, flags: SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
        try other.execute("CREATE TABLE t(x); INSERT INTO t VALUES (1)")
        try other.execute("BEGIN EXCLUSIVE; INSERT INTO t VALUES (2)")
        let before = fileBytes(path)
        #expect { try SagaLog.open(path: path, busyTimeoutMilliseconds: 100) } throws: { ($0 as? SagaLaneError)?.code == .busy }
        #expect(fileBytes(path) == before)
        try other.execute("ROLLBACK")
    }

    @Test func readOnlyOpenReadsWhileTheOwnerWritesAndCannotWrite() async throws {
        let dir = TemporaryDirectory()
        let path = dir.file("log.db")
        let owner = try SagaLog.open(path: path)
        defer { owner.close() }
        try await owner.startSaga(id: 1, name: "one", inputJSON: "{}")
        let operatorView = try SagaLog.openReadOnly(path: path)
        defer { operatorView.close() }
        #expect(operatorView.isReadOnly)
        #expect(try operatorView.maxSagaID() == 1)
        try await owner.startSaga(id: 2, name: "two", inputJSON: "{}")
        #expect(try operatorView.maxSagaID() == 2)
        do {
            try await operatorView.startSaga(id: 3, name: "nope", inputJSON: "{}")
            Issue.record("writes through a read-only open must fail")
        } catch {
            #expect(error.code == .readOnly)
            #expect(error.description.contains("read-only"))
        }
        #expect(try owner.maxSagaID() == 2)
    }

    @Test func closedLogsAnswerWithAClearError() async throws {
        let log = try SagaLog.openInMemory()
        log.close()
        log.close()
        #expect { try log.maxSagaID() } throws: { ($0 as? SagaLaneError)?.code == .closed }
        await #expect { try await log.startSaga(id: 1, name: "x", inputJSON: "{}") } throws: { ($0 as? SagaLaneError)?.code == .closed }
    }

    /// A child process appends through the group-commit writer and is killed with SIGKILL
    /// mid-stream. On reopen every record it was told was durable is there, each saga shows a
    /// prefix of its records (no half-applied batch), and the database is intact.
    @Test(arguments: [Durability.full, .normal], [150, 900])
    func crashMidStreamLosesNothingDurable(durability: Durability, killAfter: Int) async throws {
        let dir = TemporaryDirectory()
        let path = dir.file("crash.db")
        let child = try ChildProcess(ChildProcess.testChildPath, ["log-append", path, durability.rawValue])
        var durable: [UInt64: Int] = [:]
        var lines = 0
        while lines < killAfter, let line = child.readLine() {
            let parts = line.split(separator: " ")
            guard parts.count == 3, parts[0] == "durable", let id = UInt64(parts[1]), let n = Int(parts[2]) else { continue }
            durable[id] = max(durable[id] ?? 0, n)
            lines += 1
        }
        #expect(lines == killAfter, "the child produced output")
        #expect(child.kill9() == SIGKILL)
        let log = try SagaLog.open(path: path)
        defer { log.close() }
        #expect(try log.integrityCheck() == "ok")
        for (id, count) in durable {
            let saga = try #require(try log.saga(id: id), "saga \(id) was reported durable")
            let applied = 1 + saga.steps.count + saga.steps.filter { $0.state == .succeeded }.count + (saga.state == .completed ? 1 : 0)
            #expect(applied >= count, "saga \(id): \(count) records reported durable, \(applied) present")
        }
        for saga in try log.snapshotRecent(limit: 100_000) {
            let steps = try log.sagaSteps(sagaID: saga.id)
            // Each saga's records are written in order, so what is present must be a prefix.
            if steps.count == 2 { #expect(steps[0].state == .succeeded, "saga \(saga.id): step 1 without step 0 done") }
            if saga.state == .completed { #expect(steps.count == 2 && steps.allSatisfy { $0.state == .succeeded }) }
        }
    }
}
