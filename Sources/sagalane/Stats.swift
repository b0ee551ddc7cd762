import SagaLaneJSON
import SagaLaneLog
import SagaLaneSupport

struct Stats: Command {
    static let about = CommandInfo(
        name: "stats",
        abstract: "Count what the log holds: sagas by state, lane jobs by lane and state, the file's size.",
        discussion: """
            free_bytes is room inside the file that deleted rows left: vacuum --compact gives \
            it back to the disk.

            With --socket, the running agent's counters too (connections, frames read, bad \
            frames by error code, commands buffered for each target, lanes); its log is then \
            optional. In JSON they are the "agent" member (or the whole document without a log).

            Examples:
              sagalane stats app.db
              sagalane stats app.db --format json
              sagalane stats --socket ~/.local/share/sagalane/agent.sock
              sagalane stats /var/lib/sagalane/sagalane.db --socket /var/lib/sagalane/agent.sock
            """)

    var database: String?
    var socket: String?
    var output = OutputOptions()

    static func declare(_ arguments: inout Declarations<Self>) {
        arguments.argument(valueName: "db", help: "The log's file: the SQLite database the runtime writes (e.g. app.db).",
                           required: false) { $0.database = $1 }
        arguments.option("--socket", valueName: "path", help: "Ask the agent listening on this socket for its counters too.") {
            $0.socket = $1
        }
        arguments.group(\.output)
    }

    func validate() throws {
        if database == nil && socket == nil {
            throw ValidationError("stats needs a log (<db>), an agent's socket (--socket PATH), or both")
        }
    }

    func run() throws {
        let agent = try socket.map { path throws(CommandFailure) in try agentCounters(socket: path) }
        guard let database else {
            switch output.resolved {
            case .json, .jsonl: emit(agent!.serialized + "\n")
            case .table: emit(agentTable(agent!, socket: socket!))
            }
            return
        }
        var log = LogArgument()
        log.database = database
        let opened = try log.openForReading()
        defer { opened.close() }
        try show(opened, path: database, agent: agent)
    }

    private func show(_ log: SagaLog, path: String, agent: JSON?) throws(CommandFailure) {
        defer { log.close() }
        let stats: LogStats
        let usage: LogFileUsage
        do throws(SagaLaneError) {
            stats = try log.stats()
            usage = try log.fileUsage()
        } catch {
            throw failure(error, log)
        }
        switch output.resolved {
        case .json, .jsonl:
            var object: JSONObject = [:]
            if case .object(let members) = stats.json { object = members }
            object["free_bytes"] = .int(Int64(usage.freeBytes))
            object["file_bytes"] = usage.fileBytes.map { .int(Int64($0)) } ?? .null
            if let agent { object["agent"] = agent }
            emit(JSON.object(object).serialized + "\n")
        case .table:
            emit(table(stats, usage, path: path, now: Timestamp.now()))
            if let agent { emit("\n" + agentTable(agent, socket: socket ?? "")) }
        }
    }

    private func table(_ stats: LogStats, _ usage: LogFileUsage, path: String, now: Timestamp) -> String {
        var out = "\(printable(path)): schema version \(stats.schemaVersion), \(byteCount(usage.bytesOnDisk)) on disk "
            + "(database \(byteCount(usage.fileBytes ?? usage.databaseBytes)), write-ahead log \(byteCount(usage.walBytes ?? 0)))"
        out += usage.freeBytes > 0 ? "; \(byteCount(usage.freeBytes)) of it free (vacuum --compact gives it back)\n" : "\n"
        var sagas = Table([.init("SAGAS"), .init("COUNT", right: true)])
        for state in SagaState.allCases { sagas.add([state.rawValue, grouped(stats.sagas[state] ?? 0)]) }
        sagas.add(["total", grouped(stats.sagas.values.reduce(0, +))])
        out += "\n" + sagas.render()
        if let oldest = stats.oldestRunningSaga {
            out += "the oldest running saga started \(shortTime(oldest)), \(span(from: oldest, to: now)) ago\n"
        }
        guard !stats.jobs.isEmpty else { return out + "\nno lane has a job in the log\n" }
        var lanes = Table([.init("LANE", maxWidth: 40)] + JobState.allCases.map { .init($0.rawValue.uppercased(), right: true) })
        for (lane, counts) in stats.jobs.sorted(by: { $0.key.string.utf8.lexicographicallyPrecedes($1.key.string.utf8) }) {
            lanes.add([lane.string] + JobState.allCases.map { grouped(counts[$0] ?? 0) })
        }
        return out + "\n" + lanes.render()
    }
}

/// The agent's counters as a table of names and values: nested objects flattened with dots
/// ("errors.bad_frame"), error codes that never happened left out.
func agentTable(_ stats: JSON, socket: String) -> String {
    var table = Table([.init("AGENT \(printable(socket))", maxWidth: 72), .init("VALUE", right: true)])
    func add(_ value: JSON, _ prefix: String) {
        switch value {
        case .object(let members):
            if members.isEmpty { table.add([prefix, "none"]) }
            for (name, member) in members {
                let key = prefix.isEmpty ? name : prefix + "." + name
                if prefix == "errors", case .int(0) = member { continue }
                add(member, key)
            }
        case .int(let n): table.add([prefix, grouped(Int(n))])
        default: table.add([prefix, compact(value)])
        }
    }
    add(stats, "")
    return table.render()
}
