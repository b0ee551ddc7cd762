import Glibc
import SagaLaneTestSupport
import Testing
@testable import SagaLaneLanes
@testable import SagaLaneEventLoop
@testable import SagaLaneSupport

// Every lock here is a `ConditionLock` (a pthread mutex): ThreadSanitizer sees it, where it
// does not see the standard library's `Mutex` on Linux and reports the values it guards as
// races.

/// A gate jobs wait at until the test opens it.
final class Gate: Sendable {
    private let state = ConditionLock(false)
    init() {}
    func wait() { state.withLock(until: { $0 }) { _ in } }
    func release() {
        state.withLock { $0 = true }
        state.condition.broadcast()
    }
}

/// Collects job outcomes reported on other threads.
final class Outcomes: Sendable {
    let all = ConditionLock<[String: LaneJobOutcome]>([:])
    /// Runs each job made, by id.
    let runs = ConditionLock<[String: Int]>([:])
    var attempts: [String: Int] { runs.withLock { $0 } }
    func record(_ id: String) -> @Sendable (LaneJobCompletion) -> Void {
        { end in
            self.runs.withLock { $0[id] = end.attempts }
            self.all.withLock { $0[id] = end.outcome }
        }
    }
    var count: Int { all.withLock { $0.count } }
    subscript(id: String) -> LaneJobOutcome? { all.withLock { $0[id] } }
    func waitFor(_ n: Int) { while count < n { usleep(1_000) } }
}

/// How many thread stacks of sagalane's size (1 MiB) the process has mapped: a thread that
/// exited keeps its stack until it is joined (glibc also caches a few joined ones).
func mappedThreadStacks() -> Int {
    guard let file = fopen("/proc/self/maps", "r") else { return 0 }
    defer { fclose(file) }
    var count = 0
    var line = [CChar](repeating: 0, count: 512)
    while fgets(&line, Int32(line.count), file) != nil {
        let fields = String(cString: line).split(separator: " ", maxSplits: 2)
        guard fields.count >= 2, fields[1] == "rw-p" else { continue }
        let range = fields[0].split(separator: "-")
        guard range.count == 2, let start = UInt(range[0], radix: 16), let end = UInt(range[1], radix: 16) else { continue }
        if end - start >= (1 << 20) - (64 << 10) && end - start <= (1 << 20) + (64 << 10) { count += 1 }
    }
    return count
}

func spin(until condition: () -> Bool) {
    while !condition() { usleep(500) }
}

/// How much longer than usual things take: ThreadSanitizer slows every memory access and
/// every lock down, so the bounded waits of a sanitizer run wait longer (they check the same).
let patience: Double = dlsym(nil, "__tsan_init") != nil ? 10 : 1  // nil: RTLD_DEFAULT

/// Like `spin`, but gives up after `seconds` (stretched by `patience`); returns whether the
/// condition held.
func wait(upTo seconds: Double, for condition: () -> Bool) -> Bool {
    for _ in 0..<Int(seconds * patience * 2_000) {
        if condition() { return true }
        usleep(500)
    }
    return condition()
}

/// Timers armed on `loop` and not yet fired.
func pendingTimers(_ loop: EventLoop) async -> Int {
    await withCheckedContinuation { continuation in
        loop.execute { continuation.resume(returning: loop.pendingTimerCount) }
    }
}

/// `spin` for async tests: sleeps between looks, so the tasks it waits for get a thread (the
/// cooperative pool has one per core).
func poll(until condition: () -> Bool) async {
    while !condition() { try? await Task.sleep(for: .milliseconds(1)) }
}
