import Glibc
import SagaLaneTestSupport
import Synchronization
import Testing
@testable import SagaLaneCoordinator
@testable import SagaLaneLog
@testable import SagaLaneEventLoop
@testable import SagaLaneJSON
@testable import SagaLaneSupport

@Suite(.timeLimit(.minutes(1)))
struct EventBusTests {
    @Test func subscribersSeeOnePublicationOrder() async throws {
        let bus = EventBus()
        let a = bus.subscribe(bufferSize: 100_000)
        let b = bus.subscribe(bufferSize: 100_000)
        let threads = try (0..<4).map { t in
            try OSThread(name: "publisher") {
                for i in 0..<5_000 { bus.publish(type: "T", payload: ["thread": .int(Int64(t)), "i": .int(Int64(i))]) }
            }
        }
        threads.forEach { $0.join() }
        var seenA: [UInt64] = [], seenB: [UInt64] = []
        var perThread: [Int64: Int64] = [:]
        while case .event(let e)? = a.poll() {
            seenA.append(e.version)
            let t = e.payload["thread"]!.int64Value!, i = e.payload["i"]!.int64Value!
            #expect(i == (perThread[t] ?? -1) + 1, "per-publisher order is kept")
            perThread[t] = i
        }
        while case .event(let e)? = b.poll() { seenB.append(e.version) }
        #expect(seenA.count == 20_000)
        #expect(seenA == seenB)
        #expect(seenA == Array(1...20_000))
    }

    /// A loop turn wakes a subscriber's reader once for all the events it published: every
    /// one still arrives, in order, for an async reader and for a blocked thread alike, and a
    /// subscription cancelled in the same turn still hands over what it buffered.
    @Test func eventsPublishedInOneLoopTurnAllReachTheirReaders() async throws {
        let loop = try EventLoop()
        try loop.startThread()
        defer { loop.shutdown() }
        let bus = EventBus()
        let async = bus.subscribe(bufferSize: 1_000)
        let blocking = bus.subscribe(bufferSize: 1_000)
        let cancelled = bus.subscribe(bufferSize: 1_000)
        // Its buffer fills within the turn: its reader is woken before the turn ends.
        let small = bus.subscribe(bufferSize: 10)
        let smallReader = Task { () -> Int in
            var seen = 0
            while let delivery = await small.next() {
                if case .event = delivery { seen += 1 }
                if case .lagged(let n) = delivery { seen += Int(n) }
                if seen == 100 { break }
            }
            return seen
        }
        func values(_ read: () async -> BusDelivery?) async -> [Int64] {
            var got: [Int64] = []
            while let delivery = await read() {
                guard case .event(let e) = delivery, let i = e.payload.int64Value else { continue }
                got.append(i)
                if i == 99 { break }
            }
            return got
        }
        let asyncReader = Task { await values { await async.next() } }
        let blockedGot = ConditionLock<[Int64]>([])
        let blockedReader = try OSThread(name: "reader") {
            var got: [Int64] = []
            while case .event(let e)? = blocking.nextBlocking() {
                got.append(e.payload.int64Value ?? -1)
                if got.last == 99 { break }
            }
            blockedGot.withLock { $0 = got }
        }
        let cancelledReader = Task { () -> [Int64] in
            var got: [Int64] = []
            while let delivery = await cancelled.next() {
                if case .event(let e) = delivery { got.append(e.payload.int64Value ?? -1) }
            }
            return got
        }
        loop.execute {
            for i in 0..<100 { bus.publish(type: "T", payload: .int(Int64(i))) }
            cancelled.cancel()
        }
        #expect(await asyncReader.value == Array(0..<100))
        blockedReader.join()
        #expect(blockedGot.withLock { $0 } == Array(0..<100))
        #expect(await cancelledReader.value == Array(0..<100), "cancel hands over what was buffered, then ends")
        #expect(await smallReader.value == 100, "every event arrives or is counted as missed")
    }

    @Test func aSlowSubscriberIsToldHowManyEventsItMissed() async throws {
        let bus = EventBus()
        let slow = bus.subscribe(bufferSize: 3)
        for i in 1...10 { bus.publish(type: "T", payload: .int(Int64(i))) }
        var got: [BusDelivery] = []
        while let d = slow.poll() { got.append(d) }
        #expect(got.count == 4)
        let firstThree: [Int64] = got.prefix(3).map { delivery in
            if case .event(let e) = delivery { return e.payload.int64Value ?? -1 }
            return -1
        }
        #expect(firstThree == [1, 2, 3])
        #expect(got.last == .lagged(7))
        // Once it catches up it gets events again, after the notice.
        bus.publish(type: "T", payload: 11)
        guard case .event(let e)? = slow.poll() else { Issue.record("expected an event"); return }
        #expect(e.payload == 11)
    }

    @Test func asyncReaderWakesAndCancelEndsTheStream() async throws {
        let bus = EventBus()
        let sub = bus.subscribe()
        async let first = sub.next()
        try await Task.sleep(for: .milliseconds(5))
        bus.publish(type: "Hello")
        guard case .event(let e)? = await first else { Issue.record("expected an event"); return }
        #expect(e.type == "Hello")
        sub.cancel()
        #expect(await sub.next() == nil)
        bus.publish(type: "AfterCancel")
        #expect(sub.poll() == nil)
    }

    @Test func blockingReaderOnAHostThread() throws {
        let bus = EventBus()
        let sub = bus.subscribe()
        let got = ConditionLock<[String]>([])
        let reader = try OSThread(name: "reader") {
            while case .event(let e)? = sub.nextBlocking() { got.withLock { $0.append(e.type) } }
        }
        bus.publish(type: "A")
        bus.publish(type: "B")
        while got.withLock({ $0.count }) < 2 { usleep(1000) }
        sub.cancel()
        reader.join()
        #expect(got.withLock { $0 } == ["A", "B"])
    }

    @Test func eventJSONRoundTrips() throws {
        let e = Event(type: "PanesReaped", sagaID: 7, payload: ["label": "main"], version: 3)
        #expect(try Event(json: try JSON(parsing: e.json.serialized)) == e)
        #expect(throws: SagaLaneError.self) { try Event(json: ["payload": 1]) }
        #expect(throws: SagaLaneError.self) { try Event(json: ["type": "X", "saga_id": "seven"]) }
    }

    /// The text written member by member (what a step's output row stores) is the text of the
    /// object `json` builds, byte for byte, with or without a saga id, whatever the payload.
    @Test func serializedJSONIsTheTextOfJSON() {
        let events = [
            Event(type: "PanesReaped", sagaID: 7, payload: ["label": "main", "n": 2, "nested": ["a": [1, 2.5, nil]]], version: 3),
            Event(type: "Untagged", payload: .null, version: 0),
            Event(type: "Quote\"and\\back\nslash é", sagaID: UInt64.max, payload: "text \u{1}", version: UInt64.max),
            Event(type: "", sagaID: 1, payload: .array([]), version: 1),
        ]
        for event in events {
            #expect(event.serializedJSON == event.json.serialized)
        }
    }
}
