import SagaLaneJSON
import SagaLaneSupport
import SagaLaneTestSupport
import Testing
@testable import SagaLaneWire

@Suite struct WireTests {
    private func parse(_ text: String) throws(WireError) -> WireFrame {
        var text = text
        let result = text.withUTF8 { bytes -> Result<WireFrame, WireError> in
            do throws(WireError) { return .success(try WireFrame.parse(UnsafeRawBufferPointer(bytes))) } catch { return .failure(error) }
        }
        return try result.get()
    }

    private func failure(_ text: String) -> WireError? {
        do { _ = try parse(text); return nil } catch { return error }
    }

    static let samples: [WireFrame] = [
        WireFrame(id: 1, .hello(version: 1, name: "host", targets: ["a", "b"])),
        WireFrame(id: "x", .welcome(version: 1, server: "sagalane 0.1.0", maxFrame: 1 << 20)),
        .ok(3, ["saga_id": 9]),
        WireFrame(id: 4, .error(code: "bad_field", message: "m", about: "saga.start")),
        WireFrame(id: 5, .ping),
        WireFrame(id: 6, .targetRegister(names: ["host"])),
        WireFrame(.targetUnregister(names: ["host"])),
        WireFrame(.command(target: "host", sagaID: 7, step: 2, command: ["cmd": "Spawn", "saga_id": 7, "step": 2])),
        WireFrame(.stepDone(sagaID: 7, step: 2, event: "Spawned", payload: ["pane": "p1"])),
        WireFrame(id: 8, .stepFailed(sagaID: 7, step: 2, reason: "no pane")),
        WireFrame(.publish(event: "PoolWindowAdded", sagaID: nil, payload: ["window": "w"])),
        WireFrame(.publish(event: "Echo", sagaID: 3, payload: .null)),
        WireFrame(id: 9, .subscribe(events: .types(["A", "B"]), after: nil)),
        WireFrame(.subscribe(events: .all, after: 12)),
        WireFrame(.subscribe(events: .lifecycle, after: nil)),
        WireFrame(.unsubscribe),
        WireFrame(.event(event: "SagaStarted", sagaID: 4, payload: ["name": "s"], version: 10)),
        WireFrame(.lagged(missed: 3)),
        WireFrame(id: 10, .sagaStart(saga: "s", input: ["a": [1, 2]], idempotencyKey: nil)),
        WireFrame(.sagaStart(saga: "s", input: .null, idempotencyKey: "k")),
        WireFrame(.sagaCancel(sagaID: 3, reason: "r")),
        WireFrame(.sagaWait(sagaID: 3, timeoutMilliseconds: 500)),
        WireFrame(.sagaGet(sagaID: 3)),
        WireFrame(.laneCreate(lane: "gpu", maxConcurrent: 4)),
        WireFrame(.laneSubmit(WireLaneSubmit(lane: "gpu", jobID: "j", priority: -3, payload: ["x": 1],
                                             retry: RetryPolicy(maxAttempts: 3, initialBackoff: .milliseconds(10)),
                                             reservationMilliseconds: 2000, notify: true))),
        WireFrame(.laneSubmit(WireLaneSubmit(lane: "gpu"))),
        WireFrame(.laneCancel(lane: "gpu", jobID: "j")),
        WireFrame(.laneJob(jobID: "j")),
        WireFrame(.laneJobs(lane: "gpu", state: "queued", limit: 5)),
        WireFrame(.laneStats(lane: "gpu")),
        WireFrame(.laneJobEnded(lane: "gpu", jobID: "j", state: "failed", result: nil, error: "e", attempts: 2)),
        WireFrame(.workerRegister(lane: "gpu", capacity: 2)),
        WireFrame(.job(lane: "gpu", jobID: "j", attempt: 1, payload: ["x": 1])),
        WireFrame(.jobDone(jobID: "j", result: ["ok": true])),
        WireFrame(.jobFailed(jobID: "j", error: "boom")),
        WireFrame(id: 11, .agentStats),
        .ok("r-\"1\"", ["a": 1, "caf\u{E9}": "line\nbreak", "zz": [true, .null]]),
        WireFrame(.laneJobEnded(lane: "gpu", jobID: "j", state: "finished", result: ["n": 1.5], error: nil, attempts: 1)),
    ]

    @Test(arguments: samples)
    func everyMessageSurvivesTheWire(_ frame: WireFrame) throws {
        let text = frame.serialized
        #expect(!text.utf8.contains(10))
        #expect(try parse(text) == frame)
    }

    /// Frames are written member by member, not through `JSONObject`: the text must still be
    /// the one canonical form, members in the order of their names.
    @Test(arguments: samples)
    func everyFrameIsWrittenInCanonicalForm(_ frame: WireFrame) throws {
        let text = frame.serialized
        #expect(try JSON(parsing: text).serialized == text)
    }

    @Test func everyTypeHasADirection() {
        for frame in Self.samples {
            let type = frame.message.type
            #expect(WireMessage.clientTypes.contains(type) != WireMessage.serverTypes.contains(type) || type == "ok" || type == "error", "\(type)")
        }
    }

    @Test func malformedFramesAreNamed() {
        #expect(failure("{\"type\": ")?.code == .malformedJSON)
        #expect(failure("[1, 2]")?.code == .notAnObject)
        #expect(failure("\"hello\"")?.code == .notAnObject)
        #expect(failure("{\"version\": 1}")?.code == .missingType)
        #expect(failure("{\"type\": \"\"}")?.code == .missingType)
        #expect(failure("{\"type\": \"launch.missiles\", \"id\": 4}") == WireError(.unknownType, "no message has the type \"launch.missiles\"", id: 4, about: "launch.missiles"))
        let unknown = failure("{\"type\": \"ping\", \"id\": \"r1\", \"sagaid\": 3}")
        #expect(unknown?.code == .unknownField)
        #expect(unknown?.message.contains("sagaid") == true)
        #expect(unknown?.id == "r1", "the error answers the request's id")
    }

    @Test func fieldsAreCheckedForTypeAndRange() {
        #expect(failure("{\"type\": \"step.done\", \"saga_id\": 0, \"step\": 1, \"event\": \"E\"}")?.code == .badField)
        #expect(failure("{\"type\": \"step.done\", \"saga_id\": \"7\", \"step\": 1, \"event\": \"E\"}")?.code == .badField)
        #expect(failure("{\"type\": \"step.done\", \"saga_id\": 7, \"step\": -1, \"event\": \"E\"}")?.code == .badField)
        #expect(failure("{\"type\": \"step.done\", \"saga_id\": 7, \"step\": 4294967296, \"event\": \"E\"}")?.code == .badField)
        #expect(failure("{\"type\": \"step.done\", \"saga_id\": 7, \"step\": 1.5, \"event\": \"E\"}")?.code == .badField)
        #expect(failure("{\"type\": \"step.done\", \"saga_id\": 7, \"step\": 1}")?.code == .badField)
        #expect(failure("{\"type\": \"target.register\", \"names\": [\"a\", 3]}")?.code == .badField)
        #expect(failure("{\"type\": \"target.register\", \"names\": \"a\"}")?.code == .badField)
        #expect(failure("{\"type\": \"lane.create\", \"lane\": \"l\", \"max_concurrent\": 0}")?.code == .badField)
        #expect(failure("{\"type\": \"lane.submit\", \"lane\": \"l\", \"retry\": {\"max_attempts\": 2, \"backof_ms\": 1}}")?.code == .unknownField)
        #expect(failure("{\"type\": \"subscribe\", \"events\": 5}")?.code == .badField)
        #expect(failure("{\"type\": \"ping\", \"id\": 1.5}")?.code == .badField)
        #expect(failure("{\"type\": \"ping\", \"id\": {\"a\": 1}}")?.code == .badField)
        #expect(failure("{\"type\": \"ping\", \"id\": \"\(String(repeating: "x", count: 257))\"}")?.code == .badField)
    }

    @Test func aNullIDIsNoID() throws {
        #expect(try parse("{\"type\": \"ping\", \"id\": null}") == WireFrame(.ping))
    }

    /// Hostile frames: deep nesting, invalid UTF-8, NULs, huge numbers, random bytes. Each
    /// parses or is refused with a code; none crashes.
    @Test func hostileFramesAreRefusedWithACode() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(failure(deep)?.code == .malformedJSON)
        #expect(failure("{\"type\": \"ping\", \"x\": \"\u{0}\"}") != nil)
        var bytes = Array("{\"type\": \"ping\", \"id\": \"".utf8) + [0xff, 0xfe] + Array("\"}".utf8)
        let invalid = bytes.withUnsafeMutableBytes { raw -> WireError? in
            do throws(WireError) { _ = try WireFrame.parse(UnsafeRawBufferPointer(raw)); return nil } catch { return error }
        }
        #expect(invalid?.code == .malformedJSON)
        #expect(failure("{\"type\": \"saga.get\", \"saga_id\": 1e400}")?.code != nil)
        #expect(failure("{\"type\": \"saga.get\", \"saga_id\": 99999999999999999999999}")?.code == .badField)
        var random = SplitMix(state: 5)
        let alphabet = Array("{}[]\":,0123456789.-eE truefalsnl\\u\"type\"ping\"id\"".utf8)
        for _ in 0..<5000 {
            bytes = (0..<random.next(80)).map { _ in random.next(10) == 0 ? UInt8(truncatingIfNeeded: random.next(256)) : alphabet[random.next(alphabet.count)] }
            _ = bytes.withUnsafeMutableBytes { raw -> WireError? in
                do throws(WireError) { _ = try WireFrame.parse(UnsafeRawBufferPointer(raw)); return nil } catch { return error }
            }
        }
    }

    @Test func versionsAreNegotiated() {
        #expect(WireVersion.negotiate(peer: WireVersion.current) == WireVersion.current)
        #expect(WireVersion.negotiate(peer: WireVersion.current + 5) == WireVersion.current)
        #expect(WireVersion.negotiate(peer: 0) == nil)
    }
}
