import Glibc

/// Retries with exponential back-off and jitter, for work that is safe to run again: lane jobs
/// declared idempotent, saga steps declared idempotent, compensations.
///
/// Any values are accepted, also when set after `init`: `backoff(after:random:)` reads a
/// negative or NaN duration, multiplier or jitter as its neutral value and never traps.
public struct RetryPolicy: Sendable, Equatable {
    /// Runs in all, the first included.
    public var maxAttempts: Int
    public var initialBackoff: Duration
    public var maxBackoff: Duration
    public var multiplier: Double
    /// Each delay is stretched by a random factor in [1, 1 + jitter], so failed work does not
    /// retry in lockstep.
    public var jitter: Double

    /// The first back-off, unless a policy says otherwise.
    public static let defaultInitialBackoff = Duration.milliseconds(100)
    /// The longest back-off, unless a policy says otherwise.
    public static let defaultMaxBackoff = Duration.seconds(30)

    /// The longest delay `backoff` returns, whatever the policy says: a year. (Timers of
    /// centuries would overflow the clocks that arm them.)
    public static let longestBackoff = Duration.seconds(365 * 24 * 3600)

    public init(maxAttempts: Int = 3, initialBackoff: Duration = RetryPolicy.defaultInitialBackoff, maxBackoff: Duration = RetryPolicy.defaultMaxBackoff,
                multiplier: Double = 2, jitter: Double = 0.2) {
        self.maxAttempts = max(1, maxAttempts)
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.multiplier = multiplier >= 1 ? multiplier : 1
        self.jitter = jitter >= 0 ? jitter : 0
    }

    /// The delay before attempt `attempt + 1`, given `attempt` runs failed:
    /// `initialBackoff × multiplier^(attempt − 1)`, at most `maxBackoff`, then stretched by
    /// the jitter (`random` in [0, 1]); never negative nor longer than `longestBackoff`.
    public func backoff(after attempt: Int, random: Double = Double.random(in: 0...1)) -> Duration {
        let cap = Self.nanoseconds(Self.longestBackoff)
        let initial = min(Self.nanoseconds(initialBackoff), cap)
        let ceiling = min(Self.nanoseconds(maxBackoff), cap)
        let growth = multiplier >= 1 ? multiplier : 1
        let steps = attempt > 1 ? Double(attempt - 1) : 0
        var delay = initial
        // 0 × ∞ (a zero first delay, a huge growth) is NaN: a zero delay stays zero.
        if initial > 0 && growth > 1 { delay = initial * pow(growth, steps) }
        delay = min(delay, ceiling)
        let stretch = jitter >= 0 ? jitter : 0
        let spread = random >= 0 ? min(random, 1) : 0
        if spread > 0 { delay *= 1 + stretch * spread }
        guard delay.isFinite, delay < cap else { return Self.longestBackoff }
        return .nanoseconds(Int64(max(0, delay)))
    }

    /// `duration` in nanoseconds, negative ones as zero.
    private static func nanoseconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return max(0, Double(seconds) * 1e9 + Double(attoseconds) / 1e9)
    }
}
