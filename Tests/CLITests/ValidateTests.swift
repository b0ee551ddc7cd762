import Glibc
import SagaLaneJSON
import SagaLaneTestSupport
import Testing

/// The repository's example saga file.
private let examplePool: String = {
    var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)
    return parts.joined(separator: "/") + "/examples/sagas/terminal-pool.json"
}()

@Suite struct ValidateTests {
    @Test func aValidFileListsItsSagasInATableAndInJSON() {
        let table = Sagalane.run(["validate", examplePool, "--format", "table"])
        #expect(table.status == 0, "\(table)")
        let rows = tableRows(table.stdout)
        #expect(rows.first == ["NAME", "TRIGGER", "STEPS", "TIMEOUT"], "\(table)")
        #expect(table.stdout.contains("window_cleanup_cascade") && table.stdout.contains("reap → host, drain → host"), "\(table)")
        #expect(table.stdout.contains("\(examplePool): valid, 2 saga types"), "\(table)")

        let json = Sagalane.run(["validate", examplePool])
        #expect(json.status == 0, "\(json)")
        let sagas = json.json?.arrayValue ?? []
        #expect(sagas.map { $0["name"]?.stringValue } == ["pool_respawn_on_promote", "window_cleanup_cascade"])
        #expect(sagas.last?["timeout_ms"] == 30000 && sagas.last?["trigger"] == "WindowClosed")
        #expect(sagas.last?["steps"]?[1]?["completes_on"] == ["PoolDrained", "PoolNotLast"])
    }

    @Test func anInvalidFileExitsTwoNamingEveryProblem() {
        let dir = TemporaryDirectory()
        let file = dir.file("bad.json")
        writeFile(file, "{\"sagas\": [{\"name\": \"a\", \"steps\": [{\"target\": \"h\", \"command\": \"${input\", \"completes_on\": \"E\"}]},\n"
                        + " {\"name\": \"a\", \"timeout_ms\": -4, \"steps\": [{\"target\": \"h\", \"command\": 1, \"completes_on\": \"E\"}]}]}")
        let outcome = Sagalane.run(["validate", file])
        #expect(outcome.status == 2, "\(outcome)")
        #expect(outcome.stdout.isEmpty)
        #expect(outcome.stderr.contains("is not a valid saga file (3 problems)"), "\(outcome)")
        #expect(outcome.stderr.contains("\(file):1:63: saga \"a\", step 1: field \"command\": \"${\" is not closed"), "\(outcome)")
        #expect(outcome.stderr.contains("\(file):2:30: saga \"a\": field \"timeout_ms\""), "\(outcome)")
        #expect(outcome.stderr.contains("\(file):2:11: saga \"a\": the name is already used by saga 1 of the file"), "\(outcome)")

        let missing = Sagalane.run(["validate", dir.file("none.json")])
        #expect(missing.status == 2 && missing.stderr.contains("cannot open \(dir.file("none.json")): No such file or directory"), "\(missing)")
        let notJSON = Sagalane.run(["validate", examplePool + "x"])
        #expect(notJSON.status == 2)
    }
}
