import CUV
import Glibc
import SagaLaneEventLoop
import SagaLaneSupport

/// How a pipe connection frames and queues.
public struct PipeConnectionOptions: Sendable {
    /// Bytes queued for writing, past which `send` refuses with `.again` unless forced, by
    /// default.
    public static let defaultMaxQueuedBytes = 8 << 20

    /// The largest frame read or written, newline excluded.
    public var maxFrameSize: Int
    /// Write back-pressure: `send` refuses a frame that would queue more than this many bytes
    /// (unless nothing is queued, or it is forced), and `onWritable` says when the queue has
    /// drained to half of it.
    public var maxQueuedBytes: Int

    public init(maxFrameSize: Int = FrameDecoder.defaultMaxFrameSize,
                maxQueuedBytes: Int = PipeConnectionOptions.defaultMaxQueuedBytes) {
        self.maxFrameSize = max(1, maxFrameSize)
        self.maxQueuedBytes = max(1, maxQueuedBytes)
    }
}

/// Why a connection closed.
public enum PipeCloseReason: Sendable, Equatable, CustomStringConvertible {
    /// `close()` or `closeWhenFlushed()` was called.
    case closedLocally
    /// The peer closed its end.
    case endOfStream
    case readFailed(Int32)
    case writeFailed(Int32)
    /// The peer broke the framing (a frame past the maximum).
    case framing(FramingError)
    /// The event loop shut down.
    case loopShutdown

    public var description: String {
        switch self {
        case .closedLocally: "closed"
        case .endOfStream: "the peer closed the connection"
        case .readFailed(let code): "read failed: \(String(cString: uv_strerror(code)))"
        case .writeFailed(let code): "write failed: \(String(cString: uv_strerror(code)))"
        case .framing(let error): "\(error)"
        case .loopShutdown: "the event loop shut down"
        }
    }
}

/// One Unix-domain-socket connection (a libuv `uv_pipe_t`) carrying newline-delimited
/// frames, both ways at once: any number of frames may be in flight in each direction.
///
/// **Writes** are queued and coalesced: frames sent while a write is in flight (or while a
/// read is being handled) go out together in the next one. The queue is bounded
/// (`maxQueuedBytes`): past it `send` refuses with `.again`, and `onWritable` fires once the
/// queue has drained to half, so a peer that does not read cannot make this process buffer
/// without limit.
///
/// **Reads** come in as whole frames (`onFrame`). A framing error (an oversized frame) closes
/// the connection, since the stream cannot be trusted past it.
///
/// Everything runs on the loop thread: create, call and receive callbacks there. The
/// connection keeps itself alive while open; `onClose` is called exactly once.
public final class PipeConnection: @unchecked Sendable {
    public let loop: EventLoop
    public let options: PipeConnectionOptions
    /// A process-unique number, for diagnostics.
    public let id: UInt64
    /// Who is at the other end (for accepted connections; a dialled one's is the server).
    public private(set) var peer: PeerCredentials?

    /// Each frame read, in order; the buffer is valid during the call only.
    public var onFrame: ((UnsafeRawBufferPointer) -> Void)?
    /// The write queue drained to half its bound after it went past the bound (a `send` was
    /// refused, or forced past it).
    public var onWritable: (() -> Void)?
    /// Called once, after the handle closed (unsent frames' completions were called first).
    public var onClose: ((PipeCloseReason) -> Void)?
    /// A frame passed the maximum: the frame to write to the peer (an error naming the
    /// problem) before the connection closes, or `nil` to close at once. Nothing more is
    /// read either way.
    public var onFramingError: ((FramingError) -> [UInt8]?)?

    private enum State { case open, draining, closing, closed }

    private let handle: UnsafeMutablePointer<uv_pipe_t>
    private let writeRequest: UnsafeMutablePointer<uv_write_t>
    private let shutdownRequest: UnsafeMutablePointer<uv_shutdown_t>
    private let readBuffer: UnsafeMutableRawPointer
    private static let readBufferSize = 64 * 1024
    private var decoder: FrameDecoder
    private var state = State.open
    private var reason: PipeCloseReason?
    private var reading = false
    private var readPaused = false
    private var writing = false
    /// While > 0 (a read being handled, or `batch`), sends queue without writing.
    private var corked = 0
    private var pending = ByteBuffer()
    private var inFlight = ByteBuffer()
    private var pendingCompletions: [(Bool) -> Void] = []
    private var inFlightCompletions: [(Bool) -> Void] = []
    /// A send was refused: `onWritable` is owed.
    private var refused = false
    private var shutdownHook: UInt64?

    /// Frames read and written, bytes written.
    public private(set) var framesRead = 0
    public private(set) var framesWritten = 0

    /// Wraps an initialized, connected `uv_pipe_t` (this takes ownership of its memory).
    init(loop: EventLoop, handle: UnsafeMutablePointer<uv_pipe_t>, options: PipeConnectionOptions) {
        self.loop = loop
        self.options = options
        self.handle = handle
        id = ConnectionIDs.next()
        decoder = FrameDecoder(maxFrameSize: options.maxFrameSize)
        writeRequest = .allocate(capacity: 1)
        shutdownRequest = .allocate(capacity: 1)
        readBuffer = .allocate(byteCount: Self.readBufferSize, alignment: 16)
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
        var fd: uv_os_fd_t = -1
        if uv_fileno(asHandle(handle), &fd) == 0 { peer = PeerCredentials.of(fd: fd) }
        shutdownHook = loop.addShutdownHook { [unowned self] in close(reason: .loopShutdown) }
        if shutdownHook == nil { close(reason: .loopShutdown) }
    }

    deinit {
        pending.free()
        inFlight.free()
        writeRequest.deallocate()
        shutdownRequest.deallocate()
        readBuffer.deallocate()
    }

    private static func owner(_ handle: UnsafeMutableRawPointer) -> PipeConnection {
        let data = handle.assumingMemoryBound(to: uv_handle_t.self).pointee.data!
        return Unmanaged<PipeConnection>.fromOpaque(data).takeUnretainedValue()
    }

    /// Whether frames can still be sent.
    public var isOpen: Bool { state == .open }

    /// Bytes queued and not yet written.
    public var queuedBytes: Int { pending.count + inFlight.count }

    /// Whether a frame of `size` bytes would be accepted without forcing.
    public func canSend(_ size: Int = 0) -> Bool {
        state == .open && (queuedBytes == 0 || queuedBytes + size + 1 <= options.maxQueuedBytes)
    }

    // MARK: Reading

    /// Starts (or resumes) reading. Call once the callbacks are set.
    public func startReading() {
        loop.preconditionInEventLoop()
        readPaused = false
        guard state == .open, !reading else { return }
        let rc = uv_read_start(asStream(handle), { handle, _, buf in
            let connection = PipeConnection.owner(UnsafeMutableRawPointer(handle!))
            buf!.pointee = uv_buf_init(connection.readBuffer.assumingMemoryBound(to: CChar.self), UInt32(PipeConnection.readBufferSize))
        }, { stream, nread, _ in
            PipeConnection.owner(UnsafeMutableRawPointer(stream!)).didRead(nread)
        })
        if rc != 0 { return close(reason: .readFailed(rc)) }
        reading = true
    }

    /// Stops reading until `startReading()` (after the frames of the chunk being handled, if
    /// called from `onFrame`): the peer's frames wait in the kernel, and once its buffer fills,
    /// the peer's writes block. For read back-pressure.
    public func pauseReading() {
        loop.preconditionInEventLoop()
        readPaused = true
        stopReading()
    }

    public var isReadingPaused: Bool { readPaused }

    private func stopReading() {
        if reading {
            uv_read_stop(asStream(handle))
            reading = false
        }
    }

    private func didRead(_ nread: Int) {
        if nread == 0 { return }
        if nread < 0 {
            stopReading()
            if Int32(nread) == UV_EOF.rawValue {
                // The peer may have only shut its writing side: what was queued for it still
                // goes out before the connection closes.
                return finish(.endOfStream)
            }
            return close(reason: .readFailed(Int32(nread)))
        }
        corked += 1
        do {
            try decoder.decode(UnsafeRawBufferPointer(start: readBuffer, count: nread)) { frame in
                framesRead += 1
                onFrame?(frame)
                // A pause takes effect after this chunk: its frames were read already, and
                // dropping them would lose them.
                return state == .open
            }
        } catch {
            corked -= 1
            guard let answer = onFramingError?(error), !answer.isEmpty, answer.count <= options.maxFrameSize,
                  !answer.contains(10), state == .open else {
                return close(reason: .framing(error))
            }
            answer.withUnsafeBytes { pending.append($0) }
            pending.append(byte: 10)
            framesWritten += 1
            return finish(.framing(error))
        }
        corked -= 1
        if corked == 0 { flush() }
    }

    // MARK: Writing

    /// Queues `frame` (a newline is added) for writing.
    /// - Parameters:
    ///   - force: Queue it even past `maxQueuedBytes` (for replies whose requests were already
    ///     read: reading is what the caller pauses instead).
    ///   - completion: Called once with `true` when the frame was written to the socket, or
    ///     `false` when the connection closed first (the peer never got it).
    /// - Throws: `.again` past the queue's bound (then `onWritable` follows), `.closed`,
    ///   `.invalidArgument` for a frame that holds a newline or is larger than the maximum.
    public func send(_ frame: UnsafeRawBufferPointer, force: Bool = false,
                     completion: ((Bool) -> Void)? = nil) throws(SagaLaneError) {
        loop.preconditionInEventLoop()
        guard state == .open else { throw SagaLaneError(.closed, "the connection is closed") }
        try FrameEncoder.check(frame, maxFrameSize: options.maxFrameSize)
        if !canSend(frame.count) {
            // Past the bound, forced or not, `onWritable` is owed once the queue drains.
            refused = true
            if !force {
                throw SagaLaneError(.again, "\(queuedBytes) bytes are queued for the peer already (the bound is \(options.maxQueuedBytes))")
            }
        }
        pending.append(frame)
        pending.append(byte: 10)
        framesWritten += 1
        if let completion { pendingCompletions.append(completion) }
        if corked == 0 { flush() }
    }

    /// Sends the UTF-8 of `text` as a frame (see `send(_:force:completion:)`).
    public func send(_ text: String, force: Bool = false, completion: ((Bool) -> Void)? = nil) throws(SagaLaneError) {
        var text = text
        let result = text.withUTF8 { bytes -> Result<Void, SagaLaneError> in
            do throws(SagaLaneError) {
                try send(UnsafeRawBufferPointer(bytes), force: force, completion: completion)
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        try result.get()
    }

    /// Runs `body`, writing what it sends in one go afterwards.
    public func batch<T>(_ body: () throws -> T) rethrows -> T {
        corked += 1
        defer {
            corked -= 1
            if corked == 0 { flush() }
        }
        return try body()
    }

    private func flush() {
        guard !writing, !pending.isEmpty, state == .open || state == .draining else {
            if state == .draining && !writing && pending.isEmpty { shutDownWriting() }
            return
        }
        swap(&pending, &inFlight)
        swap(&pendingCompletions, &inFlightCompletions)
        var buffer = uv_buf_init(inFlight.base!.assumingMemoryBound(to: CChar.self), UInt32(inFlight.count))
        writeRequest.pointee.data = handle.pointee.data
        let rc = uv_write(writeRequest, asStream(handle), &buffer, 1) { request, status in
            let connection = Unmanaged<PipeConnection>.fromOpaque(request!.pointee.data!).takeUnretainedValue()
            connection.didWrite(status)
        }
        if rc != 0 {
            // Nothing of it was written: both queues fail when the handle closes.
            swap(&pending, &inFlight)
            swap(&pendingCompletions, &inFlightCompletions)
            pending.append(inFlight.bytes)
            inFlight.removeAll()
            pendingCompletions = inFlightCompletions + pendingCompletions
            inFlightCompletions = []
            return close(reason: .writeFailed(rc))
        }
        writing = true
    }

    private func didWrite(_ status: Int32) {
        writing = false
        let completions = inFlightCompletions
        inFlightCompletions = []
        inFlight.removeAll()
        for completion in completions { completion(status == 0) }
        if status != 0 {
            if status != UV_ECANCELED.rawValue { close(reason: .writeFailed(status)) }
            return
        }
        flush()
        if refused && state == .open && queuedBytes <= options.maxQueuedBytes / 2 {
            refused = false
            onWritable?()
        }
    }

    // MARK: Closing

    /// Stops reading, lets the queued frames go out, shuts the writing side down, then
    /// closes. Nothing more can be sent.
    public func closeWhenFlushed() {
        loop.preconditionInEventLoop()
        finish(.closedLocally)
    }

    private func finish(_ why: PipeCloseReason) {
        guard state == .open else { return }
        state = .draining
        reason = why
        stopReading()
        if !writing && pending.isEmpty { shutDownWriting() } else { flush() }
    }

    private func shutDownWriting() {
        guard state == .draining else { return }
        state = .closing
        shutdownRequest.pointee.data = handle.pointee.data
        let rc = uv_shutdown(shutdownRequest, asStream(handle)) { request, _ in
            let connection = Unmanaged<PipeConnection>.fromOpaque(request!.pointee.data!).takeUnretainedValue()
            connection.state = .draining
            connection.close(reason: connection.reason ?? .closedLocally)
        }
        if rc != 0 {
            state = .draining
            close(reason: reason ?? .closedLocally)
        }
    }

    /// Closes at once: frames not yet written are dropped (their completions get `false`).
    public func close() {
        loop.preconditionInEventLoop()
        close(reason: .closedLocally)
    }

    private func close(reason why: PipeCloseReason) {
        guard state == .open || state == .draining else { return }
        state = .closing
        // The first cause is the one reported (a drain's, when a drain was under way).
        if reason == nil { reason = why }
        stopReading()
        if let shutdownHook {
            loop.removeShutdownHook(shutdownHook)
            self.shutdownHook = nil
        }
        uv_close(asHandle(handle)) { handle in
            let raw = UnsafeMutableRawPointer(handle!)
            let connection = Unmanaged<PipeConnection>.fromOpaque(handle!.pointee.data!).takeRetainedValue()
            connection.didClose()
            raw.deallocate()
        }
    }

    private func didClose() {
        state = .closed
        // The write in flight was cancelled before this (libuv calls its callback first).
        let unsent = pendingCompletions
        pendingCompletions = []
        pending.removeAll()
        for completion in unsent { completion(false) }
        let onClose = self.onClose
        self.onClose = nil
        onFrame = nil
        onWritable = nil
        onFramingError = nil
        onClose?(reason ?? .closedLocally)
    }
}

extension PipeConnection {
    /// Dials the Unix socket at `path` on `loop`; `completion` gets the connection (not yet
    /// reading) or the error. Loop thread.
    public static func connect(loop: EventLoop, path: String, options: PipeConnectionOptions = PipeConnectionOptions(),
                               completion: @escaping (Result<PipeConnection, SagaLaneError>) -> Void) {
        loop.preconditionInEventLoop()
        do throws(SagaLaneError) { try checkSocketPath(path) } catch { return completion(.failure(error)) }
        BrokenPipeSignal.guardCurrentThread()
        let handle = UnsafeMutablePointer<uv_pipe_t>.allocate(capacity: 1)
        let rc = uv_pipe_init(loop.uvLoopPointer, handle, 0)
        guard rc == 0 else {
            handle.deallocate()
            return completion(.failure(.uv(rc, "uv_pipe_init")))
        }
        let attempt = ConnectAttempt(loop: loop, path: path, handle: handle, options: options, completion: completion)
        attempt.start()
    }
}

/// One `uv_pipe_connect` in progress, kept alive by its request until its callback.
private final class ConnectAttempt {
    let loop: EventLoop
    let path: String
    let handle: UnsafeMutablePointer<uv_pipe_t>
    let options: PipeConnectionOptions
    let completion: (Result<PipeConnection, SagaLaneError>) -> Void
    let request = UnsafeMutablePointer<uv_connect_t>.allocate(capacity: 1)
    var hook: UInt64?
    var abandoned = false

    init(loop: EventLoop, path: String, handle: UnsafeMutablePointer<uv_pipe_t>, options: PipeConnectionOptions,
         completion: @escaping (Result<PipeConnection, SagaLaneError>) -> Void) {
        self.loop = loop
        self.path = path
        self.handle = handle
        self.options = options
        self.completion = completion
    }

    deinit { request.deallocate() }

    func start() {
        request.pointee.data = Unmanaged.passRetained(self).toOpaque()
        hook = loop.addShutdownHook { [unowned self] in abandon() }
        uv_pipe_connect(request, handle, path) { request, status in
            let attempt = Unmanaged<ConnectAttempt>.fromOpaque(request!.pointee.data!).takeRetainedValue()
            attempt.finished(status)
        }
        if hook == nil { abandon() }
    }

    /// The loop is shutting down: close the handle; the connect callback then reports it.
    private func abandon() {
        hook = nil
        guard !abandoned else { return }
        abandoned = true
        uv_close(asHandle(handle)) { $0.map { UnsafeMutableRawPointer($0).deallocate() } }
    }

    private func finished(_ status: Int32) {
        if let hook { loop.removeShutdownHook(hook) }
        if abandoned {
            return completion(.failure(SagaLaneError(.closed, "the event loop shut down while connecting to \(path)")))
        }
        guard status == 0 else {
            uv_close(asHandle(handle)) { $0.map { UnsafeMutableRawPointer($0).deallocate() } }
            return completion(.failure(.uv(status, "cannot connect to \(path)")))
        }
        completion(.success(PipeConnection(loop: loop, handle: handle, options: options)))
    }
}
