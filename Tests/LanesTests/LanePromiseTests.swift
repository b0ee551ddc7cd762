import Glibc
import SagaLaneTestSupport
import Testing
@testable import SagaLaneLanes
@testable import SagaLaneLog
@testable import SagaLaneSupport

/// Holds `log`'s writer thread until the returned gate is released, so every row submitted
/// meanwhile stays unwritten. Returns once the writer is held.
private func holdWriter(_ log: SagaLog) -> Gate {
    let gate = Gate(), holding = Gate()
    log.submit(.updateJobState(id: "no-such-job", state: .failed, attempts: nil, error: nil)) { _ in
        holding.release()
        gate.wait()
    }
    holding.wait()
    return gate
}

/// What the lane API promises, checked where it is hardest to keep: across a real crash, and
/// while a row is still being written.
@Suite(.timeLimit(.minutes(2)))
struct LanePromiseTests {
    /// A child cancels a queued job while its log's writer is held up, and is killed the moment
    /// the cancel returns. After the restart the job is cancelled in the log and never runs.
    @Test func aCancelThatReturnedIsDurableAcrossACrash() async throws {
        let dir = TemporaryDirectory()
        let path = dir.file("lanes.db")
        let child = try ChildProcess(ChildProcess.testChildPath, ["lane-cancel", path])
        #expect(child.readLine() == "cancelled")
        #expect(child.kill9() == SIGKILL)

        let log = try SagaLog.open(path: path)
        defer { log.close() }
        #expect(try log.job(id: "victim")?.state == .cancelled, "the cancel returned, so its row is durable")
        let lane = try Lane(name: "work", maxConcurrent: 1, store: log)
        defer { lane.shutdown() }
        let rebuilt = ConditionLock<[String]>([])
        let ran = ConditionLock<[String]>([])
        let result = try await lane.recover { row in
            rebuilt.withLock { $0.append(row.id) }
            return RecoveredJob(job: LaneJob(id: row.id) { _ in ran.withLock { $0.append(row.id) }; return "" })
        }
        #expect(result.requeued == 0 && result.failed == 1, "only the blocker, lost while running")
        #expect(rebuilt.withLock { $0 }.isEmpty)
        usleep(50_000)
        #expect(ran.withLock { $0 }.isEmpty, "the cancelled job never runs")
        #expect(try log.job(id: "victim")?.state == .cancelled)
        #expect(try log.job(id: "blocker")?.state == .failed)
    }

    /// The cancel's three forms wait for the cancelled row; meanwhile the job cannot start.
    @Test func cancelReturnsOnlyOnceTheCancelledRowIsDurable() async throws {
        let log = try SagaLog.openInMemory()
        defer { log.close() }
        let lane = try Lane(name: "durable-cancel", maxConcurrent: 1, store: log)
        defer { lane.shutdown() }
        let gate = Gate()
        let outcomes = Outcomes()
        try await lane.submit(LaneJob(id: "blocker") { _ in gate.wait(); return "" }, onComplete: outcomes.record("blocker"))
        for id in ["a", "b", "c"] { try await lane.submit(LaneJob(id: id) { _ in "ran" }, onComplete: outcomes.record(id)) }
        spin { lane.stats.running == 1 }

        let writer = holdWriter(log)
        let answers = ConditionLock<[String: Result<Void, SagaLaneError>]>([:])
        lane.cancel(jobID: "a") { result in answers.withLock { $0["a"] = result } }
        // A host thread of its own, as a blocking call needs.
        let blocking = Completion<Result<Void, SagaLaneError>>()
        let host = try OSThread(name: "test-host") {
            do throws(SagaLaneError) { try lane.cancelBlocking(jobID: "b"); blocking.set(.success(())) } catch { blocking.set(.failure(error)) }
        }
        defer { host.join() }
        let awaiting = Task { () -> Result<Void, SagaLaneError> in
            do throws(SagaLaneError) { try await lane.cancel(jobID: "c"); return .success(()) } catch { return .failure(error) }
        }
        await poll { log.queuedWrites >= 3 }
        usleep(20_000)
        #expect(answers.withLock { $0.isEmpty }, "no answer while the cancelled row is unwritten")
        #expect(outcomes["a"] == nil)
        #expect(lane.stats.queued == 0, "a job being cancelled is not queued any more")
        #expect { try lane.cancelBlocking(jobID: "blocker") } throws: { ($0 as? SagaLaneError)?.code == .notQueued }
        writer.release()
        #expect(blocking.wait().isSuccess)
        #expect(await awaiting.value.isSuccess)
        spin { answers.withLock { $0["a"] } != nil }
        #expect(answers.withLock { $0["a"] }?.isSuccess == true)
        for id in ["a", "b", "c"] {
            #expect(try log.job(id: id)?.state == .cancelled)
            #expect(outcomes[id] == .cancelled)
        }
        gate.release()
        outcomes.waitFor(4)
        #expect(lane.stats.cancelled == 3 && lane.stats.completed == 1)
    }

    /// A cancelled row that cannot be written: the cancel fails with the log's error and the
    /// job stays queued, in its place, and runs.
    @Test func aCancelThatCannotBeRecordedLeavesTheJobQueued() async throws {
        let log = try SagaLog.openInMemory()
        defer { log.close() }
        let lane = try Lane(name: "cancel-refused", maxConcurrent: 1, store: log)
        defer { lane.shutdown() }
        let gate = Gate()
        let order = ConditionLock<[String]>([])
        let outcomes = Outcomes()
        try await lane.submit(LaneJob(id: "blocker") { _ in gate.wait(); return "" }, onComplete: outcomes.record("blocker"))
        for id in ["first", "second"] {
            try await lane.submit(LaneJob(id: id) { _ in order.withLock { $0.append(id) }; return id }, onComplete: outcomes.record(id))
        }
        spin { lane.stats.running == 1 }
        try await log.setReadOnlyForTesting(true)
        await #expect { try await lane.cancel(jobID: "first") } throws: { ($0 as? SagaLaneError)?.code == .readOnly }
        #expect(lane.stats.queued == 2)
        #expect(outcomes["first"] == nil)
        try await log.setReadOnlyForTesting(false)
        gate.release()
        outcomes.waitFor(3)
        #expect(order.withLock { $0 } == ["first", "second"], "it kept its place")
        #expect(outcomes["first"] == .finished(result: "first"))
        #expect(try log.job(id: "first")?.state == .finished)
    }

    /// A job whose queued row is still being written can be cancelled (a saga that ended
    /// right after queueing it): the cancel answers once the cancelled row follows the queued
    /// one, and the job never runs.
    @Test func aJobBeingRecordedCanBeCancelledAndNeverRuns() async throws {
        let log = try SagaLog.openInMemory()
        defer { log.close() }
        let lane = try Lane(name: "early-cancel", maxConcurrent: 1, store: log)
        defer { lane.shutdown() }
        let ran = ConditionLock(false)
        let outcomes = Outcomes()
        let writer = holdWriter(log)
        let queued = ConditionLock<Result<LaneSubmission, SagaLaneError>?>(nil)
        lane.submit(LaneJob(id: "early") { _ in ran.withLock { $0 = true }; return "" },
                    onQueued: { result in queued.withLock { $0 = result } }, onComplete: outcomes.record("early"))
        let answer = ConditionLock<Result<Void, SagaLaneError>?>(nil)
        lane.cancel(jobID: "early") { result in answer.withLock { $0 = result } }
        usleep(20_000)
        #expect(answer.withLock { $0 } == nil, "no answer before the rows are written")
        writer.release()
        spin { answer.withLock { $0 } != nil }
        #expect(answer.withLock { $0 }?.isSuccess == true)
        #expect(outcomes["early"] == .cancelled, "its own completion came first")
        #expect(try log.job(id: "early")?.state == .cancelled)
        #expect(queued.withLock { $0 }?.isSuccess == true, "it was accepted, then cancelled")
        usleep(20_000)
        #expect(!ran.withLock { $0 })
        #expect { try lane.cancelBlocking(jobID: "early") } throws: { ($0 as? SagaLaneError)?.code == .notFound }
    }

    /// A waiter gives up while its job's queued row is being written (by task cancellation,
    /// by `interrupt`, or before it even submitted): the job never runs and the waiter gets
    /// `.cancelled`.
    @Test(arguments: ["task", "interrupt", "already"])
    func submitAndWaitGivenUpBeforeItsJobStartsNeverRunsIt(how: String) async throws {
        let log = try SagaLog.openInMemory()
        defer { log.close() }
        let lane = try Lane(name: "give-up-\(how)", maxConcurrent: 1, store: log)
        defer { lane.shutdown() }
        let ran = ConditionLock(false)
        let job = LaneJob(id: "waited") { _ in ran.withLock { $0 = true }; return "done" }
        let writer = holdWriter(log)
        let waiter = Task { () -> Result<String, SagaLaneError> in
            if how == "already" { withUnsafeCurrentTask { $0?.cancel() } }
            do throws(SagaLaneError) { return .success(try await lane.submitAndWait(job)) } catch { return .failure(error) }
        }
        if how != "already" {
            await poll { log.queuedWrites >= 1 }
            if how == "task" { waiter.cancel() } else { try lane.interrupt(jobID: "waited") }
        }
        usleep(10_000)
        writer.release()
        let result = await waiter.value
        #expect(result.failure?.code == .cancelled, "got \(result)")
        usleep(20_000)
        #expect(!ran.withLock { $0 }, "the job never ran")
        if how == "already" {
            #expect(try log.job(id: "waited") == nil, "given up before it was submitted: nothing was written")
        } else {
            #expect(try log.job(id: "waited")?.state == .cancelled)
        }
        #expect(lane.stats.queued == 0 && lane.stats.running == 0)
    }

    /// `recover` on a lane that has taken jobs is refused and changes nothing: its own
    /// running job is not "lost on restart".
    @Test func recoverOnALiveLaneIsRefused() async throws {
        let log = try SagaLog.openInMemory()
        defer { log.close() }
        let lane = try Lane(name: "live", maxConcurrent: 1, store: log)
        defer { lane.shutdown() }
        let gate = Gate()
        let outcomes = Outcomes()
        try await lane.submit(LaneJob(id: "mine") { _ in gate.wait(); return "ok" }, onComplete: outcomes.record("mine"))
        try await lane.submit(LaneJob(id: "next") { _ in "ok" }, onComplete: outcomes.record("next"))
        spin { (try? log.job(id: "mine"))?.state == .running }
        await #expect { try await lane.recover { _ in nil } } throws: {
            let error = $0 as? SagaLaneError
            return error?.code == .state && error?.message.contains("before the first submit") == true
        }
        #expect(try log.job(id: "mine")?.state == .running)
        #expect(try log.job(id: "next")?.state == .queued)
        gate.release()
        outcomes.waitFor(2)
        #expect(outcomes["mine"] == .finished(result: "ok") && outcomes["next"] == .finished(result: "ok"))
        // A second recovery of a lane that recovered is refused the same way.
        let fresh = try Lane(name: "fresh", maxConcurrent: 1, store: log)
        defer { fresh.shutdown() }
        let nothing = try await fresh.recover { _ in nil }
        #expect(nothing.requeued == 0 && nothing.failed == 0)
        await #expect { try await fresh.recover { _ in nil } } throws: { ($0 as? SagaLaneError)?.code == .state }
    }

    /// A job submitted during recovery with the id of a row being rebuilt is refused; the row's
    /// job is rebuilt, queued and run, and no row is left queued.
    @Test func aSubmitRacingRecoveryForARowsIDIsRefused() async throws {
        let log = try SagaLog.openInMemory()
        defer { log.close() }
        for id in ["a", "b"] { try await log.enqueueJob(id: id, lane: "race", caller: "earlier", priority: 0, metadata: Array(id.utf8)) }
        let lane = try Lane(name: "race", maxConcurrent: 1, store: log)
        defer { lane.shutdown() }
        let outcomes = Outcomes()
        let runs = ConditionLock<[String]>([])
        let racer = ConditionLock<Result<LaneSubmission, SagaLaneError>?>(nil)
        let writer = holdWriter(log)
        let result = try await lane.recover { row in
            if row.id == "a" {
                lane.submit(LaneJob(id: "b") { _ in runs.withLock { $0.append("racer") }; return "" },
                            onQueued: { result in racer.withLock { $0 = result } }, onComplete: { _ in })
            }
            return RecoveredJob(job: LaneJob(id: row.id) { _ in runs.withLock { $0.append(row.id) }; return row.id },
                                onComplete: outcomes.record(row.id))
        }
        #expect(result.requeued == 2 && result.failed == 0)
        #expect(racer.withLock { $0 }?.failure?.code == .exists, "the id is the earlier row's")
        writer.release()
        outcomes.waitFor(2)
        #expect(runs.withLock { $0 } == ["a", "b"])
        for id in ["a", "b"] { #expect(try log.job(id: id)?.state == .finished) }
        #expect(try log.listQueuedJobs(lane: "race").isEmpty)
    }
}

extension Result {
    var isSuccess: Bool {
        if case .success = self { return true }
        return false
    }

    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
