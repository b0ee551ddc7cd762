import Glibc
import SagaLaneSupport

/// What went wrong with the bytes of a stream, as opposed to what a frame says.
public struct FramingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The frame in progress passed the maximum before its newline came.
    public var frameBytes: Int
    public var maxFrameSize: Int

    public var description: String {
        "frame too large: more than \(maxFrameSize) bytes without a newline (at least \(frameBytes) so far)"
    }
}

/// Splits a byte stream into newline-delimited frames of at most `maxFrameSize` bytes.
///
/// Knows nothing of what a frame holds (JSON, for the agent's protocol) nor where the bytes
/// come from, so it can be tested and fuzzed alone. A frame is the bytes before a `"\n"`,
/// without a `"\r"` just before it; empty frames (blank lines) are skipped.
///
/// Memory stays bounded whatever the peer sends: a frame that grows past the maximum fails
/// the decoder as soon as its bytes arrive, never once its newline does. After a failure every
/// call throws the same error: a stream whose framing is lost cannot be resynchronized
/// reliably (the rest of the oversized frame could hold a newline-free fragment that looks
/// like a frame), so the connection must close.
public struct FrameDecoder: Sendable {
    /// The maximum frame size unless a decoder is given another: 1 MiB.
    public static let defaultMaxFrameSize = 1 << 20

    public let maxFrameSize: Int
    /// The start of a frame whose newline has not arrived yet.
    private var partial: [UInt8] = []
    private var failure: FramingError?

    /// - Parameter maxFrameSize: At least 1 byte.
    public init(maxFrameSize: Int = FrameDecoder.defaultMaxFrameSize) {
        self.maxFrameSize = max(1, maxFrameSize)
    }

    /// Bytes held for a frame still incomplete.
    public var bufferedBytes: Int { partial.count }

    /// Whether the decoder failed (and every later `decode` throws).
    public var hasFailed: Bool { failure != nil }

    /// Feeds `chunk` and calls `frame` with each frame it completes, in order. The buffer given
    /// to `frame` is valid only during that call. `frame` returns `false` to stop: the rest of
    /// the chunk is dropped (the caller is closing the stream).
    /// - Throws: `FramingError` once a frame passes the maximum; the frames before it in the
    ///   chunk were delivered.
    public mutating func decode(_ chunk: UnsafeRawBufferPointer,
                                _ frame: (UnsafeRawBufferPointer) -> Bool) throws(FramingError) {
        if let failure { throw failure }
        guard let base = chunk.baseAddress, chunk.count > 0 else { return }
        var offset = 0
        let end = chunk.count
        if !partial.isEmpty {
            let newline = Self.find(base + offset, end - offset)
            guard let newline else {
                try hold(base, from: offset, to: end)
                return
            }
            if partial.count + newline > maxFrameSize { throw fail(partial.count + newline) }
            partial.append(contentsOf: UnsafeRawBufferPointer(start: base + offset, count: newline))
            offset += newline + 1
            let keepGoing = partial.withUnsafeBytes { emit($0, frame) }
            partial.removeAll(keepingCapacity: partial.capacity <= 64 * 1024)
            if !keepGoing { return }
        }
        while offset < end {
            guard let newline = Self.find(base + offset, end - offset) else {
                try hold(base, from: offset, to: end)
                return
            }
            if newline > maxFrameSize { throw fail(newline) }
            let keepGoing = emit(UnsafeRawBufferPointer(start: base + offset, count: newline), frame)
            offset += newline + 1
            if !keepGoing { return }
        }
    }

    /// Feeds bytes from an array (for tests and tools).
    public mutating func decode(_ bytes: [UInt8]) throws(FramingError) -> [[UInt8]] {
        var frames: [[UInt8]] = []
        var copy = self
        let result = bytes.withUnsafeBytes { chunk -> Result<Void, FramingError> in
            do throws(FramingError) {
                try copy.decode(chunk) { frames.append(Array($0)); return true }
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        self = copy
        try result.get()
        return frames
    }

    private mutating func hold(_ base: UnsafeRawPointer, from offset: Int, to end: Int) throws(FramingError) {
        let count = end - offset
        if partial.count + count > maxFrameSize { throw fail(partial.count + count) }
        partial.append(contentsOf: UnsafeRawBufferPointer(start: base + offset, count: count))
    }

    private mutating func fail(_ bytes: Int) -> FramingError {
        let error = FramingError(frameBytes: bytes, maxFrameSize: maxFrameSize)
        failure = error
        partial = []
        return error
    }

    private func emit(_ bytes: UnsafeRawBufferPointer, _ frame: (UnsafeRawBufferPointer) -> Bool) -> Bool {
        var count = bytes.count
        if count > 0 && bytes[count - 1] == 13 { count -= 1 }
        if count == 0 { return true }
        return frame(UnsafeRawBufferPointer(start: bytes.baseAddress, count: count))
    }

    /// The offset of the first newline in the `count` bytes at `start`.
    private static func find(_ start: UnsafeRawPointer, _ count: Int) -> Int? {
        guard let found = memchr(start, 10, count) else { return nil }
        return UnsafeRawPointer(found) - start
    }
}

/// Writing frames: the frame's bytes and a newline, after checking that it is one frame.
public enum FrameEncoder {
    /// Appends `frame` and its newline to `buffer`.
    /// - Throws: `.invalidArgument` when the frame holds a newline (it would read as two) or
    ///   is larger than `maxFrameSize` (the peer would refuse it).
    public static func append(_ frame: UnsafeRawBufferPointer, maxFrameSize: Int = FrameDecoder.defaultMaxFrameSize,
                              to buffer: inout [UInt8]) throws(SagaLaneError) {
        try check(frame, maxFrameSize: maxFrameSize)
        buffer.append(contentsOf: frame)
        buffer.append(10)
    }

    /// Checks that `frame` can be sent as one frame.
    public static func check(_ frame: UnsafeRawBufferPointer, maxFrameSize: Int) throws(SagaLaneError) {
        if frame.count > maxFrameSize {
            throw SagaLaneError(.invalidArgument, "a frame of \(frame.count) bytes is larger than the maximum of \(maxFrameSize)")
        }
        if let base = frame.baseAddress, memchr(base, 10, frame.count) != nil {
            throw SagaLaneError(.invalidArgument, "a frame cannot hold a newline")
        }
    }
}
