import Glibc
import SagaLaneJSON
import SagaLaneLog
import SagaLaneSupport
import SagaLaneTestSupport
import Testing

/// `sagalane agent`, `stats --socket` and `recover --dry-run`, with the binary's own agent.
@Suite(.timeLimit(.minutes(3)))
struct AgentCLITests {
    /// Waits for the agent's socket to appear (it is made once the agent listens).
    private func waitForSocket(_ path: String) -> Bool {
        for _ in 0..<200 {
            if exists(path) { return true }
            usleep(25_000)
        }
        return false
    }

    @Test func statsWithASocketShowsTheRunningAgentsCounters() async throws {
        let dir = TemporaryDirectory()
        let data = dir.file("data")
        let agent = try ChildProcess(ChildProcess.siblingPath("sagalane"), ["agent", "--data-dir", data, "--lane", "gpu=2"])
        let socket = data + "/agent.sock"
        #expect(waitForSocket(socket), "the agent never listened")
        let counters = Sagalane.run(["stats", "--socket", socket, "--format", "json"])
        #expect(counters.status == 0, "\(counters)")
        #expect(counters.json?["connections_accepted"]?.int64Value ?? 0 >= 1, "\(counters)")
        #expect(counters.json?["lanes"]?["gpu"] != nil && counters.json?["errors_total"]?.int64Value == 0, "\(counters)")
        // Each ask is a connection the next one counts.
        let again = Sagalane.run(["stats", "--socket", socket, "--format", "json"])
        #expect((again.json?["connections_accepted"]?.int64Value ?? 0) > (counters.json?["connections_accepted"]?.int64Value ?? 0))
        // With its log: the log's counts, the agent's under "agent"; a table shows both.
        let both = Sagalane.run(["stats", data + "/sagalane.db", "--socket", socket, "--format", "json"])
        #expect(both.status == 0 && both.json?["schema_version"] != nil && both.json?["agent"]?["frames_read"] != nil, "\(both)")
        let table = Sagalane.run(["stats", data + "/sagalane.db", "--socket", socket, "--format", "table"])
        let rows = tableRows(table.stdout)
        #expect(rows.contains(["total", "0"]) && rows.contains { $0.first == "connections_accepted" }, "\(table)")
        #expect(rows.contains(["lanes.gpu.queued", "0"]), "\(table)")
        // Cancelling a saga the agent never had: refused, in its words.
        let unknown = Sagalane.run(["sagas", "cancel", "999", "--socket", socket])
        #expect(unknown.status == 1 && unknown.stderr.contains("refused: no saga 999 (unknown_saga)"), "\(unknown)")
        let byDataDir = Sagalane.run(["sagas", "cancel", "999", "--data-dir", data])
        #expect(byDataDir.status == 1 && byDataDir.stderr.contains("no saga 999"), "\(byDataDir)")
        let notAnID = Sagalane.run(["sagas", "cancel", "last", "--socket", socket])
        #expect(notAnID.status == 2 && notAnID.stderr.contains("'last'"), "\(notAnID)")
        agent.signal(SIGTERM)
        #expect(agent.waitExitStatus() == 0)
        // No agent there any more: a failed operation that says what to check.
        let gone = Sagalane.run(["stats", "--socket", socket])
        #expect(gone.status == 1 && gone.stderr.contains("cannot reach an agent at \(socket)"), "\(gone)")
        #expect(gone.stderr.contains("is `sagalane agent` running"), "\(gone)")
        let neither = Sagalane.run(["stats"])
        #expect(neither.status == 2 && neither.stderr.contains("stats needs a log (<db>), an agent's socket (--socket PATH), or both"))
    }

    /// An agent that recovers lane jobs (one was running, two are queued) and stops at once
    /// stops cleanly, every time: the lanes' workers are gone before what they use.
    @Test func anAgentThatRecoveredLaneJobsStopsCleanly() async throws {
        let dir = TemporaryDirectory()
        try await writeMixedLog(dir.file("template.db"))
        for run in 0..<10 {
            let data = dir.file("data-\(run)")
            mkdir(data, 0o700)
            copyFile(dir.file("template.db"), to: data + "/sagalane.db")
            let outcome = Sagalane.run(["agent", "--data-dir", data, "--lane", "gpu=2", "--exit-when-ready"])
            #expect(outcome.status == 0, "run \(run): \(outcome)")
            if outcome.status != 0 { break }
        }
    }

    /// A log that a killed process left with `count` sagas running, each with a step pending,
    /// written in one SQL transaction on the real schema.
    private func writeInterruptedLog(_ path: String, count: Int) async throws {
        let log = try SagaLog.open(path: path, durability: .normal)
        try await log.runOnWriterForTesting("""
            BEGIN;
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < \(count))
            INSERT INTO saga (id, name, state, input_json, started_at)
            SELECT i, 'order', 'running', '{}', strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 hour') FROM n;
            INSERT INTO saga_step (saga_id, step_index, name, target, command_json, state, started_at)
            SELECT id, 0, 'reserve', 'host', '{"do":"reserve"}', 'pending', started_at FROM saga;
            UPDATE meta SET value = \(count) WHERE key = 'saga_id_high_water';
            COMMIT;
            """)
        log.close()
    }

    @Test func recoveringABigLogShowsProgressOnATerminalAndNotInAPipe() async throws {
        let dir = TemporaryDirectory()
        let count = 20_000
        for name in ["tty", "pipe"] {
            mkdir(dir.file(name), 0o700)
            try await writeInterruptedLog(dir.file(name) + "/sagalane.db", count: count)
        }
        let db = dir.file("tty") + "/sagalane.db"
        let onTerminal = Sagalane.run(["agent", "--data-dir", dir.file("tty"), "--exit-when-ready"], stderr: .terminal)
        #expect(onTerminal.status == 0, "\(onTerminal)")
        #expect(onTerminal.stderr.contains("\r\u{1B}[Krecovering \(db): 0 of 20,000 unfinished sagas (0%)"), "\(onTerminal.stderr.prefix(600))")
        #expect(onTerminal.stderr.contains("\r\u{1B}[Krecovering \(db): 20,000 of 20,000 unfinished sagas (100%)"), "\(onTerminal.stderr.prefix(600))")
        // The line is cleared, a summary follows, then the agent's ready line.
        #expect(onTerminal.stderr.contains("\r\u{1B}[Ksagalane: recovered 20,000 unfinished sagas of \(db) in "), "\(onTerminal.stderr.prefix(600))")
        #expect(onTerminal.stderr.contains("20000 unfinished sagas recovered"))

        let inPipe = Sagalane.run(["agent", "--data-dir", dir.file("pipe"), "--exit-when-ready"])
        #expect(inPipe.status == 0, "\(inPipe)")
        #expect(!inPipe.stderr.contains("\u{1B}") && !inPipe.stderr.contains("recovering"), "\(inPipe.stderr.prefix(600))")
        #expect(inPipe.stderr.contains("20000 unfinished sagas recovered"), "the ready line counts them: \(inPipe.stderr)")
        let failed = try SagaLog.openReadOnly(path: dir.file("pipe") + "/sagalane.db")
        #expect(try failed.countSagas(matching: SagaFilter(states: [.failedCompensation])) == count)
        failed.close()
    }

    @Test func badAgentOptionsExitWith2() {
        let dir = TemporaryDirectory()
        let cases: [([String], String)] = [
            (["agent", "--data-dir", dir.path, "--lane", "gpu"], "--lane takes NAME=N with N from 1 to 1024, as in gpu=2, not 'gpu'"),
            (["agent", "--data-dir", dir.path, "--lane", "gpu=0"], "not 'gpu=0'"),
            (["agent", "--data-dir", dir.path, "--allow-uid", "root"], "--allow-uid"),
            (["agent", "--data-dir", dir.path, "--max-frame", "10"], "--max-frame takes 64 to 1073741824 bytes, not 10"),
            (["agent", "--data-dir", dir.path, "--buffer-expiry", "later"], "'later' is not a duration"),
            (["agent", "--data-dir", dir.path, "--sagas", dir.file("x.json")], "cannot open \(dir.file("x.json")): No such file or directory"),
        ]
        for (arguments, message) in cases {
            let outcome = Sagalane.run(arguments)
            #expect(outcome.status == 2 && outcome.stderr.contains(message), "\(arguments): \(outcome)")
        }
        // A configuration that works: --exit-when-ready stops once it listens.
        let ready = Sagalane.run(["agent", "--data-dir", dir.file("ok"), "--lane", "cpu=4", "--exit-when-ready"])
        #expect(ready.status == 0 && ready.stderr.contains("ready: data dir \(dir.file("ok"))"), "\(ready)")
        #expect(ready.stderr.contains("lanes: cpu"))
        // A second agent on a data directory is refused.
        let data = dir.file("taken")
        guard let first = try? ChildProcess(ChildProcess.siblingPath("sagalane"), ["agent", "--data-dir", data]) else {
            Issue.record("cannot start the agent")
            return
        }
        #expect(waitForSocket(data + "/agent.sock"))
        let second = Sagalane.run(["agent", "--data-dir", data, "--socket", dir.file("other.sock")])
        #expect(second.status != 0 && !second.stderr.isEmpty, "\(second)")
        first.signal(SIGTERM)
        #expect(first.waitExitStatus() == 0)
    }

    /// What the dry run says recovery would do is what the agent's recovery then does.
    @Test func recoverDryRunShowsWhatRecoveryThenDoes() async throws {
        let dir = TemporaryDirectory()
        let data = dir.file("data")
        #expect(mkdir(data, 0o700) == 0)
        let db = data + "/sagalane.db"
        try await writeMixedLog(db)
        // Sagas only: what recovery does to lane jobs is the lanes' own business (and tests).
        foreignSQL(db, "DELETE FROM lane_job")
        let before = fileBytes(db)
        let dry = Sagalane.run(["recover", db, "--dry-run", "--format", "json"])
        #expect(dry.status == 0, "\(dry)")
        guard case .array(let plans)? = dry.json else { Issue.record("\(dry)"); return }
        #expect(plans.compactMap { $0["id"]?.int64Value } == [7, 8, 12], "the unfinished ones, by id")
        #expect(plans.allSatisfy { $0["policy"] == "mark_failed" && $0["new_state"] == "failed_compensation" })
        #expect(plans[0]["reason"]?.stringValue == "interrupted: the runtime restarted while the saga was running (pending step 1)")
        #expect(fileBytes(db) == before, "a dry run writes nothing")
        let table = Sagalane.run(["recover", db, "--dry-run", "--format", "table"])
        let rows = tableRows(table.stdout)
        #expect(rows.first == ["ID", "NAME", "STATE", "STARTED", "POLICY", "WOULD BECOME", "REASON"], "\(table)")
        #expect(rows.dropFirst().prefix(3).map { $0[0] } == ["7", "8", "12"])
        #expect(table.stdout.hasSuffix("recovery would mark 3 sagas failed_compensation\n"), "\(table)")
        let one = Sagalane.run(["recover", db, "--dry-run", "--state", "compensating", "--format", "jsonl"])
        #expect(one.jsonLines.compactMap { $0?["id"]?.int64Value } == [8])
        let limited = Sagalane.run(["recover", db, "--dry-run", "--limit", "1", "--format", "table"])
        #expect(limited.stdout.contains("recovery would mark 3 sagas failed_compensation (1 shown: --limit shows more)"), "\(limited)")
        let notUnfinished = Sagalane.run(["recover", db, "--dry-run", "--state", "completed"])
        #expect(notUnfinished.status == 2 && notUnfinished.stderr.contains("'completed' is not an unfinished state"))
        let withoutDryRun = Sagalane.run(["recover", db])
        #expect(withoutDryRun.status == 2 && withoutDryRun.stderr.contains("recover only runs with --dry-run"))

        // The agent's start-up recovery on that log does what the dry run said.
        let agent = Sagalane.run(["agent", "--data-dir", data, "--exit-when-ready"])
        #expect(agent.status == 0 && agent.stderr.contains("3 unfinished sagas recovered"), "\(agent)")
        for plan in plans {
            let id = plan["id"]?.int64Value ?? 0
            let shown = Sagalane.run(["sagas", "show", db, "\(id)", "--format", "json"])
            #expect(shown.json?["state"] == plan["new_state"] && shown.json?["failure_reason"] == plan["reason"], "\(shown)")
        }
        let after = Sagalane.run(["recover", db, "--dry-run", "--format", "table"])
        #expect(after.status == 0 && after.stdout == "no unfinished sagas: recovery would do nothing\n", "\(after)")
    }
}
