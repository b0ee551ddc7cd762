import Glibc
import SagaLaneTestSupport
import Testing
@testable import SagaLane
@testable import SagaLaneAgent

/// The repository's example saga files.
private func exampleSagas(_ name: String) -> String {
    var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)
    return parts.joined(separator: "/") + "/examples/sagas/" + name
}

private func writeFile(_ path: String, _ text: String) {
    let f = fopen(path, "w")!
    fputs(text, f)
    fclose(f)
}

/// A real agent process (`sagalane-testchild agent --sagas FILE`).
private func startAgent(_ dir: TemporaryDirectory, sagas: String) throws -> ChildProcess {
    let child = try ChildProcess(ChildProcess.testChildPath, ["agent", "--data-dir", dir.path, "--sagas", sagas])
    guard child.readLine() == "ready" else { throw ChildError(message: "the agent did not start") }
    return child
}

private func hello(_ socket: String, _ name: String) throws -> TestClient {
    let client = try TestClient(path: socket)
    _ = try client.request(.hello(version: WireVersion.current, name: name, targets: []))
    return client
}

@Suite(.serialized, .timeLimit(.minutes(2)))
struct SagaFileAgentTests {
    /// The seed's two sagas, from the example file, run by the agent against a host in
    /// another connection, with the outcomes of the C launcher (examples/c/launcher.c): every
    /// triggered saga completes, a crash-flagged close starts nothing, and the second step
    /// of the cleanup gets the first step's result.
    @Test func theSeedSagasFromAFileRunAsTheLauncherRunsThem() throws {
        let dir = TemporaryDirectory()
        let agent = try startAgent(dir, sagas: exampleSagas("terminal-pool.json"))
        let socket = dir.file("agent.sock")
        let host = try hello(socket, "host")
        try host.ok(.targetRegister(names: ["host"]))
        let client = try hello(socket, "terminal")
        try client.ok(.publish(event: "PoolWindowPromoted", sagaID: nil, payload: ["label": "pool-1"]))
        try client.ok(.publish(event: "WindowClosed", sagaID: nil, payload: ["label": "main", "crash_detected": false]))
        try client.ok(.publish(event: "WindowClosed", sagaID: nil, payload: ["label": "logs", "crash_detected": true]))
        try client.ok(.publish(event: "PoolWindowPromoted", sagaID: nil, payload: ["label": "pool-2"]))
        try client.ok(.publish(event: "WindowClosed", sagaID: nil, payload: ["label": "side"]))
        let direct = UInt64(try client.ok(.sagaStart(saga: "window_cleanup_cascade", input: ["label": "direct"], idempotencyKey: nil))["saga_id"]?.int64Value ?? 0)

        var commands: [String: [JSON]] = [:]
        var sagas: Set<UInt64> = []
        // 2 spawns, 3 reaps, 3 drains.
        for _ in 0..<8 {
            let command = try #require(try host.command())
            #expect(command.target == "host")
            let cmd = command.command["cmd"]?.stringValue ?? "?"
            commands[cmd, default: []].append(command.command)
            sagas.insert(command.sagaID)
            let (event, payload): (String, JSON) = switch cmd {
            case "spawn_pool_window": ("PoolWindowAdded", ["label": "pool-new"])
            case "reap_panes": ("PanesReaped", ["panes": 3])
            default: ("PoolDrained", .null)
            }
            try host.ok(.stepDone(sagaID: command.sagaID, step: command.step, event: event, payload: payload))
        }
        #expect(commands["spawn_pool_window"]?.compactMap { $0["replaces"]?.stringValue }.sorted() == ["pool-1", "pool-2"])
        #expect(commands["reap_panes"]?.compactMap { $0["window"]?.stringValue }.sorted() == ["direct", "main", "side"])
        #expect(commands["drain_pool_if_last"]?.allSatisfy { $0["panes"] == 3 } == true)
        #expect(sagas.count == 5 && sagas.contains(direct))
        for id in sagas { #expect(try client.waitSaga(id).state == "completed") }
        // Nothing more: the crash-flagged close started no saga.
        #expect(try host.command(timeoutMilliseconds: 300) == nil)
        agent.signal(SIGTERM)
        #expect(agent.waitExitStatus() == 0)
        let log = try SagaLog.openReadOnly(path: dir.file("sagalane.db"))
        let states = try log.snapshotRecent(limit: 10).map { "\($0.name) \($0.state.rawValue)" }.sorted()
        #expect(states == ["pool_respawn_on_promote completed", "pool_respawn_on_promote completed",
                           "window_cleanup_cascade completed", "window_cleanup_cascade completed", "window_cleanup_cascade completed"])
    }

    /// SIGHUP reads the file again and adds the sagas that are new; a file with mistakes
    /// changes nothing and the agent runs on.
    @Test func sighupAddsNewSagasAndABrokenFileChangesNothing() throws {
        let dir = TemporaryDirectory()
        let file = dir.file("sagas.json")
        let step = #"{"target": "host", "command": {"cmd": "go"}, "completes_on": "Went"}"#
        writeFile(file, #"{"sagas": [{"name": "first", "steps": [\#(step)]}]}"#)
        let agent = try startAgent(dir, sagas: file)
        let client = try hello(dir.file("agent.sock"), "client")
        #expect(try client.errorCode(.sagaStart(saga: "second", input: [:], idempotencyKey: nil)) == "unknown_saga_type")

        writeFile(file, #"{"sagas": [{"name": "first", "steps": [\#(step)]}, {"name": "second", "steps": [{"target": ""}]}]}"#)
        agent.signal(SIGHUP)
        usleep(300_000)
        #expect(try client.errorCode(.sagaStart(saga: "second", input: [:], idempotencyKey: nil)) == "unknown_saga_type")

        writeFile(file, #"{"sagas": [{"name": "first", "steps": [\#(step)]}, {"name": "second", "steps": [\#(step)]}]}"#)
        agent.signal(SIGHUP)
        try eventually("the second saga type is registered") {
            (try? client.errorCode(.sagaStart(saga: "second", input: [:], idempotencyKey: nil))) == .some(nil)
        }
        agent.signal(SIGTERM)
        #expect(agent.waitExitStatus() == 0)
    }

    /// `sagalane agent --sagas FILE` with mistakes in the file exits 2 at start-up and lists
    /// every mistake with its place, before it touches the log.
    @Test func anInvalidFileStopsTheAgentAtStartUpWithExitStatusTwo() throws {
        let dir = TemporaryDirectory()
        let file = dir.file("bad.json")
        writeFile(file, """
        {"sagas": [
          {"name": "a", "steps": [{"target": "host", "command": "${steps.nope}", "completes_on": "E"}]},
          {"name": "b", "steps": []}
        ]}
        """)
        let tool = ChildProcess.siblingPath("sagalane")
        let child = try ChildProcess("/bin/sh", ["-c", "exec \"$0\" agent --data-dir \"$1\" --sagas \"$2\" 2>&1", tool, dir.file("data"), file])
        var lines: [String] = []
        while let line = child.readLine() { lines.append(line) }
        #expect(child.waitExitStatus() == 2)
        let output = lines.joined(separator: "\n")
        #expect(output.contains("\(file):2:57: saga \"a\", step 1: field \"command\": \"${steps.nope}\" refers to step \"nope\""), "\(output)")
        #expect(output.contains("\(file):3:26: saga \"b\": field \"steps\" must be a non-empty array"), "\(output)")
        #expect(access(dir.file("data/sagalane.db"), F_OK) != 0, "no log was created")
    }
}
