import Glibc
import SagaLaneTestSupport
import Synchronization
import Testing
@testable import SagaLane

/// Ends as soon as it starts: two lifecycle events per saga, and nothing else.
private final class Instant: Saga {
    func start(_ context: SagaContext) -> SagaAction { .done }
    func onEvent(_ event: Event, _ context: SagaContext) -> SagaAction { .wait }
}

/// What a lifecycle subscriber received.
private final class Received: Sendable {
    let entries = ConditionLock<[LifecycleEntry]>([])
    func add(_ entry: LifecycleEntry) { entries.withLock { $0.append(entry) } }
    var count: Int { entries.withLock { $0.count } }
    func waitFor(_ n: Int) -> [LifecycleEntry] {
        let clock = ContinuousClock(), giveUp = clock.now + .seconds(60)
        while count < n && clock.now < giveUp { usleep(2_000) }
        return entries.withLock { $0 }
    }
}

/// Closes `runtime` and waits until it is closed (a close called from a sagalane thread, as
/// the test's host threads are, completes on a thread of its own), so the log can be opened
/// again.
func closeAndWait(_ runtime: Runtime) {
    let closed = Completion<Void>()
    runtime.close { closed.set(()) }
    closed.wait()
}

/// Positions `first...last` each exactly once, in order.
private func consecutive(_ entries: [LifecycleEntry], from first: UInt64, through last: UInt64) -> Bool {
    entries.map(\.position) == Array(first...last)
}

@Suite(.timeLimit(.minutes(2)))
struct LifecycleStreamTests {
    /// A subscriber that stops, misses 10,000 events (more than any bus buffer holds), and
    /// comes back after its position gets each of them once, in order, read back from the log.
    @Test func aSubscriberAwayForTenThousandEventsGetsEachOnceInOrder() async throws {
        try await onHostThread { () throws in
            let dir = TemporaryDirectory()
            let runtime = try Runtime(options: RuntimeOptions(databasePath: dir.file("stream.db"), durability: .normal))
            defer { runtime.close() }
            try runtime.register(SagaType(name: "instant") { _ in Instant() })
            try runtime.start()
            let early = Received()
            let first = try runtime.subscribeLifecycle(after: 0) { early.add($0) }
            let id = try runtime.startSaga(name: "instant", input: .null)
            _ = try runtime.waitForSaga(id: id, timeoutMilliseconds: 30_000)
            let seen = early.waitFor(2)
            runtime.unsubscribe(first)
            #expect(seen.map(\.type) == [Event.sagaStarted, Event.sagaCompleted])
            let position = try #require(seen.last?.position)

            // Away: 5,000 sagas, 10,000 events.
            var ids: [UInt64] = []
            for _ in 0..<5_000 { ids.append(try runtime.startSaga(name: "instant", input: .null, roomTimeoutMilliseconds: -1)) }
            for id in ids { _ = try runtime.waitForSaga(id: id, timeoutMilliseconds: 30_000) }
            #expect(runtime.lifecyclePosition == position + 10_000)

            let back = Received()
            let second = try runtime.subscribeLifecycle(after: position) { back.add($0) }
            defer { runtime.unsubscribe(second) }
            let entries = back.waitFor(10_000)
            #expect(consecutive(entries, from: position + 1, through: position + 10_000))
            var order: [UInt64: [String]] = [:]
            for entry in entries { order[entry.sagaID, default: []].append(entry.type) }
            #expect(order.count == 5_000 && Set(order.keys) == Set(ids))
            #expect(order.values.allSatisfy { $0 == [Event.sagaStarted, Event.sagaCompleted] })
            // It goes on with what comes next, still once each.
            let last = try runtime.startSaga(name: "instant", input: .null)
            _ = try runtime.waitForSaga(id: last, timeoutMilliseconds: 30_000)
            let more = back.waitFor(10_002)
            #expect(consecutive(more, from: position + 1, through: position + 10_002))
            usleep(50_000)
            #expect(back.count == 10_002)
        }
    }

    /// A subscriber in a process killed with SIGKILL, which printed the position of each event
    /// it handled, resumes in the next process after the last one it printed: it gets every
    /// later event once, in order — those committed before the crash it never saw, and those of
    /// the restart's recovery.
    @Test func aSubscriberWhoseProcessCrashedResumesFromItsPosition() async throws {
        try await onHostThread { () throws in
            let dir = TemporaryDirectory()
            let path = dir.file("crash.db")
            let child = try ChildProcess(ChildProcess.testChildPath, ["lifecycle-crash", path])
            var handled: UInt64 = 0
            while let line = child.readLine() {
                let fields = line.split(separator: " ")
                guard fields.count >= 2, fields[0] == "event", let position = UInt64(fields[1]) else { continue }
                #expect(position == handled + 1, "the child's own subscription is in order")
                handled = position
                if handled >= 3_000 { break }
            }
            #expect(child.kill9() == SIGKILL)
            #expect(handled >= 3_000)

            let runtime = try Runtime(options: RuntimeOptions(databasePath: path))
            defer { runtime.close() }
            try runtime.register(SagaType(name: "slow") { _ in Instant() })
            let received = Received()
            // Subscribed before the start, so recovery's events come too.
            let delivery = try runtime.subscribeLifecycle(after: handled) { received.add($0) }
            defer { runtime.unsubscribe(delivery) }
            let recovered = try runtime.start()
            #expect(recovered > 0, "the child had sagas in flight")
            let last = runtime.lifecyclePosition
            #expect(last > handled)
            let entries = received.waitFor(Int(last - handled))
            #expect(consecutive(entries, from: handled + 1, through: last))
            let ends = entries.filter { $0.payloadJSON.contains("\"recovered\":\"mark_failed\"") }
            #expect(ends.count == recovered)
        }
    }
}

@Suite(.timeLimit(.minutes(2)))
struct IdempotencyTests {
    /// Two threads start a saga with the same key at the same moment, 50 times over: each pair
    /// gets one saga, both callers its id; after a restart the key still answers that saga.
    @Test func aKeyStartsOneSagaUnderARaceAndAcrossARestart() async throws {
        try await onHostThread { () throws in
            let dir = TemporaryDirectory()
            let path = dir.file("keys.db")
            final class Holds: Saga {
                func start(_ context: SagaContext) -> SagaAction { .wait }
                func onEvent(_ event: Event, _ context: SagaContext) -> SagaAction { .wait }
            }
            var byKey: [String: UInt64] = [:]
            do {
                let runtime = try Runtime(options: RuntimeOptions(databasePath: path))
                defer { closeAndWait(runtime) }
                try runtime.register(SagaType(name: "holds", timeout: .seconds(600)) { _ in Holds() })
                try runtime.start()
                for n in 0..<50 {
                    let key = "order-\(n)"
                    let ids = ConditionLock<[UInt64]>([])
                    let gate = Atomic<Int>(0)
                    let threads = try (0..<2).map { _ in
                        try OSThread(name: "racer") {
                            gate.add(1, ordering: .relaxed)
                            while gate.load(ordering: .relaxed) < 2 {}
                            if let id = try? runtime.startSaga(name: "holds", input: ["n": .int(Int64(n))], idempotencyKey: key) {
                                ids.withLock { $0.append(id) }
                            }
                        }
                    }
                    threads.forEach { $0.join() }
                    let both = ids.withLock { $0 }
                    #expect(both.count == 2 && Set(both).count == 1, "key \(key): \(both)")
                    byKey[key] = both.first
                }
                #expect(try runtime.logStats()["sagas"]?["running"] == 50)
            }
            // Across a restart (the sagas are now failed_compensation, their rows kept).
            let runtime = try Runtime(options: RuntimeOptions(databasePath: path))
            defer { runtime.close() }
            try runtime.register(SagaType(name: "holds") { _ in Holds() })
            #expect(try runtime.start() == 50)
            for (key, id) in byKey {
                #expect(try runtime.startSaga(name: "holds", input: .null, idempotencyKey: key) == id)
            }
            let fresh = try runtime.startSaga(name: "holds", input: .null, idempotencyKey: "order-new")
            #expect(!byKey.values.contains(fresh))
            #expect(try runtime.saga(id: fresh)?["idempotency_key"] == "order-new")
            #expect { try runtime.startSaga(name: "holds", input: .null, idempotencyKey: "") } throws: {
                ($0 as? SagaLaneError)?.code == .invalidArgument
            }
        }
    }

    /// A lane submit whose key a job holds queues nothing while the job is queued, after it
    /// finished (its row is kept until the sweeper purges it), and after a restart; the job
    /// runs once.
    @Test func aLaneSubmitWithATakenKeyQueuesNothing() async throws {
        try await onHostThread { () throws in
            let dir = TemporaryDirectory()
            let path = dir.file("lanekeys.db")
            let runs = Atomic<Int>(0)
            let release = Atomic<Bool>(false)
            let firstID: String
            do {
                let runtime = try Runtime(options: RuntimeOptions(databasePath: path))
                defer { closeAndWait(runtime) }
                try runtime.start()
                let lane = try runtime.createLane(name: "mail", maxConcurrent: 1, persisted: true)
                // A blocker keeps the keyed job queued for the first repeat: it holds the lane's
                // one worker from before the keyed job is submitted.
                let blocking = Completion<Bool>()
                try runtime.submit(LaneJob(id: "blocker") { _ in
                    blocking.set(true)
                    while !release.load(ordering: .relaxed) { usleep(1_000) }
                    return ""
                }, to: lane)
                #expect(blocking.wait(milliseconds: 30_000) == true)
                let done = Completion<LaneJobCompletion>()
                let first = try runtime.submit(LaneJob(idempotencyKey: "welcome-42") { _ in runs.add(1, ordering: .relaxed); return "sent" },
                                               to: lane, onComplete: { done.set($0) })
                #expect(!first.duplicate)
                firstID = first.jobID
                let queued = try runtime.submit(LaneJob(idempotencyKey: "welcome-42") { _ in runs.add(1, ordering: .relaxed); return "sent" }, to: lane)
                #expect(queued.duplicate && queued.jobID == firstID)
                #expect(lane.stats.queued == 1)
                release.store(true, ordering: .relaxed)
                #expect(done.wait(milliseconds: 30_000)?.outcome == .finished(result: "sent"))
                let finished = try runtime.submit(LaneJob(idempotencyKey: "welcome-42") { _ in runs.add(1, ordering: .relaxed); return "sent" }, to: lane)
                #expect(finished.duplicate && finished.jobID == firstID)
            }
            let runtime = try Runtime(options: RuntimeOptions(databasePath: path))
            defer { runtime.close() }
            try runtime.start()
            let lane = try runtime.createLane(name: "mail", maxConcurrent: 1, persisted: true)
            let again = try runtime.submit(LaneJob(idempotencyKey: "welcome-42") { _ in runs.add(1, ordering: .relaxed); return "sent" }, to: lane)
            #expect(again.duplicate && again.jobID == firstID)
            let other = try runtime.submit(LaneJob(idempotencyKey: "welcome-43") { _ in "sent" }, to: lane)
            #expect(!other.duplicate)
            // An empty key is refused by the lane itself (as a saga's is), and queues nothing.
            #expect { try runtime.submit(LaneJob(idempotencyKey: "") { _ in runs.add(1, ordering: .relaxed); return "" }, to: lane) } throws: {
                ($0 as? SagaLaneError)?.code == .invalidArgument
            }
            usleep(50_000)
            #expect(runs.load(ordering: .relaxed) == 1)
        }
    }
}
