import Glibc
import SagaLaneTestSupport
import Synchronization
import Testing
@testable import SagaLaneEventLoop
@testable import SagaLaneSupport

/// An actor that lives on a loop: its state needs no lock.
private actor LoopBound {
    nonisolated let loop: EventLoop
    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }
    var hits = 0
    init(loop: EventLoop) { self.loop = loop }

    func hit() -> Bool {
        hits += 1
        return loop.inEventLoop
    }

    /// Arms a timer whose callback touches the actor's state synchronously.
    func armTimer(after delay: Duration, then done: @escaping @Sendable () -> Void) {
        loop.scheduleTimer(after: delay) { [self] in
            assumeIsolated { actor in
                actor.hits += 100
                done()
            }
        }
    }
}

private final class Box<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}

@Suite(.timeLimit(.minutes(1)))
struct EventLoopTests {
    @Test func jobsFromManyThreadsRunOnTheLoopInPerThreadOrder() async throws {
        let loop = try EventLoop()
        try loop.startThread()
        defer { loop.shutdown() }
        let seen = Box<[Int: Int]>([:])
        let wrongThread = Atomic<Int>(0)
        let total = Atomic<Int>(0)
        let threads = try (0..<8).map { t in
            try OSThread(name: "producer") {
                for i in 0..<10_000 {
                    loop.execute {
                        if !loop.inEventLoop { wrongThread.add(1, ordering: .relaxed) }
                        // Only the loop thread touches `seen`.
                        if i != (seen.value[t] ?? -1) + 1 { wrongThread.add(1_000_000, ordering: .relaxed) }
                        seen.value[t] = i
                        total.add(1, ordering: .relaxed)
                    }
                }
            }
        }
        threads.forEach { $0.join() }
        while total.load(ordering: .relaxed) < 80_000 { usleep(1000) }
        #expect(wrongThread.load(ordering: .relaxed) == 0)
    }

    @Test func anActorOnTheLoopRunsThereAndAssumeIsolatedWorksInTimers() async throws {
        let loop = try EventLoop()
        try loop.startThread()
        defer { loop.shutdown() }
        let actor = LoopBound(loop: loop)
        #expect(await actor.hit())
        #expect(!loop.inEventLoop)
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            Task { await actor.armTimer(after: .milliseconds(5)) { c.resume() } }
        }
        #expect(await actor.hits == 101)
    }

    @Test func sleepCompletesAndCancellationIsPrompt() async throws {
        let loop = try EventLoop()
        try loop.startThread()
        defer { loop.shutdown() }
        let before = loop.now
        try await loop.sleep(for: .milliseconds(10))
        #expect(loop.now - before >= .milliseconds(10))
        let sleeper = Task { try await loop.sleep(for: .seconds(3600)) }
        try await Task.sleep(for: .milliseconds(5))
        sleeper.cancel()
        await #expect(throws: CancellationError.self) { try await sleeper.value }
        let pending = await withCheckedContinuation { (c: CheckedContinuation<Int, Never>) in
            loop.execute { c.resume(returning: loop.pendingTimerCount) }
        }
        #expect(pending == 0, "the cancelled sleep's timer is gone")
        // A task cancelled before it sleeps does not sleep at all.
        let early = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            try await loop.sleep(for: .seconds(3600))
        }
        await #expect(throws: CancellationError.self) { try await early.value }
    }

    @Test func manualClockFiresInDeadlineOrderOnlyWhenAdvanced() async throws {
        let loop = try EventLoop(clock: .manual)
        try loop.startThread()
        defer { loop.shutdown() }
        let fired = Box<[String]>([])
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            loop.execute {
                loop.scheduleTimer(after: .seconds(3)) { fired.value.append("c") }
                loop.scheduleTimer(after: .seconds(1)) {
                    fired.value.append("a")
                    // Armed by a callback and due within the same advance: fires in it.
                    loop.scheduleTimer(after: .milliseconds(500)) { fired.value.append("a+0.5") }
                }
                loop.scheduleTimer(after: .seconds(2)) { fired.value.append("b1") }
                loop.scheduleTimer(after: .seconds(2)) { fired.value.append("b2") }
                let cancelled = loop.scheduleTimer(after: .seconds(1)) { fired.value.append("never") }
                #expect(loop.cancelTimer(cancelled))
                #expect(!loop.cancelTimer(cancelled))
                c.resume()
            }
        }
        await loop.advance(by: .milliseconds(999))
        #expect(fired.value.isEmpty)
        await loop.advance(by: .milliseconds(1_001))
        #expect(fired.value == ["a", "a+0.5", "b1", "b2"])
        await loop.advance(by: .seconds(10))
        #expect(fired.value == ["a", "a+0.5", "b1", "b2", "c"])
        #expect(loop.now == .seconds(12))
    }

    @Test func aHundredThousandTimersHalfCancelled() async throws {
        let loop = try EventLoop(clock: .manual)
        try loop.startThread()
        defer { loop.shutdown() }
        let counts = Box<[Int]>(Array(repeating: 0, count: 100_000))
        let pending = await withCheckedContinuation { (c: CheckedContinuation<Int, Never>) in
            loop.execute {
                var ids: [TimerID] = []
                for i in 0..<100_000 {
                    ids.append(loop.scheduleTimer(after: .milliseconds(Int64(i % 977))) { counts.value[i] += 1 })
                }
                for i in stride(from: 0, to: 100_000, by: 2) { loop.cancelTimer(ids[i]) }
                c.resume(returning: loop.pendingTimerCount)
            }
        }
        #expect(pending == 50_000)
        await loop.advance(by: .seconds(1))
        #expect(counts.value.enumerated().allSatisfy { $0.offset % 2 == 0 ? $0.element == 0 : $0.element == 1 })
    }

    @Test func aHostCanDriveTheLoopItself() throws {
        let loop = try EventLoop()
        #expect(loop.backendFD >= 0)
        let ran = Box(0)
        loop.execute { ran.value += 1 }
        loop.execute {
            loop.scheduleTimer(after: .milliseconds(1)) { ran.value += 10 }
        }
        while ran.value < 11 {
            loop.run(.once)
        }
        #expect(ran.value == 11)
        #expect(!loop.inEventLoop, "only while run() is running")
        loop.shutdown()
        #expect(loop.lastCloseResult == 0)
    }

    /// Work that arrives from other threads while the loop closes runs after the work queued
    /// before it, one piece at a time: never on two threads at once (which would break every
    /// actor that lives on the loop).
    @Test func workArrivingDuringCloseNeverRunsOnTwoThreadsAtOnce() async throws {
        final class Probe: Sendable {
            let busy = Atomic<Bool>(false)
            let overlaps = Atomic<Int>(0)
            let ran = Atomic<Int>(0)
            func work() {
                if busy.exchange(true, ordering: .acquiringAndReleasing) { overlaps.add(1, ordering: .relaxed) }
                var spin = 0
                for i in 0..<2_000 { spin &+= i }
                _ = spin
                busy.store(false, ordering: .releasing)
                ran.add(1, ordering: .relaxed)
            }
        }
        for _ in 0..<20 {
            let loop = try EventLoop()
            try loop.startThread()
            let probe = Probe()
            let stop = Atomic<Bool>(false)
            for _ in 0..<200 { loop.execute { probe.work() } }
            // A trickle from other threads across the close (a flood would only queue up).
            let submitters = try (0..<3).map { _ in
                try OSThread(name: "submitter") {
                    for _ in 0..<300 where !stop.load(ordering: .relaxed) {
                        loop.execute { probe.work() }
                        usleep(20)
                    }
                }
            }
            usleep(500)
            loop.shutdown()
            stop.store(true, ordering: .relaxed)
            for thread in submitters { thread.join() }
            #expect(probe.overlaps.load(ordering: .relaxed) == 0)
            #expect(probe.ran.load(ordering: .relaxed) >= 200)
        }
    }

    /// A timer a thousand years away arms (and cancels) without trapping.
    @Test func aTimerFarInTheFutureArmsWithoutTrapping() async throws {
        let loop = try EventLoop()
        try loop.startThread()
        defer { loop.shutdown() }
        let fired = Atomic<Bool>(false)
        let pending = await withCheckedContinuation { (continuation: CheckedContinuation<Int, Never>) in
            loop.execute {
                let id = loop.scheduleTimer(after: .seconds(1000 * 365 * 86_400)) { fired.store(true, ordering: .relaxed) }
                _ = loop.scheduleTimer(after: .seconds(Int64.max)) { fired.store(true, ordering: .relaxed) }
                let count = loop.pendingTimerCount
                loop.cancelTimer(id)
                continuation.resume(returning: count)
            }
        }
        #expect(pending == 2)
        let didFire = fired.load(ordering: .relaxed)
        #expect(!didFire)
    }

    @Test func shutdownClosesEveryHandleAndIsIdempotent() async throws {
        let loop = try EventLoop()
        try loop.startThread()
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            loop.execute {
                loop.scheduleTimer(after: .seconds(3600)) {}
                c.resume()
            }
        }
        loop.shutdown()
        loop.shutdown()
        #expect(loop.lastCloseResult == 0)
        // Work that arrives late still runs instead of vanishing.
        let late = Box(false)
        loop.execute { late.value = true }
        #expect(late.value)
    }
}
