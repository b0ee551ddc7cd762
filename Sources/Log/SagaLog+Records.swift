import SagaLaneSupport

/// One call per kind of record, each returning once its record is durable (the seed log's
/// methods, by name).
extension SagaLog {
    public nonisolated(nonsending) func startSaga(id: UInt64, name: String, inputJSON: String) async throws(SagaLaneError) {
        try await write(.startSaga(id: id, name: name, inputJSON: inputJSON))
    }

    public nonisolated(nonsending) func terminateSaga(id: UInt64, state: SagaState, reason: String?) async throws(SagaLaneError) {
        try await write(.terminateSaga(id: id, state: state, reason: reason))
    }

    public nonisolated(nonsending) func setSagaState(id: UInt64, state: SagaState) async throws(SagaLaneError) {
        try await write(.setSagaState(id: id, state: state))
    }

    public nonisolated(nonsending) func startStep(sagaID: UInt64, index: UInt32, name: String, target: String, commandJSON: String) async throws(SagaLaneError) {
        try await write(.startStep(sagaID: sagaID, index: index, name: name, target: target, commandJSON: commandJSON))
    }

    public nonisolated(nonsending) func finishStep(sagaID: UInt64, index: UInt32, outputJSON: String) async throws(SagaLaneError) {
        try await write(.finishStep(sagaID: sagaID, index: index, outputJSON: outputJSON))
    }

    public nonisolated(nonsending) func failStep(sagaID: UInt64, index: UInt32, reason: String) async throws(SagaLaneError) {
        try await write(.failStep(sagaID: sagaID, index: index, reason: reason))
    }

    public nonisolated(nonsending) func markFailedCompensation(sagaID: UInt64, reason: String) async throws(SagaLaneError) {
        try await write(.markFailedCompensation(sagaID: sagaID, reason: reason))
    }

    public nonisolated(nonsending) func enqueueJob(id: String, lane: String, caller: String, priority: Int, metadata: [UInt8]) async throws(SagaLaneError) {
        try await write(.enqueueJob(id: id, lane: lane, caller: caller, priority: priority, metadata: metadata))
    }

    public nonisolated(nonsending) func updateJobState(id: String, state: JobState, attempts: Int? = nil, error: String? = nil) async throws(SagaLaneError) {
        try await write(.updateJobState(id: id, state: state, attempts: attempts, error: error))
    }

    @discardableResult
    public nonisolated(nonsending) func purgeFinishedJobs(olderThan cutoff: Timestamp) async throws(SagaLaneError) -> Int {
        try await write(.purgeFinishedJobs(olderThan: cutoff))
    }
}

/// Hooks for tests that need exact batches or a database that refuses writes.
extension SagaLog {
    /// Holds the writer thread between batches while `body` runs on it, so that records
    /// submitted meanwhile pile up and commit as one batch.
    package nonisolated(nonsending) func holdWriterForTesting(_ body: @escaping @Sendable () -> Void) async {
        try? await withWriter { _ throws(SagaLaneError) in body() }
    }

    /// Makes an SQLite log read-only (or writable again) under the running writer, as a full
    /// disk or a permissions change would.
    package nonisolated(nonsending) func setReadOnlyForTesting(_ readOnly: Bool) async throws(SagaLaneError) {
        try await runOnWriterForTesting("PRAGMA query_only = \(readOnly ? "ON" : "OFF")")
    }

    /// Runs SQL on an SQLite log's write connection between batches.
    package nonisolated(nonsending) func runOnWriterForTesting(_ sql: String) async throws(SagaLaneError) {
        try await withWriter { (storage) throws(SagaLaneError) in
            guard let sqlite = storage as? SQLiteStorage else { throw SagaLaneError(.invalidArgument, "not an SQLite log") }
            try sqlite.executeOnWriter(sql)
        }
    }
}
