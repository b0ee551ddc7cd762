/// One value handed from one thread to others that block for it, with a bounded wait for
/// callers that must do something else meanwhile (run the event loop, in host mode).
public final class Completion<Value: Sendable>: Sendable {
    private struct State {
        var value: Value?
        var onSet: (@Sendable () -> Void)?
    }

    private let lock = ConditionLock(State())

    public init() {}

    /// Sets the value (the first call wins) and wakes every waiter.
    public func set(_ value: Value) {
        let notify = lock.withLock { state -> (@Sendable () -> Void)? in
            guard state.value == nil else { return nil }
            state.value = value
            defer { state.onSet = nil }
            return state.onSet
        }
        lock.condition.broadcast()
        notify?()
    }

    /// Calls `wake` once the value is set (at once if it already is), for a waiter blocked
    /// somewhere other than `wait` (in the event loop's poll).
    public func notify(_ wake: @escaping @Sendable () -> Void) {
        let already = lock.withLock { state -> Bool in
            if state.value != nil { return true }
            state.onSet = wake
            return false
        }
        if already { wake() }
    }

    /// The value, if it was set.
    public var current: Value? { lock.withLock { $0.value } }

    /// Blocks until the value is set.
    public func wait() -> Value {
        lock.withLock(until: { $0.value != nil }) { $0.value! }
    }

    /// Blocks until the value is set or `milliseconds` passed.
    public func wait(milliseconds: Int) -> Value? {
        lock.withLock(until: { $0.value != nil }, timeoutMilliseconds: milliseconds) { $0.value! }
    }
}
