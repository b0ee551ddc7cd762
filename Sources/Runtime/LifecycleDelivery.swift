import SagaLaneLog
import SagaLaneSupport
import Synchronization

/// One subscriber of the lifecycle stream: a thread of its own that reads the log's lifecycle
/// events from a position and hands each to `deliver`, in order, once each.
///
/// Unlike a bus subscription it never drops an event: one it fell behind on, or that was
/// written while it was away (in an earlier process, before a crash), it reads back from the
/// log. What it delivers was durable before it was delivered.
public final class LifecycleDelivery: Sendable {
    private final class Shared: Sendable {
        let cursor: LifecycleCursor
        let stopped = Atomic<Bool>(false)
        init(cursor: LifecycleCursor) { self.cursor = cursor }
    }

    private let shared: Shared
    private let thread: OSThread

    /// - Parameter failed: Called once, on the delivery thread, if events could not be read
    ///   back from the log; the delivery then stops.
    init(feed: LifecycleFeed, after position: UInt64, deliver: @escaping @Sendable (LifecycleEntry) -> Void,
         failed: @escaping @Sendable (SagaLaneError) -> Void) throws(SagaLaneError) {
        let shared = Shared(cursor: feed.subscribe(after: position))
        self.shared = shared
        thread = try OSThread(name: "sagalane-lifecycle", role: .delivery) {
            while !shared.stopped.load(ordering: .acquiring) {
                do throws(SagaLaneError) {
                    guard let entry = try shared.cursor.next() else { return }
                    if shared.stopped.load(ordering: .acquiring) { return }
                    deliver(entry)
                } catch {
                    if !shared.stopped.load(ordering: .acquiring) { failed(error) }
                    return
                }
            }
        }
    }

    /// Stops delivering. Waits for a delivery in progress unless called from the delivery
    /// thread itself. Idempotent.
    public func stop() {
        guard !shared.stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        shared.cursor.cancel()
        if thread.isCurrent { thread.detach() } else { thread.join() }
    }

    deinit { stop() }
}
