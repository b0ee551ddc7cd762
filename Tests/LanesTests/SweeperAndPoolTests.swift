import Glibc
import Testing
@testable import SagaLaneLanes
@testable import SagaLaneLog
@testable import SagaLaneEventLoop
@testable import SagaLaneSupport

@Suite(.timeLimit(.minutes(2)))
struct SweeperAndPoolTests {
    @Test func sweeperPurgesOldTerminalRowsAndLeavesTheRest() async throws {
        let loop = try EventLoop(clock: .manual)
        try loop.startThread()
        defer { loop.shutdown() }
        let log = try SagaLog.openInMemory()
        defer { log.close() }
        for (id, state) in [("done", JobState.finished), ("gone", .cancelled), ("broke", .failed), ("waiting", .queued), ("busy", .running)] {
            try await log.enqueueJob(id: id, lane: "l", caller: "c", priority: 0, metadata: [])
            if state != .queued { try await log.updateJobState(id: id, state: state) }
        }
        // Two hours from now, with a one-hour retention: every terminal row is old enough.
        let sweeper = LaneSweeper(log: log, loop: loop, retention: .seconds(3600), interval: .seconds(600), startupDelay: .seconds(90),
                                  wallClock: { Timestamp.now().advanced(by: .seconds(7200)) })
        sweeper.start()
        await loop.advance(by: .seconds(89))
        #expect(sweeper.sweeps.load(ordering: .relaxed) == 0, "nothing before the start-up delay")
        await loop.advance(by: .seconds(1))
        spin { sweeper.sweeps.load(ordering: .relaxed) == 1 }
        #expect(sweeper.purged.load(ordering: .relaxed) == 3)
        #expect(try log.job(id: "waiting")?.state == .queued)
        #expect(try log.job(id: "busy")?.state == .running)
        #expect(try log.job(id: "done") == nil)
        sweeper.retention = .seconds(100 * 3600)
        try await log.enqueueJob(id: "recent", lane: "l", caller: "c", priority: 0, metadata: [])
        try await log.updateJobState(id: "recent", state: .finished)
        await loop.advance(by: .seconds(600))
        spin { sweeper.sweeps.load(ordering: .relaxed) == 2 }
        #expect(try log.job(id: "recent") != nil, "the new retention applies on the next tick")
        sweeper.stop()
    }

    /// Durations no clock can hold are clamped: the sweeper sweeps, purging nothing recent.
    @Test func sweeperTakesAbsurdDurationsWithoutTrapping() async throws {
        let loop = try EventLoop(clock: .manual)
        try loop.startThread()
        defer { loop.shutdown() }
        let log = try SagaLog.openInMemory()
        defer { log.close() }
        try await log.enqueueJob(id: "done", lane: "l", caller: "c", priority: 0, metadata: [])
        try await log.updateJobState(id: "done", state: .finished)
        let sweeper = LaneSweeper(log: log, loop: loop, retention: .seconds(Int64.max), interval: .seconds(Int64.max),
                                  startupDelay: .seconds(-5))
        #expect(sweeper.retention == LaneSweeper.longestDuration && sweeper.interval == LaneSweeper.longestDuration)
        sweeper.start()
        await loop.advance(by: .zero)
        spin { sweeper.sweeps.load(ordering: .relaxed) == 1 }
        #expect(try log.job(id: "done") != nil, "kept for a century")
        sweeper.retention = .seconds(-Int64.max)
        sweeper.interval = .zero
        #expect(sweeper.retention == .zero && sweeper.interval == .milliseconds(1))
        sweeper.stop()
    }

    @Test func poolsFindLanesByName() throws {
        let pool = LanePool()
        defer { pool.shutdown() }
        try pool.add(try Lane(name: "gpu", maxConcurrent: 1))
        #expect { try pool.add(try Lane(name: "gpu", maxConcurrent: 1)) } throws: { ($0 as? SagaLaneError)?.code == .exists }
        #expect(try pool.lane(named: "gpu").name == "gpu")
        #expect { try pool.lane(named: "tpu") } throws: { ($0 as? SagaLaneError)?.code == .notFound }
    }
}
