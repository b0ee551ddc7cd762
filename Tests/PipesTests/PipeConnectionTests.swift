import Glibc
import SagaLaneEventLoop
import SagaLaneSupport
import SagaLaneTestSupport
import Testing
@testable import SagaLanePipes

/// State the loop thread keeps for a test; the test thread reads it through `onLoop`.
final class LoopState<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}

/// A loop on its own thread, for tests of handles on it.
final class TestLoop: @unchecked Sendable {
    let loop: EventLoop

    init() throws {
        loop = try EventLoop()
        try loop.startThread()
    }

    /// Runs `body` on the loop and returns its result.
    func run<T>(_ body: @escaping () throws -> T) throws -> T {
        let slot = LoopState<Result<T, any Error>?>(nil)
        let done = Completion<Bool>()
        nonisolated(unsafe) let body = body
        loop.execute {
            do { slot.value = .success(try body()) } catch { slot.value = .failure(error) }
            done.set(true)
        }
        _ = done.wait()
        return try slot.value!.get()
    }

    /// Waits until `condition` (checked on the loop) holds, for up to `seconds`.
    func wait(seconds: Double = 10, _ what: String = "", _ condition: @escaping () -> Bool) throws {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline {
            if try run(condition) { return }
            usleep(2000)
        }
        Issue.record("timed out waiting for \(what)")
        throw ChildError(message: "timed out waiting for \(what)")
    }

    func shutdown() { loop.shutdown() }
}

@Suite(.serialized, .timeLimit(.minutes(2)))
struct PipeConnectionTests {
    @Test func framesGoBothWaysPipelinedAndInOrder() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("s.sock")
        let test = try TestLoop()
        defer { test.shutdown() }
        let serverGot = LoopState<[String]>([])
        let clientGot = LoopState<[String]>([])
        let client = LoopState<PipeConnection?>(nil)
        let listener = try test.run {
            let listener = try PipeListener(loop: test.loop, path: path)
            listener.onAccept = { connection in
                connection.onFrame = { frame in
                    let text = String(decoding: frame, as: UTF8.self)
                    serverGot.value.append(text)
                    try? connection.send("re:" + text)
                }
                connection.startReading()
            }
            return listener
        }
        try test.run {
            PipeConnection.connect(loop: test.loop, path: path) { result in
                guard case .success(let connection) = result else { return }
                client.value = connection
                connection.onFrame = { clientGot.value.append(String(decoding: $0, as: UTF8.self)) }
                connection.startReading()
                // All of them at once: none waits for an answer before the next goes.
                for i in 0..<20_000 { try? connection.send("{\"n\":\(i)}") }
            }
        }
        try test.wait(seconds: 30, "20000 replies") { clientGot.value.count == 20_000 }
        let (server, replies) = try test.run { (serverGot.value, clientGot.value) }
        #expect(server == (0..<20_000).map { "{\"n\":\($0)}" })
        #expect(replies == (0..<20_000).map { "re:{\"n\":\($0)}" })
        try test.run { client.value?.close(); listener.close() }
    }

    @Test func aPeerThatDoesNotReadMeetsBackPressure() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("s.sock")
        let test = try TestLoop()
        defer { test.shutdown() }
        let accepted = LoopState<PipeConnection?>(nil)
        let received = LoopState(0)
        let refusedAt = LoopState<Int?>(nil)
        let writable = LoopState(false)
        let listener = try test.run {
            let listener = try PipeListener(loop: test.loop, path: path)
            listener.onAccept = { connection in
                accepted.value = connection
                connection.onFrame = { _ in received.value += 1 }
                // It does not read: what the client sends piles up.
            }
            return listener
        }
        let options = PipeConnectionOptions(maxQueuedBytes: 64 * 1024)
        let frame = String(repeating: "x", count: 1000)
        let client = LoopState<PipeConnection?>(nil)
        try test.run {
            PipeConnection.connect(loop: test.loop, path: path, options: options) { result in
                guard case .success(let connection) = result else { return }
                client.value = connection
                connection.onWritable = { writable.value = true }
            }
        }
        try test.wait("connected") { client.value != nil && accepted.value != nil }
        // Send until refused, again and again: the first refusals pass as the kernel takes the
        // queue; once the kernel's buffers are full, a refusal stays (no onWritable).
        var stuck = false
        for _ in 0..<200 where !stuck {
            try test.run {
                writable.value = false
                guard let connection = client.value else { return }
                for sent in 0..<1000 {
                    do { try connection.send(frame) } catch {
                        #expect((error as? SagaLaneError)?.code == .again)
                        refusedAt.value = sent
                        return
                    }
                }
            }
            usleep(100_000)
            stuck = try test.run { !writable.value && refusedAt.value != nil }
        }
        #expect(stuck, "a peer that does not read ends up refusing sends")
        #expect(try test.run { client.value!.queuedBytes <= 64 * 1024 + 1001 }, "the queue stays within its bound")
        try test.run { accepted.value?.startReading() }
        try test.wait("onWritable once the peer reads") { writable.value }
        try test.run { client.value?.close(); accepted.value?.close(); listener.close() }
    }

    @Test func anOversizedFrameClosesThatConnectionOnly() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("s.sock")
        let test = try TestLoop()
        defer { test.shutdown() }
        let reasons = LoopState<[UInt64: PipeCloseReason]>([:])
        let got = LoopState<[UInt64: Int]>([:])
        let listener = try test.run {
            let listener = try PipeListener(loop: test.loop, path: path,
                                            connectionOptions: PipeConnectionOptions(maxFrameSize: 100))
            listener.onAccept = { connection in
                connection.onFrame = { _ in got.value[connection.id, default: 0] += 1 }
                connection.onClose = { reasons.value[connection.id] = $0 }
                connection.startReading()
            }
            return listener
        }
        let bad = try BlockingFrameSocket(path: path)
        let good = try BlockingFrameSocket(path: path)
        try good.send("fine")
        try bad.send("fine")
        try bad.write(Array(repeating: 65, count: 5000))
        #expect(try bad.readFrame(timeoutMilliseconds: 5000) == nil, "the server closed it")
        try good.send("still fine")
        try test.wait("the good connection's second frame") { got.value.values.contains(2) }
        try test.wait("the bad connection's close") { reasons.value.count == 1 }
        let reason = try test.run { reasons.value.values.first }
        guard case .framing(let error)? = reason else {
            Issue.record("closed for \(String(describing: reason))")
            return
        }
        #expect(error.maxFrameSize == 100)
        try test.run { listener.close() }
    }

    @Test func anOversizedFrameCanBeAnsweredBeforeTheConnectionCloses() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("s.sock")
        let test = try TestLoop()
        defer { test.shutdown() }
        let reasons = LoopState<[PipeCloseReason]>([])
        let listener = try test.run {
            let listener = try PipeListener(loop: test.loop, path: path,
                                            connectionOptions: PipeConnectionOptions(maxFrameSize: 100))
            listener.onAccept = { connection in
                connection.onFrame = { _ in try? connection.send("ok") }
                connection.onFramingError = { error in Array("too large: \(error.maxFrameSize)".utf8) }
                connection.onClose = { reasons.value.append($0) }
                connection.startReading()
            }
            return listener
        }
        let peer = try BlockingFrameSocket(path: path)
        try peer.send("fine")
        // The peer goes on writing past the maximum: the answer still reaches it, then the end.
        try peer.write(Array(repeating: 65, count: 5000))
        #expect(try peer.readLine(timeoutMilliseconds: 5000) == "ok")
        #expect(try peer.readLine(timeoutMilliseconds: 5000) == "too large: 100")
        #expect(try peer.readFrame(timeoutMilliseconds: 5000) == nil && !peer.timedOut, "then the server closed it")
        try test.wait("the close") { reasons.value.count == 1 }
        guard case .framing? = try test.run({ reasons.value.first }) else {
            Issue.record("closed for \(try test.run { reasons.value })")
            return
        }
        try test.run { listener.close() }
    }

    @Test func theSocketIsCreatedOwnerOnlyAndStaleOnesAreReplaced() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("s.sock")
        let test = try TestLoop()
        defer { test.shutdown() }
        let first = try test.run { try PipeListener(loop: test.loop, path: path) }
        var info = stat()
        #expect(stat(path, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
        // A second listener on a live socket is refused, and the first keeps working.
        #expect(throws: SagaLaneError.self) { try test.run { try PipeListener(loop: test.loop, path: path) } }
        _ = try BlockingFrameSocket(path: path)
        try test.run { first.close() }
        #expect(access(path, F_OK) != 0, "close removes the socket file")
        // A socket file nobody listens on (a crashed agent's) is replaced.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            _ = path.utf8CString.withUnsafeBytes { memcpy(raw.baseAddress!, $0.baseAddress!, $0.count) }
        }
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        close(fd)
        #expect(access(path, F_OK) == 0)
        let second = try test.run { try PipeListener(loop: test.loop, path: path) }
        _ = try BlockingFrameSocket(path: path)
        try test.run { second.close() }
        // Not a socket: left alone.
        let file = dir.file("plain")
        close(open(file, O_CREAT | O_WRONLY, 0o644))
        #expect(throws: SagaLaneError.self) { try test.run { try PipeListener(loop: test.loop, path: file) } }
        #expect(access(file, F_OK) == 0)
        unlink(file)
    }

    @Test func aPathTooLongForASocketIsRefusedNotCutShort() throws {
        let test = try TestLoop()
        defer { test.shutdown() }
        let long = "/tmp/" + String(repeating: "d", count: 200) + ".sock"
        #expect(throws: SagaLaneError.self) { try test.run { try PipeListener(loop: test.loop, path: long) } }
        #expect(throws: SagaLaneError.self) { try BlockingFrameSocket(path: long) }
    }

    @Test func aPeerThePolicyRefusesIsClosedUnreadWithItsRefusal() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("s.sock")
        let test = try TestLoop()
        defer { test.shutdown() }
        let refused = LoopState<[String]>([])
        let accepted = LoopState(0)
        let listener = try test.run {
            // Nobody's uid: the test's own process is refused as another user's would be.
            let listener = try PipeListener(loop: test.loop, path: path, policy: PeerPolicy(allowedUIDs: [4_000_000_000]))
            listener.onAccept = { _ in accepted.value += 1 }
            listener.onRefuse = { peer, why in refused.value.append("\(peer?.uid ?? 999):\(why)") }
            listener.refusal = { _ in Array("{\"type\":\"error\",\"code\":\"peer_refused\"}\n".utf8) }
            return listener
        }
        let client = try BlockingFrameSocket(path: path)
        try? client.send("{\"type\":\"hello\",\"version\":1}")
        #expect(try client.readLine(timeoutMilliseconds: 5000) == "{\"type\":\"error\",\"code\":\"peer_refused\"}")
        #expect(try client.readFrame(timeoutMilliseconds: 5000) == nil, "then the connection closes")
        try test.wait("the refusal") { refused.value.count == 1 }
        #expect(try test.run { refused.value[0].hasPrefix("\(getuid()):uid \(getuid()) is not allowed") })
        #expect(try test.run { accepted.value } == 0)
        try test.run { listener.close() }
    }

    @Test func theDialerKeepsTryingWithBackOffAndReconnects() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("s.sock")
        let test = try TestLoop()
        defer { test.shutdown() }
        let failures = LoopState<[Duration]>([])
        let connected = LoopState(0)
        let dialer = try test.run {
            let dialer = PipeDialer(loop: test.loop, path: path,
                                    policy: ReconnectPolicy(initialDelay: .milliseconds(10), maxDelay: .milliseconds(80), jitter: 0))
            dialer.onConnect = { connection in
                connected.value += 1
                connection.startReading()
            }
            dialer.onDisconnect = { _, retryIn in failures.value.append(retryIn) }
            dialer.start()
            return dialer
        }
        // Nothing listens yet: the waits grow, up to the ceiling.
        try test.wait("five failed attempts") { failures.value.count >= 5 }
        let waits = try test.run { Array(failures.value.prefix(5)) }
        #expect(waits == [.milliseconds(10), .milliseconds(20), .milliseconds(40), .milliseconds(80), .milliseconds(80)])
        let server = LoopState<PipeConnection?>(nil)
        let listener = try test.run {
            let listener = try PipeListener(loop: test.loop, path: path)
            listener.onAccept = { connection in
                server.value = connection
                connection.startReading()
            }
            return listener
        }
        try test.wait("the dialer connects") { connected.value == 1 && server.value != nil }
        // The server drops it: the dialer dials again, after the first back-off.
        try test.run { server.value?.close(); server.value = nil }
        try test.wait("the dialer reconnects") { connected.value == 2 && server.value != nil }
        try test.run { dialer.stop(); listener.close() }
    }

    @Test func aLoopShutdownClosesEveryHandle() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("s.sock")
        let test = try TestLoop()
        let reasons = LoopState<[PipeCloseReason]>([])
        let accepted = LoopState(0)
        _ = try test.run {
            let listener = try PipeListener(loop: test.loop, path: path)
            listener.onAccept = { connection in
                accepted.value += 1
                connection.onClose = { reasons.value.append($0) }
                connection.startReading()
            }
            return listener
        }
        let clients = try (0..<3).map { _ in try BlockingFrameSocket(path: path) }
        try test.wait("three connections") { accepted.value == 3 }
        test.shutdown()
        #expect(reasons.value.count == 3)
        #expect(reasons.value.allSatisfy { $0 == .loopShutdown })
        for client in clients { #expect(try client.readFrame(timeoutMilliseconds: 2000) == nil) }
        #expect(access(path, F_OK) != 0)
    }
}
