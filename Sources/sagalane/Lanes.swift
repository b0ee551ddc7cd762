import SagaLaneJSON
import SagaLaneLog
import SagaLaneSupport

struct Jobs: Command {
    static let about = CommandInfo(
        name: "jobs",
        abstract: "List lane jobs, the most recently active first.",
        discussion: """
            A job's last activity is the latest of its times (queued, started, finished, \
            cancelled, failed); --since and --until select on it. JSON has each job's metadata \
            too: embedded when it is JSON text.

            Examples:
              sagalane jobs app.db
              sagalane jobs app.db --lane gpu --state queued,running
              sagalane jobs app.db --state failed --since 2h --format jsonl
              sagalane jobs app.db --caller billing --state running
            """)

    var log = LogArgument()
    var lane: String?
    var caller: String?
    var state: [[JobState]] = []
    var time = TimeOptions()
    var limit = 50
    var output = OutputOptions()

    static func declare(_ arguments: inout Declarations<Self>) {
        arguments.group(\.log)
        arguments.option("--lane", valueName: "name", help: "Only jobs of this lane (its name, byte for byte).") { $0.lane = $1 }
        arguments.option("--caller", valueName: "name",
                         help: "Only jobs this caller submitted (its name, byte for byte).") { $0.caller = $1 }
        arguments.option("--state", valueName: "state",
                         help: "Only jobs in STATE: \(JobState.allCases.map(\.rawValue).joined(separator: ", ")). "
                             + "Repeat it, or separate states with commas.",
                         repeats: true, transform: { try statesArgument($0, kind: "job") }) { $0.state.append($1) }
        arguments.group(\.time)
        arguments.option("--limit", valueName: "count", help: "Show at most this many jobs (default 50).", transform: validLimit) {
            $0.limit = $1
        }
        arguments.group(\.output)
    }

    func run() throws {
        let log = try self.log.openForReading()
        defer { log.close() }
        let filter = JobFilter(lane: lane, states: state.flatMap { $0 }, activeSince: time.since, activeBefore: time.until, caller: caller)
        let format = output.resolved
        var listing = Listing(format, columns: [
            .init("ID", maxWidth: 40), .init("LANE", maxWidth: 24), .init("STATE"), .init("PRIORITY", right: true),
            .init("TRIES", right: true), .init("QUEUED"), .init("LAST ACTIVE"), .init("ERROR", shrinks: true),
        ])
        do throws(SagaLaneError) {
            let jobs = try log.jobs(matching: filter, limit: limit)
            for job in jobs {
                let latest = [job.finishedAt, job.cancelledAt, job.failedAt, job.startedAt].compactMap { $0 }.max() ?? job.enqueuedAt
                listing.add(job.json, row: [
                    job.id, job.lane, job.state.rawValue, String(job.priority), String(job.attempts),
                    shortTime(job.enqueuedAt), shortTime(latest), job.error ?? "",
                ])
            }
            let footer = format == .table && jobs.count == limit
                ? moreFooter(shown: jobs.count, total: try log.countJobs(matching: filter), what: "jobs", narrowing: "--lane, --caller, --state, --since") : nil
            listing.finish(empty: "no jobs match", footer: footer)
        } catch {
            throw failure(error, log)
        }
    }
}

struct Lanes: Command {
    static let about = CommandInfo(
        name: "lanes",
        abstract: "List the lanes that have jobs in the log, with their jobs counted by state.",
        discussion: """
            A lane appears once it has a job in the log. OLDEST QUEUED is how long the job that \
            has waited longest has been queued.

            Examples:
              sagalane lanes app.db
              sagalane lanes app.db --state queued --format json
            """)

    var log = LogArgument()
    var lane: String?
    var state: [[JobState]] = []
    var time = TimeOptions()
    var limit = 100
    var output = OutputOptions()

    static func declare(_ arguments: inout Declarations<Self>) {
        arguments.group(\.log)
        arguments.option("--lane", valueName: "name", help: "Only this lane (its name, byte for byte).") { $0.lane = $1 }
        arguments.option("--state", valueName: "state",
                         help: "Only lanes with jobs in STATE (one of \(JobState.allCases.map(\.rawValue).joined(separator: ", "))); "
                             + "repeat it, or separate states with commas.",
                         repeats: true, transform: { try statesArgument($0, kind: "job") }) { $0.state.append($1) }
        arguments.group(\.time)
        arguments.option("--limit", valueName: "count", help: "Show at most this many lanes (default 100).", transform: validLimit) {
            $0.limit = $1
        }
        arguments.group(\.output)
    }

    func run() throws {
        let log = try self.log.openForReading()
        defer { log.close() }
        let states = state.flatMap { $0 }
        let lanes: [LaneSummary]
        do throws(SagaLaneError) {
            lanes = try log.laneSummaries()
        } catch {
            throw failure(error, log)
        }
        let selected = lanes.filter { summary in
            (lane.map { summary.lane.isExactly($0) } ?? true)
                && (states.isEmpty || states.contains { (summary.jobs[$0] ?? 0) > 0 })
                && (time.since.map { since in summary.lastActivity.map { $0 >= since } ?? false } ?? true)
                && (time.until.map { until in summary.lastActivity.map { $0 < until } ?? false } ?? true)
        }
        let now = Timestamp.now()
        let format = output.resolved
        var listing = Listing(format, columns: [.init("LANE", maxWidth: 40)]
            + JobState.allCases.map { .init($0.rawValue.uppercased(), right: true) }
            + [.init("OLDEST QUEUED", right: true), .init("LAST ACTIVE")])
        for summary in selected.prefix(limit) {
            listing.add(summary.json, row: [summary.lane]
                + JobState.allCases.map { grouped(summary.jobs[$0] ?? 0) }
                + [summary.oldestQueued.map { span(from: $0, to: now) } ?? "", shortTime(summary.lastActivity)])
        }
        let footer = format == .table ? moreFooter(shown: min(limit, selected.count), total: selected.count, what: "lanes", narrowing: "--lane, --state, --since") : nil
        listing.finish(empty: lanes.isEmpty ? "no lane has a job in the log" : "no lanes match", footer: footer)
    }
}

extension LaneSummary {
    /// `{"lane", "jobs": {state: count}, "total", "oldest_queued", "last_activity"}`, every
    /// state present.
    var json: JSON {
        var counts: JSONObject = [:]
        for state in JobState.allCases { counts[state.rawValue] = .int(Int64(jobs[state] ?? 0)) }
        return [
            "lane": .string(lane),
            "jobs": .object(counts),
            "total": .int(Int64(total)),
            "oldest_queued": oldestQueued.map { .string($0.iso8601) } ?? .null,
            "last_activity": lastActivity.map { .string($0.iso8601) } ?? .null,
        ]
    }
}
