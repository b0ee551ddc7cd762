import CSagaLane
import SagaLane

/// A diagnostics call: checks `out` and `limit`, and hands out the JSON `body` reads.
private func logCall(_ rt: OpaquePointer?, limit: Int32 = 0, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
                     _ body: (Runtime) throws -> JSON) -> Int32 {
    callRuntime(rt) { runtime in
        guard limit >= 0 else { throw SagaLaneError(.invalidArgument, "limit is negative") }
        guard out != nil else { throw SagaLaneError(.invalidArgument, "json is NULL") }
        try handOut(try body(runtime).serialized, to: out)
    }
}

@implementation @_cdecl("sl_log_recent")
public func sl_log_recent(_ rt: OpaquePointer?, _ limit: Int32, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    logCall(rt, limit: limit, out) { try $0.recentSagas(limit: Int(limit)) }
}

@implementation @_cdecl("sl_log_unresolved_limit")
public func sl_log_unresolved_limit(_ rt: OpaquePointer?, _ limit: Int32, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    logCall(rt, limit: limit, out) { try $0.unresolvedSagas(limit: Int(limit)) }
}

@implementation @_cdecl("sl_log_unresolved")
public func sl_log_unresolved(_ rt: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    sl_log_unresolved_limit(rt, Int32(SL_LOG_UNRESOLVED_DEFAULT_LIMIT), out)
}

@implementation @_cdecl("sl_log_saga")
public func sl_log_saga(_ rt: OpaquePointer?, _ sagaID: UInt64, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    logCall(rt, out) { runtime in
        guard let saga = try runtime.saga(id: sagaID) else { throw SagaLaneError(.notFound, "the log has no saga \(sagaID)") }
        return saga
    }
}

@implementation @_cdecl("sl_log_jobs")
public func sl_log_jobs(_ rt: OpaquePointer?, _ lane: UnsafePointer<CChar>?, _ state: UnsafePointer<CChar>?, _ limit: Int32,
                        _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    logCall(rt, limit: limit, out) { runtime in
        let name = try optionalString(state, "state")
        let jobState = name.flatMap(JobState.init(rawValue:))
        if let name, jobState == nil { throw SagaLaneError(.invalidArgument, JobState.unknownNameMessage(name)) }
        return try runtime.recentJobs(lane: try optionalString(lane, "lane"), state: jobState, limit: Int(limit))
    }
}

@implementation @_cdecl("sl_log_stats")
public func sl_log_stats(_ rt: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    logCall(rt, out) { try $0.logStats() }
}

@implementation @_cdecl("sl_log_vacuum")
public func sl_log_vacuum(_ rt: OpaquePointer?, _ olderThanMs: UInt64, _ deleted: UnsafeMutablePointer<UInt64>?) -> Int32 {
    callRuntime(rt) { runtime in
        guard olderThanMs <= UInt64(Int64.max / 1_000_000) else { throw SagaLaneError(.invalidArgument, "older_than_ms is too large") }
        // Not `deleted?.pointee = try …`: optional chaining would skip the vacuum for NULL.
        let count = try runtime.vacuum(olderThan: .milliseconds(Int64(olderThanMs)))
        deleted?.pointee = UInt64(count)
    }
}
