import SagaLaneTestSupport
import Synchronization
import Testing
@testable import SagaLaneCoordinator
@testable import SagaLaneLog
@testable import SagaLaneEventLoop
@testable import SagaLaneJSON
@testable import SagaLaneSupport

/// Waits for one answer: `{"outcome": "done"}` completes it, anything else fails it.
private final class RaceSaga: Saga {
    func start(_ context: SagaContext) -> SagaAction { .issue(target: "host", command: ["cmd": "work"]) }
    func onEvent(_ event: Event, _ context: SagaContext) -> SagaAction {
        guard event.type == "Answer" else { return .wait }
        return event.payload["outcome"] == "done" ? .done : .failed("said no")
    }
}

@Suite(.timeLimit(.minutes(3)))
struct CoordinatorRaceTests {
    /// Every saga gets exactly one terminal event, and its log row agrees with it, whatever the
    /// interleaving of done, failed, target-reported failure, cancel and deadline.
    @Test(arguments: [1, 7, 42, 99, 1234, 5678, 0xDEAD, 0xC0FFEE] as [UInt64])
    func everySagaGetsExactlyOneTerminalEvent(seed: UInt64) async throws {
        let h = try CoordinatorHarness()
        let host = HostRecorder()
        try h.coordinator.register(SagaType(name: "race", timeout: .seconds(5)) { _ in RaceSaga() })
        try h.coordinator.register(target: host.target, named: "host")
        try await h.coordinator.start()
        var rng = SplitMix(state: seed)
        let n = 40
        var ids: [UInt64] = []
        for _ in 0..<n { ids.append(try await h.coordinator.startSaga(name: "race", input: .null)) }
        await h.collector.waitFor("all dispatched") { _ in host.count == n }

        // Up to three contenders per saga, fired in a random global order with clock moves in
        // between; some sagas get none and are left to their deadline.
        var moves: [(UInt64, Int)] = []
        for id in ids { for _ in 0..<rng.next(4) { moves.append((id, rng.next(5))) } }
        for i in stride(from: moves.count - 1, to: 0, by: -1) { moves.swapAt(i, rng.next(i + 1)) }
        for (id, move) in moves {
            switch move {
            case 0: h.bus.publish(type: "Answer", sagaID: id, payload: ["outcome": "done"])
            case 1: h.bus.publish(type: "Answer", sagaID: id, payload: ["outcome": "no"])
            case 2: h.bus.publish(type: Event.sagaActionFailed, sagaID: id, payload: ["reason": "host said no"])
            case 3: try? await h.coordinator.cancelSaga(id: id, reason: "race")
            default: await h.loop.advance(by: .milliseconds(Int64(rng.next(2_500))))
            }
        }
        await h.loop.advance(by: .seconds(6))
        await h.collector.waitFor("a terminal event for every saga") { events in
            Set(events.filter { $0.type == Event.sagaCompleted || $0.type == Event.sagaFailed }.compactMap(\.sagaID)).count == n
        }
        // Let anything still queued run through before counting.
        let marker = h.bus.publish(type: "Marker")
        await h.collector.waitFor("marker") { $0.contains { $0.version == marker.version } }

        var terminals: [UInt64: [Event]] = [:]
        for event in h.terminalEvents() { terminals[event.sagaID!, default: []].append(event) }
        for id in ids {
            let mine = terminals[id] ?? []
            #expect(mine.count == 1, "seed \(seed): saga \(id) got \(mine.count) terminal events")
            let row = try #require(try h.log.saga(id: id))
            if mine.first?.type == Event.sagaCompleted {
                #expect(row.state == .completed, "seed \(seed): saga \(id)")
            } else {
                #expect(row.state == .failed, "seed \(seed): saga \(id)")
                #expect(row.failureReason == mine.first?.payload["reason"]?.stringValue)
            }
        }
        #expect(await h.coordinator.inFlightCount == 0)
        await h.shutdown()
    }
}
