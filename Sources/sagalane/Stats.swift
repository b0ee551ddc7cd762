import ArgumentParser
import SagaLaneJSON
import SagaLaneLog
import SagaLaneSupport

struct Stats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Count what the log holds: sagas by state, lane jobs by lane and state, the file's size.",
        discussion: """
            free_bytes is room inside the file that deleted rows left: vacuum --compact gives \
            it back to the disk.

            Examples:
              sagalane stats app.db
              sagalane stats app.db --format json
            """)

    @OptionGroup var log: LogArgument
    @OptionGroup var output: OutputOptions

    func run() throws {
        let log = try self.log.openForReading()
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
            emit(JSON.object(object).serialized + "\n")
        case .table:
            emit(table(stats, usage, now: Timestamp.now()))
        }
    }

    private func table(_ stats: LogStats, _ usage: LogFileUsage, now: Timestamp) -> String {
        var out = "\(printable(log.database)): schema version \(stats.schemaVersion), \(byteCount(usage.bytesOnDisk)) on disk "
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
