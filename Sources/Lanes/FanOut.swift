import Glibc
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
    public static func run<Result: Sendable>(
        _ items: [Item<Result>],
        maxConcurrent: Int,
        maxPerKey: Int,
        onError policy: ErrorPolicy = .continueAll
    ) async -> [Outcome<Result>] {
        guard !items.isEmpty else { return [] }
        let state = FanOutState(items: items, maxPerKey: max(1, maxPerKey), policy: policy)
        let outcomes = await withCheckedContinuation { continuation in
            state.onDone = { continuation.resume(returning: $0) }
            // A thread the system refuses only means fewer workers; with none at all, every
            // item fails with the reason.
            var threads: [OSThread] = []
            for _ in 0..<min(max(1, maxConcurrent), items.count) {
                do {
                    threads.append(try OSThread(name: "sagalane-fanout", role: .laneWorker) { state.work() })
                } catch {
                    if threads.isEmpty { continuation.resume(returning: items.map { _ in .failure("\(error)") }) }
                    break
                }
            }
            state.threads = threads
        }
        // Every item is done, so the workers are on their way out.
        for thread in state.threads { thread.join() }
        return outcomes
    }
}

/// Shared state of one fan-out, guarded by its mutex.
private final class FanOutState<R: Sendable>: @unchecked Sendable {
    let items: [FanOut.Item<R>]
    let maxPerKey: Int
    let policy: FanOut.ErrorPolicy
    var outcomes: [FanOut.Outcome<R>?]
    var next: [Int]
    var perKey: [String: Int] = [:]
    var contexts: [Int: LaneJobContext] = [:]
    var remaining: Int
    var stopNew = false
    var onDone: (([FanOut.Outcome<R>]) -> Void)?
    var threads: [OSThread] = []
    var mutex = pthread_mutex_t()
    var wake = pthread_cond_t()

    init(items: [FanOut.Item<R>], maxPerKey: Int, policy: FanOut.ErrorPolicy) {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&wake, nil)
        self.items = items
        self.maxPerKey = maxPerKey
        self.policy = policy
        outcomes = Array(repeating: nil, count: items.count)
        next = Array(items.indices)
        remaining = items.count
    }

    deinit {
        pthread_cond_destroy(&wake)
        pthread_mutex_destroy(&mutex)
    }

    func work() {
        pthread_mutex_lock(&mutex)
        while true {
            if stopNew {
                for i in next { outcomes[i] = .cancelled }
                remaining -= next.count
                next.removeAll()
            }
            if next.isEmpty {
                pthread_cond_broadcast(&wake)
                break
            }
            // The first waiting item whose key has room keeps input order as far as bounds allow.
            guard let slot = next.firstIndex(where: { (perKey[items[$0].key] ?? 0) < maxPerKey }) else {
                pthread_cond_wait(&wake, &mutex)
                continue
            }
            let i = next.remove(at: slot)
            let item = items[i]
            perKey[item.key, default: 0] += 1
            let context = LaneJobContext(jobID: "fanout-\(i)", attempt: 1)
            contexts[i] = context
            pthread_mutex_unlock(&mutex)
            let outcome: FanOut.Outcome<R>
            do { outcome = .success(try item.work(context)) } catch is LaneJobCancelled { outcome = .cancelled } catch { outcome = .failure("\(error)") }
            pthread_mutex_lock(&mutex)
            contexts[i] = nil
            perKey[item.key]! -= 1
            outcomes[i] = outcome
            remaining -= 1
            if case .failure = outcome, policy == .cancelRest, !stopNew {
                stopNew = true
                for c in contexts.values { c.cancel() }
            }
            pthread_cond_broadcast(&wake)
        }
        let finished = remaining == 0 && onDone != nil
        let done = finished ? onDone : nil
        if finished { onDone = nil }
        pthread_mutex_unlock(&mutex)
        done?(outcomes.map { $0! })
    }
}
