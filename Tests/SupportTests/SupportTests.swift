import Glibc
import SagaLaneTestSupport
import Synchronization
import Testing
@testable import SagaLaneSupport

@Test func timestampRoundTripsThroughISO8601() {
    let t = Timestamp(millisecondsSinceEpoch: 1_795_000_123_456)
    #expect(Timestamp(iso8601: t.iso8601) == t)
    #expect(Timestamp(millisecondsSinceEpoch: 0).iso8601 == "1970-01-01T00:00:00.000Z")
    #expect(Timestamp(millisecondsSinceEpoch: -1).iso8601 == "1969-12-31T23:59:59.999Z")
    #expect(Timestamp(iso8601: "2026-11-24T12:59:00Z")?.iso8601 == "2026-11-24T12:59:00.000Z")
    #expect(Timestamp(iso8601: "2026-11-24T12:59:00.5Z")?.iso8601 == "2026-11-24T12:59:00.500Z")
    #expect(Timestamp(iso8601: "not a time") == nil)
    #expect(t.advanced(by: .seconds(-1)).millisecondsSinceEpoch == t.millisecondsSinceEpoch - 1000)
}

/// Huge durations saturate instead of trapping: they come from callers (retention windows,
/// deadlines) and from the log.
@Test func timestampsSaturateOnHugeDurations() {
    let t = Timestamp(millisecondsSinceEpoch: 1_795_000_123_456)
    #expect(t.advanced(by: .seconds(Int64.max)).millisecondsSinceEpoch == Int64.max)
    #expect(Timestamp(millisecondsSinceEpoch: -1).advanced(by: .seconds(Int64.min)).millisecondsSinceEpoch == Int64.min)
    #expect(Timestamp(millisecondsSinceEpoch: Int64.max).advanced(by: .milliseconds(1)).millisecondsSinceEpoch == Int64.max)
    _ = Timestamp(millisecondsSinceEpoch: Int64.max).iso8601
}

@Test func osThreadRunsAndJoins() throws {
    let ran = Atomic<Int>(0)
    let t = try OSThread(name: "sagalane-test") { ran.store(1, ordering: .sequentiallyConsistent) }
    t.join()
    #expect(ran.load(ordering: .sequentiallyConsistent) == 1)
}

/// What `top -H`, gdb and perf show for a thread: its /proc comm.
private func systemName(of name: String) throws -> String {
    let seen = ConditionLock("")
    let t = try OSThread(name: name) {
        let fd = open("/proc/thread-self/comm", O_RDONLY)
        guard fd >= 0 else { return }
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = read(fd, &buffer, buffer.count)
        close(fd)
        if n > 0 { seen.withLock { $0 = String(decoding: buffer[..<n], as: UTF8.self) } }
    }
    t.join()
    return seen.withLock { $0 }
}

@Test func threadsAreNamedForTheSystem() throws {
    #expect(try systemName(of: "sagalane-log-writer") == "sl-log-writer\n")
    #expect(try systemName(of: "sagalane-lane-a-rather-long-name") == "sl-lane-a-rathe\n", "Linux keeps 15 bytes")
    #expect(try systemName(of: "plain") == "plain\n")
}
