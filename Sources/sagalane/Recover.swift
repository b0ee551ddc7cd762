import SagaLaneCoordinator
import SagaLaneJSON
import SagaLaneLog
import SagaLaneSupport

struct Recover: Command {
    static let about = CommandInfo(
        name: "recover",
        abstract: "Show what start-up recovery would do to each unfinished saga.",
        discussion: """
            When the program that owns the log starts (a host, or sagalane agent), recovery \
            applies each unfinished saga's recovery policy (its type's) before anything else \
            runs. --dry-run lists, for each saga in running or compensating, what a policy \
            would do, from the log's rows: mark_failed (the default) leaves it in \
            failed_compensation with a reason naming the steps that were pending, for an \
            operator to look at; compensate undoes its succeeded steps that declared a \
            compensation, latest first; resume replays its recorded step results and sends its \
            pending step again under the same saga id and index. The log does not record a \
            type's policy (the program that registers the type does): --policy says which to \
            show. Nothing is written: it reads the log read-only, also while its owner runs.

            Recovery itself is never run from here: it belongs to the process that will go on \
            running the sagas.

            Examples:
              sagalane recover app.db --dry-run
              sagalane recover app.db --dry-run --name order.checkout --limit 1000 --format jsonl
              sagalane recover app.db --dry-run --policy resume
            """)

    var log = LogArgument()
    var dryRun = false
    var state: [[SagaState]] = []
    var name: String?
    var policy = RecoveryPolicy.markFailed
    var time = TimeOptions()
    var limit = 100
    var output = OutputOptions()

    static func declare(_ arguments: inout Declarations<Self>) {
        arguments.group(\.log)
        arguments.flag("--dry-run", help: "List what recovery would do (the only mode).") { $0.dryRun = true }
        arguments.option("--state", valueName: "state",
                         help: "Only sagas in STATE: running or compensating; repeat it, or separate states with commas.",
                         repeats: true, transform: { try statesArgument($0, kind: "saga") }) { $0.state.append($1) }
        arguments.option("--name", valueName: "name", help: "Only sagas of this type (its name, byte for byte).") { $0.name = $1 }
        arguments.option("--policy", valueName: "policy", help: "The policy to show: mark_failed (default), compensate or resume.",
                         transform: { text in
                             guard let policy = RecoveryPolicy(rawValue: text) else {
                                 throw ValidationError("--policy takes mark_failed, compensate or resume, not '\(text)'")
                             }
                             return policy
                         }) { $0.policy = $1 }
        arguments.group(\.time)
        arguments.option("--limit", valueName: "count", help: "Show at most this many sagas (default 100).", transform: validLimit) {
            $0.limit = $1
        }
        arguments.group(\.output)
    }

    private static let unfinished: [SagaState] = [.running, .compensating]

    func validate() throws {
        guard dryRun else {
            throw ValidationError("recover only runs with --dry-run: recovery itself runs when the program that owns the log "
                                  + "starts (a host, or sagalane agent)")
        }
        if let outside = state.flatMap({ $0 }).first(where: { !Self.unfinished.contains($0) }) {
            throw ValidationError("'\(outside.rawValue)' is not an unfinished state (running, compensating): recovery leaves "
                                  + "other sagas alone")
        }
    }

    func run() throws {
        let log = try self.log.openForReading()
        defer { log.close() }
        let states = state.flatMap { $0 }
        let format = output.resolved
        let progress = ProgressLine()
        var listing = Listing(format, columns: [
            .init("ID", right: true), .init("NAME", maxWidth: 40), .init("STATE"), .init("STARTED"),
            .init("POLICY"), .init("WOULD BECOME"), .init("REASON", shrinks: true, maxWidth: 100),
        ])
        var shown = 0, matching = 0, read = 0
        var last: UInt64 = 0
        do throws(SagaLaneError) {
            while true {
                let page = try log.unfinishedSagas(after: last, limit: 500)
                for saga in page where selected(saga, states) {
                    matching += 1
                    guard shown < limit else { continue }
                    shown += 1
                    let plan = RecoveryPlan(saga, policy: policy)
                    let json: JSON = [
                        "id": .int(Int64(saga.id)), "name": .string(saga.name), "state": .string(saga.state.rawValue),
                        "started_at": .string(saga.startedAt.iso8601), "policy": .string(policy.rawValue),
                        "new_state": .string(plan.newState.rawValue), "reason": .string(plan.reason),
                    ]
                    listing.add(json, row: [String(saga.id), saga.name, saga.state.rawValue, shortTime(saga.startedAt),
                                            policy.rawValue, plan.newState.rawValue, plan.reason])
                }
                read += page.count
                progress.update("recover \(log.path ?? self.log.database): read \(grouped(read)) unfinished sagas")
                guard page.count == 500, let next = page.last?.id else { break }
                // Past the limit only the count goes on, for the footer: stop once a table needs no more.
                if shown == limit && format != .table { break }
                last = next
            }
        } catch {
            progress.finish()
            throw failure(error, log)
        }
        progress.finish()
        let footer: String? = format == .table && matching > 0
            ? "recovery would mark \(grouped(matching)) saga\(matching == 1 ? "" : "s") failed_compensation"
                + (matching > shown ? " (\(grouped(shown)) shown: --limit shows more)" : "")
            : nil
        listing.finish(empty: "no unfinished sagas: recovery would do nothing", footer: footer)
    }

    private func selected(_ saga: SagaRecord, _ states: [SagaState]) -> Bool {
        (states.isEmpty || states.contains(saga.state))
            && (name.map { saga.name.utf8.elementsEqual($0.utf8) } ?? true)
            && (time.since.map { saga.startedAt >= $0 } ?? true)
            && (time.until.map { saga.startedAt < $0 } ?? true)
    }
}
