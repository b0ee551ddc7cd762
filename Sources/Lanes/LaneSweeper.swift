import SagaLaneEventLoop
import SagaLaneLog
import SagaLaneSupport
import Synchronization

/// Purges terminal lane-job rows older than a retention window, on a loop timer: first after a
/// start-up delay (so it does not pile onto start-up work), then every interval. Retention and
/// interval can change while it runs; the next tick uses the new values.
public final class LaneSweeper: Sendable {
    public let log: SagaLog
    public let loop: EventLoop
    private struct Settings {
        var retention: Duration
        var interval: Duration
        var timer: TimerID?
        var stopped = false
    }
    private let settings: ConditionLock<Settings>
    private let startupDelay: Duration
    private let wallClock: @Sendable () -> Timestamp
    private let diagnostics: Diagnostics
    /// Passes done and rows purged, for diagnostics.
    public let sweeps = Atomic<Int>(0)
    public let purged = Atomic<Int>(0)

    /// The longest retention, interval or delay the sweeper uses, whatever it is given: a
    /// century. (Longer ones would overflow the timestamps and timers they end up in.)
    public static let longestDuration = Duration.seconds(100 * 365 * 24 * 3600)

    /// - Parameters:
    ///   - retention: How long a terminal row is kept (negative: 0; at most `longestDuration`).
    ///   - interval: Between sweeps (at least 1 ms, at most `longestDuration`).
    ///   - startupDelay: Before the first sweep (0 to `longestDuration`).
    public init(log: SagaLog, loop: EventLoop, retention: Duration = .seconds(24 * 3600), interval: Duration = .seconds(3600),
                startupDelay: Duration = .seconds(90), wallClock: @escaping @Sendable () -> Timestamp = { Timestamp.now() },
                diagnostics: Diagnostics = .standardError) {
        self.diagnostics = diagnostics
        self.log = log
        self.loop = loop
        self.startupDelay = Self.clamp(startupDelay, from: .zero)
        self.wallClock = wallClock
        settings = ConditionLock(Settings(retention: Self.clamp(retention, from: .zero), interval: Self.clamp(interval, from: .milliseconds(1))))
    }

    private static func clamp(_ duration: Duration, from shortest: Duration) -> Duration {
        min(max(duration, shortest), longestDuration)
    }

    public var retention: Duration {
        get { settings.withLock { $0.retention } }
        set { settings.withLock { $0.retention = Self.clamp(newValue, from: .zero) } }
    }

    public var interval: Duration {
        get { settings.withLock { $0.interval } }
        set { settings.withLock { $0.interval = Self.clamp(newValue, from: .milliseconds(1)) } }
    }

    /// Arms the first sweep after the start-up delay. Safe from any thread.
    public func start() {
        loop.execute { [self] in arm(after: startupDelay) }
    }

    /// Stops sweeping. Safe from any thread.
    public func stop() {
        loop.execute { [self] in
            let timer = settings.withLock { s -> TimerID? in
                s.stopped = true
                defer { s.timer = nil }
                return s.timer
            }
            if let timer { loop.cancelTimer(timer) }
        }
    }

    private func arm(after delay: Duration) {
        guard !settings.withLock({ $0.stopped }) else { return }
        let id = loop.scheduleTimer(after: delay) { [self] in
            log.submit(.purgeFinishedJobs(olderThan: wallClock().advanced(by: .zero - retention))) { [self] result in
                sweeps.add(1, ordering: .relaxed)
                switch result {
                case .success(let count):
                    purged.add(count, ordering: .relaxed)
                    if count > 0 { diagnostics.info("lane sweeper purged \(count) finished job row(s)") }
                case .failure(let error):
                    diagnostics.warning("lane sweeper could not purge finished jobs: \(error)")
                }
                loop.execute { [self] in arm(after: interval) }
            }
        }
        settings.withLock { $0.timer = id }
    }
}
