import CSQLite
import Glibc
import SagaLane
import SagaLaneAgent
import SagaLaneScriptSaga

// MARK: The peer process

/// `agent-peer MODE SOCKET N [WINDOW]`: the other process of the agent benchmarks.
///   raw      reads command frames, answers each with a fixed answer, parsing nothing
///   protocol reads frames, parses each as a message, answers with a serialized step.done
///   host     a host of the agent: registers "host", starts N two-step script sagas (WINDOW in
///            flight), answers their commands, and prints its rate once all N completed
func runAgentPeer(_ arguments: [String]) -> Never {
    guard arguments.count >= 3, let n = Int(arguments[2]) else { peerFail("agent-peer takes MODE SOCKET N [WINDOW]") }
    let socket: BlockingFrameSocket
    do { socket = try BlockingFrameSocket(path: arguments[1]) } catch { peerFail("connect: \(error.message)") }
    switch arguments[0] {
    case "raw", "protocol":
        echo(socket.fd, frames: n, parse: arguments[0] == "protocol")
    case "host":
        host(socket.fd, sagas: n, window: arguments.count > 3 ? Int(arguments[3]) ?? 256 : 256)
    default:
        peerFail("unknown mode \(arguments[0])")
    }
    exit(0)
}

private func peerFail(_ message: String) -> Never {
    writeStandardError("sagalane-bench agent-peer: \(message)\n")
    exit(2)
}

func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
        if n < 0 {
            if errno == EINTR { continue }
            peerFail("write: \(String(cString: strerror(errno)))")
        }
        offset += n
    }
}

/// A blocking socket's frames, a chunk at a time.
private struct FrameReader {
    let fd: Int32
    private var decoder = FrameDecoder()
    private var chunk = [UInt8](repeating: 0, count: 1 << 16)

    init(_ fd: Int32) { self.fd = fd }

    /// Reads one chunk and hands each whole frame in it to `body`; fails the peer when the
    /// stream ends (saying `what` was under way) or a frame is bad.
    mutating func next(_ what: @autoclosure () -> String, _ body: (UnsafeRawBufferPointer) -> Void) {
        var got = 0
        repeat {
            got = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        } while got < 0 && errno == EINTR
        guard got > 0 else { peerFail("the stream ended: \(what())") }
        let count = got
        var decoder = self.decoder
        let result = chunk.withUnsafeBytes { bytes -> Result<Void, FramingError> in
            do throws(FramingError) {
                try decoder.decode(UnsafeRawBufferPointer(rebasing: bytes[0..<count])) { body($0); return true }
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        self.decoder = decoder
        if case .failure(let error) = result { peerFail("\(error)") }
    }
}

/// Reads frames and answers every one, each chunk's answers in one write.
private func echo(_ fd: Int32, frames n: Int, parse: Bool) {
    let fixed = Array(answerFrame(sagaID: 1, step: 0).utf8) + [10]
    var reader = FrameReader(fd)
    var out: [UInt8] = []
    out.reserveCapacity(1 << 18)
    var seen = 0
    while seen < n {
        reader.next("\(seen) of \(n) frames seen") { frame in
            seen += 1
            if parse {
                guard let message = try? WireFrame.parse(frame), case .command(_, let sagaID, let step, _) = message.message else {
                    peerFail("not a command: \(String(decoding: frame, as: UTF8.self))")
                }
                out.append(contentsOf: answerFrame(sagaID: sagaID, step: step).utf8)
                out.append(10)
            } else {
                out.append(contentsOf: fixed)
            }
        }
        writeAll(fd, out)
        out.removeAll(keepingCapacity: true)
    }
}

/// A host process: starts script sagas through the agent and answers their commands.
private func host(_ fd: Int32, sagas n: Int, window: Int) {
    func frame(_ message: WireMessage, id: Int64? = nil) -> [UInt8] {
        Array(WireFrame(id: id.map { .int($0) }, message).serialized.utf8) + [10]
    }
    let input = ScriptSaga.input([("host", ["op": "a"], "A"), ("host", ["op": "b"], "B")])
    var out = frame(.hello(version: WireVersion.current, name: "bench host", targets: ["host"]), id: 1)
        + frame(.subscribe(events: .types(["SagaCompleted", "SagaFailed"]), after: nil), id: 2)
    writeAll(fd, out)
    out.removeAll()
    var reader = FrameReader(fd)
    var started = 0, completed = 0, failed = 0
    var ready = false
    var begin = ContinuousClock.now
    while completed + failed < n {
        if ready {
            while started < n && started - completed - failed < window {
                out += frame(.sagaStart(saga: "script", input: input, idempotencyKey: nil))
                started += 1
            }
            if !out.isEmpty { writeAll(fd, out); out.removeAll(keepingCapacity: true) }
        }
        reader.next("the agent closed the connection") { bytes in
            guard let message = try? WireFrame.parse(bytes) else { peerFail("not a message") }
            switch message.message {
            case .command(_, let sagaID, let step, let command):
                let event = command["op"] == "a" ? "A" : "B"
                out += frame(.stepDone(sagaID: sagaID, step: step, event: event, payload: .null))
            case .event(let type, _, _, _):
                if type == "SagaCompleted" { completed += 1 } else { failed += 1 }
            case .ok:
                if message.id == .int(2) {
                    ready = true
                    begin = ContinuousClock.now
                }
            case .error(let code, let text, _):
                peerFail("the agent refused: \(code): \(text)")
            case .lagged(let missed):
                peerFail("the subscription missed \(missed) events")
            default:
                break
            }
        }
        if !out.isEmpty { writeAll(fd, out); out.removeAll(keepingCapacity: true) }
    }
    let seconds = Double((ContinuousClock.now - begin) / .microseconds(1)) / 1e6
    print("\(Double(n) / seconds) \(failed)")
}
