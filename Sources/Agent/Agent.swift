import Glibc
import SagaLane

/// What the agent counts, for `agent.stats` and `sagalane agent-stats`.
struct AgentCounters {
    var connectionsAccepted = 0
    var connectionsRefused = 0
    var connectionsClosedOnError = 0
    var framesRead = 0
    /// Error frames sent, by code.
    var errors: [WireErrorCode: Int] = [:]

    var json: JSON {
        var byCode: [String: JSON] = [:]
        for code in WireErrorCode.all { byCode[code.name] = .int(Int64(errors[code] ?? 0)) }
        return ["connections_accepted": .int(Int64(connectionsAccepted)), "connections_refused": .int(Int64(connectionsRefused)),
                "connections_closed_on_error": .int(Int64(connectionsClosedOnError)), "frames_read": .int(Int64(framesRead)),
                "errors": .object(JSONObject(byCode)), "errors_total": .int(Int64(errors.values.reduce(0, +)))]
    }
}

/// A target name hosts register on their connections.
final class AcceptedTarget {
    let target: PipeTarget
    /// The session whose connection takes its commands now.
    var holder: Session?

    init(target: PipeTarget) { self.target = target }
}

/// The agent: a runtime whose targets, events, sagas and lanes are served to other processes
/// over a Unix socket (docs/protocol.md). Everything but `start` and `stop` runs on the
/// runtime's loop thread.
public final class Agent: @unchecked Sendable {
    public let runtime: Runtime
    public let options: AgentOptions
    let loop: EventLoop
    let diagnostics: Diagnostics
    var listener: PipeListener?
    var sessions: [UInt64: Session] = [:]
    var targets: [String: AcceptedTarget] = [:]
    private(set) var lanes: RemoteLanes!
    var counters = AgentCounters()
    var stopping = false
    private var whenDrained: [() -> Void] = []

    /// Prepares an agent on a runtime that is started (and whose saga types are registered).
    public init(runtime: Runtime, options: AgentOptions) {
        self.runtime = runtime
        self.options = options
        loop = runtime.loop
        diagnostics = options.diagnostics
        lanes = RemoteLanes(agent: self)
    }

    /// Runs `body` on the loop and waits for its result. Host threads only.
    func onLoop<T: Sendable>(_ body: @escaping @Sendable () -> T) -> T {
        if loop.inEventLoop { return body() }
        let done = Completion<T>()
        loop.execute { done.set(body()) }
        return done.wait()
    }

    /// Creates the configured lanes and those the log shows unfinished jobs for, then listens.
    /// Host thread.
    /// - Returns: The lanes' names.
    @discardableResult
    public func start() throws(SagaLaneError) -> [String] {
        var names: [String] = []
        var bounds: [String: Int] = [:]
        for lane in options.lanes { bounds[lane.name] = lane.maxConcurrent; names.append(lane.name) }
        // Lanes that left queued or running jobs in the log are created, so their recovery
        // runs and their queued jobs wait for workers again.
        for state in [JobState.queued, .running] {
            for row in try runtime.log.recentJobs(lane: nil, state: state, limit: Int.max) where bounds[row.lane] == nil {
                bounds[row.lane] = AgentOptions.defaultLaneBound
                names.append(row.lane)
            }
        }
        for name in names { try lanes.create(name: name, maxConcurrent: bounds[name]!) }
        let result = onLoop { [self] () -> Result<Void, SagaLaneError> in
            do throws(SagaLaneError) { try listen(); return .success(()) } catch { return .failure(error) }
        }
        try result.get()
        return names
    }

    private func listen() throws(SagaLaneError) {
        var allowed = options.allowedUIDs
        allowed.insert(getuid())
        let listener = try PipeListener(
            loop: loop, path: options.resolvedSocketPath, mode: options.allowedUIDs.isEmpty ? 0o600 : 0o666,
            policy: PeerPolicy(allowedUIDs: allowed),
            connectionOptions: PipeConnectionOptions(maxFrameSize: options.maxFrameSize, maxQueuedBytes: options.maxQueuedBytes))
        listener.refusal = { peer in
            let who = peer.map { "uid \($0.uid)" } ?? "a peer without credentials"
            return Array(WireFrame.error(WireError(.peerRefused, "\(who) may not use this agent")).serialized.utf8) + [10]
        }
        listener.onRefuse = { [unowned self] peer, why in
            counters.connectionsRefused += 1
            counters.errors[.peerRefused, default: 0] += 1
            diagnostics.warning("agent: refused a connection\(peer.map { " (pid \($0.pid), uid \($0.uid))" } ?? ""): \(why)")
        }
        listener.onAccept = { [unowned self] connection in accept(connection) }
        self.listener = listener
    }

    private func accept(_ connection: PipeConnection) {
        guard !stopping else { return connection.close() }
        counters.connectionsAccepted += 1
        let session = Session(agent: self, connection: connection)
        sessions[connection.id] = session
        session.start()
    }

    /// A session's connection closed: what it held is let go.
    func closed(_ session: Session, reason: PipeCloseReason) {
        sessions.removeValue(forKey: session.connection.id)
        switch reason {
        case .closedLocally, .endOfStream, .loopShutdown: break
        default:
            counters.connectionsClosedOnError += 1
            diagnostics.warning("agent: connection \(session.label) closed: \(reason)")
        }
        for name in session.targets {
            if let accepted = targets[name], accepted.holder === session {
                accepted.holder = nil
                accepted.target.detach(session.connection, reason: "host connection \(session.label) closed: \(reason)")
            }
        }
        session.targets.removeAll()
        lanes.sessionClosed(session)
        session.subscription?.stop()
        session.subscription = nil
        if stopping && sessions.isEmpty { drained() }
    }

    // MARK: Stopping

    /// Stops taking connections, fails remote jobs in flight, and lets every connection take
    /// what was queued for it (for `options.stopGrace` at most) before closing it; then
    /// `completion` runs, on the loop. The runtime is left to close.
    public func stop(completion: @escaping @Sendable () -> Void) {
        loop.execute { [self] in
            whenDrained.append(completion)
            guard !stopping else { return }
            stopping = true
            listener?.close()
            listener = nil
            lanes.stop()
            if sessions.isEmpty { return drained() }
            for session in sessions.values { session.connection.closeWhenFlushed() }
            loop.scheduleTimer(after: options.stopGrace) { [weak self] in
                guard let self, !self.sessions.isEmpty else { return }
                for session in self.sessions.values { session.connection.close() }
            }
        }
    }

    private func drained() {
        let waiting = whenDrained
        whenDrained.removeAll()
        for completion in waiting { completion() }
    }

    /// The counters and the state of things, as `agent.stats` answers.
    var statsJSON: JSON {
        var object = counters.json.objectValue ?? [:]
        object["connections_open"] = .int(Int64(sessions.count))
        var targetStates: [String: JSON] = [:]
        for (name, accepted) in targets {
            let status = accepted.target.status
            targetStates[name] = ["connected": .bool(status.connected), "buffered": .int(Int64(status.buffered)),
                                  "awaiting": .int(Int64(status.awaiting)), "sent": .int(Int64(status.sent)),
                                  "expired": .int(Int64(status.expired)), "purged": .int(Int64(status.purged))]
        }
        object["targets"] = .object(JSONObject(targetStates))
        object["lanes"] = lanes.statsJSON
        object["version"] = .string(SagaLaneVersion.string)
        object["protocol_version"] = .int(Int64(WireVersion.current))
        return .object(object)
    }
}

/// The wire code for a runtime error.
func wireCode(_ error: SagaLaneError, notFound: WireErrorCode) -> WireErrorCode {
    switch error.code {
    case .notFound: notFound
    case .refused: .refused
    case .again: .again
    case .unhealthy: .unhealthy
    case .closed: .closing
    case .timedOut: .timedOut
    case .notQueued: .notQueued
    case .exists: .exists
    case .invalidArgument, .json, .utf8: .badField
    default: .failed
    }
}
