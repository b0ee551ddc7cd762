import Glibc
import SagaLane
import Synchronization

/// The baseline: a plain mutex + condition-variable queue of closures drained by `workers`
/// threads, the least a job queue can do.
private func measurePlainQueue(jobs: Int, workers: Int) throws -> Double {
    final class PlainQueue: @unchecked Sendable {
        var items: [() -> Void] = []
        var head = 0
        var closed = false
        var mutex = pthread_mutex_t()
        var cond = pthread_cond_t()
        init() { pthread_mutex_init(&mutex, nil); pthread_cond_init(&cond, nil) }
        func push(_ item: @escaping () -> Void) {
            pthread_mutex_lock(&mutex)
            items.append(item)
            pthread_cond_signal(&cond)
            pthread_mutex_unlock(&mutex)
        }
        func run() {
            pthread_mutex_lock(&mutex)
            while true {
                while head == items.count && !closed { pthread_cond_wait(&cond, &mutex) }
                if head == items.count { break }
                let item = items[head]
                head += 1
                pthread_mutex_unlock(&mutex)
                item()
                pthread_mutex_lock(&mutex)
            }
            pthread_mutex_unlock(&mutex)
        }
        func close() {
            pthread_mutex_lock(&mutex)
            closed = true
            pthread_cond_broadcast(&cond)
            pthread_mutex_unlock(&mutex)
        }
    }
    let queue = PlainQueue()
    let done = Countdown()
    let threads = try (0..<workers).map { _ in try OSThread(name: "plain") { queue.run() } }
    let start = monotonicSeconds()
    for _ in 0..<jobs { queue.push { done.signal() } }
    for _ in 0..<jobs { done.wait() }
    let rate = Double(jobs) / (monotonicSeconds() - start)
    queue.close()
    threads.forEach { $0.join() }
    return rate
}

private func measureLane(jobs: Int, workers: Int, store: SagaLog?) throws -> Double {
    let lane = try Lane(name: "bench", maxConcurrent: workers, store: store)
    defer { lane.shutdown() }
    let done = Countdown()
    let start = monotonicSeconds()
    let job = LaneJob { _ in "" }
    for _ in 0..<jobs {
        lane.submit(job, onQueued: { if case .failure(let e) = $0 { fatalError("submit failed: \(e)") } }, onComplete: { _ in done.signal() })
    }
    for _ in 0..<jobs { done.wait() }
    return Double(jobs) / (monotonicSeconds() - start)
}

/// How one thread hands jobs to a persisted lane in `measureSubmitter`.
private enum Submitter {
    /// `submitBlocking`, one job at a time: each waits for its queued row's commit.
    case oneByOne
    /// `submitBlocking(batch:)` of `batch` jobs: one commit for each batch.
    case batches(Int)
    /// `submit(_:onQueued:onComplete:)`, not waiting: the writer groups what comes.
    case nonWaiting
}

/// Jobs per second from one submitting thread to a persisted lane of 4 workers running
/// no-op jobs: until the last queued row was durable, and until the last job finished; and
/// what the log's commits took.
private func measureSubmitter(_ submitter: Submitter, jobs: Int, directory: String,
                              durability: Durability) throws -> (queued: Double, done: Double, commits: CommitProfile) {
    let path = freshDatabase(directory, "bench-lane-submit.db")
    defer { removeDatabase(path) }
    let log = try SagaLog.open(path: path, durability: durability)
    defer { log.close() }
    let lane = try Lane(name: "bench", maxConcurrent: 4, store: log)
    defer { lane.shutdown() }
    let done = Countdown()
    let job = LaneJob { _ in "" }
    let ended: @Sendable (LaneJobCompletion) -> Void = { _ in done.signal() }
    let start = monotonicSeconds()
    switch submitter {
    case .oneByOne:
        for _ in 0..<jobs { _ = try lane.submitBlocking(job, onComplete: ended) }
    case .batches(let size):
        var left = jobs
        while left > 0 {
            let results = lane.submitBlocking(batch: Array(repeating: (job, ended), count: min(size, left)))
            if let refusal = results.first(where: { if case .failure = $0 { true } else { false } }) { fatalError("batch refused: \(refusal)") }
            left -= results.count
        }
    case .nonWaiting:
        let queued = Countdown()
        for _ in 0..<jobs {
            lane.submit(job, onQueued: { result in
                if case .failure(let e) = result { fatalError("submit failed: \(e)") }
                queued.signal()
            }, onComplete: ended)
        }
        for _ in 0..<jobs { queued.wait() }
    }
    let queuedAt = monotonicSeconds()
    for _ in 0..<jobs { done.wait() }
    let end = monotonicSeconds()
    return (Double(jobs) / (queuedAt - start), Double(jobs) / (end - start), log.commitProfile)
}

/// Runs `measure` `rounds` times and keeps the best rate. Each figure and its baseline get
/// the same number of runs, alternating, so a burst of load on this shared machine spoils a
/// run of one side, not the comparison.
private func best(of rounds: Int, _ measures: [() throws -> Double]) throws -> [Double] {
    var best = [Double](repeating: 0, count: measures.count)
    for _ in 0..<rounds {
        for (index, measure) in measures.enumerated() { best[index] = max(best[index], try measure()) }
    }
    return best
}

func runLaneBench(directory: String, jobs: Int) throws {
    let rounds = 5
    print("lane: \(jobs) empty jobs through an in-memory lane with 4 workers, beside a plain mutex+condvar queue with 4 threads")
    print("      (best of \(rounds) alternating runs each)")
    let memory = try best(of: rounds, [
        { try measurePlainQueue(jobs: jobs, workers: 4) },
        { try measureLane(jobs: jobs, workers: 4, store: nil) },
    ])
    let (plain, lane) = (memory[0], memory[1])
    print("  in memory  lane \(format(lane)) jobs/s   plain queue \(format(plain)) jobs/s   ratio \(format(lane / plain * 100))%")
    let persistedRounds = 5
    print("      persisted: \(jobs) jobs (queued, running, finished rows each) with 64 workers, beside the log's raw")
    print("      group-commit ceiling for three-write units (twice its six-write saga rate), same run")
    print("      (best of \(persistedRounds) alternating runs each)")
    for durability in Durability.allCases {
        let rates = try best(of: persistedRounds, [
            { try measureLogCeiling(directory: directory, durability: durability, sagas: jobs / 2) * 2 },
            {
                let path = freshDatabase(directory, "bench-lane.db")
                defer { removeDatabase(path) }
                let log = try SagaLog.open(path: path, durability: durability)
                defer { log.close() }
                return try measureLane(jobs: jobs, workers: 64, store: log)
            },
        ])
        let (ceiling, persisted) = (rates[0], rates[1])
        print(pad("  \(durability.rawValue)", 10) + pad("persisted lane \(format(persisted)) jobs/s", 34)
              + pad("log ceiling \(format(ceiling)) jobs/s", 32) + "ratio \(format(persisted / ceiling * 100))%")
    }
}

/// One thread submitting to a persisted lane: one job per call, batches, and without waiting,
/// each beside the log's raw ceiling for the same rows.
func runLaneSubmitBench(directory: String, jobs: Int) throws {
    let rounds = 3, oneByOneJobs = min(jobs, 2_000), batch = 256
    print("lane submit: one thread submits no-op jobs to a persisted lane of 4 running workers (FULL durability),")
    print("      \(jobs) jobs (\(oneByOneJobs) one by one), beside the log's raw group-commit ceiling for their rows")
    print("      (queued, running, finished each), same run (best of \(rounds) alternating runs each)")
    var ceiling = 0.0, queued = [Double](repeating: 0, count: 3), done = [Double](repeating: 0, count: 3)
    var commits = [CommitProfile](repeating: CommitProfile(), count: 3)
    let submitters: [(Submitter, Int)] = [(.oneByOne, oneByOneJobs), (.batches(batch), jobs), (.nonWaiting, jobs)]
    for _ in 0..<rounds {
        ceiling = max(ceiling, try measureLogCeiling(directory: directory, durability: .full, sagas: jobs / 2) * 2)
        for (index, (submitter, count)) in submitters.enumerated() {
            let rate = try measureSubmitter(submitter, jobs: count, directory: directory, durability: .full)
            queued[index] = max(queued[index], rate.queued)
            if rate.done > done[index] { (done[index], commits[index]) = (rate.done, rate.commits) }
        }
    }
    for (index, name) in ["one job per call", "batches of \(batch)", "not waiting"].enumerated() {
        print(pad("  \(name)", 20) + pad("queued \(format(queued[index])) jobs/s", 24) + pad("done \(format(done[index])) jobs/s", 22)
              + pad("log ceiling \(format(ceiling)) jobs/s", 30) + "done/ceiling \(format(done[index] / ceiling * 100))%")
        // A job holds one of the 4 slots while its running row commits (write-ahead: the row
        // is durable before the body runs), so 4 jobs per commit is the most the workers
        // can start, whatever the submitter does.
        let c = commits[index].batch
        let meanMillis = Double(c.total) / Double(max(1, c.count)) / 1000
        let slotBound = 4 / meanMillis * 1000
        print("      \(c.count) commits, mean \(format3(meanMillis)) ms, \(commits[index].records.total / max(1, c.count)) records each; "
              + "4 slots at one commit per job start at most \(format(slotBound)) jobs/s (done/that \(format(done[index] / slotBound * 100))%)")
        // The submitter's own rows: one queued row per job, against the ceiling's rate for
        // single rows (three per job-unit above).
        print("      queued/ceiling for the queued rows alone (\(format(ceiling * 3)) rows/s): \(format(queued[index] / (ceiling * 3) * 100))%")
    }
}
