import SagaLaneCoordinator
import SagaLaneJSON
import SagaLaneLanes
import SagaLaneSupport
import Synchronization

/// The `lane:<name>` target: a saga's command becomes a job on that lane, and the job's outcome
/// comes back as an event tagged with the saga id: `LaneJobFinished` (payload `lane`, `job_id`,
/// `step`, `result` — parsed as JSON when it is JSON), `LaneJobFailed` (`error`, `attempts`)
/// or `LaneJobCancelled`. The saga decides what a failure means — but for a compensation or a
/// step with retries, whose failure the coordinator deals with: their failed or cancelled job
/// is reported as the step's failure (retried, or ending the saga).
///
/// Each attempt of a step is a job of its own: `saga-<id>-step-<n>` for the first, then
/// `saga-<id>-step-<n>-attempt-<k>`, so a retry or a re-dispatch after a restart never
/// collides with the row of an earlier attempt.
///
/// A lane used as a target needs a command handler: the function that runs a command. The job's
/// metadata is the command itself, so a persisted lane can rebuild the job after a restart.
struct LaneTarget: SagaTarget {
    let lane: Lane
    let handler: @Sendable (JSON, LaneJobContext) throws -> String
    let bus: EventBus

    static let finished = "LaneJobFinished"
    static let failed = "LaneJobFailed"
    static let cancelled = "LaneJobCancelled"

    /// The id of the job that attempt `attempt` of step `step` of saga `sagaID` becomes.
    static func jobID(sagaID: UInt64, step: UInt32, attempt: Int = 1) -> String {
        attempt <= 1 ? "saga-\(sagaID)-step-\(step)" : "saga-\(sagaID)-step-\(step)-attempt-\(attempt)"
    }

    func dispatch(_ step: StepDispatch, reporter: StepReporter) throws {
        let command = step.command
        let jobID = LaneTarget.jobID(sagaID: step.sagaID, step: step.step, attempt: step.attempt)
        let reportsFailures = step.reportsFailures
        let handler = self.handler
        let job = LaneJob(
            id: jobID,
            caller: "saga \(step.sagaID)",
            priority: Int(command["priority"]?.int64Value ?? 0),
            metadata: Array(command.serialized.utf8),
            body: { context in try handler(command, context) })
        let lane = self.lane
        let base: JSONObject = ["lane": .string(lane.name), "job_id": .string(jobID), "step": .int(Int64(step.step))]
        lane.submit(job, onQueued: { result in
            if case .failure(let error) = result { reporter.fail("lane '\(lane.name)' refused the job: \(error)") }
        }, onComplete: { completion in
            var payload = base
            switch completion.outcome {
            case .finished(let result):
                payload["result"] = (try? JSON(parsing: result)) ?? .string(result)
                reporter.publish(type: LaneTarget.finished, payload: .object(payload))
            case .failed(let error) where reportsFailures:
                reporter.fail("lane '\(lane.name)' job '\(jobID)' failed: \(error)")
            case .failed(let error):
                payload["error"] = .string(error)
                payload["attempts"] = .int(Int64(completion.attempts))
                reporter.publish(type: LaneTarget.failed, payload: .object(payload))
            case .cancelled where reportsFailures:
                reporter.fail("lane '\(lane.name)' job '\(jobID)' was cancelled")
            case .cancelled:
                reporter.publish(type: LaneTarget.cancelled, payload: .object(payload))
            }
        })
    }
}

extension LaneTarget {
    /// The saga that issued step `step` to this lane ended: its job is cancelled if it has not
    /// started (queued, or its queued row still being written), so no side effect runs for a
    /// saga that is over. `completion` gets `.success` once the job's cancelled row is durable
    /// (its `LaneJobCancelled` event, published to a saga that ended, goes nowhere);
    /// `.notQueued` when the job is running or between retries (it finishes, and its outcome
    /// event goes nowhere either); `.notFound` when it already ended or was never queued.
    /// Safe from any thread, and it never blocks: the coordinator calls it on the loop.
    func sagaEnded(sagaID: UInt64, step: UInt32, attempt: Int = 1,
                   completion: @escaping @Sendable (Result<Void, SagaLaneError>) -> Void = { _ in }) {
        lane.cancel(jobID: LaneTarget.jobID(sagaID: sagaID, step: step, attempt: attempt), completion: completion)
    }

    /// The coordinator's word that the saga ended with this step unanswered (or gave up on
    /// this attempt).
    func sagaEnded(_ step: StepDispatch) {
        sagaEnded(sagaID: step.sagaID, step: step.step, attempt: step.attempt)
    }

    /// Lets `coordinator`'s sagas issue commands to `lane:<name>` for the lanes in `pool`. Each
    /// lane used that way needs a handler registered with `setCommandHandler`.
    static func wire(_ coordinator: Coordinator, to pool: LanePool, handlers: LaneCommandHandlers) {
        let bus = coordinator.bus
        coordinator.registerTargetFamily(prefix: "lane") { (name) throws(SagaLaneError) -> any SagaTarget in
            let lane: Lane
            do { lane = try pool.lane(named: name) } catch {
                throw SagaLaneError(.notFound, "no lane named '\(name)'")
            }
            guard let handler = handlers.handler(for: name) else {
                throw SagaLaneError(.notFound, "lane '\(name)' has no command handler, so sagas cannot send it commands")
            }
            return LaneTarget(lane: lane, handler: handler, bus: bus)
        }
    }
}

/// The functions that run saga commands on each lane, by lane name.
public final class LaneCommandHandlers: Sendable {
    private let handlers = ConditionLock<[ExactName: @Sendable (JSON, LaneJobContext) throws -> String]>([:])

    public init() {}

    /// Sets the function that runs commands sent to `lane:<lane>`. It runs on the lane's worker
    /// threads and returns the result text (JSON, if the saga should see it parsed).
    public func setCommandHandler(lane: String, _ handler: @escaping @Sendable (JSON, LaneJobContext) throws -> String) {
        let replaced = handlers.withLock { handlers in
            defer { handlers[ExactName(lane)] = handler }
            return handlers[ExactName(lane)]
        }
        _ = replaced  // released here, outside the lock: a handler's deinit may call the host
    }

    public func handler(for lane: String) -> (@Sendable (JSON, LaneJobContext) throws -> String)? {
        handlers.withLock { $0[ExactName(lane)] }
    }

    /// Drops every handler; jobs already holding one keep it until they end.
    public func removeAll() {
        let dropped = handlers.withLock { handlers in
            defer { handlers.removeAll() }
            return Array(handlers.values)
        }
        _ = dropped  // released here, outside the lock: a handler's deinit may call the host
    }
}
