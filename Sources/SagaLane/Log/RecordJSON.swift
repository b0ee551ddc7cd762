/// The log's records as JSON, the form diagnostics hand to operators and C hosts.
///
/// Stored JSON text (inputs, commands, outputs) is embedded as JSON, not as a string holding
/// JSON, so a reader can query into it; text that does not parse (written by an older or
/// foreign writer) is kept as a string rather than dropped.
extension SagaRecord {
    /// `{"id", "name", "state", "input", "failure_reason", "started_at", "ended_at", "steps"}`
    /// with `steps` an array of step objects.
    public var json: JSON {
        sagaJSON(id: id, name: name, state: state, inputJSON: inputJSON, failureReason: failureReason,
                 startedAt: startedAt, endedAt: endedAt, steps: .array(steps.map(\.json)))
    }
}

extension SagaSummary {
    /// As `SagaRecord.json`, with `steps` the number of steps.
    public var json: JSON {
        sagaJSON(id: id, name: name, state: state, inputJSON: inputJSON, failureReason: failureReason,
                 startedAt: startedAt, endedAt: endedAt, steps: .int(Int64(stepCount)))
    }
}

extension StepRecord {
    /// `{"index", "name", "target", "command", "state", "output", "failure_reason",
    /// "started_at", "ended_at"}`.
    public var json: JSON {
        [
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

private func embedded(_ text: String) -> JSON {
    (try? JSON(parsing: text)) ?? .string(text)
}
