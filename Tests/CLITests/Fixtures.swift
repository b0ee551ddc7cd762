import CSQLite
import Glibc
import SagaLaneLog
import SagaLaneSupport

/// A log written through the log's own API, as a runtime writes one, then closed (one file).
///
/// Sagas 1–12: every state, names `order` and `refund`, up to three steps each, some lane
/// jobs. Sagas 1–6 ended (or started) ten days ago, the others today.
func writeMixedLog(_ path: String) async throws {
    let log = try SagaLog.open(path: path)
    let plan: [(name: String, state: SagaState, steps: [StepState])] = [
        ("order", .completed, [.succeeded, .succeeded, .succeeded]),
        ("order", .failed, [.succeeded, .failed]),
        ("refund", .compensated, [.compensated, .failed]),
        ("order", .failedCompensation, [.succeeded, .failed]),
        ("refund", .completed, [.succeeded]),
        ("order", .completed, []),
        ("order", .running, [.succeeded, .pending]),
        ("refund", .compensating, [.succeeded, .failed]),
        ("order", .completed, [.succeeded, .succeeded]),
        ("order", .failedCompensation, [.failed]),
        ("refund", .failed, [.failed]),
        ("order", .running, []),
    ]
    for (offset, saga) in plan.enumerated() {
        let id = UInt64(offset + 1)
        try await log.startSaga(id: id, name: saga.name, inputJSON: "{\"n\":\(id)}")
        for (index, state) in saga.steps.enumerated() {
            let i = UInt32(index)
            try await log.startStep(sagaID: id, index: i, name: "step\(index)", target: index == 0 ? "host" : "lane:work",
                                    commandJSON: "{\"do\":\(index)}")
            switch state {
            case .succeeded: try await log.finishStep(sagaID: id, index: i, outputJSON: "{\"type\":\"Done\",\"i\":\(index)}")
            case .failed: try await log.failStep(sagaID: id, index: i, reason: "step \(index) refused")
            case .compensated:
                try await log.finishStep(sagaID: id, index: i, outputJSON: "{}")
                try await log.runOnWriterForTesting("UPDATE saga_step SET state = 'compensated' WHERE saga_id = \(id) AND step_index = \(i)")
            case .pending: break
            }
        }
        switch saga.state {
        case .running: break
        case .compensating: try await log.setSagaState(id: id, state: .compensating)
        case .failedCompensation: try await log.markFailedCompensation(sagaID: id, reason: "undo refused")
        case .completed: try await log.terminateSaga(id: id, state: .completed, reason: nil)
        default: try await log.terminateSaga(id: id, state: saga.state, reason: "saga \(id) failed")
        }
    }
    // The first six are old: they started and ended ten days ago.
    try await log.runOnWriterForTesting("""
        UPDATE saga SET started_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-10 days', '-1 minute'),
            ended_at = CASE WHEN ended_at IS NULL THEN NULL ELSE strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-10 days') END
        WHERE id <= 6;
        UPDATE saga_step SET started_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-10 days', '-30 seconds'),
            ended_at = CASE WHEN ended_at IS NULL THEN NULL ELSE strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-10 days', '-20 seconds') END
        WHERE saga_id <= 6;
        """)
    for (n, lane) in ["gpu", "gpu", "gpu", "cpu", "cpu"].enumerated() {
        try await log.enqueueJob(id: "job-\(n)", lane: lane, caller: "test", priority: n, metadata: Array("{\"n\":\(n)}".utf8))
    }
    try await log.updateJobState(id: "job-0", state: .running, attempts: 1)
    try await log.updateJobState(id: "job-0", state: .finished)
    try await log.updateJobState(id: "job-1", state: .running, attempts: 1)
    try await log.updateJobState(id: "job-3", state: .failed, attempts: 2, error: "out of memory")
    log.close()
}

/// A log of `count` sagas in `failed_compensation`, three steps each, written in one SQL
/// transaction on the real schema (writing 1.2 million records one by one would take the
/// test's time), then closed through the log, which checkpoints it into one file.
func writeLargeLog(_ path: String, count: Int, endedDaysAgo days: Int = 40) async throws {
    let log = try SagaLog.open(path: path, durability: .normal)
    try await log.runOnWriterForTesting("""
        BEGIN;
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < \(count))
        INSERT INTO saga (id, name, state, input_json, failure_reason, started_at, ended_at)
        SELECT i, 'order', 'failed_compensation', '{"order":' || i || ',"lines":["a","b","c"]}', 'undo refused: stock service gone',
               strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-\(days) days', '-' || (i % 86400) || ' seconds'),
               strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-\(days) days', '-' || (i % 86400) || ' seconds', '+2 seconds')
        FROM n;
        INSERT INTO saga_step (saga_id, step_index, name, target, command_json, state, output_json, failure_reason, started_at, ended_at)
        SELECT id, k, 'step' || k, 'host', '{"do":' || k || '}', CASE k WHEN 2 THEN 'failed' ELSE 'succeeded' END,
               CASE k WHEN 2 THEN NULL ELSE '{"type":"Done"}' END, CASE k WHEN 2 THEN 'refused' ELSE NULL END, started_at, ended_at
        FROM saga, (SELECT 0 AS k UNION ALL SELECT 1 UNION ALL SELECT 2);
        UPDATE meta SET value = \(count) WHERE key = 'saga_id_high_water';
        COMMIT;
        """)
    log.close()
}

/// Runs SQL on `path` with a plain SQLite connection, as another program would.
func foreignSQL(_ path: String, _ sql: String) {
    var db: OpaquePointer?
    precondition(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nil) == SQLITE_OK)
    precondition(sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK, String(cString: sqlite3_errmsg(db)))
    sqlite3_close(db)
}

func fileSize(_ path: String) -> Int? {
    var info = stat()
    return stat(path, &info) == 0 ? Int(info.st_size) : nil
}

func fileBytes(_ path: String) -> [UInt8] {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return [] }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &chunk, chunk.count)
        if n <= 0 { return bytes }
        bytes.append(contentsOf: chunk[0..<n])
    }
}

func writeFile(_ path: String, _ text: String) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    precondition(fd >= 0)
    _ = Array(text.utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    close(fd)
}

func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

/// Copies a file byte for byte.
func copyFile(_ from: String, to: String) {
    let bytes = fileBytes(from)
    let fd = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    precondition(fd >= 0)
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    close(fd)
}
