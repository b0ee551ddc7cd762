import SagaLaneJSON
import SagaLaneSupport

/// The protocol's versions. A client's `hello` names the highest it speaks; the server
/// answers with the version both use, or refuses.
public enum WireVersion {
    /// The version this build speaks best.
    public static let current = 1
    /// The oldest version this build still speaks.
    public static let oldest = 1

    /// The version to use with a peer whose highest is `peer`; `nil` when there is none.
    public static func negotiate(peer: Int) -> Int? {
        peer >= oldest ? min(peer, current) : nil
    }
}

/// Which events a subscription delivers.
public enum EventFilter: Sendable, Equatable {
    /// `SagaStarted`, `SagaCompleted`, `SagaFailed` (the default).
    case lifecycle
    /// Every event published.
    case all
    /// Events of these types.
    case types(Set<String>)

    public func accepts(_ type: String) -> Bool {
        switch self {
        case .lifecycle: type == "SagaStarted" || type == "SagaCompleted" || type == "SagaFailed"
        case .all: true
        case .types(let types): types.contains(type)
        }
    }
}

/// `lane.submit`'s fields.
public struct WireLaneSubmit: Sendable, Equatable {
    public var lane: String
    /// Empty: the lane makes one up.
    public var jobID: String
    public var priority: Int
    public var payload: JSON
    /// Retries, for a job declared idempotent: the wire carries `maxAttempts` and
    /// `initialBackoff` (in milliseconds); the rest is the policy's default.
    public var retry: RetryPolicy?
    /// How long a worker may hold the job without answering; `nil`: the agent's default.
    public var reservationMilliseconds: Int?
    /// Send `lane.job.ended` to this connection when the job ends.
    public var notify: Bool

    public init(lane: String, jobID: String = "", priority: Int = 0, payload: JSON = .null, retry: RetryPolicy? = nil,
                reservationMilliseconds: Int? = nil, notify: Bool = false) {
        self.lane = lane
        self.jobID = jobID
        self.priority = priority
        self.payload = payload
        self.retry = retry
        self.reservationMilliseconds = reservationMilliseconds
        self.notify = notify
    }
}

/// Every message of the protocol (see docs/protocol.md), without its envelope (`"id"`).
public enum WireMessage: Sendable, Equatable {
    // The handshake and replies.
    case hello(version: Int, name: String?, targets: [String])
    case welcome(version: Int, server: String, maxFrame: Int)
    /// The answer to a request, with the request's result fields.
    case ok([String: JSON])
    case error(code: String, message: String, about: String?)
    case ping

    // Host targets.
    case targetRegister(names: [String])
    case targetUnregister(names: [String])
    case command(target: String, sagaID: UInt64, step: UInt32, command: JSON)
    case stepDone(sagaID: UInt64, step: UInt32, event: String, payload: JSON)
    case stepFailed(sagaID: UInt64, step: UInt32, reason: String)

    // Events.
    case publish(event: String, sagaID: UInt64?, payload: JSON)
    case subscribe(events: EventFilter, after: UInt64?)
    case unsubscribe
    case event(event: String, sagaID: UInt64?, payload: JSON, version: UInt64)
    case lagged(missed: UInt64)

    // Sagas.
    case sagaStart(saga: String, input: JSON, idempotencyKey: String?)
    case sagaCancel(sagaID: UInt64, reason: String?)
    case sagaWait(sagaID: UInt64, timeoutMilliseconds: Int?)
    case sagaGet(sagaID: UInt64)

    // Lanes.
    case laneCreate(lane: String, maxConcurrent: Int)
    case laneSubmit(WireLaneSubmit)
    case laneCancel(lane: String, jobID: String)
    case laneJob(jobID: String)
    case laneJobs(lane: String?, state: String?, limit: Int?)
    case laneStats(lane: String)
    case laneJobEnded(lane: String, jobID: String, state: String, result: JSON?, error: String?, attempts: Int)

    // Lane workers.
    case workerRegister(lane: String, capacity: Int)
    case job(lane: String, jobID: String, attempt: Int, payload: JSON)
    case jobDone(jobID: String, result: JSON)
    case jobFailed(jobID: String, error: String)

    case agentStats

    /// The message's `"type"`.
    public var type: String {
        switch self {
        case .hello: "hello"
        case .welcome: "welcome"
        case .ok: "ok"
        case .error: "error"
        case .ping: "ping"
        case .targetRegister: "target.register"
        case .targetUnregister: "target.unregister"
        case .command: "command"
        case .stepDone: "step.done"
        case .stepFailed: "step.failed"
        case .publish: "event.publish"
        case .subscribe: "subscribe"
        case .unsubscribe: "unsubscribe"
        case .event: "event"
        case .lagged: "lagged"
        case .sagaStart: "saga.start"
        case .sagaCancel: "saga.cancel"
        case .sagaWait: "saga.wait"
        case .sagaGet: "saga.get"
        case .laneCreate: "lane.create"
        case .laneSubmit: "lane.submit"
        case .laneCancel: "lane.cancel"
        case .laneJob: "lane.job"
        case .laneJobs: "lane.jobs"
        case .laneStats: "lane.stats"
        case .laneJobEnded: "lane.job.ended"
        case .workerRegister: "worker.register"
        case .job: "job"
        case .jobDone: "job.done"
        case .jobFailed: "job.failed"
        case .agentStats: "agent.stats"
        }
    }

    /// The types a client sends to the agent.
    public static let clientTypes: Set<String> = [
        "hello", "ping", "target.register", "target.unregister", "step.done", "step.failed", "event.publish",
        "subscribe", "unsubscribe", "saga.start", "saga.cancel", "saga.wait", "saga.get", "lane.create",
        "lane.submit", "lane.cancel", "lane.job", "lane.jobs", "lane.stats", "worker.register", "job.done",
        "job.failed", "agent.stats",
    ]

    /// The types the agent sends to clients.
    public static let serverTypes: Set<String> = ["welcome", "ok", "error", "command", "event", "lagged", "lane.job.ended", "job"]
}

/// A message with its envelope: the request id a reply echoes.
public struct WireFrame: Sendable, Equatable {
    /// A client's request id (an integer or a string), echoed by the reply; `nil` for a
    /// message that wants no reply but an error.
    public var id: JSON?
    public var message: WireMessage

    public init(id: JSON? = nil, _ message: WireMessage) {
        self.id = id
        self.message = message
    }
}
