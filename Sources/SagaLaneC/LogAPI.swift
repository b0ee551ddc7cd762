import CSagaLane
import SagaLane

@implementation @_cdecl("sl_log_recent")
public func sl_log_recent(_ rt: OpaquePointer?, _ limit: Int32, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    call(rt, as: RuntimeHandle.self) { handle in
        guard limit >= 0 else { throw SagaLaneError(.invalidArgument, "limit is negative") }
        guard out != nil else { throw SagaLaneError(.invalidArgument, "json is NULL") }
        try handOut(try handle.open().recentSagas(limit: Int(limit)).serialized, to: out)
    }
}

@implementation @_cdecl("sl_log_unresolved_limit")
public func sl_log_unresolved_limit(_ rt: OpaquePointer?, _ limit: Int32, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    call(rt, as: RuntimeHandle.self) { handle in
        guard limit >= 0 else { throw SagaLaneError(.invalidArgument, "limit is negative") }
        guard out != nil else { throw SagaLaneError(.invalidArgument, "json is NULL") }
        try handOut(try handle.open().unresolvedSagas(limit: Int(limit)).serialized, to: out)
    }
}

@implementation @_cdecl("sl_log_unresolved")
public func sl_log_unresolved(_ rt: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    sl_log_unresolved_limit(rt, Int32(SL_LOG_UNRESOLVED_DEFAULT_LIMIT), out)
}

@implementation @_cdecl("sl_log_saga")
public func sl_log_saga(_ rt: OpaquePointer?, _ sagaID: UInt64, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    call(rt, as: RuntimeHandle.self) { handle in
        guard out != nil else { throw SagaLaneError(.invalidArgument, "json is NULL") }
        guard let saga = try handle.open().saga(id: sagaID) else {
            throw SagaLaneError(.notFound, "the log has no saga \(sagaID)")
        }
        try handOut(saga.serialized, to: out)
    }
}

@implementation @_cdecl("sl_log_jobs")
public func sl_log_jobs(_ rt: OpaquePointer?, _ lane: UnsafePointer<CChar>?, _ state: UnsafePointer<CChar>?, _ limit: Int32,
                        _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    call(rt, as: RuntimeHandle.self) { handle in
        guard limit >= 0 else { throw SagaLaneError(.invalidArgument, "limit is negative") }
        guard out != nil else { throw SagaLaneError(.invalidArgument, "json is NULL") }
        let lane = try optionalString(lane, "lane")
        var jobState: JobState?
        if let name = try optionalString(state, "state") {
            guard let known = JobState(rawValue: name) else { throw SagaLaneError(.invalidArgument, JobState.unknownNameMessage(name)) }
            jobState = known
        }
        try handOut(try handle.open().recentJobs(lane: lane, state: jobState, limit: Int(limit)).serialized, to: out)
    }
}

@implementation @_cdecl("sl_log_stats")
public func sl_log_stats(_ rt: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    call(rt, as: RuntimeHandle.self) { handle in
        guard out != nil else { throw SagaLaneError(.invalidArgument, "json is NULL") }
        try handOut(try handle.open().logStats().serialized, to: out)
    }
}

@implementation @_cdecl("sl_log_vacuum")
public func sl_log_vacuum(_ rt: OpaquePointer?, _ olderThanMs: UInt64, _ deleted: UnsafeMutablePointer<UInt64>?) -> Int32 {
    call(rt, as: RuntimeHandle.self) { handle in
        guard olderThanMs <= UInt64(Int64.max / 1_000_000) else { throw SagaLaneError(.invalidArgument, "older_than_ms is too large") }
        let count = try handle.open().vacuum(olderThan: .milliseconds(Int64(olderThanMs)))
        deleted?.pointee = UInt64(count)
    }
}
