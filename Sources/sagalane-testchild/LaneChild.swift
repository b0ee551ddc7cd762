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
