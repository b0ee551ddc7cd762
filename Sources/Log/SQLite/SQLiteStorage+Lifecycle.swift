import CSQLite
import SagaLaneSupport

/// The lifecycle stream, idempotency keys and operators' requests, on the read connection.
extension SQLiteStorage {
    public func lifecycleEvents(after position: UInt64, limit: Int) throws(SagaLaneError) -> [LifecycleEntry] {
        guard columns.hasEvents, limit > 0 else { return [] }
        return try read { (c) throws(SagaLaneError) in
            try c.query("SELECT \(Self.eventColumns) FROM saga_event WHERE position > ? ORDER BY position LIMIT ?",
                        [.int(Int64(bitPattern: min(position, UInt64(Int64.max)))), .int(Int64(limit))], Self.event)
        }
    }

    public func lifecycleEvents(sagaID: UInt64) throws(SagaLaneError) -> [LifecycleEntry] {
        guard columns.hasEvents else { return [] }
        return try read { (c) throws(SagaLaneError) in
            try c.query("SELECT \(Self.eventColumns) FROM saga_event WHERE saga_id = ? ORDER BY position",
                        [.int(Int64(bitPattern: sagaID))], Self.event)
        }
    }

    public func sagaID(idempotencyKey key: String) throws(SagaLaneError) -> UInt64? {
        guard columns.hasEvents else { return nil }
        return try read { (c) throws(SagaLaneError) in
            try c.query("SELECT id FROM saga WHERE idempotency_key = ?", [.text(key)]) { UInt64(bitPattern: $0.int(0)) }.first
        }
    }

    public func job(lane: String, idempotencyKey key: String) throws(SagaLaneError) -> JobRecord? {
        guard columns.hasEvents else { return nil }
        return try read { (c) throws(SagaLaneError) in
            try c.query("SELECT \(columns.job) FROM lane_job WHERE lane = ? AND idempotency_key = ?", [.text(lane), .text(key)], Self.job).first
        }
    }

    public func requests(limit: Int) throws(SagaLaneError) -> [SagaRequest] {
        guard columns.hasEvents, limit > 0 else { return [] }
        return try read { (c) throws(SagaLaneError) in
            // The table's CHECK admits only the known actions.
            try c.query("SELECT saga_id, action, note, requested_at FROM saga_request ORDER BY saga_id LIMIT ?", [.int(Int64(limit))]) { row in
                SagaRequestAction(rawValue: row.text(1)).map {
                    SagaRequest(sagaID: UInt64(bitPattern: row.int(0)), action: $0, note: row.optionalText(2), requestedAt: row.timestamp(3))
                }
            }.compactMap { $0 }
        }
    }
}
