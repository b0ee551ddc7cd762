import SagaLaneJSON
import SagaLaneSupport

extension WireFrame {
    /// The frame as the JSON object sent on the wire.
    public var json: JSON {
        var object = message.fields
        object["type"] = .string(message.type)
        if let id { object["id"] = id }
        return .object(JSONObject(object))
    }

    /// The frame's text (one line, no newline: JSON text never holds a raw newline).
    public var serialized: String { json.serialized }

    /// An error frame answering `error`'s request, if it had an id.
    public static func error(_ error: WireError) -> WireFrame {
        WireFrame(id: error.id, .error(code: error.code.name, message: error.message, about: error.about))
    }

    /// A reply to request `id` with `fields`.
    public static func ok(_ id: JSON?, _ fields: [String: JSON] = [:]) -> WireFrame {
        WireFrame(id: id, .ok(fields))
    }
}

private func int(_ value: UInt64) -> JSON { .int(Int64(bitPattern: value)) }
private func int(_ value: Int) -> JSON { .int(Int64(value)) }
private func int(_ value: UInt32) -> JSON { .int(Int64(value)) }

extension WireMessage {
    /// The message's fields, `"type"` and `"id"` aside.
    public var fields: [String: JSON] {
        switch self {
        case .hello(let version, let name, let targets):
            var o: [String: JSON] = ["version": int(version)]
            if let name { o["name"] = .string(name) }
            if !targets.isEmpty { o["targets"] = .array(targets.map { .string($0) }) }
            return o
        case .welcome(let version, let server, let maxFrame):
            return ["version": int(version), "server": .string(server), "max_frame": int(maxFrame)]
        case .ok(let fields):
            return fields
        case .error(let code, let message, let about):
            var o: [String: JSON] = ["code": .string(code), "message": .string(message)]
            if let about { o["about"] = .string(about) }
            return o
        case .ping, .unsubscribe, .agentStats:
            return [:]
        case .targetRegister(let names), .targetUnregister(let names):
            return ["names": .array(names.map { .string($0) })]
        case .command(let target, let sagaID, let step, let command):
            return ["target": .string(target), "saga_id": int(sagaID), "step": int(step), "command": command]
        case .stepDone(let sagaID, let step, let event, let payload):
            return ["saga_id": int(sagaID), "step": int(step), "event": .string(event), "payload": payload]
        case .stepFailed(let sagaID, let step, let reason):
            return ["saga_id": int(sagaID), "step": int(step), "reason": .string(reason)]
        case .publish(let event, let sagaID, let payload):
            var o: [String: JSON] = ["event": .string(event), "payload": payload]
            if let sagaID { o["saga_id"] = int(sagaID) }
            return o
        case .subscribe(let events, let after):
            var o: [String: JSON] = [:]
            switch events {
            case .lifecycle: break
            case .all: o["events"] = "*"
            case .types(let types): o["events"] = .array(types.sorted().map { .string($0) })
            }
            if let after { o["after"] = int(after) }
            return o
        case .event(let event, let sagaID, let payload, let version):
            var o: [String: JSON] = ["event": .string(event), "payload": payload, "version": int(version)]
            if let sagaID { o["saga_id"] = int(sagaID) }
            return o
        case .lagged(let missed):
            return ["missed": int(missed)]
        case .sagaStart(let saga, let input, let key):
            var o: [String: JSON] = ["saga": .string(saga), "input": input]
            if let key { o["idempotency_key"] = .string(key) }
            return o
        case .sagaCancel(let sagaID, let reason):
            var o: [String: JSON] = ["saga_id": int(sagaID)]
            if let reason { o["reason"] = .string(reason) }
            return o
        case .sagaWait(let sagaID, let timeout):
            var o: [String: JSON] = ["saga_id": int(sagaID)]
            if let timeout { o["timeout_ms"] = int(timeout) }
            return o
        case .sagaGet(let sagaID):
            return ["saga_id": int(sagaID)]
        case .laneCreate(let lane, let maxConcurrent):
            return ["lane": .string(lane), "max_concurrent": int(maxConcurrent)]
        case .laneSubmit(let submit):
            var o: [String: JSON] = ["lane": .string(submit.lane), "payload": submit.payload]
            if !submit.jobID.isEmpty { o["job_id"] = .string(submit.jobID) }
            if submit.priority != 0 { o["priority"] = int(submit.priority) }
            if let retry = submit.retry {
                o["retry"] = ["max_attempts": int(retry.maxAttempts), "backoff_ms": int(retry.backoffMilliseconds)]
            }
            if let reservation = submit.reservationMilliseconds { o["reservation_ms"] = int(reservation) }
            if submit.notify { o["notify"] = true }
            return o
        case .laneCancel(let lane, let jobID):
            return ["lane": .string(lane), "job_id": .string(jobID)]
        case .laneJob(let jobID):
            return ["job_id": .string(jobID)]
        case .laneJobs(let lane, let state, let limit):
            var o: [String: JSON] = [:]
            if let lane { o["lane"] = .string(lane) }
            if let state { o["state"] = .string(state) }
            if let limit { o["limit"] = int(limit) }
            return o
        case .laneStats(let lane):
            return ["lane": .string(lane)]
        case .laneJobEnded(let lane, let jobID, let state, let result, let error, let attempts):
            var o: [String: JSON] = ["lane": .string(lane), "job_id": .string(jobID), "state": .string(state),
                                     "attempts": int(attempts)]
            if let result { o["result"] = result }
            if let error { o["error"] = .string(error) }
            return o
        case .workerRegister(let lane, let capacity):
            return ["lane": .string(lane), "capacity": int(capacity)]
        case .job(let lane, let jobID, let attempt, let payload):
            return ["lane": .string(lane), "job_id": .string(jobID), "attempt": int(attempt), "payload": payload]
        case .jobDone(let jobID, let result):
            return ["job_id": .string(jobID), "result": result]
        case .jobFailed(let jobID, let error):
            return ["job_id": .string(jobID), "error": .string(error)]
        }
    }
}
