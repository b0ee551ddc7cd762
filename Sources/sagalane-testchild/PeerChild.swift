import Glibc
import SagaLane

/// `foreign-peer UID SOCKET`: becomes user UID (the test runs as root), connects to an agent's
/// socket and at once sends `hello` and `ping`, then prints what happens, one line each:
/// "uid N", then "connect failed: REASON", or every frame the agent sends ("frame: TEXT") until
/// it closes the connection ("closed") or welcomes the peer (the welcome is the last line).
func runForeignPeer(_ arguments: [String]) -> Never {
    guard arguments.count == 2, let uid = UInt32(arguments[0]) else { childFail("foreign-peer takes UID SOCKET") }
    // Groups first: once the uid is dropped, the process may no longer change them.
    guard setgroups(0, nil) == 0, setgid(uid) == 0, setuid(uid) == 0, getuid() == uid, geteuid() == uid else {
        childFail("foreign-peer: cannot become uid \(uid): \(String(cString: strerror(errno)))")
    }
    say("uid \(getuid())")
    let socket: BlockingFrameSocket
    do { socket = try BlockingFrameSocket(path: arguments[1]) } catch {
        say("connect failed: \(error.message)")
        exit(0)
    }
    // Sent before anything is read back: the agent must not read any of it from a refused peer.
    _ = try? socket.send(#"{"type":"hello","id":1,"version":1,"name":"foreign"}"#)
    _ = try? socket.send(#"{"type":"ping","id":2}"#)
    while true {
        let frame: [UInt8]?
        do { frame = try socket.readFrame(timeoutMilliseconds: 10_000) } catch {
            say("read failed: \(error.message)")
            exit(0)
        }
        guard let frame else {
            say(socket.timedOut ? "timed out" : "closed")
            exit(0)
        }
        let text = String(decoding: frame, as: UTF8.self)
        say("frame: \(text)")
        if text.contains(#""type":"welcome""#) { exit(0) }
    }
}

private func say(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
}
