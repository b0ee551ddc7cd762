import Glibc
import SagaLaneTestSupport
import Testing
@testable import SagaLane
@testable import SagaLaneAgent

/// examples/python, run as a user would run them: python3 against `sagalane agent`.
private let examples: String = {
    var dir = String(#filePath)
    for _ in 0..<3 { dir = String(dir[..<dir.lastIndex(of: "/")!]) }
    return dir + "/examples/python"
}()

private let python = "/usr/bin/python3"

/// Runs a Python example (standard error folded into standard output) and returns its lines
/// and exit status.
private func runPython(_ arguments: [String]) throws -> (lines: [String], status: Int32) {
    let child = try ChildProcess("/bin/sh", ["-c", "cd \"$0\" && exec \"$@\" 2>&1", examples, python] + arguments)
    var lines: [String] = []
    while let line = child.readLine() { lines.append(line) }
    return (lines, child.waitExitStatus())
}

/// A real `sagalane agent` (the tool's, standard error read for its ready line) in a
/// temporary directory.
private final class ExampleAgent {
    let dir = TemporaryDirectory()
    let child: ChildProcess
    var socket: String { dir.file("agent.sock") }

    init(_ extra: [String] = []) throws {
        child = try ChildProcess("/bin/sh", ["-c", "exec \"$0\" \"$@\" 2>&1", ChildProcess.siblingPath("sagalane"),
                                             "agent", "--data-dir", dir.path] + extra)
        var said: [String] = []
        while let line = child.readLine() {
            said.append(line)
            if line.contains(" ready: ") { return }
        }
        throw ChildError(message: "the agent did not start: \(said)")
    }

    func client() throws -> TestClient {
        let client = try TestClient(path: socket)
        _ = try client.request(.hello(version: WireVersion.current, name: "python examples test", targets: []))
        return client
    }

    deinit {
        child.signal(SIGTERM)
        _ = child.waitExitStatus()
    }
}

@Suite(.serialized, .timeLimit(.minutes(2)), .enabled(if: access(python, X_OK) == 0, "needs \(python)"))
struct PythonExamplesTests {
    @Test func theExampleHostRunsItsSagasToTheirEnds() throws {
        let agent = try ExampleAgent(["--sagas", examples + "/checkout.json"])
        let run = try runPython(["example_host.py", "--socket", agent.socket, "--sagas", "3"])
        #expect(run.status == 0, "\(run.lines)")
        #expect(run.lines.first?.hasPrefix("connected to sagalane \(SagaLaneVersion.string) (protocol 1)") == true, "\(run.lines)")
        #expect(run.lines.contains("saga 1 completed"), "\(run.lines)")
        #expect(run.lines.contains("saga 2 completed"), "\(run.lines)")
        #expect(run.lines.contains { $0.hasPrefix("saga 3 compensated:") && $0.contains("card declined for 2500 cents") }, "\(run.lines)")
        // The declined order's reservation was released: the compensation of its one succeeded step.
        #expect(run.lines.contains("  saga 3 step 2: release order-3 (undoes step 0)"), "\(run.lines)")
        #expect(!run.lines.contains { $0.contains("refund") }, "the charge did not succeed: nothing to refund")
        // What the host answered is in the log: the receipt the first step's event carried.
        let client = try agent.client()
        let saga = try #require(try client.ok(.sagaGet(sagaID: 2))["saga"])
        #expect(saga["state"] == "completed")
        let steps = try #require(saga["steps"]?.arrayValue)
        #expect(steps.count == 3)
        #expect(steps[1]["output"]?.serialized.contains("r-order-2-200") == true, "\(steps[1].serialized)")
        // The saga carried the charge's receipt into the email command, as checkout.json says.
        #expect(steps.last?["command"]?["receipt"] == "r-order-2-200", "\(steps.last?.serialized ?? "")")
    }

    @Test func theExampleWorkerAnswersJobsAndFailuresAreRetried() throws {
        let agent = try ExampleAgent(["--lane", "words=2"])
        let client = try agent.client()
        try client.ok(.laneSubmit(WireLaneSubmit(lane: "words", jobID: "a", payload: ["text": "three small words"], notify: true)))
        try client.ok(.laneSubmit(WireLaneSubmit(lane: "words", jobID: "b", payload: ["fail": "no text"],
                                                 retry: RetryPolicy(maxAttempts: 2, initialBackoff: .milliseconds(10)), notify: true)))
        try client.ok(.laneSubmit(WireLaneSubmit(lane: "words", jobID: "c", payload: ["text": "one"], notify: true)))
        // Three jobs, one run twice: four answers.
        let run = try runPython(["example_worker.py", "--socket", agent.socket, "--lane", "words", "--capacity", "2", "--jobs", "4"])
        #expect(run.status == 0, "\(run.lines)")
        #expect(run.lines.contains("job b (attempt 2): failed"), "\(run.lines)")
        var ended: [String: WireMessage] = [:]
        while ended.count < 3 {
            let frame = try #require(try client.next(where: { if case .laneJobEnded = $0.message { return true }; return false }))
            if case .laneJobEnded(_, let job, _, _, _, _) = frame.message { ended[job] = frame.message }
        }
        #expect(ended["a"] == .laneJobEnded(lane: "words", jobID: "a", state: "finished",
                                            result: ["upper": "THREE SMALL WORDS", "words": 3], error: nil, attempts: 1))
        #expect(ended["b"] == .laneJobEnded(lane: "words", jobID: "b", state: "failed", result: nil, error: "no text", attempts: 2))
        #expect(ended["c"] == .laneJobEnded(lane: "words", jobID: "c", state: "finished",
                                            result: ["upper": "ONE", "words": 1], error: nil, attempts: 1))
    }

    @Test func theWorkerDemoSubmitsItsOwnJobs() throws {
        let agent = try ExampleAgent(["--lane", "demo=1"])
        let run = try runPython(["example_worker.py", "--socket", agent.socket, "--lane", "demo", "--submit", "3"])
        #expect(run.status == 0, "\(run.lines)")
        #expect(run.lines.contains { $0.hasPrefix("ended demo-0: finished") && $0.contains("JOB NUMBER 0 OF THE DEMO") }, "\(run.lines)")
        #expect(run.lines.contains("ended demo-2: failed no text to count"), "\(run.lines)")
    }

    @Test func theClientRaisesTheAgentsErrorsByCode() throws {
        let agent = try ExampleAgent()
        let run = try runPython(["-c", """
            import sys
            from sagalane_client import Connection, ProtocolError
            agent = Connection(sys.argv[1], name="errors")
            for kind, fields in [("saga.start", {"saga": "biling"}), ("saga.get", {"saga_id": 1, "verbose": True}),
                                 ("saga.get", {"saga_id": 99}), ("no.such", {})]:
                try:
                    agent.call(kind, **fields)
                    print("ok?", kind)
                except ProtocolError as error:
                    print(error.code, error.about, error.message)
            print("still connected:", agent.call("ping") == {})
            """, agent.socket])
        #expect(run.status == 0, "\(run.lines)")
        #expect(run.lines.count == 5, "\(run.lines)")
        #expect(run.lines.first?.hasPrefix("unknown_saga_type saga.start") == true, "\(run.lines)")
        #expect(run.lines.dropFirst().first == "unknown_field saga.get saga.get has no field \"verbose\"", "\(run.lines)")
        #expect(run.lines.dropFirst(2).first == "unknown_saga saga.get no saga 99", "\(run.lines)")
        #expect(run.lines.dropFirst(3).first?.hasPrefix("unknown_type no.such") == true, "\(run.lines)")
        #expect(run.lines.last == "still connected: True")
    }
}
