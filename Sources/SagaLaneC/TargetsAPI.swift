import CSagaLane
import Glibc
import SagaLane

// Pipe targets: a host process the runtime dials over a Unix socket.

@implementation @_cdecl("sl_target_connect_options_init")
public func sl_target_connect_options_init(_ options: UnsafeMutablePointer<sl_target_connect_options>?) {
    initialize(options, sl_target_connect_options())
}

/// `PipeTargetOptions` from the C options, 0 meaning each field's default.
private func pipeTargetOptions(_ pointer: UnsafePointer<sl_target_connect_options>?) throws(SagaLaneError) -> PipeTargetOptions {
    guard let pointer else { return PipeTargetOptions() }
    let c = try versioned(pointer, "sl_target_connect_options", defaults: sl_target_connect_options())
    let defaults = PipeTargetOptions()
    let minimum = milliseconds(c.reconnect_min_ms, or: defaults.reconnect.initialDelay)!
    let maximum = milliseconds(c.reconnect_max_ms, or: max(defaults.reconnect.maxDelay, minimum))!
    if maximum < minimum {
        throw SagaLaneError(.invalidArgument, "options.reconnect_max_ms (\(c.reconnect_max_ms)) is below reconnect_min_ms (\(c.reconnect_min_ms))")
    }
    if c.max_frame != 0 && c.max_frame < 64 {
        throw SagaLaneError(.invalidArgument, "options.max_frame is \(c.max_frame) bytes; a command frame needs at least 64")
    }
    return PipeTargetOptions(
        bufferExpiry: milliseconds(c.buffer_expiry_ms, or: defaults.bufferExpiry)!,
        maxBufferedCommands: c.max_buffered == 0 ? defaults.maxBufferedCommands : Int(c.max_buffered),
        reconnect: ReconnectPolicy(initialDelay: minimum, maxDelay: maximum),
        connection: PipeConnectionOptions(
            maxFrameSize: c.max_frame == 0 ? defaults.connection.maxFrameSize : Int(c.max_frame),
            maxQueuedBytes: c.max_queued_bytes == 0 ? defaults.connection.maxQueuedBytes : Int(c.max_queued_bytes)))
}

@implementation @_cdecl("sl_target_connect")
public func sl_target_connect(_ rt: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ path: UnsafePointer<CChar>?,
                              _ options: UnsafePointer<sl_target_connect_options>?) -> Int32 {
    callRuntime(rt) { runtime in
        try runtime.connectTarget(named: try nonEmpty(name, "name"), path: try string(path, "path"), options: try pipeTargetOptions(options))
    }
}

@implementation @_cdecl("sl_target_get_status")
public func sl_target_get_status(_ rt: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<sl_target_status>?) -> Int32 {
    callRuntime(rt) { runtime in
        let name = try string(name, "name")
        guard let status = try runtime.pipeTargetStatus(named: name) else {
            throw SagaLaneError(.notFound, "no pipe target named '\(name)'")
        }
        try handOut(sl_target_status(size: 0, connected: status.connected ? 1 : 0, buffered: UInt64(status.buffered),
                                     awaiting: UInt64(status.awaiting), sent: UInt64(status.sent), expired: UInt64(status.expired),
                                     purged: UInt64(status.purged), connections: UInt64(status.connections),
                                     bad_frames: UInt64(status.badFrames)), to: out, "sl_target_status")
    }
}
