import SagaLaneSupport

/// Runs many work items on worker threads with a global concurrency bound and a per-key bound
/// (e.g. N documents × M models, at most 8 at once and at most 2 per model).
public enum FanOut {
    /// What happens to the rest when an item fails.
    public enum ErrorPolicy: Sendable {
        /// Run every item; the results report each failure.
        case continueAll
        /// Items not yet started end `.cancelled`; running items see their cancellation flag.
        case cancelRest
    }

    public struct Item<Result: Sendable>: Sendable {
        public var key: String
        public var work: @Sendable (LaneJobContext) throws -> Result
        public init(key: String, work: @escaping @Sendable (LaneJobContext) throws -> Result) {
            self.key = key
            self.work = work
        }
    }

    public enum Outcome<Result: Sendable>: Sendable {
        case success(Result)
        case failure(String)
        case cancelled
    }

    /// Runs `items` and returns their outcomes in input order.
    /// - Parameters:
    ///   - maxConcurrent: Items running at once; each runs on a thread of its own, so at most
    ///     `Lane.concurrencyLimit` threads are started whatever this says (below 1: 1).
    ///   - maxPerKey: Items of one key running at once (below 1: 1).
    public static func run<Result: Sendable>(
        _ items: [Item<Result>],
        maxConcurrent: Int,
        maxPerKey: Int,
        onError policy: ErrorPolicy = .continueAll
    ) async -> [Outcome<Result>] {
        guard !items.isEmpty else { return [] }
        let state = FanOutState(items: items, maxPerKey: max(1, maxPerKey), policy: policy)
        let workers = min(max(1, maxConcurrent), items.count, Lane.concurrencyLimit)
        let outcomes = await withCheckedContinuation { continuation in
            state.books.withLock { $0.onDone = { continuation.resume(returning: $0) } }
            // A thread the system refuses only means fewer workers; with none at all, every
            // item fails with the reason.
            var threads: [OSThread] = []
            for _ in 0..<workers {
                do {
                    threads.append(try OSThread(name: "sagalane-fanout", role: .laneWorker) { state.work() })
                } catch {
                    if threads.isEmpty { continuation.resume(returning: items.map { _ in .failure("\(error)") }) }
                    break
                }
            }
            state.books.withLock { $0.threads = threads }
        }
        // Every item is done, so the workers are on their way out.
        for thread in state.books.withLock({ $0.threads }) { thread.join() }
        return outcomes
    }
}

/// One fan-out's items and, under its lock, their progress.
private final class FanOutState<R: Sendable>: Sendable {
    struct Books {
        var outcomes: [FanOut.Outcome<R>?]
        /// Items not started yet, in input order.
        var next: [Int]
        var perKey: [ExactName: Int] = [:]
        var contexts: [Int: LaneJobContext] = [:]
        var remaining: Int
        var stopNew = false
        var onDone: (@Sendable ([FanOut.Outcome<R>]) -> Void)?
        var threads: [OSThread] = []
    }

    let items: [FanOut.Item<R>]
    let maxPerKey: Int
    let policy: FanOut.ErrorPolicy
    /// Its condition is broadcast whenever a key gets room or the work runs out.
    let books: ConditionLock<Books>

    init(items: [FanOut.Item<R>], maxPerKey: Int, policy: FanOut.ErrorPolicy) {
        self.items = items
        self.maxPerKey = maxPerKey
        self.policy = policy
        books = ConditionLock(Books(outcomes: Array(repeating: nil, count: items.count), next: Array(items.indices), remaining: items.count))
    }

    /// The first waiting item whose key has room: input order, as far as the bounds allow.
    private func firstRunnable(_ books: Books) -> Int? {
        books.next.firstIndex { (books.perKey[ExactName(items[$0].key)] ?? 0) < maxPerKey }
    }

    func work() {
        var finished: (index: Int, outcome: FanOut.Outcome<R>)?
        while true {
            if let (index, outcome) = finished {
                record(index, outcome)
                finished = nil
            }
            let taken = books.withLock(until: { $0.stopNew || $0.next.isEmpty || firstRunnable($0) != nil }) { books -> (Int, LaneJobContext)? in
                if books.stopNew {
                    for i in books.next { books.outcomes[i] = .cancelled }
                    books.remaining -= books.next.count
                    books.next.removeAll()
                }
                guard let slot = firstRunnable(books) else { return nil }
                let index = books.next.remove(at: slot)
                books.perKey[ExactName(items[index].key), default: 0] += 1
                let context = LaneJobContext(jobID: "fanout-\(index)", attempt: 1)
                books.contexts[index] = context
                return (index, context)
            }
            guard let (index, context) = taken else { break }
            do {
                finished = (index, .success(try items[index].work(context)))
            } catch is LaneJobCancelled {
                finished = (index, .cancelled)
            } catch {
                finished = (index, .failure("\(error)"))
            }
        }
        let done = books.withLock { books -> (([FanOut.Outcome<R>]) -> Void, [FanOut.Outcome<R>])? in
            guard books.remaining == 0, let onDone = books.onDone else { return nil }
            books.onDone = nil
            return (onDone, books.outcomes.map { $0 ?? .cancelled })
        }
        // The other workers look again: nothing is left for them.
        books.condition.broadcast()
        if let (onDone, outcomes) = done { onDone(outcomes) }
    }

    private func record(_ index: Int, _ outcome: FanOut.Outcome<R>) {
        books.withLock { books in
            books.contexts[index] = nil
            books.perKey[ExactName(items[index].key), default: 1] -= 1
            books.outcomes[index] = outcome
            books.remaining -= 1
            if case .failure = outcome, policy == .cancelRest, !books.stopNew {
                books.stopNew = true
                for context in books.contexts.values { context.cancel() }
            }
        }
        books.condition.broadcast()
    }
}
