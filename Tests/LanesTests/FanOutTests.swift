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
        let wide = await FanOut.run((0..<20).map { i in FanOut.Item(key: "k\(i % 10)") { _ -> Int in
            let now = running.add(1, ordering: .sequentiallyConsistent).newValue
            _ = maxRunning.max(now, ordering: .sequentiallyConsistent)
            usleep(1_000)
            running.subtract(1, ordering: .sequentiallyConsistent)
            return i
        } }, maxConcurrent: 5, maxPerKey: 2)
        #expect(maxRunning.load(ordering: .relaxed) <= 5)
        #expect(wide.count == 20)
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
