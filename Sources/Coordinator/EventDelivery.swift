import SagaLaneSupport
import Synchronization

/// One subscriber's delivery thread: takes events from a bus subscription in publication
/// order and hands each to `deliver`.
public final class EventDelivery: Sendable {
    private final class Shared: Sendable {
        let subscription: BusSubscription
        let stopped = Atomic<Bool>(false)
        init(subscription: BusSubscription) { self.subscription = subscription }
    }

    private let shared: Shared
    private let thread: OSThread

    package init(bus: EventBus, bufferSize: Int, deliver: @escaping @Sendable (BusDelivery) -> Void) throws(SagaLaneError) {
        let shared = Shared(subscription: bus.subscribe(bufferSize: bufferSize))
        self.shared = shared
        do {
            thread = try OSThread(name: "sagalane-delivery", role: .delivery) {
                while let delivery = shared.subscription.nextBlocking() {
                    if shared.stopped.load(ordering: .acquiring) { break }
                    deliver(delivery)
                }
            }
        } catch {
            shared.subscription.cancel()
            throw error
        }
    }

    /// Stops delivering; buffered events are dropped. Waits for a delivery in progress unless
    /// called from the delivery thread itself. Idempotent.
    package func stop() {
        guard !shared.stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        shared.subscription.cancel()
        if thread.isCurrent { thread.detach() } else { thread.join() }
    }

    deinit { stop() }
}
