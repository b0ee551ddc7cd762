import CSQLite
import Glibc
import SagaLane
import Synchronization

/// Seconds on the monotonic clock.
func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// A fresh database path in `directory`, with any leftovers of an earlier run removed.
func freshDatabase(_ directory: String, _ name: String) -> String {
    let path = directory + "/" + name
    for suffix in ["", "-wal", "-shm"] { unlink(path + suffix) }
    return path
}

func removeDatabase(_ path: String) {
    for suffix in ["", "-wal", "-shm"] { unlink(path + suffix) }
}

/// The six records of one two-step saga, in the order the coordinator writes them.
func twoStepSagaRecords(_ id: UInt64) -> [LogRecord] {
    [
        .startSaga(id: id, name: "bench", inputJSON: #"{"label":"bench"}"#),
        .startStep(sagaID: id, index: 0, name: "issue_host_a", target: "host", commandJSON: #"{"cmd":"a"}"#),
        .finishStep(sagaID: id, index: 0, outputJSON: #"{"type":"A"}"#),
        .startStep(sagaID: id, index: 1, name: "issue_host_b", target: "host", commandJSON: #"{"cmd":"b"}"#),
        .finishStep(sagaID: id, index: 1, outputJSON: #"{"type":"B"}"#),
        .terminateSaga(id: id, state: .completed, reason: nil),
    ]
}

/// Blocks the calling thread until `count` signals arrive.
final class Countdown: @unchecked Sendable {
    private var semaphore = sem_t()
    init() { sem_init(&semaphore, 0, 0) }
    deinit { sem_destroy(&semaphore) }
    func signal() { sem_post(&semaphore) }
    func wait() { while sem_wait(&semaphore) != 0 && errno == EINTR {} }
}

/// Sagas per second through `SagaLog`'s group commit: `concurrency` sagas in flight, each
/// writing its six records one after another (each waits for the previous to be durable), as
/// the coordinator does. This is the raw ceiling the coordinator and lanes are measured against.
func measureLogCeiling(directory: String, durability: Durability, sagas: Int, concurrency: Int = 256) throws -> Double {
    let path = freshDatabase(directory, "bench-group.db")
    defer { removeDatabase(path) }
    let log = try SagaLog.open(path: path, durability: durability)
    defer { log.close() }
    let finished = Countdown()
    let nextID = Atomic<Int>(1)
    @Sendable func drive(_ id: UInt64, _ index: Int) {
        let records = twoStepSagaRecords(id)
        log.submit(records[index]) { result in
            if case .failure(let error) = result { fatalError("benchmark write failed: \(error)") }
            if index + 1 < records.count {
                drive(id, index + 1)
            } else {
                let next = nextID.wrappingAdd(1, ordering: .relaxed).oldValue
                if next <= sagas { drive(UInt64(next), 0) }
                finished.signal()
            }
        }
    }
    let start = monotonicSeconds()
    for _ in 0..<min(concurrency, sagas) {
        let id = nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        drive(UInt64(id), 0)
    }
    for _ in 0..<sagas { finished.wait() }
    return Double(sagas) / (monotonicSeconds() - start)
}

/// The baseline: the same rows with plain sqlite3 calls, one transaction per write
/// (autocommit), same pragmas and schema.
func measurePerWriteBaseline(directory: String, durability: Durability, sagas: Int) throws -> Double {
    let path = freshDatabase(directory, "bench-plain.db")
    defer { removeDatabase(path) }
    try SagaLog.open(path: path, durability: durability).close()
    var db: OpaquePointer?
    guard sqlite3_open(path, &db) == SQLITE_OK else { throw BenchError("cannot open \(path)") }
    defer { sqlite3_close(db) }
    func exec(_ sql: String) throws {
        guard sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK else { throw BenchError(String(cString: sqlite3_errmsg(db))) }
    }
    try exec("PRAGMA journal_mode = WAL")
    try exec("PRAGMA synchronous = \(durability == .full ? "FULL" : "NORMAL")")
    try exec("PRAGMA foreign_keys = ON")
    let sql = [
        "INSERT INTO saga (id, name, state, input_json, started_at) VALUES (?1, 'bench', 'running', '{\"label\":\"bench\"}', ?2)",
        "INSERT INTO saga_step (saga_id, step_index, name, target, command_json, state, started_at) VALUES (?1, 0, 'issue_host_a', 'host', '{\"cmd\":\"a\"}', 'pending', ?2)",
        "UPDATE saga_step SET state = 'succeeded', output_json = '{\"type\":\"A\"}', ended_at = ?2 WHERE saga_id = ?1 AND step_index = 0",
        "INSERT INTO saga_step (saga_id, step_index, name, target, command_json, state, started_at) VALUES (?1, 1, 'issue_host_b', 'host', '{\"cmd\":\"b\"}', 'pending', ?2)",
        "UPDATE saga_step SET state = 'succeeded', output_json = '{\"type\":\"B\"}', ended_at = ?2 WHERE saga_id = ?1 AND step_index = 1",
        "UPDATE saga SET state = 'completed', ended_at = ?2 WHERE id = ?1",
    ]
    var statements: [OpaquePointer?] = []
    for text in sql {
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(db, text, -1, &statement, nil) == SQLITE_OK else { throw BenchError(String(cString: sqlite3_errmsg(db))) }
        statements.append(statement)
    }
    defer { statements.forEach { sqlite3_finalize($0) } }
    let start = monotonicSeconds()
    for id in 1...sagas {
        for statement in statements {
            sqlite3_bind_int64(statement, 1, Int64(id))
            sqlite3_bind_text(statement, 2, Timestamp.now().iso8601, -1, sl_sqlite_transient())
            guard sqlite3_step(statement) == SQLITE_DONE else { throw BenchError(String(cString: sqlite3_errmsg(db))) }
            sqlite3_reset(statement)
        }
    }
    return Double(sagas) / (monotonicSeconds() - start)
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

func runLogBench(directory: String, sagas: Int, baselineSagas: Int) throws {
    print("log: \(sagas) two-step sagas (6 writes each) through SagaLog group commit, 256 in flight;")
    print("     baseline: \(baselineSagas) sagas, the same rows with plain sqlite3, one transaction per write")
    for durability in Durability.allCases {
        let baseline = try measurePerWriteBaseline(directory: directory, durability: durability, sagas: baselineSagas)
        let group = try measureLogCeiling(directory: directory, durability: durability, sagas: sagas)
        print(pad("  \(durability.rawValue)", 10) + pad("group commit \(format(group)) sagas/s", 36)
              + pad("per-write baseline \(format(baseline)) sagas/s", 40) + "ratio \(format(group / baseline))x")
    }
}

func format(_ value: Double) -> String {
    if value >= 100 { return String(Int(value.rounded())) }
    let scaled = (value * 10).rounded() / 10
    return String(scaled)
}

/// Three decimals, always written (0.050, not 0.05).
func format3(_ x: Double) -> String {
    let scaled = Int((x * 1000).rounded())
    let whole = scaled / 1000, fraction = scaled % 1000
    return "\(whole)." + String(repeating: "0", count: fraction < 10 ? 2 : fraction < 100 ? 1 : 0) + "\(fraction)"
}

func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
}
