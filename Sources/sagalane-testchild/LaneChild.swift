import Glibc
import SagaLane

/// `lane-run <db>`: a persisted lane "work" with two workers and twenty jobs whose bodies never
/// finish; prints `ready` once every queued row is durable and two jobs are running. The test
/// then kills it with SIGKILL.
func runLaneRun(_ arguments: [String]) -> Never {
    guard arguments.count == 1 else {
        writeStandardError("usage: sagalane-testchild lane-run <db>\n")
        exit(2)
    }
    let log: SagaLog
    do { log = try SagaLog.open(path: arguments[0], durability: .full) } catch {
        writeStandardError("open failed: \(error)\n")
        exit(1)
    }
    let lane: Lane
    do { lane = try Lane(name: "work", maxConcurrent: 2, store: log) } catch {
        writeStandardError("lane failed: \(error)\n")
        exit(1)
    }
    for i in 0..<20 {
        let job = LaneJob(id: "job-\(i)", caller: "child", priority: 0, metadata: Array("job-\(i)".utf8)) { context in
            while !context.isCancelled { usleep(10_000) }
            throw LaneJobCancelled()
        }
        do { try lane.submitBlocking(job) } catch {
            writeStandardError("submit failed: \(error)\n")
            exit(1)
        }
    }
    while lane.stats.running < 2 { usleep(1_000) }
    let line = Array("ready\n".utf8)
    _ = line.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
    while true { pause() }
}

/// `lane-cancel <db>`: a persisted lane "work" with one worker busy forever and a job
/// "victim" queued behind it. With the log's writer held up for 300 ms (so that a cancelled
/// row that is merely submitted is still unwritten), cancels "victim" and prints `cancelled`
/// as soon as the cancel returns. The test kills it with SIGKILL on that line.
func runLaneCancel(_ arguments: [String]) -> Never {
    guard arguments.count == 1 else {
        writeStandardError("usage: sagalane-testchild lane-cancel <db>\n")
        exit(2)
    }
    let log: SagaLog
    let lane: Lane
    do {
        log = try SagaLog.open(path: arguments[0], durability: .full)
        lane = try Lane(name: "work", maxConcurrent: 1, store: log)
    } catch {
        writeStandardError("open failed: \(error)\n")
        exit(1)
    }
    let started = Completion<Void>()
    let blocker = LaneJob(id: "blocker", metadata: Array("blocker".utf8)) { _ in
        started.set(())
        while true { pause() }
    }
    let victim = LaneJob(id: "victim", metadata: Array("victim".utf8)) { _ in "ran" }
    do {
        try lane.submitBlocking(blocker)
        try lane.submitBlocking(victim)
    } catch {
        writeStandardError("submit failed: \(error)\n")
        exit(1)
    }
    // The blocker's body runs once its running row is durable: nothing else is pending then.
    started.wait()
    let holding = Completion<Void>()
    log.submit(.updateJobState(id: "no-such-job", state: .failed, attempts: nil, error: nil)) { _ in
        holding.set(())
        usleep(300_000)
    }
    holding.wait()
    do { try lane.cancelBlocking(jobID: "victim") } catch {
        writeStandardError("cancel failed: \(error)\n")
        exit(1)
    }
    let line = Array("cancelled\n".utf8)
    _ = line.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
    while true { pause() }
}
