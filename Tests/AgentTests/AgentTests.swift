import Glibc
import SagaLaneScriptSaga
import SagaLaneTestSupport
import Testing
@testable import SagaLane
@testable import SagaLaneAgent

@Suite(.serialized, .timeLimit(.minutes(2)))
struct AgentTests {
    @Test func theHandshakeComesFirstAndNamesTheVersion() throws {
        let fixture = try AgentFixture()
        defer { fixture.stop() }
        let client = try TestClient(path: fixture.socket)
        #expect(try client.errorCode(.ping) == "handshake_required")
        #expect(try client.errorCode(.sagaGet(sagaID: 1)) == "handshake_required")
        let welcome = try client.request(.hello(version: 7, name: "future", targets: []))
        #expect(welcome.message == .welcome(version: WireVersion.current, server: "sagalane \(SagaLaneVersion.string)", maxFrame: 1 << 20))
        #expect(try client.errorCode(.hello(version: 1, name: nil, targets: [])) == "already_handshaken")
        try client.ok(.ping)

        let old = try TestClient(path: fixture.socket)
        #expect(try old.errorCode(.hello(version: 0, name: nil, targets: [])) == "unsupported_version")
        #expect(try old.next(timeoutMilliseconds: 5000) == nil, "a peer without a common version is closed")
    }

    @Test func aHostAnswersItsCommandsAndTheSagaCompletes() throws {
        let fixture = try AgentFixture()
        defer { fixture.stop() }
        let host = try fixture.client("host")
        try host.ok(.targetRegister(names: ["host"]))
        let client = try fixture.client("client")
        try client.ok(.subscribe(events: .lifecycle, after: nil))
        let id = try client.startScript([("host", ["cmd": "SpawnPane", "window": "w1"], "PaneSpawned"),
                                         ("host", ["cmd": "FocusPane"], "PaneFocused")])
        let first = try #require(try host.command())
        #expect(first.target == "host" && first.sagaID == id && first.step == 0)
        #expect(first.command == ["cmd": "SpawnPane", "window": "w1", "saga_id": .int(Int64(id)), "step": 0])
        try host.ok(.stepDone(sagaID: id, step: 0, event: "PaneSpawned", payload: ["pane": "p1"]))
        let second = try #require(try host.command())
        #expect(second.step == 1 && second.command["cmd"] == "FocusPane")
        try host.send(WireFrame(.stepDone(sagaID: id, step: 1, event: "PaneFocused", payload: .null)))
        #expect(try client.waitSaga(id).state == "completed")
        // Lifecycle events came to the subscriber, in order.
        var seen: [String] = []
        while seen.count < 2, let frame = try client.next(where: { if case .event = $0.message { return true }; return false }) {
            if case .event(let type, let sagaID, _, _) = frame.message, sagaID == id { seen.append(type) }
        }
        #expect(seen == ["SagaStarted", "SagaCompleted"])
        let row = try #require(try fixture.runtime.log.saga(id: id))
        #expect(row.state == .completed)
        #expect(row.steps.map(\.state) == [.succeeded, .succeeded])
        #expect(row.steps.map(\.target) == ["host", "host"])
    }

    @Test func aFailedStepFailsItsSaga() throws {
        let fixture = try AgentFixture()
        defer { fixture.stop() }
        let host = try fixture.client("host")
        try host.ok(.targetRegister(names: ["host"]))
        let client = try fixture.client()
        let id = try client.startScript([("host", ["cmd": "X"], "Done")])
        let command = try #require(try host.command())
        try host.ok(.stepFailed(sagaID: id, step: command.step, reason: "no such window"))
        let end = try client.waitSaga(id)
        #expect(end.state == "failed")
        #expect(end.reason == "action failed: no such window")
    }

    @Test func badInputIsAnsweredCountedAndHarmsNothingElse() throws {
        let fixture = try AgentFixture(maxFrameSize: 4096)
        defer { fixture.stop() }
        let host = try fixture.client("host")
        try host.ok(.targetRegister(names: ["host"]))
        let client = try fixture.client("mischief")
        func raw(_ text: String) throws -> (String, String?) {
            try client.socket.send(text)
            let frame = try #require(try client.next())
            guard case .error(let code, let message, _) = frame.message else { return ("", nil) }
            return (code, frame.id?.int64Value.map(String.init) ?? message)
        }
        #expect(try raw("{not json").0 == "malformed_json")
        #expect(try raw("[1,2,3]").0 == "not_an_object")
        #expect(try raw("{\"id\": 5}").0 == "missing_type")
        #expect(try raw("{\"type\": \"self.destruct\", \"id\": 6}") == ("unknown_type", "6"))
        #expect(try raw("{\"type\": \"command\", \"target\": \"host\", \"saga_id\": 1, \"step\": 0}").0 == "unexpected_type")
        #expect(try raw("{\"type\": \"ping\", \"colour\": \"red\"}").0 == "unknown_field")
        #expect(try client.errorCode(.sagaStart(saga: "nonesuch", input: .null, idempotencyKey: nil)) == "unknown_saga_type")
        #expect(try client.errorCode(.targetUnregister(names: ["ghost"])) == "unknown_target")
        #expect(try client.errorCode(.targetRegister(names: ["lane:x"])) == "bad_field")
        #expect(try client.errorCode(.laneSubmit(WireLaneSubmit(lane: "nolane"))) == "unknown_lane")
        #expect(try client.errorCode(.workerRegister(lane: "nolane", capacity: 1)) == "unknown_lane")
        #expect(try client.errorCode(.sagaGet(sagaID: 999)) == "unknown_saga")
        #expect(try client.errorCode(.stepDone(sagaID: 999, step: 0, event: "E", payload: .null)) == "unknown_saga")
        #expect(try client.errorCode(.jobDone(jobID: "nojob", result: .null)) == "unknown_job")
        #expect(try client.errorCode(.targetRegister(names: ["host"])) == "target_taken")
        #expect(try client.errorCode(.subscribe(events: .all, after: 10)) == "unsupported_field")
        #expect(try client.errorCode(.sagaStart(saga: "script", input: .null, idempotencyKey: "k1")) == "unsupported_field")
        // A report for a saga that already ended.
        let id = try client.startScript([("host", ["cmd": "X"], "Done")])
        _ = try #require(try host.command())
        try host.ok(.stepDone(sagaID: id, step: 0, event: "Done", payload: .null))
        #expect(try client.waitSaga(id).state == "completed")
        #expect(try host.errorCode(.stepDone(sagaID: id, step: 0, event: "Done", payload: .null)) == "saga_ended")
        // A report from a connection that was never sent the step.
        let id2 = try client.startScript([("host", ["cmd": "Y"], "Done")])
        let command = try #require(try host.command())
        #expect(try client.errorCode(.stepDone(sagaID: id2, step: command.step, event: "Done", payload: .null)) == "not_awaiting")
        try host.ok(.stepDone(sagaID: id2, step: command.step, event: "Done", payload: .null))
        #expect(try client.waitSaga(id2).state == "completed")
        // The connection still works after all that.
        try client.ok(.ping)
        // A frame past the maximum is answered, then closes that connection only.
        try client.socket.write(Array(repeating: 120, count: 10_000) + [10])
        var tooLarge: [String] = []
        while let frame = try client.next(timeoutMilliseconds: 5000) {
            if case .error(let code, let message, _) = frame.message { tooLarge.append("\(code): \(message)") }
        }
        #expect(tooLarge.count == 1 && tooLarge[0].hasPrefix("frame_too_large: frame too large: more than"), "\(tooLarge)")
        try host.ok(.ping)
        let stats = try fixture.stats()
        let errors = try #require(stats["errors"])
        for code in ["malformed_json", "not_an_object", "missing_type", "unknown_type", "unexpected_type", "unknown_field",
                     "unknown_saga_type", "unknown_target", "unknown_lane", "unknown_saga", "unknown_job", "target_taken",
                     "unsupported_field", "saga_ended", "not_awaiting", "frame_too_large"] {
            #expect((errors[code]?.int64Value ?? 0) >= 1, "counted \(code)")
        }
        #expect(stats["connections_closed_on_error"] == 1)
        #expect(fixture.messages.withLock { $0.contains { $0.contains("frame too large") } }, "one line on standard error")
    }

    @Test func aHostThatReconnectsGetsItsBufferedCommandsInOrder() throws {
        let fixture = try AgentFixture()
        defer { fixture.stop() }
        var host = try fixture.client("host")
        try host.ok(.targetRegister(names: ["host"]))
        host.close()
        let client = try fixture.client()
        // The host is gone: these commands wait for it.
        var ids: [UInt64] = []
        for i in 0..<20 { ids.append(try client.startScript([("host", ["n": .int(Int64(i))], "Done")])) }
        try eventually("20 commands buffered") { try fixture.stats()["targets"]?["host"]?["buffered"] == 20 }
        #expect(try fixture.stats()["targets"]?["host"]?["connected"] == false)
        host = try fixture.client("host again")
        try host.ok(.targetRegister(names: ["host"]))
        var order: [Int64] = []
        for _ in 0..<20 {
            let command = try #require(try host.command())
            order.append(command.command["n"]?.int64Value ?? -1)
            try host.send(WireFrame(.stepDone(sagaID: command.sagaID, step: command.step, event: "Done", payload: .null)))
        }
        #expect(order == Array(0..<20))
        for id in ids { #expect(try client.waitSaga(id).state == "completed") }
    }

    @Test func anExpiredCommandFailsItsSagaOnceAndIsNeverDelivered() throws {
        let fixture = try AgentFixture(bufferExpiry: .milliseconds(300))
        defer { fixture.stop() }
        var host = try fixture.client("host")
        try host.ok(.targetRegister(names: ["host"]))
        host.close()
        let client = try fixture.client()
        try client.ok(.subscribe(events: .lifecycle, after: nil))
        let id = try client.startScript([("host", ["cmd": "Late"], "Done")])
        let end = try client.waitSaga(id)
        #expect(end.state == "failed")
        #expect(end.reason?.hasPrefix("action failed: host unreachable: target 'host'") == true, "\(end.reason ?? "")")
        host = try fixture.client("host again")
        try host.ok(.targetRegister(names: ["host"]))
        #expect(try host.command(timeoutMilliseconds: 500) == nil, "the expired command is never delivered")
        usleep(300_000)
        var failures = 0
        while let frame = try client.next(timeoutMilliseconds: 300, where: { if case .event = $0.message { return true }; return false }) {
            if case .event("SagaFailed", id?, _, _) = frame.message { failures += 1 }
        }
        #expect(failures == 1, "exactly one SagaFailed")
        #expect(try fixture.stats()["targets"]?["host"]?["expired"] == 1)
    }

    @Test func aSagaThatTimesOutWhileItsCommandWaitsNeverHasItDelivered() throws {
        let fixture = try AgentFixture(sagaTimeout: .milliseconds(200), bufferExpiry: .seconds(30))
        defer { fixture.stop() }
        var host = try fixture.client("host")
        try host.ok(.targetRegister(names: ["host"]))
        host.close()
        let client = try fixture.client()
        let id = try client.startScript([("host", ["cmd": "TooLate"], "Done")])
        let end = try client.waitSaga(id)
        #expect(end.state == "failed" && end.reason == "saga timeout")
        host = try fixture.client("host again")
        try host.ok(.targetRegister(names: ["host"]))
        #expect(try host.command(timeoutMilliseconds: 500) == nil)
        let status = try #require(try fixture.stats()["targets"]?["host"])
        #expect(status["purged"] == 1 && status["buffered"] == 0)
    }

    @Test func aNameHeldByAnotherLiveConnectionIsRefusedAndFreedOnClose() throws {
        let fixture = try AgentFixture()
        defer { fixture.stop() }
        let first = try fixture.client("first")
        try first.ok(.targetRegister(names: ["host"]))
        let second = try fixture.client("second")
        #expect(try second.errorCode(.targetRegister(names: ["host"])) == "target_taken")
        try first.ok(.targetUnregister(names: ["host"]))
        try second.ok(.targetRegister(names: ["host"]))
        let client = try fixture.client()
        let id = try client.startScript([("host", ["cmd": "X"], "Done")])
        let command = try #require(try second.command())
        #expect(command.sagaID == id)
    }

    @Test func eventsArePublishedAndFiltered() throws {
        let fixture = try AgentFixture()
        defer { fixture.stop() }
        let listener = try fixture.client("listener")
        try listener.ok(.subscribe(events: .types(["Ping"]), after: nil))
        let publisher = try fixture.client("publisher")
        let first = try publisher.ok(.publish(event: "Pong", sagaID: nil, payload: 1))
        let second = try publisher.ok(.publish(event: "Ping", sagaID: nil, payload: ["n": 2]))
        #expect((second["version"]?.int64Value ?? 0) > (first["version"]?.int64Value ?? 0))
        let frame = try #require(try listener.next(where: { if case .event = $0.message { return true }; return false }))
        #expect(frame.message == .event(event: "Ping", sagaID: nil, payload: ["n": 2], version: UInt64(second["version"]!.int64Value!)))
        try listener.ok(.unsubscribe)
        try publisher.ok(.publish(event: "Ping", sagaID: nil, payload: 3))
        #expect(try listener.next(timeoutMilliseconds: 300, where: { if case .event = $0.message { return true }; return false }) == nil)
    }

    @Test func sagasAreCancelledAndInspected() throws {
        let fixture = try AgentFixture()
        defer { fixture.stop() }
        let host = try fixture.client("host")
        try host.ok(.targetRegister(names: ["host"]))
        let client = try fixture.client()
        let id = try client.startScript([("host", ["cmd": "Slow"], "Done")])
        _ = try #require(try host.command())
        try client.ok(.sagaCancel(sagaID: id, reason: "operator"))
        #expect(try client.waitSaga(id) == ("failed", "cancelled: operator"))
        #expect(try client.errorCode(.sagaCancel(sagaID: id, reason: nil)) == "saga_ended")
        let saga = try #require(try client.ok(.sagaGet(sagaID: id))["saga"])
        #expect(saga["state"] == "failed")
        #expect(try client.errorCode(.sagaWait(sagaID: 12345, timeoutMilliseconds: 100)) == "unknown_saga")
        // A command answered after its saga was cancelled is refused: the saga is over.
        #expect(try host.errorCode(.stepDone(sagaID: id, step: 0, event: "Done", payload: .null)) == "saga_ended")
    }
}
