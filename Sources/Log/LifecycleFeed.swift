import SagaLaneJSON
import SagaLaneSupport
import Synchronization

/// One event of the log's lifecycle stream: a saga started, began compensating, was resumed,
/// ended, or an operator acted on it.
///
/// Each is written in the same transaction as the change it announces, at the next
/// `position`: positions rise by one with each event a runtime writes and are never reused,
/// also after a vacuum deleted the events of old sagas. A subscriber that stored the position
/// of the last event it handled asks for the events after it and gets every one since, in
/// order, however long it was away (see `LifecycleFeed`).
public struct LifecycleEntry: Sendable, Equatable {
    public var position: UInt64
    public var sagaID: UInt64
    /// `SagaStarted`, `SagaCompensating`, `SagaResumed`, `SagaCompleted`, `SagaFailed`,
    /// `SagaOperatorAction`.
    public var type: String
    public var payloadJSON: String
    /// When its transaction committed (the batch's time).
    public var at: Timestamp

    public init(position: UInt64, sagaID: UInt64, type: String, payloadJSON: String, at: Timestamp) {
        self.position = position
        self.sagaID = sagaID
        self.type = type
        self.payloadJSON = payloadJSON
        self.at = at
    }

    /// `{"position", "saga_id", "type", "payload", "at"}`, the payload embedded as JSON.
    public var json: JSON {
        [
            "position": .int(Int64(bitPattern: position)),
            "saga_id": .int(Int64(bitPattern: sagaID)),
            "type": .string(type),
            "payload": (try? JSON(parsing: payloadJSON)) ?? .string(payloadJSON),
            "at": .string(at.iso8601),
        ]
    }
}

/// The types of lifecycle events, as the log's stream and the runtime's bus carry them.
public enum LifecycleType {
    /// A saga's running row is durable. Payload `{"name"}`.
    public static let started = "SagaStarted"
    /// A failed saga began undoing its succeeded steps. Payload `{"name", "reason"}`, and
    /// `"by": "operator"` with its `"note"` when an operator asked for it.
    public static let compensating = "SagaCompensating"
    /// A saga interrupted by a restart (or reopened by an operator) goes on. Payload `{"name",
    /// "by": "recovery" | "operator", "phase": "running" | "compensating"}`, `"note"`.
    public static let resumed = "SagaResumed"
    /// The saga completed. Payload `{"name", "state": "completed"}`.
    public static let completed = "SagaCompleted"
    /// The saga ended any other way: `{"name", "state", "reason"}`, `"state"` one of `failed`,
    /// `compensated`, `failed_compensation`; `"durable": false` when its row could not be
    /// written (then on the bus only), `"recovered": "mark_failed"` for a saga start-up
    /// recovery ended.
    public static let failed = "SagaFailed"
    /// An operator acted on a saga: payload `{"name", "action", "note"}`, `"action"` one of
    /// `resolve`, `request_cancel`, `request_resume`, `request_retry_compensation`,
    /// `request_dropped`.
    public static let operatorAction = "SagaOperatorAction"
}

/// The lifecycle stream of a log: what its writer committed, fed to cursors that each read it
/// from a position of their own.
///
/// The writer hands each batch's events to the feed right after the commit, so nothing reaches
/// a cursor before it is durable. The feed keeps the most recent events in memory; a cursor
/// further behind reads the events it missed from the log, page by page, and then goes on from
/// memory. No cursor is ever dropped or told it lagged, and none holds a buffer of its own: a
/// slow reader costs the runtime nothing.
public final class LifecycleFeed: Sendable {
    private struct State {
        /// The most recent events, oldest first, positions one apart.
        var recent: [LifecycleEntry] = []
        var head = 0
        /// The highest position committed.
        var last: UInt64
        var closed = false
    }

    /// Events kept in memory for cursors close behind.
    public static let defaultMemory = 4096
    /// Events a cursor that fell behind reads from the log at a time.
    static let catchUpPage = 512

    private let state: ConditionLock<State>
    private let memory: Int
    private let read: @Sendable (UInt64, Int) throws(SagaLaneError) -> [LifecycleEntry]

    /// - Parameters:
    ///   - last: The highest position the log holds when the feed starts.
    ///   - read: Reads up to `limit` events after a position from the log.
    init(last: UInt64, memory: Int = LifecycleFeed.defaultMemory,
         read: @escaping @Sendable (UInt64, Int) throws(SagaLaneError) -> [LifecycleEntry]) {
        state = ConditionLock(State(last: last))
        self.memory = max(16, memory)
        self.read = read
    }

    /// The highest position committed so far (0: none yet).
    public var lastPosition: UInt64 { state.withLock { $0.last } }

    /// Events just committed, in position order. Writer thread.
    func publish(_ entries: [LifecycleEntry]) {
        guard !entries.isEmpty else { return }
        state.withLock { s in
            for entry in entries where entry.position > s.last {
                s.recent.append(entry)
                s.last = entry.position
            }
            let excess = s.recent.count - s.head - memory
            if excess > 0 { s.head += excess }
            // Compact once the dropped prefix is as large as what is kept.
            if s.head >= memory {
                s.recent.removeFirst(s.head)
                s.head = 0
            }
        }
        state.condition.broadcast()
    }

    /// No more events will come: cursors return what is left, then `nil`.
    func close() {
        state.withLock { $0.closed = true }
        state.condition.broadcast()
    }

    /// A cursor that returns every event after `position` (0: every event the log holds).
    public func subscribe(after position: UInt64) -> LifecycleCursor {
        LifecycleCursor(feed: self, after: position)
    }

    fileprivate enum Step {
        case entries([LifecycleEntry])
        case catchUp(oldestInMemory: UInt64)
        case end
    }

    /// What a cursor at `position` reads next, waiting (up to `milliseconds`, or for ever when
    /// `nil`) while there is nothing after it.
    fileprivate func next(after position: UInt64, cancelled: @escaping () -> Bool, milliseconds: Int?) -> Step? {
        let decide: (inout State) -> Step = { s in
            if cancelled() { return .end }
            if s.last <= position { return .end }  // closed (the wait ended on it)
            let oldest = s.head < s.recent.count ? s.recent[s.head].position : s.last + 1
            guard position + 1 >= oldest else { return .catchUp(oldestInMemory: oldest) }
            let start = s.head + Int(position + 1 - oldest)
            return .entries(Array(s.recent[start..<min(s.recent.count, start + LifecycleFeed.catchUpPage)]))
        }
        let ready: (inout State) -> Bool = { s in s.last > position || s.closed || cancelled() }
        if let milliseconds {
            return state.withLock(until: ready, timeoutMilliseconds: milliseconds, decide)
        }
        return state.withLock(until: ready, decide)
    }

    fileprivate func readLog(after position: UInt64) throws(SagaLaneError) -> [LifecycleEntry] {
        try read(position, LifecycleFeed.catchUpPage)
    }

    fileprivate func wake() { state.condition.broadcast() }
}

/// Reads a lifecycle stream from a position: every event after it, in order, once each. One
/// reader at a time; `cancel` from any thread.
public final class LifecycleCursor: @unchecked Sendable {
    private let feed: LifecycleFeed
    /// The position of the last event returned. Reader only.
    public private(set) var position: UInt64
    private var buffer: [LifecycleEntry] = []
    private var bufferHead = 0
    private let cancelled = Atomic<Bool>(false)

    fileprivate init(feed: LifecycleFeed, after position: UInt64) {
        self.feed = feed
        self.position = position
    }

    /// The next event, waiting for one; `nil` once cancelled, or once the log closed and
    /// every event was read.
    /// - Throws: The log's error when events it missed could not be read back (the cursor
    ///   stays where it was: calling again retries).
    public func next() throws(SagaLaneError) -> LifecycleEntry? {
        try next(milliseconds: nil) ?? nil
    }

    /// As `next()`, waiting at most `milliseconds`: `.some(nil)` at the end, `nil` when
    /// nothing came in time.
    public func next(milliseconds: Int?) throws(SagaLaneError) -> LifecycleEntry?? {
        while true {
            if cancelled.load(ordering: .acquiring) { return .some(nil) }
            if bufferHead < buffer.count {
                let entry = buffer[bufferHead]
                bufferHead += 1
                if entry.position <= position { continue }
                position = entry.position
                return .some(entry)
            }
            buffer.removeAll(keepingCapacity: true)
            bufferHead = 0
            guard let step = feed.next(after: position, cancelled: { self.cancelled.load(ordering: .acquiring) },
                                       milliseconds: milliseconds) else { return nil }
            switch step {
            case .end:
                return .some(nil)
            case .entries(let entries):
                buffer = entries
            case .catchUp(let oldest):
                let rows = try feed.readLog(after: position)
                // Nothing in the log before what memory holds: it was deleted (a vacuum took
                // old sagas with their events), so go on from memory.
                if rows.isEmpty { position = max(position, oldest - 1) }
                buffer = rows
            }
        }
    }

    /// Stops the cursor: a `next()` waiting returns `nil`. Any thread; idempotent.
    public func cancel() {
        cancelled.store(true, ordering: .releasing)
        feed.wake()
    }
}
