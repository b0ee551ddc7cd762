import Glibc
import SagaLaneEventLoop
import SagaLaneSupport

/// How a dialer paces its attempts.
public struct ReconnectPolicy: Sendable, Equatable {
    /// The wait after the first failure (and after a connection is lost).
    public var initialDelay: Duration
    /// The longest wait between attempts.
    public var maxDelay: Duration
    /// Each failed attempt multiplies the wait by this.
    public var multiplier: Double
    /// Each wait is stretched by a random factor in [1, 1 + jitter], so that many dialers of
    /// one restarted server do not knock in lockstep.
    public var jitter: Double

    public init(initialDelay: Duration = .milliseconds(100), maxDelay: Duration = .seconds(5),
                multiplier: Double = 2, jitter: Double = 0.2) {
        self.initialDelay = max(.zero, initialDelay)
        self.maxDelay = max(self.initialDelay, maxDelay)
        self.multiplier = multiplier >= 1 ? multiplier : 1
        self.jitter = jitter >= 0 ? min(jitter, 10) : 0
    }

    /// The wait before attempt `failures + 1`, given `failures` attempts failed in a row.
    public func delay(afterFailures failures: Int, random: Double = Double.random(in: 0...1)) -> Duration {
        let initial = Double(initialDelay.components.seconds) + Double(initialDelay.components.attoseconds) / 1e18
        let ceiling = Double(maxDelay.components.seconds) + Double(maxDelay.components.attoseconds) / 1e18
        var seconds = initial
        if failures > 1 && multiplier > 1 {
            seconds = initial * pow(multiplier, Double(min(failures - 1, 64)))
        }
        if !seconds.isFinite || seconds > ceiling { seconds = ceiling }
        seconds *= 1 + jitter * min(max(random, 0), 1)
        return .nanoseconds(Int64(min(seconds, 365 * 86_400) * 1e9))
    }
}

/// Keeps a connection to a Unix socket path up: dials, and whenever the connection is lost or
/// an attempt fails, dials again after a back-off (`ReconnectPolicy`), until `stop()`.
/// Loop thread only.
public final class PipeDialer: @unchecked Sendable {
    public let loop: EventLoop
    public let path: String
    public let policy: ReconnectPolicy
    public let connectionOptions: PipeConnectionOptions

    /// A connection was made: set its callbacks and start reading. When it closes, the dialer
    /// dials again (after `onDisconnect`).
    public var onConnect: ((PipeConnection) -> Void)?
    /// The connection was lost (`reason`) or an attempt failed (`error`); the next attempt is
    /// in `retryIn`.
    public var onDisconnect: ((_ error: String, _ retryIn: Duration) -> Void)?

    public private(set) var connection: PipeConnection?
    /// Attempts made, and connections made, since `start`.
    public private(set) var attempts = 0
    public private(set) var connections = 0

    private var running = false
    private var dialing = false
    private var failures = 0
    private var timer: TimerID?

    public init(loop: EventLoop, path: String, policy: ReconnectPolicy = ReconnectPolicy(),
                connectionOptions: PipeConnectionOptions = PipeConnectionOptions()) {
        self.loop = loop
        self.path = path
        self.policy = policy
        self.connectionOptions = connectionOptions
    }

    /// Starts dialing (at once). Loop thread.
    public func start() {
        loop.preconditionInEventLoop()
        guard !running else { return }
        running = true
        dial()
    }

    /// Stops: no more attempts; the current connection, if any, is closed.
    public func stop() {
        loop.preconditionInEventLoop()
        running = false
        if let timer { loop.cancelTimer(timer) }
        timer = nil
        connection?.close()
        connection = nil
    }

    public var isRunning: Bool { running }

    private func dial() {
        guard running, !dialing, connection == nil, !loop.isShutDown else { return }
        dialing = true
        attempts += 1
        PipeConnection.connect(loop: loop, path: path, options: connectionOptions) { [self] result in
            dialing = false
            switch result {
            case .success(let connection):
                guard running else { return connection.close() }
                failures = 0
                connections += 1
                self.connection = connection
                onConnect?(connection)
                // Wrapped around whatever `onConnect` set, so both hear of the close.
                let theirs = connection.onClose
                connection.onClose = { [weak self, weak connection] reason in
                    theirs?(reason)
                    guard let self, let connection, self.connection === connection else { return }
                    self.connection = nil
                    self.lost("connection to \(self.path) lost: \(reason)")
                }
            case .failure(let error):
                failures += 1
                lost(error.message)
            }
        }
    }

    private func lost(_ why: String) {
        guard running, !loop.isShutDown else { return }
        let delay = policy.delay(afterFailures: max(1, failures))
        onDisconnect?(why, delay)
        timer = loop.scheduleTimer(after: delay) { [weak self] in
            guard let self else { return }
            self.timer = nil
            self.dial()
        }
    }
}
