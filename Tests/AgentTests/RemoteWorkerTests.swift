import Glibc
import SagaLaneScriptSaga
import SagaLaneTestSupport
import Testing
@testable import SagaLane
@testable import SagaLaneAgent

private func isJob(_ frame: WireFrame) -> Bool {
    if case .job = frame.message { return true }
    return false
}

private func isEnded(_ frame: WireFrame) -> Bool {
    if case .laneJobEnded = frame.message { return true }
    return false
}

extension TestClient {
    /// The next job pushed to this worker.
    func job(timeoutMilliseconds: Int = 10_000) throws -> (jobID: String, attempt: Int, payload: JSON)? {
        guard let frame = try next(timeoutMilliseconds: timeoutMilliseconds, where: isJob),
              case .job(_, let jobID, let attempt, let payload) = frame.message else { return nil }
        return (jobID, attempt, payload)
    }

    func ended(timeoutMilliseconds: Int = 10_000) throws -> (jobID: String, state: String, result: JSON?, error: String?, attempts: Int)? {
        guard let frame = try next(timeoutMilliseconds: timeoutMilliseconds, where: isEnded),
              case .laneJobEnded(_, let jobID, let state, let result, let error, let attempts) = frame.message else { return nil }
        return (jobID, state, result, error, attempts)
    }

    func submit(_ lane: String, _ payload: JSON, jobID: String = "", retry: RetryPolicy? = nil, reservation: Int? = nil) throws -> String {
        let fields = try ok(.laneSubmit(WireLaneSubmit(lane: lane, jobID: jobID, payload: payload, retry: retry,
                                                       reservationMilliseconds: reservation, notify: true)))
        return fields["job_id"]?.stringValue ?? ""
    }
}

@Suite(.serialized, .timeLimit(.minutes(2)))
struct RemoteWorkerTests {
    @Test func workersGetJobsWithinTheirCapacityAndTheLaneBound() throws {
        let fixture = try AgentFixture()
        defer { fixture.stop() }
        let client = try fixture.client("submitter")
        #expect(try client.ok(.laneCreate(lane: "gpu", maxConcurrent: 3))["created"] == true)
        // Submitted before any worker: they stay queued, in the log too.
        for i in 0..<6 { _ = try client.submit("gpu", ["n": .int(Int64(i))], jobID: "j\(i)") }
        #expect(try fixture.runtime.log.recentJobs(lane: "gpu", state: .queued, limit: 10).count == 6)
        let worker = try fixture.client("worker")
        try worker.ok(.workerRegister(lane: "gpu", capacity: 2))
        // Capacity 2: two jobs out, no third until one is answered.
        let a = try #require(try worker.job())
        let b = try #require(try worker.job())
        #expect(try worker.job(timeoutMilliseconds: 300) == nil)
        #expect(try fixture.runtime.log.recentJobs(lane: "gpu", state: .running, limit: 10).count == 2)
        let other = try fixture.client("worker 2")
        try other.ok(.workerRegister(lane: "gpu", capacity: 5))
        // The lane's bound (3) holds whatever the workers could take.
        let c = try #require(try other.job())
        #expect(try other.job(timeoutMilliseconds: 300) == nil)
        try worker.ok(.jobDone(jobID: a.jobID, result: ["ok": true]))
        try worker.ok(.jobFailed(jobID: b.jobID, error: "out of memory"))
        try other.ok(.jobDone(jobID: c.jobID, result: "plain text"))
        var ends: [String: (String, JSON?, String?)] = [:]
        for _ in 0..<3 {
            let end = try #require(try client.ended())
            ends[end.jobID] = (end.state, end.result, end.error)
        }
        #expect(ends[a.jobID]?.0 == "finished" && ends[a.jobID]?.1 == ["ok": true])
        #expect(ends[b.jobID]?.0 == "failed" && ends[b.jobID]?.2 == "out of memory")
        #expect(ends[c.jobID]?.0 == "finished" && ends[c.jobID]?.1 == "plain text")
        // The rest go out as slots free up, and the log has every end.
        var answered = 3
        while answered < 6 {
            for w in [worker, other] {
                if let job = try w.job(timeoutMilliseconds: 200) {
                    try w.ok(.jobDone(jobID: job.jobID, result: .null))
                    answered += 1
                }
            }
        }
        try eventually("six terminal rows") {
            try fixture.runtime.log.recentJobs(lane: "gpu", limit: 10).filter { $0.state.isTerminal }.count == 6
        }
        let row = try #require(try client.ok(.laneJob(jobID: b.jobID))["job"])
        #expect(row["state"] == "failed" && row["error"] == "out of memory")
    }

    @Test func aJobWhoseWorkerDisconnectsFailsWorkerLostOrRetriesElsewhere() throws {
        let fixture = try AgentFixture(lanes: [("cpu", 4)])
        defer { fixture.stop() }
        let client = try fixture.client("submitter")
        let doomed = try fixture.client("doomed worker")
        try doomed.ok(.workerRegister(lane: "cpu", capacity: 2))
        let once = try client.submit("cpu", "once", jobID: "once")
        let retried = try client.submit("cpu", "again", jobID: "again", retry: RetryPolicy(maxAttempts: 3, initialBackoff: .milliseconds(10)))
        let first = try #require(try doomed.job())
        let second = try #require(try doomed.job())
        #expect(Set([first.jobID, second.jobID]) == Set([once, retried]))
        // The worker dies holding both.
        doomed.close()
        let end = try #require(try client.ended())
        #expect(end.jobID == once && end.state == "failed")
        #expect(end.error?.hasPrefix("worker lost: connection") == true, "\(end.error ?? "")")
        // The idempotent one waits for another worker and runs again there.
        let rescuer = try fixture.client("rescuer")
        try rescuer.ok(.workerRegister(lane: "cpu", capacity: 1))
        let again = try #require(try rescuer.job())
        #expect(again.jobID == retried && again.attempt == 2 && again.payload == "again")
        try rescuer.ok(.jobDone(jobID: again.jobID, result: 42))
        let done = try #require(try client.ended())
        #expect(done.jobID == retried && done.state == "finished" && done.attempts == 2 && done.result == 42)
    }

    @Test func aJobNotAnsweredWithinItsReservationFails() throws {
        let fixture = try AgentFixture(lanes: [("slow", 1)])
        defer { fixture.stop() }
        let client = try fixture.client("submitter")
        let worker = try fixture.client("sleepy worker")
        try worker.ok(.workerRegister(lane: "slow", capacity: 1))
        let id = try client.submit("slow", .null, reservation: 200)
        let job = try #require(try worker.job())
        #expect(job.jobID == id)
        let end = try #require(try client.ended())
        #expect(end.state == "failed" && end.error?.contains("did not answer within its reservation of 200 ms") == true)
        // Its late answer is refused: the job is no longer its to answer.
        #expect(try worker.errorCode(.jobDone(jobID: id, result: .null)) == "unknown_job")
    }

    @Test func queuedJobsAreCancelledAndInspected() throws {
        let fixture = try AgentFixture(lanes: [("q", 1)])
        defer { fixture.stop() }
        let client = try fixture.client()
        let id = try client.submit("q", ["x": 1], jobID: "waiting")
        try client.ok(.laneCancel(lane: "q", jobID: id))
        let end = try #require(try client.ended())
        #expect(end.state == "cancelled")
        #expect(try client.errorCode(.laneCancel(lane: "q", jobID: id)) == "unknown_job")
        let jobs = try #require(try client.ok(.laneJobs(lane: "q", state: "cancelled", limit: 10))["jobs"]?.arrayValue)
        #expect(jobs.map { $0["id"] } == ["waiting"])
        #expect(try client.errorCode(.laneJobs(lane: nil, state: "sleeping", limit: nil)) == "bad_field")
        let stats = try client.ok(.laneStats(lane: "q"))
        #expect(stats["cancelled"] == 1 && stats["workers"] == 0)
    }

    @Test func sagasSendCommandsToRemoteWorkersThroughLaneTargets() throws {
        let fixture = try AgentFixture(lanes: [("render", 2)])
        defer { fixture.stop() }
        let worker = try fixture.client("renderer")
        try worker.ok(.workerRegister(lane: "render", capacity: 1))
        let client = try fixture.client()
        let id = try client.startScript([("lane:render", ["frame": 7], "LaneJobFinished")])
        let job = try #require(try worker.job())
        #expect(job.jobID == "saga-\(id)-step-0")
        #expect(job.payload["frame"] == 7)
        try worker.ok(.jobDone(jobID: job.jobID, result: ["pixels": 100]))
        #expect(try client.waitSaga(id).state == "completed")
        let steps = try #require(try fixture.runtime.log.saga(id: id)?.steps)
        #expect(steps.first?.outputJSON?.contains("\"pixels\":100") == true)
    }
}
