import Glibc

/// Durations (or sizes) counted in powers of two: bucket `i` holds the values in
/// [2^(i-1), 2^i), bucket 0 the zeros. Cheap enough to fill on the writer thread at every
/// commit, so a benchmark can say where a slow commit spent its time.
package struct PowerHistogram: Sendable {
    package private(set) var buckets = [Int](repeating: 0, count: 40)
    package private(set) var count = 0
    package private(set) var total = 0
    package private(set) var largest = 0

    package init() {}

    package mutating func add(_ value: Int) {
        let v = max(0, value)
        buckets[min(buckets.count - 1, Int.bitWidth - v.leadingZeroBitCount)] += 1
        count += 1
        total += v
        largest = max(largest, v)
    }

    /// The values' mean, rounded down; 0 when there are none.
    package var mean: Int { total / max(1, count) }

    /// The values in bucket `i` are below this.
    package static func upperBound(ofBucket i: Int) -> Int { i == 0 ? 1 : 1 << i }

    /// How many values are at least `threshold`, a power of two (counted by whole buckets).
    package func count(atLeast threshold: Int) -> Int {
        var n = 0
        for (i, c) in buckets.enumerated() where i > 0 && 1 << (i - 1) >= threshold { n += c }
        return n
    }
}

/// What the writer's group commits took, part by part, in microseconds, and how many records
/// each held: for benchmarks that look for the source of a slow tail.
package struct CommitProfile: Sendable {
    /// `BEGIN IMMEDIATE`.
    package var begin = PowerHistogram()
    /// Applying the batch's records.
    package var apply = PowerHistogram()
    /// `COMMIT` (its sync, in full durability, and SQLite's own checkpoint when it checkpoints
    /// inline).
    package var commit = PowerHistogram()
    /// The whole batch, then the completions that tell the waiters.
    package var batch = PowerHistogram()
    /// Records per batch.
    package var records = PowerHistogram()

    package init() {}
}

/// Microseconds on the monotonic clock.
@inline(__always)
func monotonicMicros() -> Int {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec * 1_000_000 + ts.tv_nsec / 1000
}
