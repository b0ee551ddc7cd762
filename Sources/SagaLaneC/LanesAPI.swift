import CSagaLane
import Glibc
import SagaLane
import Synchronization

/// What `sl_lane *` points to (registered under the lane's own address, so `sl_lane_find`
/// finds it through the runtime's one registry of lanes).
typealias LaneHandle = ChildHandle<Lane>

extension ChildHandle where Object == Lane {
    var lane: Lane { object }
}

/// A host's command handler; its userdata is released when the last reference goes.
private final class CommandHandler: Sendable {
    let fn: sl_job_fn
    let userdata: UserData
    private let release: Release

    init(fn: sl_job_fn, userdata: UserData, release: Release) {
        self.fn = fn
        self.userdata = userdata
        self.release = release
    }

    deinit { release() }
}

/// What `sl_job_ctx *` points to while a host job runs.
private final class JobContextBox {
    let context: LaneJobContext
    let id: UnsafeMutablePointer<CChar>
    /// The metadata, with a NUL after it so a command's JSON reads as a C string.
    let metadata: UnsafeMutableRawBufferPointer
    var result: String?

    init(context: LaneJobContext, metadata: [UInt8]) {
        self.context = context
        id = strdup(context.jobID)
        self.metadata = .allocate(byteCount: metadata.count + 1, alignment: 16)
        self.metadata.copyBytes(from: metadata)
        self.metadata[metadata.count] = 0
    }

    deinit {
        free(id)
        metadata.deallocate()
    }

    var handle: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }

    static func from(_ pointer: OpaquePointer?) -> JobContextBox? {
        pointer.map { Unmanaged<JobContextBox>.fromOpaque(UnsafeRawPointer($0)).takeUnretainedValue() }
    }
}

/// A host job's failure, with the text it set.
private struct HostJobFailure: Error, CustomStringConvertible {
    let description: String
}

/// Runs a host job function on the calling worker thread.
private func runHostJob(_ run: sl_job_fn, _ userdata: UserData, _ context: LaneJobContext, metadata: [UInt8]) throws -> String {
    let box = JobContextBox(context: context, metadata: metadata)
    let rc = withExtendedLifetime(box) { run(userdata.pointer, box.handle) }
    if rc == 0 { return box.result ?? "" }
    if rc == Int32(SL_ECANCELED) { throw LaneJobCancelled() }
    throw HostJobFailure(description: box.result ?? "the job returned \(rc) (\(String(cString: sl_err_name(rc))))")
}

/// Calls a host's done callback with a job's end.
private func report(_ completion: LaneJobCompletion, to done: sl_job_done_fn, _ userdata: UserData) {
    let (state, text): (Int, String)
    switch completion.outcome {
    case .finished(let result): (state, text) = (SL_JOB_FINISHED, result)
    case .failed(let error): (state, text) = (SL_JOB_FAILED, error)
    case .cancelled: (state, text) = (SL_JOB_CANCELLED, "")
    }
    completion.jobID.withCString { id in
        text.withCString { text in
            var c = sl_job_outcome(job_id: id, state: Int32(state), text: text, attempts: Int32(clamping: completion.attempts))
            done(userdata.pointer, &c)
        }
    }
}

/// A host's `sl_job`, read honouring its size.
private struct HostJob {
    let job: LaneJob
    let done: sl_job_done_fn?
    let userdata: UserData

    init(_ pointer: UnsafePointer<sl_job>?) throws(SagaLaneError) {
        guard let pointer else { throw SagaLaneError(.invalidArgument, "job is NULL") }
        let c = try versioned(pointer, "sl_job", defaults: sl_job())
        guard let run = c.run else { throw SagaLaneError(.invalidArgument, "job->run is NULL") }
        guard c.max_attempts >= 0 else { throw SagaLaneError(.invalidArgument, "job->max_attempts is negative") }
        // size_t arrives as Int: a length past Int.max (a negative size, cast) reads negative.
        guard c.metadata_length >= 0 else { throw SagaLaneError(.invalidArgument, "job->metadata_length is out of range") }
        var metadata: [UInt8] = []
        try SagaLog.checkValueSize(c.metadata_length, of: "job->metadata")
        if c.metadata_length > 0 {
            guard let bytes = c.metadata else { throw SagaLaneError(.invalidArgument, "job->metadata is NULL but metadata_length is \(c.metadata_length)") }
            metadata = Array(UnsafeRawBufferPointer(start: bytes, count: c.metadata_length))
        }
        let userdata = UserData(pointer: c.userdata)
        let retry = c.max_attempts > 1
            ? RetryPolicy(maxAttempts: Int(c.max_attempts), initialBackoff: milliseconds(c.retry_backoff_ms, or: RetryPolicy.defaultInitialBackoff)!)
            : nil
        let key = try optionalString(c.idempotency_key, "job->idempotency_key")
        job = LaneJob(id: try optionalString(c.id, "job->id") ?? "", caller: try optionalString(c.caller, "job->caller") ?? "",
                      priority: Int(c.priority), metadata: metadata, retry: retry, idempotencyKey: key) { [metadata] context in
            try runHostJob(run, userdata, context, metadata: metadata)
        }
        done = c.done
        self.userdata = userdata
    }

    /// The host's `done`, if any, as the lane's completion callback.
    var onComplete: (@Sendable (LaneJobCompletion) -> Void)? {
        guard let done else { return nil }
        let userdata = self.userdata
        return { report($0, to: done, userdata) }
    }
}

@implementation @_cdecl("sl_job_init")
public func sl_job_init(_ job: UnsafeMutablePointer<sl_job>?) {
    initialize(job, sl_job())
}

@implementation @_cdecl("sl_lane_options_init")
public func sl_lane_options_init(_ options: UnsafeMutablePointer<sl_lane_options>?) {
    initialize(options, sl_lane_options(size: 0, max_concurrent: 1, persisted: 1, reconstruct: nil, reconstruct_userdata: nil))
}

/// Rebuilds a job from its row with the host's `reconstruct`; `nil` marks the row failed.
private func rebuild(_ row: JobRecord, _ reconstruct: sl_job_reconstruct_fn, _ userdata: UserData) -> RecoveredJob? {
    // The host may point the job at the record's strings: read it while they live.
    row.id.withCString { id in
        row.caller.withCString { caller in
            row.metadata.withUnsafeBytes { metadata -> RecoveredJob? in
                var record = sl_job_record(job_id: id, caller: caller, priority: Int32(clamping: row.priority),
                                           metadata: metadata.baseAddress, metadata_length: metadata.count,
                                           attempts: Int32(clamping: row.attempts))
                var job = sl_job()
                sl_job_init(&job)
                guard reconstruct(userdata.pointer, &record, &job) == 0 else { return nil }
                do throws(SagaLaneError) {
                    let host = try HostJob(&job)
                    return RecoveredJob(job: host.job, onComplete: host.onComplete ?? { _ in })
                } catch {
                    // Its userdata goes back through its done, if it has one.
                    let done = job.done, data = UserData(pointer: job.userdata)
                    return RecoveredJob(unusable: error.message) { completion in if let done { report(completion, to: done, data) } }
                }
            }
        }
    }
}

@implementation @_cdecl("sl_lane_create")
public func sl_lane_create(_ rt: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ options: UnsafePointer<sl_lane_options>?,
                           _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    call(rt, as: RuntimeHandle.self) { handle in
        let runtime = try handle.open()
        let name = try string(name, "name")
        let out = try required(out, "out")
        var defaults = sl_lane_options()
        sl_lane_options_init(&defaults)
        let c = try options.map { (options) throws(SagaLaneError) in try versioned(options, "sl_lane_options", defaults: defaults) } ?? defaults
        guard c.max_concurrent >= 0 else { throw SagaLaneError(.invalidArgument, "options->max_concurrent is negative") }
        let reconstruct = c.reconstruct.map { fn in
            let userdata = UserData(pointer: c.reconstruct_userdata)
            return { @Sendable (row: JobRecord) in rebuild(row, fn, userdata) }
        }
        let lane = try runtime.createLane(name: name, maxConcurrent: max(1, Int(c.max_concurrent)), persisted: c.persisted != 0,
                                          reconstruct: reconstruct)
        out.pointee = handle.adopt(LaneHandle(runtime: runtime, object: lane, owner: handle), as: lane)
    }
}

@implementation @_cdecl("sl_lane_find")
public func sl_lane_find(_ rt: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    callRuntime(rt) { runtime in
        let name = try string(name, "name")
        let out = try required(out, "out")
        // A lane's handle is registered under the lane's own address.
        let pointer = OpaquePointer(Unmanaged.passUnretained(try runtime.lane(named: name)).toOpaque())
        guard Handles.lookup(pointer, as: LaneHandle.self) != nil else { throw SagaLaneError(.notFound, "no lane named '\(name)'") }
        out.pointee = pointer
    }
}

/// `submission` as C sees it (`job_id` borrowed from `id`).
private func cSubmission(_ submission: LaneSubmission, id: UnsafePointer<CChar>?) -> sl_submission {
    sl_submission(size: MemoryLayout<sl_submission>.size, position: Int32(clamping: submission.position),
                  estimated_wait_ms: UInt64(max(0, submission.estimatedWait / .milliseconds(1))),
                  job_id: UnsafeMutablePointer(mutating: id), duplicate: submission.duplicate ? 1 : 0)
}

/// Hands `submission` to the host's `out` (its `job_id` a copy the host frees).
private func handOut(_ submission: LaneSubmission, to out: UnsafeMutablePointer<sl_submission>?) throws(SagaLaneError) {
    guard let out else { return }
    let id = has(out.pointee.size, \sl_submission.job_id) ? strdup(submission.jobID) : nil
    try handOut(cSubmission(submission, id: id), to: out, "sl_submission")
}

@implementation @_cdecl("sl_lane_submit")
public func sl_lane_submit(_ lanePointer: OpaquePointer?, _ job: UnsafePointer<sl_job>?, _ out: UnsafeMutablePointer<sl_submission>?) -> Int32 {
    call(lanePointer, as: LaneHandle.self) { handle in
        let job = try HostJob(job)
        if let out { _ = try structSize(out.pointee.size, "sl_submission") }
        try handOut(try handle.runtime.submit(job.job, to: handle.lane, onComplete: job.onComplete), to: out)
    }
}

@implementation @_cdecl("sl_lane_submit_batch")
public func sl_lane_submit_batch(_ lanePointer: OpaquePointer?, _ jobs: UnsafePointer<UnsafePointer<sl_job>?>?, _ count: Int,
                                 _ codes: UnsafeMutablePointer<Int32>?, _ out: UnsafePointer<UnsafeMutablePointer<sl_submission>?>?) -> Int32 {
    call(lanePointer, as: LaneHandle.self) { handle in
        // size_t arrives as Int: a count past Int.max (a negative size, cast) reads negative.
        guard count >= 0 else { throw SagaLaneError(.invalidArgument, "count is out of range") }
        guard count == 0 || jobs != nil else { throw SagaLaneError(.invalidArgument, "jobs is NULL") }
        for i in 0..<count { if let each = out?[i] { _ = try structSize(each.pointee.size, "out[\(i)]") } }
        var refusals: [Int: SagaLaneError] = [:]
        var taken: [(index: Int, job: HostJob)] = []
        for i in 0..<count {
            do throws(SagaLaneError) { taken.append((i, try HostJob(jobs![i]))) } catch { refusals[i] = error }
        }
        let results = handle.runtime.submit(batch: taken.map { ($0.job.job, $0.job.onComplete) }, to: handle.lane)
        for (item, result) in zip(taken, results) {
            switch result {
            case .success(let submission): try handOut(submission, to: out?[item.index])
            case .failure(let error): refusals[item.index] = error
            }
        }
        for i in 0..<count { codes?[i] = refusals[i].map(errorCode) ?? 0 }
        if let (i, error) = refusals.min(by: { $0.key < $1.key }) {
            throw SagaLaneError(error.code, "jobs[\(i)]: \(error.message)", underlying: error)
        }
    }
}

@implementation @_cdecl("sl_lane_submit_async")
public func sl_lane_submit_async(_ lanePointer: OpaquePointer?, _ job: UnsafePointer<sl_job>?, _ queued: sl_queued_fn?,
                                 _ userdata: UnsafeMutableRawPointer?) -> Int32 {
    call(lanePointer, as: LaneHandle.self) { handle in
        let job = try HostJob(job)
        let data = UserData(pointer: userdata), messages = handle.owner?.messages
        handle.runtime.submit(job.job, to: handle.lane, onQueued: { result in
            guard let queued else { return }
            switch result {
            case .success(let submission):
                submission.jobID.withCString { id in
                    var c = cSubmission(submission, id: id)
                    queued(data.pointer, 0, &c)
                }
            case .failure(let error):
                // The message is the callback thread's, for sl_runtime_errmsg in the callback.
                messages?.set(error.message)
                queued(data.pointer, errorCode(error), nil)
            }
        }, onComplete: job.onComplete)
    }
}

@implementation @_cdecl("sl_lane_submit_wait")
public func sl_lane_submit_wait(_ lanePointer: OpaquePointer?, _ job: UnsafePointer<sl_job>?,
                                _ text: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    call(lanePointer, as: LaneHandle.self) { handle in
        do throws(SagaLaneError) {
            try handOut(try handle.runtime.submitAndWait(try HostJob(job).job, to: handle.lane), to: text)
        } catch {
            if let failure = error.underlying as? LaneJobFailure { try handOut(failure.error, to: text) }
            throw error
        }
    }
}

@implementation @_cdecl("sl_lane_cancel")
public func sl_lane_cancel(_ lanePointer: OpaquePointer?, _ jobID: UnsafePointer<CChar>?) -> Int32 {
    call(lanePointer, as: LaneHandle.self) { handle in try handle.lane.cancelBlocking(jobID: try string(jobID, "job_id")) }
}

@implementation @_cdecl("sl_lane_interrupt")
public func sl_lane_interrupt(_ lanePointer: OpaquePointer?, _ jobID: UnsafePointer<CChar>?) -> Int32 {
    call(lanePointer, as: LaneHandle.self) { handle in try handle.lane.interrupt(jobID: try string(jobID, "job_id")) }
}

@implementation @_cdecl("sl_lane_set_max_concurrent")
public func sl_lane_set_max_concurrent(_ lanePointer: OpaquePointer?, _ maxConcurrent: Int32) -> Int32 {
    call(lanePointer, as: LaneHandle.self) { handle in
        try handle.lane.setMaxConcurrent(Int(maxConcurrent))
    }
}

@implementation @_cdecl("sl_lane_get_stats")
public func sl_lane_get_stats(_ lanePointer: OpaquePointer?, _ out: UnsafeMutablePointer<sl_lane_stats>?) -> Int32 {
    call(lanePointer, as: LaneHandle.self) { handle in
        let stats = handle.lane.stats
        try handOut(sl_lane_stats(size: 0, queued: Int32(clamping: stats.queued), running: Int32(clamping: stats.running),
                                  max_concurrent: Int32(clamping: stats.maxConcurrent), completed: UInt64(stats.completed),
                                  failed: UInt64(stats.failed), cancelled: UInt64(stats.cancelled),
                                  mean_run_ms: Double(stats.meanRunTime / .microseconds(1)) / 1000), to: out, "sl_lane_stats")
    }
}

@implementation @_cdecl("sl_lane_set_command_handler")
public func sl_lane_set_command_handler(_ lanePointer: OpaquePointer?, _ fn: sl_job_fn?, _ userdata: UnsafeMutableRawPointer?,
                                        _ release: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?) -> Int32 {
    call(lanePointer, as: LaneHandle.self) { handle in
        guard let fn else { throw SagaLaneError(.invalidArgument, "fn is NULL") }
        // Released when nothing uses it any more: once replaced (or the runtime closed) and
        // the last job that took it has ended.
        let owner = CommandHandler(fn: fn, userdata: UserData(pointer: userdata), release: Release(release, userdata))
        handle.runtime.setCommandHandler(lane: handle.lane.name) { command, context in
            try runHostJob(owner.fn, owner.userdata, context, metadata: Array(command.serialized.utf8))
        }
    }
}

// MARK: The job context

private func withJob<T>(_ ctx: OpaquePointer?, _ fallback: T, _ body: (JobContextBox) -> T) -> T {
    guard let box = JobContextBox.from(ctx) else { return fallback }
    return body(box)
}

@implementation @_cdecl("sl_job_id")
public func sl_job_id(_ ctx: OpaquePointer?) -> UnsafePointer<CChar>? {
    withJob(ctx, nil) { UnsafePointer($0.id) }
}

@implementation @_cdecl("sl_job_attempt")
public func sl_job_attempt(_ ctx: OpaquePointer?) -> Int32 {
    withJob(ctx, Int32(SL_EINVAL)) { Int32(clamping: $0.context.attempt) }
}

@implementation @_cdecl("sl_job_cancelled")
public func sl_job_cancelled(_ ctx: OpaquePointer?) -> Int32 {
    withJob(ctx, 1) { $0.context.isCancelled ? 1 : 0 }
}

@implementation @_cdecl("sl_job_metadata")
public func sl_job_metadata(_ ctx: OpaquePointer?, _ length: UnsafeMutablePointer<Int>?) -> UnsafeRawPointer? {
    withJob(ctx, nil) { box in
        length?.pointee = box.metadata.count - 1
        return UnsafeRawPointer(box.metadata.baseAddress)
    }
}

@implementation @_cdecl("sl_job_set_result")
public func sl_job_set_result(_ ctx: OpaquePointer?, _ text: UnsafePointer<CChar>?) -> Int32 {
    guard let box = JobContextBox.from(ctx) else {
        orphanMessages.set("the sl_job_ctx is NULL")
        return Int32(SL_EINVAL)
    }
    do throws(SagaLaneError) {
        box.result = try string(text, "text")
        return 0
    } catch {
        orphanMessages.set(error.message)
        return errorCode(error)
    }
}
