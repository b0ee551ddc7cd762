import CSagaLane
import Glibc
import SagaLane

// Pipe targets: a host process the runtime dials over a Unix socket.

@implementation @_cdecl("sl_target_connect_options_init")
public func sl_target_connect_options_init(_ options: UnsafeMutablePointer<sl_target_connect_options>?) {
    guard let options else { return }
    options.pointee = sl_target_connect_options()
    options.pointee.size = MemoryLayout<sl_target_connect_options>.size
}

/// `PipeTargetOptions` from the C options, 0 meaning each field's default.
private func pipeTargetOptions(_ pointer: UnsafePointer<sl_target_connect_options>?) throws(SagaLaneError) -> PipeTargetOptions {
    guard let pointer else { return PipeTargetOptions() }
    let c = try versioned(pointer, "sl_target_connect_options", defaults: sl_target_connect_options())
    let defaults = PipeTargetOptions()
    let minimum = c.reconnect_min_ms == 0 ? defaults.reconnect.initialDelay : .milliseconds(Int64(c.reconnect_min_ms))
    let maximum = c.reconnect_max_ms == 0 ? max(defaults.reconnect.maxDelay, minimum) : .milliseconds(Int64(c.reconnect_max_ms))
    if maximum < minimum {
        throw SagaLaneError(.invalidArgument, "options.reconnect_max_ms (\(c.reconnect_max_ms)) is below reconnect_min_ms (\(c.reconnect_min_ms))")
    }
    if c.max_frame != 0 && c.max_frame < 64 {
        throw SagaLaneError(.invalidArgument, "options.max_frame is \(c.max_frame) bytes; a command frame needs at least 64")
    }
    return PipeTargetOptions(
        bufferExpiry: c.buffer_expiry_ms == 0 ? defaults.bufferExpiry : .milliseconds(Int64(c.buffer_expiry_ms)),
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
        let name = try string(name, "name")
        guard !name.isEmpty else { throw SagaLaneError(.invalidArgument, "name is empty") }
        try runtime.connectTarget(named: name, path: try string(path, "path"), options: try pipeTargetOptions(options))
    }
}

@implementation @_cdecl("sl_target_get_status")
public func sl_target_get_status(_ rt: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<sl_target_status>?) -> Int32 {
    callRuntime(rt) { runtime in
        let name = try string(name, "name")
        guard let out else { throw SagaLaneError(.invalidArgument, "out is NULL") }
        let size = try structSize(out.pointee.size, "sl_target_status")
        guard let status = try runtime.pipeTargetStatus(named: name) else {
            throw SagaLaneError(.notFound, "no pipe target named '\(name)'")
        }
        var c = sl_target_status()
        c.size = size
        c.connected = status.connected ? 1 : 0
        c.buffered = UInt64(status.buffered)
        c.awaiting = UInt64(status.awaiting)
        c.sent = UInt64(status.sent)
        c.expired = UInt64(status.expired)
        c.purged = UInt64(status.purged)
        c.connections = UInt64(status.connections)
        c.bad_frames = UInt64(status.badFrames)
        withUnsafeBytes(of: &c) { source in
            UnsafeMutableRawPointer(out).copyMemory(from: source.baseAddress!, byteCount: min(size, source.count))
        }
    }
}
