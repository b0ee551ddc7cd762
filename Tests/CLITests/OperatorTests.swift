import Glibc
import SagaLaneJSON
import SagaLaneLog
import SagaLaneTestSupport
import Testing

/// `sagas resolve|retry|resume`, on a log whose owner stopped (saga 4 and 10 of the mixed log
/// are in failed_compensation, saga 1 completed).
@Suite(.timeLimit(.minutes(2)))
struct OperatorTests {
    @Test func resolveClosesAFailedCompensationSagaWithTheNote() async throws {
        let dir = TemporaryDirectory()
        let db = dir.file("ops.db")
        try await writeMixedLog(db)
        let resolved = Sagalane.run(["sagas", "resolve", db, "4", "--note", "refunded by hand"])
        #expect(resolved.status == 0 && resolved.stdout.contains("saga 4 resolved: failed"), "\(resolved)")
        let saga = try #require(try SagaLog.openReadOnly(path: db).saga(id: 4))
        #expect(saga.state == .failed && saga.failureReason?.hasSuffix("resolved by an operator: refunded by hand") == true)
        // Only a saga in failed_compensation waits for an operator; a missing saga is said so.
        let again = Sagalane.run(["sagas", "resolve", db, "4", "--note", "twice"])
        #expect(again.status == 1 && again.stderr.contains("saga 4 is failed: only a saga in failed_compensation"), "\(again)")
        let missing = Sagalane.run(["sagas", "resolve", db, "99", "--note", "x"])
        #expect(missing.status == 1 && missing.stderr.contains("the log has no saga 99"), "\(missing)")
        let noNote = Sagalane.run(["sagas", "resolve", db, "10"])
        #expect(noNote.status == 2 && noNote.stderr.contains("--note"), "\(noNote)")
    }

    @Test func retryAndResumeLeaveARequestForTheNextStart() async throws {
        let dir = TemporaryDirectory()
        let db = dir.file("ops.db")
        try await writeMixedLog(db)
        let retry = Sagalane.run(["sagas", "retry", db, "10", "--note", "billing is back"])
        #expect(retry.status == 0 && retry.stdout.contains("request recorded"), "\(retry)")
        let resume = Sagalane.run(["sagas", "resume", db, "4"])
        #expect(resume.status == 0, "\(resume)")
        let refused = Sagalane.run(["sagas", "resume", db, "1"])
        #expect(refused.status == 1 && refused.stderr.contains("saga 1 is completed"), "\(refused)")
        // The requests are in the log for the owner's next start, with the saga's history.
        let log = try SagaLog.openReadOnly(path: db)
        let requests = try log.requests(limit: 10).map { "\($0.sagaID) \($0.action.rawValue)" }.sorted()
        #expect(requests == ["10 retry_compensation", "4 resume"], "\(requests)")
    }

    @Test func theyRefuseWhileTheOwnerWrites() async throws {
        let dir = TemporaryDirectory()
        let db = dir.file("live.db")
        let writer = try ChildProcess(ChildProcess.testChildPath, ["log-append", db, "normal"])
        #expect(writer.readLine()?.hasPrefix("durable") == true)
        let outcome = Sagalane.run(["sagas", "resolve", db, "1", "--note", "x"])
        #expect(outcome.status == 1 && !outcome.stderr.isEmpty, "\(outcome)")
        _ = writer.kill9()
    }
}
