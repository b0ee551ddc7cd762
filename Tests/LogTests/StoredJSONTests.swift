import SagaLaneTestSupport
import Testing
@testable import SagaLaneJSON
@testable import SagaLaneLog

/// The log's JSON view of what it stored, for values at the edge of what the parser accepts.
@Suite struct StoredJSONTests {
    private func nested(_ depth: Int) -> JSON {
        var value: JSON = 1
        for _ in 0..<depth { value = [value] }
        return value
    }

    /// A payload accepted at the depth bound comes back inside a consumed step's output (the
    /// event around it adds a level, a lane job's outcome around its result one more), and the
    /// log shows it as JSON rather than as a string.
    @Test func valuesAtTheDepthBoundReadBackAsJSON() async throws {
        let dir = TemporaryDirectory()
        let log = try SagaLog.open(path: dir.file("log.db"))
        defer { log.close() }
        let deepest = nested(JSON.defaultMaxDepth)
        let deepText = deepest.serialized
        #expect(try JSON(parsing: deepText) == deepest, "the bound itself is accepted from outside")
        let laneOutcome: JSON = ["lane": "l", "job_id": "j", "step": 0, "result": deepest]
        let output: JSON = ["type": "LaneJobFinished", "saga_id": 1, "version": 1, "payload": laneOutcome]

        try await log.startSaga(id: 1, name: "deep", inputJSON: deepText)
        try await log.startStep(sagaID: 1, index: 0, name: "s", target: "host", commandJSON: deepText)
        try await log.finishStep(sagaID: 1, index: 0, outputJSON: output.serialized)

        let record = try #require(try log.saga(id: 1))
        let view = record.json
        #expect(view["input"] == deepest)
        #expect(view["steps"]?[0]?["command"] == deepest)
        #expect(view["steps"]?[0]?["output"] == output)
        #expect(view["steps"]?[0]?["output"]?["payload"]?["result"] == deepest)
    }
}
