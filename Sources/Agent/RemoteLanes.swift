import Glibc
import SagaLane

/// A job failure as the lane records it: the text a worker (or the agent) gave.
struct RemoteJobFailure: Error, CustomStringConvertible {
    let text: String
    var description: String { text }
}

/// One job on its way to, or held by, a remote worker. Its lane's worker thread waits on
/// `done` while the job is out, so the lane's persistence, bound and retries apply as for a
/// job run in process.
final class RemoteJob: @unchecked Sendable {
    enum Outcome: Sendable {
        case finished(String)
        case failed(String)
        /// It never reached a worker (the agent stopped first).
        case notRun
    }

    let lane: String
    let jobID: String
    let attempt: Int
    let payload: JSON
    let reservation: Duration
    let done = Completion<Outcome>()
    // Loop-thread state.
    var worker: WorkerSlot?
    var timer: TimerID?

    init(lane: String, jobID: String, attempt: Int, payload: JSON, reservation: Duration) {
        self.lane = lane
        self.jobID = jobID
        self.attempt = attempt
        self.payload = payload
        self.reservation = reservation
    }
}

/// A connection registered as a worker of a lane, with how many jobs it takes at once.
final class WorkerSlot: @unchecked Sendable {
    unowned let session: Session
    let lane: String
    var capacity: Int
    var held: [String: RemoteJob] = [:]

    init(session: Session, lane: String, capacity: Int) {
        self.session = session
        self.lane = lane
        self.capacity = capacity
    }

    var free: Int { capacity - held.count }
}

/// A lane whose jobs run in worker processes.
final class RemoteLane: @unchecked Sendable {
    let name: String
    let lane: Lane
    /// The most jobs out at once, whatever the workers' capacity.
    var bound: Int
    var workers: [WorkerSlot] = []
    /// Jobs whose lane slot started but that no worker has taken yet, in order.
    var waiting: [RemoteJob] = []
    private var nextWorker = 0

    init(name: String, lane: Lane, bound: Int) {
        self.name = name
        self.lane = lane
        self.bound = bound
    }

    var capacity: Int { workers.reduce(0) { $0 + $1.capacity } }

    /// The lane starts as many jobs as the bound and the connected workers' capacity allow, so
    /// jobs nobody can take stay queued (in the log too) instead of starting.
    func updateSlots() {
        lane.setWorkerSlots(min(bound, capacity))
    }

    /// The next worker with room, taking turns.
    func workerWithRoom() -> WorkerSlot? {
        guard !workers.isEmpty else { return nil }
        for offset in 0..<workers.count {
            let worker = workers[(nextWorker + offset) % workers.count]
            if worker.free > 0 && worker.session.connection.canSend() {
                nextWorker = (nextWorker + offset + 1) % workers.count
                return worker
            }
        }
        return nil
    }
}

/// The agent's lanes and their remote workers (the Faktory model, persisted): a worker
/// connection registers for a lane with a capacity, the agent pushes it jobs within the lane's
/// bound and that capacity, the worker answers `job.done` or `job.failed`. A job not answered
/// within its reservation, or whose worker disconnects, fails with "worker lost", or runs again
/// if it was submitted with retries. Loop thread, but for `create` and the jobs' bodies.
final class RemoteLanes: @unchecked Sendable {
    unowned let agent: Agent
    private var lanes: [String: RemoteLane] = [:]
    private var stopping = false
    /// Jobs that started while their lane was still being created (recovery re-queues jobs
    /// before the lane is known here): they wait for it.
    private var early: [String: [RemoteJob]] = [:]
    /// Lane creations in progress, and who waits for them.
    private var creating: [String: [(Result<Void, SagaLaneError>) -> Void]] = [:]

    init(agent: Agent) { self.agent = agent }

    var loop: EventLoop { agent.loop }
    var runtime: Runtime { agent.runtime }

    // MARK: Lanes

    /// Creates lane `name`, persisted, recovering what the log holds for it. Not on the loop
    /// thread (recovery waits for it).
    func create(name: String, maxConcurrent: Int) throws(SagaLaneError) {
        let reservation = agent.options.reservation
        let lane = try runtime.createLane(name: name, maxConcurrent: max(1, min(maxConcurrent, Lane.concurrencyLimit)), persisted: true) { [unowned self] row in
            RecoveredJob(job: makeJob(id: row.id, lane: name, caller: row.caller, priority: row.priority,
                                      metadata: row.metadata, defaultReservation: reservation))
        }
        let remote = RemoteLane(name: name, lane: lane, bound: maxConcurrent)
        agent.onLoop { [self] in
            lanes[name] = remote
            remote.updateSlots()
            for job in early.removeValue(forKey: name) ?? [] { assign(job) }
        }
        runtime.setCommandHandler(lane: name) { [weak self] command, context in
            guard let self else { throw LaneJobCancelled() }
            return try run(lane: name, jobID: context.jobID, attempt: context.attempt, payload: command, reservation: reservation)
        }
    }

    /// `lane.create`: a new lane, or a new bound for one that exists.
    func createOrResize(session: Session, id: JSON?, name: String, maxConcurrent: Int) {
        if let remote = lanes[name] {
            remote.bound = maxConcurrent
            remote.updateSlots()
            return session.reply(id, ["created": false])
        }
        if creating[name] != nil {
            creating[name]!.append { result in session.answerCreate(id, name, result, created: false) }
            return
        }
        creating[name] = [{ result in session.answerCreate(id, name, result, created: true) }]
        let loop = self.loop
        runtime.onCallbackThread { [self] in
            let result: Result<Void, SagaLaneError>
            do throws(SagaLaneError) {
                try create(name: name, maxConcurrent: maxConcurrent)
                result = .success(())
            } catch {
                result = .failure(error)
            }
            loop.execute { [self] in
                let waiters = creating.removeValue(forKey: name) ?? []
                for waiter in waiters { waiter(result) }
            }
        }
    }

    func stats(session: Session, id: JSON?, name: String) {
        guard let remote = lanes[name] else { return session.refuse(unknownLane(name, id, "lane.stats")) }
        let stats = remote.lane.stats
        session.reply(id, ["lane": .string(name), "queued": .int(Int64(stats.queued)), "running": .int(Int64(stats.running)),
                           "bound": .int(Int64(remote.bound)), "workers": .int(Int64(remote.workers.count)),
                           "capacity": .int(Int64(remote.capacity)), "waiting_for_worker": .int(Int64(remote.waiting.count)),
                           "completed": .int(Int64(stats.completed)), "failed": .int(Int64(stats.failed)),
                           "cancelled": .int(Int64(stats.cancelled))])
    }

    var statsJSON: JSON {
        var object: [String: JSON] = [:]
        for (name, remote) in lanes {
            let stats = remote.lane.stats
            object[name] = ["queued": .int(Int64(stats.queued)), "running": .int(Int64(stats.running)),
                            "workers": .int(Int64(remote.workers.count)), "capacity": .int(Int64(remote.capacity))]
        }
        return .object(JSONObject(object))
    }

    private func unknownLane(_ name: String, _ id: JSON?, _ about: String) -> WireError {
        WireError(.unknownLane, "no lane '\(name)' (create it with lane.create)", id: id, about: about)
    }

    // MARK: Jobs

    /// What a job's metadata holds for the agent: its payload, retries and reservation, so
    /// recovery can rebuild it exactly.
    private func metadata(payload: JSON, retry: RetryPolicy?, reservation: Int?) -> [UInt8] {
        var remote: [String: JSON] = ["payload": payload]
        if let retry { remote["retry"] = ["max_attempts": .int(Int64(retry.maxAttempts)), "backoff_ms": .int(retry.initialBackoff.wholeMilliseconds)] }
        if let reservation { remote["reservation_ms"] = .int(Int64(reservation)) }
        return Array(JSON.object(["remote": .object(JSONObject(remote))]).serialized.utf8)
    }

    /// A lane job from its parts (a submit, or a row being recovered).
    private func makeJob(id: String, lane: String, caller: String, priority: Int, metadata: [UInt8],
                         defaultReservation: Duration) -> LaneJob {
        let parsed = (try? JSON(parsing: metadata)) ?? .null
        // A row a saga's lane: step wrote holds the command itself.
        let remote = parsed["remote"]
        let payload = remote?["payload"] ?? parsed
        var retry: RetryPolicy?
        if let attempts = remote?["retry"]?["max_attempts"]?.int64Value {
            retry = RetryPolicy(maxAttempts: Int(attempts),
                                initialBackoff: .milliseconds(remote?["retry"]?["backoff_ms"]?.int64Value ?? 100))
        }
        let reservation = remote?["reservation_ms"]?.int64Value.map { Duration.milliseconds($0) } ?? defaultReservation
        return LaneJob(id: id, caller: caller, priority: priority, metadata: metadata, retry: retry) { [weak self] context in
            // Gone only when the agent stopped: the job is not run, as at any stop.
            guard let self else { throw LaneJobCancelled() }
            return try run(lane: lane, jobID: context.jobID, attempt: context.attempt, payload: payload, reservation: reservation)
        }
    }

    /// A job's body, on one of its lane's worker threads: hands the job to a remote worker
    /// and waits for the answer.
    private func run(lane: String, jobID: String, attempt: Int, payload: JSON, reservation: Duration) throws -> String {
        let job = RemoteJob(lane: lane, jobID: jobID, attempt: attempt, payload: payload, reservation: reservation)
        loop.execute { [self] in assign(job) }
        switch job.done.wait() {
        case .finished(let result): return result
        case .failed(let error): throw RemoteJobFailure(text: error)
        case .notRun: throw LaneJobCancelled()
        }
    }

    /// `lane.submit`.
    func submit(session: Session, id: JSON?, _ submit: WireLaneSubmit) {
        guard let remote = lanes[submit.lane] else { return session.refuse(unknownLane(submit.lane, id, "lane.submit")) }
        let reservation = submit.reservationMilliseconds.map { Duration.milliseconds($0) } ?? agent.options.reservation
        var job = makeJob(id: submit.jobID, lane: submit.lane, caller: session.name ?? "connection \(session.connection.id)",
                          priority: submit.priority,
                          metadata: metadata(payload: submit.payload, retry: submit.retry, reservation: submit.reservationMilliseconds),
                          defaultReservation: reservation)
        let loop = self.loop
        let notify = submit.notify
        let laneName = submit.lane
        remote.lane.submit(job, onQueued: { result in
            loop.execute {
                switch result {
                case .success(let submission):
                    session.reply(id, ["job_id": .string(submission.jobID), "position": .int(Int64(submission.position)),
                                       "estimated_wait_ms": .int(submission.estimatedWait.wholeMilliseconds)])
                case .failure(let error):
                    session.refuse(WireError(wireCode(error, notFound: .unknownLane), error.message, id: id, about: "lane.submit"))
                }
            }
        }, onComplete: { completion in
            guard notify else { return }
            loop.execute {
                guard session.connection.isOpen else { return }
                var result: JSON?
                var error: String?
                let state: String
                switch completion.outcome {
                case .finished(let text):
                    state = "finished"
                    result = (try? JSON(parsing: text)) ?? .string(text)
                case .failed(let text):
                    state = "failed"
                    error = text
                case .cancelled:
                    state = "cancelled"
                }
                session.send(WireFrame(.laneJobEnded(lane: laneName, jobID: completion.jobID, state: state, result: result,
                                                     error: error, attempts: completion.attempts)))
            }
        })
    }

    /// `lane.cancel`.
    func cancel(session: Session, id: JSON?, lane name: String, jobID: String) {
        guard let remote = lanes[name] else { return session.refuse(unknownLane(name, id, "lane.cancel")) }
        let loop = self.loop
        remote.lane.cancel(jobID: jobID) { result in
            loop.execute {
                switch result {
                case .success: session.reply(id)
                case .failure(let error):
                    session.refuse(WireError(wireCode(error, notFound: .unknownJob), error.message, id: id, about: "lane.cancel"))
                }
            }
        }
    }

    // MARK: Workers

    /// `worker.register`: the connection takes up to `capacity` jobs of `lane` at once (a
    /// second registration for the lane changes the capacity).
    func registerWorker(session: Session, id: JSON?, lane name: String, capacity: Int) {
        guard let remote = lanes[name] else { return session.refuse(unknownLane(name, id, "worker.register")) }
        if let existing = remote.workers.first(where: { $0.session === session }) {
            existing.capacity = capacity
        } else {
            remote.workers.append(WorkerSlot(session: session, lane: name, capacity: capacity))
        }
        remote.updateSlots()
        session.reply(id)
        dispatchWaiting(remote)
    }

    /// A job whose lane slot started: to a worker with room, or to wait for one.
    private func assign(_ job: RemoteJob) {
        guard !stopping else { return job.done.set(.notRun) }
        guard let remote = lanes[job.lane] else {
            early[job.lane, default: []].append(job)
            return
        }
        if remote.waiting.isEmpty, let worker = remote.workerWithRoom() {
            push(job, to: worker)
        } else {
            remote.waiting.append(job)
        }
    }

    private func dispatchWaiting(_ remote: RemoteLane) {
        while !remote.waiting.isEmpty, let worker = remote.workerWithRoom() {
            push(remote.waiting.removeFirst(), to: worker)
        }
    }

    private func push(_ job: RemoteJob, to worker: WorkerSlot) {
        job.worker = worker
        worker.held[job.jobID] = job
        worker.session.send(WireFrame(.job(lane: job.lane, jobID: job.jobID, attempt: job.attempt, payload: job.payload)))
        job.timer = loop.scheduleTimer(after: job.reservation) { [weak self, weak worker] in
            guard let self, let worker, worker.held[job.jobID] === job else { return }
            job.timer = nil
            let milliseconds = job.reservation.wholeMilliseconds
            self.release(job, from: worker, .failed("worker lost: connection \(worker.session.label) did not answer within its reservation of \(milliseconds) ms"))
        }
    }

    /// Ends a job's time with a worker and frees its place there.
    private func release(_ job: RemoteJob, from worker: WorkerSlot, _ outcome: RemoteJob.Outcome) {
        worker.held.removeValue(forKey: job.jobID)
        job.worker = nil
        if let timer = job.timer { loop.cancelTimer(timer) }
        job.timer = nil
        job.done.set(outcome)
        if let remote = lanes[job.lane] { dispatchWaiting(remote) }
    }

    /// `job.done` / `job.failed` from a worker.
    func answer(session: Session, id: JSON?, jobID: String, outcome: WorkerAnswer) {
        let about: String
        if case .done = outcome { about = "job.done" } else { about = "job.failed" }
        for remote in lanes.values {
            guard let worker = remote.workers.first(where: { $0.session === session }), let job = worker.held[jobID] else { continue }
            switch outcome {
            case .done(let result):
                let text: String
                if case .string(let plain) = result { text = plain } else { text = result.serialized }
                release(job, from: worker, .finished(text))
            case .failed(let error):
                release(job, from: worker, .failed(error))
            }
            if id != nil { session.reply(id) }
            return
        }
        session.refuse(WireError(.unknownJob, "this connection holds no job '\(jobID)' (it was never pushed here, or its reservation ran out, or it was answered)",
                                 id: id, about: about))
    }

    /// A connection can take more again: jobs waiting for a worker may go to it.
    func sessionWritable(_ session: Session) {
        for remote in lanes.values where remote.workers.contains(where: { $0.session === session }) {
            dispatchWaiting(remote)
        }
    }

    /// A worker's connection closed: the jobs it held fail ("worker lost"), or run again if
    /// they have retries; its capacity is gone.
    func sessionClosed(_ session: Session) {
        for remote in lanes.values {
            guard let index = remote.workers.firstIndex(where: { $0.session === session }) else { continue }
            let worker = remote.workers.remove(at: index)
            remote.updateSlots()
            for job in worker.held.values.sorted(by: { $0.jobID < $1.jobID }) {
                release(job, from: worker, .failed("worker lost: connection \(session.label) closed while it held the job"))
            }
        }
    }

    /// The agent stops: no job starts any more, and those out with workers fail.
    func stop() {
        stopping = true
        for jobs in early.values { for job in jobs { job.done.set(.notRun) } }
        early.removeAll()
        for remote in lanes.values {
            remote.lane.setWorkerSlots(0)
            for job in remote.waiting { job.done.set(.notRun) }
            remote.waiting.removeAll()
            for worker in remote.workers {
                for job in worker.held.values {
                    release(job, from: worker, .failed("the agent stopped while connection \(worker.session.label) held the job"))
                }
            }
        }
    }
}

/// A worker's answer to a job.
enum WorkerAnswer {
    case done(JSON)
    case failed(String)
}

extension Session {
    func answerCreate(_ id: JSON?, _ name: String, _ result: Result<Void, SagaLaneError>, created: Bool) {
        switch result {
        case .success: reply(id, ["created": .bool(created)])
        case .failure(let error):
            refuse(WireError(wireCode(error, notFound: .unknownLane), "lane '\(name)': \(error.message)", id: id, about: "lane.create"))
        }
    }
}

