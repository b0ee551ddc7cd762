import Glibc
import SagaLaneScriptSaga
import SagaLaneTestSupport
import Testing
@testable import SagaLane

/// A host a runtime dials, played by the test over blocking sockets.
private final class FakeHost {
    let listener: BlockingListener
    var connection: BlockingFrameSocket?

    init(path: String) throws { listener = try BlockingListener(path: path) }

    /// Accepts the runtime's connection and answers its hello.
    func accept() throws -> [String] {
        connection = try #require(try listener.accept())
        let hello = try frame()
        guard case .hello(let version, _, let targets) = hello.message else {
            throw ChildError(message: "expected hello, got \(hello.serialized)")
        }
        #expect(version == WireVersion.current)
        try connection!.send(WireFrame(id: hello.id, .welcome(version: 1, server: "fake host", maxFrame: 1 << 20)).serialized)
        return targets
    }

    func frame(timeoutMilliseconds: Int = 10_000) throws -> WireFrame {
        let bytes = try #require(try connection?.readFrame(timeoutMilliseconds: timeoutMilliseconds))
        return try bytes.withUnsafeBytes { try WireFrame.parse($0) }
    }

    func command(timeoutMilliseconds: Int = 10_000) throws -> (sagaID: UInt64, step: UInt32, command: JSON)? {
        guard let bytes = try connection?.readFrame(timeoutMilliseconds: timeoutMilliseconds) else { return nil }
        let frame = try bytes.withUnsafeBytes { try WireFrame.parse($0) }
        guard case .command(_, let sagaID, let step, let command) = frame.message else {
            throw ChildError(message: "expected a command, got \(frame.serialized)")
        }
        return (sagaID, step, command)
    }

    func answer(_ sagaID: UInt64, _ step: UInt32, _ event: String = "Done") throws {
        try connection!.send(WireFrame(.stepDone(sagaID: sagaID, step: step, event: event, payload: .null)).serialized)
    }
}

private func runtime(_ dir: TemporaryDirectory, timeout: Duration = .seconds(30)) throws -> Runtime {
    let runtime = try Runtime(options: RuntimeOptions(databasePath: dir.file("log.db"), durability: .normal, diagnostics: .discard))
    try runtime.register(ScriptSaga.type(timeout: timeout))
    return runtime
}

private let fastReconnect = ReconnectPolicy(initialDelay: .milliseconds(10), maxDelay: .milliseconds(50), jitter: 0)

@Suite(.serialized, .timeLimit(.minutes(2)))
struct PipeTargetTests {
    @Test func theRuntimeDialsItsHostAndTheHostAnswers() throws {
        let dir = TemporaryDirectory()
        let host = try FakeHost(path: dir.file("host.sock"))
        let rt = try runtime(dir)
        defer { rt.close() }
        try rt.connectTarget(named: "host", path: host.listener.path, options: PipeTargetOptions(reconnect: fastReconnect))
        try rt.start()
        #expect(try host.accept() == ["host"])
        try eventually { try rt.pipeTargetStatus(named: "host")?.connected == true }
        let id = try rt.startSaga(name: "script", input: ScriptSaga.input([("host", ["cmd": "A"], "Done"), ("host", ["cmd": "B"], "Done")]))
        let first = try #require(try host.command())
        #expect(first.sagaID == id && first.step == 0 && first.command["cmd"] == "A")
        try host.answer(id, 0)
        let second = try #require(try host.command())
        #expect(second.command["cmd"] == "B")
        try host.answer(id, 1)
        #expect(try rt.waitForSaga(id: id, timeoutMilliseconds: 10_000).state == .completed)
        #expect(try rt.pipeTargetStatus(named: "host")?.sent == 2)
        #expect(try rt.pipeTargetStatus(named: "nothing") == nil)
    }

    /// A host that sends a frame over the bound is told so in an error frame; that connection
    /// closes, the runtime dials again, and the next connection works.
    @Test func anOversizedFrameFromTheHostIsAnsweredAndTheTargetDialsAgain() throws {
        let dir = TemporaryDirectory()
        let host = try FakeHost(path: dir.file("host.sock"))
        let rt = try runtime(dir)
        defer { rt.close() }
        let connection = PipeConnectionOptions(maxFrameSize: 4096)
        try rt.connectTarget(named: "host", path: host.listener.path,
                             options: PipeTargetOptions(reconnect: fastReconnect, connection: connection))
        try rt.start()
        _ = try host.accept()
        try eventually { try rt.pipeTargetStatus(named: "host")?.connected == true }
        try host.connection!.send("{\"type\":\"event\",\"pad\":\"" + String(repeating: "x", count: 8192) + "\"}")
        let answer = try host.frame()
        guard case .error(let code, let message, _) = answer.message else {
            Issue.record("expected an error frame, got \(answer.serialized)")
            return
        }
        #expect(code == WireErrorCode.frameTooLarge.name && message.contains("the connection closes"), "\(answer.serialized)")
        #expect(try host.connection!.readFrame(timeoutMilliseconds: 10_000) == nil)  // closed by the runtime
        #expect(try rt.pipeTargetStatus(named: "host")?.badFrames == 1)
        _ = try host.accept()
        let id = try rt.startSaga(name: "script", input: ScriptSaga.input([("host", ["cmd": "A"], "Done")]))
        let command = try #require(try host.command())
        try host.answer(command.sagaID, command.step)
        #expect(try rt.waitForSaga(id: id, timeoutMilliseconds: 10_000).state == .completed)
    }

    @Test func aHostThatRestartsGetsTheCommandsThatWaitedInOrder() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("host.sock")
        var host: FakeHost? = try FakeHost(path: path)
        let rt = try runtime(dir)
        defer { rt.close() }
        try rt.connectTarget(named: "host", path: path, options: PipeTargetOptions(reconnect: fastReconnect))
        try rt.start()
        _ = try host!.accept()
        try eventually { try rt.pipeTargetStatus(named: "host")?.connected == true }
        // The host goes away, socket and all.
        host = nil
        try eventually { try rt.pipeTargetStatus(named: "host")?.connected == false }
        var ids: [UInt64] = []
        for i in 0..<10 { ids.append(try rt.startSaga(name: "script", input: ScriptSaga.input([("host", ["n": .int(Int64(i))], "Done")]))) }
        try eventually { try rt.pipeTargetStatus(named: "host")?.buffered == 10 }
        host = try FakeHost(path: path)
        _ = try host!.accept()
        var order: [Int64] = []
        for _ in 0..<10 {
            let command = try #require(try host!.command())
            order.append(command.command["n"]?.int64Value ?? -1)
            try host!.answer(command.sagaID, command.step)
        }
        #expect(order == Array(0..<10))
        for id in ids { #expect(try rt.waitForSaga(id: id, timeoutMilliseconds: 10_000).state == .completed) }
        #expect((try rt.pipeTargetStatus(named: "host")?.connections ?? 0) == 2)
    }

    @Test func aCommandNobodyTakesExpiresOnceWithHostUnreachable() throws {
        let dir = TemporaryDirectory()
        let rt = try runtime(dir)
        defer { rt.close() }
        try rt.connectTarget(named: "host", path: dir.file("nobody.sock"),
                             options: PipeTargetOptions(bufferExpiry: .milliseconds(200), reconnect: fastReconnect))
        try rt.start()
        let failures = ConditionLock<[UInt64]>([])
        let subscription = try rt.subscribe { delivery in
            if case .event(let event) = delivery, event.type == Event.sagaFailed, let id = event.sagaID {
                failures.withLock { $0.append(id) }
            }
        }
        defer { rt.unsubscribe(subscription) }
        let id = try rt.startSaga(name: "script", input: ScriptSaga.input([("host", ["cmd": "A"], "Done")]))
        let end = try rt.waitForSaga(id: id, timeoutMilliseconds: 10_000)
        #expect(end.state == .failed)
        #expect(end.reason?.hasPrefix("action failed: host unreachable: target 'host' held step 0 for 0.2 s and no connection took it") == true,
                "\(end.reason ?? "")")
        usleep(400_000)
        #expect(failures.withLock { $0 } == [id])
        let status = try #require(try rt.pipeTargetStatus(named: "host"))
        #expect(status.expired == 1 && status.buffered == 0)
        #expect(status.lastError?.contains("cannot connect") == true)
    }

    @Test func aHostsBadFramesAreAnsweredAndTheConnectionStays() throws {
        let dir = TemporaryDirectory()
        let host = try FakeHost(path: dir.file("host.sock"))
        let rt = try runtime(dir)
        defer { rt.close() }
        try rt.connectTarget(named: "host", path: host.listener.path, options: PipeTargetOptions(reconnect: fastReconnect))
        try rt.start()
        _ = try host.accept()
        try host.connection!.send("this is not json")
        guard case .error("malformed_json", _, _) = try host.frame().message else { Issue.record("no error frame"); return }
        try host.connection!.send(WireFrame(id: 3, .sagaStart(saga: "script", input: .null, idempotencyKey: nil)).serialized)
        let refusal = try host.frame()
        #expect(refusal.id == 3)
        guard case .error("unexpected_type", _, _) = refusal.message else { Issue.record("not unexpected_type: \(refusal.serialized)"); return }
        try host.connection!.send(WireFrame(id: 4, .stepDone(sagaID: 77, step: 0, event: "E", payload: .null)).serialized)
        guard case .error("unknown_saga", _, _) = try host.frame().message else { Issue.record("not unknown_saga"); return }
        // Still the host's connection: a saga's command arrives on it.
        let id = try rt.startSaga(name: "script", input: ScriptSaga.input([("host", ["cmd": "A"], "Done")]))
        let command = try #require(try host.command())
        try host.connection!.send(WireFrame(id: 5, .stepDone(sagaID: id, step: command.step, event: "Done", payload: .null)).serialized)
        #expect(try host.frame() == WireFrame.ok(5))
        #expect(try rt.waitForSaga(id: id, timeoutMilliseconds: 10_000).state == .completed)
        #expect(try rt.pipeTargetStatus(named: "host")?.badFrames == 3)
    }

    @Test func namesAndPathsAreChecked() throws {
        let dir = TemporaryDirectory()
        let rt = try runtime(dir)
        defer { rt.close() }
        #expect(throws: SagaLaneError.self) { try rt.connectTarget(named: "a:b", path: dir.file("x.sock")) }
        #expect(throws: SagaLaneError.self) { try rt.connectTarget(named: "long", path: "/tmp/" + String(repeating: "p", count: 200)) }
        try rt.connectTarget(named: "host", path: dir.file("x.sock"))
        #expect(throws: SagaLaneError.self) { try rt.connectTarget(named: "host", path: dir.file("y.sock")) }
    }
}

/// Waits, polling, until `condition` holds (10 s at most).
private func eventually(sourceLocation: SourceLocation = #_sourceLocation, _ condition: () throws -> Bool) throws {
    let deadline = ContinuousClock.now + .seconds(10)
    while ContinuousClock.now < deadline {
        if try condition() { return }
        usleep(5000)
    }
    Issue.record("timed out", sourceLocation: sourceLocation)
}
