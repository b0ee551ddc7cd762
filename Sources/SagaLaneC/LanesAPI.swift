import CSagaLane
import Glibc
import SagaLane
import Synchronization

/// What `sl_lane *` points to.
final class LaneHandle: CHandle {
    let runtime: Runtime
    let lane: Lane
    let owner: RuntimeHandle?

    init(runtime: Runtime, lane: Lane, owner: RuntimeHandle) {
        self.runtime = runtime
        self.lane = lane
        self.owner = owner
    }
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

/// How many times a job's body ran, for its outcome.
private final class RunCount: Sendable {
    private let runs = Atomic<Int>(0)
    func record(_ attempt: Int) { runs.store(attempt, ordering: .relaxed) }
    var count: Int { runs.load(ordering: .relaxed) }
}

/// Calls a host's done callback with `outcome`.
private func report(_ outcome: LaneJobOutcome, jobID: String, runs: RunCount, to done: sl_job_done_fn, _ userdata: UserData) {
    let (state, text): (Int, String)
    switch outcome {
    case .finished(let result): (state, text) = (SL_JOB_FINISHED, result)
    case .failed(let error, _): (state, text) = (SL_JOB_FAILED, error)
    case .cancelled: (state, text) = (SL_JOB_CANCELLED, "")
    }
    let attempts = runs.count
    jobID.withCString { id in
        text.withCString { text in
            var c = sl_job_outcome(job_id: id, state: Int32(state), text: text, attempts: Int32(attempts))
            done(userdata.pointer, &c)
        }
    }
}

/// A host's `sl_job`, read honouring its size.
private struct HostJob {
    let job: LaneJob
    let done: sl_job_done_fn?
    let userdata: UserData
    let runs = RunCount()

    init(_ pointer: UnsafePointer<sl_job>?) throws(CallError) {
        guard let pointer else { throw CallError(SL_EINVAL, "job is NULL") }
        var c = sl_job()
        let size = try structSize(pointer.pointee.size, "sl_job")
        withUnsafeMutableBytes(of: &c) { target in
            target.copyMemory(from: UnsafeRawBufferPointer(start: pointer, count: min(size, target.count)))
        }
        guard let run = c.run else { throw CallError(SL_EINVAL, "job->run is NULL") }
        guard c.max_attempts >= 0 else { throw CallError(SL_EINVAL, "job->max_attempts is negative") }
        var metadata: [UInt8] = []
        if c.metadata_length > 0 {
            guard let bytes = c.metadata else { throw CallError(SL_EINVAL, "job->metadata is NULL but metadata_length is \(c.metadata_length)") }
            metadata = Array(UnsafeRawBufferPointer(start: bytes, count: c.metadata_length))
        }
        let userdata = UserData(pointer: c.userdata)
        let retry = c.max_attempts > 1
            ? RetryPolicy(maxAttempts: Int(c.max_attempts),
                          initialBackoff: .milliseconds(c.retry_backoff_ms == 0 ? 100 : Int64(c.retry_backoff_ms)))
            : nil
        let body = metadata, runs = self.runs
        job = LaneJob(id: try optionalString(c.id, "job->id") ?? "", caller: try optionalString(c.caller, "job->caller") ?? "",
                      priority: Int(c.priority), metadata: metadata, retry: retry) { context in
            runs.record(context.attempt)
            return try runHostJob(run, userdata, context, metadata: body)
        }
        done = c.done
        self.userdata = userdata
    }
}

/// Done callbacks of jobs rebuilt at lane creation, by job id.
private final class RecoveredJobs: Sendable {
    let done = Mutex<[String: @Sendable (LaneJobOutcome) -> Void]>([:])
}

@implementation @_cdecl("sl_job_init")
public func sl_job_init(_ job: UnsafeMutablePointer<sl_job>?) {
    guard let job else { return }
    job.pointee = sl_job()
    job.pointee.size = MemoryLayout<sl_job>.size
}

@implementation @_cdecl("sl_lane_options_init")
public func sl_lane_options_init(_ options: UnsafeMutablePointer<sl_lane_options>?) {
    guard let options else { return }
    options.pointee = sl_lane_options()
    options.pointee.size = MemoryLayout<sl_lane_options>.size
    options.pointee.max_concurrent = 1
    options.pointee.persisted = 1
}

@implementation @_cdecl("sl_lane_create")
public func sl_lane_create(_ rt: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ options: UnsafePointer<sl_lane_options>?,
                           _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    call(rt, as: RuntimeHandle.self) { handle in
        let runtime = try handle.open()
        let name = try string(name, "name")
        guard let out else { throw CallError(SL_EINVAL, "out is NULL") }
        var c = sl_lane_options()
        sl_lane_options_init(&c)
        if let options {
            let size = try structSize(options.pointee.size, "sl_lane_options")
            withUnsafeMutableBytes(of: &c) { target in
                target.copyMemory(from: UnsafeRawBufferPointer(start: options, count: min(size, target.count)))
            }
        }
        guard c.max_concurrent >= 0 else { throw CallError(SL_EINVAL, "options->max_concurrent is negative") }
        let recovered = RecoveredJobs()
        let reconstruct = c.reconstruct, reconstructData = UserData(pointer: c.reconstruct_userdata)
        let lane = try runtime.createLane(
            name: name, maxConcurrent: max(1, Int(c.max_concurrent)), persisted: c.persisted != 0,
            reconstruct: { row in
                guard let reconstruct else { return nil }
                // The host may point the job at the record's strings: read it while they live.
                let rebuilt = row.id.withCString { id in
                    row.caller.withCString { caller in
                        row.metadata.withUnsafeBytes { metadata -> Result<HostJob, CallError>? in
                            var record = sl_job_record(job_id: id, caller: caller, priority: Int32(clamping: row.priority),
                                                       metadata: metadata.baseAddress, metadata_length: metadata.count,
                                                       attempts: Int32(clamping: row.attempts))
                            var job = sl_job()
                            sl_job_init(&job)
                            guard reconstruct(reconstructData.pointer, &record, &job) == 0 else { return nil }
                            do throws(CallError) { return .success(try HostJob(&job)) } catch {
                                // Its userdata goes back through its done, if it has one.
                                if let done = job.done {
                                    let userdata = UserData(pointer: job.userdata), id = row.id
                                    runtime.callbacks.async {
                                        report(.failed(error: "\(error)", attempts: 0), jobID: id, runs: RunCount(), to: done, userdata)
                                    }
                                }
                                return .failure(error)
                            }
                        }
                    }
                }
                switch rebuilt {
                case nil:
                    return nil
                case .failure(let error):
                    writeStandardError("sagalane: lane '\(name)': job '\(row.id)' could not be rebuilt: \(error)\n")
                    return nil
                case .success(let rebuilt):
                    var lanejob = rebuilt.job
                    lanejob.id = row.id
                    let onComplete = HostJob.onComplete(of: rebuilt, id: row.id, runtime: runtime)
                    recovered.done.withLock { $0[row.id] = onComplete }
                    return lanejob
                }
            },
            onRecoveredComplete: { id, outcome in
                recovered.done.withLock { $0.removeValue(forKey: id) }?(outcome)
            })
        out.pointee = handle.adopt(LaneHandle(runtime: runtime, lane: lane, owner: handle))
    }
}

extension HostJob {
    /// The host's `done` for a job whose id was fixed after conversion.
    /// The lane's completion callback for this job: the host's `done`, if any, on the
    /// runtime's callback thread.
    fileprivate static func onComplete(of job: HostJob, id: String, runtime: Runtime) -> @Sendable (LaneJobOutcome) -> Void {
        guard let done = job.done else { return { _ in } }
        let userdata = job.userdata, runs = job.runs, callbacks = runtime.callbacks
        return { outcome in callbacks.async { report(outcome, jobID: id, runs: runs, to: done, userdata) } }
    }
}

@implementation @_cdecl("sl_lane_find")
public func sl_lane_find(_ rt: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    call(rt, as: RuntimeHandle.self) { handle in
        _ = try handle.open()
        let name = try string(name, "name")
        guard let out else { throw CallError(SL_EINVAL, "out is NULL") }
        guard let lane = handle.lane(named: name) else { throw CallError(SL_ENOTFOUND, "no lane named '\(name)'") }
        out.pointee = OpaquePointer(Unmanaged<AnyObject>.passUnretained(lane).toOpaque())
    }
}

@implementation @_cdecl("sl_lane_submit")
public func sl_lane_submit(_ lanePointer: OpaquePointer?, _ job: UnsafePointer<sl_job>?, _ out: UnsafeMutablePointer<sl_submission>?) -> Int32 {
    call(lanePointer, as: LaneHandle.self) { handle in
        let job = try HostJob(job)
        if let out { _ = try structSize(out.pointee.size, "sl_submission") }
        var submitted = job.job
        if submitted.id.isEmpty { submitted.id = generatedJobID(handle.lane) }
        let onComplete = HostJob.onComplete(of: job, id: submitted.id, runtime: handle.runtime)
        let submission = try handle.lane.submitBlocking(submitted, onComplete: onComplete)
        guard let out else { return }
        let size = out.pointee.size
        if has(size, \sl_submission.position) { out.pointee.position = Int32(clamping: submission.position) }
        if has(size, \sl_submission.estimated_wait_ms) {
            out.pointee.estimated_wait_ms = UInt64(max(0, submission.estimatedWait / .milliseconds(1)))
        }
        if has(size, \sl_submission.job_id) { out.pointee.job_id = strdup(submission.jobID) }
    }
}

/// An id for a job submitted without one, so its done callback can name it.
private func generatedJobID(_ lane: Lane) -> String {
    "\(lane.name)-\(UInt64.random(in: 0...UInt64.max))"
}

@implementation @_cdecl("sl_lane_submit_wait")
public func sl_lane_submit_wait(_ lanePointer: OpaquePointer?, _ job: UnsafePointer<sl_job>?,
                                _ text: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    call(lanePointer, as: LaneHandle.self) { handle in
        try handle.runtime.checkMayWaitForJobs()
        var submitted = try HostJob(job).job
        if submitted.id.isEmpty { submitted.id = generatedJobID(handle.lane) }
        let outcome = Completion<LaneJobOutcome>()
        try handle.lane.submitBlocking(submitted) { outcome.set($0) }
        switch handle.runtime.wait(for: outcome) {
        case .finished(let result):
            try handOut(result, to: text)
        case .failed(let error, let attempts):
            try handOut(error, to: text)
            throw CallError(SL_EJOBFAILED, "job '\(submitted.id)' failed after \(attempts) attempt(s): \(error)")
        case .cancelled:
            throw CallError(SL_ECANCELED, "job '\(submitted.id)' was cancelled")
        }
    }
}

@implementation @_cdecl("sl_lane_cancel")
public func sl_lane_cancel(_ lanePointer: OpaquePointer?, _ jobID: UnsafePointer<CChar>?) -> Int32 {
    call(lanePointer, as: LaneHandle.self) { handle in try handle.lane.cancel(jobID: try string(jobID, "job_id")) }
}

@implementation @_cdecl("sl_lane_interrupt")
public func sl_lane_interrupt(_ lanePointer: OpaquePointer?, _ jobID: UnsafePointer<CChar>?) -> Int32 {
    call(lanePointer, as: LaneHandle.self) { handle in try handle.lane.interrupt(jobID: try string(jobID, "job_id")) }
}

@implementation @_cdecl("sl_lane_set_max_concurrent")
public func sl_lane_set_max_concurrent(_ lanePointer: OpaquePointer?, _ maxConcurrent: Int32) -> Int32 {
    call(lanePointer, as: LaneHandle.self) { handle in
        guard maxConcurrent >= 1 else { throw CallError(SL_EINVAL, "max_concurrent must be at least 1 (got \(maxConcurrent))") }
        handle.lane.setMaxConcurrent(Int(maxConcurrent))
    }
}

@implementation @_cdecl("sl_lane_get_stats")
public func sl_lane_get_stats(_ lanePointer: OpaquePointer?, _ out: UnsafeMutablePointer<sl_lane_stats>?) -> Int32 {
    call(lanePointer, as: LaneHandle.self) { handle in
        guard let out else { throw CallError(SL_EINVAL, "out is NULL") }
        let size = try structSize(out.pointee.size, "sl_lane_stats")
        let stats = handle.lane.stats
        var c = sl_lane_stats()
        c.size = size
        c.queued = Int32(clamping: stats.queued)
        c.running = Int32(clamping: stats.running)
        c.max_concurrent = Int32(clamping: stats.maxConcurrent)
        c.completed = UInt64(stats.completed)
        c.failed = UInt64(stats.failed)
        c.cancelled = UInt64(stats.cancelled)
        c.mean_run_ms = Double(stats.meanRunTime / .microseconds(1)) / 1000
        withUnsafeBytes(of: &c) { source in
            UnsafeMutableRawPointer(out).copyMemory(from: source.baseAddress!, byteCount: min(size, source.count))
        }
    }
}

@implementation @_cdecl("sl_lane_set_command_handler")
public func sl_lane_set_command_handler(_ lanePointer: OpaquePointer?, _ fn: sl_job_fn?, _ userdata: UnsafeMutableRawPointer?,
                                        _ release: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?) -> Int32 {
    call(lanePointer, as: LaneHandle.self) { handle in
        guard let fn else { throw CallError(SL_EINVAL, "fn is NULL") }
        // Released when nothing uses it any more: once replaced (or the runtime closed) and
        // the last job that took it has ended.
        let owner = CommandHandler(fn: fn, userdata: UserData(pointer: userdata), release: Release(release, userdata))
        handle.runtime.laneHandlers.setCommandHandler(lane: handle.lane.name) { command, context in
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
    do {
        box.result = try string(text, "text")
        return 0
    } catch {
        orphanMessages.set(error.message)
        return error.code
    }
}
