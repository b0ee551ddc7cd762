import CUV
import Glibc
import SagaLaneEventLoop
import SagaLaneSupport

/// Who may connect to a listener, besides the kernel's file permissions on the socket.
public struct PeerPolicy: Sendable {
    /// The user ids whose processes are accepted.
    public var allowedUIDs: Set<UInt32>

    /// Only processes of the calling process's own user.
    public static var sameUser: PeerPolicy { PeerPolicy(allowedUIDs: [getuid()]) }

    public init(allowedUIDs: Set<UInt32>) {
        self.allowedUIDs = allowedUIDs
    }

    public func allows(_ peer: PeerCredentials?) -> Bool {
        guard let peer else { return false }
        return allowedUIDs.contains(peer.uid)
    }
}

/// A listening Unix-domain socket (a libuv `uv_pipe_t` in listen mode) that checks each peer.
///
/// The socket file is created with `mode` (0600 by default: only the owner may connect) before
/// it listens, so no connection is accepted under looser permissions. Each accepted peer's
/// credentials are read from the kernel (`SO_PEERCRED`); a peer the policy does not allow is
/// sent `refusal` (if given) and closed without anything it sent being read.
///
/// A stale socket file left by a process that died is replaced; one another process still
/// listens on is an error, as is a path that is not a socket. The file is removed on `close`.
/// Loop thread only.
public final class PipeListener: @unchecked Sendable {
    public let loop: EventLoop
    public let path: String
    public let policy: PeerPolicy
    public let connectionOptions: PipeConnectionOptions

    /// A peer that was accepted: set the connection's callbacks and start its reading.
    public var onAccept: ((PipeConnection) -> Void)?
    /// A peer that was refused, and why (not allowed, or an accept that failed).
    public var onRefuse: ((PeerCredentials?, String) -> Void)?
    /// Sent to a refused peer before it is closed.
    public var refusal: (PeerCredentials?) -> [UInt8]? = { _ in nil }

    private let handle: UnsafeMutablePointer<uv_pipe_t>
    private var listening = false
    private var closed = false
    private var shutdownHook: UInt64?
    /// The socket file's identity, so `close` removes it only if it is still ours.
    private var inode: (dev: UInt, ino: UInt)?

    public private(set) var accepted = 0
    public private(set) var refused = 0

    /// Creates the socket at `path` with `mode` and starts listening.
    /// - Throws: `.invalidArgument` (path too long), `.exists` (another process listens
    ///   there, or the path is not a socket), `.loop` (bind, chmod or listen failed).
    public init(loop: EventLoop, path: String, mode: mode_t = 0o600, policy: PeerPolicy = .sameUser,
                connectionOptions: PipeConnectionOptions = PipeConnectionOptions()) throws(SagaLaneError) {
        loop.preconditionInEventLoop()
        try checkSocketPath(path)
        self.loop = loop
        self.path = path
        self.policy = policy
        self.connectionOptions = connectionOptions
        BrokenPipeSignal.guardCurrentThread()
        try PipeListener.clearStaleSocket(at: path)
        handle = .allocate(capacity: 1)
        var rc = uv_pipe_init(loop.uvLoopPointer, handle, 0)
        guard rc == 0 else {
            handle.deallocate()
            throw .uv(rc, "uv_pipe_init")
        }
        handle.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        rc = uv_pipe_bind(handle, path)
        if rc == 0, chmod(path, mode) != 0 { rc = -errno }
        if rc == 0 {
            var info = stat()
            if stat(path, &info) == 0 { inode = (UInt(info.st_dev), UInt(info.st_ino)) }
            rc = uv_listen(asStream(handle), 128) { server, status in
                let listener = Unmanaged<PipeListener>.fromOpaque(server!.pointee.data!).takeUnretainedValue()
                listener.incoming(status)
            }
        }
        guard rc == 0 else {
            if inode != nil { unlink(path) }
            uv_close(asHandle(handle)) { $0.map { UnsafeMutableRawPointer($0).deallocate() } }
            throw .uv(rc, "cannot listen on \(path)")
        }
        listening = true
        // Until closed, the handle refers to this listener, which the loop's shutdown closes.
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
        shutdownHook = loop.addShutdownHook { [unowned self] in close() }
        if shutdownHook == nil { close() }
    }

    /// Removes a socket file nobody listens on; refuses to touch anything else.
    private static func clearStaleSocket(at path: String) throws(SagaLaneError) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw SagaLaneError(.exists, "\(path) exists and is not a socket")
        }
        let fd = try unixSocket()
        defer { Glibc.close(fd) }
        let rc = withUnixAddress(path) { connect(fd, $0, $1) }
        if rc == 0 {
            throw SagaLaneError(.exists, "another process listens on \(path)")
        }
        if errno == ECONNREFUSED {
            unlink(path)
        } else {
            throw SagaLaneError(.exists, "\(path) is a socket that cannot be checked: \(String(cString: strerror(errno)))")
        }
    }

    private func incoming(_ status: Int32) {
        guard !closed else { return }
        if status != 0 {
            refused += 1
            onRefuse?(nil, "accept failed: \(String(cString: uv_strerror(status)))")
            return
        }
        let client = UnsafeMutablePointer<uv_pipe_t>.allocate(capacity: 1)
        uv_pipe_init(loop.uvLoopPointer, client, 0)
        let rc = uv_accept(asStream(handle), asStream(client))
        guard rc == 0 else {
            uv_close(asHandle(client)) { $0.map { UnsafeMutableRawPointer($0).deallocate() } }
            refused += 1
            onRefuse?(nil, "accept failed: \(String(cString: uv_strerror(rc)))")
            return
        }
        var fd: uv_os_fd_t = -1
        uv_fileno(asHandle(client), &fd)
        let peer = PeerCredentials.of(fd: fd)
        guard policy.allows(peer) else {
            refused += 1
            if let bytes = refusal(peer), !bytes.isEmpty {
                // Best effort and non-blocking: a short frame fits the socket's buffer, and
                // nothing from the peer is ever read.
                _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
            }
            uv_close(asHandle(client)) { $0.map { UnsafeMutableRawPointer($0).deallocate() } }
            let why = peer.map { "uid \($0.uid) is not allowed (pid \($0.pid))" } ?? "the kernel gave no peer credentials"
            onRefuse?(peer, why)
            return
        }
        accepted += 1
        let connection = PipeConnection(loop: loop, handle: client, options: connectionOptions)
        if let onAccept { onAccept(connection) } else { connection.close() }
    }

    /// Stops listening and removes the socket file (if it is still the one this created).
    /// Connections already accepted stay open. Idempotent.
    public func close() {
        guard !closed else { return }
        closed = true
        if let shutdownHook { loop.removeShutdownHook(shutdownHook) }
        shutdownHook = nil
        if let inode {
            var info = stat()
            if stat(path, &info) == 0, UInt(info.st_dev) == inode.dev, UInt(info.st_ino) == inode.ino { unlink(path) }
        }
        if listening {
            uv_close(asHandle(handle)) { handle in
                let raw = UnsafeMutableRawPointer(handle!)
                Unmanaged<PipeListener>.fromOpaque(handle!.pointee.data!).release()
                raw.deallocate()
            }
        }
        onAccept = nil
        onRefuse = nil
    }

    public var isListening: Bool { !closed }
}
