import SagaLaneJSON
import SagaLaneLog
import SagaLaneSupport

/// The log, as operators and hosts read it: JSON of the form the C API documents.
extension Runtime {
    /// Up to `limit` sagas, most recent first.
    public func recentSagas(limit: Int) throws(SagaLaneError) -> JSON {
        .array(try log.snapshotRecent(limit: limit).map(\.json))
    }

    /// Up to `limit` sagas an operator should look at (unfinished, or `failed_compensation`),
    /// with their steps, by id.
    public func unresolvedSagas(limit: Int) throws(SagaLaneError) -> JSON {
        .array(try log.unresolvedSagas(limit: limit).map(\.json))
    }

    /// Saga `id` with its steps, or `nil`.
    public func saga(id: UInt64) throws(SagaLaneError) -> JSON? {
        try log.saga(id: id)?.json
    }

    /// Up to `limit` lane jobs, most recent activity first, of one lane and one state when
    /// those are given.
    public func recentJobs(lane: String? = nil, state: JobState? = nil, limit: Int) throws(SagaLaneError) -> JSON {
        .array(try log.recentJobs(lane: lane, state: state, limit: limit).map(\.json))
    }

    /// What the log holds, counted (see `LogStats.json`).
    public func logStats() throws(SagaLaneError) -> JSON {
        try log.stats().json
    }

    /// Deletes terminal sagas that ended more than `age` ago.
    /// - Returns: How many were deleted.
    public func vacuum(olderThan age: Duration) throws(SagaLaneError) -> Int {
        let log = self.log
        let cutoff = Timestamp.now().advanced(by: .zero - age)
        let result = driver.waitFor { () async -> Result<Int, SagaLaneError> in
            do throws(SagaLaneError) { return .success(try await log.vacuum(olderThan: cutoff)) } catch { return .failure(error) }
        }
        return try result.get()
    }
}
