import CUV
import Glibc
import SagaLaneEventLoop
import SagaLaneSupport

extension SagaLaneError {
    /// `.loop`, saying which libuv call failed and why, with the libuv code underneath.
    static func uv(_ code: Int32, _ what: String) -> SagaLaneError {
        SagaLaneError(.loop, "\(what): \(String(cString: uv_strerror(code)))", underlying: LibUVError(code: code))
    }
}

/// The longest path a Unix-domain socket address holds (`sun_path` less its terminating NUL).
/// libuv would cut a longer one short silently and bind or dial another file.
public let maxSocketPathBytes = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

func checkSocketPath(_ path: String) throws(SagaLaneError) {
    if path.isEmpty { throw SagaLaneError(.invalidArgument, "the socket path is empty") }
    if path.utf8.count > maxSocketPathBytes {
        throw SagaLaneError(.invalidArgument, "the socket path '\(path)' is \(path.utf8.count) bytes long; a Unix socket path holds at most \(maxSocketPathBytes)")
    }
    if path.utf8.contains(0) { throw SagaLaneError(.invalidArgument, "the socket path holds a NUL byte") }
}

/// A new Unix-domain stream socket's descriptor.
func unixSocket() throws(SagaLaneError) -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw SagaLaneError(.loop, "socket: \(String(cString: strerror(errno)))") }
    return fd
}

/// Calls `body` (`connect` or `bind`) with the address of the socket at `path` (checked by
/// `checkSocketPath`).
func withUnixAddress(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        _ = path.utf8CString.withUnsafeBytes { memcpy(raw.baseAddress!, $0.baseAddress!, min($0.count, raw.count - 1)) }
    }
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
}

/// Who is at the other end of a Unix-domain socket, as the kernel says (`SO_PEERCRED`).
public struct PeerCredentials: Sendable, Equatable, CustomStringConvertible {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32

    /// The credentials of the peer of socket `fd`, or `nil` when the kernel gives none.
    public static func of(fd: Int32) -> PeerCredentials? {
        // struct ucred (pid, uid, gid), which Glibc hides from Swift behind _GNU_SOURCE.
        var raw: (Int32, UInt32, UInt32) = (0, 0, 0)
        var length = socklen_t(MemoryLayout.size(ofValue: raw))
        let rc = withUnsafeMutablePointer(to: &raw) { getsockopt(fd, SOL_SOCKET, SO_PEERCRED, $0, &length) }
        guard rc == 0, length == socklen_t(MemoryLayout.size(ofValue: raw)) else { return nil }
        return PeerCredentials(pid: raw.0, uid: raw.1, gid: raw.2)
    }

    public var description: String { "pid \(pid), uid \(uid)" }
}

/// Writing to a socket whose peer went away raises SIGPIPE, which kills a process that keeps
/// the default disposition: a host must never die because a pipe peer did.
enum BrokenPipeSignal {
    /// On one of sagalane's own threads (the loop's), SIGPIPE is blocked: the write then
    /// fails with EPIPE and the signal stays pending on that thread, harmlessly. On a host's
    /// thread (a loop the host runs), whose mask is the host's business, the process ignores
    /// SIGPIPE instead, unless the host installed a handler of its own.
    static func guardCurrentThread() {
        if OSThread.isSagalaneThread {
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, SIGPIPE)
            pthread_sigmask(SIG_BLOCK, &set, nil)
        } else {
            var current = sigaction()
            sigaction(SIGPIPE, nil, &current)
            if current.__sigaction_handler.sa_handler == nil {
                signal(SIGPIPE, SIG_IGN)
            }
        }
    }
}

/// Casts between libuv's handle types, all of which start with `uv_handle_t`'s fields.
@inline(__always)
func asHandle<T>(_ pointer: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<uv_handle_t> {
    UnsafeMutableRawPointer(pointer).assumingMemoryBound(to: uv_handle_t.self)
}

@inline(__always)
func asStream<T>(_ pointer: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<uv_stream_t> {
    UnsafeMutableRawPointer(pointer).assumingMemoryBound(to: uv_stream_t.self)
}

/// A source of connection ids for diagnostics, unique in the process.
enum ConnectionIDs {
    private static let counter = ConditionLock<UInt64>(0)
    static func next() -> UInt64 { counter.withLock { $0 += 1; return $0 } }
}
