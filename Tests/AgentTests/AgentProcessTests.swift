import Glibc
import SagaLaneScriptSaga
import SagaLaneTestSupport
import Testing
@testable import SagaLane
@testable import SagaLaneAgent

/// A real agent process (`sagalane-testchild agent`), to kill and start again.
private final class AgentProcess {
    let child: ChildProcess
    let socket: String

    init(dataDir: String, extra: [String] = []) throws {
        socket = dataDir + "/agent.sock"
        child = try ChildProcess(ChildProcess.testChildPath, ["agent", "--data-dir", dataDir] + extra)
        guard child.readLine() == "ready" else { throw ChildError(message: "the agent did not start") }
    }

    func client(_ name: String) throws -> TestClient {
        let client = try TestClient(path: socket)
        _ = try client.request(.hello(version: WireVersion.current, name: name, targets: []))
        return client
    }
}

/// Runs the `sagalane` tool and returns its standard output.
private func sagalane(_ arguments: [String]) throws -> (output: String, status: Int32) {
    let child = try ChildProcess(ChildProcess.siblingPath("sagalane"), arguments)
    var lines: [String] = []
    while let line = child.readLine() { lines.append(line) }
    return (lines.joined(separator: "\n"), child.waitExitStatus())
}

@Suite(.serialized, .timeLimit(.minutes(3)))
struct AgentProcessTests {
    @Test func anAgentKilledMidSagaRecoversItOnRestartAndTheCLIShowsIt() throws {
        let dir = TemporaryDirectory()
        var agent: AgentProcess? = try AgentProcess(dataDir: dir.path)
        let host = try agent!.client("host")
        try host.ok(.targetRegister(names: ["host"]))
        let client = try agent!.client("client")
        let id = try client.startScript([("host", ["cmd": "Spawn"], "Done")])
        let command = try #require(try host.command())
        #expect(command.sagaID == id)
        // Read the log while the agent writes it: read-only, beside the running agent.
        let running = try sagalane(["saga", dir.file("sagalane.db"), "\(id)"])
        #expect(running.status == 0)
        #expect(running.output.contains("\"state\":\"running\""))
        #expect(agent!.child.kill9() == SIGKILL)
        agent = nil
        host.close()
        client.close()
        agent = try AgentProcess(dataDir: dir.path)
        let shown = try sagalane(["saga", dir.file("sagalane.db"), "\(id)"])
        #expect(shown.output.contains("\"state\":\"failed_compensation\""), "\(shown.output)")
        #expect(shown.output.contains("interrupted: the runtime restarted while the saga was running (pending step 0)"))
        let again = try agent!.client("client again")
        let saga = try #require(try again.ok(.sagaGet(sagaID: id))["saga"])
        #expect(saga["state"] == "failed_compensation")
        // New sagas get new ids.
        let host2 = try agent!.client("host")
        try host2.ok(.targetRegister(names: ["host"]))
        let next = try again.startScript([("host", ["cmd": "Spawn"], "Done")])
        #expect(next > id)
        let second = try #require(try host2.command())
        try host2.ok(.stepDone(sagaID: next, step: second.step, event: "Done", payload: .null))
        #expect(try again.waitSaga(next).state == "completed")
        agent!.child.signal(SIGTERM)
        #expect(agent!.child.waitExitStatus() == 0)
    }

    @Test func sigtermStopsCleanlyAndLeavesSagasInFlightForRecovery() throws {
        let dir = TemporaryDirectory()
        let agent = try AgentProcess(dataDir: dir.path)
        let host = try agent.client("host")
        try host.ok(.targetRegister(names: ["host"]))
        let id = try host.startScript([("host", ["cmd": "Work"], "Done")])
        _ = try #require(try host.command())
        // A second agent on the same data directory is refused while the first runs.
        let rival = try ChildProcess(ChildProcess.testChildPath, ["agent", "--data-dir", dir.path])
        #expect(rival.readLine() == nil)
        #expect(rival.waitExitStatus() == 1)
        agent.child.signal(SIGTERM)
        #expect(agent.child.waitExitStatus() == 0)
        #expect(try host.next(timeoutMilliseconds: 5000) == nil, "its connections were closed")
        #expect(access(agent.socket, F_OK) != 0, "the socket file is gone")
        // The lock is free again: the next agent starts on this data directory at once.
        let lock = open(dir.file("agent.lock"), O_RDWR)
        #expect(flock(lock, LOCK_EX | LOCK_NB) == 0)
        close(lock)
        let row = try #require(try SagaLog.openReadOnly(path: dir.file("sagalane.db")).saga(id: id))
        #expect(row.state == .running, "in flight at the stop: left for the next start's recovery")
    }

    @Test func aRemoteWorkerKilledMidJobFailsItsJob() throws {
        let dir = TemporaryDirectory()
        let agent = try AgentProcess(dataDir: dir.path, extra: ["--lane", "gpu=2"])
        defer { agent.child.signal(SIGTERM); _ = agent.child.waitExitStatus() }
        let client = try agent.client("submitter")
        // The worker is a process of its own: this test's child, killed with SIGKILL.
        let worker = try ChildProcess("/usr/bin/python3", ["-c", """
            import socket, json, sys
            s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile('rwb')
            def send(m): f.write((json.dumps(m) + '\\n').encode()); f.flush()
            send({'type': 'hello', 'version': 1, 'id': 1}); f.readline()
            send({'type': 'worker.register', 'lane': 'gpu', 'capacity': 1, 'id': 2}); f.readline()
            print(json.loads(f.readline())['job_id'], flush=True)
            import time; time.sleep(60)
            """, agent.socket])
        let submitted = try client.ok(.laneSubmit(WireLaneSubmit(lane: "gpu", jobID: "render-1", payload: ["frame": 1], notify: true)))
        #expect(submitted["job_id"] == "render-1")
        #expect(worker.readLine() == "render-1", "the worker holds the job")
        #expect(worker.kill9() == SIGKILL)
        let frame = try #require(try client.next(where: { if case .laneJobEnded = $0.message { return true }; return false }))
        guard case .laneJobEnded(_, "render-1", "failed", _, let error?, 1) = frame.message else {
            Issue.record("unexpected \(frame.serialized)")
            return
        }
        #expect(error.hasPrefix("worker lost: connection"))
        let row = try #require(try client.ok(.laneJob(jobID: "render-1"))["job"])
        #expect(row["state"] == "failed")
    }
}
