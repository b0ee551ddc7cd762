import SagaLaneJSON
import SagaLaneSupport

/// The log's records as JSON, the form diagnostics hand to operators and C hosts.
///
/// Stored JSON text (inputs, commands, outputs) is embedded as JSON, not as a string holding
/// JSON, so a reader can query into it; text that does not parse (written by an older or
/// foreign writer) is kept as a string rather than dropped.
extension SagaRecord {
    /// `{"id", "name", "state", "input", "failure_reason", "started_at", "ended_at",
    /// "idempotency_key", "steps"}` with `steps` an array of step objects, and `"history"` (its
    /// lifecycle events, as `LifecycleEntry.json`) when the record was read with it.
    public var json: JSON {
        var json = sagaJSON(id: id, name: name, state: state, inputJSON: inputJSON, failureReason: failureReason,
                            startedAt: startedAt, endedAt: endedAt, steps: .array(steps.map(\.json)))
        json = json.setting("idempotency_key", to: idempotencyKey.map(JSON.string) ?? .null)
        if let history { json = json.setting("history", to: .array(history.map(\.json))) }
        return json
    }
}

extension SagaSummary {
    /// As `SagaRecord.json`, with `steps` the number of steps.
    public var json: JSON {
        sagaJSON(id: saga.id, name: saga.name, state: saga.state, inputJSON: saga.inputJSON, failureReason: saga.failureReason,
                 startedAt: saga.startedAt, endedAt: saga.endedAt, steps: .int(Int64(stepCount)))
    }
}

extension StepRecord {
    /// `{"index", "name", "target", "command", "state", "output", "failure_reason",
    /// "started_at", "ended_at", "attempts", "compensates", "spec", "cause"}`: `compensates`
    /// is the step a compensation undoes (null for a forward step), `spec` what the step
    /// declared beyond its command (null when nothing), `cause` the event that led to the step
    /// when it answered no earlier one.
    public var json: JSON {
        [
            "attempts": .int(Int64(attempts)),
            "cause": causeJSON.map(embedded) ?? .null,
            "compensates": compensates.map { .int(Int64($0)) } ?? .null,
            "spec": specJSON.map(embedded) ?? .null,
            "index": .int(Int64(index)),
            "name": .string(name),
            "target": .string(target),
            "command": embedded(commandJSON),
            "state": .string(state.rawValue),
            "output": outputJSON.map(embedded) ?? .null,
            "failure_reason": failureReason.map(JSON.string) ?? .null,
            "started_at": .string(startedAt.iso8601),
            "ended_at": endedAt.map { .string($0.iso8601) } ?? .null,
        ]
    }
}

extension JobRecord {
    /// `{"id", "lane", "caller", "priority", "state", "attempts", "error", "metadata",
    /// "metadata_size", "enqueued_at", "started_at", "finished_at", "cancelled_at",
    /// "failed_at"}`. Metadata is opaque bytes: embedded when it is JSON text, a string when it
    /// is other UTF-8 text, null otherwise; `metadata_size` is its length in bytes.
    public var json: JSON {
        let metadataText = String(validating: metadata, as: UTF8.self)
        func time(_ t: Timestamp?) -> JSON { t.map { .string($0.iso8601) } ?? .null }
        return [
            "id": .string(id),
            "lane": .string(lane),
            "caller": .string(caller),
            "priority": .int(Int64(priority)),
            "state": .string(state.rawValue),
            "attempts": .int(Int64(attempts)),
            "error": error.map(JSON.string) ?? .null,
            "metadata": metadata.isEmpty ? .null : metadataText.map(embedded) ?? .null,
            "metadata_size": .int(Int64(metadata.count)),
            "enqueued_at": .string(enqueuedAt.iso8601),
            "started_at": time(startedAt),
            "finished_at": time(finishedAt),
            "cancelled_at": time(cancelledAt),
            "failed_at": time(failedAt),
        ]
    }
}

extension LogStats {
    /// `{"schema_version", "sagas": {state: count}, "oldest_running_saga", "jobs": {lane:
    /// {state: count}}, "database_bytes", "wal_bytes"}`, every state present (0 when none).
    public var json: JSON {
        var sagaCounts: JSONObject = [:]
        for state in SagaState.allCases { sagaCounts[state.rawValue] = .int(Int64(sagas[state] ?? 0)) }
        var laneCounts: JSONObject = [:]
        for (lane, counts) in jobs {
            var byState: JSONObject = [:]
            for state in JobState.allCases { byState[state.rawValue] = .int(Int64(counts[state] ?? 0)) }
            laneCounts[lane.string] = .object(byState)
        }
        return [
            "schema_version": .int(Int64(schemaVersion)),
            "sagas": .object(sagaCounts),
            "oldest_running_saga": oldestRunningSaga.map { .string($0.iso8601) } ?? .null,
            "jobs": .object(laneCounts),
            "database_bytes": .int(Int64(databaseBytes)),
            "wal_bytes": walBytes.map { .int(Int64($0)) } ?? .null,
        ]
    }
}

private func sagaJSON(id: UInt64, name: String, state: SagaState, inputJSON: String, failureReason: String?,
                      startedAt: Timestamp, endedAt: Timestamp?, steps: JSON) -> JSON {
    [
        "id": .int(Int64(bitPattern: id)),
        "name": .string(name),
        "state": .string(state.rawValue),
        "input": embedded(inputJSON),
        "failure_reason": failureReason.map(JSON.string) ?? .null,
        "started_at": .string(startedAt.iso8601),
        "ended_at": endedAt.map { .string($0.iso8601) } ?? .null,
        "steps": steps,
    ]
}

/// Stored text is what the runtime wrote: values it accepted from outside (at most
/// `JSON.defaultMaxDepth` levels) inside a few levels of its own, such as an event around a
/// payload around a lane job's result. Reading it back allows for those levels, so a payload
/// accepted at the bound is shown as JSON, not as a string.
private let storedTextMaxDepth = JSON.defaultMaxDepth + 8

private func embedded(_ text: String) -> JSON {
    (try? JSON(parsing: text, maxDepth: storedTextMaxDepth)) ?? .string(text)
}
