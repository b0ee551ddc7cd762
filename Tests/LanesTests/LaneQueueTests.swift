import SagaLaneTestSupport
import Testing
@testable import SagaLaneLanes
import SagaLaneSupport

/// The queue behind a reference, so that `#expect` can call its mutating methods.
private final class TestQueue<Element> {
    typealias Ticket = LaneQueue<Element>.Ticket
    private var queue = LaneQueue<Element>()
    var count: Int { queue.count }
    var isEmpty: Bool { queue.isEmpty }
    func count(atPriority priority: Int) -> Int { queue.count(atPriority: priority) }
    func append(_ element: Element, priority: Int) -> (ticket: Ticket, position: Int) { queue.append(element, priority: priority) }
    func popFirst() -> Element? { queue.popFirst() }
    func remove(_ ticket: Ticket) -> Element? { queue.remove(ticket) }
    func reinstate(_ element: Element, _ ticket: Ticket) -> Bool { queue.reinstate(element, ticket) }
    func removeAll() -> [Element] { queue.removeAll() }
}

/// The queue as a plain value: no lane, no threads.
struct LaneQueueTests {
    @Test func higherPriorityFirstFIFOWithinAPriorityAndPositions() {
        let queue = TestQueue<String>()
        #expect(queue.isEmpty && queue.popFirst() == nil)
        let pushed: [(String, Int)] = [("low-1", 1), ("high-1", 9), ("mid-1", 5), ("low-2", 1), ("high-2", 9), ("mid-2", 5)]
        let positions = pushed.map { queue.append($0.0, priority: $0.1).position }
        // Each position counts what leaves first: higher priorities, and its own priority's earlier jobs.
        #expect(positions == [0, 0, 1, 3, 1, 3])
        #expect(queue.count == 6 && queue.count(atPriority: 5) == 2 && queue.count(atPriority: 7) == 0)
        var order: [String] = []
        while let next = queue.popFirst() { order.append(next) }
        #expect(order == ["high-1", "high-2", "mid-1", "mid-2", "low-1", "low-2"])
        #expect(queue.isEmpty)
    }

    @Test func extremePrioritiesAreOrderedWithoutArithmetic() {
        let queue = TestQueue<Int>()
        _ = queue.append(0, priority: 0)
        _ = queue.append(1, priority: Int.min)
        _ = queue.append(2, priority: Int.max)
        _ = queue.append(3, priority: -1)
        #expect(queue.append(4, priority: Int.max).position == 1)
        #expect((0..<5).compactMap { _ in queue.popFirst() } == [2, 4, 0, 3, 1])
    }

    @Test func removedElementsNeverLeaveAndStopCounting() {
        let queue = TestQueue<String>()
        let a = queue.append("a", priority: 0).ticket
        let b = queue.append("b", priority: 0).ticket
        let c = queue.append("c", priority: 0).ticket
        #expect(queue.remove(b) == "b")
        #expect(queue.remove(b) == nil, "a ticket is removed once")
        #expect(queue.count == 2 && queue.count(atPriority: 0) == 2)
        #expect(queue.append("d", priority: 0).position == 2, "the removed one no longer counts ahead")
        #expect(queue.popFirst() == "a")
        #expect(queue.remove(a) == nil, "a popped element is no longer queued")
        #expect(queue.remove(c) == "c")
        #expect(queue.popFirst() == "d")
        #expect(queue.popFirst() == nil && queue.isEmpty)
        #expect(queue.remove(LaneQueue<String>.Ticket(priority: 3, sequence: 99)) == nil, "an unknown ticket removes nothing")
    }

    @Test func aReinstatedElementGoesBackWhereItWas() {
        let queue = TestQueue<String>()
        let tickets = ["a", "b", "c", "d"].map { queue.append($0, priority: 1).ticket }
        // Still in its slot: it only stops being skipped.
        #expect(queue.remove(tickets[1]) == "b")
        #expect(queue.reinstate("b", tickets[1]))
        #expect(!queue.reinstate("b", tickets[1]), "it is queued already")
        // Its level compacted away meanwhile: it is put back in ticket order.
        #expect(queue.remove(tickets[2]) == "c")
        #expect(queue.popFirst() == "a")
        for ticket in [tickets[1], tickets[3]] { #expect(queue.remove(ticket) != nil) }
        #expect(queue.isEmpty)
        _ = queue.append("e", priority: 1)
        #expect(queue.reinstate("c", tickets[2]))
        #expect(queue.reinstate("b", tickets[1]))
        #expect(!queue.reinstate("x", LaneQueue<String>.Ticket(priority: 1, sequence: 1_000)), "not a ticket this queue handed out")
        #expect(queue.count == 3)
        #expect([queue.popFirst(), queue.popFirst(), queue.popFirst()] == ["b", "c", "e"])
    }

    /// Against a plain sorted array, under random appends, pops, removals and put-backs: the
    /// same order, counts and positions.
    @Test(arguments: [1, 7, 2024] as [UInt64])
    func matchesASimpleModel(seed: UInt64) {
        var rng = SplitMix(state: seed)
        let queue = TestQueue<Int>()
        // The model: (priority, sequence, value) of every queued element.
        var model: [(priority: Int, sequence: UInt64, value: Int)] = []
        var removed: [(LaneQueue<Int>.Ticket, Int)] = []
        var tickets: [Int: LaneQueue<Int>.Ticket] = [:]
        func modelOrder() -> [Int] {
            model.sorted { $0.priority != $1.priority ? $0.priority > $1.priority : $0.sequence < $1.sequence }.map(\.value)
        }
        for step in 0..<3_000 {
            switch rng.next(10) {
            case 0..<5:
                let priority = rng.next(6) - 2
                let expected = model.filter { $0.priority >= priority }.count
                let (ticket, position) = queue.append(step, priority: priority)
                #expect(position == expected)
                tickets[step] = ticket
                model.append((priority, ticket.sequence, step))
            case 5, 6:
                let expected = modelOrder().first
                #expect(queue.popFirst() == expected)
                if let expected { model.removeAll { $0.value == expected } }
            case 7, 8:
                guard !model.isEmpty else { continue }
                let victim = model[rng.next(model.count)].value
                let ticket = tickets[victim]!
                #expect(queue.remove(ticket) == victim)
                model.removeAll { $0.value == victim }
                removed.append((ticket, victim))
            default:
                guard !removed.isEmpty else { continue }
                let (ticket, value) = removed.remove(at: rng.next(removed.count))
                #expect(queue.reinstate(value, ticket))
                model.append((ticket.priority, ticket.sequence, value))
            }
            #expect(queue.count == model.count)
        }
        var drained: [Int] = []
        while let next = queue.popFirst() { drained.append(next) }
        #expect(drained == modelOrder())
    }

    @Test func removeAllReturnsWhatWasQueuedInOrder() {
        let queue = TestQueue<String>()
        _ = queue.append("b", priority: 0)
        let gone = queue.append("x", priority: 0).ticket
        _ = queue.append("a", priority: 5)
        _ = queue.remove(gone)
        #expect(queue.removeAll() == ["a", "b"])
        #expect(queue.isEmpty && queue.popFirst() == nil)
        #expect(queue.append("c", priority: 0).position == 0)
    }

    /// Cancelling most of a long queue leaves the queue's slots bounded by what is live.
    @Test func manyRemovalsDoNotAccumulate() {
        let queue = TestQueue<Int>()
        var tickets: [LaneQueue<Int>.Ticket] = []
        for i in 0..<10_000 { tickets.append(queue.append(i, priority: 0).ticket) }
        for ticket in tickets.dropFirst(10) { #expect(queue.remove(ticket) != nil) }
        #expect(queue.count == 10)
        #expect((0..<10).compactMap { _ in queue.popFirst() } == Array(0..<10))
        #expect(queue.popFirst() == nil)
    }

    @Test func theWaitEstimateFollowsTheMeanRunTimeAndSaturates() {
        var window = RunTimeWindow()
        #expect(window.mean == .zero)
        #expect(window.estimatedWait(ahead: 10, running: 4, slots: 4) == .zero, "zero until something ran")
        for _ in 0..<10 { window.record(nanoseconds: 1_000_000) }
        #expect(window.mean == .milliseconds(1))
        // Seven ahead and one more for a slot to free up (all four are busy), over four slots:
        // two rounds of work.
        #expect(window.estimatedWait(ahead: 7, running: 4, slots: 4) == .milliseconds(2))
        #expect(window.estimatedWait(ahead: 0, running: 0, slots: 4) == .zero)
        #expect(window.estimatedWait(ahead: 2, running: 1, slots: 0) == .milliseconds(3), "slots below one count as one")
        // Only the last 64 runs count.
        for _ in 0..<64 { window.record(nanoseconds: 5_000_000) }
        #expect(window.mean == .milliseconds(5))
        // Absurd inputs saturate instead of trapping.
        window.record(nanoseconds: -7)
        window.record(nanoseconds: Int64.max)
        #expect(window.mean > .zero)
        #expect(window.estimatedWait(ahead: Int.max, running: Int.max, slots: 1) == .nanoseconds(Int64.max))
        #expect(window.estimatedWait(ahead: -5, running: Int.min, slots: Int.min) >= .zero)
    }

    @Test func retryBackOffsNeverTrapAndStayInRange() {
        let plain = RetryPolicy(initialBackoff: .seconds(1), maxBackoff: .seconds(30), multiplier: 2, jitter: 0)
        #expect(plain.backoff(after: 1) == .seconds(1))
        #expect(plain.backoff(after: 3) == .seconds(4))
        #expect(plain.backoff(after: Int.max) == .seconds(30))
        #expect(plain.backoff(after: Int.min) == .seconds(1))
        var wild = plain
        for multiplier in [Double.nan, .infinity, -.infinity, -3, 0, 1e308] {
            wild.multiplier = multiplier
            for jitter in [Double.nan, .infinity, -1, 0, 1e308] {
                wild.jitter = jitter
                for random in [Double.nan, -1, 0, 0.5, 1, .infinity] {
                    let delay = wild.backoff(after: 1_000_000, random: random)
                    #expect(delay >= .zero && delay <= RetryPolicy.longestBackoff)
                }
            }
        }
        wild = RetryPolicy(initialBackoff: .seconds(-5), maxBackoff: .seconds(-1), jitter: 0)
        #expect(wild.backoff(after: 2) == .zero)
        wild = RetryPolicy(initialBackoff: .seconds(Int64.max), maxBackoff: .seconds(Int64.max), multiplier: 10, jitter: 1)
        #expect(wild.backoff(after: 50, random: 1) == RetryPolicy.longestBackoff)
        // A huge attempt count with a multiplier of 1 computes at once rather than looping.
        wild = RetryPolicy(initialBackoff: .milliseconds(10), maxBackoff: .seconds(1), multiplier: 1, jitter: 0)
        #expect(wild.backoff(after: Int.max) == .milliseconds(10))
    }
}
