import Glibc
import SagaLane

private final class Holds: Saga {
    func start(_ context: SagaContext) -> SagaAction { .wait }
    func onEvent(_ event: Event, _ context: SagaContext) -> SagaAction { .wait }
}

private final class Instant: Saga {
    func start(_ context: SagaContext) -> SagaAction { .done }
    func onEvent(_ event: Event, _ context: SagaContext) -> SagaAction { .wait }
}

/// `lifecycle-crash <db>`: starts sagas without end, alternately of type `slow` (they wait,
/// still in flight when the process dies) and `instant` (they complete at once), while a
/// lifecycle subscriber from position 0 prints `event <position> <type> <saga id>` for each
/// event it is handed, once it handled it. Runs until killed.
func runLifecycleCrash(_ arguments: [String]) -> Never {
    guard arguments.count == 1 else {
        writeStandardError("usage: sagalane-testchild lifecycle-crash <db>\n")
        exit(2)
    }
    do throws(SagaLaneError) {
        let runtime = try Runtime(options: RuntimeOptions(databasePath: arguments[0], durability: .normal))
        try runtime.register(SagaType(name: "slow", timeout: .seconds(600)) { _ in Holds() })
        try runtime.register(SagaType(name: "instant") { _ in Instant() })
        _ = try runtime.subscribeLifecycle(after: 0) { entry in
            let bytes = Array("event \(entry.position) \(entry.type) \(entry.sagaID)\n".utf8)
            _ = bytes.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
        }
        try runtime.start()
        var n = 0
        while true {
            try runtime.startSaga(name: n % 2 == 0 ? "slow" : "instant", input: .null, roomTimeoutMilliseconds: -1)
            n += 1
        }
    } catch {
        writeStandardError("lifecycle-crash: \(error)\n")
        exit(1)
    }
}
