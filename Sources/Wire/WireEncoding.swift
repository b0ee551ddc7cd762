import SagaLaneJSON
import SagaLaneSupport

extension WireFrame {
    /// The frame's text (one line, no newline: JSON text never holds a raw newline). Written
    /// straight from the message, members in the order of their names, which is the text
    /// `JSON.serialized` gives for the same object: a frame is serialized once per send, so
    /// it builds no `JSONObject` on the way.
    public var serialized: String {
        // Written in stack space first: a frame usually fits.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: JSONWriter.stackCapacity) { space in
            var writer = FrameWriter(id: id, type: message.type, space: space)
            message.write(to: &writer)
            return writer.finish()
        }
    }

    /// An error frame answering `error`'s request, if it had an id.
    public static func error(_ error: WireError) -> WireFrame {
        WireFrame(id: error.id, .error(code: error.code.name, message: error.message, about: error.about))
    }

    /// A reply to request `id` with `fields`.
    public static func ok(_ id: JSON?, _ fields: [String: JSON] = [:]) -> WireFrame {
        WireFrame(id: id, .ok(fields))
    }
}

/// A frame's members, given in the order of their names, with the envelope's `"id"` and
/// `"type"` merged in where they sort.
struct FrameWriter: ~Copyable {
    private var object: JSONObjectWriter
    private var id: JSON?
    private var type: String?

    init(id: JSON?, type: String, space: UnsafeMutableBufferPointer<UInt8>) {
        object = JSONObjectWriter(space: space)
        self.id = id
        self.type = type
    }

    /// Writes the envelope's members that sort before a field: `sortsBefore(envelopeName)`
    /// says whether one does.
    private mutating func envelope(_ sortsBefore: (StaticString) -> Bool) {
        if let id, sortsBefore("id") {
            object.member("id", id)
            self.id = nil
        }
        if let type, sortsBefore("type") {
            object.member("type", string: type)
            self.type = nil
        }
    }

    private mutating func envelope(before name: StaticString) {
        envelope { JSONObjectWriter.order($0, name) < 0 }
    }

    mutating func field(_ name: StaticString, _ value: JSON) {
        envelope(before: name)
        object.member(name, value)
    }

    mutating func field(_ name: StaticString, _ value: String) {
        envelope(before: name)
        object.member(name, string: value)
    }

    mutating func field(_ name: StaticString, _ value: some BinaryInteger) {
        envelope(before: name)
        object.member(name, int: Int64(truncatingIfNeeded: value))
    }

    mutating func field(_ name: StaticString, _ names: [String]) {
        envelope(before: name)
        object.member(name, strings: names)
    }

    /// Optional fields are left out when absent.
    mutating func field(_ name: StaticString, _ value: String?) {
        if let value { field(name, value) }
    }

    mutating func field<Integer: BinaryInteger>(_ name: StaticString, _ value: Integer?) {
        if let value { field(name, value) }
    }

    /// A field whose name is only known at run time (a reply's result fields).
    mutating func field(named name: String, _ value: JSON) {
        envelope { JSONKey.compare("\($0)", name) < 0 }
        object.member(named: name, value)
    }

    consuming func finish() -> String {
        envelope { _ in true }
        return object.finish()
    }
}

extension WireMessage {
    /// Writes the message's fields, `"type"` and `"id"` aside, in the order of their names.
    func write(to w: inout FrameWriter) {
        switch self {
        case .hello(let version, let name, let targets):
            w.field("name", name)
            if !targets.isEmpty { w.field("targets", targets) }
            w.field("version", version)
        case .welcome(let version, let server, let maxFrame):
            w.field("max_frame", maxFrame)
            w.field("server", server)
            w.field("version", version)
        case .ok(let fields):
            for (name, value) in JSONObject(fields) where name != "id" && name != "type" { w.field(named: name, value) }
        case .error(let code, let message, let about):
            w.field("about", about)
            w.field("code", code)
            w.field("message", message)
        case .ping, .unsubscribe, .agentStats:
            break
        case .targetRegister(let names), .targetUnregister(let names):
            w.field("names", names)
        case .command(let target, let sagaID, let step, let command):
            w.field("command", command)
            w.field("saga_id", sagaID)
            w.field("step", step)
            w.field("target", target)
        case .stepDone(let sagaID, let step, let event, let payload):
            w.field("event", event)
            w.field("payload", payload)
            w.field("saga_id", sagaID)
            w.field("step", step)
        case .stepFailed(let sagaID, let step, let reason):
            w.field("reason", reason)
            w.field("saga_id", sagaID)
            w.field("step", step)
        case .publish(let event, let sagaID, let payload):
            w.field("event", event)
            w.field("payload", payload)
            w.field("saga_id", sagaID)
        case .subscribe(let events, let after):
            w.field("after", after)
            switch events {
            case .lifecycle: break
            case .all: w.field("events", "*")
            case .types(let types): w.field("events", types.sorted())
            }
        case .event(let event, let sagaID, let payload, let version):
            w.field("event", event)
            w.field("payload", payload)
            w.field("saga_id", sagaID)
            w.field("version", version)
        case .lagged(let missed):
            w.field("missed", missed)
        case .sagaStart(let saga, let input, let key):
            w.field("idempotency_key", key)
            w.field("input", input)
            w.field("saga", saga)
        case .sagaCancel(let sagaID, let reason):
            w.field("reason", reason)
            w.field("saga_id", sagaID)
        case .sagaWait(let sagaID, let timeout):
            w.field("saga_id", sagaID)
            w.field("timeout_ms", timeout)
        case .sagaGet(let sagaID):
            w.field("saga_id", sagaID)
        case .laneCreate(let lane, let maxConcurrent):
            w.field("lane", lane)
            w.field("max_concurrent", maxConcurrent)
        case .laneSubmit(let submit):
            if !submit.jobID.isEmpty { w.field("job_id", submit.jobID) }
            w.field("lane", submit.lane)
            if submit.notify { w.field("notify", JSON.bool(true)) }
            w.field("payload", submit.payload)
            if submit.priority != 0 { w.field("priority", submit.priority) }
            w.field("reservation_ms", submit.reservationMilliseconds)
            if let retry = submit.retry {
                w.field("retry", ["backoff_ms": .int(retry.initialBackoff.wholeMilliseconds), "max_attempts": .int(Int64(retry.maxAttempts))])
            }
        case .laneCancel(let lane, let jobID):
            w.field("job_id", jobID)
            w.field("lane", lane)
        case .laneJob(let jobID):
            w.field("job_id", jobID)
        case .laneJobs(let lane, let state, let limit):
            w.field("lane", lane)
            w.field("limit", limit)
            w.field("state", state)
        case .laneStats(let lane):
            w.field("lane", lane)
        case .laneJobEnded(let lane, let jobID, let state, let result, let error, let attempts):
            w.field("attempts", attempts)
            w.field("error", error)
            w.field("job_id", jobID)
            w.field("lane", lane)
            if let result { w.field("result", result) }
            w.field("state", state)
        case .workerRegister(let lane, let capacity):
            w.field("capacity", capacity)
            w.field("lane", lane)
        case .job(let lane, let jobID, let attempt, let payload):
            w.field("attempt", attempt)
            w.field("job_id", jobID)
            w.field("lane", lane)
            w.field("payload", payload)
        case .jobDone(let jobID, let result):
            w.field("job_id", jobID)
            w.field("result", result)
        case .jobFailed(let jobID, let error):
            w.field("error", error)
            w.field("job_id", jobID)
        }
    }
}
