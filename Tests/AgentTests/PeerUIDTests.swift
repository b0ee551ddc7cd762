import Glibc
import SagaLaneTestSupport
import Testing
@testable import SagaLane
@testable import SagaLaneAgent

/// An unprivileged user id for the peer: `nobody` on Debian.
private let otherUID: UInt32 = 65534

/// A peer process of user `otherUID` (the test child drops root, then connects and sends
/// hello and ping at once): the lines it prints.
private func foreignPeer(_ socket: String) throws -> [String] {
    let child = try ChildProcess(ChildProcess.testChildPath, ["foreign-peer", "\(otherUID)", socket])
    var lines: [String] = []
    while let line = child.readLine() { lines.append(line) }
    #expect(child.waitExitStatus() == 0, "\(lines)")
    #expect(lines.first == "uid \(otherUID)", "the peer really is another user: \(lines)")
    return Array(lines.dropFirst())
}

private func mode(_ path: String) -> mode_t {
    var info = stat()
    return stat(path, &info) == 0 ? info.st_mode & 0o777 : 0
}

/// Refused peers are checked by the kernel's word on who they are (SO_PEERCRED), so these
/// tests need a second user: they run as root, which can become one.
@Suite(.serialized, .timeLimit(.minutes(2)), .enabled(if: getuid() == 0, "needs root to run a peer as another user"))
struct PeerUIDTests {
    @Test func aPeerOfAnotherUserIsRefusedBeforeAnythingItSentIsRead() throws {
        // The directory is searchable by all, so only the socket's own mode and the uid check
        // stand in the peer's way.
        let fixture = try AgentFixture(directoryMode: 0o711)
        defer { fixture.stop() }
        #expect(mode(fixture.socket) == 0o600)
        // Mode 0600: the kernel refuses the other user's connect outright.
        let denied = try foreignPeer(fixture.socket)
        #expect(denied.count == 1 && denied[0].hasPrefix("connect failed:") && denied[0].contains("Permission denied"), "\(denied)")
        // Loosened by hand, the socket lets the peer connect, and the uid check refuses it:
        // one error frame, then the connection closes; its hello and ping were never read.
        chmod(fixture.socket, 0o666)
        let refused = try foreignPeer(fixture.socket)
        #expect(refused.count == 2, "\(refused)")
        #expect(refused.first?.contains(#""code":"peer_refused""#) == true, "\(refused)")
        #expect(refused.first?.contains("uid \(otherUID) may not use this agent") == true, "\(refused)")
        #expect(refused.last == "closed")
        let stats = try fixture.stats()
        #expect(stats["connections_refused"] == 1)
        #expect(stats["errors"]?["peer_refused"] == 1)
        // This stats client's hello and agent.stats are the only frames the agent read.
        #expect(stats["frames_read"] == 2, "\(stats.serialized)")
        #expect(fixture.messages.withLock { $0.contains { $0.contains("refused a connection") && $0.contains("uid \(otherUID)") } })
    }

    @Test func allowingAnotherUserLetsThatUserInAndNoOneElse() throws {
        let allowed = try AgentFixture(allowedUIDs: [otherUID], directoryMode: 0o711)
        defer { allowed.stop() }
        #expect(mode(allowed.socket) == 0o666, "reachable by the users it allows")
        let welcomed = try foreignPeer(allowed.socket)
        #expect(welcomed.count == 1 && welcomed[0].contains(#""type":"welcome""#), "\(welcomed)")
        let stats = try allowed.stats()
        #expect(stats["connections_refused"] == 0)
        #expect(stats["connections_accepted"] == 2)

        // Another user allowed, not this one: the socket is open to all, the uid check is not.
        let others = try AgentFixture(allowedUIDs: [otherUID - 1], directoryMode: 0o711)
        defer { others.stop() }
        #expect(mode(others.socket) == 0o666)
        let refused = try foreignPeer(others.socket)
        #expect(refused.count == 2 && refused[0].contains(#""code":"peer_refused""#) && refused[1] == "closed", "\(refused)")
        #expect(try others.stats()["connections_refused"] == 1)
    }
}
