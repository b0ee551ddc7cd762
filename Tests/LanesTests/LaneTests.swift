import Glibc
import SagaLaneTestSupport
import Synchronization
import Testing
@testable import SagaLaneLanes
@testable import SagaLaneLog
@testable import SagaLaneEventLoop
@testable import SagaLaneSupport

@Suite(.timeLimit(.minutes(2)))
struct LaneTests {
    @Test func higherPriorityFirstAndFIFOWithinAPriority() throws {
        let lane = try Lane(name: "order", maxConcurrent: 1)
        defer { lane.shutdown() }
        let gate = Gate()
        let order = ConditionLock<[String]>([])
        let outcomes = Outcomes()
        try lane.submitBlocking(LaneJob(id: "blocker") { _ in gate.wait(); return "" }, onComplete: outcomes.record("blocker"))
        spin { lane.stats.running == 1 }
        let jobs: [(String, Int)] = [("low-1", 1), ("high-1", 9), ("mid-1", 5), ("low-2", 1), ("high-2", 9), ("mid-2", 5)]
        var positions: [Int] = []
        for (id, priority) in jobs {
            let submission = try lane.submitBlocking(LaneJob(id: id, priority: priority) { _ in order.withLock { $0.append(id) }; return id },
                                                     onComplete: outcomes.record(id))
            positions.append(submission.position)
        }
        #expect(positions == [0, 0, 1, 3, 1, 3])
        gate.release()
        outcomes.waitFor(7)
        #expect(order.withLock { $0 } == ["high-1", "high-2", "mid-1", "mid-2", "low-1", "low-2"])
        #expect(outcomes["mid-2"] == .finished(result: "mid-2"))
        let stats = lane.stats
        #expect(stats.completed == 7 && stats.queued == 0 && stats.running == 0)
    }

    /// Random job lengths and random bound changes: no job ever starts while the number of
    /// running jobs is at the bound in force.
    @Test(arguments: [3, 11, 2024] as [UInt64])
    func theConcurrencyBoundIsNeverExceeded(seed: UInt64) throws {
        var rng = seed
        func next(_ bound: Int) -> Int {
            rng = rng &* 6364136223846793005 &+ 1442695040888963407
            return Int((rng >> 33) % UInt64(bound))
        }
        let lane = try Lane(name: "bound", maxConcurrent: 3)
        defer { lane.shutdown() }
        let bound = Atomic<Int>(3)
        let runningNow = Atomic<Int>(0)
        let violations = Atomic<Int>(0)
        let outcomes = Outcomes()
        let n = 200
        for i in 0..<n {
            let micros = UInt32(next(2_000))
            try lane.submitBlocking(LaneJob(id: "j\(i)") { _ in
                let now = runningNow.add(1, ordering: .sequentiallyConsistent).newValue
                if now > bound.load(ordering: .sequentiallyConsistent) { violations.add(1, ordering: .relaxed) }
                usleep(micros)
                runningNow.subtract(1, ordering: .sequentiallyConsistent)
                return ""
            }, onComplete: outcomes.record("j\(i)"))
            if i % 25 == 24 {
                let newBound = 1 + next(6)
                // Raise the recorded bound before the lane (a job may start under the new one at
                // once); lower it only after the running jobs drained below it.
                if newBound > bound.load(ordering: .sequentiallyConsistent) {
                    bound.store(newBound, ordering: .sequentiallyConsistent)
                    try lane.setMaxConcurrent(newBound)
                } else {
                    try lane.setMaxConcurrent(newBound)
                    spin { lane.stats.running <= newBound }
                    bound.store(newBound, ordering: .sequentiallyConsistent)
                }
            }
        }
        outcomes.waitFor(n)
        #expect(violations.load(ordering: .relaxed) == 0)
    }

    @Test func raisingTheBoundStartsQueuedJobsAndLoweringLetsRunningOnesFinish() throws {
        let lane = try Lane(name: "resize", maxConcurrent: 1)
        defer { lane.shutdown() }
        let gate = Gate()
        let outcomes = Outcomes()
        for i in 0..<4 { try lane.submitBlocking(LaneJob(id: "g\(i)") { _ in gate.wait(); return "" }, onComplete: outcomes.record("g\(i)")) }
        spin { lane.stats.running == 1 }
        #expect(lane.stats.queued == 3)
        try lane.setMaxConcurrent(3)
        spin { lane.stats.running == 3 }
        #expect(lane.stats.queued == 1)
        try lane.setMaxConcurrent(1)
        let stats = lane.stats
        #expect(stats.running == 3, "running jobs are not interrupted")
        #expect(stats.maxConcurrent == 1)
        gate.release()
        outcomes.waitFor(4)
        #expect(lane.stats.completed == 4)
    }

    @Test func workersRetiredByALowerBoundAreReleased() throws {
        let lane = try Lane(name: "churn", maxConcurrent: 1)
        defer { lane.shutdown() }
        func churn(_ rounds: Int) throws {
            for _ in 0..<rounds {
                try lane.setMaxConcurrent(8)
                try lane.setMaxConcurrent(1)
                spin { lane.workerThreads == 1 }
            }
            try lane.setMaxConcurrent(2)
        }
        // Each round retires 7 threads: 4,200 stacks stay mapped if exited threads are never
        // joined. Other tests running meanwhile map a few dozen.
        try churn(100)
        let before = mappedThreadStacks()
        try churn(600)
        let grown = mappedThreadStacks() - before
        #expect(grown < 400, "\(grown) more thread stacks mapped")
        let outcomes = Outcomes()
        try lane.submitBlocking(LaneJob(id: "after") { _ in "ok" }, onComplete: outcomes.record("after"))
        outcomes.waitFor(1)
        #expect(lane.stats.completed == 1, "the lane still runs jobs")
    }

    /// A bound of a thousand threads or more is refused, not started thread by thread until
    /// the process limit; the lane keeps the bound it had.
    @Test func concurrencyBoundsOutsideTheLimitAreRefused() throws {
        for bad in [0, -1, Int.min, Lane.concurrencyLimit + 1, Int(Int32.max), Int.max] {
            #expect { try Lane(name: "wide", maxConcurrent: bad) } throws: {
                let error = $0 as? SagaLaneError
                return error?.code == .invalidArgument && error?.message.contains("\(Lane.concurrencyLimit)") == true
            }
        }
        let lane = try Lane(name: "bounded", maxConcurrent: 2)
        defer { lane.shutdown() }
        for bad in [0, Int.min, Lane.concurrencyLimit + 1, Int.max] {
            #expect { try lane.setMaxConcurrent(bad) } throws: { ($0 as? SagaLaneError)?.code == .invalidArgument }
        }
        #expect(lane.stats.maxConcurrent == 2 && lane.workerThreads == 2)
    }

    @Test func extremePrioritiesRunInOrder() throws {
        let lane = try Lane(name: "extremes", maxConcurrent: 1)
        defer { lane.shutdown() }
        let gate = Gate()
        let order = ConditionLock<[String]>([])
        let outcomes = Outcomes()
        try lane.submitBlocking(LaneJob(id: "blocker") { _ in gate.wait(); return "" }, onComplete: outcomes.record("blocker"))
        spin { lane.stats.running == 1 }
        for (id, priority) in [("min", Int.min), ("max", Int.max), ("zero", 0), ("max-2", Int.max), ("min-2", Int.min)] {
            try lane.submitBlocking(LaneJob(id: id, priority: priority) { _ in order.withLock { $0.append(id) }; return "" },
                                    onComplete: outcomes.record(id))
        }
        gate.release()
        outcomes.waitFor(6)
        #expect(order.withLock { $0 } == ["max", "max-2", "zero", "min", "min-2"])
    }

    @Test func cancelQueuedRunningAndUnknownJobs() throws {
        let lane = try Lane(name: "cancel", maxConcurrent: 1)
        defer { lane.shutdown() }
        let gate = Gate()
        let ran = Atomic<Int>(0)
        let outcomes = Outcomes()
        try lane.submitBlocking(LaneJob(id: "running") { _ in gate.wait(); return "" }, onComplete: outcomes.record("running"))
        try lane.submitBlocking(LaneJob(id: "queued") { _ in ran.add(1, ordering: .relaxed); return "" }, onComplete: outcomes.record("queued"))
        spin { lane.stats.running == 1 }
        try lane.cancelBlocking(jobID: "queued")
        #expect(outcomes["queued"] == .cancelled)
        #expect { try lane.cancelBlocking(jobID: "running") } throws: { ($0 as? SagaLaneError)?.code == .notQueued }
        #expect { try lane.cancelBlocking(jobID: "nobody") } throws: { ($0 as? SagaLaneError)?.code == .notFound }
        #expect { try lane.cancelBlocking(jobID: "queued") } throws: { ($0 as? SagaLaneError)?.code == .notFound }
        gate.release()
        outcomes.waitFor(2)
        #expect(ran.load(ordering: .relaxed) == 0)
        #expect(lane.stats.cancelled == 1)
    }

    /// A lane dropped without `shutdown()` shuts down like one that was: its queued jobs end
    /// cancelled, its running job sees the flag, and nothing touches freed memory.
    @Test func droppingALaneShutsItDown() throws {
        let outcomes = Outcomes()
        for round in 0..<50 {
            var lane: Lane? = try Lane(name: "dropped-\(round)", maxConcurrent: 2)
            if round % 2 == 0 {
                try lane!.submitBlocking(LaneJob(id: "long") { context in
                    while !context.isCancelled { usleep(100) }
                    throw LaneJobCancelled()
                }, onComplete: outcomes.record("long-\(round)"))
                try lane!.submitBlocking(LaneJob(id: "a") { _ in "" }, onComplete: outcomes.record("a-\(round)"))
            }
            lane = nil
        }
        #expect(outcomes.count == 50)
        #expect((0..<25).allSatisfy { outcomes["long-\($0 * 2)"] == .cancelled })
    }

    @Test func submitAndWaitReturnsResultsErrorsAndHonoursCancellation() async throws {
        let lane = try Lane(name: "wait", maxConcurrent: 1)
        defer { lane.shutdown() }
        #expect(try await lane.submitAndWait(LaneJob { _ in "forty-two" }) == "forty-two")
        struct Boom: Error, CustomStringConvertible { var description: String { "boom" } }
        await #expect { try await lane.submitAndWait(LaneJob { _ in throw Boom() }) } throws: {
            let e = $0 as? SagaLaneError
            return e?.code == .jobFailed && e?.message.contains("boom") == true
        }
        // A running job sees its flag when the waiter is cancelled.
        let started = Atomic<Bool>(false)
        let waiter = Task {
            try await lane.submitAndWait(LaneJob(id: "long") { context in
                started.store(true, ordering: .relaxed)
                while !context.isCancelled { usleep(1_000) }
                throw LaneJobCancelled()
            })
        }
        spin { started.load(ordering: .relaxed) }
        waiter.cancel()
        await #expect { try await waiter.value } throws: { ($0 as? SagaLaneError)?.code == .cancelled }
        try lane.submitBlocking(LaneJob(id: "dup") { _ in usleep(50_000); return "" })
        #expect { try lane.submitBlocking(LaneJob(id: "dup") { _ in "" }) } throws: { ($0 as? SagaLaneError)?.code == .exists }
    }

    @Test func persistedRoundTripOfEveryState() async throws {
        let dir = TemporaryDirectory()
        let log = try SagaLog.open(path: dir.file("lanes.db"), durability: .normal)
        defer { log.close() }
        let lane = try Lane(name: "p", maxConcurrent: 1, store: log)
        defer { lane.shutdown() }
        let gate = Gate()
        let outcomes = Outcomes()
        try await lane.submit(LaneJob(id: "blocker", caller: "alice", priority: 3, metadata: [7]) { _ in gate.wait(); return "ok" },
                              onComplete: outcomes.record("blocker"))
        try await lane.submit(LaneJob(id: "doomed") { _ in throw SagaLaneError(.invalidArgument, "bad input") }, onComplete: outcomes.record("doomed"))
        try await lane.submit(LaneJob(id: "dropped") { _ in "never" }, onComplete: outcomes.record("dropped"))
        #expect(try log.job(id: "dropped")?.state == .queued)
        spin { (try? log.job(id: "blocker"))?.state == .running }
        #expect(try log.listRunningJobs(lane: "p").map(\.id) == ["blocker"])
        #expect(try log.listQueuedJobs(lane: "p").map(\.id) == ["doomed", "dropped"])
        try await lane.cancel(jobID: "dropped")
        gate.release()
        outcomes.waitFor(3)
        let blocker = try #require(try log.job(id: "blocker"))
        #expect(blocker.state == .finished && blocker.caller == "alice" && blocker.priority == 3 && blocker.metadata == [7])
        #expect(blocker.startedAt != nil && blocker.finishedAt != nil && blocker.attempts == 1)
        let doomed = try #require(try log.job(id: "doomed"))
        #expect(doomed.state == .failed && doomed.error?.contains("bad input") == true)
        #expect(try log.job(id: "dropped")?.state == .cancelled)
        #expect(outcomes["dropped"] == .cancelled)
    }

    @Test func aJobWhoseRowCannotBeWrittenIsRefusedAndNeverRuns() async throws {
        let log = try SagaLog.openInMemory()
        let lane = try Lane(name: "refuse", maxConcurrent: 1, store: log)
        defer { lane.shutdown() }
        try await log.setReadOnlyForTesting(true)
        let ran = Atomic<Bool>(false)
        await #expect { try await lane.submit(LaneJob(id: "x") { _ in ran.store(true, ordering: .relaxed); return "" }) } throws: {
            let e = $0 as? SagaLaneError
            return e?.code == .readOnly
        }
        log.close()
        await #expect { try await lane.submit(LaneJob(id: "y") { _ in ran.store(true, ordering: .relaxed); return "" }) } throws: {
            ($0 as? SagaLaneError)?.code == .closed
        }
        usleep(20_000)
        let didRun = ran.load(ordering: .relaxed)
        #expect(!didRun)
        #expect(lane.stats.queued == 0 && lane.stats.running == 0)
    }

    /// A child process with two jobs running and eighteen queued is killed with SIGKILL. After
    /// restart the running ones are failed "lost on restart" and the queued ones run exactly once.
    @Test func recoveryAfterARealCrash() async throws {
        let dir = TemporaryDirectory()
        let path = dir.file("lanes.db")
        let child = try ChildProcess(ChildProcess.testChildPath, ["lane-run", path])
        #expect(child.readLine() == "ready")
        #expect(child.kill9() == SIGKILL)

        let log = try SagaLog.open(path: path)
        defer { log.close() }
        let runningBefore = Set(try log.listRunningJobs(lane: "work").map(\.id))
        #expect(runningBefore.count == 2)
        #expect(try log.listQueuedJobs(lane: "work").count == 18)
        let lane = try Lane(name: "work", maxConcurrent: 4, store: log)
        defer { lane.shutdown() }
        let runs = ConditionLock<[String: Int]>([:])
        let outcomes = Outcomes()
        let result = try await lane.recover(reconstruct: { row in
            let label = String(decoding: row.metadata, as: UTF8.self)
            return RecoveredJob(job: LaneJob(id: row.id, metadata: row.metadata) { _ in runs.withLock { $0[label, default: 0] += 1 }; return label },
                                onComplete: { end in outcomes.all.withLock { $0[end.jobID] = end.outcome } })
        })
        #expect(result.requeued == 18 && result.failed == 2)
        outcomes.waitFor(18)
        for id in runningBefore {
            let row = try #require(try log.job(id: id))
            #expect(row.state == .failed && row.error == "lost on restart")
            #expect(runs.withLock { $0[id] } == nil, "a job that was running is never re-run")
        }
        let ranOnce = runs.withLock { $0 }
        #expect(ranOnce.count == 18 && ranOnce.values.allSatisfy { $0 == 1 })
        spin { (try? log.listQueuedJobs(lane: "work").isEmpty) == true && (try? log.listRunningJobs(lane: "work").isEmpty) == true }
        for id in ranOnce.keys { #expect(try log.job(id: id)?.state == .finished) }
        // Recovery with a reconstruct function that cannot rebuild a job fails it.
        try await log.enqueueJob(id: "orphan", lane: "work", caller: "x", priority: 0, metadata: [])
        let again = try await Lane(name: "work", maxConcurrent: 1, store: log).recover(reconstruct: { _ in nil })
        #expect(again.failed == 1)
        #expect(try log.job(id: "orphan")?.error == "lost on restart: cannot reconstruct")
    }

    @Test func retriesBackOffOnTheManualClock() async throws {
        let loop = try EventLoop(clock: .manual)
        try loop.startThread()
        defer { loop.shutdown() }
        let log = try SagaLog.openInMemory()
        defer { log.close() }
        let lane = try Lane(name: "retry", maxConcurrent: 1, store: log, loop: loop)
        defer { lane.shutdown() }
        let attempts = Atomic<Int>(0)
        let outcomes = Outcomes()
        let policy = RetryPolicy(maxAttempts: 3, initialBackoff: .seconds(1), maxBackoff: .seconds(60), multiplier: 2, jitter: 0)
        try await lane.submit(LaneJob(id: "flaky", retry: policy) { context in
            attempts.add(1, ordering: .relaxed)
            if context.attempt < 3 { throw SagaLaneError(.invalidArgument, "try \(context.attempt) failed") }
            return "third time lucky"
        }, onComplete: outcomes.record("flaky"))
        spin { attempts.load(ordering: .relaxed) == 1 && (try? log.job(id: "flaky"))?.state == .queued }
        while await pendingTimers(loop) == 0 { usleep(500) }
        #expect(try log.job(id: "flaky")?.attempts == 1)
        await loop.advance(by: .milliseconds(999))
        usleep(20_000)
        #expect(attempts.load(ordering: .relaxed) == 1, "no retry before the back-off elapsed")
        await loop.advance(by: .milliseconds(1))
        spin { attempts.load(ordering: .relaxed) == 2 && (try? log.job(id: "flaky"))?.state == .queued }
        while await pendingTimers(loop) == 0 { usleep(500) }
        await loop.advance(by: .milliseconds(1_999))
        usleep(20_000)
        #expect(attempts.load(ordering: .relaxed) == 2, "the second back-off is twice the first")
        await loop.advance(by: .milliseconds(1))
        outcomes.waitFor(1)
        #expect(outcomes["flaky"] == .finished(result: "third time lucky"))
        #expect(try log.job(id: "flaky")?.attempts == 3)

        let hopeless = Outcomes()
        try await lane.submit(LaneJob(id: "hopeless", retry: RetryPolicy(maxAttempts: 2, initialBackoff: .seconds(1), jitter: 0)) { _ in
            throw SagaLaneError(.invalidArgument, "always broken")
        }, onComplete: hopeless.record("hopeless"))
        // Its running row carries attempts 1 before the body even runs: wait for the back-off.
        spin { (try? log.job(id: "hopeless")).map { $0?.state == .queued && $0?.attempts == 1 } == true }
        while await pendingTimers(loop) == 0 { usleep(500) }
        await loop.advance(by: .seconds(1))
        hopeless.waitFor(1)
        guard case .failed(let error) = hopeless["hopeless"] else { Issue.record("expected failure"); return }
        #expect(error.contains("always broken") && hopeless.attempts["hopeless"] == 2)
        let row = try #require(try log.job(id: "hopeless"))
        #expect(row.state == .failed && row.attempts == 2 && row.error?.contains("always broken") == true)
        #expect(RetryPolicy(initialBackoff: .seconds(1), maxBackoff: .seconds(5), jitter: 0).backoff(after: 10) == .seconds(5))
        #expect(RetryPolicy(initialBackoff: .seconds(1), jitter: 0.5).backoff(after: 1, random: 1) == .milliseconds(1_500))
    }

    /// A job waiting out a retry back-off is neither queued nor running. A shutdown then ends
    /// it cancelled, reported once (after its cancelled row, for a persisted lane), and its
    /// back-off timer firing later does nothing.
    @Test(arguments: [true, false])
    func shutdownDuringARetryBackOffCancelsTheJobOnce(persisted: Bool) async throws {
        let loop = try EventLoop(clock: .manual)
        try loop.startThread()
        defer { loop.shutdown() }
        let log = try SagaLog.openInMemory()
        defer { log.close() }
        let lane = try Lane(name: "backoff", maxConcurrent: 1, store: persisted ? log : nil, loop: loop)
        defer { lane.shutdown() }
        let attempts = Atomic<Int>(0)
        let reports = ConditionLock<[LaneJobOutcome]>([])
        let policy = RetryPolicy(maxAttempts: 3, initialBackoff: .seconds(1), jitter: 0)
        try await lane.submit(LaneJob(id: "flaky", retry: policy) { _ in
            attempts.add(1, ordering: .relaxed)
            throw SagaLaneError(.invalidArgument, "not yet")
        }, onComplete: { end in reports.withLock { $0.append(end.outcome) } })
        spin { attempts.load(ordering: .relaxed) == 1 }
        if persisted { spin { (try? log.job(id: "flaky"))?.state == .queued } }
        while await pendingTimers(loop) == 0 { usleep(500) }
        #expect { try lane.cancelBlocking(jobID: "flaky") } throws: { ($0 as? SagaLaneError)?.code == .notQueued }
        #expect(lane.stats.queued == 0 && lane.stats.running == 0)

        lane.shutdown()
        #expect(wait(upTo: 10) { reports.withLock { !$0.isEmpty } }, "shutdown reports the job waiting for its retry")
        #expect(reports.withLock { $0 } == [.cancelled])
        if persisted { #expect(try log.job(id: "flaky")?.state == .cancelled) }
        #expect(lane.stats.cancelled == 1)

        await loop.advance(by: .seconds(10))
        usleep(20_000)
        #expect(reports.withLock { $0 } == [.cancelled], "the back-off timer firing later reports nothing")
        #expect(attempts.load(ordering: .relaxed) == 1, "and runs nothing")
        #expect(lane.stats.cancelled == 1 && lane.stats.queued == 0)
        if persisted { #expect(try log.job(id: "flaky")?.state == .cancelled) }
    }

    /// Giving up on jobs: a queued one and one waiting out a back-off end cancelled at once
    /// (the timer firing later does nothing); a running one sees its flag; unknown ids are
    /// `notFound`.
    @Test func interruptCancelsQueuedAndRetryingJobsAndFlagsRunningOnes() async throws {
        let loop = try EventLoop(clock: .manual)
        try loop.startThread()
        defer { loop.shutdown() }
        let lane = try Lane(name: "interrupt", maxConcurrent: 1, loop: loop)
        defer { lane.shutdown() }
        let outcomes = Outcomes()
        let flakyRuns = Atomic<Int>(0)
        try await lane.submit(LaneJob(id: "flaky", retry: RetryPolicy(maxAttempts: 3, initialBackoff: .seconds(1), jitter: 0)) { _ in
            flakyRuns.add(1, ordering: .relaxed)
            throw SagaLaneError(.invalidArgument, "not yet")
        }, onComplete: outcomes.record("flaky"))
        while await pendingTimers(loop) == 0 { usleep(500) }
        try lane.interrupt(jobID: "flaky")
        #expect(outcomes["flaky"] == .cancelled)

        try await lane.submit(LaneJob(id: "running") { context in
            while !context.isCancelled { usleep(200) }
            throw LaneJobCancelled()
        }, onComplete: outcomes.record("running"))
        try await lane.submit(LaneJob(id: "queued") { _ in "ran" }, onComplete: outcomes.record("queued"))
        spin { lane.stats.running == 1 }
        try lane.interrupt(jobID: "queued")
        #expect(outcomes["queued"] == .cancelled)
        try lane.interrupt(jobID: "running")
        #expect(wait(upTo: 10) { outcomes["running"] != nil })
        #expect(outcomes["running"] == .cancelled)
        #expect { try lane.interrupt(jobID: "nobody") } throws: { ($0 as? SagaLaneError)?.code == .notFound }

        await loop.advance(by: .seconds(10))
        usleep(20_000)
        #expect(flakyRuns.load(ordering: .relaxed) == 1, "the back-off timer firing later runs nothing")
        #expect(outcomes.count == 3 && lane.stats.cancelled == 3)
    }

}
