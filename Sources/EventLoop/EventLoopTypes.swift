import CUV
import SagaLaneSupport

// The values an event loop's callers name: its clock, how it runs, and libuv's errors.

/// A libuv error code (a negative errno), kept under the `SagaLaneError` that reports it.
public struct LibUVError: Error, Sendable, CustomStringConvertible {
    public var code: Int32
    public init(code: Int32) { self.code = code }
    public var description: String { String(cString: uv_strerror(code)) }
}

extension SagaLaneError {
    /// `.loop`, saying which libuv call failed and why.
    static func loop(_ code: Int32, _ what: String) -> SagaLaneError {
        SagaLaneError(.loop, "\(what): \(String(cString: uv_strerror(code)))", underlying: LibUVError(code: code))
    }
}

/// Where an event loop's time comes from.
public enum EventLoopClock: Sendable {
    /// The monotonic system clock.
    case system
    /// Time that moves only when `advance(by:)` is called, so tests of deadlines and back-off
    /// run instantly and deterministically.
    case manual
}

/// How `EventLoop.run(_:)` runs the loop (libuv's `uv_run_mode`).
public enum EventLoopRunMode: Sendable {
    /// Until `shutdown()`.
    case `default`
    /// Wait for and process one round of events.
    case once
    /// Process what is ready, without waiting.
    case noWait
}
