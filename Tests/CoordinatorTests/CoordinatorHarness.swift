import Glibc
import SagaLaneTestSupport
import Synchronization
import Testing
@testable import SagaLaneCoordinator
@testable import SagaLaneLog
@testable import SagaLaneEventLoop
@testable import SagaLaneJSON
@testable import SagaLaneSupport

/// The seeds' first saga: on a pool window's promotion, spawn a replacement window and finish
/// when the host reports it added (tagged with the saga id).
final class PoolRespawnSaga: Saga {
    let promotedLabel: String
    init(input: JSON) throws {
        guard let label = input["label"]?.stringValue else { throw SagaLaneError(.invalidArgument, "needs a label") }
        promotedLabel = label
    }
    func start(_ context: SagaContext) -> SagaAction {
        .issue(target: "host", command: ["cmd": "spawn_pool_window"])
    }
    func onEvent(_ event: Event, _ context: SagaContext) -> SagaAction {
        event.type == "PoolWindowAdded" && event.sagaID == context.sagaID ? .done : .wait
    }
    static let type = SagaType(name: "pool_respawn_on_promote") { try PoolRespawnSaga(input: $0) }
}

/// The seeds' second saga: on a clean window close, reap its panes, then drain the pool if it
/// was the last window.
final class WindowCleanupSaga: Saga {
    let label: String
    var reaped = false
    init(input: JSON) throws {
        guard let label = input["label"]?.stringValue else { throw SagaLaneError(.invalidArgument, "needs a label") }
        self.label = label
    }
    func start(_ context: SagaContext) -> SagaAction {
        .issue(target: "host", command: ["cmd": "reap_panes", "label": .string(label)])
    }
    func onEvent(_ event: Event, _ context: SagaContext) -> SagaAction {
        guard event.sagaID == context.sagaID else { return .wait }
        switch event.type {
        case "PanesReaped" where !reaped:
            reaped = true
            return .issue(target: "host", command: ["cmd": "drain_pool_if_last", "label": .string(label)])
        case "PoolDrained", "PoolNotLast":
            return reaped ? .done : .wait
        default:
            return .wait
        }
    }
    static let type = SagaType(name: "window_cleanup_cascade", timeout: .seconds(30)) { try WindowCleanupSaga(input: $0) }
    /// Clean closes only: a crash-flagged close has no host left to answer the commands.
    static let trigger = Trigger(on: "WindowClosed", start: "window_cleanup_cascade") {
        $0["crash_detected"]?.boolValue != true
    }
}

/// Commands the host target received, in order.
final class HostRecorder: Sendable {
    let dispatched = ConditionLock<[StepDispatch]>([])
    /// What the host does with each command (on the loop thread).
    let behaviour: @Sendable (StepDispatch, StepReporter) -> Void

    init(behaviour: @escaping @Sendable (StepDispatch, StepReporter) -> Void = { _, _ in }) {
        self.behaviour = behaviour
    }

    var target: CallbackTarget {
        CallbackTarget { [self] step, reporter in
            dispatched.withLock { $0.append(step) }
            behaviour(step, reporter)
        }
    }

    var count: Int { dispatched.withLock { $0.count } }
}

/// Reads the bus until a condition holds. Gives up (and records an issue) after `limit` of
/// real time, so a broken build fails instead of hanging CI; this is a guard, not a timing
/// assertion.
final class EventCollector: @unchecked Sendable {
    let subscription: BusSubscription
    private(set) var events: [Event] = []

    init(bus: EventBus) {
        subscription = bus.subscribe(bufferSize: 1 << 20)
    }

    @discardableResult
    func waitFor(
        _ what: String,
        limit: Duration = .seconds(60),
        sourceLocation: SourceLocation = #_sourceLocation,
        until condition: ([Event]) -> Bool
    ) async -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: limit)
        while true {
            // Take everything buffered before evaluating the condition: checking it per event
            // would make long waits quadratic.
            while let delivery = subscription.poll() {
                if case .event(let event) = delivery { events.append(event) }
            }
            if condition(events) { break }
            if clock.now > deadline {
                Issue.record("gave up waiting for \(what); saw \(events.count) events", sourceLocation: sourceLocation)
                return false
            }
            try? await Task.sleep(for: .milliseconds(1))
        }
        return true
    }

    func of(type: String) -> [Event] { events.filter { $0.type == type } }

    deinit { subscription.cancel() }
}

/// A coordinator on a real loop thread and a real SQLite file.
final class CoordinatorHarness: @unchecked Sendable {
    let directory: TemporaryDirectory
    let loop: EventLoop
    let log: SagaLog
    let bus = EventBus()
    let coordinator: Coordinator
    let collector: EventCollector

    init(clock: EventLoopClock = .manual, databaseName: String = "sagas.db", durability: Durability = .normal,
         launchQueueLimit: Int = Coordinator.defaultLaunchQueueLimit) throws {
        directory = TemporaryDirectory()
        loop = try EventLoop(clock: clock)
        try loop.startThread()
        log = try SagaLog.open(path: directory.file(databaseName), durability: durability)
        coordinator = Coordinator(loop: loop, log: log, bus: bus, launchQueueLimit: launchQueueLimit)
        collector = EventCollector(bus: bus)
    }

    /// Reuses another harness's directory and database file (a restart).
    init(restarting previous: CoordinatorHarness, clock: EventLoopClock = .manual) throws {
        directory = previous.directory
        loop = try EventLoop(clock: clock)
        try loop.startThread()
        log = try SagaLog.open(path: previous.directory.file("sagas.db"))
        coordinator = Coordinator(loop: loop, log: log, bus: bus)
        collector = EventCollector(bus: bus)
    }

    /// Holds the log's writer thread (between batches) until the returned closure is called,
    /// so records submitted meanwhile cannot become durable; returns once it is held. Nothing
    /// here blocks a thread of Swift's pool.
    func holdWriter() async -> @Sendable () -> Void {
        let release = Completion<Void>()
        let log = self.log
        await withCheckedContinuation { (held: CheckedContinuation<Void, Never>) in
            Task(executorPreference: loop) { await log.holdWriterForTesting { held.resume(); release.wait() } }
        }
        return { release.set(()) }
    }

    func shutdown() async {
        await coordinator.close()
        loop.shutdown()
        log.close()
    }

    func startedIDs(of name: String? = nil) -> [UInt64] {
        collector.of(type: Event.sagaStarted).filter { name == nil || $0.payload["name"]?.stringValue == name }.compactMap(\.sagaID)
    }

    func terminalEvents() -> [Event] {
        collector.events.filter { $0.type == Event.sagaCompleted || $0.type == Event.sagaFailed }
    }
}
