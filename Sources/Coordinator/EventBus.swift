import Glibc
import SagaLaneEventLoop
import SagaLaneJSON
import SagaLaneLog
import SagaLaneSupport
import Synchronization

/// The runtime's event bus: `publish` from any thread, every subscriber sees events in
/// publication order.
///
/// Two kinds of receivers, with different guarantees:
/// - **The coordinator** is attached as a *sink*: it receives every event, in order, and none is
///   ever dropped, because an event addressed to a saga may be the only thing that moves it on.
///   The sink only queues the event for the loop, so it never blocks a publisher.
/// - **External subscribers** (`subscribe`) each get a bounded buffer. A subscriber that falls
///   behind by more than its buffer loses the newest events rather than slowing the runtime
///   down; it is then told how many it missed with a `.lagged(n)` delivery, placed exactly where
///   the events went missing. Back-pressure was rejected: a stuck host callback would stall
///   every saga.
public final class EventBus: Sendable {
    private struct State {
        var nextVersion: UInt64 = 1
        var sinks: [Int: @Sendable (Event) -> Void] = [:]
        var subscriptions: [Int: BusSubscription] = [:]
        var nextID = 0
    }

    private let state = ConditionLock(State())

    /// How many undelivered events a subscription holds, by default, before it starts dropping
    /// the newest.
    public static let defaultBufferSize = 4096

    public init() {}

    /// Publishes `event`, stamping it with the next version. Safe from any thread.
    /// - Returns: The event as delivered, with its version.
    @discardableResult
    public func publish(_ event: Event) -> Event {
        state.withLock { state in
            var stamped = event
            stamped.version = state.nextVersion
            state.nextVersion += 1
            // Delivering under the lock is what makes the order global: two publishers racing
            // cannot be seen in different orders by different receivers.
            for sink in state.sinks.values { sink(stamped) }
            for subscription in state.subscriptions.values { subscription.push(stamped) }
            return stamped
        }
    }

    /// Publishes an event built from its parts. Safe from any thread.
    @discardableResult
    public func publish(type: String, sagaID: UInt64? = nil, payload: JSON = .null) -> Event {
        publish(Event(type: type, sagaID: sagaID, payload: payload))
    }

    /// The version the next published event will get.
    public var nextVersion: UInt64 { state.withLock { $0.nextVersion } }

    /// Attaches a lossless receiver. `sink` runs on the publishing thread with the bus locked:
    /// it must only hand the event off (never block, never publish).
    func attachSink(_ sink: @escaping @Sendable (Event) -> Void) -> Int {
        state.withLock { state in
            state.nextID += 1
            state.sinks[state.nextID] = sink
            return state.nextID
        }
    }

    func detachSink(_ id: Int) {
        _ = state.withLock { $0.sinks.removeValue(forKey: id) }
    }

    /// Subscribes to every event published from now on.
    /// - Parameter bufferSize: How many undelivered events the subscription holds before it
    ///   starts dropping the newest ones (and reporting `.lagged`).
    public func subscribe(bufferSize: Int = EventBus.defaultBufferSize) -> BusSubscription {
        let subscription = BusSubscription(capacity: max(1, bufferSize), bus: self)
        state.withLock { state in
            state.nextID += 1
            subscription.id = state.nextID
            state.subscriptions[state.nextID] = subscription
        }
        return subscription
    }

    fileprivate func remove(_ subscription: BusSubscription) {
        _ = state.withLock { $0.subscriptions.removeValue(forKey: subscription.id) }
    }
}

/// What an external subscriber receives.
public enum BusDelivery: Sendable, Equatable {
    case event(Event)
    /// This many events were published here but dropped because the subscriber's buffer was
    /// full.
    case lagged(UInt64)
}

/// One external subscriber's bounded buffer. Read it with `next()` (async) or `nextBlocking()`
/// (from a thread of your own) — one reader at a time.
public final class BusSubscription: @unchecked Sendable {
    // Guarded by `lock`; `id` is written once before the subscription is shared.
    fileprivate var id = 0
    private let capacity: Int
    private weak var bus: EventBus?
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let ready = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var buffer: [BusDelivery] = []
    private var head = 0
    private var bufferedEvents = 0
    private var closed = false
    private var waiter: CheckedContinuation<BusDelivery?, Never>?
    /// Readers blocked in `nextBlocking()`.
    private var blockedReaders = 0
    /// A wake-up of the reader is put off to the end of the publishing thread's batch.
    private var wakePending = false

    fileprivate init(capacity: Int, bus: EventBus) {
        self.capacity = capacity
        self.bus = bus
        pthread_mutex_init(lock, nil)
        pthread_cond_init(ready, nil)
    }

    deinit {
        pthread_cond_destroy(ready)
        pthread_mutex_destroy(lock)
        lock.deallocate()
        ready.deallocate()
    }

    fileprivate func push(_ event: Event) {
        pthread_mutex_lock(lock)
        if closed {
            pthread_mutex_unlock(lock)
            return
        }
        let delivery: BusDelivery
        if bufferedEvents < capacity {
            delivery = .event(event)
            bufferedEvents += 1
        } else if head < buffer.count, case .lagged(let n) = buffer[buffer.count - 1] {
            buffer[buffer.count - 1] = .lagged(n + 1)
            pthread_mutex_unlock(lock)
            return
        } else {
            delivery = .lagged(1)
        }
        buffer.append(delivery)
        guard waiter != nil || blockedReaders > 0 else {
            pthread_mutex_unlock(lock)
            return
        }
        // Inside a batch (a turn of the event loop), one wake-up at its end serves every event
        // the batch publishes; but from half full on, the reader starts at once, so that a
        // reader fast enough to keep up never lags because its wake-up was put off.
        if bufferedEvents * 2 < capacity {
            if wakePending || WakeBatch.putOff({ self.wakeReader() }) {
                wakePending = true
                pthread_mutex_unlock(lock)
                return
            }
        }
        wakeReaderLocked()
    }

    private func wakeReader() {
        pthread_mutex_lock(lock)
        wakePending = false
        wakeReaderLocked()
    }

    /// Hands the first buffered delivery to a waiting `next()`, or wakes a blocked reader, and
    /// unlocks `lock`.
    private func wakeReaderLocked() {
        if let waiter, let delivery = take() {
            self.waiter = nil
            pthread_mutex_unlock(lock)
            waiter.resume(returning: delivery)
            return
        }
        pthread_cond_signal(ready)
        pthread_mutex_unlock(lock)
    }

    /// Takes the first buffered delivery; `lock` must be held.
    private func take() -> BusDelivery? {
        guard head < buffer.count else { return nil }
        let delivery = buffer[head]
        head += 1
        if case .event = delivery { bufferedEvents -= 1 }
        if head == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            head = 0
        } else if head > 1024 && head * 2 > buffer.count {
            buffer.removeFirst(head)
            head = 0
        }
        return delivery
    }

    /// The next delivery, waiting for one if none is buffered; `nil` once cancelled.
    public func next() async -> BusDelivery? {
        await withCheckedContinuation { (continuation: CheckedContinuation<BusDelivery?, Never>) in
            pthread_mutex_lock(lock)
            if let delivery = take() {
                pthread_mutex_unlock(lock)
                continuation.resume(returning: delivery)
            } else if closed {
                pthread_mutex_unlock(lock)
                continuation.resume(returning: nil)
            } else {
                precondition(waiter == nil, "BusSubscription.next() has one reader at a time")
                waiter = continuation
                pthread_mutex_unlock(lock)
            }
        }
    }

    /// The next delivery, blocking the calling thread until there is one; `nil` once
    /// cancelled. For host threads that hand events to C callbacks.
    public func nextBlocking() -> BusDelivery? {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        while true {
            if let delivery = take() { return delivery }
            if closed { return nil }
            blockedReaders += 1
            pthread_cond_wait(ready, lock)
            blockedReaders -= 1
        }
    }

    /// The next delivery if one is buffered, without waiting.
    public func poll() -> BusDelivery? {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return take()
    }

    /// Stops the subscription: no more events are buffered, and a waiting reader gets `nil`
    /// once the buffer is drained. Safe from any thread; idempotent.
    public func cancel() {
        bus?.remove(self)
        pthread_mutex_lock(lock)
        closed = true
        let waiter = self.waiter
        self.waiter = nil
        // A waiting reader still gets what is buffered (a put-off wake-up may be pending).
        let delivery = waiter != nil ? take() : nil
        pthread_cond_broadcast(ready)
        pthread_mutex_unlock(lock)
        waiter?.resume(returning: delivery)
    }
}
