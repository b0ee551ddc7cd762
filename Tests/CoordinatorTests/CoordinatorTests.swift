import SagaLaneTestSupport
import Synchronization
import Testing
@testable import SagaLaneCoordinator
@testable import SagaLaneLog
@testable import SagaLaneEventLoop
@testable import SagaLaneJSON
@testable import SagaLaneSupport

/// Registers the seeds' two sagas, their triggers and a host target.
private func registerSeedSagas(_ h: CoordinatorHarness, host: HostRecorder) throws {
    try h.coordinator.register(PoolRespawnSaga.type)
    try h.coordinator.register(WindowCleanupSaga.type)
    try h.coordinator.addTrigger(Trigger(on: "PoolWindowPromoted", start: "pool_respawn_on_promote"))
    try h.coordinator.addTrigger(WindowCleanupSaga.trigger)
    try h.coordinator.register(target: host.target, named: "host")
}

/// A host that answers every seed command at once with the echo the saga waits for.
private func echoingHost() -> HostRecorder {
    HostRecorder { step, reporter in
        switch step.command["cmd"]?.stringValue {
        case "spawn_pool_window": reporter.publish(type: "PoolWindowAdded", payload: ["label": "pool-new"])
        case "reap_panes": reporter.publish(type: "PanesReaped", payload: ["label": step.command["label"] ?? .null])
        case "drain_pool_if_last": reporter.publish(type: "PoolDrained", payload: ["label": step.command["label"] ?? .null])
        default: reporter.fail("unknown command")
        }
    }
}

/// Completes on the first event it is fed.
private final class EndsOnAnyEvent: Saga {
    func start(_ context: SagaContext) -> SagaAction { .wait }
    func onEvent(_ event: Event, _ context: SagaContext) -> SagaAction { .done }
}

@Suite(.timeLimit(.minutes(2)))
struct CoordinatorTests {
    @Test func unrelatedEventsDrainWithNothingInFlight() async throws {
        let h = try CoordinatorHarness()
        try registerSeedSagas(h, host: HostRecorder())
        // A saga type that takes any input, triggered by an event never published here: an
        // event that wrongly fired it would start a saga (the seed types refuse these payloads).
        try h.coordinator.register(SagaType(name: "takes_anything") { _ in EndsOnAnyEvent() })
        try h.coordinator.addTrigger(Trigger(on: "NeverPublished", start: "takes_anything"))
        try await h.coordinator.start()
        for v in 1...5 { h.bus.publish(type: "LifecyclePhaseChanged", payload: ["to": "running", "n": .int(Int64(v))]) }
        h.bus.publish(type: "ProcessSpawned", payload: ["pid": 42])
        let marker = h.bus.publish(type: "Marker")
        await h.collector.waitFor("the marker") { $0.contains { $0.version == marker.version } }
        // The coordinator handles events in order, so by the time a saga-less round trip
        // through the loop completes, the earlier events have been handled: a saga they
        // started would be launching (its row not yet durable) or in flight.
        #expect(await h.coordinator.launchingCount == 0)
        #expect(await h.coordinator.inFlightCount == 0)
        #expect(h.startedIDs().isEmpty)
        #expect(try h.log.snapshotRecent(limit: 10).isEmpty)
        await h.shutdown()
    }

    @Test func idsAreMonotonicAndContinueAfterARestart() async throws {
        let first = try CoordinatorHarness()
        let host = echoingHost()
        try registerSeedSagas(first, host: host)
        try await first.coordinator.start()
        var ids: [UInt64] = []
        for i in 0..<5 { ids.append(try await first.coordinator.startSaga(name: "pool_respawn_on_promote", input: ["label": .string("p\(i)")])) }
        #expect(ids == ids.sorted() && Set(ids).count == ids.count)
        await first.collector.waitFor("5 completions") { $0.filter { $0.type == Event.sagaCompleted }.count == 5 }
        await first.shutdown()

        let second = try CoordinatorHarness(restarting: first)
        try registerSeedSagas(second, host: echoingHost())
        try await second.coordinator.start()
        let next = try await second.coordinator.startSaga(name: "pool_respawn_on_promote", input: ["label": "again"])
        #expect(next == ids.max()! + 1)
        await second.collector.waitFor("completion") { $0.contains { $0.type == Event.sagaCompleted } }
        #expect(try second.log.snapshotRecent(limit: 100).count == 6)
        await second.shutdown()
    }

    @Test func triggersPickTheRightSagaTypesAndSkipCrashFlaggedCloses() async throws {
        let h = try CoordinatorHarness()
        let host = HostRecorder()
        try registerSeedSagas(h, host: host)
        try await h.coordinator.start()
        h.bus.publish(type: "WindowClosed", payload: ["label": "crashed", "crash_detected": true])
        h.bus.publish(type: "WindowClosed", payload: ["label": "main", "crash_detected": false])
        h.bus.publish(type: "PoolWindowPromoted", payload: ["label": "pool-1"])
        h.bus.publish(type: "PoolWindowAdded", payload: ["label": "x"])
        h.bus.publish(type: "PanesReaped", payload: ["label": "main"])
        await h.collector.waitFor("two dispatched commands") { _ in host.count == 2 }
        let names = Set(h.collector.of(type: Event.sagaStarted).compactMap { $0.payload["name"]?.stringValue })
        #expect(names == ["window_cleanup_cascade", "pool_respawn_on_promote"])
        let inputs = try h.log.snapshotRecent(limit: 10).map(\.inputJSON)
        #expect(!inputs.contains { $0.contains("crashed") })
        #expect(await h.coordinator.inFlightCount == 2)
        await h.shutdown()
    }

    @Test func lifecycleEventsNeverTriggerOrFeedSagas() async throws {
        let h = try CoordinatorHarness()
        try registerSeedSagas(h, host: HostRecorder())
        // A trigger on a lifecycle type must never fire, or a saga could start itself forever:
        // it is refused, and a trigger never matches a lifecycle event anyway.
        let looping = Trigger(on: Event.sagaStarted, start: "pool_respawn_on_promote", input: { _ in ["label": "loop"] })
        #expect { try h.coordinator.addTrigger(looping) } throws: { ($0 as? SagaLaneError)?.code == .invalidArgument }
        #expect(!looping.matches(Event(type: Event.sagaStarted, sagaID: 1, payload: ["name": "x"])))
        // A saga that ends on the first event it is fed, interested in every lifecycle type.
        try h.coordinator.register(SagaType(name: "listener", interests: [Event.sagaStarted, Event.sagaCompleted, Event.sagaFailed]) { _ in
            EndsOnAnyEvent()
        })
        try await h.coordinator.start()
        let listener = try await h.coordinator.startSaga(name: "listener")
        h.bus.publish(type: Event.sagaStarted, sagaID: 999, payload: ["name": "foreign_saga"])
        h.bus.publish(type: Event.sagaCompleted, sagaID: 999)
        h.bus.publish(type: Event.sagaStarted, sagaID: listener, payload: ["name": "listener"])
        h.bus.publish(type: Event.sagaFailed, payload: ["name": "untagged"])
        let marker = h.bus.publish(type: "Marker")
        await h.collector.waitFor("marker") { $0.contains { $0.version == marker.version } }
        #expect(await h.coordinator.launchingCount == 0)
        #expect(await h.coordinator.inFlightIDs == [listener], "fed no lifecycle event, it still runs")
        #expect(try h.log.maxSagaID() == listener)
        await h.shutdown()
    }

    @Test func concurrentSameKindSagasCoexistAndBothComplete() async throws {
        let h = try CoordinatorHarness()
        let host = HostRecorder()
        try registerSeedSagas(h, host: host)
        try await h.coordinator.start()
        h.bus.publish(type: "PoolWindowPromoted", payload: ["label": "window-pool-a"])
        h.bus.publish(type: "PoolWindowPromoted", payload: ["label": "window-pool-b"])
        await h.collector.waitFor("both dispatched") { _ in host.count == 2 }
        #expect(await h.coordinator.inFlightCount == 2)
        // Answer in reverse order: routing is by saga id, not arrival order.
        for id in h.startedIDs().reversed() {
            h.bus.publish(type: "PoolWindowAdded", sagaID: id, payload: ["label": .string("refill-for-\(id)")])
        }
        await h.collector.waitFor("two completions") { $0.filter { $0.type == Event.sagaCompleted }.count == 2 }
        #expect(h.collector.of(type: Event.sagaFailed).isEmpty)
        let rows = try h.log.snapshotRecent(limit: 10)
        #expect(rows.count == 2)
        #expect(rows.allSatisfy { $0.state == .completed && $0.failureReason == nil })
        await h.shutdown()
    }

    @Test func logRowsAfterCompletion() async throws {
        let h = try CoordinatorHarness()
        try registerSeedSagas(h, host: echoingHost())
        try await h.coordinator.start()
        h.bus.publish(type: "PoolWindowPromoted", payload: ["label": "window-pool-abc"])
        await h.collector.waitFor("completion") { $0.contains { $0.type == Event.sagaCompleted } }
        let rows = try h.log.snapshotRecent(limit: 10)
        #expect(rows.count == 1)
        let row = try #require(rows.first)
        #expect(row.name == "pool_respawn_on_promote")
        #expect(row.state == .completed)
        #expect(row.endedAt != nil)
        #expect(row.failureReason == nil)
        #expect(row.stepCount == 1)
        // The input itself, as the trigger gave it: recovery rebuilds sagas from it.
        #expect(row.inputJSON == #"{"label":"window-pool-abc"}"#)
        let steps = try h.log.sagaSteps(sagaID: row.id)
        #expect(steps.map(\.state) == [.succeeded])
        // The dispatched command carried the saga id and the step index.
        let command = try JSON(parsing: steps[0].commandJSON)
        #expect(command["saga_id"]?.int64Value == Int64(row.id))
        #expect(command["step"]?.int64Value == 0)
        #expect(steps[0].target == "host")
        await h.shutdown()
    }

    /// The log keeps a saga's input itself, though the saga keeps nothing of it: recovery by
    /// replay rebuilds sagas from what the log stores.
    @Test func aSagasInputIsStoredWhateverItsTypeKeeps() async throws {
        final class Forgetful: Saga {
            func start(_ context: SagaContext) -> SagaAction { .done }
            func onEvent(_ event: Event, _ context: SagaContext) -> SagaAction { .wait }
        }
        let h = try CoordinatorHarness()
        try h.coordinator.register(SagaType(name: "forgetful") { _ in Forgetful() })
        try await h.coordinator.start()
        let input: JSON = ["order": 42, "items": ["a", "b"], "note": "é", "nested": ["deep": [1.5, nil, true]]]
        let id = try await h.coordinator.startSaga(name: "forgetful", input: input)
        await h.collector.waitFor("completion") { $0.contains { $0.type == Event.sagaCompleted && $0.sagaID == id } }
        let row = try #require(try h.log.saga(id: id))
        #expect(row.inputJSON == input.serialized)
        #expect(try JSON(parsing: row.inputJSON) == input)
        await h.shutdown()
    }

    @Test func consumedStepStoresTheEventAsJSON() async throws {
        let h = try CoordinatorHarness()
        let host = HostRecorder()
        try registerSeedSagas(h, host: host)
        try await h.coordinator.start()
        h.bus.publish(type: "WindowClosed", payload: ["label": "main", "crash_detected": false])
        await h.collector.waitFor("first command") { _ in host.count == 1 }
        let id = try #require(h.startedIDs().first)
        h.bus.publish(type: "PanesReaped", sagaID: id, payload: ["label": "main"])
        // Deliberately no PoolDrained: the saga stays unresolved with step 1 pending.
        await h.collector.waitFor("second command") { _ in host.count == 2 }
        let unresolved = try h.log.unresolvedSagas()
        #expect(unresolved.count == 1)
        let saga = try #require(unresolved.first)
        #expect(saga.name == "window_cleanup_cascade")
        #expect(saga.state == .running)
        #expect(saga.steps.count == 2)
        #expect(saga.steps[0].state == .succeeded)
        #expect(saga.steps[0].endedAt != nil)
        let output = try JSON(parsing: try #require(saga.steps[0].outputJSON))
        let event = try Event(json: output)
        #expect(event.type == "PanesReaped")
        #expect(event.sagaID == id)
        #expect(event.payload["label"] == "main")
        #expect(saga.steps[1].state == .pending)
        #expect(saga.steps[1].outputJSON == nil)
        await h.shutdown()
    }

    /// An id is handed out only once its saga's running row is durable, so an id a caller holds
    /// always names that saga in the log, also after a crash.
    @Test func anIdIsHandedOutOnlyOnceItsRowIsDurable() async throws {
        let h = try CoordinatorHarness()
        final class Idle: Saga {
            func start(_ context: SagaContext) -> SagaAction { .wait }
            func onEvent(_ event: Event, _ context: SagaContext) -> SagaAction { .wait }
        }
        try h.coordinator.register(SagaType(name: "idle") { _ in Idle() })
        try await h.coordinator.start()
        let log = h.log
        let checked = ConditionLock<[(UInt64, Bool)]>([])
        for i in 0..<50 {
            try h.coordinator.startSaga(name: "idle", input: ["n": .int(Int64(i))], onStarted: { result in
                guard case .success(let id) = result else { return }
                let row = try? log.saga(id: id)
                checked.withLock { $0.append((id, row?.inputJSON == #"{"n":\#(i)}"#)) }
            })
        }
        await h.collector.waitFor("50 starts") { _ in checked.withLock { $0.count } == 50 }
        #expect(checked.withLock { $0.allSatisfy(\.1) }, "every id named its own saga's durable row when it was handed out")
        #expect(Set(checked.withLock { $0.map(\.0) }).count == 50)
        await h.shutdown()
    }

    /// At most `launchQueueLimit` sagas wait for their running rows: the next start is refused
    /// with `.again` and starts nothing; once rows are durable there is room again. A saga's
    /// deadline counts from its running row, not from its start call.
    @Test func aFullLaunchQueueRefusesWithAgainAndDeadlinesCountFromTheRow() async throws {
        let h = try CoordinatorHarness(launchQueueLimit: 3)
        final class Idle: Saga {
            func start(_ context: SagaContext) -> SagaAction { .wait }
            func onEvent(_ event: Event, _ context: SagaContext) -> SagaAction { .wait }
        }
        try h.coordinator.register(SagaType(name: "idle", timeout: .seconds(10)) { _ in Idle() })
        try await h.coordinator.start()
        let release = await h.holdWriter()
        let started = ConditionLock<[UInt64]>([])
        for _ in 0..<3 {
            try h.coordinator.startSaga(name: "idle", input: .null, onStarted: { if case .success(let id) = $0 { started.withLock { $0.append(id) } } })
        }
        #expect { try h.coordinator.startSaga(name: "idle", input: .null, onStarted: { _ in Issue.record("a refused saga started") }) } throws: {
            ($0 as? SagaLaneError)?.code == .again
        }
        let room = Completion<Void>()
        h.coordinator.whenLaunchQueueHasRoom { room.set(()) }
        #expect(room.current == nil, "no room while the rows wait")
        // Loop time passes while the sagas wait to launch: it is not theirs.
        await h.loop.advance(by: .seconds(9))
        release()
        await h.collector.waitFor("room") { _ in room.current != nil }
        await h.collector.waitFor("3 starts") { _ in started.withLock { $0.count } == 3 }
        await h.loop.advance(by: .seconds(9))
        #expect(h.collector.of(type: Event.sagaFailed).isEmpty, "9 s after their rows, a 10 s deadline has not passed")
        await h.loop.advance(by: .seconds(2))
        await h.collector.waitFor("3 timeouts") { $0.filter { $0.type == Event.sagaFailed }.count == 3 }
        #expect(h.collector.of(type: Event.sagaFailed).allSatisfy { $0.payload["reason"] == "saga timeout" })
        await h.shutdown()
    }

    /// An untagged event of a type a saga declared interest in, published right after the
    /// trigger that starts it (before its running row is durable), reaches it.
    @Test func interestEventsPublishedWhileASagaLaunchesReachIt() async throws {
        let h = try CoordinatorHarness()
        final class Watcher: Saga {
            func start(_ context: SagaContext) -> SagaAction { .wait }
            func onEvent(_ event: Event, _ context: SagaContext) -> SagaAction { event.type == "Tick" ? .done : .wait }
        }
        try h.coordinator.register(SagaType(name: "watcher", interests: ["Tick"]) { _ in Watcher() })
        try h.coordinator.addTrigger(Trigger(on: "Watch", start: "watcher"))
        try await h.coordinator.start()
        // Hold the writer so the running rows cannot be durable before the ticks are handled.
        let release = await h.holdWriter()
        for _ in 0..<20 {
            h.bus.publish(type: "Watch")
            h.bus.publish(type: "Tick")
        }
        // A round trip through the loop after the events: the coordinator has handled them all,
        // with all twenty sagas still waiting for their rows.
        #expect(await h.coordinator.launchingCount == 20)
        release()
        await h.collector.waitFor("20 completions", limit: .seconds(20)) { $0.filter { $0.type == Event.sagaCompleted }.count == 20 }
        #expect(h.collector.of(type: Event.sagaCompleted).count == 20)
        await h.shutdown()
    }

    @Test func deadlineFailsASagaOnTheManualClock() async throws {
        let h = try CoordinatorHarness()
        let host = HostRecorder()
        try registerSeedSagas(h, host: host)
        try await h.coordinator.start()
        let id = try await h.coordinator.startSaga(name: "pool_respawn_on_promote", input: ["label": "slow"])
        // The deadline is armed in the same loop turn as the dispatch (the step row is
        // visible a little earlier, before the coordinator resumes).
        await h.collector.waitFor("dispatch") { _ in host.count == 1 }
        await h.loop.advance(by: .milliseconds(4_999))
        #expect(await h.coordinator.inFlightCount == 1)
        await h.loop.advance(by: .milliseconds(1))
        await h.collector.waitFor("timeout") { $0.contains { $0.type == Event.sagaFailed } }
        #expect(h.collector.of(type: Event.sagaFailed).first?.payload["reason"] == "saga timeout")
        let row = try #require(try h.log.saga(id: id))
        #expect(row.state == .failed)
        #expect(row.failureReason == "saga timeout")
        #expect(row.steps.first?.state == .failed)
        // A late echo changes nothing.
        h.bus.publish(type: "PoolWindowAdded", sagaID: id)
        let marker = h.bus.publish(type: "Marker")
        await h.collector.waitFor("marker") { $0.contains { $0.version == marker.version } }
        #expect(h.terminalEvents().count == 1)
        await h.shutdown()
    }

    @Test func unknownTargetsAndTargetReportedFailuresFailTheSaga() async throws {
        let h = try CoordinatorHarness()
        final class Nowhere: Saga {
            func start(_ context: SagaContext) -> SagaAction { .issue(target: "nowhere", command: ["cmd": "x"]) }
            func onEvent(_ event: Event, _ context: SagaContext) -> SagaAction { .wait }
        }
        try h.coordinator.register(SagaType(name: "nowhere") { _ in Nowhere() })
        try registerSeedSagas(h, host: HostRecorder { _, reporter in reporter.fail("no pool left") })
        try await h.coordinator.start()
        let lost = try await h.coordinator.startSaga(name: "nowhere")
        let refused = try await h.coordinator.startSaga(name: "pool_respawn_on_promote", input: ["label": "p"])
        await h.collector.waitFor("two failures") { $0.filter { $0.type == Event.sagaFailed }.count == 2 }
        let lostRow = try #require(try h.log.saga(id: lost))
        #expect(lostRow.state == .failed)
        #expect(lostRow.failureReason?.contains("unknown target") == true)
        #expect(lostRow.failureReason?.contains("nowhere") == true)
        let refusedRow = try #require(try h.log.saga(id: refused))
        #expect(refusedRow.state == .failed)
        #expect(refusedRow.failureReason == "action failed: no pool left")
        #expect(refusedRow.steps.map(\.state) == [.failed])
        await h.shutdown()
    }

    @Test func cancelEndsASagaOnceAndUnknownNamesAreClearErrors() async throws {
        let h = try CoordinatorHarness()
        try registerSeedSagas(h, host: HostRecorder())
        try await h.coordinator.start()
        let id = try await h.coordinator.startSaga(name: "pool_respawn_on_promote", input: ["label": "p"])
        try await h.coordinator.cancelSaga(id: id, reason: "operator asked")
        await #expect(throws: SagaLaneError.self) { try await h.coordinator.cancelSaga(id: id, reason: "again") }
        await h.collector.waitFor("failure") { $0.contains { $0.type == Event.sagaFailed } }
        #expect(try h.log.saga(id: id)?.failureReason == "cancelled: operator asked")
        await #expect(throws: SagaLaneError.self) { try await h.coordinator.startSaga(name: "no_such_saga", input: .null) }
        await #expect(throws: SagaLaneError.self) { try await h.coordinator.startSaga(name: "pool_respawn_on_promote", input: ["no label": 1]) }
        await h.shutdown()
    }

    @Test func startupRecoveryMarksUnfinishedSagasFailedCompensation() async throws {
        let first = try CoordinatorHarness()
        try registerSeedSagas(first, host: HostRecorder())
        try await first.coordinator.start()
        let id = try await first.coordinator.startSaga(name: "window_cleanup_cascade", input: ["label": "w"])
        await first.collector.waitFor("dispatch") { _ in (try? first.log.sagaSteps(sagaID: id).count) == 1 }
        await first.shutdown()

        let second = try CoordinatorHarness(restarting: first)
        try registerSeedSagas(second, host: HostRecorder())
        let recovered = try await second.coordinator.start()
        #expect(recovered == 1)
        let row = try #require(try second.log.saga(id: id))
        #expect(row.state == .failedCompensation)
        #expect(row.failureReason?.contains("interrupted") == true)
        #expect(try second.log.unresolvedSagas().isEmpty)
        await second.shutdown()
    }

    @Test func aFailingLogFailsSagasInsteadOfDispatching() async throws {
        let h = try CoordinatorHarness()
        let host = HostRecorder()
        try registerSeedSagas(h, host: host)
        try await h.coordinator.start()
        let ok = try await h.coordinator.startSaga(name: "window_cleanup_cascade", input: ["label": "ok"])
        await h.collector.waitFor("first dispatch") { _ in host.count == 1 }
        // Make the database read-only under the running log.
        try await h.log.setReadOnlyForTesting(true)
        h.bus.publish(type: "PanesReaped", sagaID: ok)
        let marker = h.bus.publish(type: "Marker")
        await h.collector.waitFor("marker") { $0.contains { $0.version == marker.version } }
        await h.collector.waitFor("the saga's end") { $0.contains { $0.type == Event.sagaFailed } }
        // The second command was never dispatched: its step could not be written.
        #expect(host.count == 1)
        let failed = try #require(h.collector.of(type: Event.sagaFailed).first)
        #expect(failed.payload["durable"] == false)
        #expect(h.coordinator.unhealthyReason != nil)
        await #expect(throws: SagaLaneError.self) { try await h.coordinator.startSaga(name: "pool_respawn_on_promote", input: ["label": "x"]) }
        await h.shutdown()
    }

    @Test func tenThousandConcurrentSagasAllComplete() async throws {
        let h = try CoordinatorHarness()
        let host = HostRecorder()
        try registerSeedSagas(h, host: host)
        try await h.coordinator.start()
        let n = 10_000
        for i in 0..<n { h.bus.publish(type: "PoolWindowPromoted", payload: ["label": .string("p\(i)")]) }
        await h.collector.waitFor("all dispatched", limit: .seconds(120)) { _ in host.count == n }
        #expect(await h.coordinator.inFlightCount == n)
        for step in host.dispatched.withLock({ $0 }) { h.bus.publish(type: "PoolWindowAdded", sagaID: step.sagaID) }
        await h.collector.waitFor("all completed", limit: .seconds(120)) { $0.filter { $0.type == Event.sagaCompleted }.count == n }
        #expect(await h.coordinator.inFlightCount == 0)
        #expect(try h.log.snapshotRecent(limit: n + 1).filter { $0.state == .completed }.count == n)
        await h.shutdown()
    }
}
