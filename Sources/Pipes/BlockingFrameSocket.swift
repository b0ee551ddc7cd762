import Glibc
import SagaLaneSupport

/// A plain blocking Unix-socket client that reads and writes frames, without an event loop:
/// for command-line tools (`sagalane stats --socket`), tests and benchmarks that play a peer.
/// One thread at a time.
public final class BlockingFrameSocket {
    public let fd: Int32
    private var decoder: FrameDecoder
    private var ready: [[UInt8]] = []
    private var readyHead = 0
    private var closed = false

    /// Connects to the socket at `path`.
    /// - Throws: `.invalidArgument` (path), `.loop` with the system's reason.
    public init(path: String, maxFrameSize: Int = FrameDecoder.defaultMaxFrameSize) throws(SagaLaneError) {
        try checkSocketPath(path)
        let fd = try unixSocket()
        let rc = withUnixAddress(path) { connect(fd, $0, $1) }
        guard rc == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(fd)
            throw SagaLaneError(.loop, "cannot connect to \(path): \(reason)")
        }
        self.fd = fd
        decoder = FrameDecoder(maxFrameSize: maxFrameSize)
    }

    /// Takes over a connected socket (e.g. one a test's listening socket accepted).
    public init(fd: Int32, maxFrameSize: Int = FrameDecoder.defaultMaxFrameSize) {
        self.fd = fd
        decoder = FrameDecoder(maxFrameSize: maxFrameSize)
    }

    deinit { close() }

    public func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(fd)
    }

    /// Writes raw bytes (a frame and its newline, several frames, or deliberately broken
    /// input in tests).
    public func write(_ bytes: [UInt8]) throws(SagaLaneError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SagaLaneError(.closed, "write failed: \(String(cString: strerror(errno)))")
            }
            offset += n
        }
    }

    /// Writes `text` and a newline.
    public func send(_ text: String) throws(SagaLaneError) {
        try write(Array(text.utf8) + [10])
    }

    /// The next frame, waiting at most `timeoutMilliseconds` (negative: no limit).
    /// - Returns: `nil` at end of stream or on timeout (`timedOut` says which).
    public func readFrame(timeoutMilliseconds: Int = -1) throws(SagaLaneError) -> [UInt8]? {
        let deadline = timeoutMilliseconds < 0 ? nil : ContinuousClock.now + .milliseconds(timeoutMilliseconds)
        timedOut = false
        while true {
            if readyHead < ready.count {
                defer {
                    readyHead += 1
                    if readyHead == ready.count { ready.removeAll(keepingCapacity: true); readyHead = 0 }
                }
                return ready[readyHead]
            }
            var wait: Int32 = -1
            if let deadline {
                let left = deadline - ContinuousClock.now
                if left <= .zero { timedOut = true; return nil }
                wait = Int32(min(Int64(Int32.max), left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1))
            }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, wait)
            if ready < 0 {
                if errno == EINTR { continue }
                throw SagaLaneError(.loop, "poll failed: \(String(cString: strerror(errno)))")
            }
            if ready == 0 { continue }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == ECONNRESET { return nil }
                throw SagaLaneError(.loop, "read failed: \(String(cString: strerror(errno)))")
            }
            if n == 0 { return nil }
            var frames: [[UInt8]] = []
            let failure = chunk.withUnsafeBytes { bytes -> FramingError? in
                do throws(FramingError) {
                    try decoder.decode(UnsafeRawBufferPointer(rebasing: bytes[0..<n])) { frames.append(Array($0)); return true }
                    return nil
                } catch {
                    return error
                }
            }
            self.ready.append(contentsOf: frames)
            if let failure, frames.isEmpty {
                throw SagaLaneError(.invalidArgument, "the peer broke the framing: \(failure)", underlying: failure)
            }
        }
    }

    /// Whether the last `readFrame` returned `nil` because its time ran out.
    public private(set) var timedOut = false

    /// The next frame as text.
    public func readLine(timeoutMilliseconds: Int = -1) throws(SagaLaneError) -> String? {
        try readFrame(timeoutMilliseconds: timeoutMilliseconds).map { String(decoding: $0, as: UTF8.self) }
    }
}

/// A plain blocking listening Unix socket, for tests and tools that play a host a runtime
/// dials. One thread at a time.
public final class BlockingListener {
    public let path: String
    private var fd: Int32

    public init(path: String) throws(SagaLaneError) {
        try checkSocketPath(path)
        self.path = path
        unlink(path)
        fd = try unixSocket()
        let bound = withUnixAddress(path) { bind(fd, $0, $1) }
        guard bound == 0, listen(fd, 16) == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(fd)
            throw SagaLaneError(.loop, "cannot listen on \(path): \(reason)")
        }
    }

    deinit { close() }

    /// Stops listening and removes the socket file.
    public func close() {
        guard fd >= 0 else { return }
        Glibc.close(fd)
        fd = -1
        unlink(path)
    }

    /// The next connection, waiting at most `timeoutMilliseconds`; `nil` on timeout.
    public func accept(timeoutMilliseconds: Int32 = 10_000) throws(SagaLaneError) -> BlockingFrameSocket? {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, timeoutMilliseconds) > 0 else { return nil }
        let client = Glibc.accept(fd, nil, nil)
        guard client >= 0 else { throw SagaLaneError(.loop, "accept: \(String(cString: strerror(errno)))") }
        return BlockingFrameSocket(fd: client)
    }
}
