import Glibc
import SagaLaneJSON
import SagaLaneLog
import SagaLaneSupport
import SagaLaneTestSupport
import Testing

/// The `sagalane` binary run as an operator runs it, on logs written through the log's API.
@Suite(.timeLimit(.minutes(5)))
struct CLITests {
    // MARK: Help

    @Test(arguments: [
        ["agent"], ["sagas"], ["sagas", "list"], ["sagas", "show"], ["sagas", "unresolved"], ["sagas", "cancel"], ["sagas", "resolve"], ["sagas", "retry"], ["sagas", "resume"], ["jobs"], ["lanes"], ["stats"],
        ["vacuum"], ["recover"], ["validate"], ["version"],
    ])
    func everyCommandHasItsOwnHelp(_ command: [String]) {
        let outcome = Sagalane.run(command + ["--help"])
        #expect(outcome.status == 0, "\(outcome)")
        #expect(outcome.stdout.contains("USAGE: sagalane \(command.joined(separator: " "))"), "\(outcome)")
        #expect(outcome.stdout.contains("OVERVIEW: "), "\(outcome)")
        // Commands that do something show how, with examples.
        if command != ["sagas"] && command != ["version"] {
            #expect(outcome.stdout.contains("Examples:\n  sagalane \(command.joined(separator: " "))"), "\(outcome)")
            if command != ["agent"] && command != ["sagas", "cancel"] && command != ["validate"] { #expect(outcome.stdout.contains("<db>"), "\(outcome)") }
        }
        // `help COMMAND` says the same.
        let help = Sagalane.run(["help"] + command)
        #expect(help.status == 0 && help.stdout == outcome.stdout, "\(help)")
    }

    @Test func theTopLevelHelpListsTheCommandsAndHidesTheOldNames() {
        let outcome = Sagalane.run(["--help"])
        #expect(outcome.status == 0)
        for command in ["agent", "sagas", "jobs", "lanes", "stats", "vacuum", "recover", "validate", "version"] {
            #expect(outcome.stdout.contains("\n  \(command) "), "\(command): \(outcome)")
        }
        for old in ["recent", "saga ", "unresolved ", "agent-stats"] {
            #expect(!outcome.stdout.contains("\n  \(old)"), "\(old)")
        }
        #expect(Sagalane.run(["version"]).stdout == "sagalane \(SagaLaneVersion.string)\n")
        #expect(Sagalane.run(["--version"]).stdout == "sagalane \(SagaLaneVersion.string)\n")
    }

    // MARK: Tables and JSON

    @Test func sagasListAsATableAgreesWithItsJSON() async throws {
        let dir = TemporaryDirectory()
        let db = dir.file("app.db")
        try await writeMixedLog(db)
        for arguments in [[], ["--state", "completed,failed"], ["--name", "refund"], ["--since", "1d"], ["--until", "1d"],
                          ["--state", "running", "--state", "compensating"], ["--limit", "4"]] {
            let json = Sagalane.run(["sagas", "list", db, "--format", "json"] + arguments)
            let table = Sagalane.run(["sagas", "list", db, "--format", "table"] + arguments)
            #expect(json.status == 0 && table.status == 0, "\(json)\n\(table)")
            guard case .array(let sagas)? = json.json else {
                Issue.record("not a JSON array: \(json)")
                continue
            }
            let rows = tableRows(table.stdout)
            #expect(rows.first == ["ID", "NAME", "STATE", "STEPS", "STARTED", "DURATION", "REASON"], "\(table)")
            let body = rows.dropFirst().filter { !$0[0].hasPrefix("(") }
            #expect(body.count == sagas.count, "\(arguments): \(table)")
            for (row, saga) in zip(body, sagas) {
                #expect(row[0] == String(saga["id"]?.int64Value ?? -1))
                #expect(row[1] == saga["name"]?.stringValue)
                #expect(row[2] == saga["state"]?.stringValue)
                #expect(row[3] == String(saga["steps"]?.int64Value ?? -1))
                #expect(row.count == 7 ? row[6] == saga["failure_reason"]?.stringValue : saga["failure_reason"]?.isNull == true)
            }
            // JSON lines: the same values, one a line.
            let lines = Sagalane.run(["sagas", "list", db, "--format", "jsonl"] + arguments)
            #expect(lines.jsonLines.compactMap { $0 } == sagas, "\(lines)")
            #expect(lines.jsonLines.count == sagas.count)
        }
        // What each filter selects, from the JSON.
        func ids(_ arguments: [String]) -> [Int64] {
            guard case .array(let sagas)? = Sagalane.run(["sagas", "list", db, "--format", "json"] + arguments).json else { return [] }
            return sagas.compactMap { $0["id"]?.int64Value }
        }
        // Most recent first: today's sagas, then the old ones (which all ended at one instant),
        // highest id first among equals.
        #expect(ids([]) == Array((1...12).reversed()))
        #expect(Set(ids(["--state", "completed"])) == [1, 5, 6, 9])
        #expect(Set(ids(["--state", "failed_compensation,compensated"])) == [3, 4, 10])
        #expect(Set(ids(["--name", "refund"])) == [3, 5, 8, 11])
        #expect(Set(ids(["--since", "1d"])) == Set(7...12))
        #expect(Set(ids(["--until", "1d"])) == Set(1...6))
        #expect(Set(ids(["--name", "order", "--until", "1d", "--state", "completed"])) == [1, 6])
        #expect(ids(["--limit", "3"]).count == 3)
        #expect(ids(["--name", "nothing"]).isEmpty)
        let empty = Sagalane.run(["sagas", "list", db, "--name", "nothing", "--format", "table"])
        #expect(empty.status == 0 && empty.stdout == "no sagas match\n", "\(empty)")
        let cut = Sagalane.run(["sagas", "list", db, "--limit", "5", "--format", "table"])
        #expect(cut.stdout.contains("(5 of 12 sagas shown: --limit shows more"), "\(cut)")
    }

    @Test func unresolvedJobsLanesAndStatsAgreeWithTheirJSON() async throws {
        let dir = TemporaryDirectory()
        let db = dir.file("app.db")
        try await writeMixedLog(db)

        let unresolved = Sagalane.run(["sagas", "unresolved", db, "--format", "json"])
        guard case .array(let sagas)? = unresolved.json else { Issue.record("\(unresolved)"); return }
        #expect(sagas.compactMap { $0["id"]?.int64Value } == [4, 7, 8, 10, 12], "the oldest first")
        #expect(sagas[1]["steps"]?[1]?["state"]?.stringValue == "pending", "each with its steps")
        let rows = tableRows(Sagalane.run(["sagas", "unresolved", db, "--format", "table"]).stdout)
        #expect(rows.first == ["ID", "NAME", "STATE", "STARTED", "IDLE", "AT STEP", "REASON"])
        #expect(rows.dropFirst().map { $0[0] } == ["4", "7", "8", "10", "12"])
        #expect(rows.dropFirst().map { $0[2] } == sagas.compactMap { $0["state"]?.stringValue })
        #expect(rows[2][5] == "1 step1 → lane:work (pending)", "\(rows[2])")
        #expect(rows[5][5] == "none yet")
        let narrowed = Sagalane.run(["sagas", "unresolved", db, "--state", "failed_compensation", "--format", "json"])
        #expect(narrowed.json.map { value -> [Int64] in
            guard case .array(let list) = value else { return [] }
            return list.compactMap { $0["id"]?.int64Value }
        } == [4, 10])

        let jobs = Sagalane.run(["jobs", db, "--format", "json"])
        guard case .array(let jobList)? = jobs.json else { Issue.record("\(jobs)"); return }
        let jobRows = tableRows(Sagalane.run(["jobs", db, "--format", "table"]).stdout)
        #expect(jobRows.first == ["ID", "LANE", "STATE", "PRIORITY", "TRIES", "QUEUED", "LAST ACTIVE", "ERROR"])
        #expect(jobRows.dropFirst().map { $0[0] } == jobList.compactMap { $0["id"]?.stringValue })
        #expect(jobRows.dropFirst().map { $0[2] } == jobList.compactMap { $0["state"]?.stringValue })
        #expect(jobList.count == 5)
        let gpuQueued = Sagalane.run(["jobs", db, "--lane", "gpu", "--state", "queued", "--format", "json"])
        #expect(gpuQueued.json?[0]?["id"]?.stringValue == "job-2" && gpuQueued.json?[1] == nil, "\(gpuQueued)")
        #expect(Sagalane.run(["jobs", db, "--state", "failed", "--format", "json"]).json?[0]?["error"]?.stringValue == "out of memory")

        let lanes = Sagalane.run(["lanes", db, "--format", "json"])
        #expect(lanes.json?[0]?["lane"]?.stringValue == "cpu" && lanes.json?[1]?["lane"]?.stringValue == "gpu", "\(lanes)")
        #expect(lanes.json?[1]?["jobs"]?["queued"]?.int64Value == 1 && lanes.json?[1]?["total"]?.int64Value == 3)
        let laneRows = tableRows(Sagalane.run(["lanes", db, "--format", "table"]).stdout)
        #expect(laneRows.first.map { Array($0.prefix(6)) } == ["LANE", "QUEUED", "RUNNING", "FINISHED", "CANCELLED", "FAILED"])
        #expect(laneRows.dropFirst().map { Array($0.prefix(6)) } == [["cpu", "1", "0", "0", "0", "1"], ["gpu", "1", "1", "1", "0", "0"]])
        let failing = Sagalane.run(["lanes", db, "--state", "failed", "--format", "json"])
        #expect(failing.json?[0]?["lane"]?.stringValue == "cpu" && failing.json?[1] == nil)

        let stats = Sagalane.run(["stats", db, "--format", "json"])
        #expect(stats.json?["sagas"]?["completed"]?.int64Value == 4, "\(stats)")
        #expect(stats.json?["sagas"]?["failed_compensation"]?.int64Value == 2)
        #expect(stats.json?["jobs"]?["gpu"]?["running"]?.int64Value == 1)
        #expect(stats.json?["free_bytes"]?.int64Value != nil && stats.json?["schema_version"]?.int64Value ?? 0 >= 4)
        let statsTable = tableRows(Sagalane.run(["stats", db, "--format", "table"]).stdout)
        #expect(statsTable.contains(["completed", "4"]) && statsTable.contains(["failed_compensation", "2"]) && statsTable.contains(["total", "12"]))
        #expect(statsTable.contains(["gpu", "1", "1", "1", "0", "0"]), "\(statsTable)")
    }

    @Test func sagasShowPrintsATimeline() async throws {
        let dir = TemporaryDirectory()
        let db = dir.file("app.db")
        try await writeMixedLog(db)
        let json = Sagalane.run(["sagas", "show", db, "2", "--format", "json"])
        #expect(json.json?["state"]?.stringValue == "failed" && json.json?["steps"]?[1]?["failure_reason"]?.stringValue == "step 1 refused")
        let table = Sagalane.run(["sagas", "show", db, "2", "--format", "table"])
        #expect(table.status == 0)
        let lines = table.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines[0] == "saga 2  order  failed", "\(table)")
        #expect(lines.contains { $0.hasPrefix("  ended    ") && $0.contains(" after ") })
        #expect(lines.contains("  input    {\"n\":2}") && lines.contains("  reason   saga 2 failed"))
        let rows = tableRows(table.stdout).drop { $0.first != "STEP" }
        #expect(rows.first == ["STEP", "NAME", "TARGET", "STATE", "STARTED", "AT", "TOOK", "RESULT"])
        #expect(rows.dropFirst().map { [$0[0], $0[1], $0[2], $0[3]] } == [["0", "step0", "host", "succeeded"], ["1", "step1", "lane:work", "failed"]])
        #expect(rows.dropFirst().first?.last == "{\"i\":0,\"type\":\"Done\"}")
        #expect(rows.dropFirst().last?.last == "step 1 refused")
        // Offsets from the saga's start, and durations: "+20.0s"-like cells.
        #expect(rows.dropFirst().allSatisfy { $0[5].hasPrefix("+") && $0[6].last.map { $0 == "s" } == true }, "\(rows)")
        // A pending step is waiting; a saga without steps says so.
        #expect(Sagalane.run(["sagas", "show", db, "7", "--format", "table"]).stdout.contains("pending"))
        #expect(Sagalane.run(["sagas", "show", db, "12", "--format", "table"]).stdout.hasSuffix("\n  no steps\n"))
        let missing = Sagalane.run(["sagas", "show", db, "99"])
        #expect(missing.status == 1 && missing.stderr.contains("has no saga 99 (its highest id so far is 12"), "\(missing)")
    }

    @Test func theDefaultFormatIsATableOnATerminalAndJSONInAPipe() async throws {
        let dir = TemporaryDirectory()
        let db = dir.file("app.db")
        try await writeMixedLog(db)
        let piped = Sagalane.run(["sagas", "list", db])
        #expect(piped.json?[0] != nil, "\(piped)")
        let terminal = Sagalane.run(["sagas", "list", db], stdout: .terminal)
        #expect(terminal.stdout.hasPrefix("ID  NAME"), "\(terminal)")
        // A name someone chose never drives the terminal: control characters are escaped.
        let log = try SagaLog.open(path: db)
        try await log.startSaga(id: 13, name: "evil\u{1B}[2J\nname", inputJSON: "{}")
        log.close()
        let escaped = Sagalane.run(["sagas", "list", db, "--format", "table"])
        #expect(escaped.stdout.contains("evil\\u{1b}[2J\\nname") && !escaped.stdout.contains("\u{1B}"), "\(escaped)")
    }

    // MARK: A large log

    /// 3,000 sagas in failed_compensation with 3 steps each: the listings print what their
    /// limit says, and a listing of all of them is read a page at a time. (scripts/bench-cli
    /// measures the same on 300,000.)
    @Test func limitsBoundTheOutputOfALargeLog() async throws {
        let dir = TemporaryDirectory()
        let db = dir.file("large.db")
        try await writeLargeLog(db, count: 3_000)
        let unresolved = Sagalane.run(["sagas", "unresolved", db])
        #expect(unresolved.status == 0)
        guard case .array(let first)? = unresolved.json else { Issue.record("\(unresolved.stderr)"); return }
        #expect(first.count == 100, "the default limit")
        #expect(first.first?["id"]?.int64Value == 1 && first.first?["steps"]?[2]?["state"]?.stringValue == "failed")
        #expect(unresolved.stdout.utf8.count < 150_000, "about a kilobyte for each of the 100 sagas and its three steps")

        for (arguments, count) in [(["sagas", "list", db, "--limit", "7"], 7), (["sagas", "unresolved", db, "--limit", "1234"], 1234),
                                   (["sagas", "list", db], 50), (["sagas", "list", db, "--limit", "2999"], 2999)] {
            let outcome = Sagalane.run(arguments + ["--format", "jsonl"])
            #expect(outcome.status == 0 && outcome.jsonLines.count == count && !outcome.jsonLines.contains { $0 == nil }, "\(arguments)")
        }
        let table = Sagalane.run(["sagas", "unresolved", db, "--format", "table"])
        #expect(tableRows(table.stdout).count == 102 && table.stdout.contains("(100 of 3,000 unresolved sagas shown"), "\(table.stderr)")

        // All of them, with their steps, across pages of 500, none twice.
        let all = Sagalane.run(["sagas", "unresolved", db, "--limit", "300000", "--format", "jsonl"])
        let ids = all.jsonLines.compactMap { $0?["id"]?.int64Value }
        #expect(all.status == 0 && ids == Array(1...3_000))
        // The most recent first: saga i ended i seconds before saga 1, so that is by id, across pages.
        func recent(_ filters: [String] = []) -> [Int64] {
            Sagalane.run(["sagas", "list", db, "--limit", "300000", "--format", "jsonl"] + filters).jsonLines.compactMap { $0?["id"]?.int64Value }
        }
        #expect(recent() == Array(1...3_000))
        #expect(recent(["--state", "failed_compensation", "--name", "order"]) == Array(1...3_000))
        // Equal times across page boundaries: the higher id first, none lost or repeated.
        foreignSQL(db, "UPDATE saga SET ended_at = (SELECT ended_at FROM saga WHERE id = 1) WHERE id <= 1200")
        #expect(recent(["--state", "failed_compensation"]) == Array((1...1_200).reversed()) + Array(1_201...3_000))
        #expect(recent(["--since", "60d"]) == Array((1...1_200).reversed()) + Array(1_201...3_000))
    }

    // MARK: Vacuum

    @Test func vacuumDryRunChangesNothingAndVacuumDeletesWhatItCounted() async throws {
        let dir = TemporaryDirectory()
        let db = dir.file("large.db")
        try await writeLargeLog(db, count: 20_000, endedDaysAgo: 40)
        let before = fileBytes(db)

        let dry = Sagalane.run(["vacuum", db, "--older-than", "30d", "--dry-run", "--format", "json"])
        #expect(dry.status == 0, "\(dry)")
        #expect(dry.json?["sagas"]?.int64Value == 20_000 && dry.json?["steps"]?.int64Value == 60_000, "\(dry)")
        let dryTable = Sagalane.run(["vacuum", db, "--older-than", "30d", "--dry-run", "--format", "table"])
        #expect(dryTable.stdout.hasPrefix("would delete 20,000 sagas and 60,000 steps (ended "), "\(dryTable)")
        let none = Sagalane.run(["vacuum", db, "--older-than", "50d", "--dry-run", "--format", "table"])
        #expect(none.stdout.hasPrefix("would delete 0 sagas and 0 steps (none ended before "), "\(none)")
        #expect(fileBytes(db) == before, "a dry run writes nothing")
        for suffix in ["-wal", "-shm", "-lock"] { #expect(!exists(db + suffix)) }

        let vacuum = Sagalane.run(["vacuum", db, "--older-than", "30d", "--format", "table"])
        #expect(vacuum.status == 0, "\(vacuum)")
        #expect(vacuum.stdout.hasPrefix("deleted 20,000 sagas and 60,000 steps in "), "\(vacuum)")
        #expect(vacuum.stdout.hasSuffix(" s; 0 bytes reclaimed — run with --compact to shrink the file\n"), "\(vacuum)")
        #expect(vacuum.stderr.isEmpty, "no progress in a pipe: \(vacuum.stderr)")
        #expect(fileSize(db) == before.count, "the file keeps its size")

        let stats = Sagalane.run(["stats", db, "--format", "json"])
        #expect(stats.json?["sagas"]?["failed_compensation"]?.int64Value == 0)
        let freeBefore = stats.json?["free_bytes"]?.int64Value ?? 0
        #expect(freeBefore > Int64(before.count) / 2, "\(stats)")

        let compact = Sagalane.run(["vacuum", db, "--compact", "--format", "json"])
        #expect(compact.status == 0 && compact.json?["compacted"] == .bool(true), "\(compact)")
        let after = Int64(fileSize(db) ?? 0)
        #expect(compact.json?["bytes_after"]?.int64Value == after && compact.json?["bytes_reclaimed"]?.int64Value == Int64(before.count) - after)
        #expect(after < Int64(before.count) / 10, "compacted to \(after) bytes from \(before.count)")
        #expect(Sagalane.run(["stats", db, "--format", "json"]).json?["free_bytes"]?.int64Value == 0)
        // The ids of deleted sagas stay used.
        let log = try SagaLog.openReadOnly(path: db)
        #expect(try log.maxSagaID() == 20_000)
        #expect(try log.integrityCheck() == "ok")
        log.close()
    }

    @Test func jobsFilterByTheirCaller() async throws {
        let dir = TemporaryDirectory()
        let db = dir.file("callers.db")
        let log = try SagaLog.open(path: db, durability: .normal)
        for (n, caller) in ["billing", "search", "billing", "billing-eu", "search"].enumerated() {
            try await log.enqueueJob(id: "job-\(n)", lane: n < 3 ? "cpu" : "gpu", caller: caller, priority: 0, metadata: [])
        }
        log.close()
        func ids(_ arguments: [String]) -> [String] {
            let outcome = Sagalane.run(["jobs", db, "--format", "json"] + arguments)
            guard case .array(let list)? = outcome.json else { Issue.record("\(arguments): \(outcome)"); return [] }
            return list.compactMap { $0["id"]?.stringValue }.sorted()
        }
        #expect(ids(["--caller", "billing"]) == ["job-0", "job-2"], "byte for byte: billing-eu is another caller")
        #expect(ids(["--caller", "search", "--lane", "gpu"]) == ["job-4"])
        #expect(ids(["--caller", "nobody"]).isEmpty)
        let table = Sagalane.run(["jobs", db, "--caller", "billing", "--limit", "1", "--format", "table"])
        #expect(table.stdout.contains("(1 of 2 jobs shown"), "the footer counts with the filter: \(table)")
        #expect(Sagalane.run(["jobs", "--help"]).stdout.contains("--caller <name>"))
    }

    @Test func progressGoesToATerminalAndNotToAPipe() async throws {
        let dir = TemporaryDirectory()
        let db = dir.file("large.db")
        try await writeLargeLog(db, count: 30_000)
        try? await Task.sleep(for: .milliseconds(5))
        let onTerminal = Sagalane.run(["vacuum", db, "--older-than", "30d", "--batch-size", "100", "--compact"], stderr: .terminal)
        #expect(onTerminal.status == 0, "\(onTerminal)")
        #expect(onTerminal.stderr.contains("\r\u{1B}[Kvacuum \(db): deleted "), "\(onTerminal.stderr.prefix(500))")
        #expect(onTerminal.stderr.contains(" of 30,000 sagas ("), "\(onTerminal.stderr.prefix(500))")
        #expect(onTerminal.stderr.contains("compacting \(db): "))
        #expect(onTerminal.stderr.hasSuffix("\r\u{1B}[K"), "the progress line is cleared at the end")
        // Standard output is a pipe: the summary is JSON.
        #expect(onTerminal.json?["sagas_deleted"]?.int64Value == 30_000 && onTerminal.json?["steps_deleted"]?.int64Value == 90_000)

        try await writeLargeLog(dir.file("second.db"), count: 30_000)
        let inPipe = Sagalane.run(["vacuum", dir.file("second.db"), "--older-than", "30d", "--batch-size", "100", "--compact"])
        #expect(inPipe.status == 0 && inPipe.stderr.isEmpty, "\(inPipe)")
        #expect(inPipe.json?["sagas_deleted"]?.int64Value == 30_000)
    }

    @Test func vacuumIsRefusedWhileAnotherProcessWritesTheLog() async throws {
        let dir = TemporaryDirectory()
        let db = dir.file("busy.db")
        let writer = try ChildProcess(ChildProcess.testChildPath, ["log-append", db, "normal"])
        #expect(writer.readLine()?.hasPrefix("durable") == true)
        let drain = Thread { while writer.readLine() != nil {} }
        let refused = Sagalane.run(["vacuum", db, "--older-than", "1s"])
        #expect(refused.status == 1, "\(refused)")
        #expect(refused.stderr.contains("is open for writing by process \(writer.pid)"), "\(refused)")
        #expect(refused.stderr.contains("stop that process"), "\(refused)")
        // A dry run only reads.
        let dry = Sagalane.run(["vacuum", db, "--older-than", "0s", "--dry-run"])
        #expect(dry.status == 0 && dry.json?["sagas"]?.int64Value ?? -1 >= 0, "\(dry)")
        writer.kill9()
        drain.join()
    }

    // MARK: Reads while another process writes

    @Test func readsWorkWhileAnotherProcessWrites() async throws {
        let dir = TemporaryDirectory()
        let db = dir.file("live.db")
        let writer = try ChildProcess(ChildProcess.testChildPath, ["log-append", db, "normal"])
        #expect(writer.readLine()?.hasPrefix("durable") == true)
        // The writer prints a line per durable record: drain them so it never blocks.
        let drain = Thread { while writer.readLine() != nil {} }
        var highest: Int64 = 0
        var grew = 0
        for _ in 0..<15 {
            let list = Sagalane.run(["sagas", "list", db, "--limit", "20"])
            #expect(list.status == 0, "\(list)")
            let top = list.json?[0]?["id"]?.int64Value ?? 0
            if top > highest { grew += 1 }
            highest = max(highest, top)
            let completed = Sagalane.run(["sagas", "list", db, "--state", "completed", "--limit", "5", "--format", "jsonl"])
            #expect(completed.status == 0 && completed.jsonLines.allSatisfy { $0?["steps"]?.int64Value == 2 }, "\(completed)")
            for command in [["stats", db], ["sagas", "unresolved", db, "--limit", "10"], ["jobs", db], ["lanes", db], ["sagas", "show", db, "1"]] {
                let outcome = Sagalane.run(command)
                #expect(outcome.status == 0 && outcome.json != nil, "\(command): \(outcome)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(grew >= 3, "the listings saw the log grow (highest id \(highest))")
        writer.kill9()
        drain.join()
    }

    // MARK: Bad arguments and bad files

    @Test func badArgumentsExitWithStatus2AndSayWhatToDo() async throws {
        let dir = TemporaryDirectory()
        let db = dir.file("app.db")
        try await writeMixedLog(db)
        let cases: [([String], String)] = [
            (["no-such-command"], "Unexpected argument 'no-such-command'"),
            (["sagas"], "USAGE: sagalane sagas <subcommand>"),
            (["sagas", "list"], "Missing expected argument '<db>'"),
            (["sagas", "list", db, "--state", "done"], "unknown saga state 'done' (one of running, compensating, completed"),
            (["sagas", "list", db, "--limit", "0"], "--limit takes a count of 1 or more, not '0'"),
            (["sagas", "list", db, "--limit", "many"], "--limit takes a count of 1 or more, not 'many'"),
            (["sagas", "list", db, "--since", "yesterday"], "'yesterday' is not a time: write a duration before now"),
            (["sagas", "list", db, "--since", "1h", "--until", "2h"], "--until ("),
            (["sagas", "list", db, "--format", "xml"], "--format"),
            (["sagas", "list", db, "--bogus"], "Unknown option '--bogus'"),
            (["sagas", "show", db, "first"], "'first'"),
            (["sagas", "unresolved", db, "--state", "completed"], "'completed' is not an unresolved state"),
            (["jobs", db, "--state", "done"], "unknown job state 'done' (one of queued, running, finished, cancelled, failed)"),
            (["vacuum", db], "vacuum needs --older-than DURATION (which sagas to delete), --compact (shrink the file), or both"),
            (["vacuum", db, "--older-than", "soon"], "'soon' is not a duration: write a count and a unit, as in 30s"),
        ]
        for (arguments, message) in cases {
            let outcome = Sagalane.run(arguments)
            #expect(outcome.status == 2, "\(arguments): \(outcome)")
            #expect(outcome.stderr.contains(message), "\(arguments): \(outcome)")
            if arguments != ["sagas"] { #expect(outcome.stdout.isEmpty, "\(arguments)") }
        }
        // A usage error says where the help is.
        #expect(Sagalane.run(["sagas", "list", db, "--limit", "0"]).stderr.contains("See 'sagalane sagas list --help'"))
    }

    @Test func badFilesExitWithStatus2AndAreLeftAsTheyWere() throws {
        let dir = TemporaryDirectory()
        let foreign = dir.file("foreign.db")
        foreignSQL(foreign, "CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT); INSERT INTO accounts VALUES (1, 'ann');")
        let text = dir.file("notes.txt")
        writeFile(text, String(repeating: "not a database\n", count: 200))
        let empty = dir.file("empty.db")
        writeFile(empty, "")
        let cases: [(String, String)] = [
            (dir.file("missing.db"), "there is no log at \(dir.file("missing.db")): check the path"),
            (foreign, "is not a sagalane log: it holds other tables (accounts)"),
            (text, "is not a sagalane log"),
            (empty, "not a sagalane log"),
            (dir.path, "is a folder, not a log: name the log's file"),
        ]
        for (path, message) in cases {
            let before = fileBytes(path)
            for command in [["sagas", "list", path], ["stats", path], ["jobs", path], ["vacuum", path, "--older-than", "1d"],
                            ["vacuum", path, "--compact", "--dry-run"]] {
                let outcome = Sagalane.run(command)
                #expect(outcome.status == 2, "\(command): \(outcome)")
                #expect(outcome.stderr.hasPrefix("sagalane: ") && outcome.stderr.contains(message), "\(command): \(outcome)")
            }
            #expect(fileBytes(path) == before, "\(path) is as it was")
            for suffix in ["-wal", "-shm", "-lock"] { #expect(!exists(path + suffix), "\(path)\(suffix)") }
        }
    }

    // MARK: The old names

    @Test func theOldCommandNamesStillWorkAndSayTheNewOnes() async throws {
        let dir = TemporaryDirectory()
        let db = dir.file("app.db")
        try await writeMixedLog(db)
        let recent = Sagalane.run(["recent", db, "--limit", "3"])
        #expect(recent.status == 0 && recent.json?[2] != nil && recent.json?[3] == nil, "\(recent)")
        #expect(recent.stderr.contains("'recent' is now 'sagas list'"))
        let unresolved = Sagalane.run(["unresolved", db])
        #expect(unresolved.json == Sagalane.run(["sagas", "unresolved", db]).json && unresolved.stderr.contains("'sagas unresolved'"))
        let saga = Sagalane.run(["saga", db, "3"])
        #expect(saga.json == Sagalane.run(["sagas", "show", db, "3"]).json && saga.json?["id"]?.int64Value == 3)
    }
}

/// A thread for a test to join.
private final class Thread: @unchecked Sendable {
    private var handle = pthread_t()
    private let body: () -> Void

    init(_ body: @escaping () -> Void) {
        self.body = body
        let unmanaged = Unmanaged.passRetained(self)
        pthread_create(&handle, nil, { context in
            let thread = Unmanaged<Thread>.fromOpaque(context!).takeRetainedValue()
            thread.body()
            return nil
        }, unmanaged.toOpaque())
    }

    func join() { pthread_join(handle, nil) }
}
