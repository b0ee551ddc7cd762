import Glibc
import Synchronization
import Testing
@testable import SagaLaneLanes
@testable import SagaLaneSupport

@Suite(.timeLimit(.minutes(2)))
struct FanOutTests {
    @Test func fanOutRespectsGlobalAndPerKeyBounds() async throws {
        let running = Atomic<Int>(0), maxRunning = Atomic<Int>(0)
        let perKey = ConditionLock<[String: Int]>([:]), maxPerKey = Atomic<Int>(0)
        var items: [FanOut.Item<String>] = []
        for doc in 0..<10 {
            for model in ["a", "b", "c"] {
                items.append(FanOut.Item(key: model) { _ in
                    let now = running.add(1, ordering: .sequentiallyConsistent).newValue
                    _ = maxRunning.max(now, ordering: .sequentiallyConsistent)
                    let k = perKey.withLock { $0[model, default: 0] += 1; return $0[model]! }
                    _ = maxPerKey.max(k, ordering: .sequentiallyConsistent)
                    usleep(2_000)
                    perKey.withLock { $0[model]! -= 1 }
                    running.subtract(1, ordering: .sequentiallyConsistent)
                    return "\(doc)\(model)"
                })
            }
        }
        let results = await FanOut.run(items, maxConcurrent: 4, maxPerKey: 1)
        #expect(results.count == 30)
        #expect(maxRunning.load(ordering: .relaxed) <= 3, "at most one per key, three keys")
        #expect(maxPerKey.load(ordering: .relaxed) == 1)
        for (i, r) in results.enumerated() {
            guard case .success(let text) = r else { Issue.record("item \(i) failed"); continue }
            #expect(text == "\(i / 3)\(["a", "b", "c"][i % 3])", "results come back in input order")
        }
    }

    /// Each bound, where it is the one that binds, is reached and never passed: items wait
    /// (up to a guard) until as many run as the bound allows, so a fan-out that ran fewer fails
    /// as surely as one that ran more.
    @Test func eachBoundIsReachedAndNeverPassed() async throws {
        final class Counts: Sendable {
            let state = ConditionLock<(running: Int, maxRunning: Int, perKey: [String: Int], maxPerKey: Int)>((0, 0, [:], 0))
            func run(key: String, until full: @escaping (Int, Int) -> Bool) {
                state.withLock { s in
                    s.running += 1
                    s.maxRunning = max(s.maxRunning, s.running)
                    s.perKey[key, default: 0] += 1
                    s.maxPerKey = max(s.maxPerKey, s.perKey[key]!)
                }
                let clock = ContinuousClock(), giveUp = clock.now + .seconds(5)
                while !state.withLock({ full($0.running, $0.perKey[key]!) }) && clock.now < giveUp { usleep(200) }
                usleep(1_000)
                state.withLock { s in
                    s.running -= 1
                    s.perKey[key]! -= 1
                }
            }
        }
        // The global bound binds: twenty keys, room for ten per key, four at once.
        let global = Counts()
        let wide = await FanOut.run((0..<20).map { i in FanOut.Item(key: "k\(i)") { _ -> Int in
            global.run(key: "k\(i)") { running, _ in running >= 4 }
            return i
        } }, maxConcurrent: 4, maxPerKey: 10)
        #expect(wide.count == 20)
        #expect(global.state.withLock { $0.maxRunning } == 4)
        // The per-key bound binds: two keys, two per key, room for eight at once.
        let keyed = Counts()
        let narrow = await FanOut.run((0..<20).map { i in FanOut.Item(key: i % 2 == 0 ? "a" : "b") { _ -> Int in
            keyed.run(key: i % 2 == 0 ? "a" : "b") { _, ofKey in ofKey >= 2 }
            return i
        } }, maxConcurrent: 8, maxPerKey: 2)
        #expect(narrow.count == 20)
        #expect(keyed.state.withLock { $0.maxPerKey } == 2)
        #expect(keyed.state.withLock { $0.maxRunning } == 4)
    }

    @Test func fanOutErrorPolicies() async throws {
        struct Bad: Error {}
        func items() -> [FanOut.Item<Int>] {
            (0..<20).map { i in FanOut.Item(key: "k") { context -> Int in
                if i == 2 { throw Bad() }
                usleep(1_000)
                if context.isCancelled { throw LaneJobCancelled() }
                return i
            } }
        }
        let all = await FanOut.run(items(), maxConcurrent: 1, maxPerKey: 1, onError: .continueAll)
        #expect(all.filter { if case .success = $0 { return true }; return false }.count == 19)
        if case .failure = all[2] {} else { Issue.record("item 2 reports its failure") }
        let stopped = await FanOut.run(items(), maxConcurrent: 1, maxPerKey: 1, onError: .cancelRest)
        if case .failure = stopped[2] {} else { Issue.record("item 2 reports its failure") }
        #expect(stopped[0...1].allSatisfy { if case .success = $0 { return true }; return false })
        #expect(stopped[3...].allSatisfy { if case .cancelled = $0 { return true }; return false }, "the rest never started")
    }
}
