import Glibc
import SagaLaneScriptSaga
import SagaLaneTestSupport
import Testing
@testable import SagaLane
@testable import SagaLaneAgent

/// An agent in this process, on a runtime with the `script` saga type, with its log and
/// socket in a temporary directory.
final class AgentFixture: @unchecked Sendable {
    let dir = TemporaryDirectory()
    let runtime: Runtime
    let agent: Agent
    let messages = ConditionLock<[String]>([])

    var socket: String { agent.options.resolvedSocketPath }

    init(sagaTimeout: Duration = .seconds(30), bufferExpiry: Duration = .seconds(30), reservation: Duration = .seconds(60),
         lanes: [(String, Int)] = [], maxFrameSize: Int = FrameDecoder.defaultMaxFrameSize,
         allowedUIDs: Set<UInt32> = [], directoryMode: mode_t? = nil) throws {
        if let directoryMode { chmod(dir.path, directoryMode) }
        let messages = self.messages
        let diagnostics = Diagnostics { _, text in messages.withLock { $0.append(text) } }
        runtime = try Runtime(options: RuntimeOptions(databasePath: dir.file("agent.db"), durability: .normal, diagnostics: diagnostics))
        try runtime.register(ScriptSaga.type(timeout: sagaTimeout))
        try runtime.start()
        var options = AgentOptions(dataDirectory: dir.path, bufferExpiry: bufferExpiry, reservation: reservation,
                                   lanes: lanes.map { (name: $0.0, maxConcurrent: $0.1) }, diagnostics: diagnostics)
        options.maxFrameSize = maxFrameSize
        options.allowedUIDs = allowedUIDs
        agent = Agent(runtime: runtime, options: options)
        try agent.start()
    }

    func stop() {
        let done = Completion<Bool>()
        agent.stop { done.set(true) }
        _ = done.wait()
        runtime.close()
    }

    /// A client that said hello.
    func client(_ name: String = "test") throws -> TestClient {
        let client = try TestClient(path: socket)
        let welcome = try client.request(.hello(version: WireVersion.current, name: name, targets: []))
        guard case .welcome = welcome.message else { throw ChildError(message: "no welcome: \(welcome)") }
        return client
    }

    func stats() throws -> JSON {
        let client = try self.client("stats")
        return try client.ok(.agentStats)["stats"] ?? .null
    }
}

/// A protocol client over a blocking socket: requests with ids, and a stash of the frames
/// that arrived meanwhile (commands, events, jobs).
final class TestClient {
    let socket: BlockingFrameSocket
    private var nextID: Int64 = 1
    private var stash: [WireFrame] = []

    init(path: String) throws {
        socket = try BlockingFrameSocket(path: path)
    }

    func close() { socket.close() }

    func send(_ frame: WireFrame) throws { try socket.send(frame.serialized) }

    /// The next frame from the agent, stashed ones first.
    func next(timeoutMilliseconds: Int = 10_000) throws -> WireFrame? {
        if !stash.isEmpty { return stash.removeFirst() }
        return try read(timeoutMilliseconds)
    }

    private func read(_ timeout: Int) throws -> WireFrame? {
        guard let bytes = try socket.readFrame(timeoutMilliseconds: timeout) else { return nil }
        return try bytes.withUnsafeBytes { raw -> WireFrame in try WireFrame.parse(raw) }
    }

    /// The next frame matching `match`; others are kept for later.
    func next(timeoutMilliseconds: Int = 10_000, where match: (WireFrame) -> Bool) throws -> WireFrame? {
        if let index = stash.firstIndex(where: match) { return stash.remove(at: index) }
        let deadline = ContinuousClock.now + .milliseconds(timeoutMilliseconds)
        while ContinuousClock.now < deadline {
            let left = Int((deadline - ContinuousClock.now) / .milliseconds(1)) + 1
            guard let frame = try read(left) else { return nil }
            if match(frame) { return frame }
            stash.append(frame)
        }
        return nil
    }

    /// Sends `message` with a fresh id and returns the reply to it.
    @discardableResult
    func request(_ message: WireMessage, timeoutMilliseconds: Int = 10_000) throws -> WireFrame {
        let id = JSON.int(nextID)
        nextID += 1
        try send(WireFrame(id: id, message))
        guard let reply = try next(timeoutMilliseconds: timeoutMilliseconds, where: { $0.id == id }) else {
            throw ChildError(message: "no reply to \(message.type)")
        }
        return reply
    }

    /// The fields of an `ok` reply to `message`; fails the test on an error reply.
    @discardableResult
    func ok(_ message: WireMessage, timeoutMilliseconds: Int = 10_000,
            sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: JSON] {
        let reply = try request(message, timeoutMilliseconds: timeoutMilliseconds)
        guard case .ok(let fields) = reply.message else {
            Issue.record("\(message.type) was answered \(reply.serialized)", sourceLocation: sourceLocation)
            throw ChildError(message: "not ok")
        }
        return fields
    }

    /// The error code of the reply to `message` (nil for an ok).
    func errorCode(_ message: WireMessage) throws -> String? {
        let reply = try request(message)
        if case .error(let code, _, _) = reply.message { return code }
        return nil
    }

    /// The next `command` frame.
    func command(timeoutMilliseconds: Int = 10_000) throws -> (target: String, sagaID: UInt64, step: UInt32, command: JSON)? {
        guard let frame = try next(timeoutMilliseconds: timeoutMilliseconds, where: {
            if case .command = $0.message { return true }
            return false
        }) else { return nil }
        guard case .command(let target, let sagaID, let step, let command) = frame.message else { return nil }
        return (target, sagaID, step, command)
    }

    /// Starts a `script` saga of one step per (target, command, expect) and returns its id.
    func startScript(_ steps: [(target: String, command: JSON, expect: String)]) throws -> UInt64 {
        let fields = try ok(.sagaStart(saga: "script", input: ScriptSaga.input(steps), idempotencyKey: nil))
        return UInt64(fields["saga_id"]?.int64Value ?? 0)
    }

    /// Waits for saga `id` to end: its state and reason.
    func waitSaga(_ id: UInt64, timeoutMilliseconds: Int = 10_000) throws -> (state: String, reason: String?) {
        let fields = try ok(.sagaWait(sagaID: id, timeoutMilliseconds: timeoutMilliseconds), timeoutMilliseconds: timeoutMilliseconds + 5000)
        return (fields["state"]?.stringValue ?? "?", fields["reason"]?.stringValue)
    }
}

/// Waits, polling, until `condition` holds (10 s at most).
func eventually(_ what: String, seconds: Double = 10, sourceLocation: SourceLocation = #_sourceLocation,
                _ condition: () throws -> Bool) throws {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if try condition() { return }
        usleep(5000)
    }
    Issue.record("timed out waiting for \(what)", sourceLocation: sourceLocation)
    throw ChildError(message: "timed out waiting for \(what)")
}
