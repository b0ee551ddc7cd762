import SagaLaneJSON
import SagaLaneLog
import SagaLaneSupport

struct Sagas: Command {
    static let about = CommandInfo(
        name: "sagas",
        abstract: "List sagas, show one as a timeline, list those that need a look; cancel, resolve, retry or resume one.",
        subcommands: [SagasList.self, SagasShow.self, SagasUnresolved.self, SagasCancel.self, SagasResolve.self, SagasRetry.self,
                      SagasResume.self])

    static func declare(_: inout Declarations<Self>) {}

    /// `sagalane sagas` alone is a usage error: it names the subcommands instead of guessing one.
    func run() throws {
        throw CommandFailure.usage("sagas needs a subcommand: list, show, unresolved, cancel, resolve, retry or resume\n\n" + Sagalane.helpMessage(for: Sagas.self))
    }
}

/// What a saga listing takes but its limit: the log, the filters, how to print.
struct SagaListingOptions: ArgumentGroup {
    var log = LogArgument()
    var state: [[SagaState]] = []
    var name: String?
    var time = TimeOptions()
    var output = OutputOptions()

    static func declare(_ arguments: inout Declarations<Self>) {
        arguments.group(\.log)
        arguments.option("--state", valueName: "state",
                         help: "Only sagas in STATE: \(SagaState.allCases.map(\.rawValue).joined(separator: ", ")). "
                             + "Repeat it, or separate states with commas.",
                         repeats: true, transform: { try statesArgument($0, kind: "saga") }) { $0.state.append($1) }
        arguments.option("--name", valueName: "name", help: "Only sagas of this type (its name, byte for byte).") { $0.name = $1 }
        arguments.group(\.time)
        arguments.group(\.output)
    }

    func filter(within allowed: [SagaState]? = nil) throws -> SagaFilter {
        var states = state.flatMap { $0 }
        if let allowed {
            if let outside = states.first(where: { !allowed.contains($0) }) {
                throw ValidationError("'\(outside.rawValue)' is not an unresolved state (\(allowed.map(\.rawValue).joined(separator: ", ")))")
            }
            if states.isEmpty { states = allowed }
        }
        return SagaFilter(states: states, name: name, activeSince: time.since, activeBefore: time.until)
    }
}

/// A command that lists sagas: the listing's options, then --limit with its own default.
protocol SagaListing: Command {
    static var defaultLimit: Int { get }
    var listing: SagaListingOptions { get set }
    var limit: Int { get set }
}

extension SagaListing {
    static func declare(_ arguments: inout Declarations<Self>) {
        arguments.group(\.listing)
        arguments.option("--limit", valueName: "count", help: "Show at most this many sagas (default \(defaultLimit)).",
                         transform: validLimit) { $0.limit = $1 }
    }
}

struct SagasList: SagaListing {
    static let about = CommandInfo(
        name: "list",
        abstract: "List sagas, the most recently active first.",
        discussion: """
            A saga's last activity is its end, or its start while it is unfinished; --since and \
            --until select on it. The table shows a saga's number of steps; JSON has its input, \
            failure reason and times too (sagas show prints its steps).

            Examples:
              sagalane sagas list app.db
              sagalane sagas list app.db --state failed,failed_compensation --since 24h
              sagalane sagas list app.db --name order.checkout --limit 500 --format jsonl
            """)

    static let defaultLimit = 50
    var listing = SagaListingOptions()
    var limit = defaultLimit

    func run() throws { try listSagas(listing.log, filter: listing.filter(), limit: limit, format: listing.output.resolved) }
}

struct SagasUnresolved: SagaListing {
    static let about = CommandInfo(
        name: "unresolved",
        abstract: "List the sagas an operator should look at, the oldest first.",
        discussion: """
            Those are the unfinished sagas (running, compensating) and those whose compensation \
            failed (failed_compensation). The table shows the step each one is at; JSON has \
            every step of each.

            Examples:
              sagalane sagas unresolved app.db
              sagalane sagas unresolved app.db --state failed_compensation --limit 1000 --format jsonl
            """)

    static let defaultLimit = 100
    var listing = SagaListingOptions()
    var limit = defaultLimit

    func run() throws {
        try listUnresolved(listing.log, filter: listing.filter(within: SagaState.unresolved), limit: limit, format: listing.output.resolved)
    }
}

struct SagasShow: Command {
    static let about = CommandInfo(
        name: "show",
        abstract: "Show one saga and its steps as a timeline.",
        discussion: """
            Each step with its target, state, when it started (from the saga's start), how long \
            it took, and its result: the event that answered it, or why it failed. Table cells \
            are cut to fit; --format json prints every value whole.

            Examples:
              sagalane sagas show app.db 42
              sagalane sagas show app.db 42 --format json
            """)

    var log = LogArgument()
    var id: UInt64 = 0
    var output = OutputOptions()

    static func declare(_ arguments: inout Declarations<Self>) {
        arguments.group(\.log)
        arguments.argument(valueName: "id", help: "The saga's id.") { $0.id = $1 }
        arguments.group(\.output)
    }

    func run() throws {
        try showSaga(log, id: id, format: output.resolved)
    }
}

// MARK: What the commands print

/// Sagas are read a page at a time, so a long listing never sits in memory whole.
private let pageSize = 500

func listSagas(_ argument: LogArgument, filter: SagaFilter, limit: Int, format: OutputFormat) throws(CommandFailure) {
    let log = try argument.openForReading()
    defer { log.close() }
    let now = Timestamp.now()
    var listing = Listing(format, columns: [
        .init("ID", right: true), .init("NAME", maxWidth: 40), .init("STATE"), .init("STEPS", right: true),
        .init("STARTED"), .init("DURATION", right: true), .init("REASON", shrinks: true),
    ])
    do throws(SagaLaneError) {
        let shown = try eachSaga(log, filter: filter, order: .recentFirst, limit: limit) { (summary) throws(SagaLaneError) in
            listing.add(summary.json, row: [
                String(summary.id), summary.name, summary.state.rawValue, String(summary.stepCount),
                shortTime(summary.startedAt), duration(of: summary.saga, now: now), summary.failureReason ?? "",
            ])
        }
        let footer = format == .table && shown == limit ? try moreFooter(shown: shown, total: log.countSagas(matching: filter), what: "sagas") : nil
        listing.finish(empty: "no sagas match", footer: footer)
    } catch {
        throw failure(error, log)
    }
}

func listUnresolved(_ argument: LogArgument, filter: SagaFilter, limit: Int, format: OutputFormat) throws(CommandFailure) {
    let log = try argument.openForReading()
    defer { log.close() }
    let now = Timestamp.now()
    var listing = Listing(format, columns: [
        .init("ID", right: true), .init("NAME", maxWidth: 40), .init("STATE"), .init("STARTED"),
        .init("IDLE", right: true), .init("AT STEP", maxWidth: 48), .init("REASON", shrinks: true),
    ])
    do throws(SagaLaneError) {
        let shown = try eachSaga(log, filter: filter, order: .byID, limit: limit) { (summary) throws(SagaLaneError) in
            var saga = summary.saga
            saga.steps = try log.sagaSteps(sagaID: saga.id)
            let step = saga.steps.last.map { "\($0.index) \($0.name) → \($0.target) (\($0.state.rawValue))" } ?? "none yet"
            listing.add(saga.json, row: [
                String(saga.id), saga.name, saga.state.rawValue, shortTime(saga.startedAt),
                span(from: saga.endedAt ?? saga.steps.compactMap { $0.endedAt ?? $0.startedAt }.max() ?? saga.startedAt, to: now),
                step, saga.failureReason ?? "",
            ])
        }
        let footer = format == .table && shown == limit ? try moreFooter(shown: shown, total: log.countSagas(matching: filter), what: "unresolved sagas") : nil
        listing.finish(empty: "no unresolved sagas", footer: footer)
    } catch {
        throw failure(error, log)
    }
}

/// Hands `body` up to `limit` sagas `filter` selects, in `order`, a page at a time.
/// - Returns: How many it handed.
private func eachSaga(_ log: SagaLog, filter: SagaFilter, order: SagaOrder, limit: Int,
                      _ body: (SagaSummary) throws(SagaLaneError) -> Void) throws(SagaLaneError) -> Int {
    var shown = 0
    var last: SagaRecord?
    while shown < limit {
        let page = try log.sagas(matching: filter, order: order, after: last, limit: min(pageSize, limit - shown))
        for summary in page { try body(summary) }
        shown += page.count
        last = page.last?.saga
        if page.count < pageSize { break }
    }
    return shown
}

/// Under a table cut by --limit: how many more match.
func moreFooter(shown: Int, total: Int, what: String, narrowing: String = "--state, --name, --since") -> String? {
    guard total > shown else { return nil }
    return "(\(grouped(shown)) of \(grouped(total)) \(what) shown: --limit shows more; \(narrowing) narrow the list)"
}

/// How long a saga took, or has taken so far ("…").
private func duration(of saga: SagaRecord, now: Timestamp) -> String {
    if let end = saga.endedAt { return span(from: saga.startedAt, to: end) }
    return span(from: saga.startedAt, to: now) + "…"
}

func showSaga(_ argument: LogArgument, id: UInt64, format: OutputFormat) throws(CommandFailure) {
    let log = try argument.openForReading()
    defer { log.close() }
    let found: SagaRecord?
    let highest: UInt64
    do throws(SagaLaneError) {
        found = try log.saga(id: id)
        highest = found == nil ? try log.maxSagaID() : 0
    } catch {
        throw failure(error, log)
    }
    guard let saga = found else {
        let hint = highest == 0 ? "it has held none yet" : "its highest id so far is \(highest), and a vacuum deletes old ones"
        throw .operation("\(argument.database) has no saga \(id) (\(hint)); sagalane sagas list \(argument.database) lists them")
    }
    switch format {
    case .json, .jsonl:
        emit(saga.json.serialized + "\n")
    case .table:
        emit(timeline(saga, now: Timestamp.now()))
    }
}

/// A saga as a timeline: its header, then one row per step in the order they ran.
func timeline(_ saga: SagaRecord, now: Timestamp) -> String {
    var out = "saga \(saga.id)  \(printable(saga.name))  \(saga.state.rawValue)\n"
    out += "  started  \(saga.startedAt.iso8601)\n"
    if let end = saga.endedAt {
        out += "  ended    \(end.iso8601)  after \(span(from: saga.startedAt, to: end))\n"
    } else {
        out += "  running  for \(span(from: saga.startedAt, to: now)) so far\n"
    }
    let input = (try? JSON(parsing: saga.inputJSON, maxDepth: 512)).map(compact) ?? saga.inputJSON
    out += "  input    \(fitted(printable(input), to: 100))\n"
    if let reason = saga.failureReason { out += "  reason   \(printable(reason))\n" }
    guard !saga.steps.isEmpty else { return out + "\n  no steps\n" }
    var table = Table([
        .init("STEP", right: true), .init("NAME", maxWidth: 32), .init("TARGET", maxWidth: 32), .init("STATE"),
        .init("STARTED"), .init("AT", right: true), .init("TOOK", right: true), .init("RESULT", shrinks: true, maxWidth: 80),
    ])
    let day = saga.startedAt.iso8601.prefix(10)
    for step in saga.steps {
        let started = step.startedAt.iso8601
        // The time of day, with the date only when it is not the saga's first day.
        let when = started.prefix(10) == day ? String(started.dropFirst(11).dropLast()) : String(started.dropLast())
        let took = step.endedAt.map { span(from: step.startedAt, to: $0) } ?? span(from: step.startedAt, to: now) + "…"
        let result: String
        switch step.state {
        case .failed: result = step.failureReason ?? ""
        case .pending: result = "waiting for an answer"
        default: result = step.outputJSON.map { text in (try? JSON(parsing: text, maxDepth: 512)).map(compact) ?? text } ?? ""
        }
        table.add([String(step.index), step.name, step.target, step.state.rawValue, when,
                   "+" + span(from: saga.startedAt, to: step.startedAt), took, result])
    }
    return out + "\n" + table.render()
}
