import Glibc
import SagaLane

/// `log-append <db> <full|normal>`: writes sagas through the group-commit writer as fast as it
/// can, many in flight at once, and prints `durable <saga id> <records>` each time one of a
/// saga's records is reported durable. Runs until killed.
///
/// Each saga writes, in order: startSaga, startStep 0, finishStep 0, startStep 1, finishStep 1,
/// terminateSaga(completed). A line `durable 17 3` means saga 17's first three records are
/// durable.
func runLogAppend(_ arguments: [String]) -> Never {
    guard arguments.count == 2, let durability = Durability(rawValue: arguments[1]) else {
        writeStandardError("usage: sagalane-testchild log-append <db> <full|normal>\n")
        exit(2)
    }
    let log: SagaLog
    do { log = try SagaLog.open(path: arguments[0], durability: durability) } catch {
        writeStandardError("open failed: \(error)\n")
        exit(1)
    }
    // Completions run on the log's single writer thread, so lines never interleave.
    @Sendable func report(_ id: UInt64, _ count: Int) {
        let line = Array("durable \(id) \(count)\n".utf8)
        _ = line.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
    }
    @Sendable func records(_ id: UInt64) -> [LogRecord] {
        [
            .startSaga(id: id, name: "crash", inputJSON: "{\"n\":\(id)}"),
            .startStep(sagaID: id, index: 0, name: "a", target: "host", commandJSON: "{}"),
            .finishStep(sagaID: id, index: 0, outputJSON: "{\"type\":\"A\"}"),
            .startStep(sagaID: id, index: 1, name: "b", target: "host", commandJSON: "{}"),
            .finishStep(sagaID: id, index: 1, outputJSON: "{\"type\":\"B\"}"),
            .terminateSaga(id: id, state: .completed, reason: nil),
        ]
    }
    /// Each saga's records go one after another (as the coordinator writes them); many sagas
    /// run at once so batches hold records of many sagas.
    @Sendable func drive(_ id: UInt64, _ index: Int) {
        let list = records(id)
        log.submit(list[index]) { result in
            guard case .success = result else {
                writeStandardError("write failed: \(result)\n")
                exit(1)
            }
            report(id, index + 1)
            if index + 1 < list.count { drive(id, index + 1) } else { drive(id + 64, 0) }
        }
    }
    for id in 1...64 { drive(UInt64(id), 0) }
    while true { pause() }
}
